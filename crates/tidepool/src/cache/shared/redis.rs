//! [`RedisTier`]: reads with a timeout on the caller's task; writes (entries, invalidations)
//! through bounded queues to two writer tasks; the invalidation subscriber in
//! [`super::subscriber`]. Owns the connection (`redis::aio::ConnectionManager`, one multiplexed
//! connection that reconnects by itself) and the failure policy (count, log rarely, never fail).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::keys;
use super::message;
use super::metrics::{LogLimiter, TierMetrics};
use super::{EntryScope, SharedSnapshot};
use crate::cache::{Invalidation, SharedTier};
use crate::config::CacheConfig;

/// Called with each invalidation published by another node (the cache's `apply_remote`).
pub type OnInvalidation = Arc<dyn Fn(&Invalidation) + Send + Sync>;
/// Called each time the invalidation subscription is established (the cache's `clear_local`).
pub type OnReconnect = Arc<dyn Fn() + Send + Sync>;

/// Entries written to Redis at once by the writer task.
const WRITE_CONCURRENCY: usize = 16;
/// Room for what the cache core stores around a payload (timestamps, database, tags, tables):
/// a value read or written may be this much larger than `max_entry_bytes`.
pub const ENTRY_OVERHEAD: usize = 64 << 10;
/// After a failed call, reads skip Redis this long (so a Redis that is down or black-holed does
/// not add `redis_timeout` to every local miss); the first read after it probes again.
const READ_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line per this interval for each kind of trouble.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum RedisTierError {
    /// The URL does not parse (the message does not repeat it: it may hold a password).
    #[error("[cache] redis_url is not a valid redis:// or rediss:// URL")]
    InvalidUrl,
    #[error("[cache] redis_url is not set")]
    NotConfigured,
}

/// The Redis shared tier of the query cache. Cheap to share (`Arc`); dropping the last handle
/// stops its tasks.
pub struct RedisTier {
    pub(super) inner: Arc<Inner>,
    puts: mpsc::Sender<PutJob>,
    events: mpsc::Sender<Invalidation>,
    _stop: DropGuard,
}

pub(super) struct Inner {
    pub(super) client: redis::Client,
    conn: ConnectionManager,
    pub(super) node_id: String,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) reconnect_max_delay: Duration,
    max_entry_bytes: usize,
    max_ttl: Duration,
    pub(super) metrics: TierMetrics,
    pub(super) cancel: CancellationToken,
    log: LogLimiter,
    /// The invalidation subscription's session: odd while subscribed, even while not (before
    /// the first subscription, and from a disconnection to the next subscription); bumped at each
    /// change. An entry is written only if it was queued and is still being written in the same
    /// odd session: an entry computed while this node could miss invalidations (or queued before
    /// the local entries were cleared) never reaches Redis.
    pub(super) session: AtomicU64,
    /// Reads skip Redis until then (set by a failure, cleared by a new subscription).
    pub(super) reads_paused_until: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

struct PutJob {
    /// The subscription session it was computed in (see `Inner::session`).
    session: u64,
    /// The generations of `deps` seen before the result was fetched, if known; else they are
    /// read when writing.
    gens: Option<Vec<Vec<u8>>>,
    name: String,
    value: Bytes,
    ttl: Duration,
    deps: Vec<String>,
}

impl RedisTier {
    /// Connects lazily (a Redis that is down at start is not an error: calls fail, are counted,
    /// and the connection is retried) and starts the writer tasks; needs a Tokio runtime. Values
    /// over `max_entry_bytes` + [`ENTRY_OVERHEAD`] are neither written nor read. Call
    /// [`RedisTier::subscribe`] to receive other nodes' invalidations: entries are written to Redis
    /// only while subscribed.
    pub fn new(config: &CacheConfig) -> Result<Arc<RedisTier>, RedisTierError> {
        let max_entry_bytes = usize::try_from(config.max_entry_bytes).unwrap_or(usize::MAX).saturating_add(ENTRY_OVERHEAD);
        let url = config.redis_url.as_deref().ok_or(RedisTierError::NotConfigured)?;
        let client = redis::Client::open(url).map_err(|_| RedisTierError::InvalidUrl)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_connect_timeout))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(2)
            .set_max_delay(config.redis_reconnect_max_delay);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(|_| RedisTierError::InvalidUrl)?;
        let cancel = CancellationToken::new();
        let inner = Arc::new(Inner {
            client,
            conn,
            node_id: hex::encode(rand::random::<[u8; 8]>()),
            timeout: config.redis_timeout,
            connect_timeout: config.redis_connect_timeout,
            reconnect_max_delay: config.redis_reconnect_max_delay,
            max_entry_bytes,
            max_ttl: config.redis_max_ttl,
            metrics: TierMetrics::default(),
            cancel: cancel.clone(),
            log: LogLimiter::new(LOG_INTERVAL),
            session: AtomicU64::new(0),
            reads_paused_until: parking_lot::Mutex::new(None),
        });
        let (puts, put_rx) = mpsc::channel(config.redis_queue);
        let (events, event_rx) = mpsc::channel(config.redis_queue);
        tokio::spawn(write_entries(inner.clone(), put_rx));
        tokio::spawn(write_invalidations(inner.clone(), event_rx));
        Ok(Arc::new(RedisTier { inner, puts, events, _stop: cancel.drop_guard() }))
    }

    /// Starts the task that receives other nodes' invalidations: `on_invalidation` for each one
    /// (this node's own messages are skipped), `on_reconnect` each time the subscription is
    /// established (at start and after any disconnection, when broadcasts may have been
    /// missed). It reconnects with exponential backoff (50 ms doubling up to
    /// `redis_reconnect_max_delay`) and stops when the tier is dropped.
    pub fn subscribe(&self, on_invalidation: OnInvalidation, on_reconnect: OnReconnect) {
        tokio::spawn(super::subscriber::run(self.inner.clone(), on_invalidation, on_reconnect));
    }

    /// This node's id in broadcast messages (random per tier).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Largest value written or read.
    pub fn max_value_bytes(&self) -> usize {
        self.inner.max_entry_bytes
    }

    pub fn metrics(&self) -> &TierMetrics {
        &self.inner.metrics
    }

    fn enqueue<T>(&self, queue: &mpsc::Sender<T>, item: T, what: &'static str) {
        if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(item) {
            self.inner.metrics.dropped.inc();
            if let Some(suppressed) = self.inner.log.allow() {
                tracing::warn!(what, suppressed, "cache: Redis write queue full; write dropped");
            }
        }
    }
}

