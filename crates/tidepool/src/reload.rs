//! Reload without restart (SIGHUP and the console's `RELOAD`): the config file is read and
//! validated again, everything that can fail is built first (upstream targets, new pools, TLS
//! acceptors), and only then is anything swapped, so an invalid file changes nothing.
//!
//! What a reload applies, from the next use on: databases added (reachable at once), removed
//! (drain: sessions already in keep their pool until they end; new logins get "does not exist")
//! or changed (pool size up or down through [`crate::pool::Pool::update`], timeouts, limits; a
//! changed upstream URL, TLS or role list gets fresh pools while the old ones drain), users and
//! passwords, API keys (config and key file), every `[server]` / `[http]` limit and timeout read
//! per session or request, and the TLS certificate pairs of the wire and HTTP listeners (new
//! handshakes use the new pair). What needs a restart is listed by [`restart_only`] and logged.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use prometheus_client::registry::Registry;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::app::{App, Database, Upstream};
use crate::config::{Config, DatabaseConfig, UpstreamUrl};
use crate::db_metrics::DbMetrics;
use crate::pool::{Pool, PoolSettings};
use crate::upstream::UpstreamTarget;

/// What a reload did, for the log and the console.
#[derive(Debug, Default)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Changed settings that keep their old value until a restart.
    pub need_restart: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file to reload (tidepool was not started from one)")]
    NoFile,
    #[error("{0}")]
    Invalid(String),
}

/// The pool settings of a database's own pool.
pub fn own_settings(db: &DatabaseConfig) -> PoolSettings {
    PoolSettings {
        name: db.name.clone(),
        size: db.own_pool_size(),
        min_idle: db.min_idle,
        timeout: db.pool_timeout,
        idle_timeout: db.idle_timeout,
        max_lifetime: db.max_lifetime,
    }
}

/// The database config without what a running pool can take on (sizes, timeouts, limits): two
/// configs equal here reach the same upstream the same way, so their pools can be kept.
fn upstream_identity(db: &DatabaseConfig) -> String {
    let mut c = serde_json::to_value(db).unwrap_or_default();
    if let Some(m) = c.as_object_mut() {
        for k in [
            "pool_size",
            "min_idle",
            "pool_timeout",
            "idle_timeout",
            "max_lifetime",
            "max_client_conn",
            "max_message_size",
            "max_prepared_statements",
            "reset_every_transaction",
            "pool_mode",
        ] {
            m.remove(k);
        }
        if let Some(roles) = m.get_mut("roles").and_then(|r| r.as_array_mut()) {
            roles.iter_mut().filter_map(|r| r.as_object_mut()).for_each(|r| {
                r.remove("pool_size");
            });
        }
    }
    c.to_string()
}

/// Builds the run-time database for `db`. With `previous` (a reload), its counters are shared
/// and, when the upstream is the same, its pools are kept and resized. New pools count into the
/// name's registered series (`metrics`, from the [`MetricsBook`](crate::db_metrics::MetricsBook); `registry` takes new roles'),
/// so a database changed, or removed and added back, keeps reporting under the same series.
#[allow(clippy::too_many_arguments)]
pub fn build_database(
    db: &DatabaseConfig,
    metrics: &DbMetrics,
    registry: &mut Registry,
    tracker: &TaskTracker,
    families: &crate::stats::Families,
    previous: Option<&Database>,
    cluster: Option<&crate::cluster::Cluster>,
) -> anyhow::Result<Database> {
    let url = UpstreamUrl::parse(&db.url).map_err(|e| anyhow::anyhow!("database {}: {e}", db.name))?;
    let upstream_user = url.user.clone();
    if let Some(prev) = previous.filter(|p| upstream_identity(&p.config) == upstream_identity(db)) {
        prev.pool.update(own_settings(db));
        for role in &db.roles {
            if let Some(rp) = prev.roles.get(&role.name) {
                rp.pool.update(PoolSettings { size: role.pool_size, ..own_settings(db) }.named(&rp.pool));
            }
        }
        prev.pins.set_max(db.max_pinned, db.own_pool_size());
        return Ok(Database { config: db.clone(), pool: prev.pool.clone(), roles: prev.roles.clone(), ..shared(prev, upstream_user, true) });
    }
    let roles = crate::target::role_pools(db, &url, tracker, metrics, registry, cluster)?;
    let target = UpstreamTarget::from_config(url, db).map_err(|e| anyhow::anyhow!("database {}: upstream TLS: {e}", db.name))?;
    let upstream = Upstream { target, tracker: tracker.clone(), servers: Default::default() };
    let settings = own_settings(db);
    let budget = cluster.map(|c| c.budget(&settings.name, settings.size));
    let pool = Pool::with_budget(settings, upstream, metrics.pool.clone(), budget);
    // The shared LISTEN connection belongs to the pool it leases from.
    let listener = crate::listen::Listener::new(pool.clone(), tracker.clone(), metrics);
    let base = match previous {
        Some(prev) => {
            prev.pins.set_max(db.max_pinned, db.own_pool_size());
            shared(prev, upstream_user, prev.config.url == db.url)
        }
        None => Database {
            pins: crate::pins::Pins::new(db.max_pinned, db.own_pool_size(), metrics.pinned.clone()),
            listener: listener.clone(),
            config: db.clone(),
            pool: pool.clone(),
            upstream_user,
            roles: HashMap::new(),
            clients: Default::default(),
            xacts: Default::default(),
            disabled: Default::default(),
            paused_predecessors: Default::default(),
            defaults: Default::default(),
            validated: Default::default(),
            last_params: Default::default(),
            traffic: crate::stats::DbTraffic::new(families, &db.name),
        },
    };
    Ok(Database { config: db.clone(), pool, roles, listener, ..base })
}

