//! Custody tests: feed one node's custody inputs, assert the exact outputs.

use super::*;
use crate::engine::epoch::Changes;

const T0: Instant = Instant::ZERO;

fn id(port: u16) -> NodeId {
    NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), 1, &format!("n{port}"))
}

fn task(tid: &str, resource: &str) -> Task {
    Task { id: tid.into(), resource: resource.into(), payload: tid.as_bytes().to_vec() }
}

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

/// Epoch 1 with `a` alone; epoch 2 adds `b`. One replica per range (the
/// custodian): these tests are about handoffs; `replication.rs`'s tests
/// replicate.
fn two_epochs(a: &NodeId, b: &NodeId) -> (Configuration, Configuration) {
    let c1 = Configuration::first(9, a.clone(), 16, 1);
    let c2 = c1.next(&Changes { joins: vec![b.clone()], ..Changes::default() }).unwrap();
    (c1, c2)
}

/// A resource whose custodian in `config` is `owner`.
fn resource_owned_by(config: &Configuration, owner: &NodeId, prefix: &str) -> String {
    let ring = config.ring();
    (0..10_000).map(|i| format!("{prefix}{i}")).find(|r| ring.owner(r) == Some(owner)).expect("some resource")
}

/// Custody of `me` (d_max 100 ms, 8 workers) that has learned `config`.
fn custody_at(me: &NodeId, config: &Configuration, now: Instant) -> Custody {
    let mut c = Custody::new(me.clone(), Duration::from_millis(100), 8);
    c.on_epoch(config, now);
    c
}

/// Epoch 1 (a alone), epoch 2 (b joins), a resource `r` that epoch 2 gives
/// to b, and a's custody at epoch 1 with task `t1` of `r` queued.
fn t1_on_a_moving_to_b() -> (NodeId, NodeId, Configuration, Configuration, String, Custody) {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    let r = resource_owned_by(&c2, &b, "acct");
    submit_from(&mut ca, 5, 1, task("t1", &r));
    (a, b, c1, c2, r, ca)
}

/// `me`'s custody at `config`, after taking `transfers` from `from` (its
/// acknowledgements drained).
fn received_by(
    me: &NodeId,
    config: &Configuration,
    from: SocketAddr,
    transfers: &[(SocketAddr, Transfer)],
    now: Instant,
) -> Custody {
    let mut c = custody_at(me, config, now);
    for (_, t) in transfers {
        c.on_transfer(from, t.clone(), now);
    }
    outputs(&mut c);
    c
}

fn founder(workers: usize) -> (Custody, NodeId, Configuration) {
    let a = id(1);
    let c1 = Configuration::first(9, a.clone(), 16, 3);
    let mut c = Custody::new(a.clone(), Duration::from_millis(100), workers);
    c.on_epoch(&c1, T0);
    (c, a, c1)
}

fn outputs(c: &mut Custody) -> Vec<CustodyOutput> {
    c.drain().collect()
}

fn executions(outs: &[CustodyOutput]) -> Vec<(String, Token)> {
    outs.iter()
        .filter_map(|o| match o {
            CustodyOutput::Execute(e) => Some((e.task.id.clone(), e.token)),
            _ => None,
        })
        .collect()
}

