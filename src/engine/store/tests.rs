//! The leader's decisions, case by case: which changes the evidence asks
//! for ([`Leadership::wanted_changes`]) and which voter change comes next
//! ([`voter_change`]); and messages to this node itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::consensus::Applied;
use super::leader::{Evidence, Leadership, PeerHealth, VoterChange, VoterGroup, voter_change};
use super::{EpochStore, StoreEvent, StoreOutput, SwimView};
use crate::engine::config::Config;
use crate::engine::epoch::{Changes, ConfigMember, Configuration, MemberStatus};
use crate::engine::id::NodeId;
use crate::engine::time::Instant;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Life `inc` of node `n<port>`.
fn id(port: u16, inc: u64) -> NodeId {
    NodeId::new(addr(port), inc, &format!("n{port}"))
}

/// Life 1 of node `n<port>`.
fn n(port: u16) -> NodeId {
    id(port, 1)
}

/// One case of [`Leadership::wanted_changes`]: the leader is `n1` (life 1),
/// with [`Config::lan`] (leases of 5 s, so a lease lapses after 10 s; two
/// votes remove; handoffs get 30 s).
struct Wanted {
    name: &'static str,
    /// The latest configuration's members.
    members: Vec<(NodeId, MemberStatus)>,
    /// The leader's SWIM view.
    alive: Vec<NodeId>,
    /// Seconds since each address's last renewal at the leader.
    renewed: Vec<(u16, u64)>,
    /// Committed votes: target and voters.
    votes: Vec<(NodeId, Vec<NodeId>)>,
    /// Per address, the highest retired incarnation.
    retired: Vec<(u16, u64)>,
    leave_requests: Vec<NodeId>,
    handed_off: Vec<NodeId>,
    /// Seconds since the leader first saw each member leaving.
    leaving_since: Vec<(NodeId, u64)>,
    /// Seconds since the leader took over.
    led_for: u64,
    want: Changes,
}

/// Three active members, all alive and renewed a second ago, under a leader
/// of a minute: nothing to do.
fn steady() -> Wanted {
    Wanted {
        name: "",
        members: vec![(n(1), MemberStatus::Active), (n(2), MemberStatus::Active), (n(3), MemberStatus::Active)],
        alive: vec![n(1), n(2), n(3)],
        renewed: vec![(1, 1), (2, 1), (3, 1)],
        votes: vec![],
        retired: vec![],
        leave_requests: vec![],
        handed_off: vec![],
        leaving_since: vec![],
        led_for: 60,
        want: Changes::default(),
    }
}

fn joins(ids: &[NodeId]) -> Changes {
    Changes { joins: ids.to_vec(), ..Changes::default() }
}

fn leaving(ids: &[NodeId]) -> Changes {
    Changes { leaving: ids.to_vec(), ..Changes::default() }
}

fn removals(ids: &[NodeId]) -> Changes {
    Changes { removals: ids.to_vec(), ..Changes::default() }
}

fn named(port: u16, name: &str) -> NodeId {
    NodeId::new(addr(port), 1, name)
}

