//! The tier shared by several tidepool nodes: [`RedisTier`], a [`SharedTier`](super::SharedTier)
//! over Redis. It owns what is stored in Redis and under which names ([`keys`]), the invalidation
//! broadcast ([`message`], [`subscriber`]), its counters and rate-limited logging ([`metrics`]);
//! and the types the core and a tier exchange ([`EntryScope`], [`SharedSnapshot`], [`WeakCache`]).
//!
//! Failure policy: Redis is an optimisation. Every call has a timeout; an error or timeout is
//! counted (`tidepool_cache_redis_errors_total`), logged at most once per interval, and turned
//! into "miss" (get) or "dropped" (put, publish). Writes go through bounded queues to writer
//! tasks, so a slow or dead Redis costs a request nothing and memory stays bounded.
//!
//! Consistency across nodes (see docs/cache-multinode.md):
//! - every invalidation is applied to Redis before it is broadcast: it replaces the random
//!   *generation* of each (database), (database, tag), (database, table) it names; an entry in
//!   Redis records the generations it was written under and a read that finds one changed treats
//!   the entry as absent. So an invalidation on any node hides the Redis copies written by every
//!   node, with no set of keys per tag to maintain and no race between "write entry" and
//!   "invalidate" (a write that read the old generation stores an entry that is already hidden);
//! - the broadcast (pub/sub, at most once) tells the other nodes to drop their local entries;
//! - a node whose subscription was (re)established drops all its local entries, because it may
//!   have missed broadcasts while disconnected.

mod keys;
mod message;
mod metrics;
mod redis;
mod subscriber;

use std::sync::{Arc, Weak};

use super::{Cache, Inner};

pub use self::metrics::TierMetrics;
pub use self::redis::{OnInvalidation, OnReconnect, RedisTier, RedisTierError, ENTRY_OVERHEAD};

/// What a cached entry depends on: its database, the tags it was stored with, the tables it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryScope {
    pub database: String,
    pub tags: Vec<String>,
    pub tables: Vec<String>,
}

/// What a shared-tier lookup saw, opaque to the core; see
/// [`SharedTier::lookup`](super::SharedTier::lookup).
#[derive(Debug, Clone, Default)]
pub struct SharedSnapshot {
    /// (generation key, generation) pairs, in the tier's order.
    generations: Vec<(String, Vec<u8>)>,
    /// The tier's subscription session at the lookup.
    session: u64,
}

/// A handle that does not keep the cache alive (for callbacks held by the shared tier, which the
/// cache itself holds).
#[derive(Clone)]
pub struct WeakCache(Weak<Inner>);

impl WeakCache {
    pub fn upgrade(&self) -> Option<Cache> {
        self.0.upgrade().map(|inner| Cache { inner })
    }
}

impl Cache {
    pub fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.inner))
    }
}
