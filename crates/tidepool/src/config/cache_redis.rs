//! `[cache]` keys of the Redis shared tier (`redis_*`): where Redis is, how long a call may take,
//! how many writes may wait, how long anything lives there. Unset `redis_url` = no shared tier.
//! The fields live in [`CacheConfig`] (one `[cache]` table); this file validates them.

use std::time::Duration;

use super::{invalid, CacheConfig, ConfigError};

impl CacheConfig {
    /// Checks the `redis_*` keys (called by [`CacheConfig::validate`]).
    pub(super) fn validate_redis(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            check_redis_url("cache", url)?;
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

/// `[section] redis_url`: `redis://` or `rediss://` (TLS; the server's certificate is verified
/// against the system trust store, or the file named by `SSL_CERT_FILE`), `valkey(s)://`, or a
/// Unix socket. TLS without verification (`#insecure`) is refused here, at load, as is a URL the
/// Redis client cannot use. The messages never repeat the URL: it may hold a password.
pub(super) fn check_redis_url(section: &str, url: &str) -> Result<(), ConfigError> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().map_err(|_| invalid(format!("[{section}] redis_url is not a valid redis:// or rediss:// URL")))?;
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err(invalid(format!(
            "[{section}] redis_url: rediss:// with #insecure (no certificate verification) is not supported; \
             make the server's CA trusted (system store or SSL_CERT_FILE) and drop #insecure"
        )));
    }
    Ok(())
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
        assert_eq!((c.redis_url, c.redis_timeout), (None, Duration::from_millis(50)));
        let c = load("redis_url = \"redis://127.0.0.1:7000/2\"\nredis_timeout = \"20ms\"\nredis_queue = 8").unwrap().cache;
        assert_eq!((c.redis_url.as_deref(), c.redis_timeout, c.redis_queue), (Some("redis://127.0.0.1:7000/2"), Duration::from_millis(20), 8));
    }

    #[test]
    fn the_url_can_come_from_the_environment() {
        let env = vec![
            ("TIDEPOOL_CACHE__REDIS_URL".to_owned(), "redis://:s3cret@10.0.0.5:6380/1".to_owned()),
            ("TIDEPOOL_CACHE__REDIS_TIMEOUT".to_owned(), "20ms".to_owned()),
        ];
        let c = crate::config::Config::from_toml("", env).unwrap().cache;
        assert_eq!((c.redis_url.as_deref(), c.redis_timeout), (Some("redis://:s3cret@10.0.0.5:6380/1"), Duration::from_millis(20)));
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

#[cfg(test)]
mod tls_tests {
    use crate::config::Config;

    /// `rediss://` loads in both sections (the client is built with TLS); `#insecure` and a URL
    /// the client cannot use are refused at load, without echoing the password.
    #[test]
    fn rediss_urls_load_and_insecure_ones_are_refused() {
        for section in ["cache", "cluster"] {
            let load = |url: &str| Config::from_toml(&format!("[{section}]\nredis_url = \"{url}\"\n"), Vec::new());
            for ok in ["rediss://redis.internal:6380/0", "rediss://:hunter2@10.0.0.9:6380", "valkeys://u:p@cache.example:6380/1", "redis://h:6379"] {
                assert!(load(ok).is_ok(), "[{section}] {ok}: {:?}", load(ok).err());
            }
            let err = load("rediss://:hunter2@redis.internal:6380/#insecure").unwrap_err().to_string();
            assert!(err.contains(&format!("[{section}] redis_url")) && err.contains("#insecure") && !err.contains("hunter2"), "{err}");
            let err = load("rediss://:hunter2@redis.internal:6380/#other").unwrap_err().to_string();
            assert!(err.contains("rediss://") && !err.contains("hunter2"), "{err}");
        }
    }
}
