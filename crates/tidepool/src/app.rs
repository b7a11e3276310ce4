//! The running application: one [`Database`] (pool + upstream target + client counters) per
//! configured database, the user store, cancel keys, metrics and the shutdown signal. Built from a
//! validated [`Config`]; front ends receive an `Arc<App>` and lease from its pools.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cancel::CancelRegistry;
use crate::config::{Config, DatabaseConfig};
use crate::pool::{Lease, Manager, Pool, PoolError};
use crate::target::RolePool;
use crate::upstream::{self, ServerConn, UpstreamError, UpstreamTarget};
use crate::users::UserStore;

/// Opens upstream connections for one database's pool.
pub struct Upstream {
    pub target: UpstreamTarget,
    /// The application's task tracker: work spawned on behalf of a connection (cancel requests)
    /// is waited for on shutdown.
    pub tracker: TaskTracker,
    /// Its open connections, for `SHOW SERVERS`.
    pub servers: crate::servers::ServerList,
}

impl Manager for Upstream {
    /// Boxed: a connection moves (idle list, lease, session) on every transaction; a pointer
    /// is cheaper to move than the connection.
    type Conn = Box<ServerConn>;
    type Error = UpstreamError;
    async fn connect(&self) -> Result<Box<ServerConn>, UpstreamError> {
        let mut conn = upstream::connect(&self.target).await?;
        conn.info = Some(self.servers.register(&conn));
        Ok(Box::new(conn))
    }
    fn is_transient(&self, e: &UpstreamError) -> bool {
        e.is_transient()
    }
    fn is_healthy(&self, c: &Box<ServerConn>) -> bool {
        c.idle_ok()
    }
}

pub type ServerLease = Lease<Upstream>;

/// Most distinct startup (name, value) pairs remembered per database as validated.
const VALIDATED_PARAMS_MAX: usize = 4096;
pub type UpstreamPoolError = PoolError<UpstreamError>;

/// ParameterStatus (name, value) pairs a server reported.
pub type Reports = Vec<(String, String)>;

/// One configured database at run time.
pub struct Database {
    pub config: DatabaseConfig,
    /// The database's own pool (its upstream user), sized `pool_size` minus its roles' pools.
    pub pool: Pool<Upstream>,
    /// The upstream user the own pool logs in as.
    pub upstream_user: String,
    /// Pools of the `[[databases.roles]]` API keys may be bound to, by role name.
    pub roles: HashMap<String, Arc<RolePool>>,
    /// Shared with the instance a reload replaces this one by, as are `xacts` and `traffic`.
    pub clients: Arc<AtomicUsize>,
    /// Transaction-mode wire transactions completed (the console's `total_xact_count`).
    pub xacts: Arc<std::sync::atomic::AtomicU64>,
    /// `DISABLE db`: new client connections are refused until `ENABLE db`.
    pub disabled: Arc<std::sync::atomic::AtomicBool>,
    /// Paused pools a reload replaced (sessions from before still lease from them): `RESUME`
    /// lifts their pause too.
    pub paused_predecessors: Mutex<Vec<Pool<Upstream>>>,
    /// ParameterStatus values of a pristine server connection, learned on first use.
    pub defaults: Mutex<Option<Vec<(String, String)>>>,
    /// Startup parameters already validated on a server: (name, value) → the ParameterStatus
    /// values applying it produced. Lets logins skip a lease for parameter sets seen before.
    pub validated: Mutex<HashMap<(String, String), Reports>>,
    /// The startup parameters of the latest login, shared by every client that sent equal ones
    /// (an idle client then holds no map of its own; `frontend/pg/session.rs`).
    pub last_params: Mutex<Option<Arc<HashMap<String, String>>>>,
    /// Request/transaction latency, outcomes and bytes per front end (`crate::stats`).
    pub traffic: Arc<crate::stats::DbTraffic>,
    /// Clients keeping their server between transactions (`max_pinned`, `crate::pins`).
    pub pins: Arc<crate::pins::Pins>,
    /// The shared `LISTEN` connection of the database's own pool (`crate::listen`).
    pub listener: Arc<crate::listen::Listener>,
}

