//! **I1** real-time mutual exclusion: executions of one resource never
//! overlap in true time.
//!
//! Leases make this hold only under the assumptions of design.md section
//! 14.2. An overlap whose earlier execution's node was paused (stopped
//! whole) while it ran, before the later one started, breaks A3: the paused
//! node could not cancel in time, and a recovery took over after the lease
//! wait. Such overlaps are counted apart and do not fail I1; the fence (I2)
//! must still order their effects.

use super::Cx;
use crate::checker::exposure::{Touch, exposures};
use crate::checker::{Ix, Tally};
use crate::report::{CheckKind, Invariant};
use crate::trace::ExecRecord;

/// I1: per resource, in start order, nothing starts before the latest
/// end so far.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let index = cx.index;
    let resources = index.resource_count();
    let mut overlaps: Tally<(Ix, Ix)> = Tally::new();
    let mut paused = 0u64;
    // The earlier execution's node was paused while it ran, before the
    // later one started.
    let paused_through = |earlier: &ExecRecord, later: &ExecRecord| {
        exposures(cx.run.faults.exposures, earlier.resource).iter().any(|e| {
            e.touch == Touch::Paused && e.node == earlier.node && e.from >= earlier.start && e.from <= later.start
        })
    };
    for group in index.resources() {
        let mut latest: Option<Ix> = None;
        for &i in group {
            if let Some(l) = latest {
                if ex(i).start < ex(l).end_or_max() {
                    if paused_through(ex(l), ex(i)) {
                        paused += 1;
                    } else {
                        overlaps.add(ex(i).start, (l, i));
                    }
                }
                if ex(i).end_or_max() > ex(l).end_or_max() {
                    latest = Some(i);
                }
            } else {
                latest = Some(i);
            }
        }
    }
    cx.invariant(
        "I1",
        "real-time mutual exclusion: executions of one resource never overlap in true time",
        CheckKind::Safety,
        overlaps.count,
        match overlaps.first {
            None if paused > 0 => format!(
                "{} executions over {resources} resources, one at a time each, but for {paused} overlaps after a pause of the earlier one's node while it ran (assumption A3 broken; the fence orders their effects, I2)",
                trace.len()
            ),
            None => format!("{} executions over {resources} resources, one at a time each", trace.len()),
            Some((_, (a, b))) => format!("first: {} overlaps {}", ex(b), ex(a)),
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::exposure::{Exposure, Touch};
    use crate::checker::testkit::*;

    #[test]
    fn i1_catches_an_overlap_with_the_first_pair() {
        let mut tasks = [record(0, (1, 1)), record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (1, 2), 150, 300)];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert_eq!(failed(&out), ["I1"]);
            let i1 = get(&out, "I1");
            assert_eq!(i1.violations, 1);
            assert!(i1.detail.contains("first: t1 of r0") && i1.detail.contains("overlaps t0 of r0"), "{i1:?}");
        }
    }

    #[test]
    fn i1_counts_apart_an_overlap_after_a_pause_of_the_earlier_runs_node_only() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2))];
        // Node 9 runs t0 from 100 and is paused at 120; node 1 takes over
        // at 150 with a newer token.
        let trace = [exec(9, 0, 0, (1, 1), 100, 400), exec(1, 1, 0, (2, 2), 150, 300)];
        let mut paused = facts(STRICT, false);
        paused.exposures = vec![window(0, Touch::Paused, 120, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &paused);
        let i1 = get(&out, "I1");
        assert!(i1.ok && i1.detail.contains("1 overlaps after a pause"), "{i1:?}");
        // A pause of the later run's node, or one that began after the
        // later run started, excuses nothing.
        for (node, from) in [(1, 120), (9, 200)] {
            let mut other = facts(STRICT, false);
            other.exposures = vec![Exposure { node, ..window(0, Touch::Paused, from, 400) }];
            let out = invs(Mode::Custody, &mut tasks, &trace, &other);
            assert_eq!(get(&out, "I1").violations, 1, "node {node} paused at {from}");
        }
    }
}
