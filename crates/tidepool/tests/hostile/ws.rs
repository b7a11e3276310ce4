//! Attacks on Postgres over WebSocket: broken upgrades and hand-made RFC 6455 frames (no mask,
//! reserved bits and opcodes, fragments without FIN, absurd lengths, oversized control frames)
//! before and after the Postgres login carried inside them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::msgs::{declared, frame};
use crate::raw::{query_msg, startup_packet, Msg};
use crate::sql::{check_http, raw, Api, HttpExpect};
use crate::wire::Expect;
use crate::{case, Case, Endpoint, Group};

const HANDSHAKE: &str = "GET /v2 HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame: first byte (FIN, RSV, opcode) as given, a masked payload unless `mask` is `None`,
/// and the declared length `len` (normally the payload's).
pub fn ws_frame_raw(first: u8, len: u64, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(m | len as u8),
        126..=65_535 => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame with FIN set or not.
pub fn ws(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    ws_frame_raw(if fin { 0x80 } else { 0 } | opcode, payload.len() as u64, Some(MASK), payload)
}

fn bin(payload: &[u8]) -> Vec<u8> {
    ws(true, 2, payload)
}

/// A client speaking raw frames; reads Postgres messages out of the server's binary frames.
pub struct RawWs {
    s: TcpStream,
    raw: Vec<u8>,
    pg: Vec<u8>,
    closed: bool,
}

impl RawWs {
    pub async fn connect(addr: SocketAddr) -> Result<RawWs> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(HANDSHAKE.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await.context("upgrade answer")??;
            ensure!(n > 0, "closed during the upgrade: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        };
        ensure!(raw.starts_with(b"HTTP/1.1 101"), "upgrade refused: {}", String::from_utf8_lossy(&raw));
        raw.drain(..end);
        Ok(RawWs { s, raw, pg: Vec::new(), closed: false })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// One server frame (opcode, payload), or `None` at EOF.
    async fn read_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        loop {
            if self.raw.len() >= 2 {
                let (op, short) = (self.raw[0] & 0x0f, (self.raw[1] & 0x7f) as usize);
                let (hdr, len) = match short {
                    126 if self.raw.len() >= 4 => (4, u16::from_be_bytes([self.raw[2], self.raw[3]]) as usize),
                    127 if self.raw.len() >= 10 => (10, u64::from_be_bytes(self.raw[2..10].try_into()?) as usize),
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n),
                };
                if hdr != usize::MAX && self.raw.len() >= hdr + len {
                    let payload = self.raw[hdr..hdr + len].to_vec();
                    self.raw.drain(..hdr + len);
                    return Ok(Some((op, payload)));
                }
            }
            let mut buf = [0u8; 16 << 10];
            let n = match tokio::time::timeout(Duration::from_secs(15), self.s.read(&mut buf)).await {
                Err(_) => bail!("no WebSocket frame within 15s"),
                Ok(Err(_)) | Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => n,
            };
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// Next Postgres message, or `None` once the server closed (close frame or EOF).
    pub async fn read_msg(&mut self) -> Result<Option<Msg>> {
        loop {
            if self.pg.len() >= 5 {
                let len = i32::from_be_bytes([self.pg[1], self.pg[2], self.pg[3], self.pg[4]]) as usize;
                if self.pg.len() > len {
                    let body = self.pg[5..len + 1].to_vec();
                    let tag = self.pg[0];
                    self.pg.drain(..len + 1);
                    return Ok(Some(Msg { tag, body }));
                }
            }
            if self.closed {
                return Ok(None);
            }
            match self.read_frame().await? {
                None | Some((8, _)) => self.closed = true,
                Some((1, t)) => bail!("server sent a text frame: {}", String::from_utf8_lossy(&t)),
                Some((0 | 2, p)) => self.pg.extend_from_slice(&p),
                Some(_) => {}
            }
        }
    }

    async fn until_closed(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        while let Some(m) = self.read_msg().await? {
            out.push(m);
        }
        Ok(out)
    }

    async fn until_ready(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            let m = self.read_msg().await?.with_context(|| format!("closed before ReadyForQuery: {out:?}"))?;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return Ok(out);
            }
        }
    }

    pub async fn login_trust(addr: SocketAddr) -> Result<RawWs> {
        let mut w = RawWs::connect(addr).await?;
        w.send(&bin(&startup_packet(&[("user", CAROL), ("database", DB)]))).await?;
        let msgs = w.until_ready().await?;
        ensure!(msgs.first().is_some_and(|m| m.tag == b'R' && m.body == [0, 0, 0, 0]), "trust login over WebSocket: {msgs:?}");
        Ok(w)
    }
}

async fn works(w: &mut RawWs) -> Result<()> {
    w.send(&bin(&query_msg("SELECT 40 + 2"))).await?;
    let msgs = w.until_ready().await?;
    ensure!(msgs.iter().any(|m| m.tag == b'D' && m.row() == vec![Some("42".to_owned())]), "follow-up query: {msgs:?}");
    Ok(())
}

async fn check(w: &mut RawWs, expect: Expect) -> Result<()> {
    match expect {
        Expect::Fatal(codes) => {
            let msgs = w.until_closed().await?;
            let e = msgs.iter().find(|m| m.tag == b'E').with_context(|| format!("no ErrorResponse before the close: {msgs:?}"))?;
            let code = e.code().unwrap_or_default();
            ensure!(codes.contains(&code.as_str()), "SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
        }
        Expect::Error(codes) => {
            let msgs = w.until_ready().await?;
            let e = msgs.iter().find(|m| m.tag == b'E').with_context(|| format!("no ErrorResponse: {msgs:?}"))?;
            let code = e.code().unwrap_or_default();
            ensure!(codes.contains(&code.as_str()), "SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
            works(w).await?;
        }
        Expect::Closed => {
            let msgs = w.until_closed().await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'Z'), "served instead of closed: {msgs:?}");
        }
        Expect::Fine => {
            let msgs = w.until_ready().await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'E'), "error: {msgs:?}");
            works(w).await?;
        }
    }
    Ok(())
}

