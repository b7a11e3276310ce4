//! Interactive transactions: an id (128 random bits, bound to the API key that started it) pins
//! one pooled connection from start to commit/rollback. Operations on an id run one at a time.
//! A transaction past its `timeout` is rolled back in the background; later calls get Prisma's
//! P2028 "expired" error, as do calls on committed or rolled-back ids (remembered in a bounded
//! tombstone list).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::app::ServerLease;
use crate::target::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Committed,
    RolledBack,
    /// `timeTaken` is reported when a late operation arrives (as Prisma's executor does), so the
    /// start is kept rather than the time of expiry.
    Expired {
        timeout_ms: u64,
        started: Instant,
    },
}

pub struct Itx {
    pub id: String,
    pub key: [u8; 32],
    /// Where the transaction runs (its connection came from the target's pool).
    pub target: Target,
    pub started: Instant,
    pub timeout: Duration,
    /// The pinned connection; `None` once closed.
    pub conn: tokio::sync::Mutex<Option<ServerLease>>,
    /// Tables written in it (`[cache] invalidate_on_write`): dropped from the cache when each
    /// write runs and again after the commit.
    pub writes: Mutex<Vec<String>>,
}

impl Itx {
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }
}

#[derive(Default)]
pub struct ItxRegistry {
    open: Mutex<HashMap<String, Arc<Itx>>>,
    slots: Mutex<Slots>,
    closed: Mutex<VecDeque<(String, [u8; 32], Closed)>>,
}

/// Open (or starting) transactions per API key and per database, under one lock so a
/// reservation checks both limits at once.
#[derive(Default)]
struct Slots {
    per_key: HashMap<[u8; 32], usize>,
    per_db: HashMap<String, usize>,
}

/// Which limit refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The API key already holds its share of the pool.
    Key(usize),
    /// All keys together already hold the database's share of the pool.
    Database(usize),
}

fn decrement<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(k);
        }
    }
}

const TOMBSTONES: usize = 1000;

pub enum Lookup {
    Open(Arc<Itx>),
    Closed(Closed),
    Unknown,
}

impl ItxRegistry {
    /// Reserves a slot for `key` on database `db`, unless the key already has `max_key` open
    /// transactions or the database `max_db` (all keys together).
    pub fn reserve(&self, key: [u8; 32], db: &str, max_key: usize, max_db: usize) -> Result<(), Full> {
        let mut s = self.slots.lock();
        if s.per_key.get(&key).copied().unwrap_or(0) >= max_key {
            return Err(Full::Key(max_key));
        }
        if s.per_db.get(db).copied().unwrap_or(0) >= max_db {
            return Err(Full::Database(max_db));
        }
        *s.per_key.entry(key).or_default() += 1;
        *s.per_db.entry(db.to_owned()).or_default() += 1;
        Ok(())
    }

    pub fn unreserve(&self, key: &[u8; 32], db: &str) {
        let mut s = self.slots.lock();
        decrement(&mut s.per_key, key);
        decrement(&mut s.per_db, &db.to_owned());
    }

    pub fn insert(&self, itx: Arc<Itx>) {
        self.open.lock().insert(itx.id.clone(), itx);
    }

    pub fn get(&self, id: &str, key: &[u8; 32]) -> Lookup {
        if let Some(t) = self.open.lock().get(id) {
            // A foreign key's id is indistinguishable from an unknown one.
            return if tidepool_proto::auth::ct_eq(&t.key, key) { Lookup::Open(t.clone()) } else { Lookup::Unknown };
        }
        match self.closed.lock().iter().find(|(i, k, _)| i == id && tidepool_proto::auth::ct_eq(k, key)) {
            Some((_, _, c)) => Lookup::Closed(*c),
            None => Lookup::Unknown,
        }
    }

    /// Records the end of a transaction (once) and frees its key slot.
    pub fn close(&self, itx: &Itx, how: Closed) {
        if self.open.lock().remove(&itx.id).is_none() {
            return;
        }
        self.unreserve(&itx.key, &itx.target.pool_id());
        let mut c = self.closed.lock();
        if c.len() >= TOMBSTONES {
            c.pop_front();
        }
        c.push_back((itx.id.clone(), itx.key, how));
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_respect_the_key_and_the_database_limits() {
        let r = ItxRegistry::default();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        // Per key 2, per database 3: two keys cannot take more than 3 together.
        assert_eq!(r.reserve(a, "app", 2, 3), Ok(()));
        assert_eq!(r.reserve(a, "app", 2, 3), Ok(()));
        assert_eq!(r.reserve(a, "app", 2, 3), Err(Full::Key(2)));
        assert_eq!(r.reserve(b, "app", 2, 3), Ok(()));
        assert_eq!(r.reserve(b, "app", 2, 3), Err(Full::Database(3)));
        // Another database has its own budget.
        assert_eq!(r.reserve(c, "other", 2, 3), Ok(()));
        // Releasing one of the first key's slots lets the second key in.
        r.unreserve(&a, "app");
        assert_eq!(r.reserve(b, "app", 2, 3), Ok(()));
        for (k, db) in [(a, "app"), (b, "app"), (b, "app"), (c, "other")] {
            r.unreserve(&k, db);
        }
        let s = r.slots.lock();
        assert!(s.per_key.is_empty() && s.per_db.is_empty(), "every slot released");
    }
}
