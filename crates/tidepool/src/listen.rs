//! `LISTEN`/`NOTIFY` in transaction mode: one listener connection per database carries every
//! client's channels, so a client hears its notifications between transactions, when it holds
//! no server. The connection is opened with the database's own pool's credentials but outside
//! its `pool_size` (so listeners never starve the pool, even at `pool_size = 1`): one extra
//! upstream connection per database, open only while at least one channel is listened to, and
//! closed when the last one goes. Clients subscribe with [`Listener::subscribe`]; each gets a bounded queue of
//! NotificationResponse messages (full: new ones are dropped and counted).
//!
//! Channel names reach the server only as a bound parameter: the listener stores the name with
//! `set_config` and a fixed `DO` block runs `LISTEN` on `format('%I', …)` of it, so the server
//! does the quoting.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tidepool_proto::backend::ErrorFields;
use tidepool_proto::framing::{try_frame, MAX_MESSAGE_CEILING};
use tidepool_proto::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::app::Upstream;
use crate::pool::{Manager, Pool};
use crate::upstream::ServerConn;

/// Notifications queued per client before new ones are dropped.
pub const CLIENT_QUEUE: usize = 1024;

const LISTEN_SQL: &str = "DO $tp$BEGIN EXECUTE pg_catalog.format('LISTEN %I', pg_catalog.current_setting('tidepool.channel')); END$tp$";
const UNLISTEN_SQL: &str = "DO $tp$BEGIN EXECUTE pg_catalog.format('UNLISTEN %I', pg_catalog.current_setting('tidepool.channel')); END$tp$";

/// Why a `LISTEN` could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("the listener connection is unavailable: {0}")]
    Unavailable(String),
    #[error("more than {0} LISTEN channels (max_listen_channels)")]
    TooMany(usize),
}

enum Cmd {
    Listen(String, oneshot::Sender<Result<(), String>>),
    Unlisten(String),
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// channel → subscriber id → its queue.
    subs: HashMap<String, HashMap<u64, mpsc::Sender<Bytes>>>,
    /// The running listener task, if any.
    cmd: Option<mpsc::UnboundedSender<Cmd>>,
}

/// The shared listener of one database.
pub struct Listener {
    pool: Pool<Upstream>,
    tracker: TaskTracker,
    inner: Mutex<Inner>,
    channels: Gauge,
    dropped: Counter,
}

impl Listener {
    /// `metrics`: the database's registered `listen_channels` and `notifications_dropped`.
    pub fn new(pool: Pool<Upstream>, tracker: TaskTracker, metrics: &crate::db_metrics::DbMetrics) -> Arc<Listener> {
        let (channels, dropped) = (metrics.listen_channels.clone(), metrics.notifications_dropped.clone());
        Arc::new(Listener { pool, tracker, inner: Mutex::default(), channels, dropped })
    }

