//! Configuration as data: the TOML schema, defaults, `TIDEPOOL_…` environment overrides and
//! validation. Loading produces an immutable [`Config`]; nothing here is process-global.

mod cache;
mod cache_redis;
mod cluster;
mod dataproxy;
mod env;
mod http;
mod roles;
mod url;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tidepool_proto::auth::ScramVerifier;

pub use cache::CacheConfig;
pub use cluster::ClusterConfig;
pub use dataproxy::DataProxyConfig;
pub use http::HttpConfig;
pub use roles::{valid_role_name, RoleConfig};
pub use url::UpstreamUrl;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Parse(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub databases: Vec<DatabaseConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub dataproxy: DataProxyConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// Never offer TLS.
    Disable,
    /// Offer TLS when a certificate is configured; plaintext allowed.
    Allow,
    /// Refuse clients that do not use TLS.
    Require,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub pg_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// When set, the dashboard (`GET /` and `/api/stats` on `admin_listen`) asks for HTTP basic
    /// auth with this password (any user name). `/metrics` and `/healthz` stay open.
    pub dashboard_password: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_mode: ClientTlsMode,
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Iterations used when turning a plaintext `password` into a SCRAM verifier.
    pub scram_iterations: u32,
    /// Runtime worker threads; 0 = automatic (half the CPUs, at least one).
    pub worker_threads: usize,
    /// Close a Postgres-protocol client idle (between transactions) this long; 0 = never.
    #[serde(with = "humantime_serde")]
    pub client_idle_timeout: Duration,
    /// Close a client that holds a server inside a transaction without sending anything this
    /// long (SQLSTATE 25P03); 0 = never.
    #[serde(with = "humantime_serde")]
    pub idle_transaction_timeout: Duration,
    /// Most TCP connections that have not finished logging in, at once (beyond: 53300, closed).
    pub max_preauth_connections: usize,
    /// Startup parameters carried to servers (applied with `set_config`); any other one is
    /// refused with 42704 unless listed in `ignore_startup_parameters`.
    pub startup_parameters: Vec<String>,
    /// Startup parameters accepted and dropped (not carried to servers).
    pub ignore_startup_parameters: Vec<String>,
    /// Failed logins per (client IP, user) before further attempts are delayed; 0 = no throttle.
    pub auth_failure_threshold: u32,
    /// Delay of the first throttled attempt; each further failure doubles it.
    #[serde(with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// Longest delay (also kept below 3/4 of `login_timeout`); an attempt that would wait longer is
    /// refused (28P01) after this delay without its password being checked.
    #[serde(with = "humantime_serde")]
    pub auth_failure_max_delay: Duration,
    /// A (client IP, user) with no failed login for this long starts afresh.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// Most (client IP, user) pairs tracked by the throttle (clients choose these keys).
    pub auth_throttle_entries: usize,
    /// Secret that derives the decoy SCRAM salt shown for unknown users (HMAC-SHA256 of the user
    /// name). Unset: random per process, so an unknown user's salt changes on restart while a
    /// real user's does not; set it (16+ characters, same on every replica) to hide that too.
    pub auth_secret: Option<String>,
    /// `[[users]]` who may open the admin console (database `pgbouncer` or `tidepool` on the wire
    /// listener) and run every command there. Empty (default) with `stats_users` empty: no console.
    pub admin_users: Vec<String>,
    /// `[[users]]` who may open the admin console for its read-only `SHOW` commands.
    pub stats_users: Vec<String>,
}

/// Startup parameters a client may set by default: the ones drivers send and that only change
/// how this session formats or runs queries. Never `role`/`session_authorization`.
pub const DEFAULT_STARTUP_PARAMETERS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "standard_conforming_strings",
    "bytea_output",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "geqo",
    "jit",
    "work_mem",
];

