//! Several tidepool nodes sharing one Redis/Valkey (`[cluster]`, docs/deploy.md): membership
//! (heartbeat, expiry), one upstream-connection budget per pool over all live nodes
//! ([`lease::PoolBudget`], the pool's [`Budget`](crate::pool::Budget)), cancel requests forwarded
//! to the node that owns the key, and the fallback when Redis cannot be reached: each pool may
//! hold `limit / last known node count` (at least 1) connections — and while the outage is younger
//! than `lease_ttl`, no more than it held when the outage began, so the nodes' sum stays within
//! the budget. A graceful stop leaves ([`Cluster::leave`]): membership and leases are deleted at
//! once instead of expiring. Owns the Redis connection (a `ConnectionManager`, reconnecting by
//! itself), the background tasks ([`tasks`]) and the cluster metrics.

mod lease;
mod scripts;
mod tasks;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::cancel::CancelRegistry;
use crate::config::ClusterConfig;
use crate::pool::Budget;

pub use lease::PoolBudget;
use scripts::Keys;

/// A live member as last seen in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: String,
    pub advertise_addr: String,
}

#[derive(Default, Clone)]
pub struct ClusterMetrics {
    pub nodes: Gauge,
    pub peer: Family<Vec<(String, String)>, Gauge>,
    pub redis_errors: Counter,
    pub fallback: Gauge,
    pub fallbacks: Counter,
    pub leases_held: Gauge,
    pub lease_round_trips: Counter,
    pub lease_denied: Counter,
    pub release_requests_sent: Counter,
    pub release_requests_received: Counter,
    pub cancels_forwarded: Counter,
    pub cancels_received: Counter,
}

impl ClusterMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("cluster");
        r.register("nodes", "Live cluster nodes (this one included) at the last heartbeat", self.nodes.clone());
        r.register("peer", "1 per live cluster node, labelled with its id and advertise address", self.peer.clone());
        r.register("redis_errors", "Cluster calls to Redis that failed or timed out", self.redis_errors.clone());
        r.register("fallback", "1 while this node uses its static share of each budget (Redis unreachable or settling)", self.fallback.clone());
        r.register("fallbacks", "Times this node fell back to its static share", self.fallbacks.clone());
        r.register("leases_held", "Upstream connections this node holds a budget unit for", self.leases_held.clone());
        r.register("lease_round_trips", "Redis round trips made to take a lease (only when opening a connection)", self.lease_round_trips.clone());
        r.register("lease_denied", "Lease attempts refused because the global budget was in use", self.lease_denied.clone());
        r.register("release_requests_sent", "Requests to other nodes to give idle connections back", self.release_requests_sent.clone());
        r.register("release_requests_received", "Requests from other nodes to give idle connections back", self.release_requests_received.clone());
        r.register("cancels_forwarded", "Cancel requests for keys unknown here, published to the other nodes", self.cancels_forwarded.clone());
        r.register("cancels_received", "Cancel requests received from other nodes", self.cancels_received.clone());
    }
}

/// State shared by the cluster's tasks and its pool budgets.
pub(crate) struct Core {
    config: ClusterConfig,
    node_id: String,
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    /// Live nodes at the last heartbeat; 0 = never known.
    nodes: AtomicUsize,
    peers: Mutex<Vec<Peer>>,
    /// Leases are taken in Redis only while true (heartbeat answered, state not settling).
    usable: AtomicBool,
    fallback_since: Mutex<Option<Instant>>,
    budgets: Mutex<Vec<Weak<PoolBudget>>>,
    metrics: ClusterMetrics,
    /// Leases of closed connections, removed from Redis by the releaser task.
    releases: mpsc::Sender<(String, String)>,
    seq: AtomicU64,
    cancels: OnceLock<Weak<CancelRegistry>>,
    last_log: Mutex<Option<Instant>>,
    stop: CancellationToken,
}

/// The cluster membership of this node. Dropping the last handle stops its tasks.
pub struct Cluster {
    core: Arc<Core>,
    /// The heartbeat task, stopped (and waited for) before a graceful [`Cluster::leave`].
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    _stop: DropGuard,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("[cluster] redis_url is not a valid redis:// or rediss:// URL")]
    InvalidUrl,
    #[error("[cluster] redis_url is not set")]
    NotConfigured,
}

impl Cluster {
    /// Connects lazily (Redis down at start is not an error: the node starts in fallback) and
    /// starts the heartbeat, the lease releaser and the bus subscriber; needs a Tokio runtime.
    pub fn new(config: &ClusterConfig, registry: &mut Registry) -> Result<Arc<Cluster>, ClusterError> {
        let url = config.redis_url.as_deref().ok_or(ClusterError::NotConfigured)?;
        let client = redis::Client::open(url).map_err(|_| ClusterError::InvalidUrl)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(|_| ClusterError::InvalidUrl)?;
        let node_id = if config.node_id.is_empty() { hex::encode(rand::random::<[u8; 6]>()) } else { config.node_id.clone() };
        let (tx, rx) = mpsc::channel(4096);
        let stop = CancellationToken::new();
        let metrics = ClusterMetrics::default();
        metrics.register(registry);
        let core = Arc::new(Core {
            keys: Keys::new(&config.key_prefix),
            config: config.clone(),
            node_id,
            client,
            conn,
            nodes: AtomicUsize::new(0),
            peers: Mutex::new(Vec::new()),
            usable: AtomicBool::new(false),
            // Until the first heartbeat this node knows nothing: it starts as in an outage.
            fallback_since: Mutex::new(Some(Instant::now())),
            budgets: Mutex::new(Vec::new()),
            metrics,
            releases: tx,
            seq: AtomicU64::new(1),
            cancels: OnceLock::new(),
            last_log: Mutex::new(None),
            stop: stop.clone(),
        });
        core.metrics.fallback.set(1);
        let heartbeat = tokio::spawn(tasks::heartbeat(core.clone()));
        tokio::spawn(tasks::releaser(core.clone(), rx));
        tokio::spawn(tasks::subscriber(core.clone()));
        Ok(Arc::new(Cluster { core, heartbeat: Mutex::new(Some(heartbeat)), _stop: stop.drop_guard() }))
    }

