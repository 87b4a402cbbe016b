//! Tasks through the public API: in-process nodes, a recording handler.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody::engine::{Outcome, Task, Token};
use custody::runtime::{ExecCtx, Handler};
use custody::{Cluster, Config, Error};

use crate::util::{formation, leave_bound, limit, wait_for};

/// The timings the nodes of these tests run with.
fn config() -> Config {
    Config::fast()
}

/// One execution as the handler saw it.
#[derive(Debug, Clone)]
struct Run {
    node: Arc<str>,
    task_id: String,
    resource: String,
    token: Token,
    start: Instant,
    end: Instant,
}

/// Records every execution; runs for `work`.
#[derive(Clone)]
struct Recorder {
    runs: Arc<Mutex<Vec<Run>>>,
    work: Duration,
}

impl Handler for Recorder {
    async fn execute(&self, ctx: ExecCtx, _payload: Vec<u8>) -> Outcome {
        let start = Instant::now();
        tokio::time::sleep(self.work).await;
        let end = Instant::now();
        let run = Run { node: ctx.node, task_id: ctx.task_id, resource: ctx.resource, token: ctx.token, start, end };
        self.runs.lock().unwrap().push(run);
        Outcome::Ok(Vec::new())
    }
}

async fn start(name: &str, seeds: &[SocketAddr], recorder: &Recorder) -> Cluster {
    Cluster::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .name(name)
        .join(seeds.iter().copied())
        .config(config())
        .handler(recorder.clone())
        .start()
        .await
        .expect("node starts")
}

/// Waits until every node knows one configuration of `members` members and
/// holds a lease.
async fn formed(nodes: &[Cluster], members: usize) {
    wait_for(limit(formation(&config(), members)), "one configuration with every node", || {
        let nodes = nodes.to_vec();
        async move {
            let mut epochs = Vec::new();
            for node in &nodes {
                let status = node.status().await.ok()?;
                (status.members.len() == members && status.lease_remaining_ms > 0).then_some(())?;
                epochs.push(status.epoch);
            }
            epochs.windows(2).all(|w| w[0] == w[1]).then_some(())
        }
    })
    .await;
}

