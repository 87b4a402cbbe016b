//! The numbers that compare custody with the per-task-locking baseline
//! ([`ModeMetrics`]), measured the same way in both modes from the execution
//! trace on the simulator's true clock; the merge of a `--mode both` run;
//! the table `netsim compare` prints; and its plot.
//!
//! Definitions (identical for both modes):
//!
//! * a task is **served** at the end of its first execution that ran its
//!   full time (`end − start ≥ exec_us(task)`; an execution cut short by a
//!   crash does not serve its task);
//! * **latency** = served − arrival (first submit), over served tasks; hot
//!   = tasks of the hot resource (resource 0 of a hot workload), cold = the
//!   others (all tasks of a workload without a hot resource);
//! * **throughput** = tasks served ÷ simulated seconds from the first
//!   arrival to the last task served;
//! * **unavailable resource-seconds** = Σ over resources of the time during
//!   which the resource had an arrived, unserved task and no execution of
//!   it was running: nothing made progress on it (its tasks waited for a
//!   lock, a free worker, a custodian or a handoff). A task never served
//!   counts until the end of the run.

use crate::plan::{Mode, Workload};
use crate::report::{Check, ConsensusByKind, CoordinationByKind, Epochs, HotCold, ModeMetrics, P50P99, Ratios, Report};
use crate::trace::{ExecRecord, FrameCounts, LockCounts, TaskRecord};

/// What a run gives the metrics.
pub struct MetricsInput<'a> {
    /// The mode that ran.
    pub mode: Mode,
    /// The workload.
    pub workload: &'a Workload,
    /// Task `k`'s execution time, µs.
    pub exec_us: &'a dyn Fn(u64) -> u64,
    /// Every task that arrived.
    pub tasks: &'a [TaskRecord],
    /// Every execution, in start order.
    pub trace: &'a [ExecRecord],
    /// The run's end, true µs.
    pub end_us: u64,
    /// The epoch store's counts.
    pub epochs: Epochs,
    /// Frames between nodes, by kind.
    pub frames: FrameCounts,
    /// The baseline's counters (lock mode).
    pub lock: Option<LockCounts>,
    /// Handoffs (transfer messages) and resources moved from the first
    /// fault on.
    pub moved: (u64, u64),
    /// Events simulated.
    pub events: u64,
    /// Wall-clock milliseconds.
    pub wall_ms: u64,
    /// The trace hash.
    pub trace_hash: String,
    /// `(true µs, cumulative consensus instances)` at each commit
    /// (coalesced per 10 ms).
    pub consensus_log: &'a [(u64, u64)],
}

/// When each task was served (true µs; `u64::MAX`: never).
pub fn served_times(tasks: &[TaskRecord], trace: &[ExecRecord], exec_us: &dyn Fn(u64) -> u64) -> Vec<u64> {
    let mut served = vec![u64::MAX; tasks.len()];
    for e in trace {
        let Some(slot) = served.get_mut(e.task as usize) else { continue };
        if let Some(end) = e.end
            && end.saturating_sub(e.start) >= exec_us(e.task)
        {
            *slot = (*slot).min(end);
        }
    }
    served
}

fn percentiles(mut v: Vec<u64>) -> P50P99 {
    if v.is_empty() {
        return P50P99::default();
    }
    v.sort_unstable();
    let pick = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    P50P99 { p50: pick(0.50), p99: pick(0.99), tasks: v.len() as u64 }
}

