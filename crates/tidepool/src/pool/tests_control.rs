//! Unit tests of [`super::control`]: resize, pause/resume, generations (fake connections,
//! paused time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{settings, Fake};
use super::*;

#[tokio::test(start_paused = true)]
async fn shrink_closes_surplus_at_check_in_and_grow_adds_room() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(5), fake.clone());
    let mut leases = Vec::new();
    for _ in 0..5 {
        leases.push(pool.get().await.unwrap());
    }
    pool.update(settings(2));
    // Nothing is closed mid-lease.
    assert_eq!(fake.live.load(Ordering::SeqCst), 5);
    for l in leases.drain(..) {
        l.release();
    }
    assert_eq!(fake.live.load(Ordering::SeqCst), 2, "surplus closed as returned");
    assert_eq!(pool.idle_count(), 2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    assert!(matches!(pool.get().await, Err(PoolError::Timeout { .. })), "only 2 leases fit now");
    pool.update(settings(3));
    let c = pool.get().await.unwrap();
    assert_eq!(fake.live.load(Ordering::SeqCst), 3);
    for l in [a, b, c] {
        l.release();
    }
}

#[tokio::test(start_paused = true)]
async fn shrink_of_an_idle_pool_closes_idle_connections_now() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(4), fake.clone());
    let ls: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
    ls.into_iter().for_each(|l| l.unwrap().release());
    assert_eq!(pool.idle_count(), 4);
    pool.update(settings(1));
    assert_eq!(fake.live.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn pause_waits_for_leases_holds_waiters_past_timeout_and_resume_serves_them() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(2), fake.clone());
    let held = pool.get().await.unwrap();
    let idle = pool.get().await.unwrap();
    idle.release();
    let pausing = tokio::spawn(pool.pause());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!pausing.is_finished(), "PAUSE waits for the lease out");
    assert_eq!(pool.idle_count(), 0, "idle connections closed at once");
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(Lease::release) })
    };
    held.release();
    pausing.await.unwrap();
    assert!(pool.is_fully_paused());
    assert_eq!(fake.live.load(Ordering::SeqCst), 0, "every server connection closed");
    // Far past the 2 s pool timeout: still queued, not failed.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!waiter.is_finished());
    pool.resume();
    waiter.await.unwrap().unwrap();
    assert!(!pool.is_paused());
}

#[tokio::test(start_paused = true)]
async fn resize_while_paused_applies_at_resume() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(3), fake.clone());
    pool.pause().await;
    pool.update(settings(1));
    pool.resume();
    let a = pool.get().await.unwrap();
    assert!(matches!(pool.get().await, Err(PoolError::Timeout { .. })));
    a.release();
}

#[tokio::test(start_paused = true)]
async fn reconnect_retires_connections_as_returned_and_wait_close_sees_them_go() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(settings(2), fake.clone());
    let out = pool.get().await.unwrap();
    let first = out.id;
    pool.get().await.unwrap().release();
    pool.reconnect();
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(pool.retiring(), 1);
    let waiting = tokio::spawn(pool.wait_close());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    out.release();
    waiting.await.unwrap();
    let fresh = pool.get().await.unwrap();
    assert_ne!(fresh.id, first, "a new connection after RECONNECT");
    fresh.release();
}
