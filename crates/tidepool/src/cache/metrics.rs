//! The cache's Prometheus metrics (registered under `tidepool_cache_…` in the application's
//! registry): hits by status, misses, bypasses by reason, stores, evictions, bytes and entries
//! held, invalidations by kind, background refreshes and entries found in the shared tier.
//! Hot-path counters are resolved once, so a hit touches two atomics and no lock.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Why a request with a cache strategy was not served from, or stored in, the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The request had no strategy (`no-cache`, no ttl/swr).
    NoStrategy,
    /// `[cache] enabled = false`.
    Disabled,
    /// Inside an interactive transaction or a batch transaction.
    Transaction,
    /// The plan or SQL writes, is raw, or is not a read operation.
    Write,
    /// Calls a volatile/stable (or unknown) function or a value generator.
    Volatile,
    /// The result was an error (never stored).
    Error,
    /// Larger than `max_entry_bytes` (served, not stored).
    TooLarge,
    /// The database's `max_bytes_per_database` is used up (served, not stored).
    Quota,
    /// An invalidation ran while the result was being read (served, not stored).
    Raced,
}

impl Bypass {
    pub fn label(self) -> &'static str {
        match self {
            Bypass::NoStrategy => "no_strategy",
            Bypass::Disabled => "disabled",
            Bypass::Transaction => "transaction",
            Bypass::Write => "write",
            Bypass::Volatile => "volatile",
            Bypass::Error => "error",
            Bypass::TooLarge => "too_large",
            Bypass::Quota => "quota",
            Bypass::Raced => "raced",
        }
    }
}

#[derive(Clone, Default)]
pub struct CacheMetrics {
    hits: Family<Labels, Counter>,
    pub hits_ttl: Counter,
    pub hits_swr: Counter,
    pub misses: Counter,
    bypasses: Family<Labels, Counter>,
    pub stores: Counter,
    pub evictions: Counter,
    pub bytes: Gauge,
    pub entries: Gauge,
    invalidations: Family<Labels, Counter>,
    pub refreshes: Counter,
    pub shared_hits: Counter,
}

impl CacheMetrics {
    pub fn new() -> CacheMetrics {
        let m = CacheMetrics::default();
        let hits_ttl = m.hits.get_or_create(&vec![("status", "ttl")]).clone();
        let hits_swr = m.hits.get_or_create(&vec![("status", "swr")]).clone();
        CacheMetrics { hits_ttl, hits_swr, ..m }
    }

    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("cache");
        r.register("hits", "Requests served from the cache, by status (ttl: fresh, swr: stale, refreshed in the background)", self.hits.clone());
        r.register("misses", "Cacheable requests run on the database", self.misses.clone());
        r.register("bypasses", "Requests not served from or stored in the cache, by reason", self.bypasses.clone());
        r.register("stores", "Results stored in the cache", self.stores.clone());
        r.register("evictions", "Entries evicted for space", self.evictions.clone());
        r.register("bytes", "Bytes of cached results held in memory", self.bytes.clone());
        r.register("entries", "Entries held in memory", self.entries.clone());
        r.register("invalidations", "Invalidations applied, by kind (tags, all, tables, remote)", self.invalidations.clone());
        r.register("refreshes", "Background refreshes of stale (swr) entries", self.refreshes.clone());
        r.register("shared_hits", "Local misses answered by the shared tier", self.shared_hits.clone());
    }

    pub fn bypass(&self, why: Bypass) {
        self.bypasses.get_or_create(&vec![("reason", why.label())]).inc();
    }

    pub fn invalidation(&self, kind: &'static str) {
        self.invalidations.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// Bypasses counted for `why` so far (tests).
    pub fn bypassed(&self, why: Bypass) -> u64 {
        self.bypasses.get_or_create(&vec![("reason", why.label())]).get()
    }
}
