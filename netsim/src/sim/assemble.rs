//! A finished run's [`Report`]: the membership checks (convergence after
//! the last fault, no false down declaration), the epoch store's checks
//! (one chain, every node on the latest epoch, a cut-off side stops acting
//! within a lease, batched changes), the task checker's verdicts over the
//! trace, the handoff and epoch counters, and the mode's metrics.

use custody::engine::CustodyStats;

use super::Sim;
use crate::checker::{self, Checked, FaultFacts, TaskRun, Touch};
use crate::plan::{Mode, TaskExpect};
use crate::report::{
    Check, CheckKind, Epochs, Handoffs, Invariant, LivenessClass, LivenessClasses, Membership, ModeMetrics, Moved,
    RecoveryTimes, Report, Tasks,
};
use crate::trace::ExecRecord;

/// A run that has reached its end, ready to report.
pub struct Finished {
    pub(super) sim: Sim,
}

impl Finished {
    /// Every task execution, in start order, on the simulator's true clock.
    pub fn trace(&self) -> &[ExecRecord] {
        &self.sim.trace
    }

    /// The report. `wall_ms` is the wall-clock time the run took, measured
    /// by the caller.
    pub fn report(self, wall_ms: u64) -> Report {
        let sim = self.sim;
        let (membership, membership_checks) = sim.membership_checks();
        let mut checks = membership_checks.to_vec();
        checks.extend(sim.epoch_checks());
        let mut tasks = Tasks::default();
        let mut invariants = Vec::new();
        let mut expectations = None;
        let mut liveness_classes = LivenessClasses::default();
        if let Some(checked) = sim.task_checks() {
            checks.extend(checked.checks);
            tasks = checked.tasks;
            invariants = checked.invariants;
            checks.extend(invariants.iter().map(Invariant::to_check));
            expectations = Some(checked.expectations);
            liveness_classes = checked.classes;
        }
        let handoffs = sim.handoff_totals();
        let epochs = sim.epoch_counts();
        let trace_hash = format!("{:016x}", sim.hash.value());
        let metrics = sim.mode_metrics(&handoffs, epochs, wall_ms, &trace_hash);
        let (custody, lock_baseline) = match sim.plan.mode {
            Mode::Custody => (metrics, None),
            Mode::Lock => (None, metrics),
        };
        let mut report = Report {
            scenario: sim.plan.scenario.clone(),
            seed: sim.plan.seed,
            nodes: sim.plan.nodes,
            sim_seconds: sim.end as f64 / 1e6,
            wall_ms,
            events: sim.events,
            events_per_sec: sim.events as f64 / (wall_ms.max(1) as f64 / 1000.0),
            faults_injected: sim.injected,
            membership,
            traffic: sim.traffic,
            epochs,
            tasks,
            handoffs,
            checks,
            invariants,
            custody,
            lock_baseline,
            ratios: None,
            result: String::new(),
            expectations,
            liveness_classes,
            trace_hash,
            fault_plan: sim.plan,
        };
        report.result = Report::result_text(report.verdict()).into();
        report
    }
}

impl Sim {
    /// The membership section, and its checks: the views converge after the
    /// last fault, are still converged at the end, and no node was declared
    /// down while it was up (at low loss).
    fn membership_checks(&self) -> (Membership, [Check; 3]) {
        let settle = self.plan.settle_at_ms() * 1000;
        let mut membership = self.membership;
        membership.converge_ms = self.converged_at.map(|t| (t - settle) / 1000);
        let limit_ms = self.plan.expect.converge_within_ms;
        let converge = Check {
            name: "membership converges after the last fault".into(),
            ok: membership.converge_ms.is_some_and(|ms| ms <= limit_ms),
            kind: CheckKind::Liveness,
            detail: match membership.converge_ms {
                Some(ms) => format!(
                    "every running node saw the true membership {ms} ms after the last fault (limit {limit_ms} ms)"
                ),
                None => format!("not converged by the end, {} ms after the last fault", (self.end - settle) / 1000),
            },
            class: None,
        };
        let stays = self.converged();
        let still = Check {
            name: "membership is still converged at the end".into(),
            ok: stays,
            kind: CheckKind::Liveness,
            detail: if stays {
                "views equal the true membership".into()
            } else {
                format!("views differ at the end: {}", self.divergence(3).join("; "))
            },
            class: None,
        };
        let low_loss_false = membership.false_suspicions - membership.false_suspicions_at_high_loss;
        let loss_max = self.plan.expect.no_false_down_at_loss_max;
        let no_false = Check {
            name: format!("no false down declaration at loss ≤ {}%", loss_max * 100.0),
            ok: low_loss_false == 0,
            kind: CheckKind::Safety,
            detail: format!(
                "{low_loss_false} false down declarations at low loss; {} at higher loss (reported only)",
                membership.false_suspicions_at_high_loss
            ),
            class: None,
        };
        (membership, [converge, still, no_false])
    }

