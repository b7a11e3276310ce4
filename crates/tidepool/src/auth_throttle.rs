//! Failed-login throttling per (client IP, user), shared by every password login: the Postgres
//! wire protocol, WebSocket logins (same code) and `/sql` passwords.
//!
//! Each (IP, user) pair counts its consecutive failed password checks. Below
//! `auth_failure_threshold` nothing is delayed. From then on attempts take turns: each one is
//! admitted at least `auth_failure_delay × 2^(failures − threshold)` after the previous one (an
//! async sleep, no runtime thread is held), so concurrency does not buy an attacker more guesses.
//! An attempt whose turn would be further away than `auth_failure_max_delay` is refused after
//! that delay without its password being checked. Callers answer a refusal exactly like a wrong
//! password (28P01). A success resets the pair; a pair with no failure for
//! `auth_failure_window` starts afresh.
//!
//! Checks in progress count as failures too (a burst of concurrent guesses is throttled before
//! the first one is judged), except for a pair with no failure yet: it may have
//! [`FRESH_CONCURRENCY`] logins in flight undelayed (an application opening its pool at once),
//! and further logins queue until one of those finishes (bounded by `queue_max`) instead of being
//! counted as failures, so a large pool opened from one address is slowed, never refused.
//!
//! The table is bounded (`auth_throttle_entries`; keys are chosen by clients): entries are keyed
//! by a keyed 128-bit hash of (IP, user), so a long user name costs nothing; when the table is
//! full, expired pairs go first, then the least recently active quarter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::config::ServerConfig;

/// Concurrent logins a pair with no recorded failure may have in flight before they count.
pub const FRESH_CONCURRENCY: u32 = 64;

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// 0 disables the throttle.
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
    pub window: Duration,
    pub max_entries: usize,
    /// Longest a fresh pair's login waits for a free concurrency slot.
    pub queue_max: Duration,
}

impl ThrottleSettings {
    pub fn from_config(s: &ServerConfig) -> Self {
        // A wire login must still be able to finish (and be told 28P01) before login_timeout.
        let max = s.auth_failure_max_delay.min(s.login_timeout * 3 / 4);
        ThrottleSettings {
            threshold: s.auth_failure_threshold,
            base: s.auth_failure_delay.min(max),
            max,
            window: s.auth_failure_window,
            max_entries: s.auth_throttle_entries.max(1),
            queue_max: s.login_timeout,
        }
    }
}

struct Entry {
    /// Consecutive failed checks.
    failures: u32,
    /// Admitted checks whose outcome is not known yet.
    in_flight: u32,
    /// Earliest time the next throttled attempt may be admitted.
    next_slot: Instant,
    last: Instant,
}

pub struct AuthThrottle {
    settings: ThrottleSettings,
    hash_key: [u8; 32],
    entries: Mutex<HashMap<u128, Entry>>,
    /// Woken whenever an admitted check ends (queued fresh logins re-decide).
    freed: tokio::sync::Notify,
    /// Attempts delayed or refused by the throttle.
    pub throttled: Counter,
}

/// An admitted password check. Report its outcome with [`Attempt::success`] or
/// [`Attempt::failure`]; dropping it (client gone, malformed message) records neither.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a AuthThrottle,
    key: Option<u128>,
}

impl Attempt<'_> {
    pub fn success(mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.finish(key, true);
        }
    }

    pub fn failure(mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.finish(key, false);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut map = self.throttle.entries.lock();
            if let Some(e) = map.get_mut(&key) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
            drop(map);
            self.throttle.freed.notify_waiters();
        }
    }
}

enum Decision {
    Now,
    /// A fresh pair at its concurrency limit: wait for a check to end, then decide again.
    Queue,
    At(Instant),
    Refuse,
}

