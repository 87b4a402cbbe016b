//! The host's side of task execution: the [`Handler`] trait and what it is
//! given.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

use crate::engine::{Outcome, Token};

/// Everything a handler knows about the execution it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCtx {
    /// The task's id (the client's idempotency key).
    pub task_id: String,
    /// The resource it targets.
    pub resource: String,
    /// The fencing token `(epoch, seq)`: increasing per resource in
    /// execution order, across custodians (a task run again after a
    /// cancellation may carry the token of its cancelled run). A resource
    /// that stores the last token it applied and refuses lower or equal ones
    /// applies each task at most once, even against a paused former
    /// custodian.
    pub token: Token,
    /// 1 on the first execution; higher when the task runs again because its
    /// execution was cancelled or its custodian was lost mid-execution.
    pub attempt: u32,
    /// The handler must return by then; past it custody stops waiting for it
    /// (the task counts as failed) and mutual exclusion in real time is no
    /// longer guaranteed for it (only the token still fences its effects).
    pub deadline: tokio::time::Instant,
    /// Raised when custody cancels this execution before its deadline: the
    /// node's lease ends within its `cancel_margin` and could not be
    /// renewed. Return within that margin (the task did not complete and
    /// runs again later, here or elsewhere); past it the handler's future is
    /// dropped.
    pub cancel: Cancellation,
    /// The name of the node running it.
    pub node: Arc<str>,
}

/// A cancellation signal for one execution ([`ExecCtx::cancel`]). Cheap to
/// clone; every clone sees the same signal.
///
/// ```
/// # use custody::runtime::{ExecCtx, Handler};
/// # use custody::engine::Outcome;
/// struct Long;
///
/// impl Handler for Long {
///     async fn execute(&self, ctx: ExecCtx, _payload: Vec<u8>) -> Outcome {
///         tokio::select! {
///             () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => Outcome::Ok(Vec::new()),
///             // Stop in time: the task runs again later, with the same token.
///             () = ctx.cancel.cancelled() => Outcome::Failed("cancelled".into()),
///         }
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct Cancellation(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancellation {
    /// A signal not raised yet.
    pub fn new() -> Cancellation {
        Cancellation::default()
    }

    /// Raises the signal (custody's runtime does, on the engine's
    /// `Output::Cancel`). Raising it again does nothing.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether the signal is raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised (at once if it is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a raise in between still wakes.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cancellation").field(&self.is_cancelled()).finish()
    }
}

/// Two cancellations are equal when they are the same signal.
impl PartialEq for Cancellation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancellation {}

impl ExecCtx {
    /// Time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
    }
}

/// Runs tasks at their custodian. Custody calls it for one task of a
/// resource at a time, in sequence order, with at most `workers` calls in
/// flight per node.
///
/// A handler that panics fails its task: the outcome is
/// [`Outcome::Failed`] with the panic's message, and the resource moves on
/// to its next task. A handler still running at `ctx.deadline` is
/// cancelled (dropped at its next await) and fails its task too.
///
/// A task may run longer than a lease: the node renews its lease while
/// the handler runs. If it cannot, custody cancels the execution
/// `cancel_margin` before the lease ends: `ctx.cancel` is raised, and a
/// handler that has not returned within the margin is dropped. A cancelled
/// task did not complete; it runs again later (attempt + 1), here or at the
/// resource's next custodian.
///
/// ```
/// use custody::runtime::{ExecCtx, Handler};
/// use custody::engine::Outcome;
///
/// struct Print;
///
/// impl Handler for Print {
///     async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
///         println!("{} {} {}", ctx.resource, ctx.token, String::from_utf8_lossy(&payload));
///         Outcome::Ok(Vec::new())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Runs one task. Return by `ctx.deadline`.
    fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> impl Future<Output = Outcome> + Send;
}

/// A handler made of an async closure: `handler_fn(|ctx, payload| async move { ... })`.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(ExecCtx, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    FnHandler(f)
}

/// See [`handler_fn`].
#[derive(Debug, Clone)]
pub struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(ExecCtx, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> impl Future<Output = Outcome> + Send {
        (self.0)(ctx, payload)
    }
}

/// The handler of a node built without one: every task succeeds at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

