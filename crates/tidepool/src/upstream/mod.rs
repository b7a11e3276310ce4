//! Upstream PostgreSQL connections: connecting and authenticating ([`connect`]), the per-connection
//! state a pooler must track (parameters it set, statements it prepared, whether a client left
//! session state behind), and a small text-format query runner used by the HTTP front ends and by
//! tidepool's own housekeeping (`SET`, `ROLLBACK`, `DISCARD ALL`).

mod connect;
mod query;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::BytesMut;
use tidepool_proto::backend::ErrorFields;
use tidepool_proto::framing::{try_frame, MAX_MESSAGE_CEILING};
use tidepool_proto::{Frame, ProtoError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use connect::{connect, send_cancel, UpstreamTarget};
pub use query::QueryResult;
pub use tls::TlsPolicy;

use crate::net::Stream;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream closed the connection")]
    Closed,
    #[error("timed out connecting to upstream")]
    ConnectTimeout,
    #[error("upstream protocol error: {0}")]
    Protocol(#[from] ProtoError),
    #[error("upstream refused: {}", .0.message())]
    Db(ErrorFields),
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("upstream authentication: {0}")]
    Auth(String),
    #[error("result exceeds {0} bytes")]
    TooLarge(usize),
}

impl UpstreamError {
    /// Failures where retrying the connect can succeed (server down or starting up).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Io(_) | UpstreamError::Closed | UpstreamError::ConnectTimeout => true,
            UpstreamError::Db(e) => matches!(e.code(), "57P03" | "53300" | "57P01"),
            _ => false,
        }
    }
}

/// What a client needs to cancel the query this connection is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    /// Shared: the target is copied into a client's cancel slot once per transaction.
    pub host: std::sync::Arc<str>,
    pub port: u16,
    pub pid: i32,
    pub secret: i32,
}

pub struct ServerConn {
    pub stream: Stream,
    pub rbuf: BytesMut,
    pub cancel: CancelTarget,
    /// Latest ParameterStatus values reported by the server.
    pub params: HashMap<String, String>,
    /// Session parameters tidepool or a client set on this connection (client-visible values).
    pub applied: HashMap<String, String>,
    /// Server-side names of protocol-level prepared statements that exist on this connection.
    pub prepared: HashSet<String>,
    pub created: Instant,
    pub last_used: Instant,
    /// A client left session state (SET, temp tables, advisory locks, LISTEN…): reset before reuse.
    pub dirty: bool,
    /// Unusable: close instead of returning to the pool.
    pub broken: bool,
    /// Transaction status from the last ReadyForQuery tidepool itself read ('I', 'T' or 'E').
    pub tx_status: u8,
    /// Its entry in the pool's server list (`SHOW SERVERS`), set by the pool's manager.
    pub info: Option<std::sync::Arc<crate::servers::ServerInfo>>,
}

impl ServerConn {
    pub(crate) fn new(stream: Stream, cancel: CancelTarget) -> Self {
        let now = Instant::now();
        ServerConn {
            stream,
            rbuf: BytesMut::with_capacity(8192),
            cancel,
            params: HashMap::new(),
            applied: HashMap::new(),
            prepared: HashSet::new(),
            created: now,
            last_used: now,
            dirty: false,
            broken: false,
            tx_status: b'I',
            info: None,
        }
    }

    /// Reads one whole message.
    pub async fn read_frame(&mut self) -> Result<Frame, UpstreamError> {
        loop {
            if let Some(f) = try_frame(&mut self.rbuf, MAX_MESSAGE_CEILING)? {
                return Ok(f);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                self.broken = true;
                return Err(UpstreamError::Closed);
            }
        }
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), UpstreamError> {
        if let Err(e) = self.stream.write_all(buf).await {
            self.broken = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Records a ParameterStatus the server sent.
    pub fn note_parameter(&mut self, frame: &Frame) {
        self.note_parameter_status(frame.body());
    }

    /// Records a ParameterStatus the server sent, given its body.
    pub fn note_parameter_status(&mut self, body: &[u8]) {
        if let Ok((k, v)) = tidepool_proto::backend::parse_parameter_status(body) {
            self.params.insert(k.to_owned(), v.to_owned());
        }
    }

    /// Health check for an idle connection: no unread bytes and the socket is open.
    pub fn idle_ok(&self) -> bool {
        !self.broken && self.rbuf.is_empty() && !self.stream.idle_is_broken()
    }

    /// Makes the connection fit for the next client: drops session state a client left behind.
    pub async fn reset_if_dirty(&mut self) -> Result<(), UpstreamError> {
        if self.dirty {
            self.simple("DISCARD ALL").await?;
            self.prepared.clear();
            self.applied.clear();
            self.dirty = false;
        }
        Ok(())
    }
}

/// Quotes an identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