impl Inner {
    /// Counts a failed call and logs it (rarely).
    pub(super) fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        self.metrics.errors.inc();
        *self.reads_paused_until.lock() = Some(tokio::time::Instant::now() + READ_PAUSE);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(op, %error, suppressed, "cache: Redis call failed; serving without the shared tier");
        }
    }

    async fn bounded<T>(&self, op: &'static str, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match timeout(self.timeout, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &"timed out");
                None
            }
        }
    }

    /// Runs a write, and once more if the connection turned out to be dead (the first call after
    /// Redis comes back finds the old connection and only starts the reconnection): both within
    /// the caller's one timeout. Writes are idempotent.
    async fn retry_once<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match call().await {
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => call().await,
            r => r,
        }
    }

    /// Current generations of `deps` (empty = never invalidated).
    async fn generations(&self, deps: &[String]) -> redis::RedisResult<Vec<Vec<u8>>> {
        let mut conn = self.conn.clone();
        let gens: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(deps).query_async(&mut conn).await?;
        Ok(gens.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// One entry, read with at most `max_entry_bytes` + envelope bytes transferred, and, when
    /// `scope` names generation keys, their current values (same round trip): the snapshot a
    /// later write of this entry records.
    async fn read(&self, name: &str, scope: &[String]) -> redis::RedisResult<(Option<Bytes>, Vec<Vec<u8>>)> {
        let mut conn = self.conn.clone();
        let limit = self.max_entry_bytes.saturating_add(keys::MAX_HEADER);
        // GETRANGE's end is inclusive: a value longer than `limit` shows up as limit + 1 bytes.
        let mut pipe = redis::pipe();
        pipe.cmd("GETRANGE").arg(name).arg(0).arg(limit);
        let (raw, snapshot): (Vec<u8>, Vec<Vec<u8>>) = if scope.is_empty() {
            let (raw,): (Vec<u8>,) = pipe.query_async(&mut conn).await?;
            (raw, Vec::new())
        } else {
            pipe.cmd("MGET").arg(scope);
            let (raw, gens): (Vec<u8>, Vec<Option<Vec<u8>>>) = pipe.query_async(&mut conn).await?;
            (raw, gens.into_iter().map(Option::unwrap_or_default).collect())
        };
        if snapshot.len() != scope.len() {
            return Err((redis::ErrorKind::Parse, "MGET answered another number of values").into());
        }
        if raw.is_empty() {
            self.metrics.misses.inc();
            return Ok((None, snapshot));
        }
        let envelope = match keys::decode(&raw) {
            Some(e) if raw.len() <= limit && raw.len() - e.value_start <= self.max_entry_bytes => e,
            _ => {
                self.metrics.rejected.inc();
                return Ok((None, snapshot));
            }
        };
        let names: Vec<String> = envelope.deps.iter().map(|(n, _)| n.clone()).collect();
        let current = if names == scope { snapshot.clone() } else { self.generations(&names).await? };
        if current.len() != envelope.deps.len() || envelope.deps.iter().zip(&current).any(|((_, recorded), now)| recorded != now) {
            self.metrics.invalidated.inc();
            return Ok((None, snapshot));
        }
        self.metrics.hits.inc();
        Ok((Some(Bytes::from(raw).slice(envelope.value_start..)), snapshot))
    }

    /// Whether a write queued in `session` may still go to Redis (else it is counted as dropped).
    fn same_session(&self, session: u64) -> bool {
        let ok = session & 1 == 1 && session == self.session.load(Ordering::SeqCst);
        if !ok {
            self.metrics.dropped.inc();
        }
        ok
    }

    async fn store(&self, job: &PutJob) -> redis::RedisResult<()> {
        if !self.same_session(job.session) {
            return Ok(());
        }
        let gens = match &job.gens {
            Some(gens) => gens.clone(),
            None => self.generations(&job.deps).await?,
        };
        // Checked again: the read above may have waited for a reconnection that started a new
        // session (the window left, between here and the SET, is one local round trip).
        if !self.same_session(job.session) {
            return Ok(());
        }
        let Some(raw) = keys::encode(&job.deps, &gens, &job.value) else {
            // A generation we did not write (too long): nothing safe to record.
            self.metrics.rejected.inc();
            return Ok(());
        };
        let millis = u64::try_from(job.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        redis::cmd("SET").arg(&job.name).arg(raw).arg("PX").arg(millis).query_async(&mut conn).await
    }

    /// Replaces the generations the event names, then tells the other nodes.
    async fn invalidate(&self, event: &Invalidation) -> redis::RedisResult<()> {
        let millis = u64::try_from(self.max_ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = redis::pipe();
        for key in keys::invalidated(event) {
            pipe.cmd("SET").arg(key).arg(keys::new_generation()).arg("PX").arg(millis).ignore();
        }
        pipe.cmd("PUBLISH").arg(message::CHANNEL).arg(message::encode(&self.node_id, event)).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }
}

async fn write_entries(inner: Arc<Inner>, rx: mpsc::Receiver<PutJob>) {
    let jobs = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|job| (job, rx)) });
    jobs.for_each_concurrent(WRITE_CONCURRENCY, |job| {
        let inner = inner.clone();
        async move {
            inner.bounded("put", inner.retry_once(|| inner.store(&job))).await;
        }
    })
    .await;
}

