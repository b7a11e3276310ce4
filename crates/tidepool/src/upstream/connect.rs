//! Opening an upstream connection: TCP (with timeout), optional TLS, the startup message and
//! every authentication method PostgreSQL may ask for (SCRAM-SHA-256, md5, cleartext, trust).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tidepool_proto::backend::{parse_auth, parse_backend_key, AuthRequest, ErrorFields};
use tidepool_proto::{frontend, startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::TlsPolicy;
use super::{CancelTarget, ServerConn, UpstreamError};
use crate::config::{DatabaseConfig, UpstreamTls, UpstreamUrl};
use crate::net::Stream;

/// Everything needed to open one upstream connection.
#[derive(Clone)]
pub struct UpstreamTarget {
    pub url: UpstreamUrl,
    /// Effective TLS mode and certificate checks (config and URL combined).
    pub tls: TlsPolicy,
    pub connect_timeout: Duration,
    /// The client config for `tls`, or why it could not be built (reported on connect).
    tls_config: Result<Arc<rustls::ClientConfig>, String>,
}

impl UpstreamTarget {
    /// A target for a configured database: `upstream_tls`, `upstream_tls_ca` and the URL's
    /// `sslmode`/`sslrootcert`. Fails when the TLS settings are invalid or their roots cannot be
    /// loaded.
    pub fn from_config(url: UpstreamUrl, db: &DatabaseConfig) -> Result<Self, String> {
        let tls = TlsPolicy::resolve(&url, db.upstream_tls, db.upstream_tls_ca.as_deref())?;
        let tls_config = Ok(tls.client_config()?);
        Ok(UpstreamTarget { url, tls, connect_timeout: db.connect_timeout, tls_config })
    }

    /// A target without a configured CA file (the URL's `sslmode`/`sslrootcert` still apply).
    /// Invalid TLS settings are reported by every [`connect`] as an [`UpstreamError::Tls`].
    pub fn new(url: UpstreamUrl, tls: UpstreamTls, connect_timeout: Duration) -> Self {
        match TlsPolicy::resolve(&url, tls, None) {
            Ok(tls) => {
                let tls_config = tls.client_config();
                UpstreamTarget { url, tls, connect_timeout, tls_config }
            }
            Err(e) => {
                // Never acted on: connect returns the error before any TLS is attempted.
                let tls = TlsPolicy { mode: UpstreamTls::VerifyFull, verify: super::tls::Verify::ChainAndName, roots: super::tls::Roots::System };
                UpstreamTarget { url, tls, connect_timeout, tls_config: Err(e) }
            }
        }
    }
}

async fn tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect((host, port)).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Opens and authenticates a connection; returns it idle (after the first ReadyForQuery).
pub async fn connect(target: &UpstreamTarget) -> Result<ServerConn, UpstreamError> {
    tokio::time::timeout(target.connect_timeout, connect_inner(target)).await.unwrap_or(Err(UpstreamError::ConnectTimeout))
}

async fn connect_inner(t: &UpstreamTarget) -> Result<ServerConn, UpstreamError> {
    let url = &t.url;
    let mut sock = tcp(&url.host, url.port).await?;
    let stream = if t.tls.mode == UpstreamTls::Disable {
        Stream::Plain(sock)
    } else {
        let config = t.tls_config.as_ref().map_err(|e| UpstreamError::Tls(e.clone()))?;
        let mut req = BytesMut::new();
        startup::encode_ssl_request(&mut req);
        sock.write_all(&req).await?;
        let mut answer = [0u8; 1];
        sock.read_exact(&mut answer).await?;
        match answer[0] {
            b'S' => {
                let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| UpstreamError::Tls(format!("host {:?}: {e}", url.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, sock).await.map_err(|e| {
                    // A TLS-level refusal (certificate, protocol) is final; a dropped socket
                    // (server restarting) stays an I/O error, which the pool retries.
                    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                        UpstreamError::Tls(format!("handshake with {}:{} failed ({}): {e}", url.host, url.port, t.tls.describe()))
                    } else {
                        UpstreamError::Io(e)
                    }
                })?;
                Stream::ClientTls(Box::new(tls))
            }
            b'N' if t.tls.mode == UpstreamTls::Prefer => Stream::Plain(sock),
            b'N' => return Err(UpstreamError::Tls(format!("server does not support TLS (sslmode={})", t.tls.mode.as_str()))),
            _ => return Err(UpstreamError::Tls("unexpected answer to SSLRequest".into())),
        }
    };
    let mut conn = ServerConn::new(stream, CancelTarget { host: url.host.as_str().into(), port: url.port, pid: 0, secret: 0 });
    let mut out = BytesMut::new();
    startup::encode_startup(&mut out, &[("user", &url.user), ("database", &url.database), ("application_name", "tidepool")]);
    conn.write_all(&out).await?;
    authenticate(&mut conn, url).await?;
    loop {
        let f = conn.read_frame().await?;
        match f.tag {
            b'S' => conn.note_parameter(&f),
            b'K' => {
                let (pid, secret) = parse_backend_key(f.body())?;
                conn.cancel.pid = pid;
                conn.cancel.secret = secret;
            }
            b'Z' => return Ok(conn),
            b'E' => return Err(UpstreamError::Db(ErrorFields::parse(f.body())?)),
            b'N' => {}
            other => return Err(tidepool_proto::ProtoError::UnexpectedMessage(other).into()),
        }
    }
}

async fn authenticate(conn: &mut ServerConn, url: &UpstreamUrl) -> Result<(), UpstreamError> {
    let password = || url.password.clone().ok_or_else(|| UpstreamError::Auth("server asked for a password; none configured".into()));
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = conn.read_frame().await?;
        match f.tag {
            b'E' => return Err(UpstreamError::Db(ErrorFields::parse(f.body())?)),
            b'R' => {}
            other => return Err(tidepool_proto::ProtoError::UnexpectedMessage(other).into()),
        }
        let mut out = BytesMut::new();
        match parse_auth(f.body())? {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => frontend::password(&mut out, password()?.as_bytes()),
            AuthRequest::Md5 { salt } => {
                let hash = tidepool_proto::auth::md5_response(&url.user, &password()?, salt);
                frontend::password(&mut out, hash.as_bytes());
            }
            AuthRequest::Sasl { mechanisms } => {
                if !mechanisms.contains(&"SCRAM-SHA-256") {
                    return Err(UpstreamError::Auth(format!("unsupported SASL mechanisms {mechanisms:?}")));
                }
                let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial(&mut out, "SCRAM-SHA-256", s.message());
                scram = Some(s);
            }
            AuthRequest::SaslContinue(data) => {
                let s = scram.as_mut().ok_or_else(|| UpstreamError::Auth("unexpected SASL continue".into()))?;
                s.update(data).map_err(|e| UpstreamError::Auth(e.to_string()))?;
                frontend::sasl_response(&mut out, s.message());
            }
            AuthRequest::SaslFinal(data) => {
                let mut s = scram.take().ok_or_else(|| UpstreamError::Auth("unexpected SASL final".into()))?;
                s.finish(data).map_err(|e| UpstreamError::Auth(format!("server signature: {e}")))?;
                continue;
            }
            AuthRequest::Other(n) => return Err(UpstreamError::Auth(format!("unsupported authentication method {n}"))),
        }
        conn.write_all(&out).await?;
    }
}

/// Sends a CancelRequest for `target` on a fresh connection (PostgreSQL's cancel protocol).
pub async fn send_cancel(target: &super::CancelTarget, timeout: Duration) -> Result<(), UpstreamError> {
    let fut = async {
        let mut s = tcp(&target.host, target.port).await?;
        let mut out = BytesMut::new();
        startup::encode_cancel(&mut out, target.pid, target.secret);
        s.write_all(&out).await?;
        // The server closes the socket once it has read the request.
        let mut sink = [0u8; 16];
        let _ = s.read(&mut sink).await;
        Ok::<_, UpstreamError>(())
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(Err(UpstreamError::ConnectTimeout))
}
