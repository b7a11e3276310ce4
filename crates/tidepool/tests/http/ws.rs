//! Postgres over WebSocket: binary frames carry the wire protocol (trust, pipelined cleartext and
//! SCRAM logins), and bad input — text frames, garbage startup packets, frames over
//! `max_ws_message_size`, idle connections — closes that connection while the server carries on.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::*;

/// One backend message: type byte and body.
type Msg = (u8, Vec<u8>);

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db), ("application_name", "http-tests")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub(crate) fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &cstr(sql))
}

fn password(pw: &str) -> Vec<u8> {
    message(b'p', &cstr(pw))
}

/// Authentication request code of an `R` message.
fn auth_code(m: &Msg) -> Option<i32> {
    (m.0 == b'R' && m.1.len() >= 4).then(|| i32::from_be_bytes([m.1[0], m.1[1], m.1[2], m.1[3]]))
}

/// SQLSTATE of an `E` message.
fn sqlstate(m: &Msg) -> Option<String> {
    if m.0 != b'E' {
        return None;
    }
    let mut rest = &m.1[..];
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            return Some(String::from_utf8_lossy(&after[..end]).into_owned());
        }
        rest = &after[end + 1..];
    }
    None
}

/// Values of the first `D` (DataRow) message, as text.
fn first_row(msgs: &[Msg]) -> Option<Vec<Option<String>>> {
    let (_, b) = msgs.iter().find(|m| m.0 == b'D')?;
    let n = i16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(String::from_utf8_lossy(&b[at..at + len as usize]).into_owned()));
            at += len as usize;
        }
    }
    Some(out)
}

fn kinds(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.0 as char).collect()
}

/// A WebSocket carrying the Postgres protocol, with a buffer of received bytes.
pub(crate) struct PgWs {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buf: Vec<u8>,
    closed: bool,
}

impl PgWs {
    async fn connect(p: &Proxy) -> Result<PgWs> {
        let (ws, resp) = bounded("ws connect", 10, tokio_tungstenite::connect_async(p.ws_url("/v2?address=ignored"))).await?;
        assert_eq!(resp.status().as_u16(), 101);
        Ok(PgWs { ws, buf: Vec::new(), closed: false })
    }

    pub(crate) async fn send(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// The next backend message, or `None` once the connection is closed (close frame, EOF or
    /// error).
    async fn next(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() > len {
                    let body = self.buf[5..1 + len].to_vec();
                    let kind = self.buf[0];
                    self.buf.drain(..1 + len);
                    return Some((kind, body));
                }
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Err(_) => panic!("no WebSocket message within 10 s"),
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(t)))) => panic!("server sent a text frame: {t}"),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => self.closed = true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Messages up to and including ReadyForQuery; fails if the connection closes first.
    pub(crate) async fn until_ready(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            let Some(m) = self.next().await else { bail!("connection closed before ReadyForQuery; got {:?}", kinds(&out)) };
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return Ok(out);
            }
        }
    }

    /// Messages until the server closes the connection (bounded).
    async fn until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        bounded("WebSocket close", 15, async {
            while let Some(m) = self.next().await {
                out.push(m);
            }
        })
        .await;
        out
    }

    /// Runs one simple query; returns the messages up to ReadyForQuery.
    pub(crate) async fn simple(&mut self, sql: &str) -> Result<Vec<Msg>> {
        self.send(query(sql)).await?;
        self.until_ready().await
    }
}

/// Logs in as the trust user: AuthenticationOk straight away.
pub(crate) async fn login_trust(p: &Proxy) -> Result<PgWs> {
    let mut c = PgWs::connect(p).await?;
    c.send(startup(TRUST_USER, DB)).await?;
    let msgs = c.until_ready().await?;
    assert_eq!(auth_code(&msgs[0]), Some(0), "trust login: {}", kinds(&msgs));
    assert!(msgs.iter().any(|m| m.0 == b'K'), "no BackendKeyData: {}", kinds(&msgs));
    assert!(msgs.iter().any(|m| m.0 == b'S'), "no ParameterStatus: {}", kinds(&msgs));
    Ok(c)
}