fn sent(outs: &[CustodyOutput]) -> Vec<(SocketAddr, TaskMsg)> {
    outs.iter()
        .filter_map(|o| match o {
            CustodyOutput::Send(to, m) => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

fn transfers(outs: &[CustodyOutput]) -> Vec<(SocketAddr, Transfer)> {
    sent(outs)
        .into_iter()
        .filter_map(|(to, m)| match m {
            TaskMsg::Transfer(t) => Some((to, t)),
            _ => None,
        })
        .collect()
}

/// Submits `tid` to `resource` (request `req`, numbered `req` there: the
/// resource's tasks so far all ran), runs it and ends it, all at `now`.
fn run_to_end(c: &mut Custody, gateway: u16, req: u64, tid: &str, resource: &str, now: Instant) {
    c.on_submit(id(gateway).addr, Ask { req, wait: false, seq: None }, task(tid, resource), true, now);
    c.pump(now, true);
    c.finished(resource, req, Outcome::Ok(vec![]), now);
}

fn submit_from(c: &mut Custody, gateway: u16, req: u64, t: Task) -> TaskMsg {
    c.on_submit(id(gateway).addr, Ask { req, wait: false, seq: None }, t, true, T0);
    let outs = outputs(c);
    let answers: Vec<TaskMsg> = sent(&outs).into_iter().map(|(_, m)| m).collect();
    assert_eq!(answers.len(), 1, "one answer per submit: {answers:?}");
    answers.into_iter().next().unwrap()
}

#[test]
fn the_founder_holds_the_whole_circle_and_runs_a_resource_in_sequence_order() {
    let (mut c, _, _) = founder(8);
    for i in 1..=3 {
        let answer = submit_from(&mut c, 5, i, task(&format!("t{i}"), "r"));
        assert_eq!(answer, TaskMsg::Accepted { req: i, seq: i, epoch: 1, duplicate: false });
    }
    c.pump(T0, true);
    let outs = outputs(&mut c);
    // One at a time, the first one first, with the epoch of custody.
    assert_eq!(executions(&outs), vec![("t1".to_string(), Token { epoch: 1, seq: 1 })]);
    c.pump(T0, true);
    assert!(outputs(&mut c).is_empty(), "nothing else of r may start while t1 runs");
    c.finished("r", 1, Outcome::Ok(vec![]), at(5));
    c.pump(at(5), true);
    assert_eq!(executions(&outputs(&mut c)), vec![("t2".to_string(), Token { epoch: 1, seq: 2 })]);
    let info = c.info();
    assert_eq!((info.tasks_queued, info.tasks_running, info.tasks_executed), (1, 1, 1));
    assert_eq!((info.ranges_owned, info.ranges_unavailable), (16, 0));
}

#[test]
fn a_hot_resource_takes_one_worker_and_the_others_keep_running() {
    let (mut c, _, _) = founder(2);
    for i in 0..50 {
        submit_from(&mut c, 5, i, task(&format!("hot{i}"), "hot"));
    }
    for (i, r) in ["a", "b", "c"].into_iter().enumerate() {
        submit_from(&mut c, 5, 100 + i as u64, task(r, r));
    }
    c.pump(T0, true);
    let started: Vec<String> = executions(&outputs(&mut c)).into_iter().map(|(t, _)| t).collect();
    assert_eq!(started, vec!["hot0", "a"]);
    c.finished("hot", 1, Outcome::Ok(vec![]), at(1));
    c.pump(at(1), true);
    // The hot resource goes to the back: b runs before hot's next task.
    assert_eq!(executions(&outputs(&mut c))[0].0, "b");
    c.finished("a", 1, Outcome::Ok(vec![]), at(2));
    c.pump(at(2), true);
    assert_eq!(executions(&outputs(&mut c))[0].0, "c");
    c.finished("b", 1, Outcome::Ok(vec![]), at(3));
    c.pump(at(3), true);
    assert_eq!(executions(&outputs(&mut c))[0].0, "hot1");
}

#[test]
fn a_retried_task_id_gets_its_sequence_number_and_runs_once() {
    let (mut c, _, _) = founder(1);
    assert_eq!(
        submit_from(&mut c, 5, 1, task("x", "r")),
        TaskMsg::Accepted { req: 1, seq: 1, epoch: 1, duplicate: false }
    );
    assert_eq!(
        submit_from(&mut c, 5, 2, task("y", "r")),
        TaskMsg::Accepted { req: 2, seq: 2, epoch: 1, duplicate: false }
    );
    assert_eq!(
        submit_from(&mut c, 5, 3, task("x", "r")),
        TaskMsg::Accepted { req: 3, seq: 1, epoch: 1, duplicate: true }
    );
    assert_eq!(c.info().tasks_queued, 2);
    c.pump(T0, true);
    outputs(&mut c);
    c.finished("r", 1, Outcome::Ok(b"done".to_vec()), at(1));
    outputs(&mut c);
    // A waiting retry after it ran: told it ran, the outcome is not kept.
    c.on_submit(id(5).addr, Ask { req: 4, wait: true, seq: None }, task("x", "r"), true, at(2));
    let answers = sent(&outputs(&mut c));
    assert_eq!(
        answers,
        vec![
            (
                id(5).addr,
                TaskMsg::Done { req: 4, task_id: "x".into(), token: Token { epoch: 1, seq: 1 }, outcome: None }
            ),
            (id(5).addr, TaskMsg::Accepted { req: 4, seq: 1, epoch: 1, duplicate: true }),
        ]
    );
    c.pump(at(2), true);
    assert_eq!(executions(&outputs(&mut c)), vec![("y".to_string(), Token { epoch: 1, seq: 2 })]);
}

#[test]
fn past_a_bound_the_submitter_is_told_busy_and_nothing_is_queued() {
    let (mut c, _, _) = founder(1);
    for i in 0..QUEUED_PER_RESOURCE_MAX as u64 {
        submit_from(&mut c, 5, i, task(&format!("t{i}"), "r"));
    }
    assert_eq!(submit_from(&mut c, 5, 0, task("one-too-many", "r")), TaskMsg::Busy { req: 0 });
    assert_eq!(c.info().tasks_queued, QUEUED_PER_RESOURCE_MAX as u64);
    assert!(matches!(submit_from(&mut c, 5, 1, task("other", "s")), TaskMsg::Accepted { .. }));
}

#[test]
fn without_a_lease_nothing_starts_and_submits_are_not_ready() {
    let (mut c, _, _) = founder(4);
    submit_from(&mut c, 5, 1, task("t1", "r"));
    c.pump(T0, false);
    assert!(outputs(&mut c).is_empty());
    c.on_submit(id(5).addr, Ask { req: 2, wait: false, seq: None }, task("t2", "r"), false, T0);
    assert_eq!(sent(&outputs(&mut c)), vec![(id(5).addr, TaskMsg::NotReady { req: 2 })]);
    c.pump(T0, true);
    assert_eq!(executions(&outputs(&mut c)).len(), 1);
}

#[test]
fn a_moved_range_seals_waits_for_the_running_task_then_transfers_everything() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    let r = resource_owned_by(&c2, &b, "acct");
    for i in 1..=3 {
        submit_from(&mut ca, 5, i, task(&format!("t{i}"), &r));
    }
    ca.pump(T0, true);
    assert_eq!(executions(&outputs(&mut ca)).len(), 1);

    // Epoch 2 moves r to b: nothing new starts, nothing is sent while t1 runs.
    ca.on_epoch(&c2, at(1));
    // The other moved parts, with nothing running, go at once.
    let mut all_transfers = transfers(&outputs(&mut ca));
    assert!(!all_transfers.is_empty());
    assert!(all_transfers.iter().all(|(_, t)| t.resources.iter().all(|s| s.resource != r)));
    ca.pump(at(1), true);
    assert!(executions(&outputs(&mut ca)).is_empty());
    // A late submit for r at a is redirected to b.
    assert_eq!(submit_from(&mut ca, 5, 9, task("late", &r)), TaskMsg::Redirect { req: 9, epoch: 2, owner: b.addr });

    // t1 ends: the part holding r goes, with the watermark, the pending
    // tasks and the dedup entries.
    ca.finished(&r, 1, Outcome::Ok(vec![]), at(2));
    let sent_transfers = transfers(&outputs(&mut ca));
    let (to, t) = sent_transfers.iter().find(|(_, t)| t.resources.iter().any(|s| s.resource == r)).unwrap().clone();
    assert_eq!((to, t.epoch), (b.addr, 2));
    let state = t.resources.iter().find(|s| s.resource == r).unwrap();
    assert_eq!((state.last_seq, state.executed, state.token_floor), (3, 1, 1));
    assert_eq!(state.pending.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(state.dedup.len(), 3);
    all_transfers.extend(sent_transfers);
    let sent_transfers = all_transfers;

    // b takes custody and runs t2 with a higher token; a retry of t1 is
    // recognised there.
    let mut cb = custody_at(&b, &c2, at(2));
    let unavailable_before = cb.info().ranges_unavailable;
    assert!(unavailable_before > 0, "b owns ranges it does not hold yet");
    assert_eq!(submit_from(&mut cb, 5, 1, task("t4", &r)), TaskMsg::NotReady { req: 1 });
    for (_, t) in &sent_transfers {
        cb.on_transfer(a.addr, t.clone(), at(3));
    }
    let acks: Vec<TaskMsg> = sent(&outputs(&mut cb)).into_iter().map(|(_, m)| m).collect();
    assert_eq!(acks, sent_transfers.iter().map(|(_, t)| TaskMsg::TransferAck { id: t.id }).collect::<Vec<_>>());
    assert_eq!(cb.info().ranges_unavailable, 0, "every range b owns is held once the transfers are in");
    cb.pump(at(3), true);
    assert_eq!(executions(&outputs(&mut cb)), vec![("t2".to_string(), Token { epoch: 2, seq: 2 })]);
    assert_eq!(
        submit_from(&mut cb, 5, 2, task("t1", &r)),
        TaskMsg::Accepted { req: 2, seq: 1, epoch: 2, duplicate: true }
    );
    assert_eq!(
        submit_from(&mut cb, 5, 3, task("t4", &r)),
        TaskMsg::Accepted { req: 3, seq: 4, epoch: 2, duplicate: false }
    );

    // The acknowledgements free a.
    for (_, t) in &sent_transfers {
        ca.on_transfer_ack(b.addr, t.id, T0);
    }
    assert_eq!(ca.info().ranges_sealing, 0);
    assert_eq!(ca.info().ranges_unavailable, 0);
    assert_eq!(ca.stats().transfers_sent, sent_transfers.len() as u64);
}

#[test]
fn a_duplicate_transfer_is_acknowledged_and_not_applied_twice() {
    let (a, b, _, c2, _, mut ca) = t1_on_a_moving_to_b();
    ca.on_epoch(&c2, at(1));
    let ts = transfers(&outputs(&mut ca));
    let mut cb = received_by(&b, &c2, a.addr, &ts, at(2));
    let queued = cb.info().tasks_queued;
    let received = cb.stats().transfers_received;
    // The acknowledgement was lost: a sends again.
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), at(3));
    }
    let acks = sent(&outputs(&mut cb));
    assert_eq!(acks.len(), ts.len(), "a copy is acknowledged again");
    assert_eq!((cb.info().tasks_queued, cb.stats().transfers_received), (queued, received));
}

