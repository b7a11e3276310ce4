//! The `[http]` section: limits and timeouts of the HTTP listener (Prisma and Neon APIs,
//! Postgres over WebSocket) and where API keys are kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::d;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_request_size: usize,
    /// Neon /sql response limit.
    pub max_response_size: usize,
    /// Neon /sql per-request timeout.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    pub prisma_max_response_size: usize,
    #[serde(with = "humantime_serde")]
    pub prisma_query_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub prisma_max_transaction_timeout: Duration,
    pub prisma_max_transactions_per_key: usize,
    pub max_ws_message_size: usize,
    #[serde(with = "humantime_serde")]
    pub ws_idle_timeout: Duration,
    pub api_key_file: Option<PathBuf>,
    /// Time a connection gets for its TLS handshake and first request head, and an HTTP/1.1
    /// connection for each further request head (idle keep-alive included).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a request gets to deliver its whole body (counted from the first read of it).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 request line + headers; HTTP/2 header list).
    pub max_header_size: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Connections on the HTTP listener that have not authenticated yet; beyond it, 503.
    pub max_preauth_connections: usize,
    /// Bytes a WebSocket client may send before its Postgres login has succeeded.
    pub ws_max_login_bytes: usize,
    /// Share of the pool an API key leases from (its role's, else the database's own) one key
    /// may hold in open interactive transactions (at least 1); `prisma_max_transactions_per_key`
    /// caps it as well.
    pub itx_max_per_key_share: f64,
    /// Share of a pool all API keys together may hold in open interactive transactions (at
    /// least 1), so several keys cannot starve the wire and `/sql` clients; 1.0 means no cap
    /// beyond the pool itself.
    pub itx_max_share: f64,
}

impl HttpConfig {
    /// Interactive transactions one API key may hold open on a database of `pool_size`.
    pub fn itx_max_per_key(&self, pool_size: usize) -> usize {
        let share = (self.itx_max_per_key_share * pool_size as f64).floor();
        let share = if share.is_finite() && share >= 1.0 { share as usize } else { 1 };
        share.min(pool_size).min(self.prisma_max_transactions_per_key).max(1)
    }
}

impl HttpConfig {
    /// Interactive transactions all API keys together may hold open on a pool of `pool_size`
    /// (`itx_max_share = 1.0`: no cap of its own, starts beyond the pool wait for a connection).
    pub fn itx_max_per_database(&self, pool_size: usize) -> usize {
        if self.itx_max_share >= 1.0 {
            return usize::MAX;
        }
        let share = (self.itx_max_share * pool_size as f64).floor();
        let share = if share.is_finite() && share >= 1.0 { share as usize } else { 1 };
        share.min(pool_size).max(1)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            tls_cert: None,
            tls_key: None,
            max_request_size: d::max_body(),
            max_response_size: d::max_body(),
            query_timeout: Duration::from_secs(15),
            prisma_max_response_size: 5 << 20,
            prisma_query_timeout: d::query_timeout(),
            prisma_max_transaction_timeout: Duration::from_secs(60),
            prisma_max_transactions_per_key: 100,
            max_ws_message_size: d::max_message_size(),
            ws_idle_timeout: d::ws_idle(),
            api_key_file: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_size: 64 << 10,
            http2_max_concurrent_streams: 100,
            max_preauth_connections: 1000,
            ws_max_login_bytes: 32 << 10,
            itx_max_per_key_share: 0.5,
            itx_max_share: 0.75,
        }
    }
}