#[test]
fn the_leader_wants_the_changes_its_evidence_shows() {
    let cases = vec![
        Wanted { name: "steady", ..steady() },
        // SWIM sees a node the configuration does not have.
        Wanted { name: "a live node joins", alive: vec![n(1), n(2), n(3), n(4)], want: joins(&[n(4)]), ..steady() },
        // A restarted node is a new life at a member's address: it replaces
        // the old one (Configuration::next), which needs no removal.
        Wanted { name: "a new life replaces", alive: vec![n(1), id(2, 2), n(3)], want: joins(&[id(2, 2)]), ..steady() },
        // A committed epoch removed life 1 of n4: it never comes back.
        Wanted {
            name: "a retired life stays out",
            alive: vec![n(1), n(2), n(3), n(4)],
            retired: vec![(4, 1)],
            ..steady()
        },
        // Only the removed life and older ones are barred.
        Wanted {
            name: "a life after the retired one joins",
            alive: vec![n(1), n(2), n(3), id(4, 2)],
            retired: vec![(4, 1)],
            want: joins(&[id(4, 2)]),
            ..steady()
        },
        // A name names one live node: the newcomer sees the clash and gives
        // up (see `Node::name_clash`).
        Wanted { name: "a name held by a live member", alive: vec![n(1), n(2), n(3), named(5, "n2")], ..steady() },
        // The holder is not alive here: the name is free again.
        Wanted {
            name: "a name held by a member not alive here",
            alive: vec![n(1), n(3), named(5, "n2")],
            want: joins(&[named(5, "n2")]),
            ..steady()
        },
        // Two newcomers under one name: the first in address order joins.
        Wanted {
            name: "two joins under one name",
            alive: vec![n(1), n(2), n(3), named(4, "x"), named(5, "x")],
            want: joins(&[named(4, "x")]),
            ..steady()
        },
        // A node that asked to leave before it was admitted stays out.
        Wanted {
            name: "a join that asked to leave",
            alive: vec![n(1), n(2), n(3), n(4)],
            leave_requests: vec![n(4)],
            ..steady()
        },
        // No grant for two leases (10 s).
        Wanted { name: "a lapsed lease", renewed: vec![(1, 1), (2, 1), (3, 10)], want: removals(&[n(3)]), ..steady() },
        Wanted { name: "a lease not lapsed yet", renewed: vec![(1, 1), (2, 1), (3, 9)], ..steady() },
        // A new leader has granted nothing yet: it gives everyone two leases
        // from its start before taking any lease for lapsed.
        Wanted { name: "a new leader waits two leases", renewed: vec![(1, 1)], led_for: 9, ..steady() },
        Wanted {
            name: "never renewed under this leader",
            renewed: vec![(1, 1), (2, 1)],
            led_for: 10,
            want: removals(&[n(3)]),
            ..steady()
        },
        // The leader does not renew with itself to stay a member.
        Wanted { name: "the leader never lapses", renewed: vec![(2, 1), (3, 1)], ..steady() },
        // Two votes (`suspicion_votes`) and SWIM here does not see it either.
        Wanted {
            name: "enough votes",
            alive: vec![n(1), n(2)],
            votes: vec![(n(3), vec![n(1), n(2)])],
            want: removals(&[n(3)]),
            ..steady()
        },
        Wanted { name: "one vote", alive: vec![n(1), n(2)], votes: vec![(n(3), vec![n(2)])], ..steady() },
        // A false suspicion: the member came back in the leader's view.
        Wanted { name: "votes about a member alive here", votes: vec![(n(3), vec![n(1), n(2)])], ..steady() },
        Wanted { name: "a leave request", leave_requests: vec![n(2)], want: leaving(&[n(2)]), ..steady() },
        // Handoffs done: nothing left to wait for.
        Wanted {
            name: "a leaving member handed off",
            members: vec![(n(1), MemberStatus::Active), (n(2), MemberStatus::Leaving), (n(3), MemberStatus::Active)],
            leave_requests: vec![n(2)],
            handed_off: vec![n(2)],
            leaving_since: vec![(n(2), 1)],
            want: removals(&[n(2)]),
            ..steady()
        },
        // Still handing off: it stays (marked leaving again, which changes
        // nothing).
        Wanted {
            name: "a leaving member within its handoff time",
            members: vec![(n(1), MemberStatus::Active), (n(2), MemberStatus::Leaving), (n(3), MemberStatus::Active)],
            leave_requests: vec![n(2)],
            leaving_since: vec![(n(2), 29)],
            want: leaving(&[n(2)]),
            ..steady()
        },
        // Out of handoff time: treated like a crash.
        Wanted {
            name: "a leaving member past its handoff time",
            members: vec![(n(1), MemberStatus::Active), (n(2), MemberStatus::Leaving), (n(3), MemberStatus::Active)],
            leave_requests: vec![n(2)],
            leaving_since: vec![(n(2), 30)],
            want: removals(&[n(2)]),
            ..steady()
        },
        // The leader hands leadership over first; the next leader removes it.
        Wanted {
            name: "a leaving leader is not removed",
            members: vec![(n(1), MemberStatus::Leaving), (n(2), MemberStatus::Active), (n(3), MemberStatus::Active)],
            leave_requests: vec![n(1)],
            handed_off: vec![n(1)],
            leaving_since: vec![(n(1), 60)],
            want: leaving(&[n(1)]),
            ..steady()
        },
        // Everything at once goes into one epoch.
        Wanted {
            name: "a join, a leave and a removal",
            alive: vec![n(1), n(2), n(3), n(4)],
            renewed: vec![(1, 1), (2, 1)],
            leave_requests: vec![n(2)],
            want: Changes { joins: vec![n(4)], leaving: vec![n(2)], removals: vec![n(3)] },
            ..steady()
        },
    ];
    let cfg = Config::lan();
    let since = Instant::from_micros(1_000_000_000);
    for case in cases {
        let now = since + Duration::from_secs(case.led_for);
        let ago = |secs: u64| Instant::from_micros(now.as_micros() - secs * 1_000_000);
        let members = case.members.iter().map(|(id, status)| ConfigMember { id: id.clone(), status: *status });
        let latest = Configuration { members: members.collect(), ..Configuration::first(1, n(1), 16, 3) };
        let view =
            SwimView { alive: case.alive.iter().map(|id| (id.addr, id.clone())).collect(), down: BTreeSet::new() };
        let applied = Applied {
            chain: BTreeMap::new(),
            votes: case.votes.iter().map(|(t, by)| (t.clone(), by.iter().cloned().collect())).collect(),
            retired: case.retired.iter().map(|&(port, inc)| (addr(port), inc)).collect(),
        };
        let mut leadership = Leadership::default();
        leadership.since = Some(since);
        leadership.last_renewal = case.renewed.iter().map(|&(port, secs)| (addr(port), ago(secs))).collect();
        leadership.leave_requests = case.leave_requests.into_iter().collect();
        leadership.handed_off = case.handed_off.into_iter().collect();
        leadership.leaving_since = case.leaving_since.into_iter().map(|(id, secs)| (id, ago(secs))).collect();
        let evidence = Evidence { me: &n(1), cfg: &cfg, view: &view, applied: &applied };
        let got = leadership.wanted_changes(&latest, &evidence, since, now);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

/// One case of [`voter_change`]. The leader is Raft id 1; the ids stand for
/// members in address order.
struct Voters {
    name: &'static str,
    voters: &'static [u64],
    learners: &'static [u64],
    /// The latest configuration's active members.
    active: &'static [u64],
    /// `voters` in the configuration.
    wanted: u8,
    /// Each peer's health, as letters: `a` alive (in SWIM), `h` healthy
    /// (alive and renewed here), `c` caught up, `r` recently active in Raft.
    /// Peers not listed are none of these.
    health: &'static [(u64, &'static str)],
    want: Option<VoterChange>,
}

