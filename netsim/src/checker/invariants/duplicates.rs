//! **I6** attributable duplicates: a task runs twice only after a fault
//! touched its resource's custody (a crash, pause or partition), never when
//! the plan expects exactly once, and a second execution always carries a
//! higher token than the one before (a newer custodian or lock holder).

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
         newer token",
        CheckKind::Safety,
        bad_dups.count,
        match bad_dups.first {
            None if duplicates == 0 => "no duplicate execution".into(),
            None => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks, each with a newer token after a fault \
                 touched its resource's custody"
            ),
            Some((_, (a, b))) => format!(
                "{duplicates} duplicate executions of {dup_tasks} tasks ({unexcused_dups} where no fault touched \
                 the resource's custody, or the plan demands exactly once); first: {} and again {}",
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
}
