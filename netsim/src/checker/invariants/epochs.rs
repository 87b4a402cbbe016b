//! **I8** epoch discipline: the epoch chain is one chain and learned epochs
//! never go back (what the simulator saw), and in custody mode every
//! token's epoch was committed before its execution started.

use super::Cx;
use crate::checker::{Ix, Tally};
use crate::plan::Mode;
use crate::report::{CheckKind, Invariant};

/// I8: what the simulator saw of the chain, and custody tokens' epochs.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let run = cx.run;
    let mode = cx.mode;
    let mut uncommitted: Tally<Ix> = Tally::new();
    if let (Mode::Custody, Some(committed_at)) = (mode, run.epochs.committed_at) {
        for (i, e) in trace.iter().enumerate() {
            if committed_at.get(&e.token.epoch).is_none_or(|&at| at > e.start) {
                uncommitted.add(e.start, i as Ix);
            }
        }
    }
    let chain = run.epochs.violations;
    cx.invariant(
        "I8",
        "epoch discipline: one chain of committed epochs, learned epochs never go back, tokens carry committed epochs",
        CheckKind::Safety,
        chain.len() as u64 + uncommitted.count,
        match (chain.first(), uncommitted.first) {
            (Some(v), _) => v.clone(),
            (None, Some((_, i))) => format!("{} carries an epoch not committed when it started", ex(i)),
            (None, None) => match (mode, run.epochs.committed_at) {
                (Mode::Custody, Some(c)) => {
                    format!("{} epochs committed in one chain; every token's epoch committed before its start", c.len())
                }
                _ => "the epoch chain is one chain; learned epochs never went back".into(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i8_reports_the_chain_and_catches_an_uncommitted_token_epoch() {
        let mut tasks = [record(0, (1, 1))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200)];
        let mut f = facts(STRICT, false);
        f.chain.push("epoch chain forked: epoch 2 has two hashes".into());
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I8"]);
        assert_eq!(get(&out, "I8").detail, "epoch chain forked: epoch 2 has two hashes");
        // A token of epoch 5, which was never committed; epoch 3 committed
        // only after the start.
        let mut tasks = [record(0, (5, 1)), record(1, (3, 1))];
        let trace = [exec(0, 0, 0, (5, 1), 100, 200), exec(0, 1, 1, (3, 1), 100, 200)];
        let mut f = facts(STRICT, false);
        f.committed_at.insert(3, 150);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I8"]);
        assert_eq!(get(&out, "I8").violations, 2);
        // The baseline's tokens are lock revisions, not epochs.
        let out = invs(Mode::Lock, &mut tasks, &trace, &f);
        assert!(failed(&out).is_empty(), "{out:#?}");
    }
}
