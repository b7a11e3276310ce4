//! One client session after login: a single-task event loop that moves bytes between the client
//! and (when one is attached) a leased server connection, without blocking either direction.
//!
//! Pooling rules (see docs/architecture.md): in transaction mode a server is leased when the
//! client sends its first message and returned once every message forwarded has been answered
//! and the server reports ReadyForQuery 'I' (idle, no transaction). In session mode the lease
//! lasts for the whole session. Message rewriting for prepared statements and parameter tracking
//! lives in [`super::server_side`].

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tidepool_proto::framing::try_frame;
use tidepool_proto::{backend, sqlstate, ProtoError};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;
use tracing::Instrument;

use super::armed::Armed;
use super::handshake::{login, Login};
use super::io::{reserve, write_some};
use super::prepared::{ClientStatements, Pending};
use super::tracking::{Extra, Touched};
use super::tx_meter::TxMeter;
use super::{fail_login, LoginError};
use crate::app::{App, ClientSlot, Database, ServerLease};
use crate::cancel::CancelKey;
use crate::checkin;
use crate::clients::{NewClient, Registered};
use crate::config::PoolMode;
use crate::net::Duplex;
use crate::stats::{ClientGuard, Front, Outcome};

/// Stop reading from one side while this much is queued for the other.
pub(super) const HIGH_WATER: usize = 256 * 1024;

pub(super) struct Attached {
    pub lease: ServerLease,
    pub to_server: BytesMut,
    /// ReadyForQuery messages still owed by the server (one per Sync, Query or FunctionCall).
    pub pending: usize,
    /// Extended-protocol messages sent since the last Sync.
    pub unsynced: bool,
    /// Transaction status from the last ReadyForQuery.
    pub status: u8,
    /// Expected ParseCompletes and Sync boundaries, in server answer order.
    pub queue: VecDeque<Pending>,
    /// The server is in COPY FROM STDIN (CopyInResponse seen, client has not ended it yet);
    /// `Some(true)` when a simple Query started it, `Some(false)` for an extended Execute.
    pub copy_in: Option<bool>,
    /// Bytes written to the server stream but not flushed yet (TLS).
    pub needs_flush: bool,
    /// What this transaction did to session state (`tracking.rs`).
    pub touched: Touched,
    /// Pinned and idle between transactions: not released until the client sends again.
    pub keep: bool,
}

pub(super) struct Session<S> {
    pub app: Arc<App>,
    pub db: Arc<Database>,
    pub client: S,
    pub crbuf: BytesMut,
    pub to_client: BytesMut,
    pub client_needs_flush: bool,
    pub mode: PoolMode,
    pub max_msg: usize,
    /// Session parameters (lower-case names) this client's servers must carry; shared between
    /// clients that logged in with the same ones (copied on write, see [`shared_params`]).
    pub params: Arc<HashMap<String, String>>,
    /// `client_encoding` in `params` is UTF-8 (recomputed whenever `params` changes).
    pub utf8: bool,
    pub stmts: ClientStatements,
    pub key: CancelKey,
    pub server: Option<Box<Attached>>,
    /// After a failed lease in the middle of an extended-protocol batch: drop messages until Sync.
    pub skip_until_sync: bool,
    /// Tables this client wrote since its last idle ReadyForQuery (`[cache] invalidate_on_write`):
    /// their cache entries are dropped when the write is sent and again once it is committed.
    pub pending_writes: Vec<String>,
    /// Last time the client or its server made progress (idle timeouts count from here); set
    /// when bytes are read, it also times the transaction and the pool wait (one clock read).
    pub(super) last_activity: Instant,
    /// Armed when `client_idle_timeout` or `idle_transaction_timeout` is set.
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `wire` or `ws`: the label this session's figures are recorded under.
    pub front: Front,
    /// The transaction in progress, measured for `crate::stats`.
    pub tx: TxMeter,
    _front_client: ClientGuard,
    _slot: ClientSlot,
    /// Keeps the session listed in the console's `SHOW CLIENTS`.
    _registered: Registered,
    /// Ended by `KILL_CLIENT` in the middle of anything: its server must not be reused.
    killed: bool,
    /// Replayed settings, pin and LISTEN subscription, once the client uses any (`tracking.rs`).
    pub(super) extra: Option<Box<Extra>>,
}

