//! Simulated clients: a [`Workload`]'s arrivals and each task's submits.
//!
//! Arrivals are generated one at a time, as they come due, so a workload of
//! millions of tasks costs nothing up front. Every task keeps one record
//! ([`TaskRecord`]: its resource, its submits and how it ended), which the
//! checker reads with the execution trace.
//!
//! A client sends one request at a time per task, each on a fresh client
//! connection ([`ClientId`]). An answer that says "try again" (`Busy`,
//! `Unavailable`), or the node stopping before it answered, makes the
//! client submit the same task id again after the workload's `retry_ms`, to
//! a node picked afresh; the engine recognises the id, so a retry never
//! makes a second task.
//!
//! This module decides nothing about time or the network: the simulator
//! asks it what to send and tells it what came back.

use std::collections::BTreeMap;

use custody::engine::ClientId;
use custody::engine::Task;
use custody::engine::Token;
use custody::engine::wire::{self, Frame, Message, Request, Response};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::plan::{Arrivals, BACKLOG_BATCH, Distribution, ExecTime, Workload};
use crate::trace::{ClientCounts, TaskRecord, TaskStatus, resource_name, task_id};

/// SplitMix64's finalizer: spreads an integer into an independent-looking
/// one (seeds of the simulation's random streams, too).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The independent random streams of a workload: one draw per task each.
#[derive(Debug, Clone, Copy)]
enum Stream {
    /// Which resource (the Zipf or uniform draw).
    Resource = 1,
    /// Hot or cold (a hot workload).
    HotCold = 2,
    /// The execution time.
    Exec = 3,
    /// The gap before the next arrival (Poisson).
    Gap = 4,
}

/// What a workload decides per task, as pure functions of the run's seed
/// and the task's index: its resource, its execution time, its arrival.
///
/// Nothing here depends on what happened during the run (which node a
/// client picked, what was retried), so two runs of one plan in different
/// modes (custody and the lock baseline) get exactly the same tasks.
#[derive(Debug, Clone)]
pub struct TaskGen {
    workload: Workload,
    seed: u64,
    /// No task arrives later than this (true µs).
    arrivals_end_us: u64,
    /// Zipf: the cumulative probability of resources `0..=j`, for a binary
    /// search (one number per resource).
    zipf_cdf: Vec<f64>,
}

impl TaskGen {
    /// The generator of `workload` with `seed`.
    pub fn new(workload: Workload, seed: u64) -> TaskGen {
        let zipf_cdf = match workload.distribution {
            Distribution::Zipf { s } => {
                let n = workload.resources.min(Distribution::ZIPF_RESOURCES_MAX) as usize;
                let mut cdf = Vec::with_capacity(n);
                let mut sum = 0.0f64;
                for j in 0..n {
                    sum += ((j + 1) as f64).powf(-s);
                    cdf.push(sum);
                }
                for c in &mut cdf {
                    *c /= sum;
                }
                cdf
            }
            Distribution::Uniform | Distribution::Hot { .. } => Vec::new(),
        };
        TaskGen { workload, seed: mix(seed), arrivals_end_us: u64::MAX, zipf_cdf }
    }

