//! The `custody` command line: run a node, or ask a running node.

// The CLI is a driver: it reads the clock and waits in real time.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use custody::engine::task::OUTCOME_LEN_MAX;
use custody::engine::wire::{Completed, CustodyInfo, MemberInfo, Request, Response, StatusInfo, Submitted};
use custody::engine::{Outcome, Task};
use custody::runtime::{ExecCtx, Handler};
use custody::{Cluster, Config};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long the CLI waits for a node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of an `--exec` command's stderr kept for a failure message (the
/// last ones).
const STDERR_TAIL_MAX: usize = 4096;

#[derive(Parser, Debug)]
#[command(
    name = "custody",
    version,
    about = "An embeddable cluster: each resource's tasks run at its consistent-hash-ring custodian, with no per-task lock.",
    long_about = None,
    after_help = "Start a 3-node cluster on this machine, in three terminals:\n  \
        custody node --listen 127.0.0.1:7001\n  \
        custody node --listen 127.0.0.1:7002 --join 127.0.0.1:7001\n  \
        custody node --listen 127.0.0.1:7003 --join 127.0.0.1:7001\n\
        Then: custody members --node 127.0.0.1:7001\n      \
        custody submit --node 127.0.0.1:7001 --resource account-42 --payload hello --wait\n      \
        custody submit --node 127.0.0.1:7001 --count 10000 --resources 100 --hot-fraction 0.9\n\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=custody=debug,foca=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node until SIGINT/SIGTERM (it then leaves the cluster gracefully; a second SIGINT/SIGTERM stops it at
    /// once) or until it is told to leave.
    Node(NodeArgs),
    /// Show a node's view of the cluster's members.
    Members {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a node's view of the committed configuration (epoch, leader, voters, lease, members) and its custody
    /// counters (ranges, resources, tasks, handoffs).
    Status {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// Print one JSON document instead of text. The custody counters are under "custody"; ranges_owned,
        /// tasks_queued, tasks_executed, handoffs_sent and handoffs_received are also repeated at the top level.
        #[arg(long)]
        json: bool,
    },
    /// Show which node is custodian of a resource in the latest committed configuration.
    #[command(group(ArgGroup::new("which").required(true).args(["resource", "resource_pos"])))]
    Owner {
        /// The node to ask (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
        /// The resource.
        #[arg(long, value_name = "NAME")]
        resource: Option<String>,
        /// The resource (the same as --resource).
        #[arg(value_name = "RESOURCE")]
        resource_pos: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Submit a task, or with --count a load of tasks, through a node: each runs at its resource's custodian.
    ///
    /// One task: `custody submit --node ADDR --resource R [--payload TEXT] [--wait]`. It prints the task's id and
    /// sequence number once the custodian accepted it, or with --wait its fencing token and outcome once it ran.
    /// Exit status: 0 accepted (or ran and succeeded), 1 ran and failed, 2 not accepted (busy, unavailable,
    /// refused, unreachable).
    ///
    /// A load: `custody submit --node ADDR --count N --resources M [--hot-fraction F]`. It submits N tasks over
    /// the resources r0 .. r{M-1}, --concurrency at a time, waits for each to run (unless --no-wait), and prints a
    /// summary: counts, throughput, latency from submit to answer. A busy answer (back-pressure) is counted, not
    /// retried. Exit status 2 if any submit ended in an error.
    Submit(SubmitArgs),
    /// Tell a node to leave the cluster gracefully and stop.
    Leave {
        /// The node to stop (its listen address).
        #[arg(long, value_name = "ADDR")]
        node: SocketAddr,
    },
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// UDP address to listen on: one port serves peers (QUIC datagrams and streams) and clients.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Nodes of an existing cluster to join through, comma-separated. Without it, this node starts a new cluster.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    join: Vec<SocketAddr>,
    /// The node's name (default: its address). At most 64 bytes.
    #[arg(long)]
    name: Option<String>,
    /// Address peers reach this node at, if --listen is a wildcard like 0.0.0.0:7001.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Voters of the epoch store (the embedded Raft group that commits ring configurations): odd, 1 to 7.
    /// More survive more failures; each commit and lease read costs more messages.
    #[arg(long, default_value_t = 3)]
    voters: u8,
    /// Failure-detection timings: `lan` (probe 1 s, down after 4 s of suspicion) or `fast` (300 ms / 1 s; quiet networks and tests).
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    profile: Profile,
    /// Tasks this node runs at once, over all resources (never more than one per resource): 1 to 65536.
    #[arg(long, value_name = "N", default_value_t = 64)]
    workers: usize,
    /// Run each task as `sh -c CMD`. The task comes in the environment (CUSTODY_TASK_ID, CUSTODY_RESOURCE,
    /// CUSTODY_TOKEN_EPOCH, CUSTODY_TOKEN_SEQ, CUSTODY_ATTEMPT, CUSTODY_NODE, CUSTODY_DEADLINE_MS) and its payload on
    /// stdin. Exit 0: the task succeeded, with the first 64 KiB of stdout as its result; otherwise it failed, with
    /// the exit status and the end of stderr. The command's process group is killed at the task's deadline (the
    /// profile's D_max: 2.5 s with lan, 750 ms with fast).
    #[arg(long, value_name = "CMD", conflicts_with = "task_ms")]
    exec: Option<String>,
    /// Without --exec: each task sleeps this many milliseconds, then succeeds. Keep it below the task deadline
    /// (see --exec).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    task_ms: u64,
    /// Append one JSON object per execution to FILE, one a line: task_id, resource, node, epoch, seq, attempt,
    /// start_ns, end_ns (CLOCK_MONOTONIC nanoseconds, taken right before and right after the task ran). Several nodes
    /// on one machine may share the file: each line is one append.
    #[arg(long, value_name = "FILE")]
    exec_log: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["resource", "count"])))]
