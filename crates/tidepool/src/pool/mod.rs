//! The pool core every front end leases from: at most `size` upstream connections per pool,
//! whatever the number of clients; waiters served first-come first-served (a fair semaphore), a
//! waiter past `timeout` gets [`PoolError::Timeout`] and a waiter that goes away leaves the queue
//! (dropping its future); connections opened in the background to keep `min_idle` warm, checked
//! before reuse, retired after `idle_timeout` / `max_lifetime`.
//!
//! A [`Lease`] owns a permit and a connection. Returning it is explicit ([`Lease::release`]);
//! dropping a lease closes the connection, so a panicking or cancelled task can never hand a dirty
//! connection to the next client. Connection creation goes through [`Manager`], which lets unit
//! tests use fake connections.

mod budget;
#[cfg(test)]
mod budget_tests;
mod control;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_control;

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use budget::{Acquire, Budget, BudgetTicket};
pub use stats::PoolStats;

/// A waiter for budget looks at the idle connections this often.
const BUDGET_SLICE: Duration = Duration::from_millis(25);

/// Creates and checks connections for a pool.
pub trait Manager: Send + Sync + 'static {
    type Conn: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;
    /// Whether a failed connect may succeed if tried again soon (server restarting).
    fn is_transient(&self, err: &Self::Error) -> bool;
    /// Cheap, non-blocking check of an idle connection before it is lent out.
    fn is_healthy(&self, conn: &Self::Conn) -> bool;
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Label used in errors and metrics, e.g. the database name.
    pub name: String,
    pub size: usize,
    pub min_idle: usize,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError<E: std::error::Error + 'static> {
    #[error("timed out after {waited:?} waiting for a connection in pool \"{pool}\" (pool_size {size})")]
    Timeout { pool: String, size: usize, waited: Duration },
    #[error("could not connect to upstream for pool \"{pool}\": {source}")]
    Connect { pool: String, source: E },
    #[error("pool \"{0}\" is shutting down")]
    Closed(String),
}

struct Idle<C> {
    conn: C,
    /// The budget unit this connection holds (closed with it).
    _ticket: Option<BudgetTicket>,
    created: Instant,
    since: Instant,
    /// The connection generation it belongs to (see [`control`]).
    tag: control::Tag,
}

struct Inner<M: Manager> {
    /// Changed only by [`Pool::update`] (reload).
    settings: Mutex<PoolSettings>,
    manager: M,
    sem: Arc<Semaphore>,
    idle: Mutex<Vec<Idle<M::Conn>>>,
    stats: PoolStats,
    budget: Option<Arc<dyn Budget>>,
    /// Resize debt, pause gate and connection generations ([`control`]).
    control: control::Control,
}

pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool { inner: self.inner.clone() }
    }
}

/// A connection lent out by the pool, with the permit that counts it.
pub struct Lease<M: Manager> {
    conn: Option<M::Conn>,
    created: Instant,
    pool: Arc<Inner<M>>,
    ticket: Option<BudgetTicket>,
    tag: control::Tag,
    permit: Option<OwnedSemaphorePermit>,
}

impl<M: Manager> Pool<M> {
    /// Creates the pool and, inside a tokio runtime, its maintenance task (stops when the pool is dropped).
    pub fn new(settings: PoolSettings, manager: M) -> Self {
        Self::with_stats(settings, manager, PoolStats::default())
    }

    /// Like [`Pool::new`], counting into `stats` (a pool that replaces another on reload keeps
    /// the metrics already registered).
    pub fn with_stats(settings: PoolSettings, manager: M, stats: PoolStats) -> Self {
        Self::with_budget(settings, manager, stats, None)
    }

