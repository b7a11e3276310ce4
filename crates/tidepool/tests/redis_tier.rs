//! The Redis shared tier against a real `redis-server` started on a free port: two `RedisTier`s
//! in one process are two nodes (different node ids). Entries flow between them, invalidations
//! are broadcast and hide other nodes' Redis entries, Redis going away costs nothing but a miss,
//! and coming back re-subscribes (and asks the cache to clear its local entries).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tidepool::cache::shared::RedisTier;
use tidepool::cache::{EntryScope, Invalidation, SharedTier};
use tidepool::config::CacheConfig;
use tidepool_testkit::TestRedis;

/// `max_entry_bytes` of the tests; the tier bounds values at this + `ENTRY_OVERHEAD`.
const MAX_ENTRY: u64 = 64 << 10;
const MAX_VALUE: usize = MAX_ENTRY as usize + tidepool::cache::shared::ENTRY_OVERHEAD;
const HOUR: Duration = Duration::from_secs(3600);

/// One node: its tier and what its callbacks saw.
struct Node {
    tier: Arc<RedisTier>,
    received: Arc<Mutex<Vec<Invalidation>>>,
    reconnects: Arc<AtomicUsize>,
}

fn config(url: &str) -> CacheConfig {
    CacheConfig {
        redis_url: Some(url.to_owned()),
        // Generous: the machine is shared; these tests are about behaviour, not speed.
        redis_timeout: Duration::from_millis(500),
        redis_reconnect_max_delay: Duration::from_millis(200),
        max_entry_bytes: MAX_ENTRY,
        ..CacheConfig::default()
    }
}

