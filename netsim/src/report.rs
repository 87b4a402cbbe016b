//! The report of one run: a typed struct, printed as JSON.
//!
//! Later protocol layers add sections (custody, the lock baseline,
//! invariants) as fields here.

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Everything a run measured and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Nodes in the run.
    pub nodes: usize,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock milliseconds the run took (the only field that varies
    /// between two runs of one plan, with `events_per_sec`).
    pub wall_ms: u64,
    /// Events processed (deliveries, wake-ups, faults, samples).
    pub events: u64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// The fault plan, replayable with `netsim replay`.
    pub fault_plan: Plan,
    /// Faults actually injected: a green run with none is visible as such.
    pub faults_injected: FaultsInjected,
    /// What the members saw.
    pub membership: Membership,
    /// Traffic.
    pub traffic: Traffic,
    /// The epoch store: the only consensus in the system.
    pub epochs: Epochs,
    /// Tasks the simulated clients submitted and the nodes ran (all zero
    /// without a workload).
    pub tasks: Tasks,
    /// Custody handoffs, summed over every node, stopped ones included.
    pub handoffs: Handoffs,
    /// Each check and its outcome.
    pub checks: Vec<Check>,
    /// The task invariants (handoff reference, section 6.2), one entry per
    /// invariant and mode; each is also among `checks`, where it decides
    /// the verdict. Empty without a workload.
    #[serde(default)]
    pub invariants: Vec<Invariant>,
    /// Custody's numbers, when custody ran (see [`ModeMetrics`]).
    #[serde(default)]
    pub custody: Option<ModeMetrics>,
    /// The per-task-locking baseline's numbers, when it ran.
    #[serde(default)]
    pub lock_baseline: Option<ModeMetrics>,
    /// The baseline over custody, when both ran on the same plan.
    #[serde(default)]
    pub ratios: Option<Ratios>,
    /// `"pass"` or `"fail"`.
    pub result: String,
    /// A hash of every output of every node, in order, with its time: two
    /// runs of one plan must give the same.
    pub trace_hash: String,
}

/// Faults the network and the plan actually caused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsInjected {
    /// Datagrams lost to the link's loss probability.
    pub dropped: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Datagrams held back so later ones overtook them.
    pub reordered: u64,
    /// Packets dropped by a partition.
    pub partition_dropped: u64,
    /// Stream frames lost because their connection reset (crash or
    /// partition).
    pub stream_reset_dropped: u64,
    /// Crashes.
    pub crashes: u64,
    /// Pauses.
    pub pauses: u64,
}

/// Membership events, summed over every observer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// `MemberDown` events.
    pub member_down: u64,
    /// `MemberUp` events.
    pub member_up: u64,
    /// Down declarations about a member that was up, unpaused and reachable
    /// from the observer (with a grace period after the network recovered).
    pub false_suspicions: u64,
    /// Of those, the ones made while the loss was above the no-false-down
    /// limit.
    pub false_suspicions_at_high_loss: u64,
    /// Milliseconds from the last fault until every running node's view
    /// equalled the true membership; `null` if it never did.
    pub converge_ms: Option<u64>,
}

/// What the epoch store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epochs {
    /// Distinct epochs committed.
    pub epochs_committed: u64,
    /// Committed log entries that are epochs or suspicion votes: what the
    /// cluster paid in consensus.
    pub consensus_instances: u64,
    /// Distinct suspicion votes committed.
    pub suspicion_votes: u64,
    /// Leases granted, summed over nodes.
    pub lease_renewals: u64,
    /// The latest committed epoch.
    pub latest_epoch: u64,
}

/// Packets sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagram bytes sent.
    pub datagram_bytes: u64,
    /// Stream frames sent.
    pub frames: u64,
}