impl ServerConfig {
    /// Worker threads to run with: the configured number, or half the CPUs (at least one). A
    /// proxy shares the machine with its clients and often the database; measured on 2 cores,
    /// one worker beat two by 1.4x (docs/benchmarks.md).
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            pg_listen: Some(SocketAddr::from(([127, 0, 0, 1], 6432))),
            http_listen: None,
            admin_listen: None,
            dashboard_password: None,
            tls_cert: None,
            tls_key: None,
            tls_mode: ClientTlsMode::Allow,
            login_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            scram_iterations: 4096,
            worker_threads: 0,
            client_idle_timeout: Duration::from_secs(3600),
            idle_transaction_timeout: Duration::from_secs(60),
            max_preauth_connections: 1000,
            startup_parameters: DEFAULT_STARTUP_PARAMETERS.iter().map(|s| (*s).to_owned()).collect(),
            ignore_startup_parameters: Vec::new(),
            auth_failure_threshold: 5,
            auth_failure_delay: Duration::from_millis(250),
            auth_failure_max_delay: Duration::from_secs(5),
            auth_failure_window: Duration::from_secs(15 * 60),
            auth_throttle_entries: 65_536,
            auth_secret: None,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Transaction,
    Session,
}

/// TLS towards the upstream server, libpq's `sslmode` values (see `upstream::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, else plaintext.
    Prefer,
    /// TLS always; the certificate is checked only when a CA is configured.
    Require,
    /// TLS; the certificate chain must lead to a trusted root (any host name).
    VerifyCa,
    /// TLS; trusted chain and the certificate must name the host connected to.
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "d::pool_size")]
    pub pool_size: usize,
    #[serde(default = "d::pool_mode")]
    pub pool_mode: PoolMode,
    #[serde(default)]
    pub min_idle: usize,
    #[serde(default = "d::pool_timeout", with = "humantime_serde")]
    pub pool_timeout: Duration,
    #[serde(default = "d::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "d::max_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
    #[serde(default = "d::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "d::max_client_conn")]
    pub max_client_conn: usize,
    #[serde(default = "d::max_message_size")]
    pub max_message_size: usize,
    #[serde(default = "d::max_prepared")]
    pub max_prepared_statements: usize,
    /// Reset (DISCARD ALL) every server connection when it comes back, whatever the client ran.
    /// The SQL classifier cannot see session state left by code it does not read (a function,
    /// trigger, operator or view the client defined calling `set_config`); with clients that do
    /// not trust each other, this closes that gap at the cost of a round trip per transaction and
    /// re-preparing statements.
    #[serde(default)]
    pub reset_every_transaction: bool,
    /// Most wire/WebSocket clients that may hold a server between transactions (temp tables, SQL
    /// `PREPARE`, session advisory locks, `WITH HOLD` cursors, dblink); unset: half the pool.
    #[serde(default)]
    pub max_pinned: Option<usize>,
    /// Most session settings (`SET name = …`) replayed per client in transaction mode.
    #[serde(default = "d::max_session_settings")]
    pub max_session_settings: usize,
    /// Most bytes of replayed setting names and values per client.
    #[serde(default = "d::max_session_settings_bytes")]
    pub max_session_settings_bytes: usize,
    /// Most `LISTEN` channels per client (served by the database's shared listener connection).
    #[serde(default = "d::max_listen_channels")]
    pub max_listen_channels: usize,
    #[serde(default = "d::upstream_tls")]
    pub upstream_tls: UpstreamTls,
    /// PEM file of CA certificates trusted for the upstream server (verify-ca/verify-full; it
    /// also makes prefer/require check the chain, as in libpq). Unset: the system trust store.
    #[serde(default)]
    pub upstream_tls_ca: Option<PathBuf>,
    /// Upstream roles API keys may be bound to (see `roles`).
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
}