struct SubmitArgs {
    /// The node to submit through (its listen address); it routes each task to its resource's custodian.
    #[arg(long, value_name = "ADDR")]
    node: SocketAddr,
    /// Submit one task on this resource.
    #[arg(long, value_name = "NAME")]
    resource: Option<String>,
    /// The task's id, its idempotency key: a resubmit with the same id is the same task (same sequence number, runs
    /// once). Default: the node generates one and prints it.
    #[arg(long, value_name = "ID", requires = "resource", conflicts_with = "count")]
    id: Option<String>,
    /// The task's payload (with `custody node --exec`, the command's stdin). Default: empty.
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    payload: String,
    /// Wait until the task has run and show its fencing token and outcome, not only its acceptance. The default
    /// with --count.
    #[arg(long, conflicts_with = "no_wait")]
    wait: bool,
    /// Print one JSON object instead of text. One task: task_id, resource, seq, custodian, epoch, duplicate; with
    /// --wait, token {epoch, seq} and outcome ({ok: true, result} or {ok: false, error}) instead of duplicate.
    /// A load: submitted, acknowledged, completed, busy, errors, throughput_per_s, latency_ms {p50, p99}.
    #[arg(long)]
    json: bool,
    /// Give up waiting for one answer after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Submit N tasks (load mode) instead of one.
    #[arg(long, value_name = "N", requires = "resources", help_heading = "Load mode")]
    count: Option<u64>,
    /// Spread the load over M resources, named r0 .. r{M-1}.
    #[arg(long, value_name = "M", requires = "count", help_heading = "Load mode")]
    resources: Option<u64>,
    /// The fraction of the tasks, 0 to 1, that go to the hot resource r0; the rest spread uniformly over the others
    /// (pseudo-randomly, from --seed). 0: uniform over all M.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction, requires = "count",
          help_heading = "Load mode")]
    hot_fraction: f64,
    /// Submits in flight at once.
    #[arg(long, value_name = "C", default_value_t = 64, requires = "count", help_heading = "Load mode")]
    concurrency: usize,
    /// Count a task as done once its custodian accepted it, without waiting for it to run.
    #[arg(long, requires = "count", help_heading = "Load mode")]
    no_wait: bool,
    /// Seed of the pseudo-random choice of resources: the same seed, count and resources give the same load.
    #[arg(long, value_name = "S", default_value_t = 1, requires = "count", help_heading = "Load mode")]
    seed: u64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&f) { Ok(f) } else { Err(format!("{f} is outside 0 ..= 1")) }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Profile {
    Lan,
    Fast,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Node(args) => run_node(args).await,
        Cmd::Members { node, json } => members(node, json).await,
        Cmd::Leave { node } => leave(node).await,
        Cmd::Status { node, json } => status(node, json).await,
        Cmd::Owner { node, resource, resource_pos, json } => {
            let resource = resource.or(resource_pos).context("give the resource (--resource NAME)")?;
            owner(node, resource, json).await
        }
        Cmd::Submit(args) if args.count.is_some() => load(args).await,
        Cmd::Submit(args) => submit(args).await,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run_node(args: NodeArgs) -> Result<()> {
    init_logging();
    let config = match args.profile {
        Profile::Lan => Config::lan(),
        Profile::Fast => Config::fast(),
    };
    let config = Config { voters: args.voters, workers: args.workers, ..config };
    let handler = CliHandler {
        body: match args.exec {
            Some(command) => Body::Exec(command.into()),
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
    };
    let mut builder = Cluster::builder().listen(args.listen).join(args.join).config(config).handler(handler);
    if let Some(name) = args.name {
        builder = builder.name(name);
    }
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    let cluster = builder.start().await.with_context(|| format!("cannot start a node on {}", args.listen))?;
    // Installed before the ready line, so a signal sent once it is printed
    // is handled; both streams live for the whole run, so a signal that
    // comes between the two waits below is kept, not lost.
    let mut signals = Signals::install()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "custody node {} listening on {}", cluster.id().name, cluster.local_addr())?;
        out.flush()?;
    }
    let signal = tokio::select! {
        signal = signals.next() => signal,
        // Stopped by itself: a client's leave request, or a refused join.
        () = cluster.stopped() => return cluster.refusal().map_or(Ok(()), |e| Err(e.into())),
    };
    tracing::info!(
        "{}: leaving the cluster (the epoch store removes this node and its resources are handed over first); \
         send SIGINT or SIGTERM again to stop at once, without handing over",
        signal.name()
    );
    tokio::select! {
        left = cluster.leave() => left.context("leaving the cluster")?,
        signal = signals.next() => {
            tracing::warn!(
                "second {}: stopping at once, without handing over; the others take this node's resources \
                 over as after a crash",
                signal.name()
            );
            std::process::exit(signal.exit_code());
        }
    }
    Ok(())
}