fn health(letters: &str) -> PeerHealth {
    PeerHealth {
        alive: letters.contains('a') || letters.contains('h'),
        healthy: letters.contains('h'),
        caught_up: letters.contains('c'),
        recent_active: letters.contains('r'),
    }
}

#[test]
fn the_leader_changes_one_voter_at_a_time() {
    use VoterChange::*;
    let cases = [
        // Three voters, all well.
        Voters {
            name: "steady",
            voters: &[1, 2, 3],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "hc")],
            want: None,
        },
        // A new group grows: a healthy member first joins as a learner.
        Voters {
            name: "add a learner",
            voters: &[1],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "h"), (3, "h")],
            want: Some(AddLearner(2)),
        },
        // A dead node made a voter could take the quorum with it.
        Voters {
            name: "only a healthy member is added",
            voters: &[1],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "a"), (3, "h")],
            want: Some(AddLearner(3)),
        },
        // Alive, but a new leader has not heard a renewal from it yet.
        Voters {
            name: "wait for a member to renew",
            voters: &[1],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "a"), (3, "a")],
            want: None,
        },
        Voters {
            name: "promote a caught-up learner",
            voters: &[1],
            learners: &[2],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "h")],
            want: Some(Promote(2)),
        },
        // One change at a time: no second learner while one catches up.
        Voters {
            name: "wait for a learner to catch up",
            voters: &[1],
            learners: &[2],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "h"), (3, "h")],
            want: None,
        },
        // It would block the replacement.
        Voters {
            name: "remove a learner that is neither healthy nor caught up",
            voters: &[1],
            learners: &[2],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (3, "h")],
            want: Some(Remove(2)),
        },
        // Learners do not vote: removing one costs nothing.
        Voters {
            name: "remove a learner whose life left",
            voters: &[1, 2, 3],
            learners: &[4],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "hc"), (4, "hc")],
            want: Some(Remove(4)),
        },
        // Before any promotion.
        Voters {
            name: "a learner whose life left goes first",
            voters: &[1],
            learners: &[2, 5],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "h")],
            want: Some(Remove(5)),
        },
        Voters {
            name: "an unhealthy learner goes before a promotion",
            voters: &[1],
            learners: &[2, 3],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc")],
            want: Some(Remove(3)),
        },
        // Voter 4's life left the configuration. A stale voter that is only
        // paused or cut off counts for the quorum if it comes back: a
        // replacement comes first.
        Voters {
            name: "replace before remove",
            voters: &[1, 2, 4],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "h"), (4, "hc")],
            want: Some(AddLearner(3)),
        },
        // The replacement votes: now the stale voter goes.
        Voters {
            name: "remove a stale voter",
            voters: &[1, 2, 3, 4],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "hc"), (4, "hc")],
            want: Some(Remove(4)),
        },
        // No replacement in sight (3 is dead): the stale voter goes anyway
        // while the others hold a live majority.
        Voters {
            name: "remove a stale voter with no replacement",
            voters: &[1, 2, 4],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (4, "hc")],
            want: Some(Remove(4)),
        },
        // Two stale voters: the one this leader cannot reach goes first,
        // though 4 comes first in address order.
        Voters {
            name: "an unreachable stale voter goes first",
            voters: &[1, 2, 3, 4, 5],
            learners: &[],
            active: &[1, 2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "hc"), (4, "hc")],
            want: Some(Remove(5)),
        },
        // Removing 3 would leave voters 1 and 2 with 2 unreachable: a group
        // that never reaches quorum again if 1 fails.
        Voters {
            name: "no removal without a live majority after it",
            voters: &[1, 2, 3],
            learners: &[],
            active: &[1, 2],
            wanted: 3,
            health: &[(1, "hc"), (3, "hc")],
            want: None,
        },
        // 2 is a new life now (not healthy under its old Raft id) but its
        // earlier life's peer still answers Raft: it counts as live.
        Voters {
            name: "a peer answering Raft counts as live",
            voters: &[1, 2, 3],
            learners: &[],
            active: &[1, 2],
            wanted: 3,
            health: &[(1, "hc"), (2, "r"), (3, "hc")],
            want: Some(Remove(3)),
        },
        // Four voters tolerate no more failures than three.
        Voters {
            name: "an even target rounds down",
            voters: &[1, 2, 3],
            learners: &[],
            active: &[1, 2, 3, 4],
            wanted: 4,
            health: &[(1, "hc"), (2, "hc"), (3, "hc"), (4, "hc")],
            want: None,
        },
        // Two active members: the target is min(3, 2) = 2, rounded down to 1.
        Voters {
            name: "no more voters than active members",
            voters: &[1],
            learners: &[],
            active: &[1, 2],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc")],
            want: None,
        },
        // Not needed as a voter, and healthy: it stays a learner.
        Voters {
            name: "a spare learner stays",
            voters: &[1, 2, 3],
            learners: &[4],
            active: &[1, 2, 3, 4],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "hc"), (4, "hc")],
            want: None,
        },
        // The leader (1) is leaving: it never removes itself, it hands
        // leadership to a voter that stays and has the log (not 2, which
        // leaves too; not 3, which lags).
        Voters {
            name: "a leaving leader hands over",
            voters: &[1, 2, 3, 4],
            learners: &[],
            active: &[3, 4],
            wanted: 3,
            health: &[(1, "hc"), (2, "hc"), (3, "h"), (4, "hc")],
            want: Some(TransferLeadership(4)),
        },
        Voters {
            name: "a leaving leader waits for a caught-up voter",
            voters: &[1, 2, 3],
            learners: &[],
            active: &[2, 3],
            wanted: 3,
            health: &[(1, "hc"), (2, "h"), (3, "h")],
            want: None,
        },
    ];
    for case in cases {
        let voters: BTreeSet<u64> = case.voters.iter().copied().collect();
        let learners: BTreeSet<u64> = case.learners.iter().copied().collect();
        let group =
            VoterGroup { me: 1, voters: &voters, learners: &learners, active: case.active, wanted: case.wanted };
        let peers: BTreeMap<u64, PeerHealth> = case.health.iter().map(|&(id, h)| (id, health(h))).collect();
        let got = voter_change(group, |id| peers.get(&id).copied().unwrap_or_default());
        assert_eq!(got, case.want, "{}", case.name);
    }
}

/// A lone voter asks itself for its lease: the request and the grant are
/// messages to itself, handled in turn once the timeout's renewal is done,
/// and the grant comes within that same input.
#[test]
fn a_lone_voter_grants_its_own_lease_within_one_input() {
    let cfg = Config::fast();
    let mut store = EpochStore::new(n(1), cfg.clone(), 7);
    let start = Instant::from_micros(1_000_000);
    store.bootstrap(start);
    let events: Vec<StoreOutput> = store.drain().collect();
    assert!(
        events.contains(&StoreOutput::Event(StoreEvent::EpochCommitted { epoch: 1, hash: store.learned.latest_hash }))
    );
    assert!(store.is_leader() && store.is_member());
    store.handle_timeout(start);
    let outputs: Vec<StoreOutput> = store.drain().collect();
    assert_eq!(outputs, vec![StoreOutput::Event(StoreEvent::LeaseRenewed { lease_end: start + cfg.lease })]);
    assert_eq!(store.lease_end(), Some(start + cfg.lease));
    assert_eq!(store.stats().lease_requests, 1);
    assert_eq!(store.lease.answered, 1);
    assert!(store.to_self.is_empty());
}
