//! The cache's state machine with paused tokio time: miss → ttl → swr (one refresh) → refreshed
//! ttl → miss after ttl + swr; single-flight of concurrent fills; invalidation by tag, table and
//! all; the epoch check; size and quota bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use super::*;

fn cache(cfg: CacheConfig) -> Cache {
    Cache::new(cfg, None, TaskTracker::new())
}

fn req(n: u8, ttl: u64, swr: u64, tags: &[&str]) -> Request {
    Request {
        key: Key([n; 32]),
        database: "app".into(),
        strategy: Strategy { ttl: Duration::from_secs(ttl), swr: Duration::from_secs(swr), tags: tags.iter().map(|t| t.to_string()).collect() },
    }
}

/// A refill that counts its runs and yields `payload`.
fn refill(runs: &Arc<AtomicUsize>, payload: &'static str) -> impl FnOnce() -> Refill {
    let runs = runs.clone();
    move || {
        Box::new(move || {
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Some(Bytes::from_static(payload.as_bytes()))
            })
        })
    }
}

async fn fill(c: &Cache, r: &Request, payload: &'static str, tables: &[&str]) -> Arc<Entry> {
    let no_refill = Arc::new(AtomicUsize::new(0));
    match c
        .fill::<(), _>(r, tables.iter().map(|t| t.to_string()).collect(), refill(&no_refill, "x"), async { Ok(Bytes::from_static(payload.as_bytes())) })
        .await
    {
        Filled::Miss(e) => e,
        _ => panic!("expected a miss"),
    }
}

async fn status_of(c: &Cache, r: &Request, runs: &Arc<AtomicUsize>) -> Option<(Status, Bytes)> {
    c.lookup(r, refill(runs, "new")).await.map(|(e, s)| (s, e.payload.clone()))
}

#[tokio::test(start_paused = true)]
async fn miss_ttl_swr_one_refresh_then_expired() {
    let c = cache(CacheConfig::default());
    let r = req(1, 10, 5, &[]);
    let runs = Arc::new(AtomicUsize::new(0));
    assert!(status_of(&c, &r, &runs).await.is_none());
    fill(&c, &r, "old", &[]).await;
    assert_eq!(status_of(&c, &r, &runs).await, Some((Status::Ttl, Bytes::from_static(b"old"))));
    tokio::time::advance(Duration::from_secs(10)).await;
    // Stale: served, and exactly one refresh however many stale hits there are.
    for _ in 0..5 {
        assert_eq!(status_of(&c, &r, &runs).await, Some((Status::Swr, Bytes::from_static(b"old"))));
    }
    c.inner.tracker.close();
    c.inner.tracker.wait().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(&c, &r, &runs).await, Some((Status::Ttl, Bytes::from_static(b"new"))));
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(status_of(&c, &r, &runs).await.is_none(), "past ttl + swr: a miss");
    // A request that accepts less staleness judges the same entry by its own strategy.
    fill(&c, &r, "v", &[]).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(status_of(&c, &req(1, 2, 0, &[]), &runs).await, None);
    assert_eq!(status_of(&c, &req(1, 2, 5, &[]), &runs).await.map(|s| s.0), Some(Status::Swr));
}

