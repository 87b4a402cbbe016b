//! **I12** no phantom: every execution is of a task a client submitted, on
//! that task's resource, after it arrived.

use super::Cx;
use crate::checker::{Ix, Tally};
use crate::report::{CheckKind, Invariant};

/// I12: only submitted tasks ran, on their resource, after they arrived.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let tasks = cx.run.tasks;
    let index = cx.index;
    let mut phantoms: Tally<Ix> = Tally::new();
    for &i in &index.strays {
        phantoms.add(ex(i).start, i);
    }
    let mut early: Tally<Ix> = Tally::new();
    for (k, t) in tasks.iter().enumerate() {
        for &i in index.of_task(k) {
            if ex(i).start < t.arrived {
                early.add(ex(i).start, i);
            }
        }
    }
    cx.invariant(
        "I12",
        "no phantom task: every execution is of a submitted task, on its resource, after it arrived",
        CheckKind::Safety,
        phantoms.count + early.count,
        match (phantoms.first, early.first) {
            (Some((_, i)), _) => format!("first: {} (no client submitted it on that resource)", ex(i)),
            (None, Some((_, i))) => format!(
                "first: {} started before its task arrived ({:.3} ms)",
                ex(i),
                tasks[ex(i).task as usize].arrived as f64 / 1000.0
            ),
            (None, None) => format!("{} executions, all of submitted tasks", trace.len()),
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i12_catches_phantoms_and_early_starts() {
        let mut tasks = [record(0, (1, 1)), record(1, (1, 1))];
        tasks[1].arrived = 500;
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 200),
            // No client submitted task 9, nor task 0 on r1.
            exec(0, u64::MAX, 1, (1, 5), 100, 150),
            // t1 ran before it arrived.
            exec(0, 1, 1, (1, 1), 300, 400),
        ];
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, false));
        assert!(failed(&out).contains(&"I12"), "{out:#?}");
        let i12 = get(&out, "I12");
        assert_eq!(i12.violations, 2);
        assert!(i12.detail.contains("no client submitted it"), "{i12:?}");
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(0, 1, 1, (1, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I12"]);
        assert!(get(&out, "I12").detail.contains("started before its task arrived (0.500 ms)"));
    }
}