#[test]
fn unacknowledged_transfers_are_resent_until_acknowledged() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    ca.on_epoch(&c2, T0);
    let first = transfers(&outputs(&mut ca));
    // Everything for b goes in one transfer, one part per moved arc.
    assert_eq!(first.len(), 1);
    assert!(first[0].1.spans.len() > 1);
    assert_eq!(ca.next_deadline(), Some(T0 + TRANSFER_RETRY));
    ca.handle_timeout(T0 + TRANSFER_RETRY, true);
    let again = transfers(&outputs(&mut ca));
    assert_eq!(
        again.iter().map(|(_, t)| t.id).collect::<Vec<_>>(),
        first.iter().map(|(_, t)| t.id).collect::<Vec<_>>()
    );
    for (_, t) in &first {
        ca.on_transfer_ack(b.addr, t.id, T0);
    }
    assert_eq!(ca.next_deadline(), None);
}

#[test]
fn an_acknowledgement_from_the_wrong_node_or_for_an_unknown_transfer_is_ignored() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    ca.on_epoch(&c2, T0);
    let ts = transfers(&outputs(&mut ca));
    ca.on_transfer_ack(id(3).addr, ts[0].1.id, T0);
    ca.on_transfer_ack(b.addr, 999_999, T0);
    assert_eq!(ca.stats().transfers_sent, 0);
    let parts: usize = ts.iter().map(|(_, t)| t.spans.len()).sum();
    assert_eq!(ca.info().ranges_sealing, parts as u64);
}

#[test]
fn a_transfer_for_an_epoch_not_learned_yet_waits_for_it() {
    let (a, b, c1, c2, r, mut ca) = t1_on_a_moving_to_b();
    ca.on_epoch(&c2, T0);
    let ts = transfers(&outputs(&mut ca));
    // b knows epoch 1 only (it has not learned that it was admitted).
    let mut cb = custody_at(&b, &c1, T0);
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), at(1));
    }
    assert_eq!(sent(&outputs(&mut cb)).len(), ts.len(), "acknowledged: custody is b's now");
    cb.pump(at(1), true);
    assert!(executions(&outputs(&mut cb)).is_empty(), "nothing runs before b learns epoch 2");
    // In epoch 1, r is a's: b says so (and holds it meanwhile, sending it nowhere).
    assert_eq!(submit_from(&mut cb, 5, 1, task("t2", &r)), TaskMsg::Redirect { req: 1, epoch: 1, owner: a.addr });
    cb.on_epoch(&c2, at(2));
    cb.pump(at(2), true);
    assert_eq!(executions(&outputs(&mut cb)), vec![("t1".to_string(), Token { epoch: 2, seq: 1 })]);
}