/// The signals that stop `custody node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention for a process ended by this signal: 128 + its
    /// number.
    fn exit_code(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// SIGINT and SIGTERM, listened for from installation on.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => StopSignal::Interrupt,
            Some(()) = self.terminate.recv() => StopSignal::Terminate,
            // The streams never end while the runtime runs; should they,
            // the node still stops when it is told to leave.
            else => std::future::pending().await,
        }
    }
}

async fn ask(node: SocketAddr, request: Request) -> Result<Response> {
    let response = custody::runtime::request(node, request, REQUEST_TIMEOUT)
        .await
        .with_context(|| format!("asking the node at {node}"))?;
    match response {
        Response::Error(reason) => bail!("the node at {node} refused: {reason}"),
        Response::Busy => bail!("the node at {node} is busy; retry in a moment"),
        response => Ok(response),
    }
}

async fn members(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Members(members) = ask(node, Request::Members).await? else {
        bail!("the node at {node} answered with something other than a member list");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "members": members }))?;
        writeln!(out)?;
    } else {
        // Voters by address: a name may repeat (a member that left, a
        // clashing join refused), an address does not.
        let voters = match ask(node, Request::Status).await? {
            Response::Status(status) => status.members.iter().filter(|m| m.voter).map(|m| m.addr).collect(),
            _ => Vec::new(),
        };
        write!(out, "{}", members_table(&members, &voters))?;
    }
    Ok(())
}

fn members_table(members: &[MemberInfo], voters: &[SocketAddr]) -> String {
    let name_width = members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(4);
    let addr_width = members.iter().map(|m| m.addr.to_string().len()).max().unwrap_or(0).max(7);
    let mut out =
        format!("{:<name_width$}  {:<addr_width$}  {:>13}  STATE    VOTER\n", "NAME", "ADDRESS", "INCARNATION");
    for m in members {
        let voter = if voters.contains(&m.addr) { "voter" } else { "" };
        out.push_str(&format!(
            "{:<name_width$}  {:<addr_width$}  {:>13}  {:<7}  {voter}\n",
            m.name,
            m.addr.to_string(),
            m.incarnation,
            m.state.as_str()
        ));
    }
    out
}

async fn status(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Status(status) = ask(node, Request::Status).await? else {
        bail!("the node at {node} answered with something other than a status");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &status_json(&status)?)?;
        writeln!(out)?;
        return Ok(());
    }
    write!(out, "{}", status_text(&status))?;
    Ok(())
}