impl AuthThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        let mut hash_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut hash_key);
        AuthThrottle { settings, hash_key, entries: Mutex::new(HashMap::new()), freed: tokio::sync::Notify::new(), throttled: Counter::default() }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("auth_throttled", "Login attempts delayed or refused by the failed-login throttle", self.throttled.clone());
    }

    fn key(&self, ip: Option<IpAddr>, user: &str) -> u128 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.hash_key);
        match ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }) {
            None => h.update([0u8]),
            Some(IpAddr::V4(v4)) => {
                h.update([4u8]);
                h.update(v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                h.update([6u8]);
                h.update(v6.octets());
            }
        }
        h.update(user.as_bytes());
        let d = h.finalize();
        u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]))
    }

    /// Waits for this (IP, user)'s turn. `Some` = go ahead and check the password (then report
    /// the outcome); `None` = refused after the maximum delay: answer as for a wrong password.
    /// `ip` is `None` when the transport does not know the client's address (all such attempts
    /// for a user share one entry).
    pub async fn admit(&self, ip: Option<IpAddr>, user: &str) -> Option<Attempt<'_>> {
        if self.settings.threshold == 0 {
            return Some(Attempt { throttle: self, key: None });
        }
        let key = self.key(ip, user);
        let queue_until = Instant::now() + self.settings.queue_max;
        let decision = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.decide(key, Instant::now()) {
                Decision::Queue => {
                    if tokio::time::timeout_at(queue_until, freed).await.is_err() {
                        self.throttled.inc();
                        return None;
                    }
                }
                d => break d,
            }
        };
        match decision {
            Decision::Now | Decision::Queue => {}
            Decision::At(t) => {
                self.throttled.inc();
                tokio::time::sleep_until(t).await;
            }
            Decision::Refuse => {
                self.throttled.inc();
                tokio::time::sleep(self.settings.max).await;
                return None;
            }
        }
        Some(Attempt { throttle: self, key: Some(key) })
    }

    fn decide(&self, key: u128, now: Instant) -> Decision {
        let s = &self.settings;
        let mut map = self.entries.lock();
        if !map.contains_key(&key) && map.len() >= s.max_entries {
            self.make_room(&mut map, now);
        }
        let e = map.entry(key).or_insert(Entry { failures: 0, in_flight: 0, next_slot: now, last: now });
        if e.in_flight == 0 && now.saturating_duration_since(e.last) > s.window {
            e.failures = 0;
            e.next_slot = now;
        }
        if e.failures == 0 && e.in_flight >= FRESH_CONCURRENCY {
            return Decision::Queue;
        }
        let pending = match e.failures {
            0 => 0,
            f => f.saturating_add(e.in_flight),
        };
        if pending < s.threshold {
            e.in_flight += 1;
            e.last = now;
            return Decision::Now;
        }
        let slot = e.next_slot.max(now);
        if slot - now > s.max {
            return Decision::Refuse;
        }
        e.next_slot = slot + self.interval(e.failures);
        e.in_flight += 1;
        e.last = now;
        if slot > now {
            Decision::At(slot)
        } else {
            Decision::Now
        }
    }

    /// Spacing between throttled attempts after `failures` consecutive failures.
    fn interval(&self, failures: u32) -> Duration {
        let s = &self.settings;
        let k = failures.saturating_sub(s.threshold).min(31);
        s.base.checked_mul(1u32 << k).unwrap_or(s.max).min(s.max)
    }

    fn finish(&self, key: u128, ok: bool) {
        let now = Instant::now();
        let mut map = self.entries.lock();
        let Some(e) = map.get_mut(&key) else { return };
        e.in_flight = e.in_flight.saturating_sub(1);
        if ok {
            if e.in_flight == 0 {
                map.remove(&key);
            } else {
                e.failures = 0;
                e.next_slot = now;
            }
            drop(map);
            self.freed.notify_waiters();
            return;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures >= self.settings.threshold {
            let earliest = now + self.interval(e.failures);
            e.next_slot = e.next_slot.max(earliest);
        }
        drop(map);
        self.freed.notify_waiters();
    }

    /// Frees at least a quarter of a full table: expired pairs, else the least recently active.
    fn make_room(&self, map: &mut HashMap<u128, Entry>, now: Instant) {
        let window = self.settings.window;
        map.retain(|_, e| e.in_flight > 0 || now.saturating_duration_since(e.last) <= window);
        let target = self.settings.max_entries - self.settings.max_entries / 4;
        if map.len() < target.max(1) {
            return;
        }
        let mut lasts: Vec<Instant> = map.values().filter(|e| e.in_flight == 0).map(|e| e.last).collect();
        let drop_n = (map.len() + 1 - target.max(1)).min(lasts.len());
        if drop_n == 0 {
            return;
        }
        let (_, cutoff, _) = lasts.select_nth_unstable(drop_n - 1);
        let cutoff = *cutoff;
        map.retain(|_, e| e.in_flight > 0 || e.last > cutoff);
    }

    /// Pairs currently tracked (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(threshold: u32, max_entries: usize) -> AuthThrottle {
        AuthThrottle::new(ThrottleSettings {
            threshold,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            window: Duration::from_secs(60),
            max_entries,
            queue_max: Duration::from_secs(10),
        })
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    async fn fail(t: &AuthThrottle, ip: Option<IpAddr>, user: &str) -> bool {
        match t.admit(ip, user).await {
            Some(a) => {
                a.failure();
                true
            }
            None => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delays_double_after_the_threshold_and_success_resets() {
        let t = throttle(3, 100);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            assert!(fail(&t, IP, "alice").await);
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [0, 0, 0, 100, 200, 400, 800, 1600]);
        assert_eq!(t.throttled.get(), 5);
        // The next turn is 2 s away at most (the cap): still admitted; beyond it refused.
        let started = Instant::now();
        t.admit(IP, "alice").await.expect("admitted at the cap").success();
        assert_eq!(started.elapsed().as_millis(), 2000);
        // Success reset the pair: no delay, and the entry is gone.
        assert!(t.is_empty());
        let started = Instant::now();
        assert!(fail(&t, IP, "alice").await);
        assert_eq!(started.elapsed().as_millis(), 0);
        // Another user from the same IP and the same user from another IP are independent.
        let started = Instant::now();
        assert!(fail(&t, IP, "bob").await);
        assert!(fail(&t, Some("10.0.0.1".parse().unwrap()), "alice").await);
        assert_eq!(started.elapsed().as_millis(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_guesses_take_turns_and_the_queue_is_bounded() {
        let t = std::sync::Arc::new(throttle(2, 100));
        assert!(fail(&t, IP, "u").await);
        assert!(fail(&t, IP, "u").await);
        // Two failures: from now on 100 ms, 200 ms, … apart. 50 concurrent attempts:
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let admitted = t.admit(IP, "u").await.map(|a| a.failure()).is_some();
                (admitted, Instant::now())
            }));
        }
        let mut admitted = Vec::new();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                (true, at) => admitted.push(at.duration_since(started).as_millis()),
                (false, at) => {
                    refused += 1;
                    assert_eq!(at.duration_since(started).as_millis(), 2000, "refused after the cap");
                }
            }
        }
        admitted.sort();
        // Checks are serialized (in flight counts): never two in the same turn.
        assert!(admitted.windows(2).all(|w| w[1] >= w[0] + 100), "{admitted:?}");
        assert!(admitted.len() <= 21, "{admitted:?}");
        assert_eq!(admitted.len() + refused, 50);
        assert_eq!(t.throttled.get(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_pair_may_open_a_pool_at_once() {
        let t = std::sync::Arc::new(throttle(2, 100));
        let mut held = Vec::new();
        for _ in 0..FRESH_CONCURRENCY {
            let started = Instant::now();
            held.push(t.admit(IP, "app").await.expect("admitted"));
            assert_eq!(started.elapsed().as_millis(), 0);
        }
        // More logins than that queue (not counted as failures) and go in as earlier ones end.
        let mut queued = Vec::new();
        for _ in 0..100 {
            let t = t.clone();
            queued.push(tokio::spawn(async move { t.admit(IP, "app").await.map(|a| a.success()).is_some() }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(queued.iter().all(|q| !q.is_finished()), "queued behind the {FRESH_CONCURRENCY} in flight");
        for a in held {
            tokio::time::sleep(Duration::from_millis(10)).await;
            a.success();
        }
        for q in queued {
            assert!(q.await.unwrap(), "a queued fresh login is admitted, never refused");
        }
        assert_eq!(t.throttled.get(), 0);
        assert!(t.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_fresh_login_gives_up_after_queue_max() {
        let t = throttle(2, 100);
        let held: Vec<_> = futures_util::future::join_all((0..FRESH_CONCURRENCY).map(|_| t.admit(IP, "app"))).await;
        let started = Instant::now();
        assert!(t.admit(IP, "app").await.is_none());
        assert_eq!(started.elapsed().as_millis(), 10_000);
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_the_table_stays_bounded() {
        let t = throttle(1, 64);
        for i in 0..1000 {
            assert!(fail(&t, IP, &format!("user{i}")).await);
            assert!(t.len() <= 64);
        }
        // The pair under attack forgets its failures after the window.
        assert!(fail(&t, IP, "victim").await);
        let started = Instant::now();
        assert!(fail(&t, IP, "victim").await);
        assert_eq!(started.elapsed().as_millis(), 100);
        tokio::time::advance(Duration::from_secs(61)).await;
        let started = Instant::now();
        assert!(fail(&t, IP, "victim").await);
        assert_eq!(started.elapsed().as_millis(), 0);
        // A long user name is stored as a 16-byte hash.
        assert!(fail(&t, IP, &"x".repeat(100_000)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_with_threshold_zero() {
        let t = throttle(0, 10);
        for _ in 0..100 {
            assert!(fail(&t, IP, "u").await);
        }
        assert!(t.is_empty());
        assert_eq!(t.throttled.get(), 0);
    }
}
