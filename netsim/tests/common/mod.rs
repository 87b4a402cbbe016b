//! What the replay tests share: the saved plans of a folder.

use std::path::PathBuf;

use netsim::plan::Plan;

/// Every plan (or report, whose `fault_plan` is the plan) saved as JSON in
/// `tests/<folder>`, in name order, read and validated; at least `at_least`
/// of them.
pub fn saved_plans(folder: &str, at_least: usize) -> Vec<(PathBuf, Plan)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= at_least, "the saved plans are all there: {files:?}");
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable");
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            // A report carries its plan under `fault_plan`.
            let value = value.get("fault_plan").cloned().unwrap_or(value);
            let plan = Plan::from_json(value).unwrap_or_else(|e| panic!("{}: not a plan: {e}", file.display()));
            plan.validate().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (file, plan)
        })
        .collect()
}
