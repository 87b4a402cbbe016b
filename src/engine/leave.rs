//! Leaving: a graceful leave (marked leaving, handed off, removed, then
//! gone from SWIM), a removal this life learns of (it rejoins as a new
//! life), and a name another live member holds (it refuses to join).

use super::{Event, MemberStatus, Node, NodeId, Output};

impl Node {
    /// A node that is not a member of the latest configuration it knows
    /// refuses to join if a member of it at another address holds its name
    /// and is alive in its SWIM view: it says so and leaves. (The leader
    /// does not admit such a join either.) A member never gives up its
    /// place this way.
    pub(super) fn check_name(&mut self) {
        if self.left || self.name_clash.is_some() {
            return;
        }
        let me = self.swim.identity();
        let Some(config) = self.store.latest() else { return };
        if config.member(me.addr).is_some_and(|m| m.id.incarnation == me.incarnation) {
            return;
        }
        let alive = |id: &NodeId| {
            self.swim.iter_membership_state().any(|m| m.id().life() == *id && m.state() != foca::State::Down)
        };
        let Some(holder) = config.members.iter().find(|m| m.id.name == me.name && m.id.addr != me.addr && alive(&m.id))
        else {
            return;
        };
        let holder = holder.id.clone();
        tracing::error!(
            name = %me.name,
            holder = %holder.addr,
            "the name is held by a live member at another address: not joining under it"
        );
        self.name_clash = Some(holder);
        self.finish_leave();
    }

    /// The store removed this life: stop acting, and come back as a new life
    /// (a higher incarnation), which the leader admits like any join.
    pub(super) fn on_removed(&mut self) {
        if self.leave_deadline.is_some() {
            // Leaving anyway: no new life. What this life held was cut for
            // the new owners when the removal epoch was learned; the leave
            // ends once it is handed over, within `handoff_timeout` from now.
            self.leave_deadline = Some(self.now + self.config.handoff_timeout);
            return;
        }
        let new = self.swim.identity().next_life();
        tracing::warn!(new = %new, "removed from the configuration: rejoining as a new life");
        self.store.renew_identity(new.clone());
        self.custody.renew_identity(new.clone(), self.now);
        if let Err(e) = self.with_swim(|swim, effects| swim.change_identity(new.clone(), effects)) {
            tracing::warn!(error = %e, "change identity");
        }
        self.push(Output::Event(Event::Rejoined(new)));
    }

    /// A graceful leave: if this life is a member of the committed
    /// configuration, ask the store to mark it leaving and remove it, and
    /// leave SWIM once the removal epoch is learned (or after a bounded
    /// wait, after which the others remove it by suspicion votes). A node
    /// that is no longer a member (removed before, or while, it leaves)
    /// still hands over what it holds first, within `handoff_timeout`.
    /// Either way it goes only once the Raft group no longer counts it as a
    /// voter (see [`Node::try_finish_leave`]).
    pub(super) fn leave(&mut self) {
        if self.leave_deadline.is_some() {
            return;
        }
        // The last member has nobody to hand over to, nor anyone to tell.
        let others = self.store.latest().is_some_and(|c| c.members.len() > 1);
        if self.store.is_member() && !self.store.was_removed() && others {
            self.custody.set_leaving();
            self.store.request_leave(self.now);
            self.leave_deadline = Some(self.now + self.leave_timeout());
        } else {
            // Not a member: it hands over what an earlier life held, and
            // asks the leader not to admit it meanwhile (a leave request
            // keeps a join out of the next epoch).
            self.leave_deadline = Some(self.now + self.config.handoff_timeout);
            self.store.request_leave(self.now);
        }
    }

    /// Ends a leave in progress once nothing keeps it: this life is no
    /// longer a member (removed, or never admitted) and custody handed off
    /// everything it held (the transfers cut when the removal was learned
    /// included), and no peer of this node is a voter of the Raft group any
    /// more (leaving would take a live voter from its quorum); or at once
    /// when it is the last member (nobody to hand over to).
    pub(super) fn try_finish_leave(&mut self) {
        if self.leave_deadline.is_none() || self.left {
            return;
        }
        let member = self.store.is_member() && !self.store.was_removed();
        let alone = member && self.store.latest().is_some_and(|c| c.members.len() == 1);
        // A removal can be heard of (a lease answer) before its epoch is
        // learned: until then custody holds the earlier life's parts idle,
        // not handed off, and the leave waits for that epoch.
        let me = self.swim.identity();
        let earlier_life_listed =
            self.store.latest().and_then(|c| c.member(me.addr)).is_some_and(|m| m.id.incarnation < me.incarnation);
        let done = !earlier_life_listed && self.custody.handed_off() && !self.store.holds_vote();
        if alone || (!member && done) {
            self.finish_leave();
        }
    }

    /// How long a leave waits for its removal epoch: the handoffs' bound,
    /// two batching windows and a lease, enough for a leader change in
    /// between.
    fn leave_timeout(&self) -> std::time::Duration {
        self.config.stable_after * 2 + self.config.lease + self.config.handoff_timeout
    }

    pub(super) fn finish_leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        self.join_retry_at = None;
        self.sync_at = None;
        self.announce_at = None;
        self.leave_deadline = None;
        // foca gossips our own Down to a few members and goes quiet.
        if let Err(e) = self.with_swim(|swim, effects| swim.leave_cluster(effects)) {
            tracing::debug!(error = %e, "leave_cluster");
        }
        self.push(Output::Event(Event::Left));
    }

    /// Whether the latest configuration holds this life as leaving.
    pub(super) fn leaving_in_latest(&self) -> bool {
        let me = self.swim.identity();
        // `m.id == me.life()`, without cloning the identity.
        self.store.latest().and_then(|c| c.member(me.addr)).is_some_and(|m| {
            m.status == MemberStatus::Leaving
                && m.id.incarnation == me.incarnation
                && m.id.generation == 0
                && m.id.name == me.name
        })
    }
}
