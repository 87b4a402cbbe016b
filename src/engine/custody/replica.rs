//! The replica side of replication: copies of other custodians' resources.
//!
//! A custodian answers a submit only once a write quorum of the resource's
//! replicas holds the task (`replication.rs`). This is what a replica keeps
//! for that: per resource, the tasks not run yet, the executed watermark
//! and the recent task ids, exactly as the custodian sent them, and the
//! epoch of the last write it took. A write older than that epoch (a former
//! custodian's late message) is refused; a delta that does not follow what
//! the copy holds (a lost message, a new replica) is refused with a request
//! for the whole state. So a copy always holds every task from its
//! watermark up to its last number, without a gap: what a replica
//! acknowledges, it holds.
//!
//! Memory is bounded ([`REPLICA_RESOURCES_MAX`], [`REPLICA_TASKS_MAX`],
//! [`REPLICA_BYTES_MAX`]); a write past a bound is refused as `busy` and
//! nothing is held for it, so the custodian cannot count this replica
//! towards its quorum.

use std::collections::{BTreeMap, VecDeque};

use super::super::ring::{Ring, Span};
use super::super::task::{DEDUP_PER_RESOURCE_MAX, TOKEN_EPOCHS_PER_RESOURCE_MAX};
use super::super::wire::{PendingTask, ReplicaWrite, ResourceState};
use super::marks::Marks;
use super::{Key, keys_in_map};

/// Resources a node holds copies of, for other custodians.
pub const REPLICA_RESOURCES_MAX: usize = 1 << 20;
/// Tasks a node holds in copies, all resources together.
pub const REPLICA_TASKS_MAX: usize = 524_288;
/// Bytes of tasks a node holds in copies, all resources together.
pub const REPLICA_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Why a write was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Older than the epoch of the last write taken for the resource, than
    /// the epoch a recovery sealed its point at, or than the epoch a
    /// custodian marked its point's copies complete in.
    Stale,
    /// Does not follow what the copy holds: the whole state is needed.
    NeedFull,
    /// A bound would be passed.
    Busy,
}

/// One resource's copy.
#[derive(Debug, Default)]
struct ResourceCopy {
    /// The epoch of the last write taken.
    epoch: u64,
    last_seq: u64,
    executed: u64,
    token_floor: u64,
    /// Tasks numbered `executed + 1 ..= last_seq`, in order.
    pending: VecDeque<PendingTask>,
    bytes: usize,
    /// Recent task ids: `(id, seq, token epoch or 0)`, in sequence order.
    dedup: VecDeque<(String, u64, u64)>,
    token_epochs: Vec<(u64, u64)>,
    forgotten: Vec<(u64, u64)>,
}

/// The copies this node holds.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    copies: BTreeMap<Key, ResourceCopy>,
    tasks: usize,
    bytes: usize,
    /// Per point, the epoch a recovery sealed it at: writes of older epochs
    /// are refused.
    sealed: Marks,
    /// Per point, the highest epoch in which a custodian marked this
    /// node's copies complete (a checked [`super::super::wire::SyncMark`]).
    synced: Marks,
}

impl Replicas {
    /// Resources held.
    pub(crate) fn len(&self) -> usize {
        self.copies.len()
    }

    /// Tasks held, all resources together.
    pub(crate) fn tasks(&self) -> usize {
        self.tasks
    }

    /// Takes a write of the custodian at `epoch`. Returns the last number
    /// the copy holds every task up to.
    pub(crate) fn apply(&mut self, epoch: u64, write: ReplicaWrite) -> Result<u64, Refusal> {
        let name = write.resource().to_string();
        let key: Key = (Ring::key_hash(&name), name);
        // Older than the last write taken, than a recovery's seal, or than a
        // custodian's mark of complete copies here: a superseded
        // custodian's late write, which must not reach a later recovery.
        if self.copies.get(&key).is_some_and(|c| c.epoch > epoch)
            || epoch < self.sealed.at(key.0)
            || epoch < self.synced.at(key.0)
        {
            return Err(Refusal::Stale);
        }
        match write {
            ReplicaWrite::Full(state) => self.apply_full(key, epoch, state),
            ReplicaWrite::Delta { base, executed, tasks, step, .. } => {
                self.apply_delta(key, epoch, base, executed, tasks, step)
            }
        }
    }