#[test]
fn a_transfer_for_a_superseded_epoch_is_taken_and_passed_on_to_the_latest_custodian() {
    let (a, b, d) = (id(1), id(2), id(3));
    let (c1, c2) = two_epochs(&a, &b);
    // Epoch 3: d joins, b leaves.
    let c3 = c2.next(&Changes { joins: vec![d.clone()], leaving: vec![b.clone()], ..Changes::default() }).unwrap();
    let mut ca = custody_at(&a, &c1, T0);
    let r = resource_owned_by(&c2, &b, "acct");
    submit_from(&mut ca, 5, 1, task("t1", &r));
    ca.on_epoch(&c2, T0);
    let ts = transfers(&outputs(&mut ca));
    // b has already learned epoch 3 when a's transfer for epoch 2 arrives:
    // it takes it (dropping it would lose the tasks) and passes it on.
    let mut cb = custody_at(&b, &c2, T0);
    cb.on_epoch(&c3, T0);
    outputs(&mut cb);
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), at(1));
    }
    let outs = outputs(&mut cb);
    let onward = transfers(&outs);
    let owner3 = c3.ring().owner(&r).unwrap().clone();
    let carrying = onward.iter().find(|(_, t)| t.resources.iter().any(|s| s.resource == r)).unwrap();
    assert_eq!((carrying.0, carrying.1.epoch), (owner3.addr, 3));
    cb.pump(at(1), true);
    assert!(executions(&outputs(&mut cb)).is_empty(), "b never runs what it only passes on");
}

#[test]
fn a_receiver_removed_before_acknowledging_leaves_its_transfer_in_doubt() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let c3 = c2.next(&Changes { removals: vec![b.clone()], ..Changes::default() }).unwrap();
    let mut ca = custody_at(&a, &c1, T0);
    let r = resource_owned_by(&c2, &b, "acct");
    submit_from(&mut ca, 5, 1, task("t1", &r));
    ca.on_epoch(&c2, T0);
    outputs(&mut ca);
    ca.on_epoch(&c3, at(1));
    outputs(&mut ca);
    // a owns everything again, but the part it sent may have run at b: it is
    // not taken back (that is recovery's decision), so it is unavailable.
    assert!(ca.stats().transfers_in_doubt > 0);
    let info = ca.info();
    assert!(info.ranges_unavailable > 0);
    assert_eq!(submit_from(&mut ca, 5, 2, task("t2", &r)), TaskMsg::NotReady { req: 2 });
    // Its receiver was removed: a recovers the part from b's replicas of
    // epoch 2 (with k = 1, b alone: never, while b does not answer), and
    // does not resend the transfer.
    assert_eq!(info.ranges_recovering, ca.stats().recoveries_started);
    assert!(info.ranges_recovering > 0);
    let next = ca.next_deadline().expect("the recovery asks again");
    ca.handle_timeout(next, true);
    let outs = outputs(&mut ca);
    assert!(transfers(&outs).is_empty(), "transfers in doubt are not resent");
    assert!(sent(&outs).iter().all(|(to, m)| *to == b.addr && matches!(m, TaskMsg::Recover { epoch: 3, .. })));
}

#[test]
fn the_gateway_routes_follows_a_redirect_retries_and_answers_the_client() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let r = resource_owned_by(&c2, &b, "acct");
    // A gateway g that knows epoch 1: r is a's there.
    let g = id(7);
    let mut cg = custody_at(&g, &c1, T0);
    let client = ClientId(1);
    cg.submit(client, task("t1", &r), true, T0, true);
    let first = sent(&outputs(&mut cg));
    assert!(matches!(&first[..], [(to, TaskMsg::Submit { req: 1, wait: true, epoch: 1, .. })] if *to == a.addr));
    // a knows epoch 2: redirect to b, which the gateway follows at once.
    cg.on_answer(a.addr, TaskMsg::Redirect { req: 1, epoch: 2, owner: b.addr }, at(1), true);
    assert!(matches!(&sent(&outputs(&mut cg))[..], [(to, TaskMsg::Submit { req: 1, .. })] if *to == b.addr));
    // b is not ready yet: retried after the backoff.
    cg.on_answer(b.addr, TaskMsg::NotReady { req: 1 }, at(2), true);
    assert!(outputs(&mut cg).is_empty());
    let retry_at = cg.next_deadline().unwrap();
    cg.handle_timeout(retry_at, true);
    assert_eq!(sent(&outputs(&mut cg)).len(), 1);
    // Accepted, then done: one reply to the client, with the outcome.
    cg.on_answer(b.addr, TaskMsg::Accepted { req: 1, seq: 1, epoch: 2, duplicate: false }, at(3), true);
    assert!(outputs(&mut cg).is_empty(), "a waiting client is answered when the task ran");
    let token = Token { epoch: 2, seq: 1 };
    let done = TaskMsg::Done { req: 1, task_id: "t1".into(), token, outcome: Some(Outcome::Ok(b"ok".to_vec())) };
    cg.on_answer(b.addr, done, at(4), true);
    let replies = outputs(&mut cg);
    assert_eq!(
        replies,
        vec![CustodyOutput::Reply(
            client,
            Response::Completed(Completed {
                task_id: "t1".into(),
                resource: r.clone(),
                token,
                custodian: b.addr,
                outcome: Some(Outcome::Ok(b"ok".to_vec())),
            })
        )]
    );
    assert_eq!(cg.next_deadline(), None);
}

#[test]
fn a_submit_nobody_can_take_is_answered_unavailable_after_the_timeout() {
    let (a, b) = (id(1), id(2));
    let (_, c2) = two_epochs(&a, &b);
    let r = resource_owned_by(&c2, &b, "acct");
    let mut cg = Custody::new(id(7), Duration::from_millis(100), 8);
    cg.on_epoch(&c2, T0);
    cg.submit(ClientId(3), task("t1", &r), false, T0, true);
    let mut now = T0;
    let mut sends = 0;
    loop {
        for (_, m) in sent(&cg.drain().collect::<Vec<_>>()) {
            assert!(matches!(m, TaskMsg::Submit { .. }));
            sends += 1;
            cg.on_answer(b.addr, TaskMsg::NotReady { req: 1 }, now, true);
        }
        let Some(next) = cg.next_deadline() else { break };
        now = next;
        cg.handle_timeout(now, true);
        let replies: Vec<CustodyOutput> =
            cg.outputs.iter().filter(|o| matches!(o, CustodyOutput::Reply(..))).cloned().collect();
        if !replies.is_empty() {
            assert!(matches!(&replies[..], [CustodyOutput::Reply(ClientId(3), Response::Unavailable(_))]));
            break;
        }
    }
    assert_eq!(now, T0 + SUBMIT_TIMEOUT);
    // Backoff doubles from 20 ms to 500 ms: about 25 tries in 10 s, not hundreds.
    assert!((10..40).contains(&sends), "{sends} sends");
}

