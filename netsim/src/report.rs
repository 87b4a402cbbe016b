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
