//! Engine configuration: membership (SWIM) timings, packet size, ring shape.
//!
//! Every field says its meaning, unit, default, valid range and what a bad
//! value costs. [`Config::validate`] checks the ranges; the runtime and the
//! CLI call it at the input boundary, and [`crate::engine::Node::new`]
//! asserts it.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::epoch::VNODES_MAX;
use super::ring::VNODES_DEFAULT;

/// The smallest `max_packet_size` accepted. Below this a SWIM packet cannot
/// carry a header plus a few member updates.
pub const MAX_PACKET_SIZE_MIN: usize = 512;

/// The largest `max_packet_size` accepted: the largest QUIC datagram payload
/// on a 1500-byte Ethernet path. Larger packets always take the (slower)
/// stream fallback.
pub const MAX_PACKET_SIZE_MAX: usize = 1400;

/// The longest task deadline (`d_max`) accepted: a day. A task may run
/// across many leases (the custodian renews while it runs, and cancels it
/// when it cannot); past a day, a task is better split.
pub const D_MAX_MAX: Duration = Duration::from_secs(24 * 3600);

/// Tunables of one node's engine.
///
/// Serialized (e.g. in a netsim plan) with every duration in whole
/// milliseconds, under the field name plus `_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Time between two probes of a random member (SWIM protocol period).
    /// Default 1 s. Range 50 ms ..= 60 s. Shorter detects failures sooner and
    /// costs proportionally more packets; it must stay well above the
    /// network's round-trip time.
    #[serde(rename = "probe_period_ms", with = "millis")]
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to
    /// probe indirectly. Default 500 ms. Must be below `probe_period`; too
    /// short on a slow network causes needless indirect probes.
    #[serde(rename = "probe_rtt_ms", with = "millis")]
    pub probe_rtt: Duration,
    /// How many members are asked to probe a silent member indirectly.
    /// Default 3. Range 1 ..= 16. More lowers false suspicion under loss.
    pub num_indirect_probes: usize,
    /// How many times each membership update is gossiped before it is
    /// dropped from the queue. Default 16 (tuned in netsim: 12 left 200
    /// simultaneous joins unconverged after 15 s). Range 1 ..= 255. Too low leaves a
    /// long tail of members that never hear an update and must wait for
    /// their own probe.
    pub max_transmissions: u8,
    /// How long a member stays Suspect before it is declared Down, unless it
    /// refutes. Default 4 s. Range ≥ `probe_period`. Shorter detects crashes
    /// sooner and raises false Down declarations under loss or pauses.
    #[serde(rename = "suspect_to_down_after_ms", with = "millis")]
    pub suspect_to_down_after: Duration,
    /// How long a Down member is remembered (and shown as down) before it is
    /// forgotten. Default 1 h. Must be positive.
    #[serde(rename = "remove_down_after_ms", with = "millis")]
    pub remove_down_after: Duration,
    /// Period of gossip rounds that push pending updates. Default 200 ms.
    #[serde(rename = "gossip_period_ms", with = "millis")]
    pub gossip_period: Duration,
    /// Members each gossip round sends to. Default 3. Range 1 ..= 16.
    pub gossip_fanout: usize,
    /// Period of announcing ourselves to a random member, whose answer (a
    /// feed of the members it knows) repairs views that diverged, e.g. the
    /// last members to hear of a rejoin after a partition heals. This is the
    /// period while membership is changing (within 10 periods of the last
    /// change this node saw); otherwise announces go 5 times less often.
    /// Default 2 s (tuned in netsim: with 30 s, heals at N=50 took up to
    /// 35 s to converge; with 5 s, up to 22 s once the cut-off side also
    /// comes back as new lives). Each feed costs the receiver a scan of its
    /// member list per entry.
    #[serde(rename = "announce_period_ms", with = "millis")]
    pub announce_period: Duration,
    /// Period of announcing ourselves to members we believe are Down, which
    /// is what re-merges the two sides of a healed partition. Default 3 s
    /// (tuned in netsim: 10 s re-merged halves of 50 nodes in up to 33 s).
    /// Each announce to a member that is really gone costs a connection
    /// attempt.
    #[serde(rename = "announce_to_down_period_ms", with = "millis")]
    pub announce_to_down_period: Duration,
    /// Largest SWIM packet produced and accepted, in bytes. Default 1100,
    /// which fits the QUIC datagram size of a fresh connection (1162 bytes
    /// before path MTU discovery). Range [`MAX_PACKET_SIZE_MIN`] ..=
    /// [`MAX_PACKET_SIZE_MAX`]. Larger packets take the stream fallback.
    /// Never lower it on a running cluster: it is also the receive limit.
    pub max_packet_size: usize,
    /// Period of a full membership sync with one random member (push and
    /// pull of every member's state over a stream), on top of the sync a
    /// node does right after joining. Default 30 s. Repairs what gossip
    /// missed, e.g. one member of a large join storm that a node never
    /// heard of; costs one frame of the whole member list each way.
    #[serde(rename = "sync_period_ms", with = "millis")]
    pub sync_period: Duration,
    /// While a joining node has no members, it re-announces to its seeds
    /// this often. Default 1 s.
    #[serde(rename = "join_retry_ms", with = "millis")]
    pub join_retry: Duration,
    /// Voters of the epoch store (the embedded Raft group). Default 3; odd,
    /// 1 ..= 7. More voters survive more failures and make each commit and
    /// lease read cost more messages.
    pub voters: u8,
    /// The leader commits an epoch once membership evidence has been
    /// unchanged this long, batching every change seen meanwhile into one
    /// epoch. Default 2 s. Shorter: faster reaction, more epochs in a churn.
    #[serde(rename = "stable_after_ms", with = "millis")]
    pub stable_after: Duration,
    /// Distinct suspicion votes (SWIM `MemberDown` seen by members) that
    /// remove a member. Default 2. Range 1 ..= 16. 1 lets one confused
    /// observer remove a healthy node.
    pub suspicion_votes: u8,
    /// How often every node renews its lease with the leader. Default 1 s.
    /// Must be well below `lease`.
    #[serde(rename = "lease_renew_ms", with = "millis")]
    pub lease_renew: Duration,
    /// How long a granted lease lasts, from the moment its request was sent
    /// (T_lease). Default 5 s. A node cut off from the leader stops acting
    /// as custodian within this.
    #[serde(rename = "lease_ms", with = "millis")]
    pub lease: Duration,
    /// Longest a task may run (D_max): its handler's deadline is its start
    /// plus this; past it the runtime stops the handler and the task fails.
    /// Default 2.5 s. At most [`D_MAX_MAX`] (a day): a task need not fit in
    /// one lease, since the custodian renews its lease while tasks run and
    /// cancels them when it cannot (see `cancel_margin`).
    #[serde(rename = "d_max_ms", with = "millis")]
    pub d_max: Duration,
    /// How long before its lease ends a custodian that could not renew
    /// cancels its running tasks, so that they have stopped by the lease's
    /// end; and the least lease a task needs to start (`now + cancel_margin
    /// < lease_end`). Default 500 ms (200 ms with [`Config::fast`]). Must be
    /// positive and below `lease − lease_renew` (otherwise the tasks would
    /// be cancelled between two renewals). A handler must honour a
    /// cancellation within this margin (docs/design.md, assumption A2);
    /// longer is safer against slow handlers, and idles a cut-off
    /// custodian's tasks sooner.
    #[serde(rename = "cancel_margin_ms", with = "millis", default = "cancel_margin_default")]
    pub cancel_margin: Duration,
    /// Whether a node rebuilds, from a read quorum of their replicas, the
    /// parts of a custodian removed without handing them off
    /// (docs/design.md section 7.7). Off by default while it is being
    /// proven: netsim still finds combined faults (a transfer in doubt to
    /// a replaced life, a second crash mid-recovery) where it breaks the
    /// dedup window or stays unavailable without a documented reason.
    /// Replication before the acknowledgement runs either way.
    #[serde(default)]
    pub recovery: bool,
    /// Period of the Raft clock tick (each node jitters it by ±20%).
    /// Elections time out after 10 ticks, heartbeats every 2. Default
    /// 100 ms.
    #[serde(rename = "raft_tick_ms", with = "millis")]
    pub raft_tick: Duration,
    /// Replicas per range (k), the custodian included, recorded in each
    /// configuration by the node that starts the cluster: a task is
    /// acknowledged once a majority of its range's replicas holds it. Default 3.
    pub replication: u8,
    /// Points each member places on the ring. Default 128. Range 1 ..= 4096.
    /// Fewer points balance load worse; more cost memory and build time.
    pub vnodes: u32,
    /// Tasks this node executes at once, over all resources (the worker
    /// pool; never more than one per resource). Default 64. Range 1 ..=
    /// 65,536. A hot resource takes one worker; the others keep running.
    #[serde(default = "workers_default")]
    pub workers: usize,
    /// How long the removal of a leaving member waits for its handoffs to
    /// finish; past it, the member is removed as if it had crashed and its
    /// unfinished ranges stay unavailable until recovered. Default 30 s.
    #[serde(rename = "handoff_timeout_ms", with = "millis", default = "handoff_timeout_default")]
    pub handoff_timeout: Duration,
}

