//! **I2** effect fencing: a simulated fencing-aware resource applies effects
//! in strictly increasing token order (by construction, see `fence.rs`),
//! every custody token's epoch gives its resource to the node that ran it,
//! and a stale effect reaches a resource only after a fault touched its
//! custody.

use super::Cx;
use crate::checker::exposure::exposures;
use crate::checker::{Ix, Tally};
use crate::plan::Mode;
use crate::report::{CheckKind, Invariant};

/// I2: what the fence cannot see. Its applied tokens increase by
/// construction (it rejects a token below the highest applied epoch, and
/// takes a sequence number at most the last applied as already applied),
/// so I2 checks the two things that make that fence enough:
/// * custody: every execution carries a token of an epoch whose
///   committed ring gives the resource to the node that ran it (the
///   token's epoch is that node's activation epoch for the resource);
/// * a stale effect (one the fence rejected) reaches a resource only
///   after a fault touched the resource's custody: otherwise a zombie
///   custodian ran with nothing to excuse it.
pub(super) fn check(cx: &Cx<'_, '_>) -> Invariant {
    let trace = cx.run.trace;
    let ex = |i: Ix| &trace[i as usize];
    let run = cx.run;
    // Whether a fault touched resource `r` at or before `at`.
    let touched_by =
        |r: u64, at: u64| run.faults.run_wide || exposures(run.faults.exposures, r).iter().any(|e| e.from <= at);
    let mode = cx.mode;
    let index = cx.index;
    let fence = cx.fence;
    let mut foreign: Tally<Ix> = Tally::new();
    let mut ring_checked = 0u64;
    if let (Mode::Custody, Some(owner)) = (mode, run.faults.owner) {
        for group in index.resources() {
            let mut memo: Option<(u64, Option<usize>)> = None;
            for &i in group {
                let e = ex(i);
                if e.resource == u64::MAX {
                    continue;
                }
                let who = match memo {
                    Some((epoch, who)) if epoch == e.token.epoch => who,
                    _ => {
                        let who = owner(e.token.epoch, e.resource);
                        memo = Some((e.token.epoch, who));
                        who
                    }
                };
                if let Some(who) = who {
                    ring_checked += 1;
                    if who != e.node {
                        foreign.add(e.start, i);
                    }
                }
            }
        }
    }
    let mut unexcused: Tally<(Ix, Ix)> = Tally::new();
    for &(at, (a, b)) in &fence.stale_all {
        if !touched_by(ex(b).resource, at) {
            unexcused.add(at, (a, b));
        }
    }
    let stale = fence.stale.count;
    cx.invariant(
        "I2",
        "effect fencing: each token's epoch gives its resource to the node that ran it, and a stale effect \
         reaches a resource only after a fault touched its custody (the fence applies increasing tokens by \
         construction)",
        CheckKind::Safety,
        foreign.count + unexcused.count,
        if let Some((_, i)) = foreign.first {
            format!(
                "{} executions ran with a token whose epoch's ring gives the resource to another node; first: {} \
                 (epoch {}'s custodian of it is n{})",
                foreign.count,
                ex(i),
                ex(i).token.epoch,
                run.faults.owner.and_then(|o| o(ex(i).token.epoch, ex(i).resource)).unwrap_or(usize::MAX)
            )
        } else if let Some((_, (a, b))) = unexcused.first {
            format!(
                "{} stale effects reached a resource no fault had touched; first: {} after {} was applied",
                unexcused.count,
                ex(b),
                ex(a)
            )
        } else {
            format!(
                "{} effects applied in increasing token order, {} re-executions recognised as already applied; \
                 {}; {}",
                fence.applied_total,
                fence.already,
                if ring_checked > 0 {
                    format!("{ring_checked} executions' tokens checked against their epoch's ring")
                } else {
                    "tokens not checked against rings (none known)".to_string()
                },
                if stale == 0 {
                    "no stale effect reached a resource".to_string()
                } else {
                    format!("{stale} stale effects rejected, each on a resource a fault had touched")
                }
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn i2_catches_a_stale_effect_unless_a_fault_touched_the_resource() {
        // A zombie: t0 at epoch 1 ends after t1 at epoch 2 was applied.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 1_000), exec(1, 1, 0, (2, 2), 300, 400)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        // Also an overlap, and t0's effect never landed.
        assert_eq!(failed(&out), ["I1", "I2", "I4"]);
        let i2 = get(&out, "I2");
        assert!(i2.detail.contains("first: t0 of r0") && i2.detail.contains("after t1 of r0"), "{i2:?}");
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert_eq!(failed(&out), ["I1", "I4"]);
        assert!(get(&out, "I2").detail.contains("1 stale effects rejected, each on a resource a fault had touched"));
        // The lock baseline's fence is the lock revision.
        let mut tasks = [record(0, (1, 3)), record(0, (1, 4))];
        let trace = [exec(0, 0, 0, (1, 3), 100, 1_000), exec(1, 1, 0, (1, 4), 300, 400)];
        let out = invs(Mode::Lock, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I1", "I2", "I4"]);
    }

    #[test]
    fn i2_catches_a_token_whose_epoch_gives_the_resource_to_another_node() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2))];
        let trace = [exec(0, 0, 0, (1, 1), 100, 200), exec(1, 1, 0, (2, 2), 300, 400)];
        let mut f = facts(STRICT, false);
        f.owners.insert((1, 0), 0);
        f.owners.insert((2, 0), 1);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I2").detail.contains("2 executions' tokens checked"), "{:?}", get(&out, "I2"));
        // Epoch 2's ring gives r0 to n0, yet n1 ran with an epoch-2 token.
        f.owners.insert((2, 0), 0);
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        assert_eq!(failed(&out), ["I2"]);
        let i2 = get(&out, "I2");
        assert_eq!(i2.violations, 1);
        assert!(i2.detail.contains("first: t1 of r0") && i2.detail.contains("custodian of it is n0"), "{i2:?}");
    }

    #[test]
    fn i2_allows_a_stale_effect_only_on_a_resource_a_fault_touched_first() {
        // Zombies on r0 and on r1; a fault touched r1 before, r0 never.
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2)), record(1, (1, 1)), record(1, (2, 2))];
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 1_000),
            exec(1, 1, 0, (2, 2), 300, 400),
            exec(0, 2, 1, (1, 1), 100, 1_000),
            exec(1, 3, 1, (2, 2), 300, 400),
        ];
        let mut f = facts(LOOSE, false);
        f.exposures.push(window(1, Touch::Paused, 50, 900));
        let out = invs(Mode::Custody, &mut tasks, &trace, &f);
        let i2 = get(&out, "I2");
        assert_eq!(i2.violations, 1, "{i2:?}");
        assert!(i2.detail.contains("first: t0 of r0"), "{i2:?}");
        // Touched after the stale effect arrived: not excused either.
        f.exposures.push(window(0, Touch::Paused, 2_000, 3_000));
        assert_eq!(get(&invs(Mode::Custody, &mut tasks, &trace, &f), "I2").violations, 1);
        f.exposures.push(window(0, Touch::CutOff, 200, 3_000));
        assert!(get(&invs(Mode::Custody, &mut tasks, &trace, &f), "I2").ok);
    }
}
