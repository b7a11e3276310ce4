//! The query cache. On this branch only the interface of the tier shared by several nodes
//! ([`SharedTier`], [`Invalidation`]) and its Redis implementation ([`shared`]); the in-memory
//! core is built on the `cache` branch, which defines the same interface.

pub mod shared;

/// A tier shared by several tidepool nodes (Redis). Never fails a request: errors are logged and counted inside.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync + 'static {
    async fn get(&self, key: &[u8]) -> Option<bytes::Bytes>;
    async fn put(&self, key: &[u8], value: bytes::Bytes, ttl: std::time::Duration);
    async fn publish(&self, event: Invalidation);
    /// Like [`SharedTier::put`], naming what the entry depends on, so that an invalidation
    /// published by any node also makes the shared copy unreachable. `put` alone must be
    /// conservative (the Redis tier makes such an entry unreachable on any invalidation).
    async fn put_scoped(&self, key: &[u8], value: bytes::Bytes, ttl: std::time::Duration, scope: &EntryScope) {
        let _ = scope;
        self.put(key, value, ttl).await
    }
}

/// An invalidation to apply on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Tags { database: String, tags: Vec<String> },
    All { database: String },
    Tables { database: String, tables: Vec<String> },
}

/// What a cached entry depends on: its database, the tags it was stored with, the tables it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryScope {
    pub database: String,
    pub tags: Vec<String>,
    pub tables: Vec<String>,
}
