//! `netsim`: run custody's engine over a simulated faulty network.
//!
//! Exit codes: 0 every check held, or the only failures are liveness
//! failures a documented limitation explains (result `limited`); 1 a safety
//! check failed; 2 liveness not reached, unexplained; 3 nondeterminism; 4
//! bad arguments.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use custody::Config;
use netsim::plan::{Arrivals, Distribution, ExecTime, Plan};
use netsim::report::{RecoveryTimes, Report, Verdict};
use netsim::scenario::{self, Params, SCENARIOS, WorkloadOverrides};
use serde::Serialize;

const EXIT_NONDETERMINISM: u8 = 3;
const EXIT_BAD_ARGS: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "netsim",
    version,
    about = "Deterministic simulation of a custody cluster: the real engine over a faulty virtual network.",
    after_help = "Exit codes: 0 all checks held (or only liveness failures that documented limitations \
                  explain: result \"limited\"), 1 a safety check failed, 2 liveness not reached (unexplained), \
                  3 nondeterminism, 4 bad arguments.\n\
                  Every run prints the command that replays it; `--json FILE` writes the report, \
                  whose `fault_plan` replays with `netsim replay FILE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Run one scenario with one seed.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Which system runs the tasks: custody, the per-task-locking
        /// baseline, or both on the same plan (one report, both sections).
        #[arg(long, value_enum, default_value_t = ModeArg::Custody)]
        mode: ModeArg,
        /// Write the JSON report here (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Run custody and the per-task-locking baseline on the same plan (same
    /// workload, same faults) and print them side by side.
    Compare {
        #[command(flatten)]
        run: RunArgs,
        /// Write the JSON report (both sections and the ratios) here (`-`
        /// for standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write an SVG plot of cumulative consensus instances over tasks
        /// served, both modes, here (a `.svg` file).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Run a scenario (or all) over a range of seeds.
    Sweep {
        /// A scenario name, or `all`.
        #[arg(long)]
        scenario: String,
        /// Seeds, as `A..B` (B excluded) or `A..=B`.
        #[arg(long, value_parser = parse_seeds)]
        seeds: SeedRange,
        #[command(flatten)]
        size: SizeArgs,
        /// Runs at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Write a JSON summary here (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Where to write the plans of failing runs.
        #[arg(long, value_name = "DIR", default_value = "netsim-failures")]
        save_failures: PathBuf,
    },
    /// Re-run a plan: a plan file, or a report written by `--json` (its `fault_plan`).
    Replay {
        /// The plan or report.
        file: PathBuf,
        /// Run in this mode instead of the plan's own.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Write the JSON report here (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Run a seed twice and compare the trace hashes.
    CheckDeterminism {
        #[command(flatten)]
        run: RunArgs,
        /// Which system runs the tasks (as for `run`).
        #[arg(long, value_enum, default_value_t = ModeArg::Custody)]
        mode: ModeArg,
    },
}

/// `--mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    /// Ring custody.
    Custody,
    /// The per-task-locking baseline.
    Lock,
    /// Both, on the same plan.
    Both,
}

