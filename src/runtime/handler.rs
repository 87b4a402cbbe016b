//! The host's side of task execution: the [`Handler`] trait and what it is
//! given.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Outcome, Token};

/// Everything a handler knows about the execution it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCtx {
    /// The task's id (the client's idempotency key).
    pub task_id: String,
    /// The resource it targets.
    pub resource: String,
    /// The fencing token `(epoch, seq)`: strictly increasing per resource in
    /// execution order, across custodians. A resource that stores the last
    /// token it applied and refuses lower or equal ones is safe even against
    /// a paused former custodian.
    pub token: Token,
    /// 1 on the first execution; higher when the task runs again because its
    /// custodian was lost mid-execution.
    pub attempt: u32,
    /// The handler must return by then; past it custody stops waiting for it
    /// (the task counts as failed) and mutual exclusion in real time is no
    /// longer guaranteed for it (only the token still fences its effects).
    pub deadline: tokio::time::Instant,
    /// The name of the node running it.
    pub node: Arc<str>,
}

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