async fn write_invalidations(inner: Arc<Inner>, mut rx: mpsc::Receiver<Invalidation>) {
    while let Some(event) = rx.recv().await {
        inner.bounded("publish", inner.retry_once(|| inner.invalidate(&event))).await;
    }
}

#[async_trait::async_trait]
impl SharedTier for RedisTier {
    async fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.lookup_with(key, &[]).await.0
    }

    async fn lookup(&self, key: &[u8], scope: &EntryScope) -> (Option<Bytes>, Option<SharedSnapshot>) {
        self.lookup_with(key, &keys::dependencies(Some(scope))).await
    }

    /// Stored unscoped: any invalidation on any node hides it (use `put_scoped`).
    async fn put(&self, key: &[u8], value: Bytes, ttl: Duration) {
        self.put_with(key, value, ttl, None, None);
    }

    async fn put_scoped(&self, key: &[u8], value: Bytes, ttl: Duration, scope: &EntryScope, snapshot: Option<SharedSnapshot>) {
        self.put_with(key, value, ttl, Some(scope), snapshot);
    }

    async fn publish(&self, event: Invalidation) {
        self.enqueue(&self.events, event, "invalidation");
    }
}

impl RedisTier {
    /// A read (skipped for a while after a failure) with a snapshot of `scope`'s generations.
    async fn lookup_with(&self, key: &[u8], scope: &[String]) -> (Option<Bytes>, Option<SharedSnapshot>) {
        if self.inner.reads_paused_until.lock().is_some_and(|until| tokio::time::Instant::now() < until) {
            self.inner.metrics.skipped.inc();
            return (None, None);
        }
        let session = self.inner.session.load(Ordering::SeqCst);
        let name = keys::entry_key(key);
        match self.inner.bounded("get", self.inner.read(&name, scope)).await {
            Some((hit, gens)) if !scope.is_empty() => (hit, Some(SharedSnapshot { generations: scope.iter().cloned().zip(gens).collect(), session })),
            Some((hit, _)) => (hit, None),
            None => (None, None),
        }
    }

    /// `ttl` is the entry's whole lifetime (ttl + swr).
    fn put_with(&self, key: &[u8], value: Bytes, ttl: Duration, scope: Option<&EntryScope>, snapshot: Option<SharedSnapshot>) {
        if value.len() > self.inner.max_entry_bytes || ttl.is_zero() {
            return;
        }
        let deps = keys::dependencies(scope);
        // With a snapshot of these very dependencies, the entry records the generations from
        // before its fetch, and belongs to the session of that lookup.
        let (session, gens) = match snapshot {
            Some(s) if s.generations.iter().map(|(k, _)| k).eq(deps.iter()) => (s.session, Some(s.generations.into_iter().map(|(_, g)| g).collect())),
            _ => (self.inner.session.load(Ordering::SeqCst), None),
        };
        if session & 1 == 0 {
            // Not subscribed: this entry may miss an invalidation; keep it local.
            self.inner.metrics.dropped.inc();
            return;
        }
        let job = PutJob { session, gens, name: keys::entry_key(key), value, ttl: ttl.min(self.inner.max_ttl), deps };
        self.enqueue(&self.puts, job, "entry");
    }
}
