//! What the CLI prints: tables and texts for people, JSON documents for
//! programs.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use custody::engine::Outcome;
use custody::engine::wire::{Completed, CustodyInfo, MemberInfo, StatusInfo, Submitted};

use super::load::{LoadSummary, percentile_ms};

/// `custody members`: a row per member, voters marked.
pub(crate) fn members_table(members: &[MemberInfo], voters: &[SocketAddr]) -> String {
    let name_width = members.iter().map(|m| m.name.len()).max().unwrap_or(0).max(4);
    let addr_width = members.iter().map(|m| m.addr.to_string().len()).max().unwrap_or(0).max(7);
    let mut out =
        format!("{:<name_width$}  {:<addr_width$}  {:>13}  STATE    VOTER\n", "NAME", "ADDRESS", "INCARNATION");
    for m in members {
        let voter = if voters.contains(&m.addr) { "voter" } else { "" };
        out.push_str(&format!(
            "{:<name_width$}  {:<addr_width$}  {:>13}  {:<7}  {voter}\n",
            m.name,
            m.addr.to_string(),
            m.incarnation,
            m.state.as_str()
        ));
    }
    out
}

/// The status as JSON: [`StatusInfo`] as it serializes, with the main custody
/// counters also at the top level.
pub(crate) fn status_json(status: &StatusInfo) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(status)?;
    let c = &status.custody;
    let top = doc.as_object_mut().context("a status serializes as an object")?;
    for (key, value) in [
        ("ranges_owned", c.ranges_owned),
        ("tasks_queued", c.tasks_queued),
        ("tasks_executed", c.tasks_executed),
        ("handoffs_sent", c.handoffs_sent),
        ("handoffs_received", c.handoffs_received),
    ] {
        top.insert(key.to_string(), value.into());
    }
    Ok(doc)
}

/// `custody status` as text.
pub(crate) fn status_text(status: &StatusInfo) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("node:      {}", status.name));
    if status.epoch == 0 {
        line("epoch:     none yet (not admitted to a committed configuration)".into());
    } else {
        line(format!("epoch:     {} (hash {})", status.epoch, status.epoch_hash));
    }
    line(format!("leader:    {}", status.leader.as_deref().unwrap_or("unknown")));
    line(format!("voters:    {}", status.voters.join(", ")));
    line(format!("lease:     {} ms left to act as custodian", status.lease_remaining_ms));
    let CustodyInfo {
        ranges_owned,
        ranges_unavailable,
        ranges_sealing,
        resources,
        tasks_queued,
        tasks_running,
        tasks_executed,
        handoffs_sent,
        handoffs_received,
        handoffs_in_doubt,
        replica_resources,
        replica_tasks,
        ranges_recovering,
        ranges_unrecoverable,
    } = status.custody;
    line(format!("ranges:    {ranges_owned} owned, {ranges_unavailable} unavailable, {ranges_sealing} sealing"));
    if ranges_recovering > 0 {
        line(format!(
            "recovery:  {ranges_recovering} parts recovering, {ranges_unrecoverable} without a read quorum holding them"
        ));
    }
    line(format!("resources: {resources}"));
    line(format!("tasks:     {tasks_queued} queued, {tasks_running} running, {tasks_executed} executed"));
    line(format!("handoffs:  {handoffs_sent} sent, {handoffs_received} received, {handoffs_in_doubt} in doubt"));
    line(format!("replicas:  copies of {replica_resources} resources, {replica_tasks} tasks"));
    line(format!("members:   {}", status.members.len()));
    for m in &status.members {
        let voter = if m.voter { " (voter)" } else { "" };
        line(format!("  {:<20} {:<22} #{:<14} {}{voter}", m.name, m.addr, m.incarnation, m.status.as_str()));
    }
    out
}

/// A task accepted by its custodian, as JSON.
pub(crate) fn submitted_json(s: &Submitted) -> serde_json::Value {
    serde_json::json!({
        "task_id": s.task_id,
        "resource": s.resource,
        "seq": s.seq,
        "custodian": s.custodian,
        "epoch": s.epoch,
        "duplicate": s.duplicate,
    })
}

/// A task accepted by its custodian, as text.
pub(crate) fn submitted_text(s: &Submitted) -> String {
    let retry = if s.duplicate { " (already known: nothing new was queued)" } else { "" };
    format!(
        "task:      {}{retry}\nresource:  {}\nseq:       {}\ncustodian: {}\nepoch:     {}\n",
        s.task_id, s.resource, s.seq, s.custodian, s.epoch
    )
}

fn outcome_json(outcome: Option<&Outcome>) -> serde_json::Value {
    match outcome {
        Some(Outcome::Ok(result)) => serde_json::json!({ "ok": true, "result": String::from_utf8_lossy(result) }),
        Some(Outcome::Failed(error)) => serde_json::json!({ "ok": false, "error": error }),
        None => serde_json::Value::Null,
    }
}

/// A task that ran, as JSON.
pub(crate) fn completed_json(c: &Completed) -> serde_json::Value {
    serde_json::json!({
        "task_id": c.task_id,
        "resource": c.resource,
        "seq": c.token.seq,
        "custodian": c.custodian,
        "epoch": c.token.epoch,
        "token": { "epoch": c.token.epoch, "seq": c.token.seq },
        "outcome": outcome_json(c.outcome.as_ref()),
    })
}

