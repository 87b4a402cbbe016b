//! The commands and flags, with their `--help` texts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use custody::Config;
use custody::engine::config::D_MAX_MAX;

/// The most nodes `custody local-cluster` runs in one process.
pub(crate) const LOCAL_NODES_MAX: u16 = 16;

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
        or in one process: custody local-cluster\n\
        Then: custody members --node 127.0.0.1:7001\n      \
        custody submit --node 127.0.0.1:7001 --resource account-42 --payload hello --wait\n      \
        custody submit --node 127.0.0.1:7001 --count 10000 --resources 100 --hot-fraction 0.9\n\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=custody=debug,foca=debug) for more."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Run a node until SIGINT/SIGTERM (it then leaves the cluster gracefully; a second SIGINT/SIGTERM stops it at
    /// once) or until it is told to leave.
    Node(NodeArgs),
    /// Run a cluster of --nodes nodes on 127.0.0.1 in this process, until SIGINT/SIGTERM (every node then leaves
    /// gracefully; a second SIGINT/SIGTERM stops them at once).
    ///
    /// Prints a line per node once it is ready, then the commands that ask the cluster from another terminal.
    LocalCluster(LocalClusterArgs),
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
pub(crate) struct NodeArgs {
    /// UDP address to listen on: one port serves peers (QUIC datagrams and streams) and clients.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Nodes of an existing cluster to join through, comma-separated. Without it, this node starts a new cluster.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub join: Vec<SocketAddr>,
    /// The node's name (default: its address). At most 64 bytes.
    #[arg(long)]
    pub name: Option<String>,
    /// Address peers reach this node at, if --listen is a wildcard like 0.0.0.0:7001.
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,
    /// Voters of the epoch store (the embedded Raft group that commits ring configurations): odd, 1 to 7.
    /// More survive more failures; each commit and lease read costs more messages.
    #[arg(long, default_value_t = 3)]
    pub voters: u8,
    /// Replicas of each range, the custodian included: 1 to 7. A task is acknowledged once a majority of
    /// them holds it. Fixed by the node that starts the cluster; a joining node takes the cluster's.
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub replicas: u8,
    /// Rebuild a crashed or removed custodian's ranges from a read quorum of their replicas (off by default while
    /// it is being proven; see docs/guarantees.md). Without it, such ranges stay unavailable.
    #[arg(long)]
    pub recovery: bool,
    /// Failure-detection timings: `lan` (probe 1 s, down after 4 s of suspicion) or `fast` (300 ms / 1 s; quiet networks and tests).
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    pub profile: Profile,
    #[command(flatten)]
    pub tasks: TaskArgs,
}

/// How a node runs its tasks: `custody node` and `custody local-cluster`.
#[derive(clap::Args, Debug)]
pub(crate) struct TaskArgs {
    /// Tasks this node runs at once, over all resources (never more than one per resource): 1 to 65536.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub workers: usize,
    /// Run each task as `sh -c CMD`. The task comes in the environment (CUSTODY_TASK_ID, CUSTODY_RESOURCE,
    /// CUSTODY_TOKEN_EPOCH, CUSTODY_TOKEN_SEQ, CUSTODY_ATTEMPT, CUSTODY_NODE, CUSTODY_DEADLINE_MS) and its payload on
    /// stdin. Exit 0: the task succeeded, with the first 64 KiB of stdout as its result; otherwise it failed, with
    /// the exit status and the end of stderr. The command's process group is killed at the task's deadline (see
    /// --task-deadline), or at once when the task is cancelled because the node's lease ends.
    #[arg(long, value_name = "CMD", conflicts_with = "task_ms")]
    pub exec: Option<String>,
    /// Without --exec: each task sleeps this many milliseconds, then succeeds. At most the task deadline (see
    /// --task-deadline): a longer one is refused at start.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub task_ms: u64,
    /// The longest a task may run, its deadline (D_max): e.g. 2500ms, 90s, 30m, 2h, 1h30m; at most 24h. Past it the
    /// task fails. A task may outlast the node's lease: the node renews the lease while tasks run, and if it cannot,
    /// cancels them shortly before the lease ends (an --exec process group is killed); a cancelled task runs again
    /// later. Default: the profile's, 2500ms with lan, 750ms with fast.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub task_deadline: Option<Duration>,
    /// Append one JSON object per execution to FILE, one a line: task_id, resource, node, epoch, seq, attempt,
    /// start_ns, end_ns (CLOCK_MONOTONIC nanoseconds, taken right before and right after the task ran). Several nodes
    /// on one machine may share the file: each line is one append.
    #[arg(long, value_name = "FILE")]
    pub exec_log: Option<PathBuf>,
}