impl Handler for NoopHandler {
    async fn execute(&self, _ctx: ExecCtx, _payload: Vec<u8>) -> Outcome {
        Outcome::Ok(Vec::new())
    }
}

/// A boxed future of an outcome.
pub(crate) type OutcomeFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// [`Handler`] behind a pointer (the trait's `impl Future` return keeps it
/// from being a trait object itself).
pub(crate) trait DynHandler: Send + Sync {
    fn execute_boxed(&self, ctx: ExecCtx, payload: Vec<u8>) -> OutcomeFuture<'_>;
}

impl<H: Handler> DynHandler for H {
    fn execute_boxed(&self, ctx: ExecCtx, payload: Vec<u8>) -> OutcomeFuture<'_> {
        Box::pin(self.execute(ctx, payload))
    }
}

/// Runs one execution to its outcome, whatever the handler does: a handler
/// that returns gives its outcome; one that panics (while building its
/// future or while it runs) gives [`Outcome::Failed`] with the panic's
/// message; one still running at `deadline`, or `margin` after its
/// cancellation (`ctx.cancel`), is dropped and gives [`Outcome::Failed`].
/// Never panics, so the caller always gets to report the end of the
/// execution and free its worker.
pub(crate) async fn run_to_outcome(
    handler: Arc<dyn DynHandler>,
    ctx: ExecCtx,
    payload: Vec<u8>,
    deadline: tokio::time::Instant,
    margin: Duration,
) -> Outcome {
    let (resource, seq) = (ctx.resource.clone(), ctx.token.seq);
    let cancel = ctx.cancel.clone();
    // Built at the first poll, inside `CatchUnwind`: a handler whose
    // `execute` panics before returning a future is caught as well.
    let run = CatchUnwind::new(Box::pin(async move { handler.execute_boxed(ctx, payload).await }));
    let run = tokio::time::timeout_at(deadline, run);
    // The lease ends `margin` after the cancellation: the handler's future
    // does not outlive it.
    let stop = async {
        cancel.cancelled().await;
        tokio::time::sleep(margin).await;
    };
    let result = tokio::select! {
        biased;
        result = run => result,
        () = stop => {
            tracing::warn!(%resource, seq, "a cancelled handler did not return within the cancel margin: dropped");
            return Outcome::Failed("cancelled: the node's lease was ending, and the handler did not return in time".into());
        }
    };
    match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let message = panic_message(panic.as_ref());
            tracing::warn!(%resource, seq, panic = %message, "a handler panicked; its task failed");
            Outcome::Failed(format!("the handler panicked: {message}"))
        }
        Err(_) => {
            tracing::warn!(%resource, seq, "a task ran past its deadline and was cancelled");
            Outcome::Failed("the handler ran past its deadline and was cancelled".into())
        }
    }
}

/// A future that turns a panic in its inner future's `poll` into an error
/// value carrying the panic's payload. Dropping the inner future (once it is
/// done, or at the deadline) is guarded too: a panic there is logged, not
/// propagated.
struct CatchUnwind<'a>(Option<OutcomeFuture<'a>>);

impl<'a> CatchUnwind<'a> {
    fn new(inner: OutcomeFuture<'a>) -> Self {
        CatchUnwind(Some(inner))
    }

    fn drop_inner(&mut self) {
        if let Some(inner) = self.0.take()
            && let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(inner)))
        {
            tracing::warn!(panic = %panic_message(panic.as_ref()), "a handler panicked while being dropped");
        }
    }
}

impl Future for CatchUnwind<'_> {
    type Output = Result<Outcome, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(Err(Box::new("the handler's future was polled after it finished")));
        };
        let result = match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(outcome)) => Ok(outcome),
            Err(panic) => Err(panic),
        };
        // Never polled again: state a panic left half-updated is not
        // observed.
        self.drop_inner();
        Poll::Ready(result)
    }
}

impl Drop for CatchUnwind<'_> {
    fn drop(&mut self) {
        self.drop_inner();
    }
}