    /// Like [`Pool::with_stats`], and every connection opened also needs a unit of `budget`.
    pub fn with_budget(settings: PoolSettings, manager: M, stats: PoolStats, budget: Option<Arc<dyn Budget>>) -> Self {
        let inner = Arc::new(Inner {
            budget,
            sem: Arc::new(Semaphore::new(settings.size)),
            idle: Mutex::new(Vec::with_capacity(settings.size)),
            stats,
            settings: Mutex::new(settings),
            manager,
            control: control::Control::default(),
        });
        inner.stats.size.set(i64::try_from(inner.settings.lock().size).unwrap_or(i64::MAX));
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(maintain(Arc::downgrade(&inner)));
        }
        Pool { inner }
    }

    pub fn settings(&self) -> PoolSettings {
        self.inner.settings.lock().clone()
    }

    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// `key` of every idle connection (the console tells idle from lent-out servers this way).
    pub fn idle_keys<K>(&self, key: impl Fn(&M::Conn) -> Option<K>) -> Vec<K> {
        self.inner.idle.lock().iter().filter_map(|i| key(&i.conn)).collect()
    }

    /// Number of idle connections right now.
    pub fn idle_count(&self) -> usize {
        self.inner.idle.lock().len()
    }

    /// Waits (FIFO, at most `timeout`) for a permit, then lends an idle connection or opens one.
    pub async fn get(&self) -> Result<Lease<M>, PoolError<M::Error>> {
        let inner = &self.inner;
        // Only the timeout is read on the way to an idle connection (no copy of the settings).
        let timeout = inner.settings.lock().timeout;
        let start = Instant::now();
        let permit = {
            let _waiting = inner.stats.waiting_guard();
            // FIFO wait; a paused pool holds its waiters past `timeout` (queued, not failed).
            match control::acquire(&inner.sem, &inner.control, timeout).await {
                Ok(p) => p,
                Err(control::AcquireError::Closed) => return Err(PoolError::Closed(inner.settings().name)),
                Err(control::AcquireError::Timeout) => {
                    inner.stats.timeouts.inc();
                    let s = inner.settings();
                    return Err(PoolError::Timeout { pool: s.name, size: s.size, waited: start.elapsed() });
                }
            }
        };
        while let Some(idle) = inner.pop_idle() {
            // One clock read ages the connection and times the wait.
            let now = Instant::now();
            if inner.expired_at(now, idle.created, idle.since) || !inner.manager.is_healthy(&idle.conn) || inner.control.is_stale(&idle.tag) {
                inner.stats.closed.inc();
                continue;
            }
            inner.stats.record_assignment(now.saturating_duration_since(start));
            return Ok(self.lease(idle.conn, idle.created, idle._ticket, idle.tag, permit));
        }
        // No idle connection: wait for budget or open one (boxed: the connect future is large,
        // and a lease served from the idle list should not carry it).
        Box::pin(self.open(start, timeout, permit)).await
    }

    /// [`Pool::get`] when no idle connection was there: waits for budget (taking a connection
    /// that comes back meanwhile) or opens a new one.
    async fn open(&self, start: Instant, timeout: Duration, permit: OwnedSemaphorePermit) -> Result<Lease<M>, PoolError<M::Error>> {
        let inner = &self.inner;
        let s = &inner.settings();
        let deadline = start + timeout;
        let ticket = match &inner.budget {
            None => None,
            // Waits for budget in short slices: a connection that comes back idle meanwhile
            // (another lease of this pool returned) is taken instead of new budget.
            Some(b) => loop {
                if let Some(t) = b.acquire(deadline.min(Instant::now() + BUDGET_SLICE)).await {
                    break Some(t);
                }
                if let Some(idle) = inner.pop_idle() {
                    if inner.expired(idle.created, idle.since) || !inner.manager.is_healthy(&idle.conn) || inner.control.is_stale(&idle.tag) {
                        inner.stats.closed.inc();
                        continue;
                    }
                    inner.stats.record_assignment(start.elapsed());
                    return Ok(self.lease(idle.conn, idle.created, idle._ticket, idle.tag, permit));
                }
                if Instant::now() >= deadline {
                    inner.stats.timeouts.inc();
                    return Err(PoolError::Timeout { pool: s.name.clone(), size: s.size, waited: start.elapsed() });
                }
            },
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match inner.manager.connect().await {
                Ok(conn) => {
                    inner.stats.opened.inc();
                    inner.stats.record_assignment(start.elapsed());
                    return Ok(self.lease(conn, Instant::now(), ticket, inner.control.tag(), permit));
                }
                Err(e) if inner.manager.is_transient(&e) && Instant::now() + backoff < deadline => {
                    inner.stats.errors.inc();
                    tracing::debug!(pool = %s.name, error = %e, "upstream connect failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(source) => {
                    inner.stats.errors.inc();
                    return Err(PoolError::Connect { pool: s.name.clone(), source });
                }
            }
        }
    }

    /// Lends an idle connection at once if a permit is free and one passes its checks: no
    /// future and no wait (a free permit means nobody is queued, so FIFO order holds). `None`:
    /// use [`Pool::get`], which waits or opens a connection.
    pub fn try_get(&self) -> Option<Lease<M>> {
        let inner = &self.inner;
        let permit = inner.sem.clone().try_acquire_owned().ok()?;
        while let Some(idle) = inner.pop_idle() {
            if inner.expired(idle.created, idle.since) || !inner.manager.is_healthy(&idle.conn) || inner.control.is_stale(&idle.tag) {
                inner.stats.closed.inc();
                continue;
            }
            // Served without waiting.
            inner.stats.record_assignment(Duration::ZERO);
            return Some(self.lease(idle.conn, idle.created, idle._ticket, idle.tag, permit));
        }
        None
    }

    fn lease(&self, conn: M::Conn, created: Instant, ticket: Option<BudgetTicket>, tag: control::Tag, permit: OwnedSemaphorePermit) -> Lease<M> {
        self.inner.stats.active.inc();
        Lease { conn: Some(conn), created, pool: self.inner.clone(), ticket, tag, permit: Some(permit) }
    }

    /// Closes idle connections and refuses new leases; leases out now finish normally.
    pub fn close(&self) {
        self.inner.sem.close();
        let n = std::mem::take(&mut *self.inner.idle.lock()).len();
        self.inner.stats.idle.set(0);
        self.inner.stats.closed.inc_by(n as u64);
    }

    /// Leases currently out.
    pub fn active(&self) -> usize {
        self.inner.stats.active.get().max(0) as usize
    }
}