impl TaskArgs {
    /// The engine configuration of `profile` with these flags' workers and
    /// task deadline. A `--task-ms` longer than the deadline is refused here,
    /// at start: every task would run into its deadline and fail.
    pub(crate) fn config(&self, profile: Profile) -> Result<Config, String> {
        let base = profile.config();
        let d_max = self.task_deadline.unwrap_or(base.d_max);
        if d_max > D_MAX_MAX {
            return Err(format!(
                "--task-deadline {} is above the longest task deadline accepted, {}",
                show_duration(d_max),
                show_duration(D_MAX_MAX)
            ));
        }
        let sleep = Duration::from_millis(self.task_ms);
        if self.exec.is_none() && sleep > d_max {
            let whose = match self.task_deadline {
                Some(_) => "--task-deadline".to_string(),
                None => format!("the {} profile's default", profile.name()),
            };
            return Err(format!(
                "--task-ms {} is longer than the task deadline, {} ({whose}): every task would be stopped at its \
                 deadline and fail. Give --task-deadline {} or more, or a shorter --task-ms",
                self.task_ms,
                show_duration(d_max),
                show_duration(sleep)
            ));
        }
        Ok(Config { workers: self.workers, d_max, ..base })
    }
}

/// Parses a duration: one or more `<whole number><unit>` with the units
/// `ms`, `s`, `m` and `h`, e.g. `2500ms`, `90s`, `1h30m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 2500ms, 90s, 30m, 2h or 1h30m");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?} has no unit: give one, as in 2500ms, 90s, 30m or 2h"))?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration as [`parse_duration`] reads it: the largest unit that shows
/// it whole.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct LocalClusterArgs {
    /// Nodes to run, named node-1 .. node-N; node-1 starts the cluster, the others join through it. 1 to 16.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(LOCAL_NODES_MAX)))]
    pub nodes: u16,
    /// UDP port of node-1 on 127.0.0.1; the others take the next ones. 0: any free port for each.
    #[arg(long, value_name = "PORT", default_value_t = 7001)]
    pub port: u16,
    /// Failure-detection timings: `lan` (probe 1 s, down after 4 s of suspicion) or `fast` (300 ms / 1 s; quiet networks and tests).
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    pub profile: Profile,
    #[command(flatten)]
    pub tasks: TaskArgs,
    /// Leave (gracefully) after this many seconds instead of waiting for SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub seconds: Option<u64>,
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["resource", "count"])))]
pub(crate) struct SubmitArgs {
    /// The node to submit through (its listen address); it routes each task to its resource's custodian.
    #[arg(long, value_name = "ADDR")]
    pub node: SocketAddr,
    /// Submit one task on this resource.
    #[arg(long, value_name = "NAME")]
    pub resource: Option<String>,
    /// The task's id, its idempotency key: a resubmit with the same id is the same task (same sequence number, runs
    /// once). Default: the node generates one and prints it.
    #[arg(long, value_name = "ID", requires = "resource", conflicts_with = "count")]
    pub id: Option<String>,
    /// The task's payload (with `custody node --exec`, the command's stdin). Default: empty.
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    pub payload: String,
    /// Wait until the task has run and show its fencing token and outcome, not only its acceptance. The default
    /// with --count.
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: bool,
    /// Print one JSON object instead of text. One task: task_id, resource, seq, custodian, epoch, duplicate; with
    /// --wait, token {epoch, seq} and outcome ({ok: true, result} or {ok: false, error}) instead of duplicate.
    /// A load: submitted, acknowledged, completed, busy, errors, throughput_per_s, latency_ms {p50, p99}.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for one answer after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Submit N tasks (load mode) instead of one.
    #[arg(long, value_name = "N", requires = "resources", help_heading = "Load mode")]
    pub count: Option<u64>,
    /// Spread the load over M resources, named r0 .. r{M-1}.
    #[arg(long, value_name = "M", requires = "count", help_heading = "Load mode")]
    pub resources: Option<u64>,
    /// The fraction of the tasks, 0 to 1, that go to the hot resource r0; the rest spread uniformly over the others
    /// (pseudo-randomly, from --seed). 0: uniform over all M.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction, requires = "count",
          help_heading = "Load mode")]
    pub hot_fraction: f64,
    /// Submits in flight at once.
    #[arg(long, value_name = "C", default_value_t = 64, requires = "count", help_heading = "Load mode")]
    pub concurrency: usize,
    /// Count a task as done once its custodian accepted it, without waiting for it to run.
    #[arg(long, requires = "count", help_heading = "Load mode")]
    pub no_wait: bool,
    /// Seed of the pseudo-random choice of resources: the same seed, count and resources give the same load.
    #[arg(long, value_name = "S", default_value_t = 1, requires = "count", help_heading = "Load mode")]
    pub seed: u64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&f) { Ok(f) } else { Err(format!("{f} is outside 0 ..= 1")) }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Profile {
    Lan,
    Fast,
}