/// Which idle timeout fired.
#[derive(Clone, Copy)]
enum Idle {
    /// Between transactions (`client_idle_timeout`).
    Client,
    /// Holding a server inside a transaction, or not reading its results (`idle_transaction_timeout`).
    InTransaction,
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    ClientWrite(std::io::Error),
    ServerWrite(std::io::Error),
    Release,
    Notified,
    Shutdown,
    IdleTimeout(Idle),
}

/// Why a session ended.
pub(super) enum End {
    ClientGone,
    Terminate,
    /// Tell the client (FATAL) and close.
    Fatal(&'static str, String),
}

/// How a client reached the session: its login deadline, its address (for a WebSocket, as the
/// HTTP listener saw it), whether the WebSocket login rules apply, and the listener's
/// pre-authentication slot, given back once the login is over.
pub(super) struct Arrival {
    pub deadline: Instant,
    pub peer: Option<std::net::SocketAddr>,
    pub websocket: bool,
    pub preauth: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Logs a client in and runs its session.
pub(super) async fn run<S: Duplex>(app: Arc<App>, mut client: S, mut rbuf: BytesMut, params: Vec<(String, String)>, arrival: Arrival) {
    let Arrival { deadline, peer, websocket, preauth } = arrival;
    let key = app.cancels.register();
    // Boxed: the login's state is freed once it is done.
    let logged =
        Box::pin(tokio::time::timeout_at(deadline, login(&app, &mut client, &mut rbuf, params, (key.pid, key.secret), websocket, peer.map(|p| p.ip())))).await;
    let logged = match logged {
        Err(_) => return Box::pin(fail_login(&app, &mut client, LoginError::Fatal(sqlstate::PROTOCOL_VIOLATION, "login timed out".into()))).await,
        Ok(Err(e)) => return Box::pin(fail_login(&app, &mut client, e)).await,
        Ok(Ok(l)) => l,
    };
    drop(preauth);
    let transport = if websocket { "websocket" } else { "tcp" };
    let logged = match logged {
        Login::Session(l) => l,
        Login::Console(operator) => return super::console::start(&app, client, rbuf, operator, transport, peer),
    };
    let registered = app.clients.register(NewClient {
        user: logged.user.clone(),
        database: logged.database.config.name.clone(),
        frontend: transport,
        addr: peer,
        application_name: logged.params.get("application_name").cloned(),
    });
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let span = tracing::info_span!("session", transport, %peer, user = %logged.user, db = %logged.database.config.name);
    tracing::debug!(parent: &span, "client logged in");
    app.metrics.clients.inc();
    let db = logged.database;
    let front = if websocket { Front::Ws } else { Front::Wire };
    let front_client = db.traffic.client(front);
    let timeouts = &app.config().server;
    let timed = !timeouts.client_idle_timeout.is_zero() || !timeouts.idle_transaction_timeout.is_zero();
    let params = shared_params(&db, logged.params.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect());
    let session = Session {
        mode: db.config.pool_mode,
        max_msg: db.config.max_message_size,
        app: app.clone(),
        db,
        client,
        // An idle client holds no read buffer (see `poll_client_read`).
        crbuf: if rbuf.is_empty() { BytesMut::new() } else { rbuf },
        to_client: BytesMut::new(),
        client_needs_flush: false,
        utf8: super::server_side::utf8_params(&params),
        params,
        stmts: ClientStatements::default(),
        key,
        server: None,
        skip_until_sync: false,
        pending_writes: Vec::new(),
        last_activity: Instant::now(),
        idle_timer: timed.then(|| Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600)))),
        front,
        tx: TxMeter::default(),
        _front_client: front_client,
        _slot: logged.slot,
        _registered: registered,
        killed: false,
        extra: None,
    };
    // The session gets a task of its own: this one (with the login's larger state) ends here,
    // so an idle client costs only the session loop's memory.
    let task = session.serve();
    tracing::trace!(bytes = std::mem::size_of_val(&task), "session task");
    // A disabled span (the level filters it out) would only cost an enter and exit per poll.
    if span.is_disabled() {
        app.tracker.spawn(task);
    } else {
        app.tracker.spawn(task.instrument(span));
    }
}

/// Clients of one application log in with the same startup parameters: the database keeps the
/// last set seen and shares it (an idle client then holds no map of its own). Contents are
/// compared, so a client never gets another's values; a session that changes its own copies it
/// first.
fn shared_params(db: &Database, params: HashMap<String, String>) -> Arc<HashMap<String, String>> {
    let mut last = db.last_params.lock();
    match last.as_ref() {
        Some(p) if **p == params => p.clone(),
        _ => last.insert(Arc::new(params)).clone(),
    }
}