#[test]
fn a_gateway_generates_a_task_id_when_none_is_given() {
    let (mut c, a, _) = founder(1);
    c.submit(ClientId(1), task("", "r"), false, T0, true);
    let outs = outputs(&mut c);
    let [CustodyOutput::Reply(_, Response::Submitted(s))] = &outs[..] else { panic!("{outs:?}") };
    assert_eq!(s.task_id, format!("{}-{}-1", a.addr, a.incarnation));
    assert_eq!(s.seq, 1);
}

#[test]
fn ring_split_covers_a_span_exactly_with_one_owner_per_piece() {
    let (a, b) = (id(1), id(2));
    let (_, c2) = two_epochs(&a, &b);
    let ring = c2.ring();
    let full = ring.split(Span { start: 0, end: 0 });
    assert_eq!(full.iter().map(|(s, _)| s.width()).sum::<u128>(), 1u128 << 64);
    assert!(full.windows(2).all(|w| w[0].0.end == w[1].0.start && w[0].1 != w[1].1));
    for (span, owner) in &full {
        assert_eq!(ring.locate_point(span.end).unwrap().1, *owner);
        assert_eq!(ring.locate_point(span.start.wrapping_add(1)).unwrap().1, *owner);
    }
    let part = Span { start: 1 << 60, end: 3 << 62 };
    let pieces = ring.split(part);
    assert_eq!(pieces.first().unwrap().0.start, part.start);
    assert_eq!(pieces.last().unwrap().0.end, part.end);
    assert_eq!(pieces.iter().map(|(s, _)| s.width()).sum::<u128>(), part.width());
}

#[test]
fn a_transfer_for_another_life_at_the_address_is_not_taken() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    ca.on_epoch(&c2, T0);
    let ts = transfers(&outputs(&mut ca));
    // b restarted as a new life before the transfer arrived.
    let b2 = NodeId::new(b.addr, 2, "n2");
    let mut cb2 = custody_at(&b2, &c2, T0);
    for (_, t) in &ts {
        cb2.on_transfer(a.addr, t.clone(), at(1));
    }
    assert!(outputs(&mut cb2).is_empty(), "not acknowledged: the sender keeps it");
    assert_eq!(cb2.stats().transfers_received, 0);
}

/// b holds everything it owns at epoch 2 (as if handed over) and runs the
/// first of two tasks of one of its resources; then the store removes b's
/// life (epoch 3) and b starts a new one. Returns b's custody after it
/// learned epoch 3, its outputs then, a, and the resource.
fn removed_while_running(recovery: bool) -> (Custody, Vec<CustodyOutput>, NodeId, String) {
    let (a, b) = (id(1), id(2));
    let (_, c2) = two_epochs(&a, &b);
    let mut ca = Custody::new(a.clone(), Duration::from_millis(100), 8);
    ca.on_epoch(&Configuration::first(9, a.clone(), 16, 3), T0);
    ca.on_epoch(&c2, T0);
    let ts = transfers(&outputs(&mut ca));
    let mut cb = custody_at(&b, &c2, T0);
    cb.set_recovery(recovery);
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), T0);
    }
    outputs(&mut cb);
    let r = resource_owned_by(&c2, &b, "acct");
    submit_from(&mut cb, 5, 1, task("t1", &r));
    submit_from(&mut cb, 5, 2, task("t2", &r));
    cb.pump(T0, true);
    assert_eq!(executions(&outputs(&mut cb)).len(), 1);
    let c3 = c2.next(&Changes { removals: vec![b.clone()], ..Changes::default() }).unwrap();
    cb.renew_identity(NodeId::new(b.addr, 2, "n2"), at(1));
    cb.on_epoch(&c3, at(1));
    cb.pump(at(1), true);
    let outs = outputs(&mut cb);
    (cb, outs, a, r)
}

#[test]
fn with_recovery_a_removed_life_gives_up_what_it_held_and_hands_nothing_over() {
    // Its new owners recover it from the replicas; a copy handed over as
    // well could replace the recovered state.
    let (mut cb, outs, _, r) = removed_while_running(true);
    assert!(executions(&outs).is_empty(), "a removed life starts nothing");
    assert!(transfers(&outs).is_empty());
    assert!(outs.contains(&CustodyOutput::Cancel { resource: r.clone(), seq: 1 }), "{outs:?}");
    assert!(cb.stats().parts_forfeited > 0);
    assert!(!cb.handed_off(), "a cancelled task still runs");
    cb.finished(&r, 1, Outcome::Ok(vec![]), at(2));
    assert!(transfers(&outputs(&mut cb)).is_empty());
    assert!(cb.resources.is_empty(), "dropped once nothing runs");
    assert!(cb.handed_off());
}

#[test]
fn without_recovery_a_removed_life_hands_what_it_holds_to_the_custodians_once_its_tasks_end() {
    let (mut cb, outs, a, r) = removed_while_running(false);
    assert!(executions(&outs).is_empty(), "a removed life starts nothing");
    assert!(transfers(&outs).iter().all(|(_, t)| t.resources.iter().all(|s| s.resource != r)), "t1 still runs");
    cb.finished(&r, 1, Outcome::Ok(vec![]), at(2));
    let onward = transfers(&outputs(&mut cb));
    let t = onward.iter().find(|(_, t)| t.resources.iter().any(|s| s.resource == r)).expect("r goes once t1 ended");
    assert_eq!(t.0, a.addr);
    assert_eq!(t.1.resources.iter().find(|s| s.resource == r).unwrap().pending.len(), 1);
}

