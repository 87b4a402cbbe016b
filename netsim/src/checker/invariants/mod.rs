//! The task invariants (docs/design.md, section 12), one file per
//! invariant: each is one function of the run ([`Cx`]) that counts the
//! invariant's offences and names the first offending execution or pair of
//! them, with the unit tests that show it fails when broken.
//!
//! * `exclusion.rs`: **I1** real-time mutual exclusion;
//! * `fencing.rs`: **I2** effect fencing;
//! * `no_loss.rs`: **I4** no acknowledged task lost;
//! * `exactly_once.rs`: **I5** exactly-once effect;
//! * `duplicates.rs`: **I6** attributable duplicates;
//! * `order.rs`: **I7** per-resource order;
//! * `epochs.rs`: **I8** epoch discipline;
//! * `dedup.rs`: **I11** dedup;
//! * `no_phantom.rs`: **I12** no phantom.

mod dedup;
mod duplicates;
mod epochs;
mod exactly_once;
mod exclusion;
mod fencing;
mod no_loss;
mod no_phantom;
mod order;

use std::collections::BTreeMap;

use super::TaskRun;
use super::exposure::Reasons;
use super::fence::Fence;
use super::index::Index;
use crate::plan::Mode;
use crate::report::{CheckKind, Invariant};

/// What every invariant reads: the mode, the run, its trace grouped, what
/// the fencing-aware resources did, and each task's reason bits.
pub(super) struct Cx<'c, 'a> {
    /// The mode whose trace it is.
    pub(super) mode: Mode,
    /// The run.
    pub(super) run: &'c TaskRun<'a>,
    /// The trace, grouped by task and by resource.
    pub(super) index: &'c Index,
    /// What the fencing-aware resources did with every effect.
    pub(super) fence: &'c Fence,
    /// Per task: why its expectations were relaxed (none: it must run, have
    /// its effect and run once).
    pub(super) mask: &'c [Reasons],
}

impl Cx<'_, '_> {
    /// One invariant's entry: it holds when nothing offended.
    fn invariant(&self, name: &str, about: &str, kind: CheckKind, violations: u64, detail: String) -> Invariant {
        Invariant {
            name: name.into(),
            mode: self.mode,
            ok: violations == 0,
            violations,
            detail,
            about: about.into(),
            kind,
            classified: BTreeMap::new(),
        }
    }
}

/// Every invariant, in the order I1, I2, I4, I5, I6, I7, I8, I11, I12;
/// marks the tasks I4 finds lost (`failing |= 4`).
pub(super) fn check_all(cx: &Cx<'_, '_>, failing: &mut [u8]) -> Vec<Invariant> {
    vec![
        exclusion::check(cx),
        fencing::check(cx),
        no_loss::check(cx, failing),
        exactly_once::check(cx),
        duplicates::check(cx),
        order::check(cx),
        epochs::check(cx),
        dedup::check(cx),
        no_phantom::check(cx),
    ]
}

#[cfg(test)]
mod tests {
    use crate::checker::testkit::*;

    #[test]
    fn a_clean_trace_passes_every_invariant_in_both_modes() {
        let mut tasks = [record(0, (1, 1)), record(0, (2, 2)), record(1, (1, 1))];
        let trace = [
            exec(0, 0, 0, (1, 1), 100, 200),
            exec(1, 2, 1, (1, 1), 150, 250),
            // Back to back on another node: half-open intervals touch.
            exec(1, 1, 0, (2, 2), 200, 300),
        ];
        for mode in [Mode::Custody, Mode::Lock] {
            let out = invs(mode, &mut tasks, &trace, &facts(STRICT, false));
            assert!(failed(&out).is_empty(), "{out:#?}");
            assert!(get(&out, "I2").detail.contains("3 effects applied"), "{:?}", get(&out, "I2"));
            let check = get(&out, "I1").to_check();
            assert!(check.ok && check.name.starts_with("I1 (") && check.kind == CheckKind::Safety, "{check:?}");
        }
        let (checks, report) = with_run(&mut tasks, &trace, &facts(STRICT, false), |run| check(Mode::Custody, run));
        assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
        assert_eq!((report.executed, report.executions, report.duplicate_executions), (3, 3, 0));
    }

    #[test]
    fn a_failover_re_execution_is_attributable_and_applied_once() {
        // t0 ran at epoch 1 on n0, which stopped as it ended; n1 ran it again
        // at epoch 2 under the same seq, then t1.
        let mut tasks = [record(0, (2, 1)), record(0, (2, 2))];
        let trace =
            [exec(0, 0, 0, (1, 1), 100, 150), exec(1, 0, 0, (2, 1), 5_000, 5_100), exec(1, 1, 0, (2, 2), 5_100, 5_200)];
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, true));
        assert!(failed(&out).is_empty(), "{out:#?}");
        assert!(get(&out, "I2").detail.contains("1 re-executions recognised as already applied"));
        assert!(get(&out, "I6").detail.contains("1 duplicate executions of 1 tasks, each with a newer token"));
        // In a run that cannot lose custody, or must run each task once, the
        // duplicate is a violation.
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(LOOSE, false));
        assert_eq!(failed(&out), ["I6"]);
        let out = invs(Mode::Custody, &mut tasks, &trace, &facts(STRICT, true));
        assert_eq!(failed(&out), ["I6"]);
        let i6 = get(&out, "I6");
        assert!(i6.detail.contains("t0 of r0 with τ") && i6.detail.contains("on n1"), "{i6:?}");
    }
}