/// The status as JSON: [`StatusInfo`] as it serializes, with the main custody
/// counters also at the top level.
fn status_json(status: &StatusInfo) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(status)?;
    let c = &status.custody;
    let top = doc.as_object_mut().context("a status serializes as an object")?;
    for (key, value) in [
        ("ranges_owned", c.ranges_owned),
        ("tasks_queued", c.tasks_queued),
        ("tasks_executed", c.tasks_executed),
        ("handoffs_sent", c.handoffs_sent),
        ("handoffs_received", c.handoffs_received),
    ] {
        top.insert(key.to_string(), value.into());
    }
    Ok(doc)
}

fn status_text(status: &StatusInfo) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("node:      {}", status.name));
    if status.epoch == 0 {
        line("epoch:     none yet (not admitted to a committed configuration)".into());
    } else {
        line(format!("epoch:     {} (hash {})", status.epoch, status.epoch_hash));
    }
    line(format!("leader:    {}", status.leader.as_deref().unwrap_or("unknown")));
    line(format!("voters:    {}", status.voters.join(", ")));
    line(format!("lease:     {} ms left to act as custodian", status.lease_remaining_ms));
    let CustodyInfo {
        ranges_owned,
        ranges_unavailable,
        ranges_sealing,
        resources,
        tasks_queued,
        tasks_running,
        tasks_executed,
        handoffs_sent,
        handoffs_received,
        handoffs_in_doubt,
    } = status.custody;
    line(format!("ranges:    {ranges_owned} owned, {ranges_unavailable} unavailable, {ranges_sealing} sealing"));
    line(format!("resources: {resources}"));
    line(format!("tasks:     {tasks_queued} queued, {tasks_running} running, {tasks_executed} executed"));
    line(format!("handoffs:  {handoffs_sent} sent, {handoffs_received} received, {handoffs_in_doubt} in doubt"));
    line(format!("members:   {}", status.members.len()));
    for m in &status.members {
        let voter = if m.voter { " (voter)" } else { "" };
        line(format!("  {:<20} {:<22} #{:<14} {}{voter}", m.name, m.addr, m.incarnation, m.status.as_str()));
    }
    out
}

async fn owner(node: SocketAddr, resource: String, json: bool) -> Result<()> {
    let Response::Owner(owner) = ask(node, Request::Owner { resource: resource.clone() }).await? else {
        bail!("the node at {node} answered with something other than an owner");
    };
    let Some(owner) = owner else {
        bail!("the node at {node} knows no committed configuration yet; retry once it has joined");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &owner)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{resource}: custodian {} ({}) at epoch {}, range {}, replicas {}",
            owner.custodian,
            owner.addr,
            owner.epoch,
            owner.range,
            owner.replicas.join(", ")
        )?;
    }
    Ok(())
}

async fn leave(node: SocketAddr) -> Result<()> {
    match ask(node, Request::Leave).await? {
        Response::Leaving => {
            println!("the node at {node} is leaving the cluster");
            Ok(())
        }
        _ => bail!("the node at {node} answered with something other than a leave acknowledgement"),
    }
}

// ---- tasks at a node: the CLI's handler ------------------------------------

/// The handler `custody node` runs tasks with: a shell command or a sleep,
/// each execution optionally logged.
struct CliHandler {
    body: Body,
    /// The `--exec-log` file, opened for appending.
    log: Option<Arc<File>>,
}

enum Body {
    /// `--task-ms`: sleep, then succeed.
    Sleep(Duration),
    /// `--exec`: `sh -c` this.
    Exec(Arc<str>),
}