    /// The budget of pool `name` (limit `limit` over all nodes), for [`crate::pool::Pool::with_budget`].
    pub fn budget(&self, name: &str, limit: usize) -> Arc<dyn Budget> {
        let b = PoolBudget::new(self.core.clone(), name, limit);
        self.core.budgets.lock().push(Arc::downgrade(&b));
        Arc::new(lease::Hook(b))
    }

    /// Cancel requests for keys unknown here go to the other nodes, and theirs are tried here.
    pub fn serve_cancels(&self, registry: &Arc<CancelRegistry>) {
        let _ = self.core.cancels.set(Arc::downgrade(registry));
        let core = Arc::downgrade(&self.core);
        registry.set_forward(Arc::new(move |pid, secret| {
            if let Some(core) = core.upgrade() {
                tasks::publish(&core, tasks::Message::Cancel { pid, secret });
                core.metrics.cancels_forwarded.inc();
            }
        }));
    }

    /// Stops this node's cluster tasks without giving its leases back: to the other nodes it
    /// looks like a node that crashed (its leases expire after `lease_ttl`). For tests.
    #[doc(hidden)]
    pub fn halt(&self) {
        self.core.stop.cancel();
        self.core.usable.store(false, Ordering::SeqCst);
    }

    /// A graceful stop (the drain is over, the pools are closed): stops the cluster tasks and
    /// removes this node's membership and every lease it holds from Redis, so the other nodes
    /// see it gone and may use its share of each budget at once instead of after `lease_ttl`.
    /// Best effort, bounded by `redis_timeout`: with Redis unreachable the node just goes, and
    /// its entries expire as a crashed node's would. Leases taken afterwards stay local.
    pub async fn leave(&self) {
        let core = &self.core;
        core.stop.cancel();
        core.usable.store(false, Ordering::SeqCst);
        // A heartbeat in flight would re-add the membership: wait for the task to end first (the
        // requests it already queued go before the leave on the same connection).
        let beat = self.heartbeat.lock().take();
        if let Some(beat) = beat {
            beat.abort();
            let _ = beat.await;
        }
        let budgets = core.live_budgets();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::LEAVE).arg(2 + budgets.len()).arg(core.keys.nodes()).arg(core.keys.addrs());
        for b in &budgets {
            cmd.arg(b.key());
        }
        cmd.arg(&core.node_id);
        let mut conn = core.conn.clone();
        match tokio::time::timeout(core.config.redis_timeout, cmd.query_async::<i64>(&mut conn)).await {
            Ok(Ok(leases)) => tracing::info!(node = %core.node_id, leases, "cluster: left (membership and leases removed)"),
            Ok(Err(e)) => {
                core.failed("leave", &e.to_string());
                tracing::warn!(node = %core.node_id, "cluster: could not leave; this node's entries expire after lease_ttl");
            }
            Err(_) => {
                core.failed("leave", "timed out");
                tracing::warn!(node = %core.node_id, "cluster: leaving timed out; this node's entries expire after lease_ttl");
            }
        }
    }

    pub fn node_id(&self) -> &str {
        &self.core.node_id
    }

    /// The live nodes at the last heartbeat (this one included).
    pub fn peers(&self) -> Vec<Peer> {
        self.core.peers.lock().clone()
    }

    /// Whether leases are taken in Redis now (false: static share).
    pub fn coordinated(&self) -> bool {
        self.core.usable.load(Ordering::SeqCst)
    }

    pub fn metrics(&self) -> &ClusterMetrics {
        &self.core.metrics
    }
}

impl Core {
    fn usable(&self) -> bool {
        self.usable.load(Ordering::SeqCst)
    }

    /// Last known node count (0 = never known).
    fn node_count(&self) -> usize {
        self.nodes.load(Ordering::SeqCst)
    }

    fn live_budgets(&self) -> Vec<Arc<PoolBudget>> {
        let mut list = self.budgets.lock();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    }

    /// Redis answered and holds the state: leases are taken there again.
    fn set_usable(&self) {
        if !self.usable.swap(true, Ordering::SeqCst) {
            *self.fallback_since.lock() = None;
            self.metrics.fallback.set(0);
            tracing::info!(node = %self.node_id, "cluster: Redis reachable; connection budget coordinated again");
        }
    }

    /// Redis cannot be used now: each pool keeps to its static share.
    fn set_unusable(&self, why: &str) {
        if self.usable.swap(false, Ordering::SeqCst) {
            let mut since = self.fallback_since.lock();
            if since.is_none() {
                *since = Some(Instant::now());
                for b in self.live_budgets() {
                    b.outage_began();
                }
            }
            self.metrics.fallback.set(1);
            self.metrics.fallbacks.inc();
            tracing::warn!(node = %self.node_id, reason = why, nodes = self.node_count(), "cluster: falling back to a static share of each connection budget");
        }
    }

    /// Counts a failed Redis call; logs at most every 10 s.
    fn failed(&self, what: &str, err: &str) {
        self.metrics.redis_errors.inc();
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(node = %self.node_id, call = what, error = err, "cluster: Redis call failed");
        }
    }
}