async fn node_with(config: CacheConfig) -> Node {
    let tier = RedisTier::new(&config).unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let (r, c) = (received.clone(), reconnects.clone());
    tier.subscribe(
        Arc::new(move |ev: &Invalidation| r.lock().push(ev.clone())),
        Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let node = Node { tier, received, reconnects };
    wait_until("subscribed", || node.reconnects.load(Ordering::SeqCst) >= 1).await;
    node
}

async fn node(redis: &TestRedis) -> Node {
    node_with(config(&redis.url())).await
}

/// Polls `cond` until it holds; fails the test after 20 s (a hang guard, not a timing check).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Polls an async read until it returns `Some`.
async fn eventually_get(tier: &RedisTier, key: &[u8]) -> Bytes {
    for _ in 0..2000 {
        if let Some(v) = tier.get(key).await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("entry {key:?} never became readable: {:?}", tier.metrics());
}

fn scope(db: &str, tags: &[&str], tables: &[&str]) -> EntryScope {
    EntryScope { database: db.into(), tags: tags.iter().map(|s| (*s).into()).collect(), tables: tables.iter().map(|s| (*s).into()).collect() }
}

fn tags(db: &str, tags: &[&str]) -> Invalidation {
    Invalidation::Tags { database: db.into(), tags: tags.iter().map(|s| (*s).into()).collect() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_put_on_one_node_is_read_on_another() {
    let redis = TestRedis::start().unwrap();
    let (a, b) = (node(&redis).await, node(&redis).await);
    assert_ne!(a.tier.node_id(), b.tier.node_id());
    assert_eq!(b.tier.get(b"k1").await, None);
    a.tier.put_scoped(b"k1", Bytes::from_static(b"rows of k1"), HOUR, &scope("app", &["users"], &[]), None).await;
    assert_eq!(eventually_get(&b.tier, b"k1").await, Bytes::from_static(b"rows of k1"));
    // Stored under the documented name with a Redis TTL (ttl + swr, capped).
    let pttl: i64 = redis.command(&format!("PTTL tidepool:v1:{}", hex::encode(b"k1"))).unwrap().trim_start_matches(':').parse().unwrap();
    assert!(pttl > 0 && pttl <= HOUR.as_millis() as i64, "{pttl}");
    // An unscoped put works too; a zero TTL or an oversized value is not stored.
    // (Scoped away from the invalidations still queued from the outage, which may land later.)
    a.tier.put_scoped(b"k2", Bytes::from_static(b"v2"), HOUR, &scope("other", &[], &[]), None).await;
    assert_eq!(eventually_get(&b.tier, b"k2").await, Bytes::from_static(b"v2"));
    a.tier.put(b"zero", Bytes::from_static(b"v"), Duration::ZERO).await;
    a.tier.put(b"big", Bytes::from(vec![0u8; MAX_VALUE + 1]), HOUR).await;
    a.tier.put(b"k3", Bytes::from_static(b"v3"), HOUR).await;
    eventually_get(&b.tier, b"k3").await; // writes are processed in order: the two above were seen
    assert_eq!(b.tier.get(b"zero").await, None);
    assert_eq!(b.tier.get(b"big").await, None);
    assert!(b.tier.metrics().hits.get() >= 3);
    assert_eq!(a.tier.metrics().errors.get() + b.tier.metrics().errors.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_other_nodes_but_not_the_sender() {
    let redis = TestRedis::start().unwrap();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let first = tags("app", &["users", "posts"]);
    b.tier.publish(first.clone()).await;
    wait_until("A receives B's invalidation", || a.received.lock().len() == 1).await;
    assert_eq!(a.received.lock()[0], first);
    // B's own message reached B's subscription before A's next one (one channel, in order): when
    // B has A's message, it has skipped its own.
    let second = Invalidation::All { database: "app".into() };
    a.tier.publish(second.clone()).await;
    wait_until("B receives A's invalidation", || !b.received.lock().is_empty()).await;
    assert_eq!(*b.received.lock(), vec![second.clone()]);
    let third = Invalidation::Tables { database: "app".into(), tables: vec!["public.users".into()] };
    b.tier.publish(third.clone()).await;
    wait_until("A receives the table invalidation", || a.received.lock().len() == 2).await;
    assert_eq!(*a.received.lock(), vec![first, third]);
    assert_eq!(a.tier.metrics().remote_invalidations.get(), 2);
    assert_eq!(b.tier.metrics().remote_invalidations.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_hides_the_redis_entries_of_other_nodes() {
    let redis = TestRedis::start().unwrap();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let entries: [(&[u8], EntryScope); 6] = [
        (b"users", scope("app", &["users"], &[])),
        (b"posts", scope("app", &["posts"], &["public.posts"])),
        (b"both", scope("app", &["users", "posts"], &[])),
        (b"other_db", scope("other", &["users"], &[])),
        (b"untagged", scope("app", &[], &["public.users"])),
        (b"unscoped", EntryScope::default()),
    ];
    for (key, s) in &entries {
        if s == &EntryScope::default() {
            b.tier.put(key, Bytes::copy_from_slice(key), HOUR).await;
        } else {
            b.tier.put_scoped(key, Bytes::copy_from_slice(key), HOUR, s, None).await;
        }
    }
    for (key, _) in &entries {
        eventually_get(&a.tier, key).await;
    }
    // Published by A, applied in Redis before the broadcast: once B hears it, it holds in Redis.
    let publish = |n: &Node, ev: Invalidation| {
        let tier = n.tier.clone();
        async move { tier.publish(ev).await }
    };
    let readable = |keys: Vec<&'static [u8]>| {
        let tier = b.tier.clone();
        async move {
            let mut out = Vec::new();
            for k in keys {
                if tier.get(k).await.is_some() {
                    out.push(k);
                }
            }
            out
        }
    };
    let all: Vec<&'static [u8]> = vec![b"users", b"posts", b"both", b"other_db", b"untagged", b"unscoped"];
    publish(&a, tags("app", &["users"])).await;
    wait_until("B hears the tag invalidation", || b.received.lock().len() == 1).await;
    // Unscoped entries cannot know their tags: any invalidation hides them.
    assert_eq!(readable(all.clone()).await, vec![b"posts" as &[u8], b"other_db", b"untagged"]);
    assert!(b.tier.metrics().invalidated.get() >= 3);

    publish(&a, Invalidation::Tables { database: "app".into(), tables: vec!["public.posts".into()] }).await;
    wait_until("B hears the table invalidation", || b.received.lock().len() == 2).await;
    assert_eq!(readable(all.clone()).await, vec![b"other_db" as &[u8], b"untagged"]);

    publish(&a, Invalidation::All { database: "app".into() }).await;
    wait_until("B hears invalidate-all", || b.received.lock().len() == 3).await;
    assert_eq!(readable(all.clone()).await, vec![b"other_db" as &[u8]]);

    // A new entry written after the invalidation is readable again.
    b.tier.put_scoped(b"users", Bytes::from_static(b"fresh"), HOUR, &scope("app", &["users"], &[]), None).await;
    assert_eq!(eventually_get(&a.tier, b"users").await, Bytes::from_static(b"fresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_in_redis_are_misses() {
    let redis = TestRedis::start().unwrap();
    let a = node(&redis).await;
    let name = |k: &[u8]| format!("tidepool:v1:{}", hex::encode(k));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let setter = conn.clone();
    let set = |k: String, v: Vec<u8>| {
        let mut conn = setter.clone();
        async move { redis::cmd("SET").arg(k).arg(v).query_async::<()>(&mut conn).await.unwrap() }
    };
    // Not an envelope; an envelope cut short; an envelope naming a key outside our namespace.
    set(name(b"garbage"), b"\x00\xff not ours".to_vec()).await;
    set(name(b"short"), b"TPE1\x01\x00\x40tidepool".to_vec()).await;
    let mut foreign = b"TPE1\x01\x00\x07foo:bar\x00".to_vec();
    foreign.extend_from_slice(b"value");
    set(name(b"foreign"), foreign).await;
    // A valid entry, then the same grown past max_entry_bytes by someone else: not read whole.
    a.tier.put(b"big", Bytes::from_static(b"small"), HOUR).await;
    eventually_get(&a.tier, b"big").await;
    let key = name(b"big");
    redis::cmd("APPEND").arg(&key).arg(vec![b'x'; MAX_VALUE + 100_000]).query_async::<()>(&mut conn).await.unwrap();
    // Another type under our name: a Redis error, counted, still a miss.
    redis::cmd("LPUSH").arg(name(b"list")).arg("x").query_async::<()>(&mut conn).await.unwrap();
    let rejected = a.tier.metrics().rejected.get();
    for k in [&b"garbage"[..], b"short", b"foreign", b"big"] {
        assert_eq!(a.tier.get(k).await, None, "{}", String::from_utf8_lossy(k));
    }
    assert_eq!(a.tier.metrics().rejected.get(), rejected + 4);
    let errors = a.tier.metrics().errors.get();
    assert_eq!(a.tier.get(b"list").await, None);
    assert_eq!(a.tier.metrics().errors.get(), errors + 1);
    // A garbage generation value makes the entries depending on it misses, never a panic.
    a.tier.put_scoped(b"g", Bytes::from_static(b"v"), HOUR, &scope("app", &["t"], &[]), None).await;
    eventually_get(&a.tier, b"g").await;
    let gen_key = format!("tidepool:v1:gen:tag:{}:{}", hex::encode("app"), hex::encode("t"));
    set(gen_key, vec![0xff; 1000]).await;
    assert_eq!(a.tier.get(b"g").await, None);
    // Garbage on the invalidation channel is ignored (and counted).
    for payload in [b"not json".to_vec(), br#"{"v":1,"node":"x","kind":"nope","db":"a"}"#.to_vec(), vec![b'['; 200_000]] {
        redis::cmd("PUBLISH").arg("tidepool:v1:invalidate").arg(payload).query_async::<()>(&mut conn).await.unwrap();
    }
    redis::cmd("PUBLISH").arg("tidepool:v1:invalidate").arg(r#"{"v":1,"node":"x","kind":"all","db":"z"}"#).query_async::<()>(&mut conn).await.unwrap();
    wait_until("the valid message arrives", || !a.received.lock().is_empty()).await;
    assert_eq!(*a.received.lock(), vec![Invalidation::All { database: "z".into() }]);
    assert!(a.tier.metrics().rejected.get() >= rejected + 4 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_costs_misses_and_coming_back_resubscribes() {
    let mut redis = TestRedis::start().unwrap();
    let mut cfg = config(&redis.url());
    cfg.redis_queue = 4;
    let (a, b) = (node_with(cfg.clone()).await, node_with(cfg).await);
    a.tier.put(b"k", Bytes::from_static(b"v"), HOUR).await;
    eventually_get(&b.tier, b"k").await;

    redis.kill();
    // Reads answer (a miss) instead of failing or hanging; the hang guard is generous.
    let guard = Duration::from_secs(10);
    for _ in 0..3 {
        assert_eq!(tokio::time::timeout(guard, b.tier.get(b"k")).await.unwrap(), None);
    }
    // Writes never wait for Redis: a burst past the queue is dropped and counted.
    for i in 0..200u32 {
        tokio::time::timeout(guard, a.tier.put(&i.to_be_bytes(), Bytes::from_static(b"v"), HOUR)).await.unwrap();
        tokio::time::timeout(guard, a.tier.publish(tags("app", &["t"]))).await.unwrap();
    }
    assert!(a.tier.metrics().dropped.get() > 0);
    // The first failure is an error; reads within a second after it skip Redis altogether.
    assert!(b.tier.metrics().errors.get() >= 1);
    assert!(b.tier.metrics().errors.get() + b.tier.metrics().skipped.get() >= 3);
    wait_until("A's writer counts its failures", || a.tier.metrics().errors.get() > 0).await;

    redis.restart().unwrap();
    wait_until("A re-subscribed", || a.reconnects.load(Ordering::SeqCst) >= 2).await;
    wait_until("B re-subscribed", || b.reconnects.load(Ordering::SeqCst) >= 2).await;
    // The shared tier works again: entries and invalidations flow.
    // (Scoped away from the invalidations still queued from the outage, which may land later.
    // Writes are at most once: one may still be lost while the connection comes back, so this
    // writes until one lands.)
    let mut landed = None;
    for _ in 0..200 {
        a.tier.put_scoped(b"k2", Bytes::from_static(b"v2"), HOUR, &scope("other", &[], &[]), None).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        landed = b.tier.get(b"k2").await;
        if landed.is_some() {
            break;
        }
    }
    assert_eq!(landed, Some(Bytes::from_static(b"v2")), "no write reached Redis after it came back");
    let received = b.received.lock().len();
    a.tier.publish(Invalidation::All { database: "app".into() }).await;
    wait_until("B hears A after the restart", || b.received.lock().len() > received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_not_an_error() {
    let port = tidepool_testkit::free_port();
    let tier = RedisTier::new(&config(&format!("redis://127.0.0.1:{port}"))).unwrap();
    assert_eq!(tier.get(b"k").await, None);
    tier.put(b"k", Bytes::from_static(b"v"), HOUR).await;
    assert!(tier.metrics().errors.get() >= 1);
    // Bad URLs are refused without echoing them (they may hold a password).
    let Err(err) = RedisTier::new(&config("http://user:hunter2@host")) else { panic!("accepted a bad URL") };
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_costs_a_timeout_not_a_failure() {
    let redis = TestRedis::start().unwrap();
    let a = node(&redis).await;
    a.tier.put_scoped(b"k", Bytes::from_static(b"v"), HOUR, &scope("db1", &[], &[]), None).await;
    eventually_get(&a.tier, b"k").await;
    // Redis frozen: the socket stays open but nothing answers; only the timeout ends the call.
    redis.freeze().unwrap();
    let errors = a.tier.metrics().errors.get();
    let guard = Duration::from_secs(10);
    assert_eq!(tokio::time::timeout(guard, a.tier.get(b"k")).await.unwrap(), None);
    assert!(a.tier.metrics().errors.get() > errors, "the timeout is counted");
    tokio::time::timeout(guard, a.tier.put(b"k2", Bytes::from_static(b"v2"), HOUR)).await.unwrap();
    tokio::time::timeout(guard, a.tier.publish(tags("app", &["t"]))).await.unwrap();
    redis.resume().unwrap();
    // Answers again: the entry (untouched by the invalidation of another database) is read again.
    assert_eq!(eventually_get(&a.tier, b"k").await, Bytes::from_static(b"v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_fetched_across_an_invalidation_is_stored_hidden() {
    let redis = TestRedis::start().unwrap();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let users = scope("app", &["users"], &[]);
    // Node A misses (the lookup snapshots the generations), then "runs the query"...
    let (hit, snapshot) = a.tier.lookup(b"k", &users).await;
    assert!(hit.is_none() && snapshot.is_some());
    // ...while node B invalidates the tag, which reaches Redis before A stores its result.
    b.tier.publish(tags("app", &["users"])).await;
    wait_until("A hears the invalidation", || a.received.lock().len() == 1).await;
    a.tier.put_scoped(b"k", Bytes::from_static(b"old rows"), HOUR, &users, snapshot).await;
    let name = format!("EXISTS tidepool:v1:{}", hex::encode(b"k"));
    wait_until("the entry is in Redis", || redis.command(&name).is_ok_and(|r| r == ":1")).await;
    // Stored, but under the generations from before the fetch: hidden on every node.
    let invalidated = b.tier.metrics().invalidated.get();
    assert_eq!(b.tier.lookup(b"k", &users).await.0, None);
    assert_eq!(a.tier.get(b"k").await, None);
    assert_eq!(b.tier.metrics().invalidated.get(), invalidated + 1);
    // A fetch that starts after the invalidation is stored visible, and a lookup reads it in
    // the same round trip as its snapshot.
    let (_, snapshot) = a.tier.lookup(b"k", &users).await;
    a.tier.put_scoped(b"k", Bytes::from_static(b"new rows"), HOUR, &users, snapshot).await;
    let fresh = eventually_get(&b.tier, b"k").await;
    assert_eq!(fresh, Bytes::from_static(b"new rows"));
    let (hit, snapshot) = b.tier.lookup(b"k", &users).await;
    assert_eq!((hit, snapshot.is_some()), (Some(fresh), true));
}