    fn apply_full(&mut self, key: Key, epoch: u64, state: ResourceState) -> Result<u64, Refusal> {
        if let Some(c) = self.copies.get(&key)
            && c.epoch == epoch
            && (c.last_seq, c.executed) > (state.last_seq, state.executed)
        {
            // A late copy of an older full state of the same custodian:
            // what is held is newer.
            return Ok(c.last_seq);
        }
        let bytes: usize = state.pending.iter().map(|t| t.task.weight()).sum();
        let (old_tasks, old_bytes) = self.copies.get(&key).map_or((0, 0), |c| (c.pending.len(), c.bytes));
        if !self.fits(&key, state.pending.len().saturating_sub(old_tasks), bytes.saturating_sub(old_bytes)) {
            return Err(Refusal::Busy);
        }
        self.remove(&key);
        let copy = ResourceCopy {
            epoch,
            last_seq: state.last_seq,
            executed: state.executed,
            token_floor: state.token_floor,
            pending: state.pending.into(),
            bytes,
            dedup: state.dedup.into(),
            token_epochs: state.token_epochs,
            forgotten: state.forgotten,
        };
        self.tasks += copy.pending.len();
        self.bytes += copy.bytes;
        let held = copy.last_seq;
        self.copies.insert(key, copy);
        Ok(held)
    }

    fn apply_delta(
        &mut self,
        key: Key,
        epoch: u64,
        base: u64,
        executed: u64,
        tasks: Vec<PendingTask>,
        step: Option<(u64, u64)>,
    ) -> Result<u64, Refusal> {
        let held = self.copies.get(&key).map_or(0, |c| c.last_seq);
        if base > held || (base > 0 && !self.copies.contains_key(&key)) {
            return Err(Refusal::NeedFull);
        }
        let new_tasks = tasks.iter().filter(|t| t.seq > held).count();
        let new_bytes: usize = tasks.iter().filter(|t| t.seq > held).map(|t| t.task.weight()).sum();
        if !self.fits(&key, new_tasks, new_bytes) {
            return Err(Refusal::Busy);
        }
        let copy = self.copies.entry(key).or_default();
        copy.epoch = epoch;
        // The token steps, from the custodian's latest: what a successor
        // answers a retry of a task that ran here with.
        if let Some((first, step_epoch)) = step
            && copy.token_epochs.last().is_none_or(|&(f, e)| first > f && step_epoch > e)
        {
            copy.token_epochs.push((first, step_epoch));
            if copy.token_epochs.len() > TOKEN_EPOCHS_PER_RESOURCE_MAX {
                copy.token_epochs.remove(0);
            }
            copy.token_floor = copy.token_floor.max(step_epoch);
        }
        // What ran is not needed any more; its ids stay in the window.
        if executed > copy.executed {
            copy.executed = executed;
            while copy.pending.front().is_some_and(|t| t.seq <= executed) {
                let t = copy.pending.pop_front().expect("checked");
                copy.bytes -= t.task.weight();
                self.tasks -= 1;
                self.bytes -= t.task.weight();
            }
            copy.last_seq = copy.last_seq.max(executed);
        }
        let mut result = Ok(copy.last_seq);
        for t in tasks {
            if t.seq <= copy.last_seq {
                continue;
            }
            if t.seq != copy.last_seq + 1 {
                // A gap: keep what follows without one, ask for the rest.
                result = Err(Refusal::NeedFull);
                break;
            }
            copy.last_seq = t.seq;
            copy.dedup.push_back((t.task.id.clone(), t.seq, 0));
            copy.bytes += t.task.weight();
            self.tasks += 1;
            self.bytes += t.task.weight();
            copy.pending.push_back(t);
            result = Ok(copy.last_seq);
        }
        // Ids of tasks that ran beyond the window go; ids of tasks not run
        // yet stay (the custodian keeps them too).
        while copy.dedup.len() > DEDUP_PER_RESOURCE_MAX && copy.dedup.front().is_some_and(|d| d.1 <= copy.executed) {
            copy.dedup.pop_front();
        }
        result
    }