    /// A new, empty subscription for one client.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = {
            let mut inner = self.inner.lock();
            inner.next_id += 1;
            inner.next_id
        };
        Subscription { id, listener: self.clone(), tx, rx, channels: HashSet::new() }
    }

    /// Channels listened to now (tests, console).
    pub fn channel_count(&self) -> usize {
        self.inner.lock().subs.len()
    }

    fn send(self: &Arc<Self>, inner: &mut Inner, cmd: Cmd) {
        if let Some(tx) = &inner.cmd {
            if let Err(mpsc::error::SendError(cmd)) = tx.send(cmd) {
                inner.cmd = None;
                return self.send(inner, cmd);
            }
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(cmd);
        inner.cmd = Some(tx);
        self.tracker.spawn(self.clone().run(rx));
    }

    fn dispatch(&self, frame: &tidepool_proto::Frame) {
        let Some(channel) = notification_channel(frame.body()) else { return };
        let inner = self.inner.lock();
        let Some(subs) = inner.subs.get(channel) else { return };
        for tx in subs.values() {
            if tx.try_send(frame.raw.clone()).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// The listener task: leases a connection, listens to every channel subscribed, forwards
    /// notifications; gives the connection back when no channel is left.
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            let mut lease = match self.pool.manager().connect().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listener: no connection");
                    // Fail the waiting LISTENs; later ones retry.
                    let msg = e.to_string();
                    {
                        let mut inner = self.inner.lock();
                        while let Ok(cmd) = rx.try_recv() {
                            if let Cmd::Listen(_, ack) = cmd {
                                let _ = ack.send(Err(msg.clone()));
                            }
                        }
                        if inner.subs.is_empty() {
                            inner.cmd = None;
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match self.serve(&mut lease, &mut rx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "listener connection lost; notifications sent meanwhile are lost");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn serve(self: &Arc<Self>, lease: &mut ServerConn, rx: &mut mpsc::UnboundedReceiver<Cmd>) -> Result<(), String> {
        let existing: Vec<String> = self.inner.lock().subs.keys().cloned().collect();
        let mut listening: HashSet<String> = HashSet::new();
        for c in existing {
            self.exec(lease, LISTEN_SQL, &c).await?.map_or(Ok(()), Err)?;
            listening.insert(c);
        }
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Listen(c, ack)) => {
                        let r = if listening.contains(&c) { Ok(()) } else { self.exec(lease, LISTEN_SQL, &c).await?.map_or(Ok(()), Err) };
                        if r.is_ok() {
                            listening.insert(c);
                        }
                        let _ = ack.send(r);
                    }
                    Some(Cmd::Unlisten(c)) => {
                        let still = self.inner.lock().subs.contains_key(&c);
                        if !still && listening.remove(&c) {
                            self.exec(lease, UNLISTEN_SQL, &c).await?;
                        }
                    }
                    None => return Ok(()),
                },
                n = read_more(lease) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        return Err("connection closed".into());
                    }
                    self.drain(lease)?;
                }
            }
            self.channels.set(i64::try_from(listening.len()).unwrap_or(i64::MAX));
            let mut inner = self.inner.lock();
            if inner.subs.is_empty() && rx.is_empty() {
                inner.cmd = None;
                self.channels.set(0);
                return Ok(());
            }
        }
    }

    /// Handles complete messages read while idle: notifications go out, a FATAL ends.
    fn drain(&self, lease: &mut ServerConn) -> Result<(), String> {
        while let Some(f) = try_frame(&mut lease.rbuf, MAX_MESSAGE_CEILING).map_err(|e| e.to_string())? {
            match f.tag {
                b'A' => self.dispatch(&f),
                b'E' => return Err(ErrorFields::parse(f.body()).map(|e| e.message().to_owned()).unwrap_or_default()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs `sql` after storing `channel` in `tidepool.channel` (a bound parameter), in one
    /// round trip. Outer error: the connection failed; inner: the server refused.
    async fn exec(&self, lease: &mut ServerConn, sql: &str, channel: &str) -> Result<Option<String>, String> {
        let mut out = BytesMut::new();
        let e = |e: tidepool_proto::ProtoError| e.to_string();
        frontend::parse(&mut out, "", "SELECT pg_catalog.set_config('tidepool.channel', $1, false)", &[]).map_err(e)?;
        frontend::bind_text(&mut out, "", "", &[Some(channel)]).map_err(e)?;
        frontend::execute(&mut out, "", 0);
        frontend::parse(&mut out, "", sql, &[]).map_err(e)?;
        frontend::bind_text::<&str>(&mut out, "", "", &[]).map_err(e)?;
        frontend::execute(&mut out, "", 0);
        frontend::sync(&mut out);
        lease.stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut refused = None;
        loop {
            let f = loop {
                if let Some(f) = try_frame(&mut lease.rbuf, MAX_MESSAGE_CEILING).map_err(|e| e.to_string())? {
                    break f;
                }
                if read_more(lease).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".into());
                }
            };
            match f.tag {
                b'A' => self.dispatch(&f),
                b'E' => refused = Some(ErrorFields::parse(f.body()).map(|e| e.message().to_owned()).unwrap_or_default()),
                b'Z' => return Ok(refused),
                _ => {}
            }
        }
    }
}

async fn read_more(lease: &mut ServerConn) -> std::io::Result<usize> {
    lease.stream.read_buf(&mut lease.rbuf).await
}

/// The channel of a NotificationResponse body (pid, channel, payload).
fn notification_channel(body: &[u8]) -> Option<&str> {
    let rest = body.get(4..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

/// One client's channels and its notification queue. Dropping it unlistens them all.
pub struct Subscription {
    id: u64,
    listener: Arc<Listener>,
    tx: mpsc::Sender<Bytes>,
    pub rx: mpsc::Receiver<Bytes>,
    channels: HashSet<String>,
}

impl Subscription {
    /// Listens to `channel` (at most `max` channels); returns once the listener connection
    /// listens, so a NOTIFY sent after this returns is heard.
    pub async fn listen(&mut self, channel: &str, max: usize) -> Result<(), ListenError> {
        if self.channels.contains(channel) {
            return Ok(());
        }
        if self.channels.len() >= max {
            return Err(ListenError::TooMany(max));
        }
        let (ack, done) = oneshot::channel();
        {
            let mut inner = self.listener.inner.lock();
            inner.subs.entry(channel.to_owned()).or_default().insert(self.id, self.tx.clone());
            // Even a channel others listen to waits for the listener, which may still be
            // running their LISTEN.
            self.listener.send(&mut inner, Cmd::Listen(channel.to_owned(), ack));
        }
        self.channels.insert(channel.to_owned());
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.unlisten(channel);
                Err(ListenError::Unavailable(e))
            }
            Err(_) => {
                self.unlisten(channel);
                Err(ListenError::Unavailable("listener stopped".into()))
            }
        }
    }

    pub fn unlisten(&mut self, channel: &str) {
        if !self.channels.remove(channel) {
            return;
        }
        let mut inner = self.listener.inner.lock();
        let gone = match inner.subs.get_mut(channel) {
            Some(m) => {
                m.remove(&self.id);
                m.is_empty()
            }
            None => false,
        };
        if gone {
            inner.subs.remove(channel);
            if inner.cmd.is_some() {
                self.listener.send(&mut inner, Cmd::Unlisten(channel.to_owned()));
            }
        }
    }

    pub fn unlisten_all(&mut self) {
        let all: Vec<String> = self.channels.iter().cloned().collect();
        for c in all {
            self.unlisten(&c);
        }
    }

    /// True if the client listens to `channel` (a queued notification of a channel it has
    /// since unlistened is not delivered).
    pub fn listens(&self, channel_of_notification: &[u8]) -> bool {
        notification_channel(channel_of_notification.get(5..).unwrap_or_default()).is_some_and(|c| self.channels.contains(c))
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.unlisten_all();
    }
}
