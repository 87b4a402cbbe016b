//! **I1** real-time mutual exclusion: executions of one resource never
//! overlap in true time.

use super::Cx;
use crate::checker::{Ix, Tally};
use crate::report::{CheckKind, Invariant};

/// I1: per resource, in start order, nothing starts before the latest
/// end so far.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let index = cx.index;
    let resources = index.resource_count();
    let mut overlaps: Tally<(Ix, Ix)> = Tally::new();
    for group in index.resources() {
        let mut latest: Option<Ix> = None;
        for &i in group {
            if let Some(l) = latest {
                if ex(i).start < ex(l).end_or_max() {
                    overlaps.add(ex(i).start, (l, i));
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
            None => format!("{} executions over {resources} resources, one at a time each", trace.len()),
            Some((_, (a, b))) => format!("first: {} overlaps {}", ex(b), ex(a)),
        },
    )
}

#[cfg(test)]
mod tests {
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
}