/// Σ over resources of the time (µs) with an arrived, unserved task and no
/// execution running (see the module docs).
pub fn unavailable_us(tasks: &[TaskRecord], trace: &[ExecRecord], served: &[u64], end_us: u64) -> u64 {
    // Tasks and executions grouped by resource (counting sort).
    let resources = tasks.iter().map(|t| t.resource + 1).max().unwrap_or(0) as usize;
    if resources == 0 {
        return 0;
    }
    let mut start = vec![0u32; resources + 1];
    for t in tasks {
        start[t.resource as usize + 1] += 1;
    }
    let mut exec_start = vec![0u32; resources + 1];
    let valid = |e: &ExecRecord| (e.task as usize) < tasks.len() && (e.resource as usize) < resources;
    for e in trace.iter().filter(|e| valid(e)) {
        exec_start[e.resource as usize + 1] += 1;
    }
    for r in 0..resources {
        start[r + 1] += start[r];
        exec_start[r + 1] += exec_start[r];
    }
    let mut by_resource = vec![0u32; tasks.len()];
    let mut fill = start.clone();
    for (k, t) in tasks.iter().enumerate() {
        let slot = &mut fill[t.resource as usize];
        by_resource[*slot as usize] = k as u32;
        *slot += 1;
    }
    let mut execs = vec![0u32; exec_start[resources] as usize];
    let mut fill = exec_start.clone();
    for (i, e) in trace.iter().enumerate().filter(|(_, e)| valid(e)) {
        let slot = &mut fill[e.resource as usize];
        execs[*slot as usize] = i as u32;
        *slot += 1;
    }
    // Per resource: a sweep over (time, Δpending, Δrunning).
    let mut total = 0u64;
    let mut events: Vec<(u64, i32, i32)> = Vec::new();
    for r in 0..resources {
        let ks = &by_resource[start[r] as usize..start[r + 1] as usize];
        if ks.is_empty() {
            continue;
        }
        events.clear();
        for &k in ks {
            let t = &tasks[k as usize];
            let until = served[k as usize].min(end_us);
            if until > t.arrived {
                events.push((t.arrived, 1, 0));
                events.push((until, -1, 0));
            }
        }
        for &i in &execs[exec_start[r] as usize..exec_start[r + 1] as usize] {
            let e = &trace[i as usize];
            let end = e.end.unwrap_or(end_us).min(end_us);
            if end > e.start {
                events.push((e.start, 0, 1));
                events.push((end, 0, -1));
            }
        }
        events.sort_unstable_by_key(|&(t, _, _)| t);
        let (mut pending, mut running, mut last) = (0i32, 0i32, 0u64);
        for &(t, dp, dr) in &events {
            if pending > 0 && running == 0 {
                total += t - last;
            }
            pending += dp;
            running += dr;
            last = t;
        }
    }
    total
}

/// One mode's numbers.
pub fn mode_metrics(input: &MetricsInput<'_>) -> ModeMetrics {
    let tasks = input.tasks;
    let trace = input.trace;
    let served = served_times(tasks, trace, input.exec_us);
    let hot = input.workload.distribution.hot_resource();
    let (mut hot_lat, mut cold_lat) = (Vec::new(), Vec::new());
    let mut served_count = 0u64;
    let mut last_served = 0u64;
    for (k, t) in tasks.iter().enumerate() {
        let s = served[k];
        if s == u64::MAX {
            continue;
        }
        served_count += 1;
        last_served = last_served.max(s);
        let latency = s.saturating_sub(t.arrived);
        if Some(t.resource) == hot {
            hot_lat.push(latency);
        } else {
            cold_lat.push(latency);
        }
    }
    let first_arrival = tasks.iter().map(|t| t.arrived).min().unwrap_or(0);
    let span_s = last_served.saturating_sub(first_arrival) as f64 / 1e6;
    let throughput_per_s = if span_s > 0.0 { served_count as f64 / span_s } else { 0.0 };
    let mut ran = vec![false; tasks.len()];
    let mut executions = 0u64;
    for e in trace {
        if let Some(r) = ran.get_mut(e.task as usize) {
            *r = true;
            executions += 1;
        }
    }
    let tasks_executed = ran.iter().filter(|&&r| r).count() as u64;
    let unavailable = unavailable_us(tasks, trace, &served, input.end_us);

    let lock = input.lock.unwrap_or_default();
    let consensus_by_kind = ConsensusByKind {
        epochs: input.epochs.epochs_committed,
        suspicion_votes: input.epochs.suspicion_votes,
        enqueue: lock.enqueue,
        acquire: lock.acquire,
        mark: lock.mark,
        release: lock.release,
        session: lock.session,
    };
    let consensus_instances = input.epochs.consensus_instances + lock.consensus();
    let custody = input.mode == Mode::Custody;
    let coordination_by_kind = CoordinationByKind {
        epoch_store: input.frames.epoch_store,
        handoff: if custody { input.frames.handoff } else { 0 },
        lock_service: lock.messages,
    };
    let (handoffs, resources_moved) = if custody { input.moved } else { (0, 0) };
    ModeMetrics {
        mode: input.mode,
        consensus_instances,
        consensus_by_kind,
        consensus_per_task: if tasks_executed > 0 { consensus_instances as f64 / tasks_executed as f64 } else { 0.0 },
        coordination_messages: coordination_by_kind.epoch_store
            + coordination_by_kind.handoff
            + coordination_by_kind.lock_service,
        coordination_by_kind,
        handoffs,
        resources_moved,
        tasks_executed,
        tasks_served: served_count,
        duplicate_executions: executions - tasks_executed,
        throughput_per_s,
        latency_ms: HotCold { hot: percentiles(hot_lat), cold: percentiles(cold_lat) },
        unavailable_resource_seconds: unavailable as f64 / 1e6,
        run_seconds: input.end_us as f64 / 1e6,
        events: input.events,
        wall_ms: input.wall_ms,
        trace_hash: input.trace_hash.clone(),
        lock: input.lock,
        consensus_curve: consensus_curve(input.consensus_log, &served),
    }
}