/// What happened to the workload's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    /// Tasks that arrived and were submitted.
    pub submitted: u64,
    /// Tasks whose client was answered `Completed`.
    pub completed: u64,
    /// Distinct tasks that ran at least once.
    pub executed: u64,
    /// Executions started, duplicates included.
    pub executions: u64,
    /// Executions beyond the first of their task.
    pub duplicate_executions: u64,
    /// Submits retried after an `Unavailable` answer.
    pub unavailable_retries: u64,
    /// Submits retried after a `Busy` answer.
    pub busy_retries: u64,
    /// Submits retried because the node stopped before answering.
    pub reset_retries: u64,
    /// Submits retried because no node could be asked.
    pub no_node_retries: u64,
    /// Tasks given up after the workload's `max_attempts` submits.
    pub gave_up: u64,
    /// Tasks answered with an error.
    pub rejected: u64,
    /// Submit requests sent, retries included.
    pub requests: u64,
    /// From a task's arrival to its `Completed` answer, over completed
    /// tasks; `null` if none completed.
    pub latency: Option<Latency>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

/// Custody moving between nodes, summed over every node of the run (a
/// node's counters are kept when it stops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoffs {
    /// Parts of the ring (arcs between two ring points, or pieces of them)
    /// received by transfers.
    pub range_transfers: u64,
    /// Resources received by transfers.
    pub resources_moved: u64,
    /// Pending tasks received by transfers.
    pub tasks_moved: u64,
    /// Transfer messages received (first copies): one per receiver and
    /// epoch, more when the state is large.
    pub transfer_messages: u64,
    /// Transfers acknowledged to their senders.
    pub transfers_acked: u64,
    /// Transfers whose receiver was removed before acknowledging.
    pub transfers_in_doubt: u64,
    /// What moved from the first fault on: the membership changes' share,
    /// without the formation's (the founder hands off most of the circle
    /// when the formed cluster's first epoch admits the others). `null`
    /// without faults.
    pub since_first_fault: Option<Moved>,
}

/// Custody moved over part of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// Parts of the ring received by transfers.
    pub range_transfers: u64,
    /// Resources received by transfers.
    pub resources_moved: u64,
    /// Pending tasks received by transfers.
    pub tasks_moved: u64,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Safety or liveness: decides the exit code of a failing run.
    pub kind: CheckKind,
    /// Numbers behind the verdict.
    pub detail: String,
}

/// One task invariant over one mode's trace (see [`crate::checker::invariants`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invariant {
    /// Its number in the handoff reference: `"I1"`, `"I2"`, `"I4"`, …
    pub name: String,
    /// The mode whose trace it was checked on.
    pub mode: crate::plan::Mode,
    /// Whether it held.
    pub ok: bool,
    /// Offences counted (0 when it held).
    pub violations: u64,
    /// Numbers behind the verdict; on a violation, the first offending
    /// execution or pair of them.
    pub detail: String,
    /// What it asserts, in a few words.
    pub about: String,
    /// Safety or liveness: decides the exit code when it fails.
    pub kind: CheckKind,
}

impl Invariant {
    /// The invariant as a check of the report (where the verdict reads it).
    pub fn to_check(&self) -> Check {
        Check {
            name: format!("{} ({}) {}", self.name, self.mode.name(), self.about),
            ok: self.ok,
            kind: self.kind,
            detail: if self.ok || self.violations == 0 {
                self.detail.clone()
            } else {
                format!("{} violations: {}", self.violations, self.detail)
            },
        }
    }
}

/// Which promise a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Something bad never happens.
    Safety,
    /// Something good eventually happens.
    Liveness,
}

/// How a run (or a set of runs) ended, as the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every check held: exit 0.
    Pass,
    /// A liveness check failed: exit 2.
    LivenessFailed,
    /// A safety check failed: exit 1.
    SafetyFailed,
}

impl Verdict {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::SafetyFailed => 1,
            Verdict::LivenessFailed => 2,
        }
    }
}

impl Report {
    /// The worst outcome among the checks: a safety failure outranks a
    /// liveness failure.
    pub fn verdict(&self) -> Verdict {
        let failed = |kind| self.checks.iter().any(|c| !c.ok && c.kind == kind);
        if failed(CheckKind::Safety) {
            Verdict::SafetyFailed
        } else if failed(CheckKind::Liveness) {
            Verdict::LivenessFailed
        } else {
            Verdict::Pass
        }
    }

    /// The first failing check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }
}