impl<S: Duplex> Session<S> {
    // Not an `async fn`: its argument would be kept in the task twice (the parameter and the
    // local it is moved into); the block uses the captured session in place.
    #[allow(clippy::manual_async_fn)]
    fn serve(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let kill = self._registered.info().kill.clone();
            // Gated: polled again only once it wakes the task, not on every turn of the loop.
            let kill_signal = std::pin::pin!(kill.cancelled());
            let mut kill_signal = Armed::new(kill_signal);
            let end = tokio::select! {
                biased;
                () = &mut kill_signal => {
                    // KILL_CLIENT: whatever was in flight is abandoned; the server is closed, never reused.
                    self.killed = true;
                    self.to_client.clear();
                    End::Fatal(sqlstate::ADMIN_SHUTDOWN, "terminated by the administrator (KILL_CLIENT)".into())
                }
                end = self.run_loop() => end,
            };
            let app = self.app.clone();
            Box::pin(self.finish(end)).await;
            app.metrics.clients.dec();
        }
    }
}

impl<S: Duplex> Session<S> {
    async fn run_loop(&mut self) -> End {
        let shutdown = self.app.shutdown.clone();
        // Gated (see `armed.rs`): polled on every turn between transactions otherwise.
        let shutdown = std::pin::pin!(shutdown.cancelled_owned());
        let mut shutdown = Armed::new(shutdown);
        // Messages pipelined behind the login are already buffered.
        if !self.crbuf.is_empty() {
            if let Err(end) = Box::pin(self.on_client_data()).await {
                return end;
            }
        }
        loop {
            let ev = poll_fn(|cx| self.poll_io(cx, &mut shutdown)).await;
            let r = match ev {
                Event::Client(Ok(0)) | Event::Client(Err(_)) => return End::ClientGone,
                Event::ClientWrite(e) => {
                    tracing::debug!(error = %e, "client write failed");
                    return End::ClientGone;
                }
                Event::Client(Ok(_)) => {
                    self.last_activity = Instant::now();
                    // Boxed: its state is allocated while it runs, not held by an idle session.
                    Box::pin(self.on_client_data()).await
                }
                Event::Server(Ok(0)) | Event::Server(Err(_)) => self.on_server_lost(),
                Event::ServerWrite(e) => {
                    tracing::warn!(error = %e, "server write failed");
                    self.on_server_lost()
                }
                Event::Server(Ok(_)) => {
                    self.last_activity = Instant::now();
                    self.on_server_data()
                }
                Event::Notified => Ok(()),
                Event::Release => {
                    if !self.release_now() {
                        // Boxed (like attach): allocated when needed, not held while idle.
                        Box::pin(self.release()).await;
                    }
                    Ok(())
                }
                Event::Shutdown => return End::Fatal(sqlstate::ADMIN_SHUTDOWN, "tidepool is shutting down".into()),
                Event::IdleTimeout(Idle::Client) => {
                    return End::Fatal(sqlstate::IDLE_SESSION_TIMEOUT, "terminating connection due to idle-session timeout (client_idle_timeout)".into())
                }
                Event::IdleTimeout(Idle::InTransaction) => {
                    return End::Fatal(
                        sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                        "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)".into(),
                    )
                }
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    fn releasable(&self) -> bool {
        self.mode == PoolMode::Transaction
            && self
                .server
                .as_ref()
                .is_some_and(|a| a.pending == 0 && !a.unsynced && a.copy_in.is_none() && a.status == b'I' && a.to_server.is_empty() && !a.keep)
    }

    fn poll_io(&mut self, cx: &mut Context<'_>, shutdown: &mut Armed<Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>>) -> Poll<Event> {
        let unsent = self.to_client.len();
        if let Err(e) = write_some(&mut self.client, &mut self.to_client, &mut self.client_needs_flush, cx) {
            return Poll::Ready(Event::ClientWrite(e));
        }
        if self.to_client.len() < unsent && self.idle_timer.is_some() {
            self.last_activity = Instant::now();
        }
        if self.to_client.is_empty() && self.to_client.capacity() > HIGH_WATER {
            self.to_client = BytesMut::new();
        }
        if let Some(a) = self.server.as_mut() {
            if let Err(e) = write_some(&mut a.lease.stream, &mut a.to_server, &mut a.needs_flush, cx) {
                return Poll::Ready(Event::ServerWrite(e));
            }
        }
        // Measured after the write: a client read skipped because of a backlog that this very
        // write cleared would never be woken again.
        let to_server_len = self.server.as_ref().map_or(0, |a| a.to_server.len());
        if self.releasable() {
            return Poll::Ready(Event::Release);
        }
        if let Some(a) = self.server.as_mut() {
            if self.to_client.len() < HIGH_WATER {
                let conn: &mut crate::upstream::ServerConn = &mut a.lease;
                reserve(&mut conn.rbuf, 16 * 1024);
                if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf) {
                    return Poll::Ready(Event::Server(r));
                }
            }
        }
        // Before the client read: a query that arrives together with the drain between
        // transactions must not start a new one.
        let between = self.server.as_ref().is_none_or(|a| a.keep && a.pending == 0 && a.status == b'I' && a.to_server.is_empty());
        if between && shutdown.poll_armed(cx).is_ready() {
            return Poll::Ready(Event::Shutdown);
        }
        if to_server_len < HIGH_WATER {
            if let Poll::Ready(r) = self.poll_client_read(cx) {
                return Poll::Ready(Event::Client(r));
            }
        }
        if self.extra.is_some() && self.poll_notifications(cx) {
            return Poll::Ready(Event::Notified);
        }
        if let Some(idle) = self.poll_idle(cx) {
            return Poll::Ready(Event::IdleTimeout(idle));
        }
        Poll::Pending
    }

    /// Reads from the client. Between transactions the session holds no read buffer (memory per
    /// idle client stays low): the first bytes land on the stack and are copied into a buffer
    /// allocated then; a partial message or an attached server reads into a large one directly.
    fn poll_client_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.server.is_some() || self.crbuf.capacity() > 0 {
            reserve(&mut self.crbuf, 16 * 1024);
            return poll_read_buf(Pin::new(&mut self.client), cx, &mut self.crbuf);
        }
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut rb = tokio::io::ReadBuf::uninit(&mut stack);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.client), cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                if !got.is_empty() {
                    self.crbuf.reserve(16 * 1024);
                    self.crbuf.extend_from_slice(got);
                }
                Poll::Ready(Ok(got.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The idle timeout that applies now, if any: none while the server works for the client.
    fn idle_limit(&self) -> Option<(std::time::Duration, Idle)> {
        let cfg = &self.app.config().server;
        let (limit, kind) = match &self.server {
            // Results the client does not read hold the server as much as an idle transaction.
            Some(_) if self.to_client.len() >= HIGH_WATER => (cfg.idle_transaction_timeout, Idle::InTransaction),
            Some(a) if a.pending > 0 => return None,
            Some(a) if a.status != b'I' || a.unsynced || a.copy_in.is_some() => (cfg.idle_transaction_timeout, Idle::InTransaction),
            _ => (cfg.client_idle_timeout, Idle::Client),
        };
        (!limit.is_zero()).then_some((limit, kind))
    }

    /// Polls the idle timer. It is re-armed only when it fires early or must fire sooner, not on
    /// every message.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Option<Idle> {
        // No timer, no timeout (and no configuration read on every turn).
        self.idle_timer.as_ref()?;
        let (limit, kind) = self.idle_limit()?;
        let due = self.last_activity + limit;
        let timer = self.idle_timer.as_mut()?;
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= due {
                return Some(kind);
            }
            timer.as_mut().reset(due);
        }
        None
    }

    async fn on_client_data(&mut self) -> Result<(), End> {
        loop {
            if let Some(&tag) = self.crbuf.first() {
                if !tidepool_proto::frontend::is_session_message(tag) {
                    return Err(End::Fatal(sqlstate::PROTOCOL_VIOLATION, format!("invalid frontend message type {tag}")));
                }
            }
            let frame = match try_frame(&mut self.crbuf, self.max_msg) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e @ (ProtoError::TooLarge { .. } | ProtoError::BadLength(_))) => {
                    return Err(End::Fatal(sqlstate::PROTOCOL_VIOLATION, format!("{e} (max_message_size)")));
                }
                Err(e) => return Err(End::Fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())),
            };
            if frame.tag == b'X' {
                return Err(End::Terminate);
            }
            if self.skip_until_sync {
                if frame.tag == b'S' {
                    self.skip_until_sync = false;
                    backend::ready_for_query(&mut self.to_client, b'I');
                }
                continue;
            }
            self.tx.client_message(frame.raw.len(), self.last_activity);
            if self.server.is_none() {
                // An idle server is attached without a future when nothing needs waiting for;
                // otherwise (with the lease taken already, if any) asynchronously.
                let waiting = match self.db.try_lease() {
                    None => Some(None),
                    Some(lease) => self.attach_now(lease).err().map(Some),
                };
                if let Some(ready) = waiting {
                    if let Err(e) = Box::pin(self.attach(ready)).await {
                        self.lease_failed(frame.tag, e)?;
                        continue;
                    }
                }
            }
            let (frame, fx) = self.screen(frame);
            let (frame, fx) = match fx {
                // Boxed: only messages with LISTEN/UNLISTEN get here.
                Some(fx) if !fx.listen.is_empty() => match Box::pin(self.carry_listens(&fx)).await {
                    Ok(()) => (frame, Some(fx)),
                    Err((code, msg)) => (self.rejected(&frame, code, &msg), None),
                },
                fx => (frame, fx),
            };
            self.on_client_frame(frame, fx)?;
        }
        if self.server.is_none() && self.crbuf.is_empty() {
            self.crbuf = BytesMut::new();
        }
        Ok(())
    }

    fn on_server_lost(&mut self) -> Result<(), End> {
        let Some(a) = self.server.take() else { return Ok(()) };
        let busy = a.pending > 0 || a.unsynced || a.copy_in.is_some() || a.status != b'I';
        a.lease.discard();
        if let Some(x) = self.extra.as_mut().filter(|x| x.pin.is_some() || x.sticky) {
            x.pin = None;
            return Err(End::Fatal(
                sqlstate::CONNECTION_FAILURE,
                "server connection holding this session's state (temp tables, prepared statements, locks) was lost".into(),
            ));
        }
        if busy {
            return Err(End::Fatal(sqlstate::CONNECTION_FAILURE, "server connection lost; the transaction was not completed".into()));
        }
        Ok(())
    }

    /// Client gone or session over: leave the server clean or close it.
    async fn finish(mut self, end: End) {
        let outcome = match &end {
            End::Fatal(code, _) => Outcome::from_sqlstate(code),
            _ => Outcome::ClientError,
        };
        self.tx.end(&self.db.traffic, self.front, outcome);
        if let End::Fatal(code, msg) = &end {
            self.db.traffic.note_error(self.front, msg);
            self.app.metrics.client_errors.inc();
            tracing::info!(code, msg = %msg, "closing client");
            let mut out = std::mem::take(&mut self.to_client);
            backend::error_response(&mut out, "FATAL", code, msg);
            self.to_client = out;
        }
        if !self.to_client.is_empty() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tokio::io::AsyncWriteExt::write_all(&mut self.client, &self.to_client)).await;
        }
        if let End::Fatal(..) = end {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tokio::io::AsyncWriteExt::shutdown(&mut self.client)).await;
        }
        let Some(mut a) = self.server.take() else {
            self.extra = None;
            return;
        };
        self.leaving(&mut a);
        self.key.slot.set(None).await;
        // Mid-query: the backend's work is cancelled and the connection closed (never reused).
        let busy = self.killed || a.pending > 0 || a.unsynced || a.copy_in.is_some() || !a.to_server.is_empty();
        let mode = match self.mode {
            PoolMode::Transaction => checkin::Mode::Transaction,
            PoolMode::Session => checkin::Mode::Session,
        };
        checkin::check_in(a.lease, checkin::Held { busy, tx_status: a.status }, mode, self.db.config.max_prepared_statements).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned<A, R>(_: fn(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// What an idle client costs: its task holds the session and the futures it waits in;
    /// per-message state is boxed while it runs (`on_client_data`, `attach`, `release`).
    #[test]
    fn idle_session_task_stays_small() {
        let session = std::mem::size_of::<Session<crate::net::Stream>>();
        let task = returned(Session::<crate::net::Stream>::serve);
        let run_loop = returned(Session::<crate::net::Stream>::run_loop as fn(&'static mut Session<crate::net::Stream>) -> _);
        let client_data = returned(Session::<crate::net::Stream>::on_client_data as fn(&'static mut Session<crate::net::Stream>) -> _);
        eprintln!("session {session} B, task future {task} B, run_loop {run_loop} B, on_client_data {client_data} B");
        // 632 B here (debug build, 376-byte session); an `async fn serve(self)` stored the
        // session twice (1,008 B).
        assert!(task <= session + 384, "session task future grew to {task} B (session {session} B)");
    }
}
