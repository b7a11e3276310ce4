//! Client login: startup packets (SSLRequest → TLS via rustls, GSSENCRequest declined,
//! CancelRequest forwarded), startup parameters, client authentication (SCRAM-SHA-256, md5,
//! trust) and the greeting (ParameterStatus, BackendKeyData, ReadyForQuery).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;
use rand::RngCore;
use tidepool_proto::auth::{md5_response, ScramServer, MAX_SASL_MESSAGE, SCRAM_SHA_256};
use tidepool_proto::framing::{try_frame, try_startup, MAX_PRE_AUTH_MESSAGE, MAX_STARTUP_PACKET};
use tidepool_proto::startup::StartupPacket;
use tidepool_proto::{backend, frontend, sqlstate, Frame, ProtoError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::LoginError;
use crate::app::{App, ClientSlot, Database, LeaseError};
use crate::config::ClientTlsMode;
use crate::net::{Duplex, Stream};
use crate::users::Challenge;

/// What a login leads to: a pooled session or the admin console.
pub enum Login {
    Session(LoggedIn),
    Console(super::console::Operator),
}

/// A client that finished startup and authentication.
pub struct LoggedIn {
    pub user: String,
    pub database: Arc<Database>,
    /// Session parameters the client asked for (applied on every server it gets).
    pub params: HashMap<String, String>,
    pub slot: ClientSlot,
}

async fn read_startup<S: Duplex>(s: &mut S, rbuf: &mut BytesMut) -> Result<StartupPacket, LoginError> {
    loop {
        if let Some(body) = try_startup(rbuf, MAX_STARTUP_PACKET)? {
            return Ok(StartupPacket::parse(&body)?);
        }
        if s.read_buf(rbuf).await? == 0 {
            return Err(LoginError::Gone);
        }
    }
}

pub(super) async fn read_frame<S: Duplex>(s: &mut S, rbuf: &mut BytesMut, max: usize) -> Result<Frame, LoginError> {
    loop {
        if let Some(f) = try_frame(rbuf, max)? {
            return Ok(f);
        }
        if s.read_buf(rbuf).await? == 0 {
            return Err(LoginError::Gone);
        }
    }
}

pub enum Negotiated {
    Startup { stream: Stream, rbuf: BytesMut, params: Vec<(String, String)> },
    Done,
}

/// Reads startup packets on a new TCP connection, upgrading to TLS when asked and configured.
pub async fn negotiate_tcp(app: &App, tcp: TcpStream) -> (Option<Stream>, Result<Negotiated, LoginError>) {
    let mut stream = Stream::Plain(tcp);
    let mut rbuf = BytesMut::new();
    let mut tls = false;
    for _ in 0..3 {
        let packet = match read_startup(&mut stream, &mut rbuf).await {
            Ok(p) => p,
            Err(e) => return (Some(stream), Err(e)),
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if !rbuf.is_empty() => {
                // Bytes after the request, before the handshake: a stuffing attack (CVE-2021-3935).
                return (Some(stream), Err(LoginError::Protocol("unexpected data after SSLRequest".into())));
            }
            StartupPacket::SslRequest if !tls && app.pg_tls().is_some() && app.config().server.tls_mode != ClientTlsMode::Disable => {
                let Stream::Plain(mut tcp) = stream else { unreachable!("TLS only negotiated once") };
                if tcp.write_all(b"S").await.is_err() {
                    return (None, Err(LoginError::Gone));
                }
                let Some(acceptor) = app.pg_tls() else { unreachable!() };
                match acceptor.accept(tcp).await {
                    Ok(s) => stream = Stream::ServerTls(Box::new(s)),
                    Err(e) => return (None, Err(LoginError::Protocol(format!("TLS handshake failed: {e}")))),
                }
                tls = true;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                if stream.write_all(b"N").await.is_err() {
                    return (None, Err(LoginError::Gone));
                }
            }
            StartupPacket::Cancel { pid, secret } => {
                app.cancels.cancel(pid, secret).await;
                return (None, Ok(Negotiated::Done));
            }
            StartupPacket::Startup { params } => {
                if app.config().server.tls_mode == ClientTlsMode::Require && !tls {
                    return (Some(stream), Err(LoginError::Fatal(sqlstate::INVALID_AUTHORIZATION, "TLS is required (use sslmode=require)".into())));
                }
                return (None, Ok(Negotiated::Startup { stream, rbuf, params }));
            }
        }
    }
    (Some(stream), Err(LoginError::Protocol("too many startup packets".into())))
}

/// Authenticates a client and sends the greeting; `params` come from its StartupMessage. `peer`
/// is the client's address when known (it keys the failed-login throttle).
pub async fn login<S: Duplex>(
    app: &App,
    s: &mut S,
    rbuf: &mut BytesMut,
    params: Vec<(String, String)>,
    cancel: (i32, i32),
    websocket: bool,
    peer: Option<IpAddr>,
) -> Result<Login, LoginError> {
    let mut user = None;
    let mut dbname = None;
    let mut session = HashMap::new();
    for (k, v) in params {
        match k.as_str() {
            "user" => user = Some(v),
            "database" => dbname = Some(v),
            "replication" if v != "false" && v != "0" && v != "off" => {
                return Err(LoginError::Fatal(sqlstate::FEATURE_NOT_SUPPORTED, "replication connections are not supported".into()));
            }
            "options" => {
                let mut opts = HashMap::new();
                parse_options(&v, &mut opts)?;
                for (k, v) in opts {
                    carry_parameter(app, k, v, &mut session)?;
                }
            }
            // Protocol extensions (e.g. _pq_.*) are not forwarded.
            k if k.starts_with("_pq_.") => {}
            _ => carry_parameter(app, k, v, &mut session)?,
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| LoginError::Fatal(sqlstate::INVALID_AUTHORIZATION, "no user name given".into()))?;
    let dbname = dbname.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    // The Neon driver pipelines startup + cleartext password over WebSocket (TLS-protected).
    if websocket && rbuf.first() == Some(&b'p') {
        authenticate_cleartext(app, s, rbuf, &user, peer).await?;
    } else {
        authenticate(app, s, rbuf, &user, peer).await?;
    }
    if super::console::is_console_db(app, &dbname) {
        let operator = super::console::admit(app, &user, session.remove("application_name"))?;
        let mut out = BytesMut::new();
        super::console::greeting(&mut out, cancel);
        send(s, &out).await?;
        return Ok(Login::Console(operator));
    }

    let database = app.database(&dbname).ok_or_else(|| LoginError::Fatal(sqlstate::INVALID_CATALOG_NAME, format!("database \"{dbname}\" does not exist")))?;
    if database.disabled.load(std::sync::atomic::Ordering::Relaxed) {
        // As Postgres says for a database that does not allow connections (SQLSTATE 55000).
        return Err(LoginError::Fatal("55000", format!("database \"{dbname}\" does not allow connections (DISABLE)")));
    }
    if !app.users.get(&user).is_some_and(|u| u.may_use(&dbname)) {
        return Err(LoginError::Fatal(sqlstate::INVALID_AUTHORIZATION, format!("user \"{user}\" may not use database \"{dbname}\"")));
    }
    let slot = database.try_add_client().ok_or_else(|| {
        LoginError::Fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("too many clients for database \"{dbname}\" (max_client_conn {})", database.config.max_client_conn),
        )
    })?;

    let mut status = database.greeting_params(&session).await.map_err(lease_to_login)?;
    status.insert("session_authorization".into(), user.clone());
    let mut out = BytesMut::new();
    let mut keys: Vec<_> = status.iter().collect();
    keys.sort();
    for (k, v) in keys {
        backend::parameter_status(&mut out, k, v);
    }
    backend::backend_key_data(&mut out, cancel.0, cancel.1);
    backend::ready_for_query(&mut out, b'I');
    send(s, &out).await?;
    Ok(Login::Session(LoggedIn { user, database, params: session, slot }))
}

fn lease_to_login(e: LeaseError) -> LoginError {
    match e {
        LeaseError::Params(f) => LoginError::Fatal(static_code(f.code()), f.message().to_owned()),
        e @ LeaseError::Pool(crate::pool::PoolError::Timeout { .. }) => LoginError::Fatal(sqlstate::TOO_MANY_CONNECTIONS, e.to_string()),
        other => LoginError::Fatal(sqlstate::CONNECTION_FAILURE, other.to_string()),
    }
}

fn static_code(code: &str) -> &'static str {
    match code {
        "22023" => "22023",
        "42704" => "42704",
        "22P02" => "22P02",
        _ => sqlstate::PROTOCOL_VIOLATION,
    }
}

