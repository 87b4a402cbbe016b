//! The workload inside the simulation: arrivals, the clients' submits to
//! nodes and their retries, and the task handlers. An [`Output::Execute`]
//! runs for its task's time of true time, then its end is fed back to the
//! same node as [`Input::TaskDone`], unless the node stopped meanwhile (its
//! engine, and the handler with it, are gone). An [`Output::Cancel`] stops
//! the handler at once: the execution ends then, and that end is fed back
//! instead. Every execution goes into the trace with true start and end
//! times.
//!
//! [`Output::Execute`]: custody::engine::Output::Execute
//! [`Output::Cancel`]: custody::engine::Output::Cancel

use custody::engine::{ClientId, Execution, Input, Outcome};

use super::{Ev, Sim};
use crate::trace::{ExecRecord, parse_index};
use crate::workload::ClientAction;

impl Sim {
    /// Node `i` starts a task: record it, and report its end after the
    /// workload's task time.
    pub(super) fn execute(&mut self, i: usize, execution: Execution) {
        let Execution { task, token, attempt, .. } = execution;
        self.hash.bytes(task.id.as_bytes());
        self.hash.u64(token.epoch);
        self.hash.u64(token.seq);
        self.hash.u64(u64::from(attempt));
        let exec = self.trace.len();
        self.trace.push(ExecRecord {
            node: i,
            task: parse_index(&task.id, 't').unwrap_or(u64::MAX),
            resource: parse_index(&task.resource, 'r').unwrap_or(u64::MAX),
            token,
            attempt,
            start: self.now,
            end: None,
            cancelled: false,
        });
        let node = &mut self.nodes[i];
        node.executing.insert(exec);
        let boot = node.boot;
        // Each task runs for its own time (the workload's, per task).
        let k = self.trace[exec].task;
        let run_us = self.clients.as_ref().filter(|_| k != u64::MAX).map_or(self.task_us, |c| c.exec_us(k));
        self.push(self.now + run_us, Ev::TaskDone { node: i, boot, exec, resource: task.resource, seq: token.seq });
    }

    /// Node `i` cancels its execution of `resource`'s task `seq`: the
    /// handler honours it at once. The execution ends now in the trace, and
    /// its end is reported to the node next (its own end, due later, is
    /// dropped).
    pub(super) fn cancel(&mut self, i: usize, resource: String, seq: u64) {
        let r = parse_index(&resource, 'r').unwrap_or(u64::MAX);
        let node = &mut self.nodes[i];
        let Some(exec) =
            node.executing.iter().copied().find(|&e| self.trace[e].resource == r && self.trace[e].token.seq == seq)
        else {
            return;
        };
        node.executing.remove(&exec);
        self.trace[exec].end = Some(self.now);
        self.trace[exec].cancelled = true;
        let boot = node.boot;
        self.push(self.now, Ev::CancelDone { node: i, boot, resource, seq });
    }

    /// The end of a cancelled execution reaches its node (as for
    /// [`Sim::deliver_task_done`]).
    pub(super) fn deliver_cancel_done(&mut self, node: usize, boot: u64, resource: String, seq: u64) {
        let n = &mut self.nodes[node];
        if n.boot != boot || n.engine.is_none() {
            return;
        }
        if n.paused {
            n.held.push(Ev::CancelDone { node, boot, resource, seq });
            return;
        }
        self.input(node, Input::TaskDone { resource, seq, outcome: Outcome::Failed("cancelled".into()) });
    }

    /// A handler's end reaches its node: only the same running life takes
    /// it; a paused one takes it when it resumes. An execution that was
    /// cancelled has ended already.
    pub(super) fn deliver_task_done(&mut self, node: usize, boot: u64, exec: usize, resource: String, seq: u64) {
        let n = &mut self.nodes[node];
        if n.boot != boot || n.engine.is_none() || !n.executing.contains(&exec) {
            return;
        }
        if n.paused {
            // The handler's end waits with everything else.
            n.held.push(Ev::TaskDone { node, boot, exec, resource, seq });
            return;
        }
        n.executing.remove(&exec);
        self.trace[exec].end = Some(self.now);
        self.input(node, Input::TaskDone { resource, seq, outcome: Outcome::Ok(Vec::new()) });
    }

    /// The workload's next task arrives, and its client submits it (to the
    /// lock service, in the lock baseline).
    pub(super) fn arrival(&mut self) {
        if self.now > self.plan.duration_ms * 1000 {
            // Draining past the end (the lock baseline): no new tasks.
            return;
        }
        let Some(clients) = self.clients.as_mut() else { return };
        let task = clients.arrive(self.now);
        if let Some(at) = clients.next_arrival() {
            self.push(at, Ev::Arrival);
        }
        if self.baseline.is_some() {
            // The lock baseline: the client enqueues it at the lock service.
            self.with_baseline(|b, io| b.arrive(task, io));
            return;
        }
        self.submit_task(task);
    }