impl Profile {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Fast => "fast",
        }
    }

    /// The configuration preset of this profile.
    pub(crate) fn config(self) -> Config {
        match self {
            Profile::Lan => Config::lan(),
            Profile::Fast => Config::fast(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!((args.tasks.workers, args.tasks.exec.as_deref(), args.tasks.task_ms), (8, Some("true"), 0));
        assert!(
            Cli::try_parse_from(["custody", "node", "--listen", "127.0.0.1:1", "--exec", "true", "--task-ms", "5"])
                .is_err()
        );
    }

    #[test]
    fn local_cluster_defaults_to_three_nodes_from_port_7001() {
        let cli = Cli::try_parse_from(["custody", "local-cluster"]).unwrap();
        let Cmd::LocalCluster(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!((args.nodes, args.port, args.seconds), (3, 7001, None));
        assert!(matches!(args.profile, Profile::Lan));
        let cli = Cli::try_parse_from([
            "custody",
            "local-cluster",
            "--nodes",
            "5",
            "--port",
            "9001",
            "--profile",
            "fast",
            "--task-ms",
            "5",
        ])
        .unwrap();
        let Cmd::LocalCluster(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!((args.nodes, args.port, args.tasks.task_ms), (5, 9001, 5));
        let parse = |args: &[&str]| Cli::try_parse_from([&["custody", "local-cluster"], args].concat());
        assert!(parse(&["--nodes", "0"]).is_err());
        assert!(parse(&["--nodes", "17"]).is_err());
        assert!(parse(&["--exec", "true", "--task-ms", "5"]).is_err());
    }

    #[test]
    fn durations_parse_with_their_units_and_show_back() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("2500ms"), Duration::from_millis(2500));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        for bad in ["", "90", "1.5h", "5d", "h", "-1s", "1h 30m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("90").unwrap_err().contains("no unit"));
        for d in ["750ms", "2500ms", "90s", "30m", "24h"] {
            assert_eq!(show_duration(ok(d)), d);
        }
    }

    #[test]
    fn the_task_deadline_sets_d_max_and_a_longer_task_ms_is_refused_at_start() {
        let node = |extra: &[&str]| {
            let cli = Cli::try_parse_from([&["custody", "node", "--listen", "127.0.0.1:1"], extra].concat()).unwrap();
            let Cmd::Node(args) = cli.command else { panic!("parsed as {:?}", cli.command) };
            args.tasks.config(args.profile)
        };
        assert_eq!(node(&[]).unwrap().d_max, Config::lan().d_max);
        assert_eq!(node(&["--profile", "fast"]).unwrap().d_max, Config::fast().d_max);
        let hours = node(&["--task-deadline", "2h", "--task-ms", "60000", "--workers", "4"]).unwrap();
        assert_eq!((hours.d_max, hours.workers), (Duration::from_secs(7200), 4));
        hours.validate().unwrap();
        let err = node(&["--task-ms", "5000"]).unwrap_err();
        assert!(
            err.contains("--task-ms 5000")
                && err.contains("2500ms (the lan profile's default)")
                && err.contains("--task-deadline 5s or more"),
            "{err}"
        );
        let err = node(&["--task-deadline", "1s", "--task-ms", "1001"]).unwrap_err();
        assert!(err.contains("1s (--task-deadline)") && err.contains("--task-deadline 1001ms"), "{err}");
        // A command's running time is its own; the deadline stops it.
        assert!(node(&["--task-deadline", "1s", "--exec", "sleep 5"]).is_ok());
        assert!(node(&["--task-deadline", "25h"]).unwrap_err().contains("above the longest"));
        let local = Cli::try_parse_from(["custody", "local-cluster", "--task-deadline", "10m"]).unwrap();
        let Cmd::LocalCluster(args) = local.command else { panic!("parsed as {:?}", local.command) };
        assert_eq!(args.tasks.config(args.profile).unwrap().d_max, Duration::from_secs(600));
    }
}