fn workers_default() -> usize {
    64
}

fn handoff_timeout_default() -> Duration {
    Duration::from_secs(30)
}

fn cancel_margin_default() -> Duration {
    Duration::from_millis(500)
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

/// The bound on clock rate drift the lease arithmetic assumes, in parts per
/// million (ρ = 10⁻³): a node's clock runs within ρ of true time.
pub const CLOCK_DRIFT_MAX_PPM: u32 = 1000;

impl Config {
    /// Timings for a LAN: probe every 1 s, suspicion to Down after 4 s.
    /// Crash detection takes about 5–7 s in a small cluster.
    pub fn lan() -> Config {
        Config {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            num_indirect_probes: 3,
            max_transmissions: 16,
            suspect_to_down_after: Duration::from_secs(4),
            remove_down_after: Duration::from_secs(3600),
            gossip_period: Duration::from_millis(200),
            gossip_fanout: 3,
            announce_period: Duration::from_secs(2),
            announce_to_down_period: Duration::from_secs(3),
            max_packet_size: 1100,
            sync_period: Duration::from_secs(30),
            join_retry: Duration::from_secs(1),
            voters: 3,
            stable_after: Duration::from_secs(2),
            suspicion_votes: 2,
            lease_renew: Duration::from_secs(1),
            lease: Duration::from_secs(5),
            d_max: Duration::from_millis(2500),
            cancel_margin: cancel_margin_default(),
            recovery: false,
            raft_tick: Duration::from_millis(100),
            replication: super::epoch::REPLICATION_DEFAULT,
            vnodes: VNODES_DEFAULT,
            workers: workers_default(),
            handoff_timeout: handoff_timeout_default(),
        }
    }

    /// Faster timings for a quiet local network or tests: probe every
    /// 300 ms, Down after 1 s of suspicion. About 1.5 s crash detection,
    /// about three times the packets of [`Config::lan`], and more false
    /// suspicion when a host stalls.
    pub fn fast() -> Config {
        Config {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down_after: Duration::from_secs(1),
            gossip_period: Duration::from_millis(100),
            announce_period: Duration::from_secs(1),
            announce_to_down_period: Duration::from_secs(2),
            join_retry: Duration::from_millis(500),
            stable_after: Duration::from_millis(500),
            lease_renew: Duration::from_millis(250),
            lease: Duration::from_millis(1500),
            d_max: Duration::from_millis(750),
            cancel_margin: Duration::from_millis(200),
            raft_tick: Duration::from_millis(50),
            handoff_timeout: Duration::from_secs(10),
            ..Config::lan()
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        let ms = |d: Duration| d.as_millis();
        if self.probe_period < Duration::from_millis(50) || self.probe_period > Duration::from_secs(60) {
            return bad("probe_period", format!("{} ms is outside 50 ms ..= 60 s", ms(self.probe_period)));
        }
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return bad("probe_rtt", format!("{} ms must be positive and below probe_period", ms(self.probe_rtt)));
        }
        if !(1..=16).contains(&self.num_indirect_probes) {
            return bad("num_indirect_probes", format!("{} is outside 1 ..= 16", self.num_indirect_probes));
        }
        if self.max_transmissions == 0 {
            return bad("max_transmissions", "must be at least 1".into());
        }
        if self.suspect_to_down_after < self.probe_period {
            return bad("suspect_to_down_after", "must be at least probe_period".into());
        }
        for (field, d) in [
            ("remove_down_after", self.remove_down_after),
            ("gossip_period", self.gossip_period),
            ("announce_period", self.announce_period),
            ("announce_to_down_period", self.announce_to_down_period),
            ("join_retry", self.join_retry),
            ("sync_period", self.sync_period),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive".into());
            }
        }
        if !(1..=16).contains(&self.gossip_fanout) {
            return bad("gossip_fanout", format!("{} is outside 1 ..= 16", self.gossip_fanout));
        }
        if !(MAX_PACKET_SIZE_MIN..=MAX_PACKET_SIZE_MAX).contains(&self.max_packet_size) {
            return bad(
                "max_packet_size",
                format!("{} is outside {MAX_PACKET_SIZE_MIN} ..= {MAX_PACKET_SIZE_MAX}", self.max_packet_size),
            );
        }
        if self.voters.is_multiple_of(2) || !(1..=7).contains(&self.voters) {
            return bad("voters", format!("{} must be odd, 1 ..= 7", self.voters));
        }
        if !(1..=16).contains(&self.suspicion_votes) {
            return bad("suspicion_votes", format!("{} is outside 1 ..= 16", self.suspicion_votes));
        }
        for (field, d) in
            [("stable_after", self.stable_after), ("lease_renew", self.lease_renew), ("raft_tick", self.raft_tick)]
        {
            if d.is_zero() {
                return bad(field, "must be positive".into());
            }
        }
        if self.lease < self.lease_renew * 2 {
            return bad("lease", "must be at least twice lease_renew".into());
        }
        if self.d_max > D_MAX_MAX {
            return bad(
                "d_max",
                format!("{} ms is above the longest task deadline, {} h", ms(self.d_max), D_MAX_MAX.as_secs() / 3600),
            );
        }
        if self.cancel_margin.is_zero() || self.cancel_margin + self.lease_renew >= self.lease {
            return bad(
                "cancel_margin",
                format!(
                    "{} ms must be positive and below lease − lease_renew ({} ms), or running tasks would be \
                     cancelled between two renewals",
                    ms(self.cancel_margin),
                    ms(self.lease.saturating_sub(self.lease_renew))
                ),
            );
        }
        if !(1..=7).contains(&self.replication) {
            return bad("replication", format!("{} is outside 1 ..= 7", self.replication));
        }
        if !(1..=65_536).contains(&self.workers) {
            return bad("workers", format!("{} is outside 1 ..= 65536", self.workers));
        }
        if self.handoff_timeout.is_zero() {
            return bad("handoff_timeout", "must be positive".into());
        }
        if !(1..=VNODES_MAX).contains(&self.vnodes) {
            return bad("vnodes", format!("{} is outside 1 ..= {VNODES_MAX}", self.vnodes));
        }
        Ok(())
    }

    /// An upper bound on the time from a member's crash to every survivor
    /// of a `cluster_size`-node cluster marking it Down, with no packet
    /// loss.
    ///
    /// A survivor probes members in a shuffled round robin, so the dead
    /// member is probed within `2·(n−1)` probe periods (worst case: first in
    /// one round, last in the next). The failed probe turns it Suspect at the
    /// next period, Down follows `suspect_to_down_after` later, and the Down
    /// update reaches the others with the next gossip rounds. The first
    /// survivor to notice usually tells the rest long before their own
    /// probes get there.
    pub fn failure_detection_bound(&self, cluster_size: usize) -> Duration {
        let others = u32::try_from(cluster_size.saturating_sub(1).max(1)).unwrap_or(u32::MAX);
        self.probe_period * (2 * others + 1) + self.suspect_to_down_after + self.gossip_period * 3
    }

    /// `W`: how long a node that takes custody of a part without a transfer
    /// (recovery) waits, on its own clock, from learning the epoch that
    /// removed the previous custodian: `lease·(1 + ρ)/(1 − ρ)` with the
    /// clock rate bound ρ = [`CLOCK_DRIFT_MAX_PPM`]. The previous
    /// custodian's last lease was granted before that epoch was committed,
    /// so it has run out by then.
    pub fn recovery_wait(&self) -> Duration {
        let rho = f64::from(CLOCK_DRIFT_MAX_PPM) / 1e6;
        self.lease.mul_f64((1.0 + rho) / (1.0 - rho))
    }

    /// The foca configuration these values make.
    pub(crate) fn to_foca(&self) -> foca::Config {
        let periodic = |frequency: Duration, n: usize| {
            Some(foca::PeriodicParams { frequency, num_members: NonZeroUsize::new(n).expect("validated") })
        };
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: NonZeroUsize::new(self.num_indirect_probes).expect("validated"),
            max_transmissions: NonZeroU8::new(self.max_transmissions).expect("validated"),
            suspect_to_down_after: self.suspect_to_down_after,
            remove_down_after: Some(self.remove_down_after),
            // The wire adds one version byte in front of every foca packet.
            max_packet_size: NonZeroUsize::new(self.max_packet_size - 1).expect("validated"),
            notify_down_members: true,
            // The engine announces itself (see `announce_period`): foca's
            // fixed period cannot follow membership changes.
            periodic_announce: None,
            periodic_announce_to_down_members: periodic(self.announce_to_down_period, 2),
            periodic_gossip: periodic(self.gossip_period, self.gossip_fanout),
        }
    }
}

