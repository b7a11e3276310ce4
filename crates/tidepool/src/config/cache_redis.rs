//! `[cache]` keys of the Redis shared tier (`redis_*`): where Redis is, how long a call may take,
//! how many writes may wait, how long anything lives there. Unset `redis_url` = no shared tier.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The shared tier's settings; part of the `[cache]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisCacheConfig {
    /// `redis://[user:password@]host:port[/db]` (TLS, `rediss://`, is not built in: keep Redis on
    /// a private network). None: no shared tier, every node caches alone.
    pub redis_url: Option<String>,
    /// Longest a Redis read or write may take (a `get` is two round trips); beyond it the call is
    /// abandoned, counted, and the request goes on as a miss.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Longest one connection attempt may take.
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

impl Default for RedisCacheConfig {
    fn default() -> Self {
        RedisCacheConfig {
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_connect_timeout: Duration::from_secs(1),
            redis_queue: 1024,
            redis_max_ttl: Duration::from_secs(7 * 24 * 3600),
            redis_reconnect_max_delay: Duration::from_secs(5),
        }
    }
}

impl RedisCacheConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            // The message never repeats the URL: it may hold a password.
            redis::Client::open(url.as_str()).map_err(|_| invalid("[cache] redis_url is not a valid redis:// URL"))?;
        }
        if self.redis_timeout.is_zero() || self.redis_timeout > Duration::from_secs(10) {
            return Err(invalid("[cache] redis_timeout must be within (0, 10s]"));
        }
        if self.redis_connect_timeout.is_zero() || self.redis_connect_timeout > Duration::from_secs(60) {
            return Err(invalid("[cache] redis_connect_timeout must be within (0, 60s]"));
        }
        if self.redis_queue == 0 || self.redis_queue > 1 << 20 {
            return Err(invalid("[cache] redis_queue must be within 1..=1048576"));
        }
        if self.redis_max_ttl < Duration::from_secs(1) {
            return Err(invalid("[cache] redis_max_ttl must be at least 1s"));
        }
        if self.redis_reconnect_max_delay < Duration::from_millis(50) || self.redis_reconnect_max_delay > Duration::from_secs(300) {
            return Err(invalid("[cache] redis_reconnect_max_delay must be within 50ms..5m"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cache: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_toml(&format!("[cache]\n{cache}\n"), Vec::new())
    }

    #[test]
    fn defaults_and_parsing() {
        let c = load("").unwrap().cache;
        assert_eq!(c, RedisCacheConfig::default());
        assert_eq!((c.redis_url, c.redis_timeout), (None, Duration::from_millis(50)));
        let c = load("redis_url = \"redis://127.0.0.1:7000/2\"\nredis_timeout = \"20ms\"\nredis_queue = 8").unwrap().cache;
        assert_eq!((c.redis_url.as_deref(), c.redis_timeout, c.redis_queue), (Some("redis://127.0.0.1:7000/2"), Duration::from_millis(20), 8));
    }

    #[test]
    fn mistakes_are_refused_without_echoing_the_url() {
        let err = load("redis_url = \"http://u:hunter2@host\"").unwrap_err().to_string();
        assert!(err.contains("redis_url") && !err.contains("hunter2"), "{err}");
        for bad in ["redis_timeout = \"0s\"", "redis_queue = 0", "redis_max_ttl = \"10ms\"", "redis_reconnect_max_delay = \"1ms\"", "redis_bogus = 1"] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }
}
