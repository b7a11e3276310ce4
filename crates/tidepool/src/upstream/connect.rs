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

use super::{CancelTarget, ServerConn, UpstreamError};
use crate::config::{UpstreamTls, UpstreamUrl};
use crate::net::{upstream_tls_config, Stream};

/// Everything needed to open one upstream connection.
#[derive(Clone)]
pub struct UpstreamTarget {
    pub url: UpstreamUrl,
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
    pub tls_config: Arc<rustls::ClientConfig>,
}

impl UpstreamTarget {
    pub fn new(url: UpstreamUrl, tls: UpstreamTls, connect_timeout: Duration) -> Self {
        let tls = match url.sslmode.as_deref() {
            Some("disable") => UpstreamTls::Disable,
            Some("require" | "verify-ca" | "verify-full") => UpstreamTls::Require,
            Some("prefer" | "allow") => UpstreamTls::Prefer,
            _ => tls,
        };
        UpstreamTarget { url, tls, connect_timeout, tls_config: upstream_tls_config() }
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
    let stream = if t.tls == UpstreamTls::Disable {
        Stream::Plain(sock)
    } else {
        let mut req = BytesMut::new();
        startup::encode_ssl_request(&mut req);
        sock.write_all(&req).await?;
        let mut answer = [0u8; 1];
        sock.read_exact(&mut answer).await?;
        match answer[0] {
            b'S' => {
                let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| UpstreamError::Tls(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(t.tls_config.clone()).connect(name, sock).await.map_err(|e| UpstreamError::Tls(e.to_string()))?;
                Stream::ClientTls(Box::new(tls))
            }
            b'N' if t.tls == UpstreamTls::Prefer => Stream::Plain(sock),
            b'N' => return Err(UpstreamError::Tls("server does not support TLS (upstream_tls = require)".into())),
            _ => return Err(UpstreamError::Tls("unexpected answer to SSLRequest".into())),
        }
    };
    let mut conn = ServerConn::new(stream, CancelTarget { host: url.host.clone(), port: url.port, pid: 0, secret: 0 });
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