fn pre(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Ws, true, name, move |tp| async move {
        let mut w = RawWs::connect(tp.http).await?;
        let _ = w.send(&bytes).await;
        check(&mut w, expect).await
    })
}

fn post(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Ws, false, name, move |tp| async move {
        let mut w = RawWs::login_trust(tp.http).await?;
        let _ = w.send(&bytes).await;
        check(&mut w, expect).await
    })
}

fn upgrade(name: &str, head: &str, expect: HttpExpect) -> Case {
    raw(Endpoint::Ws, true, name, head.as_bytes().to_vec(), expect, Api::Neon)
}

/// `n` fragments of `size` bytes of a binary message that never ends.
fn endless(n: usize, size: usize) -> Vec<u8> {
    let mut out = ws(false, 2, &vec![0u8; size]);
    for _ in 1..n {
        out.extend(ws(false, 0, &vec![0u8; size]));
    }
    out
}

/// A binary message sent as one fragment per byte (the last, empty, with FIN).
fn one_byte_frames(payload: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = payload.iter().enumerate().flat_map(|(i, b)| ws(false, if i == 0 { 2 } else { 0 }, &[*b])).collect();
    out.extend(ws(true, 0, b""));
    out
}

pub fn pre_auth() -> Group {
    let startup = startup_packet(&[("user", CAROL), ("database", DB)]);
    let refused = HttpExpect::StatusOrClosed(&[400, 404, 405, 426]);
    let cases = vec![
        upgrade("upgrade without Sec-WebSocket-Version", "GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close, upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", refused),
        upgrade("upgrade with version 8", "GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close, upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", refused),
        upgrade("upgrade with a short key", "GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close, upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: abc\r\n\r\n", refused),
        upgrade("upgrade with a 10 KB key", &format!("GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close, upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: {}\r\n\r\n", "A".repeat(10_000)), refused),
        upgrade("upgrade by POST", "POST /v2 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close, upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", refused),
        upgrade("upgrade to h2c", "GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close, upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n", refused),
        pre("text frame with a startup", ws(true, 1, &startup), Expect::Closed),
        pre("unmasked binary frame", ws_frame_raw(0x82, startup.len() as u64, None, &startup), Expect::Closed),
        pre("RSV1 set (no compression negotiated)", ws_frame_raw(0xc2, startup.len() as u64, Some(MASK), &startup), Expect::Closed),
        pre("reserved data opcode 0x3", ws(true, 3, &startup), Expect::Closed),
        pre("reserved control opcode 0xB", ws(true, 0xb, b""), Expect::Closed),
        pre("continuation without a first fragment", ws(true, 0, &startup), Expect::Closed),
        pre("60 fragments of 64 KiB without FIN", endless(60, 64 << 10), Expect::Closed),
        pre("frame declaring 2^63-1 bytes", ws_frame_raw(0x82, (1 << 63) - 1, Some(MASK), b"abc"), Expect::Closed),
        pre("frame declaring 2^64-1 bytes", ws_frame_raw(0x82, u64::MAX, Some(MASK), b"abc"), Expect::Closed),
        pre("1 MiB binary frame before login", bin(&vec![0u8; 1 << 20]), Expect::Closed),
        pre("ping of 126 bytes", ws(true, 9, &[b'p'; 126]), Expect::Closed),
        pre("fragmented ping", ws(false, 9, b"ping"), Expect::Closed),
        pre("close frame with a 1-byte payload", ws(true, 8, b"x"), Expect::Closed),
        pre("close frame with an invalid code", ws(true, 8, &[0x03, 0xe7]), Expect::Closed),
        pre("close frame with invalid UTF-8 reason", ws(true, 8, &[0x03, 0xe8, 0xff, 0xfe]), Expect::Closed),
        pre("garbage startup in a frame", bin(&declared(None, 12, &[1, 2, 3, 4, 5, 6, 7, 8])), Expect::Fatal(&["08P01", "0A000"])),
        pre("startup declaring i32::MAX in a frame", bin(&declared(None, i32::MAX, b"abc")), Expect::Fatal(&["08P01", "54000"])),
        pre("unknown database", bin(&startup_packet(&[("user", CAROL), ("database", "no_such_db")])), Expect::Fatal(&["3D000"])),
        pre("startup split into 1-byte frames", one_byte_frames(&startup), Expect::Fine),
        pre("10,000 pings then a login", [ws(true, 9, b"").repeat(10_000), bin(&startup)].concat(), Expect::Fine),
        case(Endpoint::Ws, true, "wrong md5 password", |tp| async move {
            let mut w = RawWs::connect(tp.http).await?;
            w.send(&bin(&startup_packet(&[("user", MALLORY), ("database", DB)]))).await?;
            let m = w.read_msg().await?.context("closed before the password request")?;
            ensure!(m.tag == b'R' && m.body.get(..4) == Some(&[0, 0, 0, 5]), "{m:?}");
            w.send(&bin(&frame(b'p', b"md5ffffffffffffffffffffffffffffffff\0"))).await?;
            check(&mut w, Expect::Fatal(&["28P01"])).await
        }),
        case(Endpoint::Ws, true, "pipelined cleartext password of 100 KB", |tp| async move {
            let startup = startup_packet(&[("user", MALLORY), ("database", DB)]);
            let mut pw = vec![b'x'; 100_000];
            pw.push(0);
            let mut w = RawWs::connect(tp.http).await?;
            let _ = w.send(&bin(&[startup, frame(b'p', &pw)].concat())).await;
            let msgs = w.until_closed().await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'Z'), "{msgs:?}");
            Ok(())
        }),
        case(Endpoint::Ws, true, "pipelined wrong cleartext password", |tp| async move {
            let startup = startup_packet(&[("user", MALLORY), ("database", DB)]);
            let mut w = RawWs::connect(tp.http).await?;
            w.send(&bin(&[startup, frame(b'p', b"guess\0")].concat())).await?;
            check(&mut w, Expect::Fatal(&["28P01"])).await
        }),
        case(Endpoint::Ws, true, "silent after the upgrade", |tp| async move {
            let mut w = RawWs::connect(tp.http).await?;
            check(&mut w, Expect::Closed).await
        }),
        case(Endpoint::Ws, true, "startup trickled a frame per 300 ms (slowloris)", |tp| async move {
            let startup = startup_packet(&[("user", CAROL), ("database", DB)]);
            let mut w = RawWs::connect(tp.http).await?;
            for (i, b) in startup.iter().enumerate() {
                if w.send(&ws(false, if i == 0 { 2 } else { 0 }, &[*b])).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            check(&mut w, Expect::Closed).await
        }),
        case(Endpoint::Ws, true, "100 concurrent unauthenticated WebSockets", |tp| async move {
            let mut all = Vec::new();
            for _ in 0..100 {
                let mut w = RawWs::connect(tp.http).await?;
                w.send(&ws(false, 2, &[0u8; 1000])).await?;
                all.push(w);
            }
            for mut w in all {
                check(&mut w, Expect::Closed).await?;
            }
            Ok(())
        }),
    ];
    Group { name: "ws pre-auth", parallel: 8, cases }
}

