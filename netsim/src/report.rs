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
    /// The task invariants (docs/design.md, section 12), one entry per
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
    /// `"pass"`; `"limited"`: the only failures are liveness failures
    /// classified by a documented limitation (see [`LivenessClass`]); or
    /// `"fail"`.
    pub result: String,
    /// Why the task expectations were relaxed for some tasks, and for how
    /// many; every other task keeps them (see [`Expectations`]). `null`
    /// without a workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectations: Option<Expectations>,
    /// Tasks behind failed liveness checks and I4 losses, counted per
    /// documented limitation (the class's name); a failing task no class
    /// explains is counted under `unclassified` and fails the run.
    #[serde(default, skip_serializing_if = "LivenessClasses::is_empty")]
    pub liveness_classes: LivenessClasses,
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
    /// Tasks a custodian acknowledged (its `Accepted`, seen by the client's
    /// gateway; in lock mode the durable enqueue), or answered `Completed`:
    /// the tasks I4 holds the system to.
    #[serde(default)]
    pub accepted: u64,
    /// Distinct tasks that ran at least once.
    pub executed: u64,
    /// Executions started, duplicates included.
    pub executions: u64,
    /// Executions beyond the first of their task.
    pub duplicate_executions: u64,
    /// Executions their custodian cancelled (the lease they ran under was
    /// ending): their tasks ran again.
    #[serde(default)]
    pub cancelled_executions: u64,
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
    /// Parts whose recovery started: their custodian was removed without
    /// handing them off.
    #[serde(default)]
    pub recoveries_started: u64,
    /// Parts taken by recovery, from a read quorum of their replicas.
    #[serde(default)]
    pub parts_recovered: u64,
    /// Resources taken by recovery.
    #[serde(default)]
    pub resources_recovered: u64,
    /// Tasks not run yet taken by recovery.
    #[serde(default)]
    pub tasks_recovered: u64,
    /// Parts whose recovery cannot complete: every replica answered and
    /// none held the removed custodian's complete copy.
    #[serde(default)]
    pub recoveries_stuck: u64,
    /// With recovery: how long the resources of crashed custodians were
    /// unavailable, each from the crash (or the arrival of the task, if
    /// later) to the start of its first execution after it. `null` without
    /// recovery or without such a resource.
    #[serde(default)]
    pub recovery_ms: Option<RecoveryTimes>,
    /// What moved from the first fault on: the membership changes' share,
    /// without the formation's (the founder hands off most of the circle
    /// when the formed cluster's first epoch admits the others). `null`
    /// without faults.
    pub since_first_fault: Option<Moved>,
}

/// The spread of the times recovery took, per resource of a crashed
/// custodian that ran a task again, in milliseconds (rounded up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryTimes {
    /// Median.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Longest.
    pub max_ms: u64,
    /// Resources measured.
    pub resources: u64,
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
    /// A failed liveness check whose every failing task is explained by a
    /// documented limitation: the classes and their task counts (see
    /// [`LivenessClass`]). `None` on a check that held, and on a failure
    /// nothing classifies (which fails the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// One task invariant over one mode's trace (see [`crate::checker::invariants()`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invariant {
    /// Its number in docs/design.md (section 12): `"I1"`, `"I2"`, `"I4"`, …
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
    /// Violations explained by a documented limitation, by class name
    /// ([`LivenessClass::name`]); the rest are unclassified. An invariant
    /// whose every violation is classified fails as classified liveness,
    /// not as its `kind`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub classified: std::collections::BTreeMap<String, u64>,
}

impl Invariant {
    /// Violations no documented limitation explains.
    pub fn unclassified(&self) -> u64 {
        self.violations - self.classified.values().sum::<u64>().min(self.violations)
    }

    /// The invariant as a check of the report (where the verdict reads it).
    pub fn to_check(&self) -> Check {
        let all_classified = !self.ok && self.violations > 0 && self.unclassified() == 0;
        Check {
            name: format!("{} ({}) {}", self.name, self.mode.name(), self.about),
            ok: self.ok,
            kind: if all_classified { CheckKind::Liveness } else { self.kind },
            detail: if self.ok || self.violations == 0 {
                self.detail.clone()
            } else {
                format!("{} violations: {}", self.violations, self.detail)
            },
            class: all_classified.then(|| class_text(&self.classified)),
        }
    }
}

/// `"class: n; class: n"`.
pub fn class_text(classes: &std::collections::BTreeMap<String, u64>) -> String {
    classes.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join("; ")
}