/// A task that ran, as text.
pub(crate) fn completed_text(c: &Completed) -> String {
    let outcome = match &c.outcome {
        Some(Outcome::Ok(result)) if result.is_empty() => "ok".to_string(),
        Some(Outcome::Ok(result)) => format!("ok: {}", String::from_utf8_lossy(result).trim_end()),
        Some(Outcome::Failed(error)) => format!("failed: {error}"),
        None => "unknown (the task had run before this submit; its outcome is no longer kept)".to_string(),
    };
    format!(
        "task:      {}\nresource:  {}\nseq:       {}\ncustodian: {}\nepoch:     {}\ntoken:     {}\noutcome:   {outcome}\n",
        c.task_id, c.resource, c.token.seq, c.custodian, c.token.epoch, c.token
    )
}

/// A load's summary as JSON: exactly the keys `custody submit --help` lists.
pub(crate) fn load_summary_json(s: &LoadSummary) -> serde_json::Value {
    serde_json::json!({
        "submitted": s.submitted,
        "acknowledged": s.acknowledged,
        "completed": s.completed,
        "busy": s.busy,
        "errors": s.errors,
        "throughput_per_s": s.throughput(),
        "latency_ms": {
            "p50": percentile_ms(&s.latencies, 0.50),
            "p99": percentile_ms(&s.latencies, 0.99),
        },
    })
}

/// A load's summary as text: a row per count.
pub(crate) fn load_summary_text(s: &LoadSummary) -> String {
    let ms = |q| percentile_ms(&s.latencies, q).map_or("-".to_string(), |ms| format!("{ms:.1} ms"));
    let completed = if !s.wait {
        "- (not waited for)".to_string()
    } else if s.failed > 0 {
        format!("{} ({} failed in the handler)", s.completed, s.failed)
    } else {
        s.completed.to_string()
    };
    let rows = [
        ("submitted", s.submitted.to_string()),
        ("acknowledged", s.acknowledged.to_string()),
        ("completed", completed),
        ("busy", format!("{} (not retried)", s.busy)),
        ("errors", s.errors.to_string()),
        ("elapsed", format!("{:.2} s", s.elapsed.as_secs_f64())),
        ("throughput", format!("{} tasks/s", s.throughput())),
        ("latency p50", ms(0.50)),
        ("latency p99", ms(0.99)),
    ];
    rows.iter().map(|(k, v)| format!("{k:<13} {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use custody::MemberState;

    #[test]
    fn table_has_a_row_per_member() {
        let member = |name: &str, port: u16| MemberInfo {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation: 7,
            state: MemberState::Suspect,
        };
        let table = members_table(&[member("a", 7001), member("b", 7002)], &[SocketAddr::from(([127, 0, 0, 1], 7002))]);
        assert_eq!(
            table,
            "NAME  ADDRESS           INCARNATION  STATE    VOTER\n\
             a     127.0.0.1:7001              7  suspect  \n\
             b     127.0.0.1:7002              7  suspect  voter\n"
        );
        // By address, not name: a second (down) node under a voter's name is
        // not a voter.
        let twins = [member("a", 7001), member("a", 7003)];
        let table = members_table(&twins, &[SocketAddr::from(([127, 0, 0, 1], 7001))]);
        assert_eq!(table.lines().filter(|l| l.ends_with("voter")).count(), 1, "{table}");
        assert!(table.lines().nth(1).unwrap().ends_with("voter"), "{table}");
    }

    #[test]
    fn status_json_repeats_the_custody_counters_at_the_top_level() {
        let status = StatusInfo {
            name: "a".into(),
            epoch: 3,
            epoch_hash: "00000000000000ff".into(),
            leader: Some("a".into()),
            voters: vec!["a".into()],
            lease_remaining_ms: 100,
            members: Vec::new(),
            custody: CustodyInfo {
                ranges_owned: 5,
                tasks_queued: 2,
                tasks_executed: 9,
                handoffs_sent: 1,
                handoffs_received: 4,
                ..CustodyInfo::default()
            },
        };
        let doc = status_json(&status).unwrap();
        for (key, value) in [
            ("ranges_owned", 5),
            ("tasks_queued", 2),
            ("tasks_executed", 9),
            ("handoffs_sent", 1),
            ("handoffs_received", 4),
        ] {
            assert_eq!(doc[key], value, "{key}");
            assert_eq!(doc["custody"][key], value, "custody.{key}");
        }
        let text = status_text(&status);
        assert!(text.contains("ranges:    5 owned, 0 unavailable, 0 sealing"), "{text}");
        assert!(text.contains("tasks:     2 queued, 0 running, 9 executed"), "{text}");
        assert!(text.contains("handoffs:  1 sent, 4 received, 0 in doubt"), "{text}");
    }

    #[test]
    fn load_summary_json_has_exactly_the_documented_keys() {
        let summary = LoadSummary {
            submitted: 3,
            acknowledged: 2,
            completed: 2,
            errors: 1,
            elapsed: Duration::from_secs(1),
            latencies: vec![Duration::from_millis(4), Duration::from_millis(8)],
            wait: true,
            ..LoadSummary::default()
        };
        let doc = load_summary_json(&summary);
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["acknowledged", "busy", "completed", "errors", "latency_ms", "submitted", "throughput_per_s"]
        );
        assert_eq!(doc["throughput_per_s"], 2.0);
        assert_eq!(doc["latency_ms"], serde_json::json!({ "p50": 4.0, "p99": 8.0 }));
    }
}
