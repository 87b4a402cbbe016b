//! Helpers shared by the integration tests: polling, and the limits a test
//! waits within.
//!
//! A limit only ends a test that would otherwise hang, so it is generous:
//! the tests run in parallel, several clusters and cargo's other test
//! binaries at once on as few as two cores, where timers fire late and
//! packets wait in queues. A limit is derived from the configuration the
//! cluster runs with ([`limit`] of a nominal duration); a test that measures
//! something prints the measurement next to its nominal bound instead of
//! failing on a stopwatch.

use std::future::Future;
use std::time::{Duration, Instant};

use custody::Config;

/// How often a waiting test re-checks its condition.
pub const POLL: Duration = Duration::from_millis(50);

/// The limit for what takes no protocol timer: a request on localhost, a
/// process's start, a local counter. Only a hang reaches it.
pub const PROMPT: Duration = Duration::from_secs(30);

/// The limit for something that takes `nominal` on an idle machine: three
/// times as long, and ten seconds more for a machine that stalls.
pub fn limit(nominal: Duration) -> Duration {
    nominal * 3 + Duration::from_secs(10)
}

/// The nominal time for `n` nodes started together to see each other alive
/// and commit a configuration with all of them, every range held: a join
/// retry, the failure detector's bound (the rounds that spread the news),
/// two batching windows of the epoch store and a lease.
pub fn formation(config: &Config, n: usize) -> Duration {
    config.join_retry + config.failure_detection_bound(n) + config.stable_after * 2 + config.lease
}

/// The longest a graceful leave takes: the epoch store's two commits
/// (leaving, then removed) within `2·stable_after + lease`, after which the
/// node leaves anyway, and the handoffs of its ranges, which give up after
/// `handoff_timeout`.
pub fn leave_bound(config: &Config) -> Duration {
    config.stable_after * 2 + config.lease + config.handoff_timeout
}

/// Re-checks `check` every [`POLL`] until it returns `Some`, or fails the
/// test after `limit` with `what`. Returns the value and the time it took.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
}