    /// The epoch store's checks: one chain of epochs (learned epochs never
    /// go back, a cut-off minority commits nothing), every running node
    /// ends on the latest epoch, each cut-off side stops acting as custodian
    /// within one lease, and the plan's batching of changes into epochs.
    fn epoch_checks(&self) -> Vec<Check> {
        let w = &self.epochs;
        let latest = w.committed.last().copied().unwrap_or(0);
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.running(i)).collect();
        let behind: Vec<String> = running
            .iter()
            .filter(|&&i| self.nodes[i].learned != latest)
            .take(5)
            .map(|&i| format!("n{i} at {}", self.nodes[i].learned))
            .collect();
        // Lives started after the store lost its voters' majority can never
        // be admitted, nor learn an epoch.
        let lost_at = self.watch.store_lost_at;
        let unadmittable = running
            .iter()
            .filter(|&&i| self.nodes[i].learned != latest)
            .all(|&i| lost_at.is_some_and(|at| self.nodes[i].started_at >= at));
        let chain_ok = w.violations.is_empty();
        let chain = Check {
            name: "the epoch chain is one chain, learned epochs never go backwards, a cut-off minority commits nothing"
                .into(),
            ok: chain_ok,
            kind: CheckKind::Safety,
            detail: if chain_ok {
                format!("{} epochs committed, one hash each", w.committed.len())
            } else {
                w.violations.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            },
            class: None,
        };
        let agree = Check {
            name: "every running node ends on the latest committed epoch".into(),
            ok: latest > 0 && behind.is_empty(),
            kind: CheckKind::Liveness,
            detail: if behind.is_empty() {
                format!("all {} running nodes at epoch {latest}", running.len())
            } else {
                format!("latest epoch {latest}; behind: {}", behind.join(", "))
            },
            class: (!behind.is_empty() && unadmittable).then(|| LivenessClass::StoreMajorityLost.name().to_string()),
        };
        let mut checks = vec![chain, agree];
        for (at, checked, acting) in &w.lease_checks {
            checks.push(Check {
                name: "the side without the voters' majority stops acting within one lease".into(),
                ok: acting.is_empty(),
                kind: CheckKind::Safety,
                detail: format!(
                    "{} of {checked} cut-off nodes could still act as custodian at {} ms{}",
                    acting.len(),
                    at / 1000,
                    if acting.is_empty() { String::new() } else { format!(": {acting:?}") }
                ),
                class: None,
            });
        }
        if let Some((from_ms, max)) = self.plan.expect.epochs_after {
            let count = w.committed_at.values().filter(|&&t| t >= from_ms * 1000).count();
            checks.push(Check {
                name: format!("changes from {} ms on are batched into at most {max} epochs", from_ms),
                ok: count as u64 <= max,
                kind: CheckKind::Safety,
                detail: format!("{count} epochs committed from {from_ms} ms on"),
                class: None,
            });
        }
        checks
    }

    /// The task checker over the trace, with the faults traced to the
    /// resources they touched (custody mode): `None` without a workload.
    fn task_checks(&self) -> Option<Checked> {
        let (Some(clients), Some(workload)) = (&self.clients, &self.plan.tasks) else { return None };
        let expect = self
            .plan
            .expect
            .tasks
            .unwrap_or(TaskExpect { all_complete: false, exactly_once: !self.plan.may_lose_custody() });
        let custody = self.plan.mode == Mode::Custody;
        let exposures = if custody { self.exposures(clients.tasks()) } else { Vec::new() };
        let owner = |epoch: u64, r: u64| self.owner_of(epoch, r);
        let run = TaskRun {
            workload,
            expect,
            tasks: clients.tasks(),
            counts: clients.counts(),
            trace: &self.trace,
            faults: FaultFacts {
                exposures: &exposures,
                run_wide: !custody && self.plan.may_lose_custody(),
                store_lost_at: if custody { self.watch.store_lost_at } else { None },
                owner: custody.then_some(&owner as &dyn Fn(u64, u64) -> Option<usize>),
                recovery: custody && self.plan.config.recovery,
            },
            epochs: self.epoch_facts(),
            exec_us: Some(&|k| clients.exec_us(k)),
        };
        Some(checker::check_run(self.plan.mode, &run))
    }

    /// Custody counters summed over every engine, running or stopped, with
    /// what moved from the first fault on.
    fn handoff_totals(&self) -> Handoffs {
        let mut handoffs = self.handoffs();
        handoffs.recovery_ms = self.recovery_times();
        handoffs.since_first_fault = self.at_first_fault.map(|before| Moved {
            range_transfers: handoffs.range_transfers - before.range_transfers,
            resources_moved: handoffs.resources_moved - before.resources_moved,
            tasks_moved: handoffs.tasks_moved - before.tasks_moved,
        });
        handoffs
    }

    /// With recovery, per resource whose custodian crashed while holding
    /// it: from the crash (or the arrival of the task that ran next, if
    /// later) to the start of its first execution after the crash.
    fn recovery_times(&self) -> Option<RecoveryTimes> {
        let clients = self.clients.as_ref()?;
        if self.plan.mode != Mode::Custody || !self.plan.config.recovery {
            return None;
        }
        let tasks = clients.tasks();
        let mut times: Vec<u64> = Vec::new();
        for e in self.exposures(tasks).iter().filter(|e| e.touch == Touch::Crashed) {
            let next =
                self.trace.iter().filter(|x| x.resource == e.resource && x.start > e.from).min_by_key(|x| x.start);
            if let Some(x) = next {
                let arrived = tasks.get(x.task as usize).map_or(0, |t| t.arrived);
                times.push(x.start - e.from.max(arrived).min(x.start));
            }
        }
        if times.is_empty() {
            return None;
        }
        times.sort_unstable();
        let ms = |us: u64| us.div_ceil(1000);
        let pick = |q: f64| ms(times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]);
        Some(RecoveryTimes {
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: ms(*times.last().expect("not empty")),
            resources: times.len() as u64,
        })
    }

    /// What the epoch store did.
    fn epoch_counts(&self) -> Epochs {
        let w = &self.epochs;
        Epochs {
            epochs_committed: w.committed.len() as u64,
            consensus_instances: w.committed.len() as u64 + w.votes.len() as u64,
            suspicion_votes: w.votes.len() as u64,
            lease_renewals: w.lease_renewals,
            latest_epoch: w.committed.last().copied().unwrap_or(0),
        }
    }

    /// This mode's numbers for the comparison ([`crate::metrics`]), with a
    /// workload.
    fn mode_metrics(&self, handoffs: &Handoffs, epochs: Epochs, wall_ms: u64, trace_hash: &str) -> Option<ModeMetrics> {
        let (clients, workload) = self.clients.as_ref().zip(self.plan.tasks.as_ref())?;
        let moved = self.at_first_fault.map_or((0, 0), |before| {
            (handoffs.transfer_messages - before.transfer_messages, handoffs.resources_moved - before.resources_moved)
        });
        Some(crate::metrics::mode_metrics(&crate::metrics::MetricsInput {
            mode: self.plan.mode,
            workload,
            exec_us: &|k| clients.exec_us(k),
            tasks: clients.tasks(),
            trace: &self.trace,
            end_us: self.end,
            epochs,
            frames: self.frames,
            lock: self.baseline.as_ref().map(|b| b.counts()),
            moved,
            events: self.events,
            wall_ms,
            trace_hash: trace_hash.to_string(),
            consensus_log: &self.consensus_log,
        }))
    }

    /// Custody counters summed over every engine, running or stopped.
    pub(super) fn handoffs(&self) -> Handoffs {
        let mut sum = self.stopped_custody;
        for node in &self.nodes {
            if let Some(engine) = &node.engine {
                add_custody(&mut sum, engine.custody_stats());
            }
        }
        sum
    }
}

/// Adds one engine's custody counters to the handoff totals.
pub(super) fn add_custody(sum: &mut Handoffs, stats: CustodyStats) {
    sum.range_transfers += stats.ranges_received;
    sum.transfer_messages += stats.transfers_received;
    sum.resources_moved += stats.resources_received;
    sum.tasks_moved += stats.tasks_received;
    sum.transfers_acked += stats.transfers_sent;
    sum.transfers_in_doubt += stats.transfers_in_doubt;
    sum.recoveries_started += stats.recoveries_started;
    sum.parts_recovered += stats.ranges_recovered;
    sum.resources_recovered += stats.resources_recovered;
    sum.tasks_recovered += stats.tasks_recovered;
    sum.recoveries_stuck += stats.recoveries_stuck;
}
