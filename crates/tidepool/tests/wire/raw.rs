//! A tiny hand-written Postgres wire client for raw-socket tests (bad input, ParameterStatus),
//! deliberately independent of tidepool's own codec.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// Field `f` of an ErrorResponse / NoticeResponse.
    pub fn field(&self, f: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&t, r)) = rest.split_first() {
            if t == 0 {
                return None;
            }
            let end = r.iter().position(|&b| b == 0)?;
            if t == f {
                return Some(String::from_utf8_lossy(&r[..end]).into_owned());
            }
            rest = &r[end + 1..];
        }
        None
    }

    pub fn code(&self) -> Option<String> {
        self.field(b'C')
    }

    /// (name, value) of a ParameterStatus.
    pub fn param(&self) -> Option<(String, String)> {
        if self.tag != b'S' {
            return None;
        }
        let mut parts = self.body.split(|&b| b == 0);
        let k = String::from_utf8_lossy(parts.next()?).into_owned();
        let v = String::from_utf8_lossy(parts.next()?).into_owned();
        Some((k, v))
    }

    /// Text columns of a DataRow.
    pub fn row(&self) -> Vec<Option<String>> {
        let b = &self.body;
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
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
        out
    }
}

pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in params {
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

pub fn ssl_request() -> Vec<u8> {
    let mut out = 8i32.to_be_bytes().to_vec();
    out.extend_from_slice(&80877103i32.to_be_bytes());
    out
}

pub fn query_msg(sql: &str) -> Vec<u8> {
    let mut out = vec![b'Q'];
    out.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    out
}

pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn from_stream(s: TcpStream) -> Raw {
        Raw { s, buf: Vec::new() }
    }

    pub async fn connect(addr: SocketAddr) -> Result<Raw> {
        let s = TcpStream::connect(addr).await?;
        Ok(Raw { s, buf: Vec::new() })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes).await
    }

    /// Next message; `Ok(None)` at EOF (or a reset, which is how a closed socket can look).
    pub async fn read_msg(&mut self) -> Result<Option<Msg>> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() > len {
                    let body = self.buf[5..len + 1].to_vec();
                    let tag = self.buf[0];
                    self.buf.drain(..len + 1);
                    return Ok(Some(Msg { tag, body }));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout(Duration::from_secs(15), self.s.read(&mut chunk)).await {
                Err(_) => bail!("no message within 15s"),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Ok(r) => r?,
            };
            if n == 0 {
                if !self.buf.is_empty() {
                    bail!("EOF inside a message ({} bytes buffered)", self.buf.len());
                }
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the first byte after an SSLRequest ('S' or 'N'), or `None` at EOF.
    pub async fn read_byte(&mut self) -> Result<Option<u8>> {
        if !self.buf.is_empty() {
            return Ok(Some(self.buf.remove(0)));
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(15), self.s.read(&mut b)).await {
            Err(_) => bail!("no byte within 15s"),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(_)) => Ok(Some(b[0])),
        }
    }

    /// Every message until the server closes the socket.
    pub async fn read_until_closed(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match self.read_msg().await? {
                Some(m) => out.push(m),
                None => return Ok(out),
            }
        }
        bail!("server kept talking: {out:?}")
    }

    /// Messages up to and including ReadyForQuery (or until the socket closes).
    pub async fn until_ready(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match self.read_msg().await? {
                Some(m) => {
                    let done = m.tag == b'Z';
                    out.push(m);
                    if done {
                        return Ok(out);
                    }
                }
                None => bail!("server closed the connection; got {out:?}"),
            }
        }
        bail!("no ReadyForQuery")
    }

    /// Startup as a trust user; returns the greeting (ParameterStatus…ReadyForQuery).
    pub async fn login_trust(addr: SocketAddr, user: &str, db: &str, extra: &[(&str, &str)]) -> Result<(Raw, Vec<Msg>)> {
        let mut r = Raw::connect(addr).await?;
        let mut params = vec![("user", user), ("database", db)];
        params.extend_from_slice(extra);
        r.send(&startup_packet(&params)).await?;
        let msgs = r.until_ready().await?;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            bail!("login failed: {:?} {:?}", e.code(), e.field(b'M'));
        }
        match msgs.first() {
            Some(m) if m.tag == b'R' && m.body == [0, 0, 0, 0] => {}
            other => bail!("expected AuthenticationOk first, got {other:?}"),
        }
        Ok((r, msgs))
    }

    /// Runs a simple query; returns every message up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Msg>> {
        self.send(&query_msg(sql)).await?;
        self.until_ready().await
    }

    /// First column of every DataRow of a simple query; fails on an ErrorResponse.
    pub async fn query_col(&mut self, sql: &str) -> Result<Vec<Option<String>>> {
        let msgs = self.query(sql).await?;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            bail!("{sql}: {:?} {:?}", e.code(), e.field(b'M'));
        }
        Ok(msgs.iter().filter(|m| m.tag == b'D').map(|m| m.row().into_iter().next().flatten()).collect())
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Parse (no parameter types).
pub fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'P', &b)
}

/// Bind without parameters, text results.
pub fn bind_msg(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'B', &b)
}

pub fn execute_msg(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&0i32.to_be_bytes());
    msg(b'E', &b)
}

pub fn sync_msg() -> Vec<u8> {
    msg(b'S', &[])
}

pub fn copy_data_msg(data: &[u8]) -> Vec<u8> {
    msg(b'd', data)
}

pub fn copy_done_msg() -> Vec<u8> {
    msg(b'c', &[])
}