#[test]
fn sealed_parts_held_back_by_the_bound_go_once_an_acknowledgement_makes_room() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    // As many transfers outstanding as allowed (stand-ins, to some c).
    let filler =
        Transfer { id: 0, from_incarnation: 1, to_incarnation: 1, epoch: 1, spans: Vec::new(), resources: Vec::new() };
    for i in 0..TRANSFERS_OUTSTANDING_MAX as u64 {
        let message = Transfer { id: 1_000_000 + i, ..filler.clone() };
        ca.outgoing.insert(1_000_000 + i, Outgoing { to: id(3), message, sent_at: T0, in_doubt: false });
    }
    ca.on_epoch(&c2, T0);
    assert!(transfers(&outputs(&mut ca)).is_empty(), "held back by the bound");
    ca.on_transfer_ack(id(3).addr, 1_000_000, at(1));
    let sent = transfers(&outputs(&mut ca));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, b.addr);
}

#[test]
fn a_waiting_gateway_reminds_the_custodian_and_a_reminder_adds_no_second_waiter() {
    let (mut c, a, _) = founder(1);
    let g = id(7);
    let mut cg = Custody::new(g.clone(), Duration::from_millis(100), 8);
    cg.on_epoch(&Configuration::first(9, a.clone(), 16, 3), T0);
    cg.submit(ClientId(1), task("t1", "r"), true, T0, true);
    let [(_, submit)] = &sent(&outputs(&mut cg))[..] else { panic!() };
    let TaskMsg::Submit { req, task: t, wait, .. } = submit.clone() else { panic!() };
    c.on_submit(g.addr, Ask { req, wait, seq: None }, t.clone(), true, T0);
    let [(_, accepted)] = &sent(&outputs(&mut c))[..] else { panic!() };
    cg.on_answer(a.addr, accepted.clone(), T0, true);
    // The Done will be lost; the gateway asks again after OUTCOME_POLL_MIN.
    assert_eq!(cg.next_deadline(), Some(T0 + OUTCOME_POLL_MIN));
    cg.handle_timeout(T0 + OUTCOME_POLL_MIN, true);
    let [(to, again)] = &sent(&outputs(&mut cg))[..] else { panic!() };
    assert_eq!(*to, a.addr);
    assert!(matches!(again, TaskMsg::Submit { req: r, .. } if *r == req));
    c.on_submit(g.addr, Ask { req, wait: true, seq: None }, t, true, T0 + OUTCOME_POLL_MIN);
    outputs(&mut c);
    c.pump(T0 + OUTCOME_POLL_MIN, true);
    outputs(&mut c);
    c.finished("r", 1, Outcome::Ok(vec![]), at(1500));
    let dones = sent(&outputs(&mut c));
    assert_eq!(dones.len(), 1, "one Done per waiting gateway: {dones:?}");
    // The next reminder comes later: the interval doubles.
    assert_eq!(cg.next_deadline(), Some(T0 + OUTCOME_POLL_MIN + OUTCOME_POLL_MIN * 2));
}

#[test]
fn a_retry_of_a_task_that_ran_is_told_the_token_it_ran_with() {
    let (a, b, _, c2, r, mut ca) = t1_on_a_moving_to_b();
    ca.pump(T0, true);
    outputs(&mut ca);
    ca.finished(&r, 1, Outcome::Ok(vec![]), at(1));
    ca.on_epoch(&c2, at(1));
    let ts = transfers(&outputs(&mut ca));
    let mut cb = received_by(&b, &c2, a.addr, &ts, at(2));
    // t1 ran at a with token (1, 1); b, custodian since epoch 2, says so.
    cb.on_submit(id(5).addr, Ask { req: 9, wait: true, seq: None }, task("t1", &r), true, at(3));
    let answers = sent(&outputs(&mut cb));
    assert!(matches!(&answers[0].1, TaskMsg::Done { token: Token { epoch: 1, seq: 1 }, outcome: None, .. }));
}

/// b took a's transfer of r (t1 queued), ran t1 and accepted t2; then
/// epoch 3 removed a while a was paused or cut off. a, still alive with its
/// old identity, sends its unacknowledged transfer again.
fn a_resend_after_a_was_removed() -> (NodeId, Custody, String, Vec<(SocketAddr, Transfer)>, Configuration) {
    let (a, b, _, c2, r, mut ca) = t1_on_a_moving_to_b();
    ca.on_epoch(&c2, at(1));
    let ts = transfers(&outputs(&mut ca));
    let mut cb = received_by(&b, &c2, a.addr, &ts, at(2));
    cb.pump(at(2), true);
    assert_eq!(executions(&outputs(&mut cb)), vec![("t1".to_string(), Token { epoch: 2, seq: 1 })]);
    cb.finished(&r, 1, Outcome::Ok(vec![]), at(3));
    assert_eq!(
        submit_from(&mut cb, 5, 1, task("t2", &r)),
        TaskMsg::Accepted { req: 1, seq: 2, epoch: 2, duplicate: false }
    );
    let c3 = c2.next(&Changes { removals: vec![a.clone()], ..Changes::default() }).unwrap();
    cb.on_epoch(&c3, at(4));
    outputs(&mut cb);
    (a, cb, r, ts, c3)
}

#[test]
fn a_copy_from_a_sender_removed_meanwhile_is_acknowledged_and_never_rolls_a_resource_back() {
    let (a, mut cb, r, ts, _) = a_resend_after_a_was_removed();
    let received = cb.stats().transfers_received;
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), at(30_000));
    }
    let acks = sent(&outputs(&mut cb));
    assert_eq!(acks.len(), ts.len(), "acknowledged, so that a stops sending it");
    assert_eq!(cb.stats().transfers_received, received, "not taken again");
    assert_eq!(cb.stats().transfers_refused, ts.len() as u64);
    // r is as b left it: t1 ran, t2 is next with seq 2; nothing runs twice.
    cb.pump(at(30_000), true);
    assert_eq!(executions(&outputs(&mut cb)), vec![("t2".to_string(), Token { epoch: 2, seq: 2 })]);
    assert_eq!(
        submit_from(&mut cb, 5, 2, task("t3", &r)),
        TaskMsg::Accepted { req: 2, seq: 3, epoch: 3, duplicate: false }
    );
}