/// Durations as whole milliseconds in serialized configurations.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A configuration value outside its range. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        Config::lan().validate().unwrap();
        Config::fast().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let c = Config { probe_rtt: Duration::from_secs(2), ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "probe_rtt");
        let c = Config { max_packet_size: 9000, ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "max_packet_size");
        let c = Config { vnodes: 0, ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "vnodes");
    }

    #[test]
    fn a_task_deadline_may_span_many_leases_up_to_a_day() {
        let hours = Config { d_max: Duration::from_secs(5 * 3600), ..Config::lan() };
        hours.validate().unwrap();
        Config { d_max: D_MAX_MAX, ..Config::lan() }.validate().unwrap();
        let c = Config { d_max: D_MAX_MAX + Duration::from_millis(1), ..Config::lan() };
        assert_eq!(c.validate().unwrap_err().field, "d_max");
    }

    #[test]
    fn the_cancel_margin_fits_between_two_renewals() {
        for bad in [Duration::ZERO, Duration::from_secs(4), Duration::from_secs(5)] {
            let c = Config { cancel_margin: bad, ..Config::lan() };
            assert_eq!(c.validate().unwrap_err().field, "cancel_margin", "{bad:?}");
        }
        Config { cancel_margin: Duration::from_millis(3999), ..Config::lan() }.validate().unwrap();
    }

    #[test]
    fn a_config_saved_without_a_cancel_margin_takes_the_default() {
        let mut json = serde_json::to_value(Config::lan()).unwrap();
        assert_eq!(json["cancel_margin_ms"], 500);
        json.as_object_mut().unwrap().remove("cancel_margin_ms");
        let back: Config = serde_json::from_value(json).unwrap();
        assert_eq!(back, Config::lan());
    }

    #[test]
    fn serializes_durations_as_milliseconds() {
        let json = serde_json::to_value(Config::lan()).unwrap();
        assert_eq!(json["probe_period_ms"], 1000);
        assert_eq!(json["max_packet_size"], 1100);
        let back: Config = serde_json::from_value(json).unwrap();
        assert_eq!(back, Config::lan());
    }

    #[test]
    fn detection_bound_follows_the_timings() {
        // 3 nodes on lan timings: 5 probe periods + 4 s suspicion + 3 gossip rounds.
        assert_eq!(Config::lan().failure_detection_bound(3), Duration::from_millis(9_600));
        assert!(Config::fast().failure_detection_bound(3) < Duration::from_secs(3));
    }
}
