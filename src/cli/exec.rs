//! The handler a node of the CLI runs tasks with: `--exec` (a shell command
//! per task), `--task-ms` (a sleep), and the `--exec-log`.

use std::fs::File;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use custody::engine::Outcome;
use custody::engine::task::OUTCOME_LEN_MAX;
use custody::runtime::{ExecCtx, Handler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::args::TaskArgs;

/// Bytes of an `--exec` command's stderr kept for a failure message (the
/// last ones).
const STDERR_TAIL_MAX: usize = 4096;

/// The outcome of an execution stopped by its cancellation (custody ignores
/// it: the task did not complete, and runs again).
const CANCELLED: &str = "cancelled: the node's lease was ending";

/// The handler `custody node` runs tasks with: a shell command or a sleep,
/// each execution optionally logged.
#[derive(Clone)]
pub(crate) struct CliHandler {
    body: Body,
    /// The `--exec-log` file, opened for appending.
    log: Option<Arc<File>>,
}

#[derive(Clone)]
enum Body {
    /// `--task-ms`: sleep, then succeed.
    Sleep(Duration),
    /// `--exec`: `sh -c` this.
    Exec(Arc<str>),
}

impl CliHandler {
    /// The handler the flags ask for; opens the `--exec-log` file.
    pub(crate) fn new(args: &TaskArgs) -> Result<CliHandler> {
        Ok(CliHandler {
            body: match &args.exec {
                Some(command) => Body::Exec(command.as_str().into()),
                None => Body::Sleep(Duration::from_millis(args.task_ms)),
            },
            log: match &args.exec_log {
                Some(path) => Some(Arc::new(
                    File::options()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("cannot open the execution log {}", path.display()))?,
                )),
                None => None,
            },
        })
    }
}

impl Handler for CliHandler {
    async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
        // Dropped after the body, or when custody drops this future at the
        // deadline: either way the execution's line is written.
        let _logged = self.log.as_ref().map(|file| ExecRecord::start(file.clone(), &ctx));
        match &self.body {
            Body::Sleep(pause) => {
                if !pause.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(*pause) => {}
                        () = ctx.cancel.cancelled() => return Outcome::Failed(CANCELLED.into()),
                    }
                }
                Outcome::Ok(Vec::new())
            }
            Body::Exec(command) => run_command(command, &ctx, payload).await,
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between the processes of one
/// machine.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// One execution for the `--exec-log`: written as a JSON line when dropped.
struct ExecRecord {
    file: Arc<File>,
    line: serde_json::Map<String, serde_json::Value>,
    start_ns: u64,
}

impl ExecRecord {
    fn start(file: Arc<File>, ctx: &ExecCtx) -> ExecRecord {
        let line = serde_json::json!({
            "task_id": ctx.task_id,
            "resource": ctx.resource,
            "node": &*ctx.node,
            "epoch": ctx.token.epoch,
            "seq": ctx.token.seq,
            "attempt": ctx.attempt,
        });
        let serde_json::Value::Object(line) = line else { unreachable!("an object literal") };
        ExecRecord { file, line, start_ns: monotonic_ns() }
    }
}

impl Drop for ExecRecord {
    fn drop(&mut self) {
        let end_ns = monotonic_ns();
        let mut line = std::mem::take(&mut self.line);
        line.insert("start_ns".into(), self.start_ns.into());
        line.insert("end_ns".into(), end_ns.into());
        let mut bytes = serde_json::Value::Object(line).to_string().into_bytes();
        bytes.push(b'\n');
        // One write on an O_APPEND file: lines of several processes sharing
        // it do not interleave.
        if let Err(e) = (&*self.file).write_all(&bytes) {
            tracing::warn!(error = %e, "cannot write to the execution log");
        }
    }
}

/// Kills a process group when dropped, unless disarmed: what is left of an
/// `--exec` command when custody cancels it, or gives up on it at the
/// deadline.
struct GroupKiller(Option<rustix::process::Pid>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// Runs one task as `sh -c command`, in a process group of its own.
async fn run_command(command: &str, ctx: &ExecCtx, payload: Vec<u8>) -> Outcome {
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("CUSTODY_TASK_ID", &ctx.task_id)
        .env("CUSTODY_RESOURCE", &ctx.resource)
        .env("CUSTODY_TOKEN_EPOCH", ctx.token.epoch.to_string())
        .env("CUSTODY_TOKEN_SEQ", ctx.token.seq.to_string())
        .env("CUSTODY_ATTEMPT", ctx.attempt.to_string())
        .env("CUSTODY_NODE", &*ctx.node)
        .env("CUSTODY_DEADLINE_MS", ctx.remaining().as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot run sh -c {command:?}: {e}")),
    };
    let mut group = GroupKiller(child.id().and_then(|pid| rustix::process::Pid::from_raw(pid as i32)));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input is not an error.
            let _ = stdin.write_all(&payload).await;
        }
    };
    let run = async {
        tokio::join!(child.wait(), feed, read_head(stdout, OUTCOME_LEN_MAX), read_tail(stderr, STDERR_TAIL_MAX))
    };
    let (status, (), out, err) = tokio::select! {
        ran = run => ran,
        // The lease ends within the cancel margin: `group` kills the
        // command's process group as it drops, now.
        () = ctx.cancel.cancelled() => return Outcome::Failed(CANCELLED.into()),
    };
    // Reaped: its process id may be reused from now on.
    group.0 = None;
    match status {
        Ok(status) if status.success() => Outcome::Ok(out),
        Ok(status) => {
            let err = String::from_utf8_lossy(&err);
            let err = err.trim();
            if err.is_empty() {
                Outcome::Failed(format!("{status}"))
            } else {
                Outcome::Failed(format!("{status}; stderr: {err}"))
            }
        }
        Err(e) => Outcome::Failed(format!("cannot wait for sh -c {command:?}: {e}")),
    }
}

/// Reads a pipe to its end, keeping the first `max` bytes.
async fn read_head(pipe: Option<impl AsyncRead + Unpin>, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = max - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Reads a pipe to its end, keeping the last `max` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * max {
            kept.drain(..kept.len() - max);
        }
    }
    if kept.len() > max {
        kept.drain(..kept.len() - max);
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use custody::engine::Token;
    use custody::runtime::Cancellation;

    use super::*;

    fn ctx() -> ExecCtx {
        ExecCtx {
            task_id: "t".into(),
            resource: "r".into(),
            token: Token { epoch: 1, seq: 1 },
            attempt: 1,
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
            cancel: Cancellation::new(),
            node: "n".into(),
        }
    }

    #[tokio::test]
    async fn a_cancelled_command_returns_at_once_and_its_process_group_is_killed() {
        let marker = std::env::temp_dir().join(format!("custody-exec-cancel-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // A subshell of the command writes the marker after its sleep,
        // unless the whole group is killed first (killing `sh` alone would
        // leave it running).
        let command = format!("(sleep 0.4; echo late > {}) & wait", marker.display());
        let ctx = ctx();
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        let outcome = run_command(&command, &ctx, Vec::new()).await;
        assert_eq!(outcome, Outcome::Failed(CANCELLED.into()));
        assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!marker.exists(), "the command went on after its cancellation");
    }

    #[tokio::test]
    async fn a_cancelled_sleep_returns_at_once() {
        let handler = CliHandler { body: Body::Sleep(Duration::from_secs(60)), log: None };
        let ctx = ctx();
        ctx.cancel.cancel();
        assert_eq!(handler.execute(ctx, Vec::new()).await, Outcome::Failed(CANCELLED.into()));
    }
}
