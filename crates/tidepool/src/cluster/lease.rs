//! [`PoolBudget`]: one pool's share of a limit kept over all nodes. A unit is a lease in Redis,
//! one per open upstream connection (member `<node>:<n>` of the pool's sorted set), taken by an
//! atomic script when the pool opens a connection and removed when it closes; the heartbeat
//! renews all of them at once. While Redis cannot be used, units are granted locally up to the
//! static share ([`PoolBudget::fallback_cap`]) and still recorded, so the heartbeat re-adds them
//! when Redis is back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::{timeout, Instant};

use super::tasks::{publish, Message};
use super::{scripts, Core};
use crate::pool::{Acquire, Budget, BudgetTicket};

/// Pause between two attempts of a waiting opener.
const RETRY: Duration = Duration::from_millis(20);
/// A waiting opener asks the other nodes for idle connections at most this often.
const ASK_INTERVAL: Duration = Duration::from_millis(100);
/// After Redis refused a lease (budget in use), this pool's openers wait this long before the
/// next attempt (one attempt per pool, not one per waiting client).
const DENIED_PAUSE: Duration = Duration::from_millis(40);
/// A node at or above its fair share does not compete for leases this long after another node
/// asked for some.
const YIELD_AFTER_ASK: Duration = Duration::from_millis(250);

pub struct PoolBudget {
    core: Arc<Core>,
    /// The pool's name (`db` or `db/role`), as in messages between nodes.
    name: String,
    key: String,
    /// The limit over all nodes (the pool's size; changed by [`Budget::resize`]).
    limit: AtomicUsize,
    /// Units held (connections open with a unit).
    local: AtomicUsize,
    /// Ids of the units held (renewed by the heartbeat).
    held: Mutex<HashSet<u64>>,
    /// Units to give back at checkin (over the fair share while another node waits).
    owed: AtomicUsize,
    /// Idle connections to close (another node waits).
    owed_idle: AtomicUsize,
    /// `local` when the current outage began.
    at_outage: AtomicUsize,
    last_ask: Mutex<Option<Instant>>,
    /// When Redis last refused a lease of this pool.
    last_denied: Mutex<Option<Instant>>,
    /// When another node last asked this pool for connections.
    last_asked_by_peer: Mutex<Option<Instant>>,
}

/// One held unit; dropping it (the connection closed) gives the unit back.
struct Unit {
    budget: Arc<PoolBudget>,
    id: u64,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let b = &self.budget;
        b.local.fetch_sub(1, Ordering::SeqCst);
        b.core.metrics.leases_held.dec();
        b.held.lock().remove(&self.id);
        // Not sent (queue full, tasks stopped): the lease is no longer renewed and expires.
        let _ = b.core.releases.try_send((b.key.clone(), b.member(self.id)));
    }
}

