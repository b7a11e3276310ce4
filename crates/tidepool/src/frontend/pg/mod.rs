//! The Postgres wire-protocol front end: the TCP listener, login ([`handshake`]) and the
//! proxying session ([`session`]) with transaction or session pooling. The same code serves
//! WebSocket clients through [`serve_stream`]. Logins to the virtual database `pgbouncer` (or
//! `tidepool`) by an `admin_users`/`stats_users` user get the admin [`console`] instead.

mod armed;
mod console;
mod handshake;
mod io;
mod lease;
mod prepared;
mod server_side;
mod session;
mod state;
mod tracking;
mod tx_meter;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tidepool_proto::{backend, sqlstate, ProtoError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::app::App;
use crate::net::Duplex;

pub use handshake::{negotiate_tcp, Negotiated};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("client went away")]
    Gone,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Proto(#[from] ProtoError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{1}")]
    Fatal(&'static str, String),
    #[error("login timed out")]
    Timeout,
}

impl LoginError {
    fn sqlstate(&self) -> &'static str {
        match self {
            LoginError::Fatal(code, _) => code,
            LoginError::Proto(ProtoError::TooLarge { .. }) => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            LoginError::Proto(ProtoError::UnsupportedVersion { .. }) => sqlstate::FEATURE_NOT_SUPPORTED,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

/// Writes a FATAL ErrorResponse (best effort) before the connection is closed.
pub async fn send_fatal<S: Duplex>(s: &mut S, code: &str, message: &str) {
    let mut out = BytesMut::new();
    backend::error_response(&mut out, "FATAL", code, message);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = s.write_all(&out).await;
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    })
    .await;
}

/// Accepts Postgres-protocol clients until shutdown.
pub async fn listen(app: Arc<App>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                app.tracker.spawn(serve_tcp(app.clone(), tcp, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// One TCP client. The login phases run boxed, so an idle session's task holds only the
/// session loop's state (memory per idle client stays small).
async fn serve_tcp(app: Arc<App>, mut tcp: TcpStream, peer: SocketAddr) {
    let deadline = tokio::time::Instant::now() + app.config().server.login_timeout;
    let span = tracing::info_span!("pg", %peer);
    // Connections still logging in are bounded: each may hold a startup packet and a login's state.
    let Ok(preauth) = app.preauth_pg.clone().try_acquire_owned() else {
        tracing::warn!(parent: &span, "max_preauth_connections reached; refusing a connection");
        app.metrics.login_failures.inc();
        let msg = format!("too many connections logging in (max_preauth_connections {})", app.config().server.max_preauth_connections);
        return send_fatal(&mut tcp, sqlstate::TOO_MANY_CONNECTIONS, &msg).await;
    };
    let negotiated = Box::pin(tokio::time::timeout_at(deadline, negotiate_tcp(&app, tcp)).instrument(span.clone())).await;
    match negotiated {
        Err(_) => tracing::debug!("login timed out during startup"),
        Ok((_, Ok(Negotiated::Done))) => {}
        Ok((Some(mut s), Err(e))) => Box::pin(fail_login(&app, &mut s, e)).instrument(span).await,
        Ok((None, Err(e))) => tracing::debug!(error = %e, "startup failed"),
        Ok((_, Ok(Negotiated::Startup { mut stream, rbuf, params }))) => {
            if app.shutdown.is_cancelled() {
                // Accepted just as the drain began: no new sessions from now on.
                return Box::pin(fail_login(&app, &mut stream, LoginError::Fatal(sqlstate::ADMIN_SHUTDOWN, "tidepool is shutting down".into()))).await;
            }
            let arrival = session::Arrival { deadline, peer: Some(peer), websocket: false, preauth: Some(preauth) };
            session::run(app, stream, rbuf, params, arrival).await;
        }
    }
}

async fn fail_login<S: Duplex>(app: &App, s: &mut S, e: LoginError) {
    app.metrics.login_failures.inc();
    match &e {
        LoginError::Gone | LoginError::Io(_) => tracing::debug!(error = %e, "client left during login"),
        _ => {
            tracing::info!(error = %e, "login failed");
            send_fatal(s, e.sqlstate(), &e.to_string()).await;
        }
    }
}

/// Serves a client on any byte stream (WebSocket): startup packets, then a normal session.
/// `peer`: the client's address as the HTTP listener saw it (for the failed-login throttle).
pub async fn serve_stream<S: Duplex>(app: Arc<App>, mut s: S, peer: Option<SocketAddr>) {
    let deadline = tokio::time::Instant::now() + app.config().server.login_timeout;
    let mut rbuf = BytesMut::new();
    let r = Box::pin(tokio::time::timeout_at(deadline, handshake_generic(&app, &mut s, &mut rbuf))).await;
    match r {
        Err(_) => {}
        Ok(Err(e)) => Box::pin(fail_login(&app, &mut s, e)).await,
        Ok(Ok(None)) => {}
        Ok(Ok(Some(_))) if app.shutdown.is_cancelled() => {
            fail_login(&app, &mut s, LoginError::Fatal(sqlstate::ADMIN_SHUTDOWN, "tidepool is shutting down".into())).await
        }
        Ok(Ok(Some(params))) => session::run(app, s, rbuf, params, session::Arrival { deadline, peer, websocket: true, preauth: None }).await,
    }
}

async fn handshake_generic<S: Duplex>(app: &App, s: &mut S, rbuf: &mut BytesMut) -> Result<Option<Vec<(String, String)>>, LoginError> {
    use tidepool_proto::startup::StartupPacket;
    // Room for a whole pipelined first message (startup + password + first query), so that the
    // login can see whether a password is already waiting.
    rbuf.reserve(16 * 1024);
    for _ in 0..3 {
        let body = loop {
            if let Some(b) = tidepool_proto::framing::try_startup(rbuf, tidepool_proto::framing::MAX_STARTUP_PACKET)? {
                break b;
            }
            if tokio::io::AsyncReadExt::read_buf(s, rbuf).await? == 0 {
                return Err(LoginError::Gone);
            }
        };
        match StartupPacket::parse(&body)? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => s.write_all(b"N").await?,
            StartupPacket::Cancel { pid, secret } => {
                app.cancels.cancel(pid, secret).await;
                return Ok(None);
            }
            StartupPacket::Startup { params } => return Ok(Some(params)),
        }
    }
    Err(LoginError::Protocol("too many startup packets".into()))
}