    /// A client submits task `task` to a random node that is running, not
    /// paused, and knows a configuration.
    pub(super) fn submit_task(&mut self, task: u64) {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.running(i) && !self.nodes[i].paused && self.nodes[i].learned > 0)
            .collect();
        let Some(clients) = self.clients.as_mut() else { return };
        let Some(node) = clients.pick_node(&candidates) else {
            let action = clients.no_node(task);
            self.client_action(action);
            return;
        };
        let (client, bytes) = clients.submit(task, node);
        // Clients sit on the network like any node, never partitioned off.
        let net = self.network.default;
        let at = self.now + self.latency(&net);
        self.push(at, Ev::ClientFrame { node, client, bytes });
    }

    /// Does what a client decided: retry a task after the workload's delay.
    pub(super) fn client_action(&mut self, action: ClientAction) {
        match action {
            ClientAction::None => {}
            ClientAction::Retry(task) => {
                let retry_us = self.clients.as_ref().map_or(0, |c| c.workload().retry_ms * 1000);
                self.push(self.now + retry_us, Ev::ClientRetry { task });
            }
        }
    }

    /// A client's request reaches node `node`.
    pub(super) fn deliver_client_frame(&mut self, node: usize, client: ClientId, bytes: Vec<u8>) {
        // A request whose node stopped meanwhile was reset, and retried.
        if !self.clients.as_ref().is_some_and(|c| c.is_outstanding(client)) {
            return;
        }
        if self.nodes[node].paused {
            self.nodes[node].held.push(Ev::ClientFrame { node, client, bytes });
            return;
        }
        // A gateway that is itself the custodian accepts the submit as it
        // arrives, without a frame: its acceptance counter tells.
        let accepted = |sim: &Sim| sim.nodes[node].engine.as_ref().map_or(0, |e| e.custody_stats().tasks_accepted);
        let before = accepted(self);
        let task = self.clients.as_ref().and_then(|c| c.task_of(client));
        self.input(node, Input::ClientFrame { client, bytes });
        if let Some(k) = task
            && accepted(self) > before
        {
            let now = self.now;
            if let Some(c) = self.clients.as_mut() {
                c.acknowledge(k, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ClockSpec, Fault, LinkModel, Plan};

    /// A small plan with a workload: 4 formed nodes, tasks from 3 s to 8 s.
    fn task_plan(faults: Vec<crate::plan::TimedFault>) -> Plan {
        use crate::plan::{Arrivals, Expect, NetModel, Workload};
        Plan {
            scenario: "test".into(),
            seed: 11,
            nodes: 4,
            duration_ms: 30_000,
            config: custody::Config::lan(),
            net: NetModel { default: LinkModel::lan(), links: Vec::new() },
            formed: 4,
            clocks: vec![ClockSpec { offset_us: 1_000, drift_ppm: 50 }; 4],
            faults,
            tasks: Some(Workload {
                count: 500,
                resources: 20,
                distribution: Default::default(),
                rate: 100.0,
                arrivals: Arrivals::Even,
                task_ms: 200,
                exec: Default::default(),
                start_at_ms: 3_000,
                retry_ms: 100,
                max_attempts: 5,
            }),
            expect: Expect {
                converge_within_ms: 30_000,
                no_false_down_at_loss_max: 0.05,
                epochs_after: None,
                tasks: None,
            },
            mode: crate::plan::Mode::default(),
        }
    }

    #[test]
    fn a_crashed_nodes_handlers_end_with_it_and_its_clients_retry_elsewhere() {
        use crate::plan::TimedFault;
        let plan = task_plan(vec![TimedFault { at_ms: 5_000, fault: Fault::Crash { node: 2 } }]);
        let finished = Sim::new(plan).run();
        let sim = &finished.sim;
        let on_n2: Vec<&ExecRecord> = sim.trace.iter().filter(|e| e.node == 2).collect();
        assert!(!on_n2.is_empty(), "n2 ran tasks before it crashed");
        assert!(on_n2.iter().all(|e| e.start <= 5_000_000 && e.end.is_some_and(|end| end <= 5_000_000)));
        // Tasks of 200 ms at 100/s over 20 resources: some ran when it crashed.
        assert!(on_n2.iter().any(|e| e.end == Some(5_000_000)), "a handler died with its node");
        // Every other execution ran its full time.
        assert!(sim.trace.iter().filter(|e| e.node != 2).all(|e| e.end == Some(e.start + 200_000)));
        assert!(sim.stopped_custody.range_transfers > 0, "the crashed node's counters are kept");
        let report = finished.report(0);
        assert!(report.tasks.reset_retries > 0, "{:?}", report.tasks);
        // Custody of n2's resources is lost (recovery is a later step), so
        // tasks may be lost; but nothing unsafe happened.
        assert_ne!(report.verdict(), crate::report::Verdict::SafetyFailed, "{:#?}", report.checks);
        // Every invariant was checked; the safety ones held.
        assert_eq!(report.invariants.len(), 9);
        assert!(report.invariants.iter().all(|i| i.ok || i.unclassified() == 0), "{:#?}", report.invariants);
    }

    #[test]
    fn a_paused_nodes_handlers_end_when_it_resumes() {
        use crate::plan::TimedFault;
        let plan = task_plan(vec![
            TimedFault { at_ms: 5_000, fault: Fault::Pause { node: 1 } },
            TimedFault { at_ms: 5_500, fault: Fault::Resume { node: 1 } },
        ]);
        let finished = Sim::new(plan).run();
        let stretched: Vec<&ExecRecord> =
            finished.sim.trace.iter().filter(|e| e.end.is_some_and(|end| end > e.start + 200_000)).collect();
        assert!(!stretched.is_empty(), "a handler running across the pause ends after it");
        assert!(stretched.iter().all(|e| e.node == 1 && e.end == Some(5_500_000)), "{stretched:?}");
        let report = finished.report(0);
        assert_eq!(report.tasks.completed, 500, "{:?} {:#?}", report.tasks, report.checks);
        assert_eq!(report.verdict(), crate::report::Verdict::Pass, "{:#?}", report.checks);
    }
}
