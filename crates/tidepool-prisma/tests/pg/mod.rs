//! A minimal blocking PostgreSQL extended-protocol client for tests (trust auth only), used to
//! run the interpreter against a real server with untyped text parameters and text results.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use tidepool_prisma::{Column, DbError, Executor, Param, Rows, ServerError};

pub struct PgConn {
    stream: TcpStream,
}

fn cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn i16(&mut self) -> i16 {
        let v = i16::from_be_bytes([self.0[0], self.0[1]]);
        self.0 = &self.0[2..];
        v
    }
    fn i32(&mut self) -> i32 {
        let v = i32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        self.0 = &self.0[4..];
        v
    }
    fn cstr(&mut self) -> String {
        let end = self.0.iter().position(|b| *b == 0).expect("nul");
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        s
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        v
    }
}

fn parse_error(body: &[u8]) -> ServerError {
    let mut e = ServerError::default();
    let mut r = Reader(body);
    while !r.0.is_empty() && r.0[0] != 0 {
        let code = r.bytes(1)[0];
        let value = r.cstr();
        match code {
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'V' => e.severity = Some(value),
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            b's' => e.schema = Some(value),
            b't' => e.table = Some(value),
            b'c' => e.column = Some(value),
            b'n' => e.constraint = Some(value),
            _ => {}
        }
    }
    e
}

impl PgConn {
    /// Connect with trust auth; `None` when no server is reachable.
    pub fn connect(addr: &str, user: &str, database: &str) -> Option<PgConn> {
        let stream = TcpStream::connect(addr).ok()?;
        let mut c = PgConn { stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [
            ("user", user),
            ("database", database),
            ("options", "-c TimeZone=UTC -c DateStyle=ISO,MDY -c bytea_output=hex -c IntervalStyle=postgres"),
            ("client_encoding", "UTF8"),
        ] {
            cstr(&mut body, k);
            cstr(&mut body, v);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        c.stream.write_all(&startup).ok()?;
        loop {
            let (tag, body) = c.read_msg().ok()?;
            match tag {
                b'R' if Reader(&body).i32() != 0 => return None,
                b'E' => return None,
                b'Z' => return Some(c),
                _ => {}
            }
        }
    }

    fn read_msg(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Run a simple-protocol script, returning the first error.
    #[allow(clippy::result_large_err)]
    pub fn simple(&mut self, sql: &str) -> Result<(), ServerError> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        self.stream.write_all(&msg(b'Q', &b)).expect("write");
        let mut err = None;
        loop {
            let (tag, body) = self.read_msg().expect("read");
            match tag {
                b'E' => err = Some(parse_error(&body)),
                b'Z' => return err.map_or(Ok(()), Err),
                _ => {}
            }
        }
    }

    /// Extended protocol: untyped-or-typed text parameters, text results.
    pub fn run(&mut self, sql: &str, params: &[Param]) -> Result<Rows, DbError> {
        let mut out = Vec::new();
        let mut p = Vec::new();
        cstr(&mut p, "");
        cstr(&mut p, sql);
        p.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for param in params {
            p.extend_from_slice(&param.type_oid.to_be_bytes());
        }
        out.extend(msg(b'P', &p));
        let mut b = Vec::new();
        cstr(&mut b, "");
        cstr(&mut b, "");
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for param in params {
            match &param.value {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            }
        }
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        out.extend(msg(b'B', &b));
        out.extend(msg(b'D', b"P\0"));
        out.extend(msg(b'E', b"\0\0\0\0\0"));
        out.extend(msg(b'S', b""));
        self.stream.write_all(&out).map_err(|_| DbError::ConnectionClosed)?;
        let mut rows = Rows::default();
        let mut err = None;
        loop {
            let (tag, body) = self.read_msg().map_err(|_| DbError::ConnectionClosed)?;
            let mut r = Reader(&body);
            match tag {
                b'T' => {
                    let n = r.i16();
                    for _ in 0..n {
                        let name = r.cstr();
                        r.i32();
                        r.i16();
                        let oid = r.i32() as u32;
                        r.i16();
                        r.i32();
                        r.i16();
                        rows.columns.push(Column::new(name, oid));
                    }
                }
                b'D' => {
                    let n = r.i16();
                    let mut row = Vec::new();
                    for _ in 0..n {
                        let len = r.i32();
                        row.push((len >= 0).then(|| String::from_utf8_lossy(&r.bytes(len as usize)).into_owned()));
                    }
                    rows.rows.push(row);
                }
                b'C' => {
                    let tag = r.cstr();
                    rows.rows_affected = tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                }
                b'E' => err = Some(parse_error(&body)),
                b'Z' => return err.map_or(Ok(rows), |e| Err(DbError::Server(Box::new(e)))),
                _ => {}
            }
        }
    }
}

impl Executor for PgConn {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Rows, DbError> {
        self.run(sql, params)
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        self.run(sql, params).map(|r| r.rows_affected)
    }
}

impl PgConn {
    pub fn set_timeout(&self, d: std::time::Duration) {
        let _ = self.stream.set_read_timeout(Some(d));
    }
}