/// A fresh WebSocket login plus `SELECT 1`, and /health: the server carries on.
async fn ws_ok(p: &Proxy) -> Result<()> {
    let mut c = login_trust(p).await?;
    let msgs = c.simple("SELECT 1 AS one").await?;
    assert_eq!(first_row(&msgs), Some(vec![Some("1".into())]), "{}", kinds(&msgs));
    c.send(message(b'X', &[])).await?;
    let r = p.client.get(p.url("/health")).send().await?;
    assert_eq!(r.status().as_u16(), 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_query_over_binary_frames() -> Result<()> {
    let p = Setup::new("ws_login").await?.start().await?;
    let mut c = PgWs::connect(&p).await?;
    // Binary frames are a byte stream: a startup packet split over two frames works.
    let s = startup(TRUST_USER, DB);
    c.send(s[..7].to_vec()).await?;
    c.send(s[7..].to_vec()).await?;
    let msgs = c.until_ready().await?;
    assert_eq!(auth_code(&msgs[0]), Some(0), "{}", kinds(&msgs));
    let msgs = c.simple("SELECT 1 AS one").await?;
    assert_eq!(kinds(&msgs), "TDCZ");
    assert_eq!(first_row(&msgs), Some(vec![Some("1".into())]));
    // Two queries in one frame.
    let mut two = query("SELECT 2");
    two.extend(query("SELECT current_database()::text"));
    c.send(two).await?;
    let first = c.until_ready().await?;
    assert_eq!(first_row(&first), Some(vec![Some("2".into())]));
    let second = c.until_ready().await?;
    assert_eq!(first_row(&second), Some(vec![Some(p.real_db.clone())]));
    // A Postgres error keeps the session.
    let msgs = c.simple("SELECT 1/0").await?;
    assert_eq!(msgs.iter().find_map(sqlstate).as_deref(), Some("22012"), "{}", kinds(&msgs));
    let msgs = c.simple("SELECT 3").await?;
    assert_eq!(first_row(&msgs), Some(vec![Some("3".into())]));
    c.send(message(b'X', &[])).await?;
    let rest = c.until_closed().await;
    assert!(rest.is_empty(), "after Terminate: {}", kinds(&rest));
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_cleartext_login() -> Result<()> {
    let p = Setup::new("ws_cleartext").await?.start().await?;
    // The Neon driver's first frame: startup + password + first query.
    let mut c = PgWs::connect(&p).await?;
    let mut frame = startup(USER, DB);
    frame.extend(password(USER_PW));
    frame.extend(query("SELECT 40 + 2"));
    c.send(frame).await?;
    let login = c.until_ready().await?;
    assert_eq!(auth_code(&login[0]), Some(3), "expected AuthenticationCleartextPassword: {}", kinds(&login));
    assert_eq!(auth_code(&login[1]), Some(0), "{}", kinds(&login));
    let msgs = c.until_ready().await?;
    assert_eq!(first_row(&msgs), Some(vec![Some("42".into())]), "{}", kinds(&msgs));

    // Wrong password: 28P01 and closed.
    let mut c = PgWs::connect(&p).await?;
    let mut frame = startup(USER, DB);
    frame.extend(password("wrong"));
    frame.extend(query("SELECT 1"));
    c.send(frame).await?;
    let msgs = c.until_closed().await;
    assert_eq!(msgs.iter().find_map(sqlstate).as_deref(), Some("28P01"), "{}", kinds(&msgs));
    assert!(!msgs.iter().any(|m| m.0 == b'D'), "query ran after a failed login");
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_login_without_pipelining() -> Result<()> {
    let p = Setup::new("ws_scram").await?.start().await?;
    let mut c = PgWs::connect(&p).await?;
    c.send(startup(USER, DB)).await?;
    let m = c.next().await.ok_or_else(|| anyhow!("closed"))?;
    assert_eq!(auth_code(&m), Some(10), "expected AuthenticationSASL");
    assert!(String::from_utf8_lossy(&m.1).contains(SCRAM_SHA_256));
    let mut scram = ScramSha256::new(USER_PW.as_bytes(), ChannelBinding::unsupported());
    let mut initial = cstr(SCRAM_SHA_256);
    initial.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
    initial.extend_from_slice(scram.message());
    c.send(message(b'p', &initial)).await?;
    let m = c.next().await.ok_or_else(|| anyhow!("closed"))?;
    assert_eq!(auth_code(&m), Some(11), "expected AuthenticationSASLContinue");
    scram.update(&m.1[4..])?;
    c.send(message(b'p', scram.message())).await?;
    let m = c.next().await.ok_or_else(|| anyhow!("closed"))?;
    assert_eq!(auth_code(&m), Some(12), "expected AuthenticationSASLFinal");
    scram.finish(&m.1[4..])?;
    let msgs = c.until_ready().await?;
    assert_eq!(auth_code(&msgs[0]), Some(0), "{}", kinds(&msgs));
    let msgs = c.simple("SELECT current_user::text").await?;
    assert_eq!(first_row(&msgs), Some(vec![Some(tidepool_testkit::SCRAM_USER.into())]));
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_frame_closes_the_connection() -> Result<()> {
    let p = Setup::new("ws_text").await?.start().await?;
    // Before login.
    let mut c = PgWs::connect(&p).await?;
    c.ws.send(Message::text("SELECT 1")).await?;
    let msgs = c.until_closed().await;
    assert!(!msgs.iter().any(|m| m.0 == b'D' || m.0 == b'Z'), "{}", kinds(&msgs));
    // In a session.
    let mut c = login_trust(&p).await?;
    c.ws.send(Message::text("SELECT 1")).await?;
    let msgs = c.until_closed().await;
    assert!(!msgs.iter().any(|m| m.0 == b'D'), "a text frame was executed: {}", kinds(&msgs));
    ws_ok(&p).await?;
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_startup_is_refused() -> Result<()> {
    let p = Setup::new("ws_garbage").await?.start().await?;
    let cases: [(&str, Vec<u8>); 4] = [
        ("unknown protocol version", [8i32.to_be_bytes(), 0x1234_5678i32.to_be_bytes()].concat()),
        ("length below 8", 3i32.to_be_bytes().to_vec()),
        ("length over the startup limit", [1_000_000i32.to_be_bytes(), 196608i32.to_be_bytes()].concat()),
        ("startup without a user", {
            let body = [196608i32.to_be_bytes().to_vec(), b"database\0app\0\0".to_vec()].concat();
            [((body.len() + 4) as i32).to_be_bytes().to_vec(), body].concat()
        }),
    ];
    for (what, bytes) in cases {
        let mut c = PgWs::connect(&p).await?;
        c.send(bytes).await?;
        let msgs = c.until_closed().await;
        assert!(!msgs.iter().any(|m| m.0 == b'Z'), "{what}: a session started: {}", kinds(&msgs));
        if let Some(code) = msgs.iter().find_map(sqlstate) {
            assert!(["08P01", "54000", "28000", "0A000"].contains(&code.as_str()), "{what}: SQLSTATE {code}");
        }
    }
    // A garbage message after a good login ends that session only.
    let mut c = login_trust(&p).await?;
    c.send(vec![b'?', 0, 0, 0, 4]).await?;
    let msgs = c.until_closed().await;
    assert!(msgs.iter().any(|m| m.0 == b'E'), "unknown message type: no error: {}", kinds(&msgs));
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_max_ws_message_size_closes() -> Result<()> {
    let p = Setup::new("ws_big").await?.http("max_ws_message_size = 2048").start().await?;
    let mut c = login_trust(&p).await?;
    // Just under the limit works.
    let msgs = c.simple(&format!("SELECT length('{}')", "x".repeat(1500))).await?;
    assert_eq!(first_row(&msgs), Some(vec![Some("1500".into())]));
    // Over it: closed, nothing executed.
    c.send(query(&format!("SELECT length('{}')", "x".repeat(8000)))).await?;
    let msgs = c.until_closed().await;
    assert!(!msgs.iter().any(|m| m.0 == b'D'), "an oversized frame was executed: {}", kinds(&msgs));
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() -> Result<()> {
    let p = Setup::new("ws_idle").await?.http("ws_idle_timeout = \"1s\"").start().await?;
    let mut c = login_trust(&p).await?;
    let msgs = c.until_closed().await;
    assert!(!msgs.iter().any(|m| m.0 == b'D'), "{}", kinds(&msgs));
    // An active connection is not cut: queries spaced well below the idle timeout.
    let mut c = login_trust(&p).await?;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let msgs = c.simple("SELECT 1").await?;
        assert_eq!(first_row(&msgs), Some(vec![Some("1".into())]));
    }
    ws_ok(&p).await?;
    p.stop().await;
    Ok(())
}

/// A WebSocket session is listed in the client registry (the admin console's SHOW CLIENTS) with
/// its front end while it lives, and removed when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_sessions_are_listed_as_clients() -> Result<()> {
    let p = Setup::new("ws_clients").await?.start().await?;
    let listed = |p: &Proxy| p.app().clients.snapshot().iter().filter(|c| c.frontend == "websocket" && c.user == TRUST_USER && c.database == DB).count();
    assert_eq!(listed(&p), 0);
    let mut c = login_trust(&p).await?;
    assert_eq!(listed(&p), 1);
    let info = p.app().clients.snapshot();
    assert_eq!(info[0].application_name.as_deref(), Some("http-tests"));
    c.send(message(b'X', &[])).await?;
    c.until_closed().await;
    bounded("client deregistered", 10, async {
        while listed(&p) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Ok(())
}
