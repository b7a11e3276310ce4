//! The `[cluster]` section: several tidepool nodes sharing one Redis/Valkey (membership, one
//! connection budget per database, cancels forwarded between nodes). Unset `redis_url` = no
//! cluster: every node is alone and `pool_size` is per node. See docs/deploy.md.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://…` for TLS, verified against the
    /// system trust store or `SSL_CERT_FILE`) of the Redis/Valkey the nodes share. None: no
    /// cluster. Set: `pool_size` of every database is the limit over all live nodes together.
    pub redis_url: Option<String>,
    /// This node's name in the cluster (letters, digits, `-`, `_`, `.`; at most 64). Empty:
    /// generated at start (random, so a restarted node is a new member).
    pub node_id: String,
    /// `host:port` at which the other nodes reach this node's HTTP listener (interactive
    /// transactions are forwarded there). Empty: this node's transactions are not reachable
    /// from other nodes.
    pub advertise_addr: String,
    /// Shared secret that authenticates node-to-node HTTP requests (forwarded transactions).
    /// Empty: such requests are refused.
    pub secret: String,
    /// Prefix of every Redis key and channel of the cluster (several clusters can share a Redis).
    pub key_prefix: String,
    /// How long a node's membership and connection leases live without renewal: a node that
    /// dies frees its share of the budget within this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often a node renews its membership and leases (must be under a third of `lease_ttl`).
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Longest one Redis call may take; beyond it the node acts as if Redis were down.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            node_id: String::new(),
            advertise_addr: String::new(),
            secret: String::new(),
            key_prefix: "tidepool".into(),
            lease_ttl: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            redis_timeout: Duration::from_millis(500),
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.redis_url.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            super::cache_redis::check_redis_url("cluster", url)?;
        }
        let name_ok = |s: &str| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok(&self.node_id) {
            return Err(invalid("[cluster] node_id: at most 64 letters, digits, '-', '_' or '.'"));
        }
        if self.key_prefix.is_empty() || !name_ok(&self.key_prefix) {
            return Err(invalid("[cluster] key_prefix: 1 to 64 letters, digits, '-', '_' or '.'"));
        }
        if !self.advertise_addr.is_empty() && !self.advertise_addr.contains(':') {
            return Err(invalid("[cluster] advertise_addr must be host:port"));
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(600) {
            return Err(invalid("[cluster] lease_ttl must be within 1s..10m"));
        }
        if self.heartbeat.is_zero() || self.heartbeat * 3 > self.lease_ttl {
            return Err(invalid("[cluster] heartbeat must be positive and at most a third of lease_ttl"));
        }
        if self.redis_timeout.is_zero() || self.redis_timeout >= self.heartbeat {
            return Err(invalid("[cluster] redis_timeout must be positive and under heartbeat"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cluster: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_toml(&format!("[cluster]\n{cluster}\n"), Vec::new())
    }

    #[test]
    fn defaults_parsing_and_mistakes() {
        let c = load("").unwrap().cluster;
        assert!(!c.enabled());
        assert_eq!((c.lease_ttl, c.heartbeat), (Duration::from_secs(10), Duration::from_secs(2)));
        let c = load("redis_url = \"redis://127.0.0.1:7000\"\nnode_id = \"a-1\"\nlease_ttl = \"3s\"\nheartbeat = \"1s\"\nredis_timeout = \"100ms\"")
            .unwrap()
            .cluster;
        assert!(c.enabled());
        assert_eq!((c.node_id.as_str(), c.lease_ttl), ("a-1", Duration::from_secs(3)));
        let err = load("redis_url = \"http://u:hunter2@h\"").unwrap_err().to_string();
        assert!(err.contains("redis_url") && !err.contains("hunter2"), "{err}");
        for bad in [
            "node_id = \"a b\"",
            "key_prefix = \"\"",
            "lease_ttl = \"3s\"",
            "heartbeat = \"0s\"",
            "redis_timeout = \"5s\"",
            "advertise_addr = \"host\"",
            "bogus = 1",
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }
}