pub fn post_auth() -> Group {
    let q = query_msg("SELECT 1");
    let cases = vec![
        post("StartupMessage mid-session", bin(&startup_packet(&[("user", CAROL), ("database", DB)])), Expect::Fatal(&["08P01"])),
        post("unknown message type", bin(&frame(b'y', b"x")), Expect::Fatal(&["08P01"])),
        post("message length i32::MAX", bin(&declared(Some(b'Q'), i32::MAX, b"SELECT 1")), Expect::Fatal(&["08P01", "54000"])),
        post("message over max_ws_message_size in one frame", bin(&vec![b'Q'; MAX_MESSAGE + 1]), Expect::Closed),
        post("message over max_ws_message_size in fragments without FIN", endless(40, 64 << 10), Expect::Closed),
        post("text frame", ws(true, 1, &q), Expect::Closed),
        post("reserved opcode", ws(true, 5, &q), Expect::Closed),
        post("unmasked frame", ws_frame_raw(0x82, q.len() as u64, None, &q), Expect::Closed),
        post("close frame", ws(true, 8, &[0x03, 0xe8]), Expect::Closed),
        post("Query with invalid UTF-8", bin(&frame(b'Q', b"SELECT '\xff'\0")), Expect::Fatal(&["08P01"])),
        post("Query with an embedded NUL", bin(&frame(b'Q', b"SELECT 1\0; CREATE TABLE pwned_ws1 ()\0")), Expect::Error(&["08P01"])),
        post("a query in 1-byte frames", one_byte_frames(&q), Expect::Fine),
        post("a ping between fragments", [ws(false, 2, &q[..4]), ws(true, 9, b"hi"), ws(true, 0, &q[4..])].concat(), Expect::Fine),
        post("SET search_path to a leaking schema", bin(&query_msg("SET search_path TO leak_ws1")), Expect::Fine),
        case(Endpoint::Ws, false, "1,000 pipelined queries in one frame", |tp| async move {
            let mut w = RawWs::login_trust(tp.http).await?;
            w.send(&bin(&query_msg("SELECT 1").repeat(1000))).await?;
            for i in 0..1000 {
                let msgs = w.until_ready().await.with_context(|| format!("answer {i}"))?;
                ensure!(!msgs.iter().any(|m| m.tag == b'E'), "query {i}: {msgs:?}");
            }
            Ok(())
        }),
        case(Endpoint::Ws, true, "upgrade answered over HTTP for a non-WebSocket GET", |tp| async move {
            let a = http_raw(tp.http, &request("GET", "/v2?address=x", &[], b"")).await?;
            check_http(&a, HttpExpect::Status(&[404]), Api::Neon)
        }),
    ];
    Group { name: "ws post-auth", parallel: 6, cases }
}
