//! For every point of the hash space, the highest epoch in which this node
//! took custody of it by a transfer.
//!
//! Custody of a point moves along a chain of holders whose transfer epochs
//! strictly increase: a holder seals a part only for an epoch newer than
//! the one it received it for (a node hands a part on when it learns a
//! newer epoch that moves it, or passes on a part received for an epoch
//! already superseded, to the latest epoch's owner), and each epoch has one
//! owner per point. So a transfer whose epoch is at or below the mark of a
//! point it carries is a copy of one this node already took (a resend, a
//! duplicate, a retry by a sender that was paused, cut off, or removed and
//! renamed meanwhile), or carries state older than what this node took
//! since: either way it must not be taken again, however late it arrives,
//! whether the sender is still a member or not. The marks are kept for the
//! node's whole process, across its lives.
//!
//! The marks are a step function over the points `0..=u64::MAX`: a map from
//! the first point of each step to its mark. Neighbouring steps with the
//! same mark are joined, so the map holds one entry per boundary of the
//! parts taken at distinct epochs: at most two per part ever taken, fewer
//! as epochs pass over the same arcs.

use std::collections::BTreeMap;

use super::super::ring::Span;

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    /// First point of each step → the mark from there up to the next step.
    /// Always holds 0.
    steps: BTreeMap<u64, u64>,
}

impl Default for Marks {
    fn default() -> Self {
        Marks { steps: BTreeMap::from([(0, 0)]) }
    }
}

impl Marks {
    /// The highest mark of any point of `span`.
    pub(crate) fn highest(&self, span: Span) -> u64 {
        intervals(span).map(|(lo, hi)| self.highest_in(lo, hi)).max().unwrap_or(0)
    }

    /// The mark of one point.
    pub(crate) fn at(&self, point: u64) -> u64 {
        self.steps.range(..=point).next_back().map_or(0, |(_, &m)| m)
    }

    /// Raises the mark of every point of `span` to `epoch` (never lowers it).
    pub(crate) fn raise(&mut self, span: Span, epoch: u64) {
        for (lo, hi) in intervals(span) {
            self.raise_in(lo, hi, epoch);
        }
    }

    /// The marks over `span`, as runs of points with one mark each, in
    /// order along the arc.
    pub(crate) fn runs(&self, span: Span) -> Vec<(Span, u64)> {
        let mut out: Vec<(Span, u64)> = Vec::new();
        for (lo, hi) in intervals(span) {
            let (mut from, mut mark) = (lo, self.at(lo));
            if let Some(next) = lo.checked_add(1).filter(|&n| n <= hi) {
                for (&point, &m) in self.steps.range(next..=hi) {
                    out.push((Span { start: from.wrapping_sub(1), end: point - 1 }, mark));
                    (from, mark) = (point, m);
                }
            }
            out.push((Span { start: from.wrapping_sub(1), end: hi }, mark));
        }
        joined(out)
    }

    /// How many steps the marks have.
    #[cfg(test)]
    fn steps(&self) -> usize {
        self.steps.len()
    }

    fn highest_in(&self, lo: u64, hi: u64) -> u64 {
        let inner = lo.checked_add(1).map_or(0, |next| {
            if next > hi { 0 } else { self.steps.range(next..=hi).map(|(_, &m)| m).max().unwrap_or(0) }
        });
        self.at(lo).max(inner)
    }

    fn raise_in(&mut self, lo: u64, hi: u64, epoch: u64) {
        // Steps begin exactly at lo and just after hi, so that raising the
        // steps inside changes nothing outside.
        let after = hi.checked_add(1).map(|next| (next, self.at(next)));
        let at_lo = self.at(lo);
        self.steps.entry(lo).or_insert(at_lo);
        if let Some((next, mark)) = after {
            self.steps.entry(next).or_insert(mark);
        }
        for (_, m) in self.steps.range_mut(lo..=hi) {
            *m = (*m).max(epoch);
        }
        // Join steps that now carry their left neighbour's mark.
        let from = self.steps.range(..lo).next_back().map_or(lo, |(&k, _)| k);
        let upto = after.map_or(u64::MAX, |(next, _)| next);
        let mut previous: Option<u64> = None;
        let mut joined = Vec::new();
        for (&point, &mark) in self.steps.range(from..=upto) {
            if previous == Some(mark) && point != 0 {
                joined.push(point);
            }
            previous = Some(mark);
        }
        for point in joined {
            self.steps.remove(&point);
        }
    }
}

/// Runs along an arc, in order, with neighbours that carry the same value
/// made one.
pub(super) fn joined<T: PartialEq>(runs: Vec<(Span, T)>) -> Vec<(Span, T)> {
    let mut out: Vec<(Span, T)> = Vec::with_capacity(runs.len());
    for (span, value) in runs {
        match out.last_mut() {
            Some((last, v)) if *v == value && last.end == span.start && !last.is_full() => last.end = span.end,
            _ => out.push((span, value)),
        }
    }
    out
}