/// Keeps a startup parameter the configuration allows (`startup_parameters`), drops the ignored
/// ones and refuses the rest with PostgreSQL's own error for an unknown parameter. Carried values
/// reach servers only as `set_config` parameters, never as SQL text.
fn carry_parameter(app: &App, name: String, value: String, session: &mut HashMap<String, String>) -> Result<(), LoginError> {
    let name = name.to_ascii_lowercase();
    let cfg = &app.config().server;
    if cfg.ignore_startup_parameters.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
        return Ok(());
    }
    if !cfg.startup_parameters.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
        let shown: String = name.chars().take(64).collect();
        return Err(LoginError::Fatal(
            sqlstate::UNDEFINED_OBJECT,
            format!("unsupported startup parameter \"{shown}\" (tidepool carries only those in startup_parameters)"),
        ));
    }
    session.insert(name, value);
    Ok(())
}

/// `options=-c key=value --key=value` from the startup packet.
fn parse_options(v: &str, out: &mut HashMap<String, String>) -> Result<(), LoginError> {
    let mut words = v.split_whitespace();
    while let Some(w) = words.next() {
        let kv = if w == "-c" {
            words.next().unwrap_or("")
        } else if let Some(r) = w.strip_prefix("--") {
            r
        } else if let Some(r) = w.strip_prefix("-c") {
            r
        } else {
            w
        };
        let (k, val) = kv.split_once('=').ok_or_else(|| LoginError::Fatal(sqlstate::PROTOCOL_VIOLATION, format!("invalid options entry {kv:?}")))?;
        out.insert(k.replace('-', "_"), val.to_owned());
    }
    Ok(())
}