/// `a / b`, if both are positive numbers.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0 && a >= 0.0).then(|| a / b)
}

/// The baseline over custody.
pub fn ratios(custody: &ModeMetrics, lock: &ModeMetrics) -> Ratios {
    Ratios {
        consensus_per_task_lock_over_custody: ratio(lock.consensus_per_task, custody.consensus_per_task),
        cold_p99_lock_over_custody: ratio(lock.latency_ms.cold.p99, custody.latency_ms.cold.p99),
        throughput_custody_over_lock: ratio(custody.throughput_per_s, lock.throughput_per_s),
    }
}

/// FNV-1a over bytes, for the merged trace hash.
fn fnv(parts: &[&str]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in p.as_bytes().iter().chain(b"/") {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// One report of a plan run in both modes: the custody run's report with
/// the baseline's section, checks and invariants added, and the ratios.
/// Events and wall time are the sums; the trace hash covers both runs.
pub fn merge(custody: Report, lock: Report) -> Report {
    let mut out = custody;
    out.wall_ms += lock.wall_ms;
    out.events += lock.events;
    out.events_per_sec = out.events as f64 / (out.wall_ms.max(1) as f64 / 1000.0);
    out.trace_hash = format!("{:016x}", fnv(&[&out.trace_hash, &lock.trace_hash]));
    let lock_mode = Mode::Lock.name();
    out.checks.extend(lock.checks.into_iter().map(|c| {
        if c.name.contains(&format!("({lock_mode})")) {
            c
        } else {
            Check { name: format!("lock baseline run: {}", c.name), ..c }
        }
    }));
    out.invariants.extend(lock.invariants);
    out.lock_baseline = lock.lock_baseline;
    out.ratios = match (&out.custody, &out.lock_baseline) {
        (Some(c), Some(l)) => Some(ratios(c, l)),
        _ => None,
    };
    // The baseline's failing tasks add to custody's classes.
    for (class, n) in lock.liveness_classes.classified {
        *out.liveness_classes.classified.entry(class).or_insert(0) += n;
    }
    out.liveness_classes.unclassified += lock.liveness_classes.unclassified;
    out.result = Report::result_text(out.verdict()).into();
    out
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1000.0 {
        thousands(x.round() as u64)
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 0.01 {
        format!("{x:.2}")
    } else {
        format!("{x:.2e}")
    }
}

/// The comparison of a `--mode both` report, as a table for a person:
/// one row per measure, custody and the baseline side by side, and the
/// baseline over custody.
pub fn table(report: &Report) -> String {
    let (Some(c), Some(l)) = (&report.custody, &report.lock_baseline) else {
        return "both modes must have run to compare\n".into();
    };
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut row = |name: &str, a: f64, b: f64, int: bool| {
        let fmt = |x: f64| if int { thousands(x.round() as u64) } else { num(x) };
        let r = match ratio(b, a) {
            Some(r) => format!("{}×", num(r)),
            None if b > 0.0 => "∞".into(),
            None => "-".into(),
        };
        rows.push((name.into(), fmt(a), fmt(b), r));
    };
    row("consensus instances", c.consensus_instances as f64, l.consensus_instances as f64, true);
    row("  per task executed", c.consensus_per_task, l.consensus_per_task, false);
    row("coordination messages", c.coordination_messages as f64, l.coordination_messages as f64, true);
    row("  per task executed", per_task(c.coordination_messages, c), per_task(l.coordination_messages, l), false);
    row("handoffs (after the first fault)", c.handoffs as f64, l.handoffs as f64, true);
    row("resources moved", c.resources_moved as f64, l.resources_moved as f64, true);
    row("tasks executed", c.tasks_executed as f64, l.tasks_executed as f64, true);
    row("duplicate executions", c.duplicate_executions as f64, l.duplicate_executions as f64, true);
    row("throughput (tasks/s)", c.throughput_per_s, l.throughput_per_s, false);
    let (ch, lh) = (c.latency_ms.hot, l.latency_ms.hot);
    if ch.tasks + lh.tasks > 0 {
        row("hot p50 latency (ms)", ch.p50, lh.p50, false);
        row("hot p99 latency (ms)", ch.p99, lh.p99, false);
    }
    row("cold p50 latency (ms)", c.latency_ms.cold.p50, l.latency_ms.cold.p50, false);
    row("cold p99 latency (ms)", c.latency_ms.cold.p99, l.latency_ms.cold.p99, false);
    row("unavailable resource-seconds", c.unavailable_resource_seconds, l.unavailable_resource_seconds, false);
    row("simulated time (s)", c.run_seconds, l.run_seconds, false);
    row("wall time (s)", c.wall_ms as f64 / 1000.0, l.wall_ms as f64 / 1000.0, false);
    let headers = ("", "custody", "lock baseline", "lock / custody");
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(headers.1.len());
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(headers.2.len());
    let w3 = rows.iter().map(|r| r.3.chars().count()).max().unwrap_or(0).max(headers.3.len());
    let mut out = String::new();
    let line = |a: &str, b: &str, c: &str, d: &str| {
        let pad = |s: &str, w: usize| " ".repeat(w.saturating_sub(s.chars().count()));
        format!("{a}{}  {}{b}  {}{c}  {}{d}\n", pad(a, w0), pad(b, w1), pad(c, w2), pad(d, w3))
    };
    out.push_str(&line(headers.0, headers.1, headers.2, headers.3));
    for (a, b, c, d) in &rows {
        out.push_str(&line(a, b, c, d));
    }
    if let Some(r) = &report.ratios {
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{}×", num(x)));
        out.push_str(&format!(
            "ratios: consensus per task lock/custody {}, cold p99 lock/custody {}, throughput custody/lock {}\n",
            show(r.consensus_per_task_lock_over_custody),
            show(r.cold_p99_lock_over_custody),
            show(r.throughput_custody_over_lock)
        ));
    }
    let k = l.consensus_by_kind;
    out.push_str(&format!(
        "lock baseline consensus by kind: {} enqueue, {} acquire, {} mark, {} release, {} session, {} epochs, {} votes\n",
        thousands(k.enqueue),
        thousands(k.acquire),
        thousands(k.mark),
        thousands(k.release),
        thousands(k.session),
        thousands(k.epochs),
        thousands(k.suspicion_votes)
    ));
    let k = c.consensus_by_kind;
    out.push_str(&format!(
        "custody consensus by kind: {} epochs, {} votes\n",
        thousands(k.epochs),
        thousands(k.suspicion_votes)
    ));
    out
}

fn per_task(n: u64, m: &ModeMetrics) -> f64 {
    if m.tasks_executed == 0 { 0.0 } else { n as f64 / m.tasks_executed as f64 }
}

/// The invariants of both modes as lines for a person (`ok` or `FAIL`,
/// name, mode, detail).
pub fn invariant_lines(report: &Report) -> Vec<String> {
    report
        .invariants
        .iter()
        .map(|i| {
            let status = if i.ok { " ok " } else { "FAIL" };
            format!("[{status}] {:<4} {:<8} {}: {}", i.name, i.mode.name(), i.about, i.detail)
        })
        .collect()
}

/// Cumulative consensus instances over tasks served: `(tasks served,
/// consensus instances)` points, from a log of `(time, cumulative
/// instances)` and the served times.
pub fn consensus_curve(log: &[(u64, u64)], served: &[u64]) -> Vec<(u64, u64)> {
    let mut times: Vec<u64> = served.iter().copied().filter(|&s| s != u64::MAX).collect();
    times.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(log.len() + 1);
    for &(t, ci) in log {
        let done = times.partition_point(|&s| s <= t) as u64;
        match out.last_mut() {
            Some(last) if last.0 == done => last.1 = ci,
            _ => out.push((done, ci)),
        }
    }
    if let (Some(&(_, ci)), Some(last)) = (log.last(), out.last())
        && last.0 < times.len() as u64
    {
        out.push((times.len() as u64, ci));
    }
    out
}

/// Writes an SVG plot of cumulative consensus instances (log scale) over
/// tasks served, one line per mode.
pub fn plot(path: &std::path::Path, title: &str, series: &[(&str, &[(u64, u64)])]) -> Result<(), String> {
    use plotters::prelude::*;
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {}
        other => return Err(format!("plots are written as SVG (a .svg file), not {other:?}")),
    }
    let x_max = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.0)).max().unwrap_or(1).max(1);
    let y_max = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).max().unwrap_or(1).max(10);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..x_max, (1u64..y_max * 2).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("tasks served")
        .x_label_formatter(&|x| thousands(*x))
        .y_label_formatter(&|y| thousands(*y))
        .y_desc("consensus instances (cumulative, log scale)")
        .draw()
        .map_err(|e| err(&e))?;
    let colours = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        // A step line: instances stay until the next commit.
        let mut steps: Vec<(u64, u64)> = Vec::with_capacity(points.len() * 2 + 1);
        let mut last_y = 1u64;
        for &(x, y) in points.iter() {
            steps.push((x, last_y.max(1)));
            steps.push((x, y.max(1)));
            last_y = y;
        }
        steps.push((x_max, last_y.max(1)));
        chart
            .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TaskStatus;
    use custody::engine::Token;

    fn task(resource: u64, arrived: u64) -> TaskRecord {
        TaskRecord { resource, arrived, acked: None, gateway_fault: None, attempts: 1, status: TaskStatus::Open }
    }

    fn exec(task: u64, resource: u64, start: u64, end: Option<u64>) -> ExecRecord {
        ExecRecord {
            node: 0,
            task,
            resource,
            token: Token { epoch: 1, seq: 1 },
            attempt: 1,
            start,
            end,
            cancelled: false,
        }
    }

    #[test]
    fn unavailability_counts_waiting_with_nothing_running() {
        // r0: t0 arrives at 0, runs 10..20; t1 arrives at 5, runs 20..30:
        // idle-with-work only 0..10. r1: t2 arrives at 0, cut short by a
        // crash 5..7, runs again 50..60: 0..5 and 7..50.
        let tasks = [task(0, 0), task(0, 5), task(1, 0)];
        let trace =
            [exec(0, 0, 10, Some(20)), exec(1, 0, 20, Some(30)), exec(2, 1, 5, Some(7)), exec(2, 1, 50, Some(60))];
        let served = served_times(&tasks, &trace, &|_| 10);
        assert_eq!(served, vec![20, 30, 60]);
        assert_eq!(unavailable_us(&tasks, &trace, &served, 100), 10 + 5 + 43);
        // A task never served counts to the end.
        let tasks = [task(0, 40)];
        assert_eq!(unavailable_us(&tasks, &[], &[u64::MAX], 100), 60);
    }

    #[test]
    fn the_curve_follows_served_tasks() {
        let log = [(0, 2), (10, 3), (20, 4), (35, 9)];
        let served = [5, 15, 16, 30, u64::MAX];
        assert_eq!(consensus_curve(&log, &served), vec![(0, 2), (1, 3), (3, 4), (4, 9)]);
    }
}