impl Handler for CliHandler {
    async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
        // Dropped after the body, or when custody drops this future at the
        // deadline: either way the execution's line is written.
        let _logged = self.log.as_ref().map(|file| ExecRecord::start(file.clone(), &ctx));
        match &self.body {
            Body::Sleep(pause) => {
                if !pause.is_zero() {
                    tokio::time::sleep(*pause).await;
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
/// `--exec` command when custody gives up on it at the deadline.
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
    let (status, (), out, err) =
        tokio::join!(child.wait(), feed, read_head(stdout, OUTCOME_LEN_MAX), read_tail(stderr, STDERR_TAIL_MAX));
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

// ---- submitting -------------------------------------------------------------

/// Sends one submit; the answer as it came (busy, unavailable and refusals
/// included), or an error if none came.
async fn send_submit(node: SocketAddr, task: Task, wait: bool, timeout: Duration) -> Result<Response> {
    custody::runtime::request(node, Request::Submit { task, wait }, timeout)
        .await
        .with_context(|| format!("submitting through the node at {node}"))
}

async fn submit(args: SubmitArgs) -> Result<()> {
    let node = args.node;
    let task = Task {
        id: args.id.unwrap_or_default(),
        resource: args.resource.context("give the resource (--resource NAME)")?,
        payload: args.payload.into_bytes(),
    };
    let answer = send_submit(node, task, args.wait, Duration::from_secs(args.timeout)).await?;
    let mut out = std::io::stdout().lock();
    match answer {
        Response::Submitted(s) => {
            if args.json {
                writeln!(out, "{}", submitted_json(&s))?;
            } else {
                write!(out, "{}", submitted_text(&s))?;
            }
            Ok(())
        }
        Response::Completed(c) => {
            if args.json {
                writeln!(out, "{}", completed_json(&c))?;
            } else {
                write!(out, "{}", completed_text(&c))?;
            }
            out.flush()?;
            if matches!(c.outcome, Some(Outcome::Failed(_))) {
                // Ran, and failed: not the CLI's error (2), the task's.
                std::process::exit(1);
            }
            Ok(())
        }
        Response::Busy => bail!("the node at {node} is busy (its queues are full); nothing was accepted, retry later"),
        Response::Unavailable(reason) => bail!("unavailable: {reason}; nothing was accepted"),
        Response::Error(reason) => bail!("the node at {node} refused: {reason}"),
        _ => bail!("the node at {node} answered with something other than a submit answer"),
    }
}

fn submitted_json(s: &Submitted) -> serde_json::Value {
    serde_json::json!({
        "task_id": s.task_id,
        "resource": s.resource,
        "seq": s.seq,
        "custodian": s.custodian,
        "epoch": s.epoch,
        "duplicate": s.duplicate,
    })
}

fn submitted_text(s: &Submitted) -> String {
    let retry = if s.duplicate { " (already known: nothing new was queued)" } else { "" };
    format!(
        "task:      {}{retry}\nresource:  {}\nseq:       {}\ncustodian: {}\nepoch:     {}\n",
        s.task_id, s.resource, s.seq, s.custodian, s.epoch
    )
}

fn outcome_json(outcome: Option<&Outcome>) -> serde_json::Value {
    match outcome {
        Some(Outcome::Ok(result)) => serde_json::json!({ "ok": true, "result": String::from_utf8_lossy(result) }),
        Some(Outcome::Failed(error)) => serde_json::json!({ "ok": false, "error": error }),
        None => serde_json::Value::Null,
    }
}

fn completed_json(c: &Completed) -> serde_json::Value {
    serde_json::json!({
        "task_id": c.task_id,
        "resource": c.resource,
        "seq": c.token.seq,
        "custodian": c.custodian,
        "epoch": c.token.epoch,
        "token": { "epoch": c.token.epoch, "seq": c.token.seq },
        "outcome": outcome_json(c.outcome.as_ref()),
    })
}

fn completed_text(c: &Completed) -> String {
    let outcome = match &c.outcome {
        Some(Outcome::Ok(result)) if result.is_empty() => "ok".to_string(),
        Some(Outcome::Ok(result)) => format!("ok: {}", String::from_utf8_lossy(result).trim_end()),
        Some(Outcome::Failed(error)) => format!("failed: {error}"),
        None => "unknown (the task had run before this submit; its outcome is no longer kept)".to_string(),
    };
    format!(
        "task:      {}\nresource:  {}\nseq:       {}\ncustodian: {}\nepoch:     {}\ntoken:     {}\noutcome:   {outcome}\n",
        c.task_id, c.resource, c.token.seq, c.custodian, c.token.epoch, c.token
    )
}

/// How one submit of a load ended.
#[derive(Debug)]
enum Answer {
    /// Accepted (without waiting).
    Acknowledged,
    /// Ran; whether the handler succeeded.
    Completed {
        ok: bool,
    },
    Busy,
    Error(String),
}

/// The resource of each task of a load: a fraction `hot` of them (rounded)
/// on `r0`, the rest uniform over `r1 .. r{resources-1}` (over all of them
/// when `hot` is 0), in a shuffled order.
fn load_plan(count: u64, resources: u64, hot: f64, seed: u64) -> Vec<u64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let hot_count = if resources == 1 { count } else { (hot * count as f64).round() as u64 };
    let (first_cold, mut plan) = if hot > 0.0 { (1, vec![0; hot_count as usize]) } else { (0, Vec::new()) };
    while (plan.len() as u64) < count {
        plan.push(rng.random_range(first_cold..resources));
    }
    for i in (1..plan.len()).rev() {
        let j = rng.random_range(0..=i);
        plan.swap(i, j);
    }
    plan
}

/// The nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1].as_secs_f64() * 1e6).round() / 1e3)
}

/// Counts of a load run.
#[derive(Debug, Default)]
struct LoadSummary {
    submitted: u64,
    acknowledged: u64,
    completed: u64,
    failed: u64,
    busy: u64,
    errors: u64,
    elapsed: Duration,
    /// Submit-to-answer times of the submits that succeeded, sorted.
    latencies: Vec<Duration>,
    /// Whether the run waited for the tasks to run.
    wait: bool,
}

impl LoadSummary {
    fn throughput(&self) -> f64 {
        let done = if self.wait { self.completed } else { self.acknowledged };
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { (done as f64 / secs * 10.0).round() / 10.0 } else { 0.0 }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "submitted": self.submitted,
            "acknowledged": self.acknowledged,
            "completed": self.completed,
            "busy": self.busy,
            "errors": self.errors,
            "throughput_per_s": self.throughput(),
            "latency_ms": {
                "p50": percentile_ms(&self.latencies, 0.50),
                "p99": percentile_ms(&self.latencies, 0.99),
            },
        })
    }

