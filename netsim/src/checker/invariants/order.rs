//! **I7** per-resource order: executions of one resource start in token
//! order (sequence numbers increase within an epoch; they may go back only
//! with a higher epoch, to re-run an unconfirmed tail). After a cancelled
//! execution the same token may start again: the cancelled task runs again
//! first, under the same custodian's token.

use super::Cx;
use crate::checker::{Ix, Tally};
use crate::report::{CheckKind, Invariant};

/// I7: per resource, in start order, tokens increase; a seq goes back
/// only with a higher epoch; a cancelled execution's token may start again.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let index = cx.index;
    let mut disorder: Tally<(Ix, Ix)> = Tally::new();
    for group in index.resources() {
        for pair in group.windows(2) {
            let (a, b) = (ex(pair[0]).token, ex(pair[1]).token);
            let again = ex(pair[0]).cancelled && a == b;
            if !again && (b.epoch < a.epoch || (b.epoch == a.epoch && b.seq <= a.seq)) {
                disorder.add(ex(pair[1]).start, (pair[0], pair[1]));
            }
        }
    }
    cx.invariant(
        "I7",
        "per-resource order: executions of one resource start in sequence order",
        CheckKind::Safety,
        disorder.count,
        match disorder.first {
            None => "every resource's executions start in increasing token order".into(),
            Some((_, (a, b))) => format!("first: {} started after {}", ex(b), ex(a)),
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i7_catches_a_seq_started_out_of_order() {
        let mut tasks = [record(0, (1, 2)), record(0, (1, 1))];
        let trace = [exec(0, 0, 0, (1, 2), 100, 200), exec(0, 1, 0, (1, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        // The fence takes seq 1 after seq 2 for done: t1's effect is lost,
        // and seq 1 was never applied first.
        assert_eq!(failed(&out), ["I4", "I7"]);
        let i7 = get(&out, "I7");
        assert!(i7.detail.contains("first: t1 of r0") && i7.detail.contains("started after t0 of r0"), "{i7:?}");
        // Lock revisions out of order, too.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).contains(&"I7"), "{out:#?}");
    }
}
