//! The node's side of SWIM: every foca call goes through
//! [`Node::with_swim`], whose sends become outputs at once and whose
//! notifications wait for the drain loop; announces to seeds and to random
//! members. foca's types, codec and timers are in [`super::membership`].

use foca::OwnedNotification;
use rand::RngExt;

use super::membership::{Effects, Swim, SwimCodec};
use super::{Event, NOTIFICATIONS_MAX, Node, NodeId, Output, SCRATCH_KEPT_MAX, TIMERS_MAX, membership, wire};

impl Node {
    /// Runs one foca call. The packets it sends become outputs at once (a
    /// `TurnUndead` is judged against the membership right after the call
    /// that sent it); its notifications wait for [`Node::drain`].
    pub(super) fn with_swim<R>(&mut self, call: impl FnOnce(&mut Swim, &mut Effects<'_>) -> R) -> R {
        let mut effects = Effects {
            now: self.now,
            timers: &mut self.timers,
            sends: &mut self.sends,
            notifications: &mut self.notifications,
        };
        let result = call(&mut self.swim, &mut effects);
        if self.timers.len() > TIMERS_MAX {
            // Members learned by gossip are not capped by foca; a peer that
            // floods made-up members must not stop the node. Logged, not a
            // panic: the timers are foca's and it needs them.
            tracing::error!(
                timers = self.timers.len(),
                bound = TIMERS_MAX,
                "foca scheduled more timers than the bound"
            );
        }
        if self.notifications.len() > NOTIFICATIONS_MAX {
            // foca notifies once per member change; a flood of made-up
            // members must not grow this without bound either.
            tracing::error!(bound = NOTIFICATIONS_MAX, "foca notifications past the bound: the oldest dropped");
            let excess = self.notifications.len() - NOTIFICATIONS_MAX;
            self.notifications.drain(..excess);
        }
        // Drained, and put back: the buffer keeps its capacity, unless a
        // burst (a thousand members learned at once) made it large.
        let mut sends = std::mem::take(&mut self.sends);
        for (to, bytes) in sends.drain(..) {
            if self.is_spurious_turn_undead(&bytes) {
                self.stats.turn_undead_suppressed += 1;
                continue;
            }
            self.stats.swim_packets_sent += 1;
            self.push(Output::Datagram { to, bytes });
        }
        if self.sends.is_empty() && sends.capacity() <= SCRATCH_KEPT_MAX {
            self.sends = sends;
        }
        result
    }

    /// Whether a packet foca wants to send is a `TurnUndead` ("the cluster
    /// thinks you are down") to a member this node holds as alive or
    /// suspect.
    ///
    /// foca 2.0 sends one when a suspicion timer fires for a member that has
    /// refuted the suspicion in the meantime: the timer's condition fails,
    /// nothing is declared down, but the courtesy message still goes out, and
    /// the member, told it is down, rejoins with a new incarnation. Under
    /// loss that is a stream of needless identity changes (each of which a
    /// committed ring would see as a restart). A `TurnUndead` after a real
    /// Down declaration, or to an identity that is not (or no longer) an
    /// active member here, still goes out.
    pub(super) fn is_spurious_turn_undead(&self, datagram: &[u8]) -> bool {
        let Ok(packet) = wire::decode_datagram(datagram) else { return false };
        if membership::peek_message_tag(packet) != Some(membership::TAG_TURN_UNDEAD) {
            return false;
        }
        let Ok(header) = foca::Codec::decode_header(&mut SwimCodec, packet) else { return false };
        header.message == foca::Message::TurnUndead
            && self.swim.iter_membership_state().any(|m| m.id() == &header.dst && m.state() != foca::State::Down)
    }

    pub(super) fn handle_notification(&mut self, notification: OwnedNotification<NodeId>) {
        if !matches!(notification, OwnedNotification::Defunct) {
            self.membership_changed();
        }
        let event = match notification {
            OwnedNotification::MemberUp(id) => {
                self.store.member_up(&id, self.now);
                Event::MemberUp(id)
            }
            OwnedNotification::MemberDown(id) => {
                self.store.member_down(&id, self.now);
                self.push(Output::ClosePeer(id.addr));
                Event::MemberDown(id)
            }
            OwnedNotification::Rename(old, new) => {
                self.store.member_up(&new, self.now);
                Event::MemberRenamed { old, new }
            }
            OwnedNotification::Active => {
                // Joined someone; the retries stop once a configuration is
                // learned (see `handle_timeout`).
                // Pull the full member list at once: the announce's answer
                // carries only what fits in one packet.
                self.sync_at = Some(self.now);
                self.resync_after_join = true;
                Event::Joined
            }
            OwnedNotification::Idle => {
                // foca stops every periodic task when it knows no live
                // member; only our own re-announce brings it back.
                if !self.seeds.is_empty() && !self.left {
                    self.join_retry_at = Some(self.now + self.config.join_retry);
                }
                Event::Isolated
            }
            // A new SWIM generation of the same life: the store's view of
            // this node (its life, lease and Raft peer) is unchanged.
            OwnedNotification::Rejoin(id) => {
                // Push the new identity and pull the member list at once, as
                // after a first join: after a healed partition everyone
                // renews at the same time, and gossip alone leaves a tail.
                self.sync_at = Some(self.now);
                self.resync_after_join = true;
                Event::Rejoined(id)
            }
            // After our own leave_cluster: `Left` is emitted by `leave`.
            OwnedNotification::Defunct => return,
        };
        self.push(Output::Event(event));
    }

    pub(super) fn announce_to_seeds(&mut self) {
        if self.seeds.is_empty() {
            self.join_retry_at = None;
            return;
        }
        for i in 0..self.seeds.len() {
            let seed = NodeId::seed(self.seeds[i]);
            if let Err(e) = self.with_swim(|swim, effects| swim.announce(seed, effects)) {
                tracing::debug!(error = %e, "announce");
            }
            self.stats.announces_sent += 1;
        }
        self.join_retry_at = Some(self.now + self.config.join_retry);
    }

    /// Announces to one random live member: its feed in return repairs this
    /// node's view. Often while membership is changing, rarely otherwise.
    pub(super) fn announce_to_random_member(&mut self) {
        let period = self.config.announce_period;
        let unsettled = self.now < self.changed_at + period * 10;
        self.announce_at = Some(self.now + if unsettled { period } else { period * 5 });
        let count = self.swim.num_members();
        if count == 0 {
            return;
        }
        let pick = self.rng.random_range(0..count);
        let Some(peer) = self.swim.iter_members().nth(pick).map(|m| m.id().clone()) else { return };
        if let Err(e) = self.with_swim(|swim, effects| swim.announce(peer, effects)) {
            tracing::debug!(error = %e, "announce");
        }
    }

    /// Membership changed: announce at the fast period again.
    pub(super) fn membership_changed(&mut self) {
        self.changed_at = self.now;
        let soon = self.now + self.config.announce_period;
        if self.announce_at.is_none_or(|at| at > soon) {
            self.announce_at = Some(soon);
        }
    }
}
