//! Pool unit tests with fake connections and paused time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

#[derive(Debug, thiserror::Error)]
#[error("fake connect failure (transient: {0})")]
pub(super) struct FakeError(bool);

#[derive(Default)]
pub(super) struct Fake {
    pub(super) opened: AtomicUsize,
    pub(super) live: Arc<AtomicUsize>,
    fail: AtomicBool,
    unhealthy: AtomicBool,
}

pub(super) struct FakeConn {
    pub(super) id: usize,
    live: Arc<AtomicUsize>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for Arc<Fake> {
    type Conn = FakeConn;
    type Error = FakeError;
    async fn connect(&self) -> Result<FakeConn, FakeError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(FakeError(false));
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(FakeConn { id: self.opened.fetch_add(1, Ordering::SeqCst), live: self.live.clone() })
    }
    fn is_transient(&self, e: &FakeError) -> bool {
        e.0
    }
    fn is_healthy(&self, _: &FakeConn) -> bool {
        !self.unhealthy.load(Ordering::SeqCst)
    }
}

pub(super) fn settings(size: usize) -> PoolSettings {
    PoolSettings {
        name: "app".into(),
        size,
        min_idle: 0,
        timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn never_exceeds_size_and_serves_everyone() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(3), fake.clone());
    let max_live = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (pool, fake, max_live) = (pool.clone(), fake.clone(), max_live.clone());
        tasks.push(tokio::spawn(async move {
            let lease = pool.get().await.unwrap();
            max_live.fetch_max(fake.live.load(Ordering::SeqCst), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            lease.release();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(max_live.load(Ordering::SeqCst) <= 3);
    assert_eq!(fake.opened.load(Ordering::SeqCst), 3, "connections are reused");
    assert_eq!(pool.idle_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_fifo_and_time_out_with_a_named_error() {
    let pool = Pool::new(settings(1), Arc::new(Fake::default()));
    let held = pool.get().await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let l = pool.get().await.unwrap();
            order.lock().push(i);
            l.release();
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let late = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            pool.get().await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    assert!(late.await.unwrap().is_ok());

    let held = pool.get().await.unwrap();
    let err = pool.get().await.err().unwrap();
    assert!(matches!(err, PoolError::Timeout { .. }));
    assert!(err.to_string().contains("pool \"app\""), "{err}");
    assert_eq!(pool.stats().timeouts.get(), 1);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_frees_its_place() {
    let pool = Pool::new(settings(1), Arc::new(Fake::default()));
    let held = pool.get().await.unwrap();
    let gone = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|l| l.release()) })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(pool.stats().waiting.get(), 1);
    gone.abort();
    let _ = gone.await;
    assert_eq!(pool.stats().waiting.get(), 0);
    held.release();
    let l = tokio::time::timeout(Duration::from_millis(50), pool.get()).await.unwrap().unwrap();
    l.release();
}

#[tokio::test(start_paused = true)]
async fn dropped_lease_closes_connection_and_frees_permit() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(1), fake.clone());
    let l = pool.get().await.unwrap();
    drop(l);
    assert_eq!(fake.live.load(Ordering::SeqCst), 0);
    let l = pool.get().await.unwrap();
    assert_eq!(l.id, 1, "a fresh connection replaces the discarded one");
    l.release();
}

#[tokio::test(start_paused = true)]
async fn unhealthy_idle_connections_are_replaced() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(2), fake.clone());
    pool.get().await.unwrap().release();
    fake.unhealthy.store(true, Ordering::SeqCst);
    let l = pool.get().await.unwrap();
    assert_eq!(l.id, 1);
    drop(l);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_min_idle() {
    let fake = Arc::new(Fake::default());
    let mut s = settings(4);
    s.min_idle = 2;
    s.idle_timeout = Duration::from_secs(5);
    let pool = Pool::new(s, fake.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.idle_count(), 2, "min_idle kept warm in the background");
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let c = pool.get().await.unwrap();
    a.release();
    b.release();
    c.release();
    assert_eq!(pool.idle_count(), 3);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(pool.idle_count(), 2, "idle beyond min_idle retired after idle_timeout");
}

#[tokio::test(start_paused = true)]
async fn connect_errors_reach_the_caller_and_free_the_permit() {
    let fake = Arc::new(Fake::default());
    fake.fail.store(true, Ordering::SeqCst);
    let pool = Pool::new(settings(1), fake.clone());
    assert!(matches!(pool.get().await, Err(PoolError::Connect { .. })));
    fake.fail.store(false, Ordering::SeqCst);
    pool.get().await.unwrap().release();
}
