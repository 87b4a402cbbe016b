//! **I5** exactly-once effect: no task's effect is applied twice.

use super::Cx;
use crate::checker::Ix;
use crate::report::{CheckKind, Invariant};

/// I5: no effect applied twice.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let tasks = cx.run.tasks;
    let fence = cx.fence;
    let twice_tasks = fence.applied.iter().filter(|&&a| a > 1).count();
    cx.invariant(
        "I5",
        "exactly-once effect: no task's effect applied twice",
        CheckKind::Safety,
        fence.twice.count,
        match fence.twice.first {
            None => format!("{} effects of {} tasks, each once", fence.applied_total, tasks.len()),
            Some((_, (a, b))) => {
                format!("{twice_tasks} tasks applied more than once; first: {} applied after {}", ex(b), ex(a))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i5_catches_an_effect_applied_twice() {
        // Custody: a task that got a second seq is applied twice.
        let mut tasks = [record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 0, 0, (1, 2), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I5", "I11"]);
        let i5 = get(&out, "I5");
        assert!(i5.detail.contains("1 tasks applied more than once") && i5.detail.contains("on n1"), "{i5:?}");
        // The baseline ran t0 again under a newer lock revision (its mark was
        // lost): the resource knows the task id and applies it once.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, true));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(
            get(&out, "I2").detail.contains("1 re-executions recognised as already applied"),
            "{:?}",
            get(&out, "I2")
        );
    }
}