/// One mode's numbers, defined identically for custody and the lock
/// baseline so the two compare (see [`crate::metrics`] for how each is
/// measured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeMetrics {
    /// `"custody"` or `"lock"`.
    pub mode: crate::plan::Mode,
    /// Committed consensus entries: epochs and suspicion votes of the epoch
    /// store (both modes), plus the lock service's enqueues, acquires,
    /// marks, releases and session entries (the baseline).
    pub consensus_instances: u64,
    /// The same, by kind.
    pub consensus_by_kind: ConsensusByKind,
    /// Consensus instances per task executed.
    pub consensus_per_task: f64,
    /// Messages between nodes of the coordination layer: every epoch-store
    /// frame (Raft, leases, votes, epoch fetches; both modes), custody's
    /// handoff frames (transfers and their acks; custody), and every leg of
    /// the lock service (requests, replication, acks, answers, grant and
    /// hand-out notifications; the baseline). SWIM and the tasks' data path
    /// are not coordination.
    pub coordination_messages: u64,
    /// The same, by kind.
    pub coordination_by_kind: CoordinationByKind,
    /// Custody handoffs (transfer messages received) from the first fault
    /// on; the formed cluster's initial spreading of custody is not
    /// counted. 0 for the baseline, which hands nothing off.
    pub handoffs: u64,
    /// Resources those handoffs moved (0 for the baseline).
    pub resources_moved: u64,
    /// Distinct tasks that ran at least once.
    pub tasks_executed: u64,
    /// Distinct tasks served: one of their executions ran its full time.
    pub tasks_served: u64,
    /// Executions beyond the first of their task.
    pub duplicate_executions: u64,
    /// Tasks served per simulated second, from the first arrival to the
    /// last task served.
    pub throughput_per_s: f64,
    /// From a task's arrival to the end of its first execution that ran its
    /// full time (not cut short by a crash), over served tasks; hot = tasks
    /// of the hot resource (resource 0 of a hot workload), cold = all
    /// others (every task without a hot resource).
    pub latency_ms: HotCold,
    /// Σ over resources of the simulated seconds during which the resource
    /// had an arrived task not yet served and no execution of it was
    /// running (queued behind nothing of its own: waiting for a lock, a
    /// worker, a custodian or a handoff); counted until the end of the run
    /// for tasks never served.
    pub unavailable_resource_seconds: f64,
    /// Simulated seconds the mode ran: the plan's duration, and for the
    /// baseline any time past it spent working off its backlog (no arrivals
    /// or faults come after the plan's end).
    pub run_seconds: f64,
    /// Events simulated.
    pub events: u64,
    /// Wall-clock milliseconds of the run.
    pub wall_ms: u64,
    /// The run's trace hash.
    pub trace_hash: String,
    /// The baseline's own counters (reads, retries, sessions), in lock mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<crate::baseline::LockCounts>,
    /// Cumulative consensus instances over tasks served, as `(tasks served,
    /// instances)` points (for `netsim compare --plot`; not in the JSON).
    #[serde(skip)]
    pub consensus_curve: Vec<(u64, u64)>,
}

/// Consensus instances by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusByKind {
    /// Epochs committed.
    pub epochs: u64,
    /// Suspicion votes committed.
    pub suspicion_votes: u64,
    /// Durable enqueues (baseline).
    pub enqueue: u64,
    /// Lock acquisitions (baseline).
    pub acquire: u64,
    /// "Executed" marks (baseline).
    pub mark: u64,
    /// Lock releases (baseline).
    pub release: u64,
    /// Session opens, closes and expiries (baseline).
    pub session: u64,
}

/// Coordination messages by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinationByKind {
    /// Epoch-store frames (both modes).
    pub epoch_store: u64,
    /// Custody handoff frames (custody).
    pub handoff: u64,
    /// Lock-service legs (baseline).
    pub lock_service: u64,
}

/// Latency of hot and cold tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HotCold {
    /// Tasks of the hot resource (all zero without one).
    pub hot: P50P99,
    /// Every other task.
    pub cold: P50P99,
}

/// Percentiles in milliseconds, over `tasks` tasks (zero when none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct P50P99 {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Tasks measured.
    pub tasks: u64,
}

/// The baseline over custody, both on the same plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Consensus instances per task executed, baseline over custody.
    pub consensus_per_task_lock_over_custody: Option<f64>,
    /// Cold tasks' p99 latency, baseline over custody.
    pub cold_p99_lock_over_custody: Option<f64>,
    /// Throughput, custody over baseline.
    pub throughput_custody_over_lock: Option<f64>,
}