#[tokio::test(start_paused = true)]
async fn concurrent_fills_of_one_key_fetch_once() {
    let c = cache(CacheConfig::default());
    let r = req(2, 60, 0, &[]);
    let fetches = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (c, r, fetches, rx) = (c.clone(), r.clone(), fetches.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let runs = Arc::new(AtomicUsize::new(0));
            let fetch = async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                if let Some(rx) = rx.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<_, ()>(Bytes::from_static(b"once"))
            };
            match c.fill(&r, vec![], refill(&runs, "x"), fetch).await {
                Filled::Miss(e) | Filled::Hit(e, _) => e.payload.clone(),
                Filled::Failed(()) => Bytes::new(),
            }
        }));
    }
    tokio::task::yield_now().await;
    tx.send(()).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Bytes::from_static(b"once"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_leader_lets_followers_fetch_and_nothing_is_stored() {
    let c = cache(CacheConfig::default());
    let r = req(3, 60, 0, &[]);
    let runs = Arc::new(AtomicUsize::new(0));
    match c.fill::<&str, _>(&r, vec![], refill(&runs, "x"), async { Err("boom") }).await {
        Filled::Failed(e) => assert_eq!(e, "boom"),
        _ => panic!("expected the failure"),
    }
    assert!(status_of(&c, &r, &runs).await.is_none());
    assert!(c.inner.flights.lock().is_empty(), "the flight is gone");
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_tag_table_and_all() {
    let c = cache(CacheConfig::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let (a, b, other) = (req(4, 60, 0, &["users"]), req(5, 60, 0, &["posts"]), Request { database: "other".into(), ..req(6, 60, 0, &["users"]) });
    fill(&c, &a, "a", &["User"]).await;
    fill(&c, &b, "b", &["Post"]).await;
    fill(&c, &other, "o", &["User"]).await;
    c.invalidate(Invalidation::Tags { database: "app".into(), tags: vec!["users".into()] });
    assert!(status_of(&c, &a, &runs).await.is_none());
    assert!(status_of(&c, &b, &runs).await.is_some());
    assert!(status_of(&c, &other, &runs).await.is_some(), "another database keeps its entries");
    c.apply_remote(&Invalidation::Tables { database: "app".into(), tables: vec!["Post".into()] });
    assert!(status_of(&c, &b, &runs).await.is_none());
    c.invalidate(Invalidation::All { database: "other".into() });
    assert!(status_of(&c, &other, &runs).await.is_none());
    fill(&c, &a, "a", &[]).await;
    c.clear_local();
    assert!(status_of(&c, &a, &runs).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_result_read_across_an_invalidation_is_not_stored() {
    let c = cache(CacheConfig::default());
    let r = req(7, 60, 0, &[]);
    let runs = Arc::new(AtomicUsize::new(0));
    let c2 = c.clone();
    let fetch = async move {
        c2.invalidate(Invalidation::All { database: "app".into() });
        Ok::<_, ()>(Bytes::from_static(b"raced"))
    };
    assert!(matches!(c.fill(&r, vec![], refill(&runs, "x"), fetch).await, Filled::Miss(_)));
    assert!(status_of(&c, &r, &runs).await.is_none());
    assert_eq!(c.metrics().bypassed(Bypass::Raced), 1);
}

#[tokio::test(start_paused = true)]
async fn oversized_entries_and_quota() {
    let cfg = CacheConfig { max_entry_bytes: 1000, max_bytes_per_database: 1500, ..CacheConfig::default() };
    let c = cache(cfg);
    let runs = Arc::new(AtomicUsize::new(0));
    let big: &'static str = Box::leak("x".repeat(1001).into_boxed_str());
    let r = req(8, 60, 0, &[]);
    fill(&c, &r, big, &[]).await;
    assert!(status_of(&c, &r, &runs).await.is_none());
    assert_eq!(c.metrics().bypassed(Bypass::TooLarge), 1);
    let mid: &'static str = Box::leak("y".repeat(900).into_boxed_str());
    fill(&c, &req(9, 60, 0, &[]), mid, &[]).await;
    fill(&c, &req(10, 60, 0, &[]), mid, &[]).await;
    assert!(status_of(&c, &req(9, 60, 0, &[]), &runs).await.is_some());
    assert!(status_of(&c, &req(10, 60, 0, &[]), &runs).await.is_none(), "over the database's quota");
    assert_eq!(c.metrics().bypassed(Bypass::Quota), 1);
    assert!(c.database_bytes("app") <= 1500);
}

#[tokio::test(start_paused = true)]
async fn table_invalidations_on_write_drop_only_readers_of_the_table() {
    let c = cache(CacheConfig { invalidate_on_write: true, ..CacheConfig::default() });
    let runs = Arc::new(AtomicUsize::new(0));
    let (users, posts) = (req(11, 60, 0, &[]), req(12, 60, 0, &[]));
    fill(&c, &users, "u", &["User"]).await;
    fill(&c, &posts, "p", &["Post"]).await;
    c.written("app", vec!["Comment".into()]);
    c.written("other", vec!["User".into()]);
    assert!(status_of(&c, &users, &runs).await.is_some());
    c.written("app", vec!["User".into()]);
    assert!(status_of(&c, &users, &runs).await.is_none());
    assert!(status_of(&c, &posts, &runs).await.is_some());
    // Stored again after the write: a later write drops it again.
    fill(&c, &users, "u2", &["User"]).await;
    c.written("app", vec!["User".into(), "Post".into()]);
    assert!(status_of(&c, &users, &runs).await.is_none());
    assert!(status_of(&c, &posts, &runs).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn table_marks_are_bounded_and_stay_correct_when_full() {
    let c = cache(CacheConfig { invalidate_on_write: true, max_table_marks: 4, ..CacheConfig::default() });
    let runs = Arc::new(AtomicUsize::new(0));
    // Client SQL names tables: many distinct names never grow the marks past the bound.
    for i in 0..50u8 {
        fill(&c, &req(100 + i, 60, 0, &[]), "x", &[&format!("t{i}")]).await;
        assert!(c.inner.read_tables.lock().set.len() <= 4);
    }
    assert!(c.inner.read_tables.lock().saturated);
    // Saturated: a write to any table still drops the entries that read it.
    c.written("app", vec!["t49".into()]);
    assert!(status_of(&c, &req(149, 60, 0, &[]), &runs).await.is_none(), "the reader of t49 is dropped");
    assert!(status_of(&c, &req(100, 60, 0, &[]), &runs).await.is_some(), "the reader of t0 is kept");
}

/// An in-memory stand-in for the shared tier.
#[derive(Default)]
struct MemTier {
    map: parking_lot::Mutex<std::collections::HashMap<Vec<u8>, Bytes>>,
    published: parking_lot::Mutex<Vec<Invalidation>>,
}

#[async_trait::async_trait]
impl SharedTier for MemTier {
    async fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.map.lock().get(key).cloned()
    }
    async fn put(&self, key: &[u8], value: Bytes, _ttl: Duration) {
        self.map.lock().insert(key.to_vec(), value);
    }
    async fn publish(&self, event: Invalidation) {
        self.published.lock().push(event);
    }
}

#[tokio::test(start_paused = true)]
async fn a_shared_tier_serves_another_node_and_carries_invalidations() {
    let tier = Arc::new(MemTier::default());
    let (a, b) = (
        Cache::new(CacheConfig::default(), Some(tier.clone()), TaskTracker::new()),
        Cache::new(CacheConfig::default(), Some(tier.clone()), TaskTracker::new()),
    );
    let r = req(13, 60, 0, &["users"]);
    fill(&a, &r, "from-a", &["User"]).await;
    a.inner.tracker.close();
    a.inner.tracker.wait().await;
    assert_eq!(tier.map.lock().len(), 1, "written through");
    assert!(tier.map.lock().keys().all(|k| k.len() == "tidepool:c1:".len() + 64));
    // Node B misses locally, finds it in the shared tier: a ttl hit, no fetch.
    let runs = Arc::new(AtomicUsize::new(0));
    match b.fill::<(), _>(&r, vec![], refill(&runs, "x"), async { panic!("must not fetch") }).await {
        Filled::Hit(e, Status::Ttl) => assert_eq!(e.payload, Bytes::from_static(b"from-a")),
        _ => panic!("expected a shared hit"),
    }
    assert_eq!(b.metrics().shared_hits.get(), 1);
    assert!(status_of(&b, &r, &runs).await.is_some(), "now local on B too");
    // An invalidation on A is published; applied on B it drops B's copy without re-publishing.
    a.invalidate(Invalidation::Tags { database: "app".into(), tags: vec!["users".into()] });
    a.inner.tracker.wait().await;
    let published = tier.published.lock().clone();
    assert_eq!(published.len(), 1);
    b.apply_remote(&published[0]);
    assert!(status_of(&b, &r, &runs).await.is_none());
    assert_eq!(tier.published.lock().len(), 1, "apply_remote does not publish");
    // Bytes under the key that are not an entry of this database are ignored.
    tier.map.lock().insert(r.key.shared_name(), Bytes::from_static(b"garbage"));
    b.clear_local();
    let fetched = matches!(b.fill::<(), _>(&r, vec![], refill(&runs, "x"), async { Ok(Bytes::from_static(b"db")) }).await, Filled::Miss(_));
    assert!(fetched);
}