impl PoolBudget {
    pub(super) fn new(core: Arc<Core>, name: &str, limit: usize) -> Arc<PoolBudget> {
        Arc::new(PoolBudget {
            key: core.keys.budget(name),
            core,
            name: name.to_owned(),
            limit: AtomicUsize::new(limit),
            local: AtomicUsize::new(0),
            held: Mutex::new(HashSet::new()),
            owed: AtomicUsize::new(0),
            owed_idle: AtomicUsize::new(0),
            at_outage: AtomicUsize::new(0),
            last_ask: Mutex::new(None),
            last_denied: Mutex::new(None),
            last_asked_by_peer: Mutex::new(None),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn member(&self, id: u64) -> String {
        format!("{}:{id}", self.core.node_id)
    }

    /// Members to renew.
    pub(super) fn held_members(&self) -> Vec<String> {
        self.held.lock().iter().map(|id| self.member(*id)).collect()
    }

    pub(super) fn outage_began(&self) {
        self.at_outage.store(self.local.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// This node's fair share: the limit over the live nodes (at least 1). Never-known node
    /// count: 1.
    fn share(&self) -> usize {
        match self.core.node_count() {
            0 => 1,
            n => (self.limit() / n).max(1),
        }
    }

    /// Units this pool may hold while Redis cannot be used: its share, and during the first
    /// `lease_ttl` of the outage no more than it held when the outage began (the other nodes'
    /// excess connections are still open then).
    pub(super) fn fallback_cap(&self) -> usize {
        let share = self.share();
        match *self.core.fallback_since.lock() {
            Some(since) if since.elapsed() < self.core.config.lease_ttl => share.min(self.at_outage.load(Ordering::SeqCst)),
            _ => share,
        }
    }

    /// After a heartbeat saw `live` leases in Redis: above the limit (fallback units re-added)
    /// → give back what this node holds beyond its share.
    pub(super) fn observed(&self, live: usize) {
        let limit = self.limit();
        if live > limit {
            let excess = self.local.load(Ordering::SeqCst).saturating_sub(self.share());
            self.owed.fetch_max((live - limit).min(excess), Ordering::SeqCst);
        }
    }

    /// Another node waits for `n` units: idle connections go now, and busy ones beyond this
    /// node's fair share at their checkin.
    pub(super) fn release_requested(&self, n: usize) {
        self.core.metrics.release_requests_received.inc();
        *self.last_asked_by_peer.lock() = Some(Instant::now());
        self.owed_idle.fetch_max(n, Ordering::SeqCst);
        let excess = self.local.load(Ordering::SeqCst).saturating_sub(self.share());
        self.owed.fetch_max(n.min(excess), Ordering::SeqCst);
    }

    /// A ticket for unit `id`, already counted in `local`.
    fn grant(self: &Arc<Self>, id: u64) -> BudgetTicket {
        self.held.lock().insert(id);
        self.core.metrics.leases_held.inc();
        BudgetTicket::new(Unit { budget: self.clone(), id })
    }

    /// A unit from the static share, if below it.
    fn try_local(self: &Arc<Self>) -> Option<BudgetTicket> {
        let cap = self.fallback_cap();
        let mut n = self.local.load(Ordering::SeqCst);
        loop {
            if n >= cap {
                return None;
            }
            match self.local.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    let id = self.core.seq.fetch_add(1, Ordering::SeqCst);
                    return Some(self.grant(id));
                }
                Err(now) => n = now,
            }
        }
    }

    /// One attempt in Redis: Some(granted?) or None when Redis cannot be used.
    async fn try_redis(self: &Arc<Self>) -> Option<Option<BudgetTicket>> {
        let core = &self.core;
        let id = core.seq.fetch_add(1, Ordering::SeqCst);
        let ttl = core.config.lease_ttl.as_millis() as u64;
        let settle = (core.config.heartbeat * 2).as_millis() as u64;
        let mut conn = core.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::ACQUIRE)
            .arg(3)
            .arg(&self.key)
            .arg(core.keys.epoch())
            .arg(core.keys.settle())
            .arg(self.limit())
            .arg(self.member(id))
            .arg(ttl)
            .arg(settle);
        let call = cmd.query_async::<i64>(&mut conn);
        core.metrics.lease_round_trips.inc();
        match timeout(core.config.redis_timeout, call).await {
            Ok(Ok(1)) => {
                self.local.fetch_add(1, Ordering::SeqCst);
                Some(Some(self.grant(id)))
            }
            Ok(Ok(0)) => {
                *self.last_denied.lock() = Some(Instant::now());
                core.metrics.lease_denied.inc();
                Some(None)
            }
            Ok(Ok(_)) => {
                core.set_unusable("Redis lost the cluster state; settling");
                None
            }
            Ok(Err(e)) => {
                core.failed("acquire", &e.to_string());
                core.set_unusable("acquire failed");
                None
            }
            Err(_) => {
                core.failed("acquire", "timed out");
                core.set_unusable("acquire timed out");
                None
            }
        }
    }

    /// Asks the other nodes for an idle connection (rate-limited).
    fn ask_peers(&self) {
        let mut last = self.last_ask.lock();
        if last.is_some_and(|t| t.elapsed() < ASK_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.core.metrics.release_requests_sent.inc();
        publish(&self.core, Message::Release { pool: self.name.clone(), n: 1 });
    }

    async fn acquire_until(self: Arc<Self>, deadline: Instant) -> Option<BudgetTicket> {
        loop {
            if self.core.usable() && self.may_try() {
                match self.try_redis().await {
                    Some(Some(t)) => return Some(t),
                    Some(None) => self.ask_peers(),
                    None => {}
                }
            }
            if !self.core.usable() {
                if let Some(t) = self.try_local() {
                    return Some(t);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            tokio::time::sleep(RETRY.min(deadline - now)).await;
        }
    }

    /// Whether to ask Redis now: not right after a refusal (another opener of this pool just
    /// tried), and not while another node waits and this one holds its fair share or more.
    fn may_try(&self) -> bool {
        let recent = |m: &Mutex<Option<Instant>>, d: Duration| m.lock().is_some_and(|t| t.elapsed() < d);
        if recent(&self.last_denied, DENIED_PAUSE) {
            return false;
        }
        !(self.local.load(Ordering::SeqCst) >= self.share() && recent(&self.last_asked_by_peer, YIELD_AFTER_ASK))
    }

    /// Consumes one unit of `counter` if positive.
    fn take(counter: &AtomicUsize) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// The pool hook. `acquire` needs `Arc<Self>`: the budget is always used through an `Arc`.
pub(super) struct Hook(pub Arc<PoolBudget>);

impl Budget for Hook {
    fn acquire(&self, deadline: Instant) -> Acquire<'_> {
        Box::pin(self.0.clone().acquire_until(deadline))
    }

    fn shed(&self) -> bool {
        let b = &self.0;
        if !b.core.usable() && b.local.load(Ordering::SeqCst) > b.fallback_cap() {
            return true;
        }
        PoolBudget::take(&b.owed)
    }

    fn shed_idle(&self) -> bool {
        PoolBudget::take(&self.0.owed_idle) || self.shed()
    }

    fn resize(&self, limit: usize) {
        self.0.limit.store(limit.max(1), Ordering::SeqCst);
    }
}