impl PoolSettings {
    /// These settings under the name of `pool`.
    fn named<M: crate::pool::Manager>(self, pool: &Pool<M>) -> PoolSettings {
        PoolSettings { name: pool.settings().name, ..self }
    }
}

/// A database sharing `prev`'s counters (client slots, transactions, traffic, DISABLE).
/// The server defaults and validated parameters are kept when the upstream URL is the same (so
/// logins to a paused database need no server); a new URL learns them again.
fn shared(prev: &Database, upstream_user: String, same_url: bool) -> Database {
    Database {
        config: prev.config.clone(),
        pool: prev.pool.clone(),
        upstream_user,
        roles: prev.roles.clone(),
        pins: prev.pins.clone(),
        listener: prev.listener.clone(),
        clients: prev.clients.clone(),
        xacts: prev.xacts.clone(),
        disabled: prev.disabled.clone(),
        paused_predecessors: Mutex::new(prev.paused_predecessors.lock().clone()),
        defaults: Mutex::new(if same_url { prev.defaults.lock().clone() } else { None }),
        validated: Mutex::new(if same_url { prev.validated.lock().clone() } else { Default::default() }),
        last_params: Mutex::new(prev.last_params.lock().clone()),
        traffic: prev.traffic.clone(),
    }
}

/// The wire and HTTP listeners' TLS acceptors (`None` where no pair is configured).
pub fn tls_acceptors(config: &Config) -> anyhow::Result<(Option<TlsAcceptor>, Option<TlsAcceptor>)> {
    let pg = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(c), Some(k)) => Some(TlsAcceptor::from(crate::net::server_tls_config(c, k, &[])?)),
        _ => None,
    };
    let http = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(c), Some(k)) => {
            Some(TlsAcceptor::from(crate::net::server_tls_config(c, k, &[b"h2", b"http/1.1"]).map_err(|e| anyhow::anyhow!("[http] TLS: {e}"))?))
        }
        _ => None,
    };
    Ok((pg, http))
}

/// `[server]` keys a reload does not apply (the console's `SHOW CONFIG` says `changeable no`).
/// TLS on/off (`tls_cert` set or not) also needs a restart, a new pair does not.
pub const RESTART_ONLY_SERVER_KEYS: [&str; 13] = [
    "pg_listen",
    "http_listen",
    "admin_listen",
    "worker_threads",
    "log_format",
    "log_level",
    "max_preauth_connections",
    "auth_secret",
    "auth_failure_threshold",
    "auth_failure_delay",
    "auth_failure_max_delay",
    "auth_failure_window",
    "auth_throttle_entries",
];

/// Settings that differ between `old` and `new` but only take effect at a restart.
pub fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let checks: [(&'static str, bool); 16] = [
        ("server.pg_listen", o.pg_listen != n.pg_listen),
        ("server.http_listen", o.http_listen != n.http_listen),
        ("server.admin_listen", o.admin_listen != n.admin_listen),
        ("server.worker_threads", o.worker_threads != n.worker_threads),
        ("server.log_format", json(&o.log_format) != json(&n.log_format)),
        ("server.log_level", o.log_level != n.log_level),
        ("server.max_preauth_connections", o.max_preauth_connections != n.max_preauth_connections),
        ("server.auth_secret", o.auth_secret != n.auth_secret),
        ("server.auth_failure_threshold", o.auth_failure_threshold != n.auth_failure_threshold),
        ("server.auth_failure_delay", o.auth_failure_delay != n.auth_failure_delay),
        ("server.auth_failure_max_delay", o.auth_failure_max_delay != n.auth_failure_max_delay),
        ("server.auth_failure_window", o.auth_failure_window != n.auth_failure_window),
        ("server.auth_throttle_entries", o.auth_throttle_entries != n.auth_throttle_entries),
        ("server.tls_cert (turning wire TLS on or off)", o.tls_cert.is_some() != n.tls_cert.is_some()),
        ("http.tls_cert (turning HTTPS on or off)", old.http.tls_cert.is_some() != new.http.tls_cert.is_some()),
        ("http.max_preauth_connections", old.http.max_preauth_connections != new.http.max_preauth_connections),
    ];
    let mut out: Vec<&'static str> = checks.into_iter().filter(|c| c.1).map(|c| c.0).collect();
    if json(&old.cache) != json(&new.cache) {
        out.push("[cache]");
    }
    out
}

