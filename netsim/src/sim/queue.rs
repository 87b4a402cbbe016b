//! The event queue: every event of a run (deliveries, wake-ups, faults,
//! samples, task ends, arrivals, the lock baseline's legs), popped in
//! (true time, sequence number) order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use custody::engine::ClientId;

use crate::baseline::LockEv;

/// One event.
pub(super) enum Ev {
    /// A datagram reaches `to`.
    Datagram { from: usize, to: usize, bytes: Vec<u8> },
    /// A stream frame reaches `to`, on the connection of generation `conn`.
    Frame { from: usize, to: usize, conn: u64, bytes: Vec<u8> },
    /// A node's timer, if it is still the one of generation `generation`.
    Wake { node: usize, generation: u64 },
    /// The plan's fault of this index.
    Fault(usize),
    /// A convergence sample, after the last fault.
    Sample,
    /// One lease after the cut that started at this time: the side without
    /// the voters' majority must have stopped acting as custodian.
    LeaseCheck(u64),
    /// A task's handler finished: tell the node, if it is still the same
    /// running engine (`boot`).
    TaskDone {
        node: usize,
        boot: u64,
        /// The execution's place in the trace.
        exec: usize,
        resource: String,
        seq: u64,
    },
    /// A cancelled execution's end: tell the node, if it is still the same
    /// running engine (`boot`).
    CancelDone { node: usize, boot: u64, resource: String, seq: u64 },
    /// The workload's next task arrives.
    Arrival,
    /// A client submits task `task` again.
    ClientRetry { task: u64 },
    /// A client's request reaches a node.
    ClientFrame { node: usize, client: ClientId, bytes: Vec<u8> },
    /// The lock baseline's message legs and timers ([`crate::baseline`]).
    Lock(LockEv),
}

/// An event and when it happens.
pub(super) struct Entry {
    /// True time, µs.
    pub(super) at: u64,
    /// Its place among events of the same time: unique.
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

/// The event queue: pops entries in (time, sequence) order. Sequence
/// numbers are unique, so that order is total and any correct priority
/// queue pops the same sequence.
///
/// The heap holds only `(at, seq, slot)` keys (24 bytes); the events wait in
/// a slab whose slots are reused. Sifting moves keys, not whole events.
#[derive(Default)]
pub(super) struct EventQueue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
}

impl EventQueue {
    /// Queues an entry.
    pub(super) fn push(&mut self, entry: Entry) {
        let Entry { at, seq, ev } = entry;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slab.push(Some(ev));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.heap.push(Reverse((at, seq, slot)));
    }

    /// The earliest entry, by (time, sequence).
    pub(super) fn pop(&mut self) -> Option<Entry> {
        let Reverse((at, seq, slot)) = self.heap.pop()?;
        let ev = self.slab[slot as usize].take().expect("a queued slot holds its event");
        self.free.push(slot);
        Some(Entry { at, seq, ev })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_pops_in_time_then_sequence_order() {
        let mut heap = EventQueue::default();
        for (at, seq) in [(5, 1), (3, 2), (5, 0), (3, 3)] {
            heap.push(Entry { at, seq, ev: Ev::Fault(seq as usize) });
        }
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| heap.pop().map(|e| (e.at, e.seq))).collect();
        assert_eq!(order, vec![(3, 2), (3, 3), (5, 0), (5, 1)]);
    }

    #[test]
    fn the_queue_reuses_slots_and_keeps_each_event_with_its_key() {
        let mut queue = EventQueue::default();
        let mut seq = 0;
        let mut expected = Vec::new();
        // Interleave pushes and pops; events carry their own sequence number.
        for round in 0..50u64 {
            for k in 0..7u64 {
                seq += 1;
                let at = (round * 31 + k * 17) % 40 + round;
                queue.push(Entry { at, seq, ev: Ev::Fault(seq as usize) });
                expected.push((at, seq));
            }
            for _ in 0..5 {
                let e = queue.pop().unwrap();
                assert!(matches!(e.ev, Ev::Fault(s) if s as u64 == e.seq));
                expected.sort_unstable();
                assert_eq!(expected.remove(0), (e.at, e.seq));
            }
        }
        assert!(queue.slab.len() <= 7 * 50 - 5 * 49, "slots are reused");
        while let Some(e) = queue.pop() {
            expected.sort_unstable();
            assert_eq!(expected.remove(0), (e.at, e.seq));
        }
        assert!(expected.is_empty());
    }
}
