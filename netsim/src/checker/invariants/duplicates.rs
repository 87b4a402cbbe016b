//! **I6** attributable duplicates: a task runs twice only after a fault
//! touched its resource's custody (a crash, pause or partition), never when
//! the plan expects exactly once, and a second execution always carries a
//! higher token than the one before (a newer custodian or lock holder);
//! or after its custodian cancelled the first one (the lease it ran under
//! was ending), with a token at least as high: equal when the same
//! custodian runs it again, which a fencing-aware resource applies at most
//! once.

use super::Cx;
use crate::checker::exposure::exposures;
use crate::checker::{Ix, Tally};
use crate::report::{CheckKind, Invariant};

/// I6: duplicates only where custody may be lost, each with a newer token.
/// A duplicate is allowed when a fault touched its resource's custody
/// before it started, and not after its first execution began had it
/// all ended (a window reaching into the first execution's life), and
/// the plan does not demand exactly once.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let tasks = cx.run.tasks;
    let run = cx.run;
    let index = cx.index;
    let mut duplicates = 0u64;
    let mut after_cancel = 0u64;
    let mut dup_tasks = 0u64;
    let mut unexcused_dups = 0u64;
    let mut bad_dups: Tally<(Ix, Ix)> = Tally::new();
    for (k, task) in tasks.iter().enumerate() {
        let runs = index.of_task(k);
        if runs.len() > 1 {
            dup_tasks += 1;
        }
        for pair in runs.windows(2) {
            duplicates += 1;
            let (a, b) = (pair[0], pair[1]);
            if ex(a).cancelled {
                // Its custodian stopped the first run (it did not complete):
                // the engine's own answer to a lease it could not renew.
                after_cancel += 1;
                if ex(b).token < ex(a).token {
                    bad_dups.add(ex(b).start, (a, b));
                }
                continue;
            }
            let excused = !run.expect.exactly_once
                && (run.faults.run_wide
                    || exposures(run.faults.exposures, task.resource)
                        .iter()
                        .any(|e| e.from <= ex(b).start && e.to >= ex(a).start));
            if !excused {
                unexcused_dups += 1;
            }
            if !excused || ex(b).token <= ex(a).token {
                bad_dups.add(ex(b).start, (a, b));
            }
        }
    }
    cx.invariant(
        "I6",
        "attributable duplicates: a task runs again only after a fault touched its resource's custody, with a \
         newer token, or after its custodian cancelled it",
        CheckKind::Safety,
        bad_dups.count,
        match bad_dups.first {
            None if duplicates == 0 => "no duplicate execution".into(),
            None => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks, each with a newer token after a fault \
                 touched its resource's custody, or after a cancel ({after_cancel})"
            ),
            Some((_, (a, b))) => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks ({unexcused_dups} where no fault touched \
                 the resource's custody, or the plan demands exactly once; {after_cancel} after a cancel); first: \
                 {} and again {}",
                ex(a),
                ex(b)
            ),
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i6_catches_a_re_execution_without_a_newer_token() {
        let mut tasks = [record(0, (2, 1))];
        let trace = [exec(0, 0, 0, (2, 1), 100, 200), exec(1, 0, 0, (2, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I6", "I7"]);
        assert!(get(&out, "I6").detail.contains("1 duplicate executions of 1 tasks (0 where"), "{:?}", get(&out, "I6"));
    }

    #[test]
    fn i6_and_i7_take_a_cancelled_task_run_again_under_its_token_and_nothing_lower() {
        // Exactly once demanded, and no fault touched r0: only the cancel
        // explains the second run.
        let mut tasks = [record(0, (2, 1))];
        let cancelled = ExecRecord { cancelled: true, ..exec(0, 0, 0, (2, 1), 100, 150) };
        let trace = [cancelled.clone(), exec(0, 0, 0, (2, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I6").detail.contains("after a cancel (1)"), "{:?}", get(&out, "I6"));
        // Elsewhere, under a newer token, too.
        let trace = [cancelled.clone(), exec(1, 0, 0, (3, 1), 300, 400)];
        let mut tasks = [record(0, (3, 1))];
        assert!(failed(&invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false))).is_empty());
        // Never under a lower one.
        let mut tasks = [record(0, (1, 1))];
        let trace =
            [ExecRecord { cancelled: true, ..exec(0, 0, 0, (2, 1), 100, 150) }, exec(1, 0, 0, (1, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert!(failed(&out).contains(&"I6") && failed(&out).contains(&"I7"), "{out:#?}");
        // And a run that was not cancelled excuses nothing.
        let mut tasks = [record(0, (2, 1))];
        let trace = [exec(0, 0, 0, (2, 1), 100, 150), exec(0, 0, 0, (2, 1), 300, 400)];
        assert_eq!(failed(&invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false))), ["I6", "I7"]);
    }
}