/// A config value's serialized form, for comparisons.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Re-reads the file tidepool was started from (environment overrides applied as at start) and
/// applies it; see [`apply`].
pub async fn reload(app: &App) -> Result<Summary, ReloadError> {
    let path = app.config_path.lock().clone().ok_or(ReloadError::NoFile)?;
    let loaded = Config::load(&path, std::env::vars());
    let result = match loaded {
        Ok(config) => apply(app, config).await,
        Err(e) => Err(ReloadError::Invalid(format!("{}: {e}", path.display()))),
    };
    match &result {
        Ok(s) => {
            tracing::info!(added = ?s.added, removed = ?s.removed, changed = ?s.changed, "configuration reloaded");
            if !s.need_restart.is_empty() {
                tracing::warn!(settings = ?s.need_restart, "changed settings need a restart to take effect; the old values stay until then");
            }
        }
        Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration stays"),
    }
    result
}

/// Applies a validated config to the running app: builds, then swaps (all or nothing).
pub async fn apply(app: &App, config: Config) -> Result<Summary, ReloadError> {
    let _one = app.reloading.lock().await;
    config.validate().map_err(|e| ReloadError::Invalid(e.to_string()))?;
    let old = app.config();
    let invalid = |e: anyhow::Error| ReloadError::Invalid(e.to_string());
    let (pg_tls, http_tls) = tls_acceptors(&config).map_err(invalid)?;
    let mut summary = Summary { need_restart: restart_only(&old, &config), ..Summary::default() };

    // Build phase: nothing running is touched except resizing kept pools, done last below.
    let current = app.databases.read().clone();
    let mut built: HashMap<String, Database> = HashMap::new();
    let mut kept_resizes: Vec<&DatabaseConfig> = Vec::new();
    {
        let mut registry = app.registry.lock();
        let mut book = app.db_metrics.lock();
        for db in &config.databases {
            let metrics = book.get(&db.name, &mut registry);
            let previous = match current.get(&db.name) {
                Some(prev) if upstream_identity(&prev.config) == upstream_identity(db) => {
                    kept_resizes.push(db);
                    continue;
                }
                Some(prev) => {
                    summary.changed.push(db.name.clone());
                    Some(&**prev)
                }
                None => None,
            };
            let d = build_database(db, &metrics, &mut registry, &app.tracker, &app.traffic, previous, app.cluster.as_deref()).map_err(invalid)?;
            built.insert(db.name.clone(), d);
        }
    }

    // Swap phase.
    for db in kept_resizes {
        let prev = &current[&db.name];
        if json(&prev.config) != json(db) {
            summary.changed.push(db.name.clone());
        }
        // The same upstream: the pools are kept (no new metrics are taken).
        let mut registry = app.registry.lock();
        let metrics = app.db_metrics.lock().get(&db.name, &mut registry);
        let d = build_database(db, &metrics, &mut registry, &app.tracker, &app.traffic, Some(prev), app.cluster.as_deref()).map_err(invalid)?;
        built.insert(db.name.clone(), d);
    }
    let mut next: HashMap<String, Arc<Database>> = HashMap::new();
    for (name, d) in built {
        if !current.contains_key(&name) {
            summary.added.push(name.clone());
        }
        next.insert(name, Arc::new(d));
    }
    summary.removed = current.keys().filter(|n| !next.contains_key(*n)).cloned().collect();
    summary.added.sort();
    summary.removed.sort();
    summary.changed.sort();
    app.users.reload(&config);
    app.api_keys.reload(&config);
    {
        // Turning TLS on or off needs a restart; a new pair for a listener that has TLS applies.
        let mut pg = app.pg_tls.write();
        if pg.is_some() && pg_tls.is_some() {
            *pg = pg_tls;
        }
        let mut http = app.http_tls.write();
        if http.is_some() && http_tls.is_some() {
            *http = http_tls;
        }
    }
    for name in summary.removed.iter().chain(&summary.changed) {
        // Replaced or removed pools drain: their connections close as they are returned.
        let (Some(old), Some(new)) = (current.get(name), next.get(name)) else { continue };
        if !old.pool.same_as(&new.pool) {
            old.pools().for_each(|p| p.reconnect());
            if old.pool.is_paused() {
                // A paused database stays paused across the reload; RESUME lifts both.
                new.pools().for_each(|p| drop(p.pause()));
                new.paused_predecessors.lock().extend(old.pools().cloned());
            }
        }
    }
    *app.databases.write() = next;
    *app.config.write() = Arc::new(config);
    Ok(summary)
}