    fn text(&self) -> String {
        let ms = |q| percentile_ms(&self.latencies, q).map_or("-".to_string(), |ms| format!("{ms:.1} ms"));
        let completed = if !self.wait {
            "- (not waited for)".to_string()
        } else if self.failed > 0 {
            format!("{} ({} failed in the handler)", self.completed, self.failed)
        } else {
            self.completed.to_string()
        };
        let rows = [
            ("submitted", self.submitted.to_string()),
            ("acknowledged", self.acknowledged.to_string()),
            ("completed", completed),
            ("busy", format!("{} (not retried)", self.busy)),
            ("errors", self.errors.to_string()),
            ("elapsed", format!("{:.2} s", self.elapsed.as_secs_f64())),
            ("throughput", format!("{} tasks/s", self.throughput())),
            ("latency p50", ms(0.50)),
            ("latency p99", ms(0.99)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<13} {v}\n")).collect()
    }
}

async fn load(args: SubmitArgs) -> Result<()> {
    let count = args.count.context("load mode needs --count")?;
    let resources = args.resources.context("load mode needs --resources")?;
    if count == 0 || resources == 0 || args.concurrency == 0 {
        bail!("--count, --resources and --concurrency must be at least 1");
    }
    let wait = !args.no_wait;
    let node = args.node;
    let timeout = Duration::from_secs(args.timeout);
    let plan = Arc::new(load_plan(count, resources, args.hot_fraction, args.seed));
    // Distinct per run, so a rerun's ids are not taken for retries of this
    // run's.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let run = Xoshiro256PlusPlus::seed_from_u64(nanos ^ u64::from(std::process::id()).rotate_left(32)).random::<u32>();
    let prefix: Arc<str> = format!("load-{}-{run:08x}", std::process::id()).into();
    let payload: Arc<[u8]> = args.payload.into_bytes().into();

    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {per_sec}  eta {eta}  {msg}")
                .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // One connection for the whole run; each submit is a stream on it.
    let client =
        custody::runtime::Client::connect(node).await.with_context(|| format!("connecting to the node at {node}"))?;
    let start = tokio::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let (results, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..args.concurrency.min(count as usize) {
        let (plan, next, results) = (plan.clone(), next.clone(), results.clone());
        let (prefix, payload, client) = (prefix.clone(), payload.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&resource) = plan.get(i) else { break };
                let task =
                    Task { id: format!("{prefix}-{i}"), resource: format!("r{resource}"), payload: payload.to_vec() };
                let sent = tokio::time::Instant::now();
                let answer = match client.request(Request::Submit { task, wait }, timeout).await {
                    Ok(Response::Submitted(_)) => Answer::Acknowledged,
                    Ok(Response::Completed(c)) => {
                        Answer::Completed { ok: !matches!(c.outcome, Some(Outcome::Failed(_))) }
                    }
                    Ok(Response::Busy) => Answer::Busy,
                    Ok(Response::Unavailable(reason)) => Answer::Error(format!("unavailable: {reason}")),
                    Ok(Response::Error(reason)) => Answer::Error(format!("refused: {reason}")),
                    Ok(other) => Answer::Error(format!("unexpected answer {other:?}")),
                    Err(e) => Answer::Error(format!("{e}")),
                };
                if results.send((answer, sent.elapsed())).is_err() {
                    break;
                }
            }
        });
    }
    drop(results);

    let mut summary = LoadSummary { wait, ..LoadSummary::default() };
    let mut first_errors: Vec<String> = Vec::new();
    while let Some((answer, took)) = answers.recv().await {
        summary.submitted += 1;
        match answer {
            Answer::Acknowledged => {
                summary.acknowledged += 1;
                summary.latencies.push(took);
            }
            Answer::Completed { ok } => {
                summary.acknowledged += 1;
                summary.completed += 1;
                summary.failed += u64::from(!ok);
                summary.latencies.push(took);
            }
            Answer::Busy => summary.busy += 1,
            Answer::Error(e) => {
                summary.errors += 1;
                if first_errors.len() < 3 && !first_errors.contains(&e) {
                    first_errors.push(e);
                }
            }
        }
        progress.inc(1);
        if summary.busy + summary.errors > 0 {
            progress.set_message(format!("busy {}  errors {}", summary.busy, summary.errors));
        }
    }
    summary.elapsed = start.elapsed();
    progress.finish_and_clear();
    client.close().await;
    summary.latencies.sort_unstable();

    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", summary.json())?;
    } else {
        write!(out, "{}", summary.text())?;
    }
    out.flush()?;
    for e in &first_errors {
        eprintln!("error: {e}");
    }
    if summary.errors > 0 {
        bail!("{} of {} submits ended in an error", summary.errors, summary.submitted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use custody::MemberState;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn join_takes_a_comma_separated_list() {
        let cli =
            Cli::try_parse_from(["custody", "node", "--listen", "127.0.0.1:1", "--join", "127.0.0.1:2,127.0.0.1:3"])
                .unwrap();
        let Cmd::Node(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(args.join, vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap(), "127.0.0.1:3".parse().unwrap()]);
    }

    #[test]
    fn table_has_a_row_per_member() {
        let member = |name: &str, port: u16| MemberInfo {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation: 7,
            state: MemberState::Suspect,
        };
        let table = members_table(&[member("a", 7001), member("b", 7002)], &[SocketAddr::from(([127, 0, 0, 1], 7002))]);
        assert_eq!(
            table,
            "NAME  ADDRESS           INCARNATION  STATE    VOTER\n\
             a     127.0.0.1:7001              7  suspect  \n\
             b     127.0.0.1:7002              7  suspect  voter\n"
        );
        // By address, not name: a second (down) node under a voter's name is
        // not a voter.
        let twins = [member("a", 7001), member("a", 7003)];
        let table = members_table(&twins, &[SocketAddr::from(([127, 0, 0, 1], 7001))]);
        assert_eq!(table.lines().filter(|l| l.ends_with("voter")).count(), 1, "{table}");
        assert!(table.lines().nth(1).unwrap().ends_with("voter"), "{table}");
    }

    #[test]
    fn owner_takes_the_resource_as_a_flag_or_positionally() {
        for args in [
            &["custody", "owner", "--node", "127.0.0.1:1", "--resource", "r"][..],
            &["custody", "owner", "--node", "127.0.0.1:1", "r"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Cmd::Owner { resource, resource_pos, .. } = cli.command else { panic!("parsed as {:?}", cli.command) };
            assert_eq!(resource.or(resource_pos).as_deref(), Some("r"));
        }
        assert!(Cli::try_parse_from(["custody", "owner", "--node", "127.0.0.1:1"]).is_err());
        assert!(Cli::try_parse_from(["custody", "owner", "--node", "127.0.0.1:1", "--resource", "a", "b"]).is_err());
    }

    #[test]
    fn submit_is_one_task_or_a_load_never_both() {
        let parse =
            |args: &[&str]| Cli::try_parse_from([&["custody", "submit", "--node", "127.0.0.1:1"], args].concat());
        assert!(parse(&["--resource", "r", "--wait"]).is_ok());
        assert!(parse(&["--count", "10", "--resources", "2", "--hot-fraction", "0.5", "--no-wait"]).is_ok());
        assert!(parse(&[]).is_err(), "neither a resource nor a count");
        assert!(parse(&["--resource", "r", "--count", "10", "--resources", "2"]).is_err());
        assert!(parse(&["--count", "10"]).is_err(), "a load needs --resources");
        assert!(parse(&["--resource", "r", "--no-wait"]).is_err(), "--no-wait is for loads");
        assert!(parse(&["--count", "10", "--resources", "2", "--id", "x"]).is_err(), "--id is for one task");
        assert!(parse(&["--count", "10", "--resources", "2", "--hot-fraction", "1.5"]).is_err());
        assert!(parse(&["--count", "10", "--resources", "2", "--wait", "--no-wait"]).is_err());
    }

    #[test]
    fn node_flags_parse() {
        let cli =
            Cli::try_parse_from(["custody", "node", "--listen", "127.0.0.1:1", "--workers", "8", "--exec", "true"])
                .unwrap();
        let Cmd::Node(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!((args.workers, args.exec.as_deref(), args.task_ms), (8, Some("true"), 0));
        assert!(
            Cli::try_parse_from(["custody", "node", "--listen", "127.0.0.1:1", "--exec", "true", "--task-ms", "5"])
                .is_err()
        );
    }

    #[test]
    fn a_load_sends_the_hot_fraction_to_r0_and_spreads_the_rest() {
        let plan = load_plan(1000, 10, 0.3, 7);
        assert_eq!(plan.len(), 1000);
        assert_eq!(plan.iter().filter(|&&r| r == 0).count(), 300);
        for r in 1..10 {
            let n = plan.iter().filter(|&&x| x == r).count();
            assert!((40..=120).contains(&n), "r{r} got {n} of the 700 cold tasks");
        }
        assert_ne!(&plan[..300], &[0; 300][..], "the hot tasks are shuffled in");
        assert_eq!(plan, load_plan(1000, 10, 0.3, 7), "a seed gives one plan");
        let uniform = load_plan(1000, 4, 0.0, 7);
        assert!((0..4).all(|r| uniform.contains(&r)));
        assert_eq!(load_plan(5, 1, 0.0, 7), vec![0; 5]);
        assert_eq!(load_plan(5, 3, 1.0, 7), vec![0; 5]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&samples, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&samples, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&samples[..1], 0.99), Some(1.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn status_json_repeats_the_custody_counters_at_the_top_level() {
        let status = StatusInfo {
            name: "a".into(),
            epoch: 3,
            epoch_hash: "00000000000000ff".into(),
            leader: Some("a".into()),
            voters: vec!["a".into()],
            lease_remaining_ms: 100,
            members: Vec::new(),
            custody: CustodyInfo {
                ranges_owned: 5,
                tasks_queued: 2,
                tasks_executed: 9,
                handoffs_sent: 1,
                handoffs_received: 4,
                ..CustodyInfo::default()
            },
        };
        let doc = status_json(&status).unwrap();
        for (key, value) in [
            ("ranges_owned", 5),
            ("tasks_queued", 2),
            ("tasks_executed", 9),
            ("handoffs_sent", 1),
            ("handoffs_received", 4),
        ] {
            assert_eq!(doc[key], value, "{key}");
            assert_eq!(doc["custody"][key], value, "custody.{key}");
        }
        let text = status_text(&status);
        assert!(text.contains("ranges:    5 owned, 0 unavailable, 0 sealing"), "{text}");
        assert!(text.contains("tasks:     2 queued, 0 running, 9 executed"), "{text}");
        assert!(text.contains("handoffs:  1 sent, 4 received, 0 in doubt"), "{text}");
    }

    #[test]
    fn load_summary_json_has_exactly_the_documented_keys() {
        let summary = LoadSummary {
            submitted: 3,
            acknowledged: 2,
            completed: 2,
            errors: 1,
            elapsed: Duration::from_secs(1),
            latencies: vec![Duration::from_millis(4), Duration::from_millis(8)],
            wait: true,
            ..LoadSummary::default()
        };
        let doc = summary.json();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["acknowledged", "busy", "completed", "errors", "latency_ms", "submitted", "throughput_per_s"]
        );
        assert_eq!(doc["throughput_per_s"], 2.0);
        assert_eq!(doc["latency_ms"], serde_json::json!({ "p50": 4.0, "p99": 8.0 }));
    }
}