/// The points of an arc `(start, end]` as one or two inclusive intervals.
fn intervals(span: Span) -> impl Iterator<Item = (u64, u64)> {
    let (first, second) = if span.start < span.end {
        (Some((span.start + 1, span.end)), None)
    } else {
        // Wraps, or is the whole circle (start == end): after start up to
        // the top, then from zero up to end.
        let top = span.start.checked_add(1).map(|lo| (lo, u64::MAX));
        (top, Some((0, span.end)))
    };
    first.into_iter().chain(second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn a_raised_arc_is_marked_and_its_neighbours_are_not() {
        let mut m = Marks::default();
        assert_eq!(m.highest(span(0, 0)), 0);
        m.raise(span(10, 20), 5);
        assert_eq!(m.highest(span(10, 20)), 5);
        assert_eq!(m.highest(span(15, 16)), 5);
        assert_eq!(m.highest(span(0, 10)), 0, "10 is not in (10, 20]");
        assert_eq!(m.highest(span(20, 30)), 0, "21 and above are not");
        assert_eq!(m.highest(span(19, 21)), 5);
        assert_eq!(m.highest(span(0, 0)), 5);
    }

    #[test]
    fn runs_cover_an_arc_in_order_with_each_steps_mark() {
        let mut m = Marks::default();
        m.raise(span(10, 20), 5);
        m.raise(span(15, 30), 7);
        assert_eq!(
            m.runs(span(0, 40)),
            vec![(span(0, 10), 0), (span(10, 15), 5), (span(15, 30), 7), (span(30, 40), 0)]
        );
        assert_eq!(m.runs(span(12, 14)), vec![(span(12, 14), 5)]);
        // Across the top of the circle, joined where the mark goes on.
        let mut m = Marks::default();
        m.raise(span(u64::MAX - 5, 5), 3);
        assert_eq!(
            m.runs(span(u64::MAX - 9, 9)),
            vec![(span(u64::MAX - 9, u64::MAX - 5), 0), (span(u64::MAX - 5, 5), 3), (span(5, 9), 0)]
        );
        assert_eq!(m.runs(span(0, 0)).iter().map(|r| r.0.width()).sum::<u128>(), 1u128 << 64, "the whole circle");
    }

    #[test]
    fn the_runs_of_an_arc_count_every_step_in_it() {
        let mut m = Marks::default();
        m.raise(span(0, 0), 2);
        m.raise(span(10, 20), 5);
        assert_eq!(m.runs(span(10, 20)), vec![(span(10, 20), 5)]);
        assert_eq!(m.runs(span(9, 20)), vec![(span(9, 10), 2), (span(10, 20), 5)], "10 is marked 2");
        assert_eq!(m.runs(span(12, 30)), vec![(span(12, 20), 5), (span(20, 30), 2)]);
        assert_eq!((m.at(10), m.at(11), m.at(20), m.at(21)), (2, 5, 5, 2));
    }

    #[test]
    fn marks_only_rise() {
        let mut m = Marks::default();
        m.raise(span(10, 20), 5);
        m.raise(span(0, 30), 3);
        assert_eq!(m.highest(span(12, 13)), 5);
        assert_eq!(m.highest(span(0, 10)), 3);
        assert_eq!(m.highest(span(20, 30)), 3);
        m.raise(span(0, 30), 7);
        assert_eq!(m.highest(span(12, 13)), 7);
        assert_eq!(m.steps(), 3, "0 at 0 (not in (0, 30]), 1..=30 at 7, 31.. at 0: {m:?}");
    }

    #[test]
    fn arcs_that_wrap_and_the_whole_circle() {
        let mut m = Marks::default();
        m.raise(span(u64::MAX - 5, 5), 4);
        assert_eq!(m.highest(span(u64::MAX - 1, u64::MAX)), 4);
        assert_eq!(m.highest(span(0, 1)), 4);
        assert_eq!(m.highest(span(5, u64::MAX - 5)), 0);
        m.raise(span(9, 9), 6);
        assert_eq!(m.highest(span(100, 200)), 6);
        assert_eq!(m.steps(), 1);
        m.raise(span(u64::MAX - 1, u64::MAX), 8);
        assert_eq!(m.highest(span(u64::MAX - 1, u64::MAX)), 8);
        assert_eq!(m.highest(span(0, u64::MAX - 1)), 6);
    }

    #[test]
    fn neighbouring_steps_with_one_mark_are_joined() {
        let mut m = Marks::default();
        m.raise(span(10, 20), 5);
        m.raise(span(20, 30), 5);
        assert_eq!(m.steps(), 3, "0, 11..=30, 31..: {m:?}");
        m.raise(span(30, 10), 5);
        assert_eq!(m.steps(), 1, "the whole circle at 5: {m:?}");
    }
}