/// Submits `task` through the live gateways until it has run, retrying
/// (with the same id: the retry is the same task) when the answer is busy,
/// unavailable, or the gateway stopped. Gives up once a whole graceful leave
/// could have passed, generously: no range stays unavailable longer.
async fn run_to_completion(gateways: Arc<Mutex<Vec<Cluster>>>, first: usize, task: Task) -> Token {
    let give_up = Instant::now() + limit(leave_bound(&config()));
    for attempt in first.. {
        if Instant::now() > give_up {
            break;
        }
        let gateway = {
            let live = gateways.lock().unwrap();
            live[attempt % live.len()].clone()
        };
        match gateway.submit_and_wait(task.clone()).await {
            Ok(done) => return done.token,
            Err(Error::Busy | Error::Unavailable(_) | Error::Stopped) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("task {}: {e}", task.id),
        }
    }
    panic!("task {} did not complete within {:?}", task.id, limit(leave_bound(&config())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_run_once_each_in_order_across_a_join_and_a_graceful_leave() {
    const TASKS: usize = 10_000;
    const RESOURCES: usize = 500;
    let recorder = Recorder { runs: Arc::default(), work: Duration::from_millis(1) };
    let first = start("n0", &[], &recorder).await;
    let seeds = [first.local_addr()];
    let nodes = vec![first.clone(), start("n1", &seeds, &recorder).await, start("n2", &seeds, &recorder).await];
    formed(&nodes, 3).await;

    let gateways = Arc::new(Mutex::new(nodes.clone()));
    let began = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    let leaver = nodes[1].clone();
    let mut joiner = None;
    for i in 0..TASKS {
        // Membership changes while tasks flow: a fourth node joins, then
        // n1 leaves gracefully.
        if i == 2_000 {
            let n3 = start("n3", &seeds, &recorder).await;
            gateways.lock().unwrap().push(n3.clone());
            joiner = Some(n3);
        }
        if i == 5_000 {
            gateways.lock().unwrap().retain(|g| g.local_addr() != leaver.local_addr());
            let leaver = leaver.clone();
            tokio::spawn(async move { leaver.leave().await });
        }
        let task = Task { id: format!("task-{i}"), resource: format!("res-{}", i % RESOURCES), payload: Vec::new() };
        let gateways = gateways.clone();
        submitters.spawn(run_to_completion(gateways, i, task));
        // Paced (about 2,000 tasks/s) so the run spans both epoch changes;
        // at most 256 submits in flight.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while submitters.len() >= 256 {
            submitters.join_next().await.expect("a submitter").expect("no panic");
        }
    }
    while let Some(done) = submitters.join_next().await {
        done.expect("no panic");
    }
    let took = began.elapsed();
    tokio::time::timeout(limit(leave_bound(&config())), leaver.stopped()).await.expect("the leaver stopped");

    let runs = recorder.runs.lock().unwrap().clone();
    // Every task ran exactly once.
    let mut per_task: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &runs {
        *per_task.entry(&r.task_id).or_default() += 1;
    }
    assert_eq!(per_task.len(), TASKS, "every task ran");
    let twice: Vec<_> = per_task.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tasks ran more than once: {twice:?}");
    // Per resource: no two executions overlap, tokens strictly increase and
    // sequence numbers run 1, 2, 3, ... in execution order.
    let mut per_resource: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in &runs {
        per_resource.entry(&r.resource).or_default().push(r);
    }
    assert_eq!(per_resource.len(), RESOURCES);
    let mut moved = 0;
    for (resource, mut rs) in per_resource {
        rs.sort_by_key(|r| r.start);
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(r.token.seq, i as u64 + 1, "{resource}: sequence order broken at {r:?}");
        }
        for w in rs.windows(2) {
            assert!(w[0].end <= w[1].start, "{resource}: {:?} and {:?} overlap", w[0], w[1]);
            assert!(w[0].token < w[1].token, "{resource}: tokens {} then {}", w[0].token, w[1].token);
        }
        if rs.windows(2).any(|w| w[0].node != w[1].node) {
            moved += 1;
        }
    }
    // Custody did move: resources ran on more than one node over the run.
    assert!(moved > 0, "no resource changed custodian");
    let joiner = joiner.expect("joined");
    let status = joiner.status().await.expect("answers");
    assert!(status.custody.handoffs_received > 0 && status.custody.tasks_executed > 0, "{status:?}");
    eprintln!(
        "{TASKS} tasks over {RESOURCES} resources in {took:?} ({:.0}/s); {moved} resources changed custodian",
        TASKS as f64 / took.as_secs_f64()
    );
    for node in [&nodes[0], &nodes[2], &joiner] {
        node.leave().await.expect("leaves");
    }
}

/// Panics on the payload `panic`, with a message naming the task; returns
/// the payload otherwise.
struct PanicsOnRequest;

impl Handler for PanicsOnRequest {
    async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if payload == b"panic" {
            panic!("refusing task {}", ctx.task_id);
        }
        Outcome::Ok(payload)
    }
}