/// The one failure answer for a wrong password, an unknown user and a throttled attempt.
fn auth_failed(user: &str) -> LoginError {
    LoginError::Fatal(sqlstate::INVALID_PASSWORD, format!("password authentication failed for user \"{user}\""))
}

async fn authenticate<S: Duplex>(app: &App, s: &mut S, rbuf: &mut BytesMut, user: &str, peer: Option<IpAddr>) -> Result<(), LoginError> {
    let challenge = app.users.challenge(user);
    if matches!(challenge, Challenge::Trust) {
        return send_auth_ok(s).await;
    }
    // Before the first request: a throttled client waits (or is refused) before it learns anything.
    let Some(attempt) = app.users.throttle.admit(peer, user).await else { return Err(auth_failed(user)) };
    let mut out = BytesMut::new();
    let ok = match challenge {
        Challenge::Trust => true,
        Challenge::Md5 { password, known } => {
            let mut salt = [0u8; 4];
            rand::thread_rng().fill_bytes(&mut salt);
            backend::auth_md5(&mut out, salt);
            send(s, &out).await?;
            let f = expect_password(s, rbuf).await?;
            let given = frontend::parse_password(f.body())?;
            tidepool_proto::auth::ct_eq(given, md5_response(user, &password, salt).as_bytes()) & known
        }
        Challenge::Scram { verifier, known } => {
            backend::auth_sasl(&mut out, &[SCRAM_SHA_256]);
            send(s, &out).await?;
            let f = expect_password(s, rbuf).await?;
            let (mech, data) = frontend::parse_sasl_initial(f.body())?;
            if mech != SCRAM_SHA_256 || data.len() > MAX_SASL_MESSAGE {
                return Err(LoginError::Protocol("unsupported SASL mechanism".into()));
            }
            let (server, first) = ScramServer::start(verifier, data)?;
            out.clear();
            backend::auth_sasl_continue(&mut out, first.as_bytes());
            send(s, &out).await?;
            let f = expect_password(s, rbuf).await?;
            if f.body().len() > MAX_SASL_MESSAGE {
                return Err(LoginError::Protocol("SASL message too long".into()));
            }
            match server.finish(f.body())? {
                Some(fin) if known => {
                    out.clear();
                    backend::auth_sasl_final(&mut out, fin.as_bytes());
                    send(s, &out).await?;
                    true
                }
                _ => false,
            }
        }
    };
    if !ok {
        attempt.failure();
        return Err(auth_failed(user));
    }
    attempt.success();
    send_auth_ok(s).await
}

async fn send_auth_ok<S: Duplex>(s: &mut S) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    backend::auth_ok(&mut out);
    send(s, &out).await?;
    Ok(())
}

async fn authenticate_cleartext<S: Duplex>(app: &App, s: &mut S, rbuf: &mut BytesMut, user: &str, peer: Option<IpAddr>) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    backend::auth_cleartext(&mut out);
    send(s, &out).await?;
    let f = expect_password(s, rbuf).await?;
    let given = std::str::from_utf8(frontend::parse_password(f.body())?).map_err(|_| ProtoError::Utf8("password"))?;
    if !app.users.verify_password(peer, user, given).await {
        return Err(auth_failed(user));
    }
    send_auth_ok(s).await
}

/// Writes and flushes (WebSocket streams buffer until flushed).
async fn send<S: Duplex>(s: &mut S, out: &[u8]) -> std::io::Result<()> {
    s.write_all(out).await?;
    s.flush().await
}

async fn expect_password<S: Duplex>(s: &mut S, rbuf: &mut BytesMut) -> Result<Frame, LoginError> {
    let f = read_frame(s, rbuf, MAX_PRE_AUTH_MESSAGE).await?;
    if f.tag != b'p' {
        return Err(LoginError::Proto(ProtoError::UnexpectedMessage(f.tag)));
    }
    Ok(f)
}
