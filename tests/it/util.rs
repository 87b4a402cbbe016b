//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a waiting test re-checks its condition.
pub const POLL: Duration = Duration::from_millis(50);

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