/// A documented limitation of the system today, which explains a liveness
/// failure (a task that never ran, never completed, or an acknowledged task
/// whose effect was never applied) instead of failing the run.
///
/// A failing task is put in the first class that applies, in this order:
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LivenessClass {
    /// Recovery off: a node crashed while it held the task's resource (it
    /// owned the resource in a committed epoch and had not had a handoff of
    /// it acknowledged); its state is gone with it.
    CrashedCustodian,
    /// Recovery on: the resource's custodian left the configuration without
    /// a handoff together with so many of its range's replicas that no read
    /// quorum was left (a double crash): the range stays unavailable rather
    /// than be taken without what they held.
    ReadQuorumLost,
    /// A majority of the epoch store's committed voters crashed (a crashed
    /// voter's Raft state is gone with it): the store never commits again,
    /// no lease is renewed, and nothing runs from then on. Until the store
    /// can be rebuilt from its survivors, a task not settled by then never
    /// is.
    StoreMajorityLost,
    /// A transfer of the resource's range was never acknowledged and its
    /// receiver's life left the configuration (removed, or replaced by a
    /// new life of the same node, which ignores a transfer for the old
    /// one): the sender counts it in doubt and never resends it, so nobody
    /// serves the range.
    InDoubtTransfer,
    /// A holder of the resource was still paused, or still cut off from the
    /// voters' majority, when the run ended: liveness is owed only after
    /// faults heal (I13).
    NotHealed,
    /// The task was never acknowledged and its client gave up while the
    /// resource's holder (or the node the client asked) was paused, cut off
    /// or removed: the system refused it as unavailable, as it must while
    /// custody is in doubt; nothing was accepted, nothing was lost.
    UnavailableDuringFault,
    /// The lock baseline, in a run with a crash, pause or partition: its
    /// tasks are not traced to the faults that touched them, so a fault
    /// anywhere explains its liveness failures.
    LockRunWithFaults,
}

impl LivenessClass {
    /// The class's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            LivenessClass::CrashedCustodian => "crashed custodian's range lost (recovery off)",
            LivenessClass::ReadQuorumLost => {
                "read quorum lost: the custodian and too many of its range's replicas gone together"
            }
            LivenessClass::StoreMajorityLost => "the epoch store lost its voters' majority for good (crashed voters)",
            LivenessClass::InDoubtTransfer => {
                "in-doubt transfer (its receiver's life left the configuration before acknowledging)"
            }
            LivenessClass::NotHealed => "custodian still paused or cut off at the end",
            LivenessClass::UnavailableDuringFault => {
                "refused as unavailable while custody was in doubt (never accepted)"
            }
            LivenessClass::LockRunWithFaults => "lock baseline in a run with faults (not traced per task)",
        }
    }
}

/// Failing tasks by documented limitation, and the ones none explains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessClasses {
    /// Per class name: distinct failing tasks it explains.
    pub classified: std::collections::BTreeMap<String, u64>,
    /// Failing tasks no documented limitation explains.
    pub unclassified: u64,
}

impl LivenessClasses {
    /// Nothing failed.
    pub fn is_empty(&self) -> bool {
        self.classified.is_empty() && self.unclassified == 0
    }
}

/// Which tasks keep the task expectations, and why the others do not.
///
/// A task's expectations (it runs, its effect is applied, exactly once) are
/// relaxed only when a fault could have touched it: a holder of its
/// resource (custodian in a committed epoch, until its handoff was
/// acknowledged) crashed, was paused, was cut off from the voters' majority
/// or was removed from the configuration (not by a graceful leave), or a
/// transfer of its range ended in doubt — during the task's life (from its
/// arrival to its effect, or the end) — or the node its client asked was
/// paused, crashed or cut off while the request waited there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    /// Tasks no fault touched: they must run, have their effect applied,
    /// and run once.
    pub kept: u64,
    /// Tasks some fault touched.
    pub relaxed: u64,
    /// Relaxed tasks per reason (a task may have several).
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// The first relaxed task (by arrival) per reason, with what touched it.
    pub examples: std::collections::BTreeMap<String, String>,
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
    /// Only liveness checks failed, each explained by a documented
    /// limitation ([`LivenessClass`]): exit 0, reported as `"limited"`.
    Limited,
    /// A liveness check failed that no documented limitation explains:
    /// exit 2.
    LivenessFailed,
    /// A safety check failed: exit 1.
    SafetyFailed,
}

impl Verdict {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass | Verdict::Limited => 0,
            Verdict::SafetyFailed => 1,
            Verdict::LivenessFailed => 2,
        }
    }
}

impl Report {
    /// The worst outcome among the checks: a safety failure outranks an
    /// unclassified liveness failure, which outranks liveness failures that
    /// documented limitations explain.
    pub fn verdict(&self) -> Verdict {
        let failed = |kind| self.checks.iter().any(|c| !c.ok && c.kind == kind && c.class.is_none());
        if failed(CheckKind::Safety) {
            Verdict::SafetyFailed
        } else if failed(CheckKind::Liveness) || self.liveness_classes.unclassified > 0 {
            Verdict::LivenessFailed
        } else if self.checks.iter().any(|c| !c.ok) {
            Verdict::Limited
        } else {
            Verdict::Pass
        }
    }

    /// The report's `result` for a verdict.
    pub fn result_text(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::Pass => "pass",
            Verdict::Limited => "limited",
            Verdict::LivenessFailed | Verdict::SafetyFailed => "fail",
        }
    }

    /// The first failing check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.ok)
    }

    /// The first failing check no documented limitation explains (a safety
    /// failure first).
    pub fn first_unexplained(&self) -> Option<&Check> {
        let unexplained = |c: &&Check| !c.ok && c.class.is_none();
        self.checks
            .iter()
            .filter(unexplained)
            .find(|c| c.kind == CheckKind::Safety)
            .or_else(|| self.checks.iter().find(unexplained))
    }

    /// Failed safety checks.
    pub fn safety_failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok && c.kind == CheckKind::Safety && c.class.is_none())
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
    pub lock: Option<crate::trace::LockCounts>,
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
