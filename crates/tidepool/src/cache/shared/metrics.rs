//! The shared tier's counters (exported as `tidepool_cache_redis_*`) and its rate-limited
//! logging: a dead Redis is logged once per interval with the count of suppressed lines, not once
//! per request.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of one [`RedisTier`](super::RedisTier) (cheap to clone: they share their values).
#[derive(Debug, Clone, Default)]
pub struct TierMetrics {
    /// Redis calls that failed or timed out (any operation).
    pub errors: Counter,
    /// Writes dropped: the queue to Redis was full (entries, invalidations), or an entry was
    /// queued before the last re-subscription.
    pub dropped: Counter,
    /// Reads that found a valid, current entry.
    pub hits: Counter,
    /// Reads that found nothing.
    pub misses: Counter,
    /// Reads that skipped Redis because a call failed less than a second before.
    pub skipped: Counter,
    /// Reads that found an entry hidden by a later invalidation.
    pub invalidated: Counter,
    /// Values read that were not ours or too large (ignored).
    pub rejected: Counter,
    /// Invalidations received from other nodes.
    pub remote_invalidations: Counter,
    /// Subscriptions to the invalidation channel established (first one and reconnects).
    pub subscriptions: Counter,
}

impl TierMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("cache_redis_errors", "Redis calls of the shared cache tier that failed or timed out", self.errors.clone());
        r.register("cache_redis_dropped_writes", "Shared-tier writes dropped (queue full, or queued before a re-subscription)", self.dropped.clone());
        r.register("cache_redis_hits", "Shared-tier reads that found a current entry", self.hits.clone());
        r.register("cache_redis_misses", "Shared-tier reads that found nothing", self.misses.clone());
        r.register("cache_redis_skipped_reads", "Shared-tier reads skipped for a second after a Redis failure", self.skipped.clone());
        r.register("cache_redis_invalidated", "Shared-tier reads that found an entry hidden by an invalidation", self.invalidated.clone());
        r.register("cache_redis_rejected", "Shared-tier values ignored as malformed or too large", self.rejected.clone());
        r.register("cache_redis_remote_invalidations", "Invalidations received from other nodes", self.remote_invalidations.clone());
        r.register("cache_redis_subscriptions", "Subscriptions to the invalidation channel established", self.subscriptions.clone());
    }
}

/// Lets one log line through per `interval`.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow_at(t0), Some(0));
        assert_eq!(l.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow_at(t0 + Duration::from_secs(11)), None);
    }
}
