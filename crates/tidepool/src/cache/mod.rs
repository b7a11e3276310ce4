//! The query cache (Accelerate semantics: ttl, swr, tags, invalidate), shared by the Prisma API and
//! Neon `/sql`. This module owns the [`Cache`] handle: the in-memory tier (`moka`, size-weighted,
//! per-entry expiry), single-flight of concurrent misses, the one background refresh of a stale
//! entry, per-database quotas, and the optional [`SharedTier`] (Redis, in `shared/`) consulted on
//! a local miss and written through on a store. Front ends decide what is cacheable and build the
//! [`Key`]; see `frontend/http/prisma/cache.rs` and `frontend/http/neon_cache.rs`.
//!
//! Submodules: `key` (what a key is made of), `entry` (a cached result, its freshness and its
//! bytes for the shared tier), `invalidate` (invalidations, tag rules, the rate limit), `sql`
//! (read-only and volatility checks, tables read and written), `metrics`.

pub mod entry;
pub mod invalidate;
pub mod key;
pub mod metrics;
pub mod shared;
pub mod sql;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use self::entry::{Entry, Freshness};
pub use self::invalidate::{parse_tags, valid_tag, Invalidation, TagError};
pub use self::key::{Key, KeyBuilder};
pub use self::metrics::{Bypass, CacheMetrics};
pub use self::shared::{EntryScope, SharedSnapshot, WeakCache};
use crate::config::CacheConfig;

/// A tier shared by several tidepool nodes (Redis). Never fails a request: errors are logged and
/// counted inside.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync + 'static {
    async fn get(&self, key: &[u8]) -> Option<Bytes>;
    async fn put(&self, key: &[u8], value: Bytes, ttl: Duration);
    async fn publish(&self, event: Invalidation);
    /// Like [`SharedTier::get`] for an entry of `scope`, also returning what the tier must know
    /// to store the result fetched after this miss (hand it to `put_scoped`): the Redis tier
    /// snapshots the scope's invalidation generations here, *before* the database runs, so an
    /// invalidation on any node during the fetch hides the copy it stores.
    async fn lookup(&self, key: &[u8], scope: &EntryScope) -> (Option<Bytes>, Option<SharedSnapshot>) {
        let _ = scope;
        (self.get(key).await, None)
    }
    /// Like [`SharedTier::put`], naming what the entry depends on, so that an invalidation
    /// published by any node also makes the shared copy unreachable; `snapshot` is what the
    /// lookup before the fetch returned (None: none was made). `put` alone must be conservative
    /// (the Redis tier hides such an entry on any invalidation).
    async fn put_scoped(&self, key: &[u8], value: Bytes, ttl: Duration, scope: &EntryScope, snapshot: Option<SharedSnapshot>) {
        let _ = (scope, snapshot);
        self.put(key, value, ttl).await
    }
}

/// `accelerate-cache-status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Served from the cache, younger than ttl.
    Ttl,
    /// Served from the cache within swr; one background refresh runs.
    Swr,
    /// Run on the database (and stored when possible).
    Miss,
    /// Not cacheable, or no strategy.
    None,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ttl => "ttl",
            Status::Swr => "swr",
            Status::Miss => "miss",
            Status::None => "none",
        }
    }
}

/// A request's cache strategy, already validated and clamped to the configured maxima.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    pub ttl: Duration,
    pub swr: Duration,
    pub tags: Vec<String>,
}

/// One cacheable lookup.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: Key,
    pub database: Arc<str>,
    pub strategy: Strategy,
}

/// Produces a fresh payload for a background refresh: `None` when the result is not storable
/// (an error).
pub type Refill = Box<dyn FnOnce() -> BoxFuture<'static, Option<Bytes>> + Send>;

/// The answer of [`Cache::fill`].
pub enum Filled<E> {
    /// Another request (or the shared tier) had it.
    Hit(Arc<Entry>, Status),
    /// Ran on the database; the entry is stored unless a bypass was counted.
    Miss(Arc<Entry>),
    /// The fetch failed; nothing stored.
    Failed(E),
}

type Flight = watch::Receiver<Option<Option<Arc<Entry>>>>;