/// Counts a connected client against `max_client_conn`; decrements on drop.
pub struct ClientSlot(Arc<Database>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Database {
    pub fn try_add_client(self: &Arc<Self>) -> Option<ClientSlot> {
        let n = self.clients.fetch_add(1, Ordering::Relaxed);
        if n >= self.config.max_client_conn {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ClientSlot(self.clone()))
    }

    /// Leases a connection from the database's own pool (see [`lease_from`]).
    pub async fn lease_with(&self, want: &HashMap<String, String>) -> Result<ServerLease, LeaseError> {
        lease_from(&self.pool, want, self.config.reset_every_transaction).await
    }

    /// An idle connection of the database's own pool, at once, if a permit is free (see
    /// [`Pool::try_get`]); its parameters are not synced yet ([`Database::prepare_lease`]).
    pub fn try_lease(&self) -> Option<ServerLease> {
        self.pool.try_get()
    }

    /// Readies a connection from [`Database::try_lease`] for a client with session parameters
    /// `want`, as [`Database::lease_with`] does.
    pub async fn prepare_lease(&self, lease: ServerLease, want: &HashMap<String, String>) -> Result<ServerLease, LeaseError> {
        prepare(lease, want, self.config.reset_every_transaction).await
    }

    /// Every pool of the database: its own and its roles'.
    pub fn pools(&self) -> impl Iterator<Item = &Pool<Upstream>> {
        std::iter::once(&self.pool).chain(self.roles.values().map(|r| &r.pool))
    }

    /// Closes every pool of the database (shutdown).
    pub fn close_pools(&self) {
        self.pools().for_each(Pool::close);
    }

    /// The ParameterStatus values a client with startup parameters `session` should see: the
    /// server defaults overlaid with what applying its parameters reports. Parameters are
    /// validated on a real server the first time a (name, value) pair is seen, then cached, so
    /// later logins need no free connection.
    pub async fn greeting_params(&self, session: &HashMap<String, String>) -> Result<HashMap<String, String>, LeaseError> {
        let mut status: HashMap<String, String> = self.server_defaults().await?.into_iter().collect();
        let unknown: Vec<(String, String)> = {
            let cache = self.validated.lock();
            session.iter().map(|(k, v)| (k.clone(), v.clone())).filter(|kv| kv.0 != "application_name" && !cache.contains_key(kv)).collect()
        };
        if !unknown.is_empty() {
            let lease = self.lease_with(session).await?;
            let defaults = status.clone();
            let reported: Vec<(String, String)> =
                lease.params.iter().filter(|(k, v)| defaults.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
            lease.release();
            let mut cache = self.validated.lock();
            // Bounded: clients choose these values.
            if cache.len() + unknown.len() > VALIDATED_PARAMS_MAX {
                cache.clear();
            }
            for kv in unknown {
                // Attribute each changed report to the parameter of the same name (case-insensitive).
                let mine = reported.iter().filter(|(k, _)| k.eq_ignore_ascii_case(&kv.0)).cloned().collect();
                cache.insert(kv, mine);
            }
        }
        let cache = self.validated.lock();
        for kv in session.iter().map(|(k, v)| (k.clone(), v.clone())) {
            if let Some(reports) = cache.get(&kv) {
                status.extend(reports.iter().cloned());
            }
        }
        if let Some(name) = session.get("application_name") {
            status.insert("application_name".into(), name.clone());
        }
        Ok(status)
    }

    /// Server defaults for ParameterStatus, from a connection whose parameters are reset.
    pub async fn server_defaults(&self) -> Result<Vec<(String, String)>, LeaseError> {
        if let Some(d) = self.defaults.lock().clone() {
            return Ok(d);
        }
        let lease = self.lease_with(&HashMap::new()).await?;
        let mut d: Vec<(String, String)> = lease.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        d.sort();
        lease.release();
        *self.defaults.lock() = Some(d.clone());
        Ok(d)
    }
}

/// Leases a connection from `pool` and brings its session parameters to exactly `want`
/// (`SET` what differs, `RESET` what another client left).
/// `reset_every_transaction` marks the lease dirty so check-in resets it whatever the client ran.
pub async fn lease_from(pool: &Pool<Upstream>, want: &HashMap<String, String>, reset_every_transaction: bool) -> Result<ServerLease, LeaseError> {
    prepare(pool.get().await?, want, reset_every_transaction).await
}

/// The second half of [`lease_from`]: brings a leased connection's parameters to `want`.
async fn prepare(mut lease: ServerLease, want: &HashMap<String, String>, reset_every_transaction: bool) -> Result<ServerLease, LeaseError> {
    match sync_params(&mut lease, want).await {
        Ok(()) => {
            lease.dirty |= reset_every_transaction;
            Ok(lease)
        }
        Err(UpstreamError::Db(e)) => {
            lease.release();
            Err(LeaseError::Params(e))
        }
        Err(e) => {
            lease.discard();
            Err(LeaseError::Upstream(e))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Pool(#[from] UpstreamPoolError),
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error("{}", .0.message())]
    Params(tidepool_proto::backend::ErrorFields),
}

/// Applies the parameter set `want` to a server connection: what differs is set and what another
/// client left is reset, all in one `SELECT set_config($1, $2, false), …` whose names and values
/// travel as protocol parameters (client text is never spliced into SQL). One statement is one
/// implicit transaction: on error nothing was applied.
pub async fn sync_params(conn: &mut ServerConn, want: &HashMap<String, String>) -> Result<(), UpstreamError> {
    // The usual case (no allocation, one lookup per name).
    if params_in_sync(conn, want) {
        return Ok(());
    }
    Box::pin(apply_params(conn, want)).await
}

/// True if `conn` carries exactly the session parameters `want` ([`sync_params`] has nothing to do).
pub fn params_in_sync(conn: &ServerConn, want: &HashMap<String, String>) -> bool {
    // Equal sizes and every wanted value present: nothing is stale either.
    conn.applied.len() == want.len() && want.iter().all(|(k, v)| conn.applied.get(k) == Some(v))
}

/// [`sync_params`] when something differs.
async fn apply_params(conn: &mut ServerConn, want: &HashMap<String, String>) -> Result<(), UpstreamError> {
    let mut changes: Vec<(&str, Option<&str>)> = Vec::new();
    for (k, v) in want {
        if conn.applied.get(k) != Some(v) {
            changes.push((k, Some(v)));
        }
    }
    let stale: Vec<String> = conn.applied.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
    // A NULL value makes set_config reset the parameter to its default.
    changes.extend(stale.iter().map(|k| (k.as_str(), None)));
    if changes.is_empty() {
        return Ok(());
    }
    conn.set_config(&changes).await?;
    conn.applied = want.clone();
    Ok(())
}

pub struct App {
    /// The running configuration; read it with [`App::config`] (a reload swaps it).
    pub config: parking_lot::RwLock<Arc<Config>>,
    /// Read with [`App::database`] / [`App::databases`] (a reload swaps entries).
    pub databases: parking_lot::RwLock<HashMap<String, Arc<Database>>>,
    pub users: UserStore,
    pub cancels: Arc<CancelRegistry>,
    pub registry: Mutex<Registry>,
    pub metrics: FrontMetrics,
    /// Cancelled when draining starts: listeners stop accepting, idle sessions end.
    pub shutdown: CancellationToken,
    /// Cancelled by the console's `SHUTDOWN`: `tidepool serve` then drains as on SIGTERM.
    pub stop_requested: CancellationToken,
    /// Cancelled when draining is over: the admin listener (which reports 503 meanwhile) stops.
    pub stopped: CancellationToken,
    pub tracker: TaskTracker,
    /// The wire listener's TLS acceptor ([`App::pg_tls`]); a reload swaps it.
    pub pg_tls: parking_lot::RwLock<Option<tokio_rustls::TlsAcceptor>>,
    /// The HTTP listener's TLS acceptor ([`App::http_tls`]); a reload swaps it.
    pub http_tls: parking_lot::RwLock<Option<tokio_rustls::TlsAcceptor>>,
    /// The file `serve` read the config from (what SIGHUP and RELOAD re-read), if any.
    pub config_path: Mutex<Option<std::path::PathBuf>>,
    /// Metric families new databases register into on reload.
    pub traffic: crate::stats::Families,
    /// Each database name's registered metrics (a database changed, or removed and added back,
    /// by a reload keeps counting into them).
    pub db_metrics: Mutex<crate::db_metrics::MetricsBook>,
    /// One reload at a time.
    pub reloading: tokio::sync::Mutex<()>,
    /// Per-period averages for the console (`crate::stats::period`).
    pub stats_period: crate::stats::period::StatsPeriod,
    pub api_keys: crate::keys::ApiKeys,
    pub itx: crate::frontend::http::prisma::ItxRegistry,
    /// Prisma 5/6 DataProxy front end: uploaded schemas, compiler threads, plan cache.
    pub dataproxy: crate::frontend::http::dataproxy::DataProxy,
    /// Slots for TCP connections that have not finished logging in (`max_preauth_connections`).
    pub preauth_pg: Arc<tokio::sync::Semaphore>,
    /// The query cache (Prisma API and Neon `/sql`).
    pub cache: crate::cache::Cache,
    /// Live client sessions (the admin console lists them).
    pub clients: crate::clients::ClientRegistry,
    /// Membership of a `[cluster]` (None: this node is alone).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Front-end counters.
#[derive(Default, Clone)]
pub struct FrontMetrics {
    pub clients: Gauge,
    pub client_errors: Counter,
    pub login_failures: Counter,
    pub transactions: Counter,
}

/// Attaches the Redis shared tier: entries written through, other nodes' invalidations applied
/// here, local entries dropped whenever the subscription is (re)established. The callbacks hold
/// the cache weakly (the cache holds the tier).
fn with_redis_tier(cache: crate::cache::Cache, config: &crate::config::CacheConfig, registry: &mut Registry) -> anyhow::Result<crate::cache::Cache> {
    let tier = crate::cache::shared::RedisTier::new(config)?;
    tier.metrics().register(registry);
    let cache = cache.with_shared(tier.clone());
    let (on_event, on_reconnect) = (cache.downgrade(), cache.downgrade());
    tier.subscribe(
        Arc::new(move |event| {
            if let Some(c) = on_event.upgrade() {
                c.apply_remote(event);
            }
        }),
        Arc::new(move || {
            if let Some(c) = on_reconnect.upgrade() {
                c.clear_local();
            }
        }),
    );
    Ok(cache)
}

impl App {
    /// Builds pools and stores; must run inside a tokio runtime (pools spawn upkeep tasks).
    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        let mut registry = Registry::with_prefix("tidepool");
        let metrics = FrontMetrics::default();
        registry.register("clients", "Connected Postgres-protocol clients", metrics.clients.clone());
        registry.register("client_errors", "Client sessions ended by an error", metrics.client_errors.clone());
        registry.register("login_failures", "Failed client logins", metrics.login_failures.clone());
        registry.register("transactions", "Transaction-mode leases completed", metrics.transactions.clone());
        let traffic = crate::stats::Families::default();
        traffic.register(&mut registry);
        let dataproxy = crate::frontend::http::dataproxy::DataProxy::default();
        dataproxy.register(&mut registry);
        let tracker = TaskTracker::new();
        // With a cluster, every pool's size is a limit over all nodes (crate::cluster).
        let cluster = match &config.cluster.redis_url {
            Some(_) => Some(crate::cluster::Cluster::new(&config.cluster, &mut registry)?),
            None => None,
        };
        let mut databases = HashMap::new();
        let mut db_metrics = crate::db_metrics::MetricsBook::default();
        for db in &config.databases {
            let metrics = db_metrics.get(&db.name, &mut registry);
            let database = crate::reload::build_database(db, &metrics, &mut registry, &tracker, &traffic, None, cluster.as_deref())?;
            databases.insert(db.name.clone(), Arc::new(database));
        }
        let (pg_tls, http_tls) = crate::reload::tls_acceptors(&config)?;
        let api_keys = crate::keys::ApiKeys::from_config(&config);
        let mut cache = crate::cache::Cache::new(config.cache.clone(), None, tracker.clone());
        cache.metrics().register(&mut registry);
        if config.cache.enabled && config.cache.redis_url.is_some() {
            cache = with_redis_tier(cache, &config.cache, &mut registry)?;
        }
        let config_preauth = config.server.max_preauth_connections;
        let cancels = Arc::new(CancelRegistry::default());
        if let Some(c) = &cluster {
            c.serve_cancels(&cancels);
        }
        Ok(Arc::new(App {
            users: UserStore::from_config(&config).registered(&mut registry),
            config: parking_lot::RwLock::new(Arc::new(config)),
            databases: parking_lot::RwLock::new(databases),
            cancels,
            cluster,
            registry: Mutex::new(registry),
            metrics,
            shutdown: CancellationToken::new(),
            stopped: CancellationToken::new(),
            stop_requested: CancellationToken::new(),
            tracker,
            pg_tls: parking_lot::RwLock::new(pg_tls),
            http_tls: parking_lot::RwLock::new(http_tls),
            config_path: Mutex::new(None),
            traffic,
            db_metrics: Mutex::new(db_metrics),
            reloading: tokio::sync::Mutex::new(()),
            stats_period: Default::default(),
            api_keys,
            itx: Default::default(),
            dataproxy,
            preauth_pg: Arc::new(tokio::sync::Semaphore::new(config_preauth)),
            cache,
            clients: Default::default(),
        }))
    }

    /// The running configuration (a reload replaces it; hold the `Arc` for a consistent view).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        self.databases.read().get(name).cloned()
    }

    /// Every configured database, in no particular order.
    pub fn databases(&self) -> Vec<Arc<Database>> {
        self.databases.read().values().cloned().collect()
    }

    pub fn pg_tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.pg_tls.read().clone()
    }

    pub fn http_tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.http_tls.read().clone()
    }

    /// Prometheus text exposition of every metric.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}