#[test]
fn a_copy_arriving_after_the_part_moved_on_is_refused() {
    let (a, mut cb, r, ts, c3) = a_resend_after_a_was_removed();
    // Epoch 4: d joins and b leaves: r goes to d.
    let c4 = c3.next(&Changes { joins: vec![id(4)], leaving: vec![id(2)], ..Changes::default() }).unwrap();
    cb.pump(at(5), true);
    outputs(&mut cb);
    cb.finished(&r, 2, Outcome::Ok(vec![]), at(6));
    cb.on_epoch(&c4, at(6));
    let onward = transfers(&outputs(&mut cb));
    assert!(onward.iter().any(|(_, t)| t.resources.iter().any(|s| s.resource == r)), "r went on");
    let resources = cb.info().resources;
    for (_, t) in &ts {
        cb.on_transfer(a.addr, t.clone(), at(30_000));
    }
    let outs = outputs(&mut cb);
    assert!(transfers(&outs).is_empty(), "nothing of a's old copy is taken and passed on: {outs:?}");
    assert_eq!(sent(&outs).len(), ts.len(), "each copy is acknowledged");
    assert_eq!(cb.info().resources, resources, "nothing of a's old copy is taken");
    assert!(cb.piece_of(Ring::key_hash(&r)).is_none(), "b does not hold r's part again");
}

#[test]
fn a_queued_task_is_recognised_however_many_were_accepted_after_it() {
    let (mut c, _, _) = founder(1);
    assert_eq!(
        submit_from(&mut c, 5, 1, task("first", "r")),
        TaskMsg::Accepted { req: 1, seq: 1, epoch: 1, duplicate: false }
    );
    let more = DEDUP_PER_RESOURCE_MAX as u64 + 10;
    for i in 0..more {
        c.on_submit(id(5).addr, Ask { req: 2 + i, wait: false, seq: None }, task(&format!("t{i}"), "r"), true, T0);
    }
    outputs(&mut c);
    // "first" has not run: its gateway's reminder finds it, nothing is queued again.
    assert_eq!(
        submit_from(&mut c, 5, 9_999, task("first", "r")),
        TaskMsg::Accepted { req: 9_999, seq: 1, epoch: 1, duplicate: true }
    );
    // Once it ran, its id is the oldest and goes first when the table is full.
    c.pump(T0, true);
    outputs(&mut c);
    c.finished("r", 1, Outcome::Ok(vec![]), at(1));
    assert!(c.resources.values().all(|r| r.dedup.iter().all(|(id, _, _)| id != "first")));
    assert!(c.resources.values().all(|r| r.dedup.len() == more as usize));
}

#[test]
fn a_reminder_about_a_task_that_ran_and_was_forgotten_never_queues_it_again() {
    let (mut c, _, _) = founder(1);
    submit_from(&mut c, 5, 1, task("first", "r"));
    c.pump(T0, true);
    outputs(&mut c);
    c.finished("r", 1, Outcome::Ok(vec![]), at(1));
    for i in 0..DEDUP_PER_RESOURCE_MAX as u64 {
        run_to_end(&mut c, 5, 2 + i, &format!("t{i}"), "r", at(1));
    }
    outputs(&mut c);
    // The gateway of "first" knows its number: told it ran, with its token,
    // not queued again.
    c.on_submit(id(5).addr, Ask { req: 9_999, wait: true, seq: Some(1) }, task("first", "r"), true, at(2));
    let answers = sent(&outputs(&mut c));
    assert_eq!(
        answers.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        vec![
            TaskMsg::Done { req: 9_999, task_id: "first".into(), token: Token { epoch: 1, seq: 1 }, outcome: None },
            TaskMsg::Accepted { req: 9_999, seq: 1, epoch: 1, duplicate: true },
        ]
    );
    // Without its token epoch (steps forgotten), it is told it ran.
    c.resources.values_mut().for_each(|r| r.token_epochs.clear());
    c.on_submit(id(5).addr, Ask { req: 10_000, wait: true, seq: Some(1) }, task("first", "r"), true, at(2));
    let answers = sent(&outputs(&mut c));
    assert!(
        matches!(&answers[..], [(_, TaskMsg::Rejected { req: 10_000, reason })] if reason.contains("ran as number 1")),
        "{answers:?}"
    );
    let last_seq = c.resources.values().map(|r| r.last_seq).max();
    assert_eq!(last_seq, Some(DEDUP_PER_RESOURCE_MAX as u64 + 1), "nothing accepted");
}

/// Random seed 1150: a task ran, its gateway was cut off before the answer
/// left, and its client retried through another node 1,534 tasks of the
/// same resource later, with no sequence number: it must be told it ran,
/// not run again. The id hashes travel with the resource to its next
/// custodian.
#[test]
fn a_retry_through_another_node_past_the_id_window_is_told_it_ran_here_and_after_a_handoff() {
    let (a, b) = (id(1), id(2));
    let (c1, c2) = two_epochs(&a, &b);
    let mut ca = custody_at(&a, &c1, T0);
    let r = resource_owned_by(&c2, &b, "hot");
    run_to_end(&mut ca, 5, 1, "first", &r, at(1));
    let later = DEDUP_PER_RESOURCE_MAX as u64 + 600;
    for i in 0..later {
        run_to_end(&mut ca, 5, 2 + i, &format!("t{i}"), &r, at(1));
    }
    outputs(&mut ca);
    assert!(ca.resources.values().all(|res| res.dedup.iter().all(|(id, _, _)| id != "first")), "its id was trimmed");
    let retry = |c: &mut Custody, req: u64| {
        c.on_submit(id(6).addr, Ask { req, wait: true, seq: None }, task("first", &r), true, at(2));
        sent(&outputs(c)).into_iter().map(|(_, m)| m).collect::<Vec<_>>()
    };
    // Told it ran with its token of epoch 1, answered in epoch `now`.
    let told = |req: u64, now: u64| {
        vec![
            TaskMsg::Done { req, task_id: "first".into(), token: Token { epoch: 1, seq: 1 }, outcome: None },
            TaskMsg::Accepted { req, seq: 1, epoch: now, duplicate: true },
        ]
    };
    assert_eq!(retry(&mut ca, 9_999), told(9_999, 1));
    let last_seq = |c: &Custody| c.resources.values().map(|res| res.last_seq).max();
    assert_eq!(last_seq(&ca), Some(later + 1), "nothing accepted");

    // Epoch 2 moves the resource to b, with the hashes.
    ca.on_epoch(&c2, at(3));
    let moved = transfers(&outputs(&mut ca));
    let state = moved.iter().flat_map(|(_, t)| &t.resources).find(|s| s.resource == r).expect("moved");
    assert_eq!(state.forgotten.len() + state.dedup.len(), later as usize + 1);
    let mut cb = custody_at(&b, &c2, at(3));
    for (_, t) in &moved {
        cb.on_transfer(a.addr, t.clone(), at(3));
    }
    outputs(&mut cb);
    assert_eq!(retry(&mut cb, 10_000), told(10_000, 2));
    assert_eq!(last_seq(&cb), Some(later + 1), "nothing accepted at b either");
}