    /// Seals `span` at `epoch`: from now on writes of older epochs to its
    /// points are refused, so a custodian cut off before `epoch` can no
    /// longer reach a write quorum here.
    pub(crate) fn seal(&mut self, span: Span, epoch: u64) {
        self.sealed.raise(span, epoch);
    }

    /// A custodian says the copies of `spans` are complete as of `epoch` if
    /// this node holds every listed resource up to the listed number. Marks
    /// the parts and returns true if it does; false (and marks nothing)
    /// otherwise.
    pub(crate) fn mark_synced(&mut self, epoch: u64, spans: &[Span], resources: &[(String, u64)]) -> bool {
        let complete = resources.iter().all(|(name, n)| {
            let key: Key = (Ring::key_hash(name), name.clone());
            self.copies.get(&key).is_some_and(|c| c.last_seq >= *n && c.epoch <= epoch)
        });
        if complete {
            for &span in spans {
                self.synced.raise(span, epoch);
            }
        }
        complete
    }

    /// Along `span`, in runs: the epoch the copies were marked complete in.
    pub(crate) fn synced_runs(&self, span: Span) -> Vec<(Span, u64)> {
        self.synced.runs(span)
    }

    /// The copies of the resources in `span`, as handed-off states, each
    /// with the epoch of the last write taken for it.
    pub(crate) fn states_in(&self, span: Span) -> Vec<(u64, ResourceState)> {
        keys_in_map(&self.copies, span).into_iter().map(|key| (self.copies[&key].epoch, self.state_of(&key))).collect()
    }

    fn state_of(&self, key: &Key) -> ResourceState {
        let c = &self.copies[key];
        ResourceState {
            resource: key.1.clone(),
            last_seq: c.last_seq,
            executed: c.executed,
            token_floor: c.token_floor,
            pending: c.pending.iter().cloned().collect(),
            dedup: c.dedup.iter().cloned().collect(),
            token_epochs: c.token_epochs.clone(),
            forgotten: c.forgotten.clone(),
        }
    }

    /// Whether `tasks` more tasks of `bytes` more bytes fit, for `key`.
    fn fits(&self, key: &Key, tasks: usize, bytes: usize) -> bool {
        (self.copies.contains_key(key) || self.copies.len() < REPLICA_RESOURCES_MAX)
            && self.tasks + tasks <= REPLICA_TASKS_MAX
            && self.bytes + bytes <= REPLICA_BYTES_MAX
    }

    fn remove(&mut self, key: &Key) {
        if let Some(c) = self.copies.remove(key) {
            self.tasks -= c.pending.len();
            self.bytes -= c.bytes;
        }
    }