struct Inner {
    cfg: CacheConfig,
    local: moka::future::Cache<Key, Arc<Entry>>,
    flights: Mutex<HashMap<Key, Flight>>,
    refreshing: Mutex<HashSet<Key>>,
    shared: Option<Arc<dyn SharedTier>>,
    metrics: CacheMetrics,
    db_bytes: Arc<Mutex<HashMap<Arc<str>, u64>>>,
    /// (database, table) pairs read by entries stored since the last table invalidation of
    /// them: a write to a table no stored entry read registers no predicate. Bounded by
    /// `max_table_marks` (names come from client SQL).
    read_tables: Mutex<TableMarks>,
    /// Bumped by every invalidation of a database (and by [`Cache::clear_local`] for all): a
    /// result read while it changed is served but not stored.
    epochs: Mutex<(u64, HashMap<Arc<str>, u64>)>,
    limiter: invalidate::Limiter,
    tracker: TaskTracker,
}

/// The tables stored entries read, for `invalidate_on_write`. Once more than the bound were
/// marked, the set is dropped and `saturated` says "any table may have been read": every write
/// then invalidates, which is correct, only less precise.
#[derive(Default)]
struct TableMarks {
    set: HashSet<(Arc<str>, String)>,
    saturated: bool,
}

/// The cache handle (cheap to clone).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct LifetimeExpiry;

impl moka::Expiry<Key, Arc<Entry>> for LifetimeExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Arc<Entry>, _created_at: std::time::Instant) -> Option<Duration> {
        Some(value.lifetime())
    }
}

impl Cache {
    /// A cache with the given bounds; background work (refreshes, shared-tier writes) runs on
    /// `tracker`.
    pub fn new(cfg: CacheConfig, shared: Option<Arc<dyn SharedTier>>, tracker: TaskTracker) -> Cache {
        let metrics = CacheMetrics::new();
        let db_bytes: Arc<Mutex<HashMap<Arc<str>, u64>>> = Arc::default();
        let (m, per_db) = (metrics.clone(), db_bytes.clone());
        let local = moka::future::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_k: &Key, v: &Arc<Entry>| v.weight().min(u32::MAX as u64) as u32)
            .expire_after(LifetimeExpiry)
            .support_invalidation_closures()
            .eviction_listener(move |_k, v: Arc<Entry>, cause| {
                let w = v.weight();
                m.bytes.dec_by(w as i64);
                m.entries.dec();
                if let Some(n) = per_db.lock().get_mut(&v.database) {
                    *n = n.saturating_sub(w);
                }
                if cause == moka::notification::RemovalCause::Size {
                    m.evictions.inc();
                }
            })
            .build();
        let limiter = invalidate::Limiter::new(cfg.invalidations_per_minute);
        Cache {
            inner: Arc::new(Inner {
                cfg,
                local,
                flights: Mutex::default(),
                refreshing: Mutex::default(),
                read_tables: Mutex::default(),
                shared,
                metrics,
                db_bytes,
                epochs: Mutex::default(),
                limiter,
                tracker,
            }),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    pub fn enabled(&self) -> bool {
        self.inner.cfg.enabled
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// Attaches (or replaces) the shared tier; only before the cache is shared with front ends.
    pub fn with_shared(self, shared: Arc<dyn SharedTier>) -> Cache {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.shared = Some(shared);
                Cache { inner: Arc::new(inner) }
            }
            Err(inner) => Cache { inner },
        }
    }

    /// A fresh or stale local entry for `req`, counted as a hit. A stale one starts exactly one
    /// background refresh (`refill` is called only then).
    pub async fn lookup(&self, req: &Request, refill: impl FnOnce() -> Refill) -> Option<(Arc<Entry>, Status)> {
        let entry = self.inner.local.get(&req.key).await?;
        self.judge(req, entry, refill)
    }

    fn judge(&self, req: &Request, entry: Arc<Entry>, refill: impl FnOnce() -> Refill) -> Option<(Arc<Entry>, Status)> {
        match entry.freshness(Instant::now(), req.strategy.ttl, req.strategy.swr) {
            Freshness::Fresh => {
                self.inner.metrics.hits_ttl.inc();
                Some((entry, Status::Ttl))
            }
            Freshness::Stale => {
                self.inner.metrics.hits_swr.inc();
                self.refresh(req, &entry, refill);
                Some((entry, Status::Swr))
            }
            Freshness::Expired => None,
        }
    }

