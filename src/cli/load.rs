//! `custody submit --count`: the load generator.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use custody::engine::wire::{Request, Response};
use custody::engine::{Outcome, Task};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::args::SubmitArgs;
use super::render;

/// How one submit of a load ended.
#[derive(Debug)]
enum Answer {
    /// Accepted (without waiting).
    Acknowledged,
    /// Ran; whether the handler succeeded.
    Completed {
        ok: bool,
    },
    Busy,
    Error(String),
}

/// The resource of each task of a load: a fraction `hot` of them (rounded)
/// on `r0`, the rest uniform over `r1 .. r{resources-1}` (over all of them
/// when `hot` is 0), in a shuffled order.
fn load_plan(count: u64, resources: u64, hot: f64, seed: u64) -> Vec<u64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let hot_count = if resources == 1 { count } else { (hot * count as f64).round() as u64 };
    let (first_cold, mut plan) = if hot > 0.0 { (1, vec![0; hot_count as usize]) } else { (0, Vec::new()) };
    while (plan.len() as u64) < count {
        plan.push(rng.random_range(first_cold..resources));
    }
    for i in (1..plan.len()).rev() {
        let j = rng.random_range(0..=i);
        plan.swap(i, j);
    }
    plan
}

/// The nearest-rank percentile of sorted samples, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1].as_secs_f64() * 1e6).round() / 1e3)
}

/// Counts of a load run.
#[derive(Debug, Default)]
pub(crate) struct LoadSummary {
    pub submitted: u64,
    pub acknowledged: u64,
    pub completed: u64,
    pub failed: u64,
    pub busy: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Submit-to-answer times of the submits that succeeded, sorted.
    pub latencies: Vec<Duration>,
    /// Whether the run waited for the tasks to run.
    pub wait: bool,
}

impl LoadSummary {
    /// Tasks done (run, or accepted when not waited for) per second, to one
    /// decimal.
    pub(crate) fn throughput(&self) -> f64 {
        let done = if self.wait { self.completed } else { self.acknowledged };
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { (done as f64 / secs * 10.0).round() / 10.0 } else { 0.0 }
    }
}

/// `custody submit --count`: submits the load, prints its summary.
pub(crate) async fn load(args: SubmitArgs) -> Result<()> {
    let count = args.count.context("load mode needs --count")?;
    let resources = args.resources.context("load mode needs --resources")?;
    if count == 0 || resources == 0 || args.concurrency == 0 {
        bail!("--count, --resources and --concurrency must be at least 1");
    }
    let wait = !args.no_wait;
    let node = args.node;
    let timeout = Duration::from_secs(args.timeout);
    let plan = Arc::new(load_plan(count, resources, args.hot_fraction, args.seed));
    // Distinct per run, so a rerun's ids are not taken for retries of this
    // run's.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let run = Xoshiro256PlusPlus::seed_from_u64(nanos ^ u64::from(std::process::id()).rotate_left(32)).random::<u32>();
    let prefix: Arc<str> = format!("load-{}-{run:08x}", std::process::id()).into();
    let payload: Arc<[u8]> = args.payload.into_bytes().into();

    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {per_sec}  eta {eta}  {msg}")
                .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // One connection for the whole run; each submit is a stream on it.
    let client =
        custody::runtime::Client::connect(node).await.with_context(|| format!("connecting to the node at {node}"))?;
    let start = tokio::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let (results, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..args.concurrency.min(count as usize) {
        let (plan, next, results) = (plan.clone(), next.clone(), results.clone());
        let (prefix, payload, client) = (prefix.clone(), payload.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&resource) = plan.get(i) else { break };
                let task =
                    Task { id: format!("{prefix}-{i}"), resource: format!("r{resource}"), payload: payload.to_vec() };
                let sent = tokio::time::Instant::now();
                let answer = match client.request(Request::Submit { task, wait }, timeout).await {
                    Ok(Response::Submitted(_)) => Answer::Acknowledged,
                    Ok(Response::Completed(c)) => {
                        Answer::Completed { ok: !matches!(c.outcome, Some(Outcome::Failed(_))) }
                    }
                    Ok(Response::Busy) => Answer::Busy,
                    Ok(Response::Unavailable(reason)) => Answer::Error(format!("unavailable: {reason}")),
                    Ok(Response::Error(reason)) => Answer::Error(format!("refused: {reason}")),
                    Ok(other) => Answer::Error(format!("unexpected answer {other:?}")),
                    Err(e) => Answer::Error(format!("{e}")),
                };
                if results.send((answer, sent.elapsed())).is_err() {
                    break;
                }
            }
        });
    }
    drop(results);

    let mut summary = LoadSummary { wait, ..LoadSummary::default() };
    let mut first_errors: Vec<String> = Vec::new();
    while let Some((answer, took)) = answers.recv().await {
        summary.submitted += 1;
        match answer {
            Answer::Acknowledged => {
                summary.acknowledged += 1;
                summary.latencies.push(took);
            }
            Answer::Completed { ok } => {
                summary.acknowledged += 1;
                summary.completed += 1;
                summary.failed += u64::from(!ok);
                summary.latencies.push(took);
            }
            Answer::Busy => summary.busy += 1,
            Answer::Error(e) => {
                summary.errors += 1;
                if first_errors.len() < 3 && !first_errors.contains(&e) {
                    first_errors.push(e);
                }
            }
        }
        progress.inc(1);
        if summary.busy + summary.errors > 0 {
            progress.set_message(format!("busy {}  errors {}", summary.busy, summary.errors));
        }
    }
    summary.elapsed = start.elapsed();
    progress.finish_and_clear();
    client.close().await;
    summary.latencies.sort_unstable();

    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", render::load_summary_json(&summary))?;
    } else {
        write!(out, "{}", render::load_summary_text(&summary))?;
    }
    out.flush()?;
    for e in &first_errors {
        eprintln!("error: {e}");
    }
    if summary.errors > 0 {
        bail!("{} of {} submits ended in an error", summary.errors, summary.submitted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_sends_the_hot_fraction_to_r0_and_spreads_the_rest() {
        let plan = load_plan(1000, 10, 0.3, 7);
        assert_eq!(plan.len(), 1000);
        assert_eq!(plan.iter().filter(|&&r| r == 0).count(), 300);
        for r in 1..10 {
            let n = plan.iter().filter(|&&x| x == r).count();
            assert!((40..=120).contains(&n), "r{r} got {n} of the 700 cold tasks");
        }
        assert_ne!(&plan[..300], &[0; 300][..], "the hot tasks are shuffled in");
        assert_eq!(plan, load_plan(1000, 10, 0.3, 7), "a seed gives one plan");
        let uniform = load_plan(1000, 4, 0.0, 7);
        assert!((0..4).all(|r| uniform.contains(&r)));
        assert_eq!(load_plan(5, 1, 0.0, 7), vec![0; 5]);
        assert_eq!(load_plan(5, 3, 1.0, 7), vec![0; 5]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&samples, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&samples, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&samples[..1], 0.99), Some(1.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }
}
