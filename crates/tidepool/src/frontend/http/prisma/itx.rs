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

use crate::app::{Database, ServerLease};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Committed,
    RolledBack,
    Expired { timeout_ms: u64, taken_ms: u64 },
}

pub struct Itx {
    pub id: String,
    pub key: [u8; 32],
    pub db: Arc<Database>,
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
    per_key: Mutex<HashMap<[u8; 32], usize>>,
    closed: Mutex<VecDeque<(String, [u8; 32], Closed)>>,
}

const TOMBSTONES: usize = 1000;

pub enum Lookup {
    Open(Arc<Itx>),
    Closed(Closed),
    Unknown,
}

impl ItxRegistry {
    /// Reserves a slot for `key`, or `None` when it already has `max` open transactions.
    pub fn reserve(&self, key: [u8; 32], max: usize) -> Option<()> {
        let mut m = self.per_key.lock();
        let n = m.entry(key).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(())
    }

    pub fn unreserve(&self, key: &[u8; 32]) {
        let mut m = self.per_key.lock();
        if let Some(n) = m.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(key);
            }
        }
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
        self.unreserve(&itx.key);
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
