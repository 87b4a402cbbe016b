//! **I11** dedup: a task keeps one sequence number (custody mode), a
//! resource's sequence number names one task, and an answer names the task
//! and a token it ran with.

use super::Cx;
use crate::checker::{Ix, Tally, status_text};
use crate::plan::Mode;
use crate::report::{CheckKind, Invariant};
use crate::trace::{TaskStatus, parse_index, task_id};

/// I11: one seq per task (custody), one task per (resource, seq), and
/// answers that name the task and a token it ran with.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let tasks = cx.run.tasks;
    let run = cx.run;
    let mode = cx.mode;
    let index = cx.index;
    let mut reseq: Tally<(Ix, Ix)> = Tally::new();
    if mode == Mode::Custody {
        for k in 0..tasks.len() {
            for pair in index.of_task(k).windows(2) {
                if ex(pair[0]).token.seq != ex(pair[1]).token.seq {
                    reseq.add(ex(pair[1]).start, (pair[0], pair[1]));
                }
            }
        }
    }
    let mut shared_seq: Tally<(Ix, Ix)> = Tally::new();
    let mut by_seq: Vec<Ix> = Vec::new();
    for group in index.resources() {
        by_seq.clear();
        by_seq.extend_from_slice(group);
        by_seq.sort_by_key(|&i| (ex(i).token.seq, ex(i).start, i));
        for pair in by_seq.windows(2) {
            let (a, b) = (ex(pair[0]), ex(pair[1]));
            if a.token.seq == b.token.seq && a.task != b.task {
                shared_seq.add(b.start, (pair[0], pair[1]));
            }
        }
    }
    let mut bad_answers: Tally<usize> = Tally::new();
    for (k, t) in tasks.iter().enumerate() {
        if let TaskStatus::Completed { token, task_id: answered, at } = &t.status {
            let ran = index.of_task(k).iter().any(|&i| ex(i).token == *token && ex(i).end.is_some_and(|e| e <= *at));
            if parse_index(answered, 't') != Some(k as u64) || !ran {
                bad_answers.add(*at, k);
            }
        }
    }
    cx.invariant(
        "I11",
        "dedup: a task keeps one sequence number, a sequence number names one task, answers name a real run",
        CheckKind::Safety,
        reseq.count + shared_seq.count + bad_answers.count,
        if let Some((_, (a, b))) = reseq.first {
            format!("a task got a second sequence number; first: {} and again {}", ex(a), ex(b))
        } else if let Some((_, (a, b))) = shared_seq.first {
            format!("two tasks share a sequence number of one resource; first: {} and {}", ex(a), ex(b))
        } else if let Some((_, k)) = bad_answers.first {
            let runs: Vec<String> = index.of_task(k).iter().map(|&i| ex(i).to_string()).collect();
            format!(
                "{} answers name another task or a token it did not run with; first: {} was answered {} \
                 but its executions are [{}]",
                bad_answers.count,
                task_id(k as u64),
                status_text(&tasks[k].status),
                runs.join("; ")
            )
        } else {
            format!(
                "{} answers each name their task and a token it ran with{}",
                run.counts.completed,
                if mode == Mode::Custody { "; every task kept one sequence number" } else { "" }
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i11_catches_a_shared_seq_and_a_false_answer() {
        // Two tasks under seq 1 of r0.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 1))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (2, 1), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, false));
        assert_eq!(failed(&out), ["I4", "I11"]);
        assert!(get(&out, "I11").detail.contains("two tasks share a sequence number"), "{:?}", get(&out, "I11"));
        // An answer naming a token the task did not run with, and one naming
        // another task.
        let mut tasks = [record(0, (1, 2)), record(1, (1, 1))];
        tasks[1].status = TaskStatus::Completed { token: Token { epoch: 1, seq: 1 }, task_id: "t0".into(), at: 1_000 };
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(0, 1, 1, (1, 1), 100, 200)];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert_eq!(failed(&out), ["I11"]);
            let i11 = get(&out, "I11");
            assert_eq!(i11.violations, 2);
            assert!(i11.detail.contains("first: t1 was answered completed with τ"), "{i11:?}");
        }
    }

    #[test]
    fn i11_catches_a_task_that_got_a_second_seq() {
        // Custody: t0 ran under seq 1, then again under seq 2 (both effects
        // apply, which I5 sees too).
        let mut tasks = [record(0, (1, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 0, 0, (1, 2), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I5", "I11"]);
        let i11 = get(&out, "I11");
        assert_eq!(i11.violations, 1, "{i11:?}");
        assert!(i11.detail.contains("a task got a second sequence number; first: t0 of r0"), "{i11:?}");
        // The baseline's token is the lock's revision, new at every acquire:
        // a re-run under another one is no second number of the task.
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, true));
        assert!(get(&out, "I11").ok, "{out:#?}");
    }
}
