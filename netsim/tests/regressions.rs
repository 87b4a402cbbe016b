//! Every plan in `tests/regressions/`: plans that once failed (saved by
//! `netsim sweep` or found by review), replayed as they were saved.
//!
//! Each must show no safety failure and no liveness failure that nothing
//! explains. A plan whose only failures are liveness failures explained by
//! a documented limitation (a crashed custodian's tasks until crash
//! recovery exists, an in-doubt transfer: `Verdict::Limited`) is allowed:
//! the test prints which. Replay one with `netsim replay FILE`.

mod common;

use netsim::report::{CheckKind, Verdict};

#[test]
fn every_saved_plan_replays_without_a_safety_failure_or_an_unexplained_one() {
    let mut failures = Vec::new();
    for (file, plan) in common::saved_plans("regressions", 13) {
        let report = netsim::run_plan(plan);
        let replay = format!("netsim replay {}", file.display());
        let safety: Vec<String> = report.safety_failures().map(|c| format!("{}: {}", c.name, c.detail)).collect();
        let unexplained: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.ok && c.class.is_none() && c.kind == CheckKind::Liveness)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        match report.verdict() {
            Verdict::Pass => {}
            Verdict::Limited => {
                // Allowed: every failure is classified liveness.
                assert!(safety.is_empty() && unexplained.is_empty() && report.liveness_classes.unclassified == 0);
                println!("{replay}: only explained liveness failures: {:?}", report.liveness_classes.classified);
            }
            Verdict::SafetyFailed | Verdict::LivenessFailed => failures.push(format!(
                "{replay}: {} safety failures {safety:?}; unexplained liveness {unexplained:?}; {} failing tasks \
                 no documented limitation explains",
                safety.len(),
                report.liveness_classes.unclassified
            )),
        }
    }
    assert!(failures.is_empty(), "failing saved plans:\n{}", failures.join("\n"));
}
