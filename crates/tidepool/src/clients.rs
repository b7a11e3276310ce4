//! The registry of live client sessions (wire and WebSocket), for the admin console's
//! `SHOW CLIENTS`, `SHOW POOLS`, `SHOW LISTS` and `KILL_CLIENT`. A session registers once logged in and is
//! removed when its [`Registered`] guard drops; nothing here touches a session's traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

/// What the console shows of one client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique for the life of the process (never reused).
    pub id: u64,
    pub user: String,
    /// The database it logged in to (`pgbouncer` for console sessions).
    pub database: String,
    /// `tcp` (the wire listener) or `websocket`.
    pub frontend: &'static str,
    pub addr: Option<SocketAddr>,
    pub connected: SystemTime,
    pub application_name: Option<String>,
    /// Cancelled by the console's `KILL_CLIENT`: the session closes at once.
    pub kill: tokio_util::sync::CancellationToken,
}

type Live = Arc<Mutex<BTreeMap<u64, Arc<ClientInfo>>>>;

/// Live sessions by id.
#[derive(Default)]
pub struct ClientRegistry {
    next: AtomicU64,
    live: Live,
}

/// Keeps a session listed; removes it on drop.
pub struct Registered {
    live: Live,
    info: Arc<ClientInfo>,
}

impl Registered {
    pub fn info(&self) -> &ClientInfo {
        &self.info
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.live.lock().remove(&self.info.id);
    }
}

/// A client about to be listed (the id is assigned by [`ClientRegistry::register`]).
pub struct NewClient {
    pub user: String,
    pub database: String,
    pub frontend: &'static str,
    pub addr: Option<SocketAddr>,
    pub application_name: Option<String>,
}

impl ClientRegistry {
    pub fn register(&self, c: NewClient) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            user: c.user,
            database: c.database,
            frontend: c.frontend,
            addr: c.addr,
            connected: SystemTime::now(),
            application_name: c.application_name,
            kill: Default::default(),
        });
        self.live.lock().insert(id, info.clone());
        Registered { live: self.live.clone(), info }
    }

    /// A snapshot of the live clients, by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        self.live.lock().values().cloned().collect()
    }

    /// Asks the live client `id` to close; false when there is none.
    pub fn kill(&self, id: u64) -> bool {
        let Some(c) = self.live.lock().get(&id).cloned() else { return false };
        c.kill.cancel();
        true
    }

    /// Live clients of one database.
    pub fn count_for(&self, database: &str) -> usize {
        self.live.lock().values().filter(|c| c.database == database).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_drop() {
        let r = ClientRegistry::default();
        let new = |db: &str| NewClient { user: "u".into(), database: db.into(), frontend: "tcp", addr: None, application_name: None };
        let a = r.register(new("a"));
        let b = r.register(new("b"));
        assert_ne!(a.info().id, b.info().id);
        assert_eq!(r.count_for("a"), 1);
        assert!(r.kill(b.info().id) && b.info().kill.is_cancelled());
        assert!(!r.kill(999));
        drop(a);
        assert_eq!(r.count_for("a"), 0);
        assert_eq!(r.snapshot().len(), 1);
    }
}
