//! Interactive transactions across cluster nodes: a transaction's connection lives on the node
//! that started it, so its id says which node that is — the first 4 of its 16 random bytes are
//! replaced by a tag of the node's id (96 random bits remain). A call for an id whose tag names
//! another live node is forwarded to that node's `advertise_addr` as is (API key included, so the
//! key check happens on the owner), marked with the `[cluster] secret`; a forwarded call is never
//! forwarded again. An id whose node is not alive any more gets P2028: its transaction is gone
//! with the node (Postgres rolled it back when the connection dropped).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Uri};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{p2028, read_body};
use crate::app::App;

/// Carries the cluster secret on a forwarded call.
const SECRET_HEADER: &str = "tidepool-cluster-secret";
/// Longest a forwarded call may take (an itx call is bounded by its transaction timeout anyway).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

fn tag(node_id: &str) -> [u8; 4] {
    let d = Sha256::digest(node_id.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// Marks a new transaction id as this node's (no-op without a cluster).
pub(super) fn tag_id(app: &App, raw: &mut [u8; 16]) {
    if let Some(c) = &app.cluster {
        raw[..4].copy_from_slice(&tag(c.node_id()));
    }
}

enum Route {
    Local,
    Forward(String),
    Gone,
}

fn route(app: &App, headers: &HeaderMap, id: &str) -> Result<Route, Response> {
    let Some(cluster) = &app.cluster else { return Ok(Route::Local) };
    if let Some(given) = headers.get(SECRET_HEADER) {
        let secret = &app.config().cluster.secret;
        if secret.is_empty() || !tidepool_proto::auth::ct_eq(given.as_bytes(), secret.as_bytes()) {
            return Err(super::error(403, "P6000", "Invalid cluster secret.", json!({})));
        }
        return Ok(Route::Local);
    }
    let Some(Ok(want)) = id.get(..8).map(hex::decode) else { return Ok(Route::Local) };
    if want[..] == tag(cluster.node_id()) {
        return Ok(Route::Local);
    }
    match cluster.peers().into_iter().find(|p| p.node_id != cluster.node_id() && want[..] == tag(&p.node_id)) {
        Some(p) if !p.advertise_addr.is_empty() && !app.config().cluster.secret.is_empty() => Ok(Route::Forward(p.advertise_addr)),
        Some(_) => Err(p2028(
            "The transaction was started on another tidepool node, which cannot be reached from here ([cluster] advertise_addr or secret not set).".into(),
            json!({}),
        )),
        None => Ok(Route::Gone),
    }
}

/// `Ok(response)`: the call was for another node's transaction (answered by it, or P2028 when
/// that node is gone). `Err(body)`: handle it here.
pub(super) async fn divert(app: &App, uri: &Uri, headers: &HeaderMap, id: &str, body: Body) -> Result<Response, Body> {
    match route(app, headers, id) {
        Ok(Route::Local) => Err(body),
        Err(r) => Ok(r),
        Ok(Route::Gone) => {
            Ok(p2028("The tidepool node that started this transaction is no longer in the cluster; the transaction was rolled back.".into(), json!({})))
        }
        Ok(Route::Forward(addr)) => {
            let body = match read_body(app, body).await {
                Ok(b) => b,
                Err(r) => return Ok(r),
            };
            Ok(match tokio::time::timeout(FORWARD_TIMEOUT, send(app, &addr, uri, headers, body)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(owner = %addr, error = %e, "could not forward an interactive transaction call");
                    p2028("The tidepool node that started this transaction could not be reached.".into(), json!({}))
                }
                Err(_) => p2028("The tidepool node that started this transaction did not answer in time.".into(), json!({})),
            })
        }
    }
}

async fn send(app: &App, addr: &str, uri: &Uri, headers: &HeaderMap, body: Bytes) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::post(path).body(Full::new(body))?;
    for (k, v) in headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONNECTION && k != axum::http::header::CONTENT_LENGTH {
            req.headers_mut().append(k, v.clone());
        }
    }
    req.headers_mut().insert(axum::http::header::HOST, HeaderValue::from_str(addr)?);
    req.headers_mut().insert(SECRET_HEADER, HeaderValue::from_str(&app.config().cluster.secret)?);
    let resp = sender.send_request(req).await?;
    Ok(resp.map(Body::new))
}