/// The message a panic was raised with (`panic!("...")` gives a `&str` or a
/// `String`); a payload of another type has no message to show.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic payload that is not a string".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Token;

    fn ctx(deadline: tokio::time::Instant) -> ExecCtx {
        ExecCtx {
            task_id: "t".into(),
            resource: "r".into(),
            token: Token { epoch: 1, seq: 1 },
            attempt: 1,
            deadline,
            cancel: Cancellation::new(),
            node: "n".into(),
        }
    }

    async fn run(handler: impl Handler, payload: &[u8], within: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + within;
        run_to_outcome(Arc::new(handler), ctx(deadline), payload.to_vec(), deadline, Duration::from_secs(1)).await
    }

    fn failure(outcome: Outcome) -> String {
        match outcome {
            Outcome::Failed(message) => message,
            Outcome::Ok(_) => panic!("expected a failure"),
        }
    }

    #[tokio::test]
    async fn a_panic_while_running_is_a_failure_with_its_message() {
        let handler = handler_fn(|ctx: ExecCtx, payload: Vec<u8>| async move {
            tokio::task::yield_now().await;
            if payload == b"boom" {
                panic!("boom in {}", ctx.task_id);
            }
            Outcome::Ok(payload)
        });
        let message = failure(run(handler.clone(), b"boom", Duration::from_secs(60)).await);
        assert_eq!(message, "the handler panicked: boom in t");
        assert_eq!(run(handler, b"fine", Duration::from_secs(60)).await, Outcome::Ok(b"fine".to_vec()));
    }

    #[tokio::test]
    async fn a_panic_before_the_handler_returns_its_future_is_a_failure_too() {
        let handler = handler_fn(|_: ExecCtx, _: Vec<u8>| -> std::future::Ready<Outcome> {
            panic!("no future for you");
        });
        let message = failure(run(handler, b"", Duration::from_secs(60)).await);
        assert_eq!(message, "the handler panicked: no future for you");
    }

    /// Panics when dropped.
    struct Grenade;

    impl Drop for Grenade {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }

    #[tokio::test]
    async fn a_handler_past_its_deadline_is_cancelled_even_if_dropping_it_panics() {
        let handler = handler_fn(|_: ExecCtx, _: Vec<u8>| async move {
            let _grenade = Grenade;
            std::future::pending::<()>().await;
            Outcome::Ok(Vec::new())
        });
        let message = failure(run(handler, b"", Duration::from_millis(20)).await);
        assert!(message.contains("past its deadline"), "{message}");
    }

    /// Runs a handler and raises its cancellation `after`; the outcome and
    /// how long it took.
    async fn cancelled_after(handler: impl Handler, after: Duration, margin: Duration) -> (Outcome, Duration) {
        let started = tokio::time::Instant::now();
        let ctx = ctx(started + Duration::from_secs(3600));
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
        let outcome =
            run_to_outcome(Arc::new(handler), ctx, Vec::new(), started + Duration::from_secs(3600), margin).await;
        (outcome, started.elapsed())
    }

    #[tokio::test]
    async fn a_handler_that_honours_its_cancellation_returns_its_own_outcome() {
        let handler = handler_fn(|ctx: ExecCtx, _: Vec<u8>| async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(600)) => Outcome::Ok(Vec::new()),
                () = ctx.cancel.cancelled() => Outcome::Failed("stopped".into()),
            }
        });
        let (outcome, took) = cancelled_after(handler, Duration::from_millis(20), Duration::from_secs(30)).await;
        assert_eq!(outcome, Outcome::Failed("stopped".into()));
        assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(30), "{took:?}");
    }

    #[tokio::test]
    async fn a_handler_that_ignores_its_cancellation_is_dropped_after_the_margin() {
        let handler = handler_fn(|_: ExecCtx, _: Vec<u8>| async move {
            let _grenade = Grenade;
            tokio::time::sleep(Duration::from_secs(600)).await;
            Outcome::Ok(Vec::new())
        });
        let (outcome, took) = cancelled_after(handler, Duration::from_millis(20), Duration::from_millis(50)).await;
        assert!(failure(outcome).contains("did not return in time"));
        assert!(took >= Duration::from_millis(70) && took < Duration::from_secs(60), "{took:?}");
    }

    #[tokio::test]
    async fn a_cancellation_raised_before_anyone_waits_is_seen() {
        let cancel = Cancellation::new();
        assert!(!cancel.is_cancelled());
        let copy = cancel.clone();
        cancel.cancel();
        assert!(copy.is_cancelled() && copy == cancel && Cancellation::new() != cancel);
        copy.cancelled().await;
    }
}