#[test]
fn forgotten_ids_are_kept_up_to_their_bound_oldest_first_out() {
    let mut res = Res::default();
    for seq in 1..=(FORGOTTEN_PER_RESOURCE_MAX as u64 + 5) {
        res.remember_forgotten(task_id_hash(&format!("t{seq}")), seq);
    }
    assert_eq!(res.forgotten.len(), FORGOTTEN_PER_RESOURCE_MAX);
    assert_eq!(res.forgotten_by_hash.len(), FORGOTTEN_PER_RESOURCE_MAX);
    assert_eq!(res.forgotten_seq("t5"), None, "the oldest went");
    assert_eq!(res.forgotten_seq("t6"), Some(6));
}

/// The attempt numbers of the executions among `outs`, by task id.
fn attempts(outs: &[CustodyOutput]) -> Vec<(String, u32, Token)> {
    outs.iter()
        .filter_map(|o| match o {
            CustodyOutput::Execute(e) => Some((e.task.id.clone(), e.attempt, e.token)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancelled_execution_completes_nothing_and_its_task_runs_again_first() {
    let (mut c, _, _) = founder(8);
    let gateway = id(5).addr;
    for i in 1..=2 {
        c.on_submit(gateway, Ask { req: i, wait: true, seq: None }, task(&format!("t{i}"), "r"), true, T0);
    }
    c.pump(T0, true);
    outputs(&mut c);
    assert_eq!((c.running(), c.running_uncancelled()), (1, 1));

    // The lease is about to end: one cancel per running execution, once.
    c.cancel_running();
    assert_eq!(outputs(&mut c), vec![CustodyOutput::Cancel { resource: "r".into(), seq: 1 }]);
    c.cancel_running();
    assert!(outputs(&mut c).is_empty(), "a cancel is emitted once");
    assert_eq!((c.running(), c.running_uncancelled()), (1, 0));
    // Until its end is reported, r still runs: nothing of it starts.
    c.pump(at(1), true);
    assert!(outputs(&mut c).is_empty());

    // Its end, whatever the handler said, completes nothing: no answer,
    // no watermark, the task first in its queue again with its waiter.
    c.finished("r", 1, Outcome::Ok(b"late".to_vec()), at(2));
    assert!(outputs(&mut c).is_empty(), "nobody is told a cancelled task ran");
    let s = c.stats();
    assert_eq!((s.tasks_cancelled, s.cancelled_ends, s.tasks_executed), (1, 1, 0));
    assert_eq!(c.info().tasks_queued, 2);
    // A second report of that end is not another one.
    c.finished("r", 1, Outcome::Ok(vec![]), at(2));
    assert_eq!(c.stats().cancelled_ends, 1);

    // With a lease again, it runs first, as its next attempt, same token.
    c.pump(at(3), true);
    assert_eq!(attempts(&outputs(&mut c)), vec![("t1".to_string(), 2, Token { epoch: 1, seq: 1 })]);
    c.finished("r", 1, Outcome::Ok(b"done".to_vec()), at(4));
    let done = sent(&outputs(&mut c));
    assert_eq!(
        done,
        vec![(
            gateway,
            TaskMsg::Done {
                req: 1,
                task_id: "t1".into(),
                token: Token { epoch: 1, seq: 1 },
                outcome: Some(Outcome::Ok(b"done".to_vec()))
            }
        )]
    );
    c.pump(at(4), true);
    assert_eq!(attempts(&outputs(&mut c)), vec![("t2".to_string(), 1, Token { epoch: 1, seq: 2 })]);
}

#[test]
fn a_cancelled_task_of_a_moved_range_travels_first_in_its_queue() {
    let (a, b, _, c2, r, mut ca) = t1_on_a_moving_to_b();
    submit_from(&mut ca, 5, 2, task("t2", &r));
    ca.pump(T0, true);
    assert_eq!(attempts(&outputs(&mut ca)).len(), 1);
    ca.cancel_running();
    outputs(&mut ca);
    // Moved meanwhile: r's part waits for the cancelled execution's end.
    ca.on_epoch(&c2, at(1));
    let moved = transfers(&outputs(&mut ca));
    assert!(moved.iter().all(|(_, t)| t.resources.iter().all(|s| s.resource != r)));
    ca.finished(&r, 1, Outcome::Failed("cancelled".into()), at(2));
    let moved = transfers(&outputs(&mut ca));
    let state = moved.iter().flat_map(|(_, t)| &t.resources).find(|s| s.resource == r).expect("r goes").clone();
    assert_eq!((state.executed, state.last_seq), (0, 2));
    assert_eq!(state.pending.iter().map(|p| (p.seq, p.attempts)).collect::<Vec<_>>(), vec![(1, 1), (2, 0)]);
    // At b, it runs again first, with b's higher token.
    let mut cb = received_by(&b, &c2, a.addr, &moved, at(3));
    cb.pump(at(3), true);
    assert_eq!(attempts(&outputs(&mut cb)), vec![("t1".to_string(), 2, Token { epoch: 2, seq: 1 })]);
}
