//! The open server connections of one pool, for the console's `SHOW SERVERS`. A connection
//! registers once, when it is opened (not per lease), and drops out when it is closed; whether it
//! is lent out or idle is read from the pool's idle list when `SHOW SERVERS` runs, so the
//! per-transaction path pays nothing for this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::net::Stream;
use crate::upstream::ServerConn;

/// What `SHOW SERVERS` shows of one server connection.
#[derive(Debug)]
pub struct ServerInfo {
    /// Unique within its pool (the console's `id` and `ptr`).
    pub id: u64,
    pub connected: SystemTime,
    /// The backend's process id (from BackendKeyData).
    pub remote_pid: i32,
    pub addr: String,
    pub port: u16,
    pub local_addr: Option<std::net::SocketAddr>,
    pub tls: bool,
}

/// Live server connections of one pool (weak references: a closed connection leaves by itself).
#[derive(Default)]
pub struct ServerList {
    next: AtomicU64,
    list: Mutex<Vec<Weak<ServerInfo>>>,
}

impl ServerList {
    /// Records a newly opened connection; the returned handle lives as long as the connection.
    pub fn register(&self, conn: &ServerConn) -> Arc<ServerInfo> {
        let info = Arc::new(ServerInfo {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            connected: SystemTime::now(),
            remote_pid: conn.cancel.pid,
            addr: conn.cancel.host.to_string(),
            port: conn.cancel.port,
            local_addr: conn.stream.tcp().local_addr().ok(),
            tls: matches!(conn.stream, Stream::ClientTls(_)),
        });
        let mut list = self.list.lock();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&info));
        info
    }

    /// The connections open now, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<ServerInfo>> {
        self.list.lock().iter().filter_map(Weak::upgrade).collect()
    }
}