    /// The copy of a resource as a handed-off state, if held.
    #[cfg(test)]
    pub(crate) fn state(&self, resource: &str) -> Option<ResourceState> {
        let key: Key = (Ring::key_hash(resource), resource.to_string());
        self.copies.contains_key(&key).then(|| self.state_of(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::task::Task;

    fn task(seq: u64) -> PendingTask {
        let task = Task { id: format!("t{seq}"), resource: "r".into(), payload: Vec::new() };
        PendingTask { seq, task, attempts: 0, waiters: Vec::new() }
    }

    fn delta(base: u64, executed: u64, seqs: std::ops::RangeInclusive<u64>) -> ReplicaWrite {
        ReplicaWrite::Delta { resource: "r".into(), base, executed, tasks: seqs.map(task).collect(), step: None }
    }

    #[test]
    fn deltas_follow_without_a_gap() {
        let mut r = Replicas::default();
        assert_eq!(r.apply(3, delta(0, 0, 1..=2)), Ok(2));
        // A copy sent again changes nothing.
        assert_eq!(r.apply(3, delta(0, 0, 1..=2)), Ok(2));
        assert_eq!(r.apply(3, delta(2, 1, 3..=3)), Ok(3));
        let s = r.state("r").unwrap();
        assert_eq!((s.executed, s.last_seq), (1, 3));
        assert_eq!(s.pending.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(r.tasks(), 2);
        // A delta past what is held: the whole state is needed.
        assert_eq!(r.apply(3, delta(5, 1, 6..=6)), Err(Refusal::NeedFull));
        // A delta whose tasks skip a number keeps the part before the gap.
        assert_eq!(
            r.apply(
                3,
                ReplicaWrite::Delta {
                    resource: "r".into(),
                    base: 3,
                    executed: 1,
                    tasks: vec![task(4), task(6)],
                    step: None
                }
            ),
            Err(Refusal::NeedFull)
        );
        assert_eq!(r.state("r").unwrap().last_seq, 4);
    }

    #[test]
    fn a_new_replica_of_a_resource_with_history_needs_the_whole_state() {
        let mut r = Replicas::default();
        assert_eq!(r.apply(2, delta(7, 7, 8..=8)), Err(Refusal::NeedFull));
        let full = ResourceState {
            resource: "r".into(),
            last_seq: 8,
            executed: 7,
            token_floor: 2,
            pending: vec![task(8)],
            dedup: vec![("t7".into(), 7, 2), ("t8".into(), 8, 0)],
            token_epochs: vec![(1, 2)],
            forgotten: Vec::new(),
        };
        assert_eq!(r.apply(2, ReplicaWrite::Full(full.clone())), Ok(8));
        assert_eq!(r.state("r").unwrap(), full);
        // The watermark passes the last task: nothing pending, every number
        // up to it accounted for.
        assert_eq!(r.apply(2, delta(8, 9, 10..=10)), Ok(10));
        assert_eq!(r.state("r").unwrap().pending.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn writes_of_an_older_epoch_are_refused() {
        let mut r = Replicas::default();
        assert_eq!(r.apply(5, delta(0, 0, 1..=1)), Ok(1));
        assert_eq!(r.apply(4, delta(1, 0, 2..=2)), Err(Refusal::Stale));
        assert_eq!(r.state("r").unwrap().last_seq, 1);
    }

    #[test]
    fn past_the_bound_nothing_is_held() {
        let mut r = Replicas { tasks: REPLICA_TASKS_MAX, ..Replicas::default() };
        assert_eq!(r.apply(1, delta(0, 0, 1..=1)), Err(Refusal::Busy));
        assert!(r.state("r").is_none());
    }

    #[test]
    fn a_sealed_point_refuses_older_writes_and_a_mark_needs_everything_listed() {
        let mut r = Replicas::default();
        let point = Ring::key_hash("r");
        let around = Span { start: point - 1, end: point };
        assert_eq!(r.apply(3, delta(0, 0, 1..=2)), Ok(2));
        assert!(!r.mark_synced(3, &[around], &[("r".into(), 3)]), "task 3 is not held");
        assert_eq!(r.synced_runs(around), vec![(around, 0)]);
        assert!(r.mark_synced(3, &[around], &[("r".into(), 2)]));
        assert_eq!(r.synced_runs(around), vec![(around, 3)]);
        r.seal(around, 5);
        assert_eq!(r.apply(4, delta(2, 0, 3..=3)), Err(Refusal::Stale), "a custodian of epoch 4 is cut off");
        assert_eq!(r.apply(5, delta(2, 0, 3..=3)), Ok(3));
        assert_eq!(r.states_in(around).len(), 1);
        assert!(r.states_in(Span { start: point, end: point.wrapping_add(10) }).is_empty());
    }

    #[test]
    fn a_marked_point_refuses_older_writes_even_for_a_resource_not_held() {
        // The custodian of epoch 4 marked this replica's copies of the part
        // complete; a custodian superseded before (epoch 2), cut off until
        // now, writes a resource this replica holds nothing of.
        let mut r = Replicas::default();
        let point = Ring::key_hash("r");
        let around = Span { start: point - 1, end: point };
        assert!(r.mark_synced(4, &[around], &[]));
        assert_eq!(r.apply(2, delta(0, 0, 1..=2)), Err(Refusal::Stale));
        assert!(r.state("r").is_none());
        assert_eq!(r.apply(4, delta(0, 0, 1..=2)), Ok(2), "the marking custodian's own writes go on");
    }
}
