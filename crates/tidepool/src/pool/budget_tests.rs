//! The budget hook with fake connections, a fake shared budget (two pools = two nodes sharing
//! one limit) and paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

#[derive(Debug, thiserror::Error)]
#[error("fake connect failure")]
struct FakeError;

#[derive(Default)]
struct Fake {
    live: Arc<AtomicUsize>,
}

struct FakeConn(Arc<AtomicUsize>);

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for Arc<Fake> {
    type Conn = FakeConn;
    type Error = FakeError;
    async fn connect(&self) -> Result<FakeConn, FakeError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(FakeConn(self.live.clone()))
    }
    fn is_transient(&self, _: &FakeError) -> bool {
        false
    }
    fn is_healthy(&self, _: &FakeConn) -> bool {
        true
    }
}

fn settings(size: usize) -> PoolSettings {
    PoolSettings {
        name: "app".into(),
        size,
        min_idle: 0,
        timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(3600),
    }
}

/// A limit shared by every pool it is given to; `wanted` units are asked back.
#[derive(Default)]
struct FakeBudget {
    limit: usize,
    held: Arc<AtomicUsize>,
    acquires: AtomicUsize,
    granted: AtomicUsize,
    wanted: AtomicUsize,
}

struct Unit(Arc<AtomicUsize>);
impl Drop for Unit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Budget for FakeBudget {
    fn acquire(&self, deadline: Instant) -> Acquire<'_> {
        Box::pin(async move {
            self.acquires.fetch_add(1, Ordering::SeqCst);
            loop {
                let n = self.held.load(Ordering::SeqCst);
                if n < self.limit && self.held.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    self.granted.fetch_add(1, Ordering::SeqCst);
                    return Some(BudgetTicket::new(Unit(self.held.clone())));
                }
                if Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }
    fn shed(&self) -> bool {
        self.wanted.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| w.checked_sub(1)).is_ok()
    }
}

#[tokio::test(start_paused = true)]
async fn two_pools_sharing_a_budget_never_exceed_it() {
    let budget = Arc::new(FakeBudget { limit: 4, ..Default::default() });
    let (fa, fb) = (Arc::new(Fake::default()), Arc::new(Fake::default()));
    // Each pool alone could open 10. Idle connections close soon, so a pool that has finished
    // its work gives its units back to the other.
    let s = PoolSettings { idle_timeout: Duration::from_millis(100), ..settings(10) };
    let a = Pool::with_budget(s.clone(), fa.clone(), PoolStats::default(), Some(budget.clone() as Arc<dyn Budget>));
    let b = Pool::with_budget(s, fb.clone(), PoolStats::default(), Some(budget.clone() as Arc<dyn Budget>));
    let max_live = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let pool = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (fa, fb, max_live) = (fa.clone(), fb.clone(), max_live.clone());
        tasks.push(tokio::spawn(async move {
            let lease = pool.get().await.unwrap();
            max_live.fetch_max(fa.live.load(Ordering::SeqCst) + fb.live.load(Ordering::SeqCst), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            lease.release();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(max_live.load(Ordering::SeqCst), 4, "the shared limit is reached and never passed");
    // Reusing an open connection takes no unit: far fewer units than checkouts.
    assert!(budget.granted.load(Ordering::SeqCst) < 60, "{}", budget.granted.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn closing_a_connection_returns_its_unit_and_reuse_costs_nothing() {
    let budget = Arc::new(FakeBudget { limit: 1, ..Default::default() });
    let fake = Arc::new(Fake::default());
    let pool = Pool::with_budget(settings(5), fake.clone(), PoolStats::default(), Some(budget.clone() as Arc<dyn Budget>));
    for _ in 0..10 {
        pool.get().await.unwrap().release();
    }
    assert_eq!((budget.acquires.load(Ordering::SeqCst), budget.held.load(Ordering::SeqCst)), (1, 1));
    // A discarded (closed) connection gives its unit back.
    pool.get().await.unwrap().discard();
    assert_eq!(budget.held.load(Ordering::SeqCst), 0);
    // A budget that is all used elsewhere: the waiter times out with the pool's error.
    let _other = budget.acquire(Instant::now()).await.unwrap();
    let err = pool.get().await.err().expect("no budget, no connection");
    assert!(matches!(err, PoolError::Timeout { .. }), "{err}");
    assert_eq!(fake.live.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn units_asked_back_are_shed_at_checkin_and_from_idle() {
    let budget = Arc::new(FakeBudget { limit: 3, ..Default::default() });
    let fake = Arc::new(Fake::default());
    let pool = Pool::with_budget(settings(5), fake.clone(), PoolStats::default(), Some(budget.clone() as Arc<dyn Budget>));
    let leases = vec![pool.get().await.unwrap(), pool.get().await.unwrap(), pool.get().await.unwrap()];
    budget.wanted.store(1, Ordering::SeqCst);
    for l in leases {
        l.release();
    }
    // One was closed at checkin instead of kept.
    assert_eq!((pool.idle_count(), budget.held.load(Ordering::SeqCst)), (2, 2));
    // The upkeep task closes idle ones asked back.
    budget.wanted.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((pool.idle_count(), budget.held.load(Ordering::SeqCst), fake.live.load(Ordering::SeqCst)), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_for_budget_takes_a_connection_that_comes_back_idle() {
    // The budget is all held by this pool's one connection; a second client waits for budget
    // and gets that connection when the first client returns it.
    let budget = Arc::new(FakeBudget { limit: 1, ..Default::default() });
    let fake = Arc::new(Fake::default());
    let pool = Pool::with_budget(settings(5), fake.clone(), PoolStats::default(), Some(budget.clone() as Arc<dyn Budget>));
    let first = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|l| l.release()).is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.release();
    assert!(waiter.await.unwrap(), "the waiter got the returned connection");
    assert_eq!(fake.live.load(Ordering::SeqCst), 1);
}