impl<M: Manager> Inner<M> {
    fn pop_idle(&self) -> Option<Idle<M::Conn>> {
        let c = self.idle.lock().pop();
        if c.is_some() {
            self.stats.idle.dec();
        }
        c
    }

    fn settings(&self) -> PoolSettings {
        self.settings.lock().clone()
    }

    fn expired(&self, created: Instant, since: Instant) -> bool {
        self.expired_at(Instant::now(), created, since)
    }

    /// [`Inner::expired`] at `now`.
    fn expired_at(&self, now: Instant, created: Instant, since: Instant) -> bool {
        let s = self.settings.lock();
        now.saturating_duration_since(created) >= s.max_lifetime || now.saturating_duration_since(since) >= s.idle_timeout
    }

    fn push_idle(&self, conn: M::Conn, created: Instant, tag: control::Tag, ticket: Option<BudgetTicket>) {
        let max_lifetime = self.settings.lock().max_lifetime;
        let shed = || self.budget.as_ref().is_some_and(|b| b.shed());
        let now = Instant::now();
        if self.sem.is_closed() || now.saturating_duration_since(created) >= max_lifetime || self.control.is_stale(&tag) || self.control.is_paused() || shed() {
            self.stats.closed.inc();
            return;
        }
        self.idle.lock().push(Idle { conn, created, since: now, tag, _ticket: ticket });
        self.stats.idle.inc();
    }
}

impl<M: Manager> Lease<M> {
    /// Returns a clean connection to the pool.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            // A pool shrunk by reload closes surplus connections as they come back.
            if self.pool.control.take_debt() {
                self.forget_permit();
                self.pool.stats.closed.inc();
                return;
            }
            let tag = self.tag.clone();
            self.pool.push_idle(conn, self.created, tag, self.ticket.take());
        }
    }

    /// Drops the lease's permit for good (the pool shrank by one).
    fn forget_permit(&mut self) {
        if let Some(p) = self.permit.take() {
            p.forget();
        }
    }

    /// Closes the connection instead of returning it (it is broken or its state is unknown).
    pub fn discard(mut self) {
        self.conn.take();
        if self.pool.control.take_debt() {
            self.forget_permit();
        }
    }

    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// The pool's connection manager.
    pub fn manager(&self) -> &M {
        &self.pool.manager
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        self.pool.stats.active.dec();
        if self.conn.take().is_some() {
            self.pool.stats.closed.inc();
            if self.pool.control.take_debt() {
                self.forget_permit();
            }
        }
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        self.conn.as_ref().unwrap_or_else(|| unreachable!("lease used after release"))
    }
}

impl<M: Manager> DerefMut for Lease<M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("lease used after release"))
    }
}

/// Background upkeep: retire expired or broken idle connections, keep `min_idle` warm.
async fn maintain<M: Manager>(weak: Weak<Inner<M>>) {
    let period = Duration::from_millis(500);
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.sem.is_closed() {
            return;
        }
        let s = inner.settings();
        let keep = if inner.control.is_paused() { 0 } else { s.min_idle };
        {
            let mut idle = inner.idle.lock();
            let before = idle.len();
            // Oldest-idle first (the vector is used as a stack); keep at least min_idle.
            let mut remaining = idle.len();
            let mut kept = Vec::with_capacity(idle.len());
            for c in std::mem::take(&mut *idle) {
                let too_idle = c.since.elapsed() >= s.idle_timeout && remaining > keep;
                let too_old = c.created.elapsed() >= s.max_lifetime;
                if too_idle || too_old || inner.control.is_stale(&c.tag) || !inner.manager.is_healthy(&c.conn) {
                    remaining -= 1;
                    continue;
                }
                kept.push(c);
            }
            *idle = kept;
            let removed = before - idle.len();
            inner.stats.idle.set(idle.len() as i64);
            inner.stats.closed.inc_by(removed as u64);
        }
        shed_idle(&inner);
        while inner.idle.lock().len() < keep {
            let Ok(permit) = inner.sem.clone().try_acquire_owned() else { break };
            let ticket = match &inner.budget {
                None => None,
                Some(b) => match b.acquire(Instant::now()).await {
                    Some(t) => Some(t),
                    None => break,
                },
            };
            match inner.manager.connect().await {
                Ok(conn) => {
                    inner.stats.opened.inc();
                    inner.push_idle(conn, Instant::now(), inner.control.tag(), ticket);
                }
                Err(e) => {
                    inner.stats.errors.inc();
                    tracing::warn!(pool = %s.name, error = %e, "could not open a warm connection");
                    break;
                }
            }
            drop(permit);
        }
    }
}

/// Closes idle connections the budget asks back (oldest first).
fn shed_idle<M: Manager>(inner: &Inner<M>) {
    let Some(budget) = &inner.budget else { return };
    let mut idle = inner.idle.lock();
    while !idle.is_empty() && budget.shed_idle() {
        idle.remove(0);
        inner.stats.idle.dec();
        inner.stats.closed.inc();
    }
}
