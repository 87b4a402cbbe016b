//! In-process nodes through the public `Cluster` API.

use std::net::SocketAddr;
use std::time::Duration;

use custody::{Cluster, Config, MemberState};

use crate::util::{PROMPT, formation, limit, wait_for};

async fn start(name: &str, seeds: &[SocketAddr]) -> Cluster {
    Cluster::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .name(name)
        .join(seeds.iter().copied())
        .config(Config::fast())
        .start()
        .await
        .expect("node starts")
}

/// The states `viewer` sees for each address.
async fn states(viewer: &Cluster) -> Vec<(SocketAddr, MemberState)> {
    viewer.members().await.expect("node answers").into_iter().map(|m| (m.addr, m.state)).collect()
}

async fn state_of(viewer: &Cluster, addr: SocketAddr) -> Option<MemberState> {
    states(viewer).await.into_iter().find(|&(a, _)| a == addr).map(|(_, s)| s)
}

/// Waits until every node in `nodes` holds `addr` as down; returns how long
/// that took.
async fn all_see_down(nodes: &[Cluster], addr: SocketAddr, limit: Duration, what: &str) -> Duration {
    let (_, took) = wait_for(limit, what, || {
        let nodes = nodes.to_vec();
        async move {
            for node in &nodes {
                if state_of(node, addr).await != Some(MemberState::Down) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_detect_a_drop_and_see_a_leave() {
    let first = start("n0", &[]).await;
    let mut nodes = vec![first.clone()];
    for i in 1..5 {
        nodes.push(start(&format!("n{i}"), &[first.local_addr()]).await);
    }

    let config = Config::fast();
    // Convergence: every node sees 5 alive members.
    let (_, took) = wait_for(limit(formation(&config, 5)), "5 nodes converge", || {
        let nodes = nodes.clone();
        async move {
            for node in &nodes {
                let alive = states(node).await.iter().filter(|(_, s)| *s == MemberState::Alive).count();
                if alive != 5 {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    eprintln!("converged in {took:?}");

    // The first node bootstrapped the epoch store; one batched epoch admits
    // the other four, and every node learns it.
    wait_for(limit(formation(&config, 5)), "one committed configuration with all five", || {
        let nodes = nodes.clone();
        async move {
            let mut epochs = Vec::new();
            for node in &nodes {
                let status = node.status().await.ok()?;
                (status.members.len() == 5 && status.lease_remaining_ms > 0).then_some(())?;
                epochs.push((status.epoch, status.epoch_hash));
            }
            epochs.windows(2).all(|w| w[0] == w[1]).then_some(())
        }
    })
    .await;

    // Every node names the same custodian for a resource: the ring of the
    // committed configuration, not each node's own view.
    for resource in ["account-1", "account-2", "orders/eu"] {
        let mut owners = Vec::new();
        for node in &nodes {
            let owner = node.owner(resource).await.expect("answers").expect("a configuration");
            owners.push((owner.epoch, owner.custodian, owner.range, owner.replicas));
        }
        assert!(owners.windows(2).all(|w| w[0] == w[1]), "{resource}: {owners:?}");
        assert_eq!(owners[0].3.len(), 3, "k = 3 distinct replicas");
    }

    // An abrupt drop (no leave): the others mark it down; on an idle
    // machine within the failure-detection bound of the configured timings,
    // printed next to the time it took.
    let dropped = nodes.pop().expect("five nodes");
    let dropped_addr = dropped.local_addr();
    drop(dropped);
    let bound = config.failure_detection_bound(5);
    let took = all_see_down(&nodes, dropped_addr, limit(bound), "the dropped node is marked down everywhere").await;
    eprintln!("drop detected in {took:?} (bound {bound:?})");

    // A graceful leave: the others see it at once, long before any failure
    // detector could (printed; the limit only ends a hung test).
    let leaver = nodes.pop().expect("four nodes");
    let leaver_addr = leaver.local_addr();
    let mut events = nodes[0].events();
    leaver.leave().await.expect("leave");
    let bound = config.failure_detection_bound(4);
    let took = all_see_down(&nodes, leaver_addr, limit(bound), "the leaver is seen down everywhere").await;
    eprintln!("leave seen in {took:?} (a crash: up to {bound:?})");
    // The host saw it as an event too: it came before the states checked
    // above, so it is in the stream already.
    let event = tokio::time::timeout(PROMPT, async {
        loop {
            match events.recv().await {
                Ok(custody::Event::MemberDown(id)) if id.addr == leaver_addr => return id,
                Ok(_) => continue,
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("MemberDown event");
    assert_eq!(event.name.as_ref(), "n3");

    // A stopped node answers no more.
    assert!(matches!(leaver.members().await, Err(custody::Error::Stopped)));
}

#[tokio::test]
async fn a_restart_on_the_same_address_is_accepted_with_a_higher_incarnation() {
    let config = Config::fast();
    let seed = start("seed", &[]).await;
    let other = Cluster::builder().name("other").incarnation(10).join([seed.local_addr()]).config(config.clone());
    let first_life = other.clone().start().await.expect("start");
    let addr = first_life.local_addr();
    wait_for(limit(formation(&config, 2)), "first life joins", || {
        let seed = seed.clone();
        async move { (state_of(&seed, addr).await == Some(MemberState::Alive)).then_some(()) }
    })
    .await;
    drop(first_life);
    // Wait until the port is free again, then come back on it at once, long
    // before the failure detector would have noticed the crash.
    let (second_life, _) = wait_for(PROMPT, "the port is free again", || {
        let other = other.clone();
        async move {
            match other.listen(addr).incarnation(11).start().await {
                Ok(node) => Some(node),
                Err(custody::Error::Bind { .. }) => None,
                Err(e) => panic!("restart: {e}"),
            }
        }
    })
    .await;
    wait_for(limit(formation(&config, 2)), "the seed sees the new life alive", || {
        let seed = seed.clone();
        async move {
            let members = seed.members().await.ok()?;
            members.iter().any(|m| m.addr == addr && m.incarnation == 11 && m.state == MemberState::Alive).then_some(())
        }
    })
    .await;
    let view = second_life.members().await.expect("answers");
    assert_eq!(view.len(), 2);
    assert!(view.iter().all(|m| m.state == MemberState::Alive));
}

#[tokio::test]
async fn bad_configuration_is_refused_before_anything_starts() {
    let bad = Config { vnodes: 0, ..Config::lan() };
    let err = Cluster::builder().config(bad).start().await.unwrap_err();
    assert!(err.to_string().contains("vnodes"), "{err}");
    let err = Cluster::builder().listen("0.0.0.0:0".parse().unwrap()).start().await.unwrap_err();
    assert!(matches!(err, custody::Error::UnspecifiedAddress(_)), "{err}");
    let err = Cluster::builder().name("x".repeat(65)).start().await.unwrap_err();
    assert!(err.to_string().contains("65 bytes"), "{err}");
}

/// Issue 10, bug 5: a node started under the name of a live member (another
/// address) is refused with an error naming the clash; it never becomes a
/// member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_a_live_members_name_is_refused() {
    let config = Config::fast();
    let a = start("a", &[]).await;
    a.ready(limit(formation(&config, 1))).await.expect("the founder is ready");
    let b = start("b", &[a.local_addr()]).await;
    b.ready(limit(formation(&config, 2))).await.expect("b is ready");
    let twin = start("a", &[a.local_addr()]).await;
    // Refused as soon as the join reaches a member: the limit is only for a
    // join that never gets an answer.
    let err = twin.ready(limit(formation(&config, 3))).await.expect_err("a second 'a' is refused");
    assert!(
        matches!(&err, custody::Error::NameInUse { name, holder } if name == "a" && *holder == a.local_addr()),
        "{err}"
    );
    assert!(err.to_string().contains("--name"), "{err}");
    tokio::time::timeout(PROMPT, twin.stopped()).await.expect("the refused node stops");
    let status = a.status().await.expect("a answers");
    assert_eq!(status.members.len(), 2, "{:?}", status.members);
    assert!(status.members.iter().all(|m| m.addr != twin.local_addr()));
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), status.voters.len());
    assert!(status.members.iter().any(|m| m.addr == a.local_addr() && m.voter));
}
