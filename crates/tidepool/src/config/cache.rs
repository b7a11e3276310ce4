//! The `[cache]` section: bounds and switches of the query cache (see `crate::cache`). Every key
//! has a safe default, so the cache works with no configuration; a request opts in with its own
//! cache strategy (`cache-control` on the Prisma API, `Tidepool-Cache-*` headers on `/sql`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Serve and store cached results at all. Off: every request runs on the database (`none`).
    pub enabled: bool,
    /// Total bytes of cached results in memory (payload plus bookkeeping), evicted least
    /// recently/frequently used first.
    pub max_bytes: u64,
    /// Largest single result that is stored; larger ones are served but not cached.
    pub max_entry_bytes: u64,
    /// Bytes one database may hold; 0 = no quota beyond `max_bytes`.
    pub max_bytes_per_database: u64,
    /// Longest ttl (`max-age`) honoured; longer requests are clamped.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Longest swr (`stale-while-revalidate`) honoured; longer requests are clamped.
    #[serde(with = "humantime_serde")]
    pub max_swr: Duration,
    /// Most tags on one cached query and in one invalidation call.
    pub max_tags: usize,
    /// Drop a database's entries that read a table when tidepool runs a write to that table for
    /// the same database (any front end).
    pub invalidate_on_write: bool,
    /// `POST /invalidate` calls one database may make per minute (beyond: 429 P6003); 0 = none.
    pub invalidations_per_minute: u32,
    /// Most (database, table) marks kept for `invalidate_on_write` (table names come from client
    /// SQL); when full the marks are dropped and every write invalidates (conservative).
    pub max_table_marks: usize,
    /// Shared tier: `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS (the
    /// server's certificate verified against the system trust store or `SSL_CERT_FILE`). None:
    /// no shared tier, every node caches alone. The `redis_*` keys are validated in
    /// `cache_redis.rs`.
    pub redis_url: Option<String>,
    /// Longest a Redis read or write may take (a read is two round trips); beyond it the call is
    /// abandoned, counted, and the request goes on as a miss.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Longest one connection attempt to Redis may take.
    #[serde(with = "humantime_serde")]
    pub redis_connect_timeout: Duration,
    /// Writes (entries and invalidations) waiting for Redis; beyond it new writes are dropped and
    /// counted, never queued without bound.
    pub redis_queue: usize,
    /// Cap on how long anything lives in Redis: an entry's TTL (ttl + swr) is cut to it, and an
    /// invalidation marker lives exactly this long (so it outlives every entry it hides).
    #[serde(with = "humantime_serde")]
    pub redis_max_ttl: Duration,
    /// Longest wait between two attempts to re-subscribe to invalidations (the wait doubles from
    /// 50 ms up to this).
    #[serde(with = "humantime_serde")]
    pub redis_reconnect_max_delay: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: 256 << 20,
            max_entry_bytes: 5 << 20,
            max_bytes_per_database: 0,
            max_ttl: Duration::from_secs(365 * 24 * 3600),
            max_swr: Duration::from_secs(365 * 24 * 3600),
            max_tags: 5,
            invalidate_on_write: false,
            invalidations_per_minute: 600,
            max_table_marks: 100_000,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_connect_timeout: Duration::from_secs(1),
            redis_queue: 1024,
            redis_max_ttl: Duration::from_secs(7 * 24 * 3600),
            redis_reconnect_max_delay: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes < 1 << 20 {
            return Err(invalid("[cache] max_bytes must be at least 1 MiB"));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > self.max_bytes || self.max_entry_bytes > u32::MAX as u64 / 2 {
            return Err(invalid("[cache] max_entry_bytes must be positive, at most max_bytes and below 2 GiB"));
        }
        if self.max_bytes_per_database != 0 && self.max_bytes_per_database < self.max_entry_bytes {
            return Err(invalid("[cache] max_bytes_per_database must be 0 or at least max_entry_bytes"));
        }
        if self.max_ttl.is_zero() {
            return Err(invalid("[cache] max_ttl must be positive"));
        }
        if self.max_tags == 0 || self.max_tags > 64 {
            return Err(invalid("[cache] max_tags must be within 1..64"));
        }
        self.validate_redis()
    }
}