/// `submit_and_wait`, failing the test if it does not answer well within
/// a multiple of the task deadline (a wedged resource never answers): eight
/// executions to their deadline one after another, more than any resource
/// here queues.
async fn run_once(node: &Cluster, id: &str, resource: &str, payload: &str) -> custody::Completed {
    let task = Task { id: id.into(), resource: resource.into(), payload: payload.into() };
    let within = limit(config().d_max * 8);
    match tokio::time::timeout(within, node.submit_and_wait(task)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => panic!("task {id}: {e}"),
        Err(_) => {
            panic!("task {id} on {resource} got no answer within {within:?}: its execution never reported an end")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_task_and_frees_the_worker_and_the_resource() {
    const WORKERS: usize = 2;
    let node = Cluster::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .name("p")
        .config(Config { workers: WORKERS, ..config() })
        .handler(PanicsOnRequest)
        .start()
        .await
        .expect("node starts");
    node.ready(limit(formation(&config(), 1))).await.expect("the node becomes a custodian");

    // The panicking task completes as a failure carrying the panic's message.
    let done = run_once(&node, "bad-1", "acct", "panic").await;
    let Some(Outcome::Failed(message)) = &done.outcome else { panic!("a panic must fail the task: {done:?}") };
    assert!(message.contains("panicked") && message.contains("refusing task bad-1"), "{message}");
    assert_eq!(done.token.seq, 1);

    // The next task of the same resource runs.
    let done = run_once(&node, "good-1", "acct", "hello").await;
    assert_eq!(done.outcome, Some(Outcome::Ok(b"hello".to_vec())), "{done:?}");
    assert_eq!(done.token.seq, 2);

    // Four times as many panics as workers, at once: each fails on its own,
    // none keeps a worker.
    let mut panics = tokio::task::JoinSet::new();
    for i in 0..WORKERS * 4 {
        let node = node.clone();
        panics.spawn(async move { run_once(&node, &format!("bad-{i}-x"), &format!("r{}", i % 3), "panic").await });
    }
    while let Some(done) = panics.join_next().await {
        let done = done.expect("the submitter did not panic");
        assert!(matches!(&done.outcome, Some(Outcome::Failed(m)) if m.contains("refusing task")), "{done:?}");
    }
    for resource in ["acct", "r0", "r1", "r2", "fresh"] {
        let done = run_once(&node, &format!("good-{resource}"), resource, "after").await;
        assert_eq!(done.outcome, Some(Outcome::Ok(b"after".to_vec())), "{done:?}");
    }

    // Nothing is left queued or running.
    wait_for(limit(config().d_max), "no task queued or running", || async {
        let status = node.status().await.ok()?;
        (status.custody.tasks_queued == 0 && status.custody.tasks_running == 0).then_some(())
    })
    .await;
    let status = node.status().await.expect("answers");
    assert_eq!(status.custody.tasks_executed, 1 + 1 + WORKERS as u64 * 4 + 5, "{status:?}");
    node.leave().await.expect("leaves");
}

/// Runs until its execution is cancelled; records when each started and
/// when it saw the cancellation.
#[derive(Clone, Default)]
struct UntilCancelled {
    started: Arc<Mutex<Vec<Instant>>>,
    cancelled: Arc<Mutex<Vec<Instant>>>,
}

impl Handler for UntilCancelled {
    async fn execute(&self, ctx: ExecCtx, _payload: Vec<u8>) -> Outcome {
        self.started.lock().unwrap().push(Instant::now());
        ctx.cancel.cancelled().await;
        self.cancelled.lock().unwrap().push(Instant::now());
        Outcome::Failed("cancelled".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custodian_that_cannot_renew_cancels_a_task_longer_than_its_lease() {
    // An hour of deadline, a lease of 1.5 s.
    let config = Config { d_max: Duration::from_secs(3600), ..config() };
    let handler = UntilCancelled::default();
    let start = |name: &'static str, seeds: Vec<SocketAddr>| {
        let (config, handler) = (config.clone(), handler.clone());
        async move {
            Cluster::builder()
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .name(name)
                .join(seeds)
                .config(config)
                .handler(handler)
                .start()
                .await
                .expect("node starts")
        }
    };
    let custodian = start("n0", Vec::new()).await;
    let seeds = vec![custodian.local_addr()];
    let others = vec![start("n1", seeds.clone()).await, start("n2", seeds).await];
    let all = [vec![custodian.clone()], others.clone()].concat();
    formed(&all, 3).await;
    drop(all);
    let mut resource = None;
    for i in 0.. {
        let r = format!("long-{i}");
        if custodian.owner(&r).await.expect("answers").is_some_and(|o| o.addr == custodian.local_addr()) {
            resource = Some(r);
            break;
        }
    }
    let task = Task { id: "long".into(), resource: resource.expect("found"), payload: Vec::new() };
    custodian.submit(task).await.expect("accepted");
    wait_for(limit(Duration::from_secs(1)), "the task started", || async {
        (!handler.started.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // Its lease is renewed while the task runs, well past one lease.
    tokio::time::sleep(config.lease * 2).await;
    assert!(handler.cancelled.lock().unwrap().is_empty(), "cancelled while its lease was renewed");

    // The two other voters stop without leaving: the custodian cannot renew,
    // and cancels the task before its lease ends.
    drop(others);
    let (_, took) = wait_for(limit(config.lease), "the handler saw its cancellation", || async {
        (!handler.cancelled.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    eprintln!("cancelled {took:?} after the other voters stopped (lease {:?})", config.lease);
    // The task did not complete: it waits, first in its queue, for a lease.
    wait_for(limit(config.cancel_margin), "the cancelled task is queued again", || async {
        let status = custodian.status().await.ok()?;
        let c = status.custody;
        (c.tasks_running == 0 && c.tasks_queued == 1 && c.tasks_executed == 0).then_some(())
    })
    .await;
    assert_eq!(handler.started.lock().unwrap().len(), 1, "nothing starts without a lease");
}