mod d {
    use super::*;
    pub fn pool_size() -> usize {
        20
    }
    pub fn pool_mode() -> PoolMode {
        PoolMode::Transaction
    }
    pub fn pool_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn max_lifetime() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_client_conn() -> usize {
        10_000
    }
    pub fn max_message_size() -> usize {
        64 << 20
    }
    pub fn max_prepared() -> usize {
        1000
    }
    pub fn max_session_settings() -> usize {
        64
    }
    pub fn max_session_settings_bytes() -> usize {
        16 * 1024
    }
    pub fn max_listen_channels() -> usize {
        256
    }
    pub fn upstream_tls() -> UpstreamTls {
        UpstreamTls::Prefer
    }
    pub fn max_body() -> usize {
        10 << 20
    }
    pub fn query_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn ws_idle() -> Duration {
        Duration::from_secs(300)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// How clients prove they are this user; default `scram-sha-256`.
    #[serde(default)]
    pub auth: ClientAuth,
    pub password: Option<String>,
    pub scram_verifier: Option<String>,
    /// Databases this user may use; empty means all.
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ClientAuth {
    #[default]
    #[serde(rename = "scram-sha-256")]
    Scram,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "trust")]
    Trust,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub sha256: String,
    pub database: String,
    #[serde(default)]
    pub label: String,
    /// Upstream role (a `[[databases.roles]]` name of `database`) the key's requests run as;
    /// unset: the database's own upstream user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Config {
    /// Reads a file and applies `TIDEPOOL_…` overrides from `env`.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, env)
    }

    pub fn from_toml(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        env::apply_overrides(&mut value, env)?;
        let config: Config = value.try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.dataproxy.validate().map_err(invalid)?;
        if self.server.dashboard_password.as_deref() == Some("") {
            return Err(invalid("server.dashboard_password must not be empty (omit it to leave the dashboard open)"));
        }
        if self.server.max_preauth_connections == 0 {
            return Err(invalid("server.max_preauth_connections must be at least 1"));
        }
        for p in self.server.startup_parameters.iter().chain(&self.server.ignore_startup_parameters) {
            let forbidden = ["user", "database", "options", "replication", "role", "session_authorization"];
            if p.is_empty() || forbidden.contains(&p.to_ascii_lowercase().as_str()) || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
                return Err(invalid(format!("server.startup_parameters: {p:?} cannot be carried")));
            }
        }
        let mut names = HashSet::new();
        for db in &self.databases {
            if db.name.is_empty() || !names.insert(db.name.as_str()) {
                return Err(invalid(format!("database name {:?} is empty or duplicated", db.name)));
            }
            let url = UpstreamUrl::parse(&db.url).map_err(|e| invalid(format!("database {:?}: url: {e}", db.name)))?;
            // Builds the TLS client config once so missing or unreadable roots for verify-ca /
            // verify-full fail the load, not the first connection.
            crate::upstream::TlsPolicy::resolve(&url, db.upstream_tls, db.upstream_tls_ca.as_deref())
                .and_then(|p| p.client_config())
                .map_err(|e| invalid(format!("database {:?}: upstream TLS: {e}", db.name)))?;
            if db.pool_size == 0 {
                return Err(invalid(format!("database {:?}: pool_size must be at least 1", db.name)));
            }
            if db.min_idle > db.pool_size {
                return Err(invalid(format!("database {:?}: min_idle exceeds pool_size", db.name)));
            }
            roles::validate(db, &url)?;
            if db.max_pinned.is_some_and(|m| m > db.pool_size) {
                return Err(invalid(format!("database {:?}: max_pinned exceeds pool_size", db.name)));
            }
            if db.max_session_settings > 10_000 || db.max_session_settings_bytes > 16 << 20 || db.max_listen_channels > 100_000 {
                return Err(invalid(format!(
                    "database {:?}: max_session_settings (≤ 10000), max_session_settings_bytes (≤ 16 MiB) or max_listen_channels (≤ 100000) too large",
                    db.name
                )));
            }
            if db.max_message_size < 1024 || db.max_message_size > tidepool_proto::framing::MAX_MESSAGE_CEILING {
                return Err(invalid(format!("database {:?}: max_message_size must be within 1 KiB..1 GiB", db.name)));
            }
        }
        let mut users = HashSet::new();
        for u in &self.users {
            if u.name.is_empty() || !users.insert(u.name.as_str()) {
                return Err(invalid(format!("user name {:?} is empty or duplicated", u.name)));
            }
            match (&u.password, &u.scram_verifier) {
                (None, None) if u.auth == ClientAuth::Trust => {}
                (_, Some(_)) if u.auth == ClientAuth::Md5 => return Err(invalid(format!("user {:?}: md5 needs a plaintext password", u.name))),
                (Some(_), None) => {}
                (None, Some(v)) if ScramVerifier::parse(v).is_some() => {}
                (None, Some(_)) => return Err(invalid(format!("user {:?}: scram_verifier is malformed", u.name))),
                _ => return Err(invalid(format!("user {:?}: set exactly one of password, scram_verifier", u.name))),
            }
            for d in &u.databases {
                if !names.contains(d.as_str()) {
                    return Err(invalid(format!("user {:?}: unknown database {d:?}", u.name)));
                }
            }
        }
        for (key, list) in [("admin_users", &self.server.admin_users), ("stats_users", &self.server.stats_users)] {
            if let Some(u) = list.iter().find(|u| !users.contains(u.as_str())) {
                return Err(invalid(format!("[server] {key}: unknown user {u:?} (list names of [[users]])")));
            }
        }
        for k in &self.api_keys {
            if k.sha256.len() != 64 || hex::decode(&k.sha256).is_err() {
                return Err(invalid("api_keys: sha256 must be 64 hex characters"));
            }
            let Some(db) = self.database(&k.database) else {
                return Err(invalid(format!("api_keys: unknown database {:?}", k.database)));
            };
            if let Some(role) = k.role.as_deref().filter(|r| db.role(r).is_none()) {
                return Err(invalid(format!("api_keys: database {:?} has no role {role:?}", k.database)));
            }
        }
        let pairs = [("server", &self.server.tls_cert, &self.server.tls_key), ("http", &self.http.tls_cert, &self.http.tls_key)];
        for (section, cert, key) in pairs {
            if cert.is_some() != key.is_some() {
                return Err(invalid(format!("[{section}] tls_cert and tls_key must be set together")));
            }
        }
        if self.server.tls_mode == ClientTlsMode::Require && self.server.tls_cert.is_none() {
            return Err(invalid("[server] tls_mode = \"require\" needs tls_cert and tls_key"));
        }
        let h = &self.http;
        if h.header_read_timeout.is_zero() || h.body_read_timeout.is_zero() {
            return Err(invalid("[http] header_read_timeout and body_read_timeout must be positive"));
        }
        if h.max_header_size < 8192 || h.max_header_size > (16 << 20) {
            return Err(invalid("[http] max_header_size must be within 8 KiB..16 MiB"));
        }
        if h.http2_max_concurrent_streams == 0 || h.max_preauth_connections == 0 {
            return Err(invalid("[http] http2_max_concurrent_streams and max_preauth_connections must be positive"));
        }
        if h.ws_max_login_bytes < 1024 {
            return Err(invalid("[http] ws_max_login_bytes must be at least 1024"));
        }
        if !(h.itx_max_per_key_share > 0.0 && h.itx_max_per_key_share <= 1.0) {
            return Err(invalid("[http] itx_max_per_key_share must be within (0, 1]"));
        }
        if !(h.itx_max_share > 0.0 && h.itx_max_share <= 1.0) {
            return Err(invalid("[http] itx_max_share must be within (0, 1]"));
        }
        if !(h.itx_max_share > 0.0 && h.itx_max_share <= 1.0) {
            return Err(invalid("[http] itx_max_share must be within (0, 1]"));
        }
        if self.server.scram_iterations == 0 {
            return Err(invalid("[server] scram_iterations must be positive"));
        }
        if self.server.auth_failure_threshold > 0 && self.server.auth_throttle_entries == 0 {
            return Err(invalid("[server] auth_throttle_entries must be positive (or auth_failure_threshold = 0 to disable the throttle)"));
        }
        if self.server.auth_failure_delay > self.server.auth_failure_max_delay {
            return Err(invalid("[server] auth_failure_delay must not exceed auth_failure_max_delay"));
        }
        if self.server.auth_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(invalid("[server] auth_secret must be at least 16 characters"));
        }
        self.cluster.validate()?;
        self.cache.validate()
    }

    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests;