impl ModeArg {
    fn modes(self) -> netsim::Modes {
        match self {
            ModeArg::Custody => netsim::Modes::One(netsim::plan::Mode::Custody),
            ModeArg::Lock => netsim::Modes::One(netsim::plan::Mode::Lock),
            ModeArg::Both => netsim::Modes::Both,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            ModeArg::Custody => "",
            ModeArg::Lock => " --mode lock",
            ModeArg::Both => " --mode both",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// The scenario (see `netsim list`).
    #[arg(long)]
    scenario: String,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    size: SizeArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct SizeArgs {
    /// Nodes [default: the scenario's, 50 for most; see `netsim list`].
    #[arg(long)]
    nodes: Option<usize>,
    /// Simulated time: `120s`, `2m` or seconds.
    #[arg(long, default_value = "120s", value_parser = parse_duration_s)]
    duration: u64,
    /// Membership timings of every node.
    #[arg(long, value_enum, default_value_t = Profile::Lan)]
    profile: Profile,
    /// Override one engine configuration field, e.g. `--set max_transmissions=15`
    /// or `--set announce_to_down_period_ms=5000` (repeatable; names as in the
    /// report's `fault_plan.config`).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    overrides: Vec<String>,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// Workload flags: each overrides the scenario's workload, or adds one to a
/// scenario without (shared by every command that makes a plan).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Workload (overrides the scenario's, or adds one)")]
struct WorkloadArgs {
    /// Tasks in all (without --rate, the rate scales along: same time span).
    #[arg(long, value_name = "N")]
    tasks: Option<u64>,
    /// Resources the tasks spread over.
    #[arg(long, value_name = "M")]
    resources: Option<u64>,
    /// Milliseconds each task runs (the mean with --exec exp).
    #[arg(long, value_name = "MS")]
    task_ms: Option<u64>,
    /// Arrivals per simulated second.
    #[arg(long, value_name = "R", conflicts_with = "backlog")]
    rate: Option<f64>,
    /// Put this share of the tasks on resource 0, the rest uniform over the others (e.g. 0.9).
    #[arg(long, value_name = "F", conflicts_with = "zipf")]
    hot_fraction: Option<f64>,
    /// Zipf-distributed resources with exponent S [bare flag: 1.1].
    #[arg(long, value_name = "S", num_args = 0..=1, default_missing_value = "1.1")]
    zipf: Option<f64>,
    /// Uniform resources (undoes a scenario's hot or Zipf distribution).
    #[arg(long, conflicts_with_all = ["zipf", "hot_fraction"])]
    uniform: bool,
    /// All tasks arrive at the workload's start (a fixed backlog, handed out 1,000 per ms).
    #[arg(long)]
    backlog: bool,
    /// Poisson arrivals at --rate (undoes a scenario's backlog or even spacing).
    #[arg(long, conflicts_with = "backlog")]
    poisson: bool,
    /// Execution times: fixed at --task-ms, or exponential with that mean.
    #[arg(long, value_enum, value_name = "KIND")]
    exec: Option<ExecArg>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExecArg {
    Fixed,
    Exp,
}

impl WorkloadArgs {
    fn overrides(&self) -> WorkloadOverrides {
        let distribution = match (self.uniform, self.hot_fraction, self.zipf) {
            (true, _, _) => Some(Distribution::Uniform),
            (_, Some(fraction), _) => Some(Distribution::Hot { fraction }),
            (_, _, Some(s)) => Some(Distribution::Zipf { s }),
            _ => None,
        };
        let arrivals = if self.backlog {
            Some(Arrivals::Backlog)
        } else if self.poisson {
            Some(Arrivals::Poisson)
        } else {
            None
        };
        WorkloadOverrides {
            tasks: self.tasks,
            resources: self.resources,
            task_ms: self.task_ms,
            rate: self.rate,
            distribution,
            arrivals,
            exec: self.exec.map(|e| match e {
                ExecArg::Fixed => ExecTime::Fixed,
                ExecArg::Exp => ExecTime::Exponential,
            }),
        }
    }

    /// The flags again, for a replay command.
    fn flags(&self) -> String {
        let mut flags = String::new();
        let mut add = |f: String| {
            flags.push(' ');
            flags.push_str(&f);
        };
        if let Some(n) = self.tasks {
            add(format!("--tasks {n}"));
        }
        if let Some(m) = self.resources {
            add(format!("--resources {m}"));
        }
        if let Some(ms) = self.task_ms {
            add(format!("--task-ms {ms}"));
        }
        if let Some(r) = self.rate {
            add(format!("--rate {r}"));
        }
        if let Some(f) = self.hot_fraction {
            add(format!("--hot-fraction {f}"));
        }
        if let Some(s) = self.zipf {
            add(format!("--zipf {s}"));
        }
        if self.uniform {
            add("--uniform".into());
        }
        if self.backlog {
            add("--backlog".into());
        }
        if self.poisson {
            add("--poisson".into());
        }
        if let Some(e) = self.exec {
            add(format!("--exec {}", if e == ExecArg::Exp { "exp" } else { "fixed" }));
        }
        flags
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Profile {
    Lan,
    Fast,
}

impl SizeArgs {
    fn params(&self, seed: u64) -> Result<Params> {
        let config = match self.profile {
            Profile::Lan => Config::lan(),
            Profile::Fast => Config::fast(),
        };
        let config = apply_overrides(config, &self.overrides).map_err(|e| anyhow!(BadArgs(e)))?;
        let mut params = Params::new(self.nodes.unwrap_or(0), seed, self.duration, config);
        params.workload = self.workload.overrides();
        Ok(params)
    }

    fn flags(&self) -> String {
        let mut flags = match self.nodes {
            Some(n) => format!("--nodes {n} --duration {}s", self.duration),
            None => format!("--duration {}s", self.duration),
        };
        if let Profile::Fast = self.profile {
            flags.push_str(" --profile fast");
        }
        for o in &self.overrides {
            flags.push_str(&format!(" --set {o}"));
        }
        flags.push_str(&self.workload.flags());
        flags
    }
}

/// Applies `FIELD=VALUE` overrides to a configuration, through its JSON form.
fn apply_overrides(config: Config, overrides: &[String]) -> Result<Config, String> {
    let mut value = serde_json::to_value(&config).expect("a config serializes");
    for o in overrides {
        let (field, raw) = o.split_once('=').ok_or_else(|| format!("--set {o:?}: expected FIELD=VALUE"))?;
        let fields: Vec<String> = value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let slot = value
            .get_mut(field)
            .ok_or_else(|| format!("--set: no configuration field {field:?}; fields are {}", fields.join(", ")))?;
        *slot = serde_json::from_str(raw).map_err(|_| format!("--set {o:?}: {raw:?} is not a number"))?;
    }
    let config: Config = serde_json::from_value(value).map_err(|e| format!("--set: {e}"))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

#[derive(Debug, Clone, Copy)]
struct SeedRange {
    start: u64,
    end_inclusive: u64,
}

fn parse_seeds(s: &str) -> Result<SeedRange, String> {
    let bad = || format!("{s:?} is not a seed range like 1..101 or 1..=100");
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    let end_inclusive = if inclusive { end } else { end.checked_sub(1).ok_or_else(bad)? };
    if end_inclusive < start {
        return Err(format!("{s:?} is empty"));
    }
    Ok(SeedRange { start, end_inclusive })
}

fn parse_duration_s(s: &str) -> Result<u64, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 120s or 2m"))?;
    match unit {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        _ => Err(format!("{s:?}: unit must be s, m or h")),
    }
}

/// A bad argument, as opposed to a failing run.
#[derive(Debug)]
struct BadArgs(String);

impl std::fmt::Display for BadArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArgs {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_ARGS } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_ARGS)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Cmd::List => {
            for s in SCENARIOS {
                println!("{:<18} {} (≥ {} s, {} nodes)", s.name, s.about, s.min_duration_s, s.nodes);
            }
            Ok(0)
        }
        Cmd::Run { run, mode, json } => {
            let plan = make_plan(&run.scenario, &run.size, run.seed)?;
            let report = netsim::run_modes(plan, mode.modes());
            print_report(&report, &format!("{}{}", replay_command(&run), mode.flag()));
            write_json(json.as_deref(), &report)?;
            Ok(report.verdict().exit_code())
        }
        Cmd::Compare { run, json, plot } => compare(&run, json.as_deref(), plot.as_deref()),
        Cmd::Replay { file, mode, json } => {
            let plan = read_plan(&file)?;
            let modes = mode.map_or(netsim::Modes::One(plan.mode), ModeArg::modes);
            let report = netsim::run_modes(plan, modes);
            let flag = mode.map_or("", ModeArg::flag);
            print_report(&report, &format!("netsim replay {}{flag}", file.display()));
            write_json(json.as_deref(), &report)?;
            Ok(report.verdict().exit_code())
        }
        Cmd::CheckDeterminism { run, mode } => {
            let plan = make_plan(&run.scenario, &run.size, run.seed)?;
            let first = netsim::run_modes(plan.clone(), mode.modes());
            let second = netsim::run_modes(plan, mode.modes());
            println!("run 1: trace {} ({} events)", first.trace_hash, first.events);
            println!("run 2: trace {} ({} events)", second.trace_hash, second.events);
            if first.trace_hash == second.trace_hash && first.events == second.events {
                println!("deterministic");
                Ok(0)
            } else {
                println!(
                    "NONDETERMINISTIC: the same plan gave two traces; replay: {}{}",
                    replay_command(&run),
                    mode.flag()
                );
                Ok(EXIT_NONDETERMINISM)
            }
        }
        Cmd::Sweep { scenario, seeds, size, jobs, json, save_failures } => {
            sweep(&scenario, seeds, &size, jobs, json.as_deref(), &save_failures)
        }
    }
}

fn make_plan(name: &str, size: &SizeArgs, seed: u64) -> Result<Plan> {
    let scenario =
        scenario::find(name).ok_or_else(|| BadArgs(format!("no scenario named {name:?}; `netsim list` shows them")))?;
    scenario.plan(&size.params(seed)?).map_err(|e| anyhow!(BadArgs(e)))
}

fn replay_command(run: &RunArgs) -> String {
    format!("netsim run --scenario {} --seed {} {}", run.scenario, run.seed, run.size.flags())
}

fn read_plan(file: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    // A report carries its plan under `fault_plan`.
    let plan_value = value.get("fault_plan").cloned().unwrap_or(value);
    let plan = Plan::from_json(plan_value)
        .with_context(|| format!("{} is neither a plan nor a netsim report", file.display()))?;
    plan.validate().map_err(|e| anyhow!(BadArgs(format!("{}: {e}", file.display()))))?;
    Ok(plan)
}

fn write_json(path: Option<&Path>, value: &impl Serialize) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(value)?;
    if path == Path::new("-") {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_report(report: &Report, replay: &str) {
    println!(
        "{} seed {} n={} {:.0}s simulated: {} ({} events in {} ms, {:.0}/s, trace {})",
        report.scenario,
        report.seed,
        report.nodes,
        report.sim_seconds,
        report.result.to_uppercase(),
        report.events,
        report.wall_ms,
        report.events_per_sec,
        report.trace_hash
    );
    let e = &report.epochs;
    println!(
        "  epochs: {} committed (latest {}), {} consensus instances ({} suspicion votes), {} lease renewals",
        e.epochs_committed, e.latest_epoch, e.consensus_instances, e.suspicion_votes, e.lease_renewals
    );
    let m = &report.membership;
    let converge = m.converge_ms.map_or("never".to_string(), |ms| format!("{ms} ms"));
    println!(
        "  membership: {} up, {} down, {} false downs ({} at high loss), converged {converge} after the last fault",
        m.member_up, m.member_down, m.false_suspicions, m.false_suspicions_at_high_loss
    );
    if report.fault_plan.tasks.is_some() {
        let t = &report.tasks;
        let latency = t.latency.map_or("-".to_string(), |l| {
            format!("latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms)
        });
        println!(
            "  tasks: {} submitted, {} completed, {} executed ({} executions, {} duplicates, {} cancelled); retries: {} \
             unavailable, {} busy, {} reset; {} gave up, {} rejected; {latency}",
            t.submitted,
            t.completed,
            t.executed,
            t.executions,
            t.duplicate_executions,
            t.cancelled_executions,
            t.unavailable_retries,
            t.busy_retries,
            t.reset_retries,
            t.gave_up,
            t.rejected
        );
    }
    let h = &report.handoffs;
    let since = h.since_first_fault.map_or(String::new(), |m| {
        format!(
            " (from the first fault on: {} range transfers, {} resources, {} tasks)",
            m.range_transfers, m.resources_moved, m.tasks_moved
        )
    });
    println!(
        "  handoffs: {} range transfers, {} resources moved, {} tasks moved, {} in doubt{since}",
        h.range_transfers, h.resources_moved, h.tasks_moved, h.transfers_in_doubt
    );
    if h.recoveries_started > 0 {
        println!(
            "  recovery: {} parts started, {} recovered ({} resources, {} tasks not run yet), {} without a read quorum holding them",
            h.recoveries_started, h.parts_recovered, h.resources_recovered, h.tasks_recovered, h.recoveries_stuck
        );
    }
    if let Some(t) = h.recovery_ms {
        println!(
            "  recovered resources ran again after: p50 {} ms, p99 {} ms, max {} ms ({} resources of crashed custodians)",
            t.p50_ms, t.p99_ms, t.max_ms, t.resources
        );
    }
    let f = &report.faults_injected;
    println!(
        "  injected: {} dropped, {} duplicated, {} reordered, {} partition-dropped, {} stream frames reset, {} crashes, {} pauses",
        f.dropped, f.duplicated, f.reordered, f.partition_dropped, f.stream_reset_dropped, f.crashes, f.pauses
    );
    for (name, m) in [("custody", &report.custody), ("lock baseline", &report.lock_baseline)] {
        let Some(m) = m else { continue };
        println!(
            "  {name}: {} consensus instances ({:.3} per task), {} coordination messages, {} tasks executed \
             ({} duplicates), {:.1} tasks/s, cold p50/p99 {:.1}/{:.1} ms, hot p50/p99 {:.1}/{:.1} ms, \
             {:.1} unavailable resource-s",
            m.consensus_instances,
            m.consensus_per_task,
            m.coordination_messages,
            m.tasks_executed,
            m.duplicate_executions,
            m.throughput_per_s,
            m.latency_ms.cold.p50,
            m.latency_ms.cold.p99,
            m.latency_ms.hot.p50,
            m.latency_ms.hot.p99,
            m.unavailable_resource_seconds
        );
    }
    if let Some(x) = &report.expectations {
        println!(
            "  expectations: kept for {} tasks no fault touched (they must run, have their effect applied, run \
             once); relaxed for {}",
            x.kept, x.relaxed
        );
        for (reason, n) in &x.reasons {
            let example = x.examples.get(reason).map_or(String::new(), |e| format!(" — first: {e}"));
            println!("    {n} tasks: {reason}{example}");
        }
    }
    for check in &report.checks {
        let mark = match (check.ok, &check.class) {
            (true, _) => " ok ",
            (false, Some(_)) => "KNOWN",
            (false, None) => "FAIL",
        };
        println!("  [{mark}] {}: {}", check.name, check.detail);
    }
    print_classes(&report.liveness_classes, "  ");
    if report.verdict() != Verdict::Pass {
        println!("  replay: {replay}");
    }
}

/// The liveness classes of a report (or a sweep), with the rule.
fn print_classes(classes: &netsim::report::LivenessClasses, indent: &str) {
    if classes.is_empty() {
        return;
    }
    println!(
        "{indent}liveness failures by documented limitation (a failing task is explained by the first that applies: \
         a holder of its resource crashed; the store's voters' majority crashed before it settled; a transfer of its range ended in doubt; a holder was still paused or cut \
         off at the end; never accepted and given up while custody was in doubt; lock baseline with faults):"
    );
    for (class, n) in &classes.classified {
        println!("{indent}  {n} tasks: {class}");
    }
    if classes.unclassified > 0 {
        println!("{indent}  {} tasks explained by no documented limitation: the run fails", classes.unclassified);
    }
}

/// `netsim compare`: both modes on one plan, as a table for a person.
fn compare(run: &RunArgs, json: Option<&Path>, plot: Option<&Path>) -> Result<u8> {
    if let Some(p) = plot
        && p.extension().and_then(|e| e.to_str()) != Some("svg")
    {
        return Err(anyhow!(BadArgs(format!("--plot {}: plots are written as SVG (a .svg file)", p.display()))));
    }
    let plan = make_plan(&run.scenario, &run.size, run.seed)?;
    let Some(w) = plan.tasks else {
        return Err(anyhow!(BadArgs(format!(
            "scenario {} has no workload to compare; add one with --tasks N",
            run.scenario
        ))));
    };
    let report = netsim::run_modes(plan, netsim::Modes::Both);
    let distribution = match w.distribution {
        netsim::plan::Distribution::Uniform => "uniform".to_string(),
        netsim::plan::Distribution::Zipf { s } => format!("Zipf({s})"),
        netsim::plan::Distribution::Hot { fraction } => format!("{}% on r0", fraction * 100.0),
    };
    println!(
        "{} seed {}: {} nodes, {} tasks over {} resources ({distribution}), {} ms tasks, {} faults; {:.0} s simulated; \
         {} ({:.1} s wall)",
        report.scenario,
        report.seed,
        report.nodes,
        w.count,
        w.resources,
        w.task_ms,
        report.fault_plan.faults.len(),
        report.sim_seconds,
        report.result.to_uppercase(),
        report.wall_ms as f64 / 1000.0
    );
    println!();
    print!("{}", netsim::metrics::table(&report));
    println!();
    println!("invariants:");
    for line in netsim::metrics::invariant_lines(&report) {
        println!("  {line}");
    }
    let failed: Vec<&netsim::report::Check> = report.checks.iter().filter(|c| !c.ok).collect();
    for check in &failed {
        println!("  [FAIL] {}: {}", check.name, check.detail);
    }
    if report.verdict() != Verdict::Pass {
        println!("  replay: {} --mode both", replay_command(run));
    }
    if let Some(path) = plot {
        let (Some(c), Some(l)) = (&report.custody, &report.lock_baseline) else {
            return Err(anyhow!("both modes must have run to plot"));
        };
        let title = format!("{} seed {}: consensus instances over tasks served", report.scenario, report.seed);
        netsim::metrics::plot(
            path,
            &title,
            &[("custody", c.consensus_curve.as_slice()), ("lock baseline", l.consensus_curve.as_slice())],
        )
        .map_err(|e| anyhow!("writing the plot {}: {e}", path.display()))?;
        println!("plot: {}", path.display());
    }
    write_json(json, &report)?;
    Ok(report.verdict().exit_code())
}

#[derive(Serialize)]
struct SweepLine {
    scenario: String,
    seed: u64,
    result: String,
    trace_hash: String,
    wall_ms: u64,
    converge_ms: Option<u64>,
    false_suspicions: u64,
    epochs_committed: u64,
    consensus_instances: u64,
    tasks: netsim::report::Tasks,
    handoffs: netsim::report::Handoffs,
    first_failure: Option<String>,
    /// Failed safety checks (each fails the run).
    safety_failures: Vec<String>,
    /// Tasks behind liveness failures, by documented limitation, and the
    /// ones none explains (which fail the run).
    liveness_classes: netsim::report::LivenessClasses,
    /// Failed liveness checks no documented limitation explains.
    unclassified_liveness: Vec<String>,
    replay: Option<String>,
}

#[derive(Serialize)]
struct SweepSummary {
    /// `null`: each scenario's own number.
    nodes: Option<usize>,
    duration_s: u64,
    runs: Vec<SweepLine>,
    total: usize,
    /// Runs where every check held.
    passed: usize,
    /// Runs whose only failures are liveness failures explained by
    /// documented limitations (they do not fail the sweep).
    limited: usize,
    /// Runs with a safety failure or an unexplained liveness failure.
    failed: usize,
    /// Runs with a failed safety check, and failed safety checks in all.
    safety_runs: usize,
    safety_violations: usize,
    /// Runs with a liveness failure no documented limitation explains.
    unclassified_liveness_runs: usize,
    /// Over all runs: tasks per documented limitation, runs per class.
    liveness_classes: netsim::report::LivenessClasses,
    runs_by_class: std::collections::BTreeMap<String, usize>,
}

fn sweep(
    name: &str,
    seeds: SeedRange,
    size: &SizeArgs,
    jobs: usize,
    json: Option<&Path>,
    save_failures: &Path,
) -> Result<u8> {
    let scenarios: Vec<&scenario::Scenario> = if name == "all" {
        SCENARIOS.iter().collect()
    } else {
        vec![scenario::find(name).ok_or_else(|| BadArgs(format!("no scenario named {name:?}; `netsim list`")))?]
    };
    let mut work = Vec::new();
    for s in &scenarios {
        for seed in seeds.start..=seeds.end_inclusive {
            let plan = s.plan(&size.params(seed)?).map_err(|e| anyhow!(BadArgs(e)))?;
            work.push((s.name, seed, plan));
        }
    }
    let progress = indicatif::ProgressBar::new(work.len() as u64);
    if !std::io::stderr().is_terminal() {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} elapsed, ~{eta} left {msg}")
            .expect("a valid template"),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Report>>> = Mutex::new((0..work.len()).map(|_| None).collect());
    let failures = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, _, plan)) = work.get(i) else { break };
                    let report = netsim::run_plan(plan.clone());
                    if report.verdict() != Verdict::Pass {
                        let failed = failures.fetch_add(1, Ordering::Relaxed) + 1;
                        progress.set_message(format!("({failed} failed)"));
                    }
                    results.lock().expect("no worker panicked")[i] = Some(report);
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish_and_clear();

    let reports: Vec<Report> =
        results.into_inner().expect("no worker panicked").into_iter().map(|r| r.expect("every run ran")).collect();
    let mut lines = Vec::new();
    let mut worst = Verdict::Pass;
    for report in &reports {
        let verdict = report.verdict();
        worst = worst.max(verdict);
        let replay = if verdict <= Verdict::Limited {
            None
        } else {
            std::fs::create_dir_all(save_failures).with_context(|| format!("creating {}", save_failures.display()))?;
            let path = save_failures.join(format!("{}-seed{}.json", report.scenario, report.seed));
            write_json(Some(&path), &report.fault_plan)?;
            let command = format!("netsim replay {}", path.display());
            println!(
                "FAIL {} seed {}: {} — {command}",
                report.scenario,
                report.seed,
                report.first_unexplained().map_or("tasks explained by no documented limitation".to_string(), |c| {
                    format!("{}: {}", c.name, c.detail)
                })
            );
            Some(command)
        };
        lines.push(SweepLine {
            scenario: report.scenario.clone(),
            seed: report.seed,
            result: report.result.clone(),
            trace_hash: report.trace_hash.clone(),
            wall_ms: report.wall_ms,
            converge_ms: report.membership.converge_ms,
            false_suspicions: report.membership.false_suspicions,
            epochs_committed: report.epochs.epochs_committed,
            consensus_instances: report.epochs.consensus_instances,
            tasks: report.tasks,
            handoffs: report.handoffs,
            first_failure: report.first_failure().map(|c| format!("{}: {}", c.name, c.detail)),
            safety_failures: report.safety_failures().map(|c| format!("{}: {}", c.name, c.detail)).collect(),
            liveness_classes: report.liveness_classes.clone(),
            unclassified_liveness: report
                .checks
                .iter()
                .filter(|c| !c.ok && c.class.is_none() && c.kind == netsim::report::CheckKind::Liveness)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect(),
            replay,
        });
    }
    for s in &scenarios {
        let mine: Vec<&Report> = reports.iter().filter(|r| r.scenario == s.name).collect();
        let passed = mine.iter().filter(|r| r.verdict() == Verdict::Pass).count();
        let limited = mine.iter().filter(|r| r.verdict() == Verdict::Limited).count();
        let safety = mine.iter().filter(|r| r.verdict() == Verdict::SafetyFailed).count();
        let unexplained = mine.iter().filter(|r| r.verdict() == Verdict::LivenessFailed).count();
        let converge: Vec<u64> = mine.iter().filter_map(|r| r.membership.converge_ms).collect();
        let worst_converge = converge.iter().max().map_or("-".into(), |ms| format!("{ms} ms"));
        let false_downs: u64 = mine.iter().map(|r| r.membership.false_suspicions).sum();
        let wall: u64 = mine.iter().map(|r| r.wall_ms).sum();
        let epochs = mine.iter().map(|r| r.epochs.epochs_committed).max().unwrap_or(0);
        println!(
            "{:<18} {passed}/{} passed, {limited} with only explained liveness failures, {safety} with safety \
             violations, {unexplained} with unexplained liveness failures; slowest convergence {worst_converge}; \
             {false_downs} false downs; ≤ {epochs} epochs; {wall} ms wall",
            s.name,
            mine.len()
        );
        let spread = |f: &dyn Fn(&Report) -> u64| {
            let values: Vec<u64> = mine.iter().map(|r| f(r)).collect();
            let (min, max) = (values.iter().min().copied().unwrap_or(0), values.iter().max().copied().unwrap_or(0));
            let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
            format!("{min}–{max} (mean {mean:.1})")
        };
        if mine.iter().any(|r| r.handoffs.range_transfers > 0) {
            println!(
                "{:<18} handoffs per run: range transfers {}, resources moved {}, tasks moved {}, in doubt {}",
                "",
                spread(&|r| r.handoffs.range_transfers),
                spread(&|r| r.handoffs.resources_moved),
                spread(&|r| r.handoffs.tasks_moved),
                spread(&|r| r.handoffs.transfers_in_doubt)
            );
            if mine.iter().any(|r| r.handoffs.since_first_fault.is_some()) {
                println!(
                    "{:<18} from the first fault on: range transfers {}, resources moved {}, tasks moved {}",
                    "",
                    spread(&|r| r.handoffs.since_first_fault.map_or(0, |m| m.range_transfers)),
                    spread(&|r| r.handoffs.since_first_fault.map_or(0, |m| m.resources_moved)),
                    spread(&|r| r.handoffs.since_first_fault.map_or(0, |m| m.tasks_moved))
                );
            }
        }
        let recovered: Vec<RecoveryTimes> = mine.iter().filter_map(|r| r.handoffs.recovery_ms).collect();
        if !recovered.is_empty() {
            let range = |f: fn(&RecoveryTimes) -> u64| {
                let v: Vec<u64> = recovered.iter().map(f).collect();
                format!("{}–{}", v.iter().min().unwrap_or(&0), v.iter().max().unwrap_or(&0))
            };
            println!(
                "{:<18} recovered resources ran again after: p50 {} ms, p99 {} ms, max {} ms per run ({} runs)",
                "",
                range(|t| t.p50_ms),
                range(|t| t.p99_ms),
                range(|t| t.max_ms),
                recovered.len()
            );
        }
        if mine.iter().any(|r| r.fault_plan.tasks.is_some()) {
            let sum = |f: &dyn Fn(&Report) -> u64| mine.iter().map(|r| f(r)).sum::<u64>();
            println!(
                "{:<18} tasks in all runs: {} submitted, {} completed, {} duplicate executions, \
                 {} unavailable retries, {} reset retries, {} gave up",
                "",
                sum(&|r| r.tasks.submitted),
                sum(&|r| r.tasks.completed),
                sum(&|r| r.tasks.duplicate_executions),
                sum(&|r| r.tasks.unavailable_retries),
                sum(&|r| r.tasks.reset_retries),
                sum(&|r| r.tasks.gave_up)
            );
        }
    }
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict() == v).count();
    let mut classes = netsim::report::LivenessClasses::default();
    let mut runs_by_class = std::collections::BTreeMap::new();
    for r in &reports {
        for (class, n) in &r.liveness_classes.classified {
            *classes.classified.entry(class.clone()).or_insert(0) += n;
            *runs_by_class.entry(class.clone()).or_insert(0) += 1;
        }
        classes.unclassified += r.liveness_classes.unclassified;
    }
    let summary = SweepSummary {
        nodes: size.nodes,
        duration_s: size.duration,
        total: reports.len(),
        passed: count(Verdict::Pass),
        limited: count(Verdict::Limited),
        failed: count(Verdict::SafetyFailed) + count(Verdict::LivenessFailed),
        safety_runs: count(Verdict::SafetyFailed),
        safety_violations: reports.iter().map(|r| r.safety_failures().count()).sum(),
        unclassified_liveness_runs: count(Verdict::LivenessFailed),
        liveness_classes: classes,
        runs_by_class,
        runs: lines,
    };
    println!(
        "{} runs: {} passed, {} passed with only liveness failures explained by documented limitations, {} failed \
         ({} with {} safety violations, {} with liveness failures no documented limitation explains)",
        summary.total,
        summary.passed,
        summary.limited,
        summary.failed,
        summary.safety_runs,
        summary.safety_violations,
        summary.unclassified_liveness_runs
    );
    for (class, runs) in &summary.runs_by_class {
        println!("  {class}: {} tasks in {runs} runs", summary.liveness_classes.classified[class]);
    }
    if summary.liveness_classes.unclassified > 0 {
        println!("  explained by no documented limitation: {} tasks", summary.liveness_classes.unclassified);
    }
    write_json(json, &summary)?;
    Ok(worst.exit_code())
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
    fn seed_ranges_and_durations_parse() {
        let r = parse_seeds("1..101").unwrap();
        assert_eq!((r.start, r.end_inclusive), (1, 100));
        let r = parse_seeds("5..=5").unwrap();
        assert_eq!((r.start, r.end_inclusive), (5, 5));
        assert!(parse_seeds("5..5").is_err());
        assert!(parse_seeds("x").is_err());
        assert_eq!(parse_duration_s("120s"), Ok(120));
        assert_eq!(parse_duration_s("2m"), Ok(120));
        assert_eq!(parse_duration_s("90"), Ok(90));
        assert!(parse_duration_s("5 days").is_err());
    }

    fn size_of(args: &[&str]) -> SizeArgs {
        let cli = Cli::try_parse_from(["netsim", "run", "--scenario", "steady"].iter().chain(args)).expect("parses");
        match cli.command {
            Cmd::Run { run, .. } => run.size,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn workload_flags_override_and_replay() {
        let args: Vec<&str> =
            "--tasks 1000 --resources 20 --task-ms 3 --zipf --backlog --exec exp".split(' ').collect();
        let size = size_of(&args);
        let o = size.workload.overrides();
        assert_eq!((o.tasks, o.resources, o.task_ms, o.rate), (Some(1000), Some(20), Some(3), None));
        assert_eq!(o.distribution, Some(Distribution::Zipf { s: 1.1 }));
        assert_eq!((o.arrivals, o.exec), (Some(Arrivals::Backlog), Some(ExecTime::Exponential)));
        // The replay command carries them, and parses back to the same.
        let flags = size.flags();
        assert!(flags.contains("--zipf 1.1 --backlog --exec exp") && !flags.contains("--nodes"), "{flags}");
        let again: Vec<&str> = flags.split(' ').collect();
        assert_eq!(size_of(&again).workload.overrides(), o);
        let o = size_of(&["--hot-fraction", "0.9", "--rate", "500", "--nodes", "7"]);
        assert_eq!(o.workload.overrides().distribution, Some(Distribution::Hot { fraction: 0.9 }));
        assert_eq!((o.nodes, o.params(1).unwrap().nodes), (Some(7), 7));
        assert_eq!(size_of(&[]).params(1).unwrap().nodes, 0, "the scenario's own count");
        assert!(size_of(&[]).workload.overrides().is_empty());
        for conflict in [&["--zipf", "1.2", "--hot-fraction", "0.5"][..], &["--backlog", "--rate", "5"]] {
            let args = ["netsim", "run", "--scenario", "steady"].iter().chain(conflict);
            assert!(Cli::try_parse_from(args).is_err(), "{conflict:?}");
        }
    }
}