    /// The same generator with no arrival later than `end_us` (true µs): a
    /// later one arrives at `end_us` (see [`Workload::arrivals_end_ms`]).
    pub fn with_arrivals_end(mut self, end_us: u64) -> TaskGen {
        self.arrivals_end_us = end_us;
        self
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// 64 random bits of task `k` for one purpose.
    fn bits(&self, stream: Stream, k: u64) -> u64 {
        mix(self.seed ^ mix(k.wrapping_mul(8).wrapping_add(stream as u64)))
    }

    /// A uniform draw in [0, 1) of task `k` for one purpose.
    fn unit(&self, stream: Stream, k: u64) -> f64 {
        (self.bits(stream, k) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (n ≥ 1) of task `k` for one purpose.
    fn below(&self, stream: Stream, k: u64, n: u64) -> u64 {
        ((u128::from(self.bits(stream, k)) * u128::from(n)) >> 64) as u64
    }

    /// Task `k`'s resource index.
    pub fn resource_of(&self, k: u64) -> u64 {
        let n = self.workload.resources.max(1);
        match self.workload.distribution {
            Distribution::Uniform => self.below(Stream::Resource, k, n),
            Distribution::Zipf { .. } => {
                let u = self.unit(Stream::Resource, k);
                // The first resource whose cumulative probability exceeds u.
                let j = self.zipf_cdf.partition_point(|&c| c <= u);
                j.min(self.zipf_cdf.len().saturating_sub(1)) as u64
            }
            Distribution::Hot { fraction } => {
                if n == 1 || self.unit(Stream::HotCold, k) < fraction {
                    0
                } else {
                    1 + self.below(Stream::Resource, k, n - 1)
                }
            }
        }
    }

    /// How long task `k` runs, in true µs (every execution of it).
    pub fn exec_us(&self, k: u64) -> u64 {
        let mean_us = self.workload.task_ms.saturating_mul(1000);
        match self.workload.exec {
            ExecTime::Fixed => mean_us,
            ExecTime::Exponential => {
                let u = self.unit(Stream::Exec, k);
                // 1 − u is in (0, 1]: its logarithm is finite.
                let us = -(1.0 - u).ln() * mean_us as f64;
                (us.round() as u64).min(mean_us.saturating_mul(ExecTime::EXP_CAP))
            }
        }
    }

    /// When task `k` arrives (true µs), given when task `k − 1` arrived
    /// (ignored for `k = 0`), or `None` past the last task.
    pub fn arrival_us(&self, k: u64, previous: u64) -> Option<u64> {
        let w = &self.workload;
        if k >= w.count {
            return None;
        }
        let start = w.start_at_ms.saturating_mul(1000);
        let at = match w.arrivals {
            Arrivals::Even => start + (k as f64 * 1e6 / w.rate) as u64,
            Arrivals::Poisson if k == 0 => start,
            Arrivals::Poisson => {
                let u = self.unit(Stream::Gap, k);
                let gap_s = -(1.0 - u).ln() / w.rate;
                previous + (gap_s * 1e6).min(3.6e9) as u64
            }
            Arrivals::Backlog => start + (k / BACKLOG_BATCH) * 1000,
        };
        Some(at.min(self.arrivals_end_us.max(start)))
    }
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    task: u64,
    node: usize,
}

/// What the simulator must do after a client event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Nothing.
    None,
    /// Submit task `.0` again after the workload's retry delay.
    Retry(u64),
}

/// Every simulated client of one run.
pub struct Clients {
    workload: Workload,
    task_gen: TaskGen,
    /// Which node a client asks: the only draw that depends on the run.
    rng: Xoshiro256PlusPlus,
    tasks: Vec<TaskRecord>,
    /// True time of the next arrival, µs, while tasks remain.
    next_arrival: Option<u64>,
    outstanding: BTreeMap<u64, Outstanding>,
    next_client: u64,
    counts: ClientCounts,
}

impl Clients {
    /// The clients of `workload`, drawing from `seed`, in a run of
    /// `duration_ms` (arrivals end by [`Workload::arrivals_end_ms`]).
    pub fn new(workload: Workload, seed: u64, duration_ms: u64) -> Clients {
        let end_us = workload.arrivals_end_ms(duration_ms).saturating_mul(1000);
        let task_gen = TaskGen::new(workload, seed).with_arrivals_end(end_us);
        let next_arrival = task_gen.arrival_us(0, 0);
        Clients {
            workload,
            task_gen,
            rng: Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ 0x6e6f_6465)),
            tasks: Vec::new(),
            next_arrival,
            outstanding: BTreeMap::new(),
            next_client: 1,
            counts: ClientCounts::default(),
        }
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The per-task generator (resources, execution times, arrivals).
    pub fn task_gen(&self) -> &TaskGen {
        &self.task_gen
    }

    /// Task `k`'s resource index.
    pub fn resource_of(&self, k: u64) -> u64 {
        self.task_gen.resource_of(k)
    }

    /// How long task `k` runs, true µs.
    pub fn exec_us(&self, k: u64) -> u64 {
        self.task_gen.exec_us(k)
    }

    /// When the next task arrives (true µs), if any remain.
    pub fn next_arrival(&self) -> Option<u64> {
        self.next_arrival
    }

    /// The task due at `now` arrives: its index. Schedules the one after.
    pub fn arrive(&mut self, now: u64) -> u64 {
        let k = self.tasks.len() as u64;
        let resource = self.task_gen.resource_of(k);
        self.tasks.push(TaskRecord {
            resource,
            arrived: now,
            acked: None,
            gateway_fault: None,
            attempts: 0,
            status: TaskStatus::Open,
        });
        self.counts.submitted += 1;
        let due = self.next_arrival.unwrap_or(now);
        self.next_arrival = self.task_gen.arrival_us(k + 1, due);
        k
    }

    /// Task `k` was acknowledged at `now` apart from its answer (a
    /// custodian's `Accepted`, the lock baseline's durable enqueue); the
    /// first time counts.
    pub fn acknowledge(&mut self, k: u64, now: u64) {
        if let Some(t) = self.tasks.get_mut(k as usize) {
            t.acked.get_or_insert(now);
        }
    }

    /// The task of the request on client connection `client`, if it waits.
    pub fn task_of(&self, client: ClientId) -> Option<u64> {
        self.outstanding.get(&client.0).map(|o| o.task)
    }

    /// `node` crashed, paused or was cut off at `now`: the tasks whose
    /// requests wait there were touched by a fault (the first time counts).
    pub fn gateway_fault(&mut self, node: usize, now: u64) {
        for o in self.outstanding.values().filter(|o| o.node == node) {
            self.tasks[o.task as usize].gateway_fault.get_or_insert(now);
        }
    }

    /// Task `k` completed with `token` at `now`, as its client learns it
    /// without a wire answer (the lock baseline); the first answer counts.
    pub fn complete(&mut self, k: u64, token: Token, now: u64) {
        let t = &mut self.tasks[k as usize];
        if t.status == TaskStatus::Open {
            t.status = TaskStatus::Completed { token, task_id: task_id(k), at: now };
            self.counts.completed += 1;
        }
    }

    /// Picks one of `candidates` (nodes a client may ask) for task `k`'s
    /// next submit.
    pub fn pick_node(&mut self, candidates: &[usize]) -> Option<usize> {
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())])
    }

    /// Whether task `k` may be submitted again; if not, it is given up.
    pub fn may_retry(&mut self, k: u64) -> bool {
        let max = self.workload.max_attempts;
        let t = &mut self.tasks[k as usize];
        if t.status != TaskStatus::Open {
            return false;
        }
        if t.attempts >= max {
            t.status = TaskStatus::GaveUp;
            self.counts.gave_up += 1;
            return false;
        }
        true
    }

    /// No node could be asked for task `k`: retry it later (if it may).
    pub fn no_node(&mut self, k: u64) -> ClientAction {
        self.counts.no_node_retries += 1;
        ClientAction::Retry(k)
    }

    /// A submit of task `k` to `node`: the client connection and the
    /// request frame to deliver.
    pub fn submit(&mut self, k: u64, node: usize) -> (ClientId, Vec<u8>) {
        let t = &mut self.tasks[k as usize];
        t.attempts += 1;
        self.counts.requests += 1;
        let client = self.next_client;
        self.next_client += 1;
        self.outstanding.insert(client, Outstanding { task: k, node });
        let task = Task { id: task_id(k), resource: resource_name(t.resource), payload: Vec::new() };
        let bytes = wire::encode_message(&Message::Request(Request::Submit { task, wait: true }))
            .expect("a small task encodes");
        (ClientId(client), bytes)
    }

    /// Whether a request is still waiting for its answer (a stopped node's
    /// requests are not: their clients saw the connection reset).
    pub fn is_outstanding(&self, client: ClientId) -> bool {
        self.outstanding.contains_key(&client.0)
    }

    /// `node` stopped: its unanswered requests reset, and their tasks are
    /// retried.
    pub fn node_stopped(&mut self, node: usize) -> Vec<u64> {
        let reset: Vec<u64> = self.outstanding.iter().filter(|(_, o)| o.node == node).map(|(&c, _)| c).collect();
        let mut retry = Vec::with_capacity(reset.len());
        for client in reset {
            let o = self.outstanding.remove(&client).expect("listed");
            self.counts.reset_retries += 1;
            retry.push(o.task);
        }
        retry
    }

    /// An answer on client connection `client` at true time `now`.
    pub fn on_reply(&mut self, client: ClientId, bytes: &[u8], now: u64) -> ClientAction {
        let Some(o) = self.outstanding.remove(&client.0) else { return ClientAction::None };
        let k = o.task;
        let response = match wire::decode_frame(bytes) {
            Ok(Frame::Message(Message::Response(r))) => r,
            Ok(_) => Response::Error("an answer that is not a response".into()),
            Err(e) => Response::Error(format!("an answer that does not decode: {e}")),
        };
        let t = &mut self.tasks[k as usize];
        match response {
            Response::Completed(c) => {
                t.status = TaskStatus::Completed { token: c.token, task_id: c.task_id, at: now };
                self.counts.completed += 1;
                ClientAction::None
            }
            Response::Unavailable(_) => {
                self.counts.unavailable_retries += 1;
                ClientAction::Retry(k)
            }
            Response::Busy => {
                self.counts.busy_retries += 1;
                ClientAction::Retry(k)
            }
            Response::Error(message) => {
                t.status = TaskStatus::Rejected(message);
                self.counts.rejected += 1;
                ClientAction::None
            }
            other => {
                t.status = TaskStatus::Rejected(format!("unexpected answer to a submit: {other:?}"));
                self.counts.rejected += 1;
                ClientAction::None
            }
        }
    }

    /// Every task that arrived, by index.
    pub fn tasks(&self) -> &[TaskRecord] {
        &self.tasks
    }

    /// The counters.
    pub fn counts(&self) -> ClientCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(arrivals: Arrivals) -> Workload {
        Workload {
            count: 1000,
            resources: 10,
            distribution: Distribution::Uniform,
            rate: 100.0,
            arrivals,
            task_ms: 10,
            exec: ExecTime::Fixed,
            start_at_ms: 2_000,
            retry_ms: 100,
            max_attempts: 3,
        }
    }

    /// How many of `n` tasks land on each resource.
    fn histogram(g: &TaskGen, n: u64) -> Vec<u64> {
        let mut counts = vec![0u64; g.workload().resources as usize];
        for k in 0..n {
            counts[g.resource_of(k) as usize] += 1;
        }
        counts
    }

    #[test]
    fn uniform_spreads_evenly() {
        let w = Workload { resources: 100, ..workload(Arrivals::Even) };
        let counts = histogram(&TaskGen::new(w, 5), 200_000);
        // 2,000 expected each; 5 standard deviations is about 220.
        assert!(counts.iter().all(|&c| (1_780..=2_220).contains(&c)), "{counts:?}");
    }

    #[test]
    fn zipf_frequencies_follow_the_law() {
        let resources = 100_000;
        let s = Distribution::ZIPF_S;
        let w = Workload { resources, distribution: Distribution::Zipf { s }, ..workload(Arrivals::Even) };
        let n = 1_000_000;
        let counts = histogram(&TaskGen::new(w, 42), n);
        let h: f64 = (1..=resources).map(|j| (j as f64).powf(-s)).sum();
        for j in [0usize, 1, 2, 9, 99] {
            let expected = n as f64 * ((j + 1) as f64).powf(-s) / h;
            let got = counts[j] as f64;
            // Within 5 standard deviations (binomial).
            let sd = (expected * (1.0 - expected / n as f64)).sqrt();
            assert!((got - expected).abs() < 5.0 * sd, "resource {j}: {got} vs {expected:.0}");
        }
        // The head is heavy, the tail long: the top 1% of resources take
        // most of the tasks, and the tail still gets some.
        let head: u64 = counts[..1_000].iter().sum();
        let expected_head: f64 = (1..=1_000).map(|j| (j as f64).powf(-s)).sum::<f64>() / h;
        assert!((head as f64 / n as f64 - expected_head).abs() < 0.005, "{head}");
        assert!(counts[50_000..].iter().sum::<u64>() > 0);
        // Another seed, other draws, same law.
        let other = histogram(&TaskGen::new(w, 43), 10_000);
        assert_ne!(other, histogram(&TaskGen::new(w, 42), 10_000));
    }

    #[test]
    fn hot_puts_its_share_on_resource_zero_and_spreads_the_rest() {
        let w =
            Workload { resources: 50, distribution: Distribution::Hot { fraction: 0.9 }, ..workload(Arrivals::Even) };
        let n = 100_000;
        let counts = histogram(&TaskGen::new(w, 7), n);
        let hot = counts[0] as f64 / n as f64;
        assert!((hot - 0.9).abs() < 0.005, "{hot}");
        // The other 10,000 over 49 resources: about 204 each.
        assert!(counts[1..].iter().all(|&c| (130..=280).contains(&c)), "{counts:?}");
        // All hot, or one resource: everything on 0.
        let all = Workload { distribution: Distribution::Hot { fraction: 1.0 }, ..w };
        assert_eq!(histogram(&TaskGen::new(all, 7), 1000)[0], 1000);
        let one = Workload { resources: 1, ..w };
        assert_eq!(histogram(&TaskGen::new(one, 7), 1000), vec![1000]);
    }

    #[test]
    fn execution_times_are_a_function_of_seed_and_task() {
        let fixed = TaskGen::new(workload(Arrivals::Poisson), 3);
        assert!((0..1000).all(|k| fixed.exec_us(k) == 10_000));
        let w = Workload { exec: ExecTime::Exponential, ..workload(Arrivals::Poisson) };
        let a = TaskGen::new(w, 3);
        let b = TaskGen::new(w, 3);
        let times: Vec<u64> = (0..100_000).map(|k| a.exec_us(k)).collect();
        // The same for the same (seed, task), in any order of asking.
        assert!((0..100_000u64).rev().all(|k| b.exec_us(k) == times[k as usize]));
        assert!((0..100).any(|k| TaskGen::new(w, 4).exec_us(k) != times[k as usize]), "another seed differs");
        // Exponential with mean 10 ms, cut at 100 ms.
        let mean = times.iter().sum::<u64>() as f64 / times.len() as f64;
        assert!((mean - 10_000.0).abs() < 150.0, "{mean}");
        assert!(times.iter().all(|&t| t <= 100_000));
        let above_mean = times.iter().filter(|&&t| t > 10_000).count() as f64 / times.len() as f64;
        assert!((above_mean - (-1f64).exp()).abs() < 0.01, "{above_mean}");
        // Clients answer the same as their generator.
        let clients = Clients::new(w, 3, 60_000);
        assert_eq!(clients.exec_us(5), a.exec_us(5));
        assert_eq!(clients.resource_of(5), a.resource_of(5));
    }

    #[test]
    fn the_same_tasks_arrive_whatever_the_clients_do_meanwhile() {
        // Two clients of one workload; one picks nodes between arrivals.
        let mut a = Clients::new(workload(Arrivals::Poisson), 9, 60_000);
        let mut b = Clients::new(workload(Arrivals::Poisson), 9, 60_000);
        while let Some(at) = a.next_arrival() {
            assert_eq!(b.next_arrival(), Some(at));
            let k = a.arrive(at);
            a.pick_node(&[1, 2, 3]);
            let (_, _) = a.submit(k, 1);
            assert_eq!(b.arrive(at), k);
        }
        assert_eq!(b.next_arrival(), None);
        assert!(a.tasks().iter().zip(b.tasks()).all(|(x, y)| x.resource == y.resource && x.arrived == y.arrived));
    }

    #[test]
    fn a_backlog_is_handed_out_lazily_in_batches() {
        let w = Workload { count: 2_500_000, arrivals: Arrivals::Backlog, ..workload(Arrivals::Even) };
        let mut c = Clients::new(w, 1, 60_000);
        // Nothing is generated up front.
        assert!(c.tasks().is_empty());
        assert_eq!(c.next_arrival(), Some(2_000_000));
        // The first batch all at the start, the next one 1 ms later.
        for k in 0..BACKLOG_BATCH {
            assert_eq!(c.next_arrival(), Some(2_000_000));
            assert_eq!(c.arrive(2_000_000), k);
        }
        assert_eq!(c.next_arrival(), Some(2_001_000));
        assert_eq!(c.tasks().len() as u64, BACKLOG_BATCH);
        // The last task of 2.5 million is handed out 2.499 s after the start.
        let g = c.task_gen();
        assert_eq!(g.arrival_us(2_499_999, 0), Some(2_000_000 + 2_499_000));
        assert_eq!(g.arrival_us(2_500_000, 0), None);
        assert_eq!(w.nominal_end_ms(), 2_000 + 2_500);
    }

    #[test]
    fn arrivals_come_lazily_at_the_rate() {
        for arrivals in [Arrivals::Even, Arrivals::Poisson] {
            let mut c = Clients::new(workload(arrivals), 9, 60_000);
            let mut last = 0;
            let mut n = 0;
            while let Some(at) = c.next_arrival() {
                assert!(at >= last);
                last = at;
                assert_eq!(c.arrive(at), n);
                n += 1;
            }
            assert_eq!(n, 1000);
            assert_eq!(c.tasks().len(), 1000);
            // 1,000 tasks at 100/s from 2 s: about 10 s.
            let span_s = (last - 2_000_000) as f64 / 1e6;
            assert!((8.0..12.0).contains(&span_s), "{arrivals:?}: {span_s} s");
            assert!(c.tasks().iter().all(|t| t.resource < 10));
        }
    }

    #[test]
    fn poisson_arrivals_end_before_the_drain_margin() {
        // 1,000 tasks at 100/s from 2 s: nominally until 12 s. In a run of
        // 14 s, arrivals must end by 14 − 5 = 9 s; in a long run, by the
        // nominal end (the Poisson tail is cut there).
        for (duration_ms, end_us) in [(14_000u64, 9_000_000u64), (600_000, 12_000_000)] {
            let w = workload(Arrivals::Poisson);
            assert_eq!(w.arrivals_end_ms(duration_ms) * 1000, end_us);
            for seed in 0..20 {
                let mut c = Clients::new(w, seed, duration_ms);
                let mut last = 0;
                while let Some(at) = c.next_arrival() {
                    last = at;
                    c.arrive(at);
                }
                assert_eq!(c.tasks().len(), 1000, "no task is dropped");
                assert!(last <= end_us, "seed {seed}: a task arrives at {last} µs, after {end_us}");
            }
        }
        // Unclamped, some seed's Poisson tail runs past the nominal end:
        // the clamp is what keeps it in.
        let w = workload(Arrivals::Poisson);
        let overrun = (0..20).any(|seed| {
            let g = TaskGen::new(w, seed);
            let mut at = 0;
            for k in 0..w.count {
                at = g.arrival_us(k, at).expect("in range");
            }
            at > 12_000_000
        });
        assert!(overrun);
    }

    #[test]
    fn retries_are_bounded_and_resets_retry_the_stopped_nodes_tasks() {
        let mut c = Clients::new(workload(Arrivals::Even), 1, 60_000);
        let k = c.arrive(0);
        let (a, _) = c.submit(k, 3);
        let busy = wire::encode_message(&Message::Response(Response::Busy)).unwrap();
        assert_eq!(c.on_reply(a, &busy, 10), ClientAction::Retry(k));
        assert_eq!(c.on_reply(a, &busy, 11), ClientAction::None, "answered once");
        assert!(c.may_retry(k));
        let (b, _) = c.submit(k, 4);
        assert!(c.is_outstanding(b));
        assert_eq!(c.node_stopped(3), Vec::<u64>::new());
        assert_eq!(c.node_stopped(4), vec![k]);
        assert!(!c.is_outstanding(b));
        assert!(c.may_retry(k));
        c.submit(k, 5);
        assert!(!c.may_retry(k), "three submits");
        assert_eq!(c.tasks()[0].status, TaskStatus::GaveUp);
        let counts = c.counts();
        assert_eq!((counts.busy_retries, counts.reset_retries, counts.gave_up, counts.requests), (1, 1, 1, 3));
    }
}