    /// Starts the one background refresh of a stale entry, unless one is running.
    fn refresh(&self, req: &Request, stale: &Entry, refill: impl FnOnce() -> Refill) {
        if !self.inner.refreshing.lock().insert(req.key) {
            return;
        }
        struct Done(Cache, Key);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.inner.refreshing.lock().remove(&self.1);
            }
        }
        let done = Done(self.clone(), req.key);
        let work = refill();
        let (req, tables) = (req.clone(), stale.tables.clone());
        self.inner.metrics.refreshes.inc();
        self.inner.tracker.spawn(async move {
            let cache = done.0.clone();
            let epoch = cache.epoch(&req.database);
            if let Some(payload) = work().await {
                cache.store(&req, payload, tables, epoch, None).await;
            }
            drop(done);
        });
    }

    /// A local miss: the first caller for a key runs `fetch` (after asking the shared tier);
    /// concurrent callers for the same key wait for its result instead of running the query.
    pub async fn fill<E, Fut>(&self, req: &Request, tables: Vec<String>, refill: impl FnOnce() -> Refill, fetch: Fut) -> Filled<E>
    where
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let flight = {
            let mut flights = self.inner.flights.lock();
            match flights.get(&req.key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(req.key, rx);
                    Ok(tx)
                }
            }
        };
        let tx = match flight {
            Err(mut rx) => {
                // A follower: the leader's entry, or our own fetch if it failed or vanished.
                if let Ok(v) = rx.wait_for(Option::is_some).await {
                    if let Some(Some(entry)) = v.clone() {
                        self.inner.metrics.misses.inc();
                        return Filled::Miss(entry);
                    }
                }
                return self.fetch_and_store(req, tables, fetch, None).await;
            }
            Ok(tx) => tx,
        };
        struct Leader<'a>(&'a Cache, Key, watch::Sender<Option<Option<Arc<Entry>>>>);
        impl Drop for Leader<'_> {
            fn drop(&mut self) {
                self.0.inner.flights.lock().remove(&self.1);
                self.2.send_if_modified(|v| {
                    if v.is_none() {
                        *v = Some(None);
                        true
                    } else {
                        false
                    }
                });
            }
        }
        let leader = Leader(self, req.key, tx);
        // The previous leader may have stored it between our lookup and now.
        if let Some(entry) = self.inner.local.get(&req.key).await {
            if entry.freshness(Instant::now(), req.strategy.ttl, req.strategy.swr) == Freshness::Fresh {
                leader.2.send_replace(Some(Some(entry.clone())));
                self.inner.metrics.hits_ttl.inc();
                return Filled::Hit(entry, Status::Ttl);
            }
        }
        let (hit, snapshot) = self.shared_lookup(req, &tables, refill).await;
        if let Some(hit) = hit {
            leader.2.send_replace(Some(Some(hit.0.clone())));
            return Filled::Hit(hit.0, hit.1);
        }
        let r = self.fetch_and_store(req, tables, fetch, snapshot).await;
        if let Filled::Miss(e) = &r {
            leader.2.send_replace(Some(Some(e.clone())));
        }
        drop(leader);
        r
    }

    /// The shared tier's entry for `req` (a hit, if any) and its snapshot for storing the result
    /// of a miss.
    async fn shared_lookup(&self, req: &Request, tables: &[String], refill: impl FnOnce() -> Refill) -> (Option<(Arc<Entry>, Status)>, Option<SharedSnapshot>) {
        let Some(shared) = self.inner.shared.as_ref() else { return (None, None) };
        let epoch = self.epoch(&req.database);
        let scope = EntryScope { database: req.database.to_string(), tags: req.strategy.tags.clone(), tables: tables.to_vec() };
        let (bytes, snapshot) = shared.lookup(&req.key.shared_name(), &scope).await;
        (self.shared_hit(req, bytes, epoch, refill).await, snapshot)
    }

    async fn shared_hit(&self, req: &Request, bytes: Option<Bytes>, epoch: (u64, u64), refill: impl FnOnce() -> Refill) -> Option<(Arc<Entry>, Status)> {
        let entry = Entry::decode(bytes?)?;
        if *entry.database != *req.database || self.epoch(&req.database) != epoch {
            // Another database's bytes under this name, or an invalidation arrived meanwhile.
            return None;
        }
        let entry = Arc::new(entry);
        let hit = self.judge(req, entry.clone(), refill)?;
        self.inner.metrics.shared_hits.inc();
        if self.put_local(&entry) {
            self.mark_tables(&entry);
            self.inner.local.insert(req.key, entry).await;
            if self.epoch(&req.database) != epoch {
                self.inner.local.invalidate(&req.key).await;
            }
        }
        Some(hit)
    }

    async fn fetch_and_store<E, Fut>(&self, req: &Request, tables: Vec<String>, fetch: Fut, snapshot: Option<SharedSnapshot>) -> Filled<E>
    where
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let epoch = self.epoch(&req.database);
        match fetch.await {
            Ok(payload) => {
                self.inner.metrics.misses.inc();
                Filled::Miss(self.store(req, payload, tables, epoch, snapshot).await)
            }
            Err(e) => {
                self.inner.metrics.bypass(Bypass::Error);
                Filled::Failed(e)
            }
        }
    }

    /// Stores a result read while the database's epoch was `epoch` (unless an invalidation ran
    /// since, it is too large, or the quota is used up) and writes it through to the shared tier.
    async fn store(&self, req: &Request, payload: Bytes, tables: Vec<String>, epoch: (u64, u64), snapshot: Option<SharedSnapshot>) -> Arc<Entry> {
        let s = &req.strategy;
        let entry = Arc::new(Entry::new(req.database.clone(), payload, s.ttl, s.swr, s.tags.clone(), tables));
        if entry.lifetime().is_zero() {
            return entry;
        }
        if entry.payload.len() as u64 > self.inner.cfg.max_entry_bytes {
            self.inner.metrics.bypass(Bypass::TooLarge);
            return entry;
        }
        if self.epoch(&req.database) != epoch {
            self.inner.metrics.bypass(Bypass::Raced);
            return entry;
        }
        if !self.put_local(&entry) {
            return entry;
        }
        // Mark the tables before inserting: an invalidation of them that looks after this sees
        // the mark and registers its predicate; one that looked before bumped the epoch first,
        // which the re-check below sees.
        self.mark_tables(&entry);
        self.inner.local.insert(req.key, entry.clone()).await;
        if self.epoch(&req.database) != epoch {
            // An invalidation ran between the check above and the insert, and its predicate may be
            // older than this entry: drop it.
            self.inner.local.invalidate(&req.key).await;
            self.inner.metrics.bypass(Bypass::Raced);
            return entry;
        }
        self.inner.metrics.stores.inc();
        if let Some(shared) = self.inner.shared.clone() {
            let (name, bytes, ttl) = (req.key.shared_name(), entry.encode(), entry.lifetime());
            let scope = EntryScope { database: entry.database.to_string(), tags: entry.tags.clone(), tables: entry.tables.clone() };
            self.inner.tracker.spawn(async move { shared.put_scoped(&name, bytes, ttl, &scope, snapshot).await });
        }
        entry
    }

    /// Accounts an entry about to be inserted locally; false when the database's quota is full.
    fn put_local(&self, entry: &Entry) -> bool {
        let w = entry.weight();
        let quota = self.inner.cfg.max_bytes_per_database;
        {
            let mut per_db = self.inner.db_bytes.lock();
            let used = per_db.entry(entry.database.clone()).or_insert(0);
            if quota != 0 && *used + w > quota {
                drop(per_db);
                self.inner.metrics.bypass(Bypass::Quota);
                return false;
            }
            *used += w;
        }
        self.inner.metrics.bytes.inc_by(w as i64);
        self.inner.metrics.entries.inc();
        true
    }

    fn mark_tables(&self, entry: &Entry) {
        if entry.tables.is_empty() || !self.inner.cfg.invalidate_on_write {
            return;
        }
        let mut read = self.inner.read_tables.lock();
        if read.saturated {
            return;
        }
        if read.set.len().saturating_add(entry.tables.len()) > self.inner.cfg.max_table_marks {
            read.set = HashSet::new();
            read.saturated = true;
            return;
        }
        for t in &entry.tables {
            read.set.insert((entry.database.clone(), t.clone()));
        }
    }

    /// Whether any stored entry of `database` read one of `tables` since their last
    /// invalidation; clears those marks.
    fn take_tables(&self, database: &str, tables: &[String]) -> bool {
        let mut read = self.inner.read_tables.lock();
        if read.saturated {
            return true;
        }
        let db: Arc<str> = database.into();
        let mut any = false;
        for t in tables {
            any |= read.set.remove(&(db.clone(), t.clone()));
        }
        any
    }

    fn epoch(&self, database: &Arc<str>) -> (u64, u64) {
        let e = self.inner.epochs.lock();
        (e.0, e.1.get(database).copied().unwrap_or(0))
    }

    fn bump(&self, database: Option<&str>) {
        let mut e = self.inner.epochs.lock();
        match database {
            Some(db) => match e.1.get_mut(db) {
                Some(n) => *n += 1,
                None => {
                    e.1.insert(db.into(), 1);
                }
            },
            None => e.0 += 1,
        }
    }

    /// Bytes held for `database` (tests, metrics).
    pub fn database_bytes(&self, database: &str) -> u64 {
        self.inner.db_bytes.lock().get(database).copied().unwrap_or(0)
    }

    /// Runs moka's pending maintenance (evictions, expiries) now; for tests.
    pub async fn run_pending_tasks(&self) {
        self.inner.local.run_pending_tasks().await;
    }
}
