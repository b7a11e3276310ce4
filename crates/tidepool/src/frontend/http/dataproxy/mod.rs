//! Prisma 5/6 clients (the "DataProxy" protocol of `@prisma/client` with Accelerate) served
//! unchanged. Routes under `/{clientVersion}/{schemaHash}/`: `POST graphql` (one JSON-protocol
//! query or a `batch`), `PUT schema` (base64 upload, triggered by our `EngineNotStarted` reply),
//! `POST transaction/start` (answers an absolute itx endpoint), and `POST itx/{id}/graphql|commit|
//! rollback`. Requests are compiled to Prisma 7 plans by Prisma's own query compiler running
//! in-process ([`state`], crate `tidepool-qc`) and then run through the Prisma 7 routes in-process
//! (same auth, pool, cache, ITX registry); [`reply`] reshapes the answers as 5.x engines sent them.

mod reply;
mod state;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tidepool_qc::JobKind;

use self::state::CompileFailure;
pub use self::state::DataProxy;
use super::prisma::{self, authenticate, Guard};
use super::BodyError;
use crate::app::App;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/{version}/{hash}/graphql", post(graphql))
        .route("/{version}/{hash}/schema", put(schema))
        .route("/{version}/{hash}/transaction/start", post(tx_start))
        .route("/{version}/{hash}/itx/{id}/graphql", post(itx_graphql))
        .route("/{version}/{hash}/itx/{id}/commit", post(itx_commit))
        .route("/{version}/{hash}/itx/{id}/rollback", post(itx_rollback))
}

/// What an in-process Prisma 7 call produced.
enum Outcome {
    Data(Value, HeaderMap),
    Error { code: Option<String>, message: String, meta: Value },
    Service(Response),
}

/// Calls a Prisma 7 route in-process with the client's credentials and cache headers.
async fn internal(app: &Arc<App>, guard: &Guard, headers: &HeaderMap, path: &str, body: Vec<u8>) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder().method(Method::POST).uri(path).body(Body::from(body)).unwrap_or_default();
    for name in [header::AUTHORIZATION.as_str(), "cache-control", "accelerate-cache-tags"] {
        if let Some(v) = headers.get(name) {
            req.headers_mut().insert(header::HeaderName::from_static(name), v.clone());
        }
    }
    req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(axum::Extension(g)) = guard {
        req.extensions_mut().insert(g.clone());
    }
    let mut router = prisma::routes().with_state(app.clone());
    let resp = match tower_service::Service::call(&mut router, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

fn outcome((status, headers, bytes): (StatusCode, HeaderMap, Bytes)) -> Outcome {
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status == StatusCode::OK {
        let data = match v {
            Value::Object(mut m) => m.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        };
        return Outcome::Data(data, headers);
    }
    let code = v.get("code").and_then(Value::as_str).map(str::to_owned);
    let message = v.get("error").and_then(Value::as_str).unwrap_or("request failed").to_owned();
    match code {
        Some(c) if c.starts_with("P2") => Outcome::Error { code: Some(c), message, meta: v.get("meta").cloned().unwrap_or(Value::Null) },
        c => Outcome::Service(reply::service_error(status, c.as_deref().unwrap_or("P6000"), &message)),
    }
}

fn compile_failed(f: CompileFailure, model: Option<&str>) -> Response {
    match f {
        CompileFailure::Unavailable(msg) => reply::startup_error(format!("the query compiler is unavailable: {msg}")),
        CompileFailure::Busy => reply::service_error(StatusCode::TOO_MANY_REQUESTS, "P5008", "The query compiler is busy; retry later."),
        CompileFailure::Compile(tidepool_qc::CompileError::Rejected { message, code, meta }) => {
            let e = reply::error_entry(code.as_deref(), &message, meta.unwrap_or(Value::Null), model, None);
            reply::json(StatusCode::OK, &json!({"errors": [e]}))
        }
        CompileFailure::Compile(e) => {
            tracing::warn!(error = %e, "query compiler failure");
            reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", &e.to_string())
        }
    }
}

/// Authenticates and finds the schema: (database, schema text) or the finished reply.
#[allow(clippy::result_large_err)] // the error is the handler's finished response
fn scope(app: &App, guard: &Guard, headers: &HeaderMap, hash: &str) -> Result<(String, Arc<str>), Response> {
    let (_key, target) = authenticate(app, guard, headers)?;
    let db = target.db.config.name.to_string();
    match app.dataproxy.schema(&db, hash) {
        Some(s) => Ok((db, s)),
        None => Err(reply::schema_missing()),
    }
}

async fn read(body: Body, max: usize) -> Result<Bytes, Response> {
    super::read_limited(body, max).await.map_err(|e| match e {
        BodyError::TooLarge => reply::invalid_request(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body exceeds {max} bytes")),
        BodyError::Timeout => reply::invalid_request(StatusCode::REQUEST_TIMEOUT, "the request body was not received in time"),
        BodyError::Broken => reply::invalid_request(StatusCode::BAD_REQUEST, "the request body could not be read"),
    })
}

async fn graphql(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, hash)): Path<(String, String)>, body: Body) -> Response {
    run(app, guard, headers, hash, None, body).await.unwrap_or_else(|r| r)
}

async fn itx_graphql(
    State(app): State<Arc<App>>,
    guard: Guard,
    headers: HeaderMap,
    Path((_v, hash, id)): Path<(String, String, String)>,
    body: Body,
) -> Response {
    run(app, guard, headers, hash, Some(id), body).await.unwrap_or_else(|r| r)
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn plan_body(model: Option<&str>, action: &str, plan: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"model": model, "operation": action, "plan": plan, "params": {}})).unwrap_or_default()
}

async fn run(app: Arc<App>, guard: Guard, headers: HeaderMap, hash: String, itx: Option<String>, body: Body) -> Result<Response, Response> {
    let (db, schema) = scope(&app, &guard, &headers, &hash)?;
    let body = read(body, app.config().http.max_request_size).await?;
    let request: Value = serde_json::from_slice(&body).map_err(|e| reply::invalid_request(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    let config = app.config();
    let cfg = &config.dataproxy;
    let query_path = match &itx {
        Some(id) => format!("/transaction/{id}/query"),
        None => "/query".to_owned(),
    };
    if let Some(batch) = request.get("batch") {
        let items = batch.as_array().cloned().unwrap_or_default();
        let compiled = app.dataproxy.compile(cfg, &db, &hash, schema, JobKind::CompileBatch, &body).await.map_err(|f| compile_failed(f, None))?;
        let tx = request.get("transaction").filter(|t| t.is_object()).cloned();
        return Ok(batch_run(&app, &guard, &headers, &query_path, itx.is_some(), tx, &items, &compiled).await);
    }
    let model = str_field(&request, "modelName");
    let action = str_field(&request, "action").unwrap_or("");
    let plan = app.dataproxy.compile(cfg, &db, &hash, schema, JobKind::Compile, &body).await.map_err(|f| compile_failed(f, model))?;
    let key = reply::data_key(action, model);
    Ok(match outcome(internal(&app, &guard, &headers, &query_path, plan_body(model, action, &plan)).await) {
        Outcome::Data(x, h) => {
            let mut r = reply::json(StatusCode::OK, &json!({"data": {key: x}}));
            for (name, v) in h.iter() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    r.headers_mut().insert(name.clone(), v.clone());
                }
            }
            r
        }
        Outcome::Error { code, message, meta } => {
            reply::json(StatusCode::OK, &json!({"errors": [reply::error_entry(code.as_deref(), &message, meta, model, None)]}))
        }
        Outcome::Service(r) => r,
    })
}

/// 5.x isolation names (`Serializable`, `ReadCommitted`, …) in Prisma 7's spelling.
fn isolation(level: &str) -> String {
    match level {
        "ReadUncommitted" => "READ UNCOMMITTED".into(),
        "ReadCommitted" => "READ COMMITTED".into(),
        "RepeatableRead" => "REPEATABLE READ".into(),
        "Serializable" => "SERIALIZABLE".into(),
        "Snapshot" => "SNAPSHOT".into(),
        other => other.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn batch_run(
    app: &Arc<App>,
    guard: &Guard,
    headers: &HeaderMap,
    query_path: &str,
    in_itx: bool,
    tx: Option<Value>,
    items: &[Value],
    compiled: &Value,
) -> Response {
    let item_key = |i: usize| {
        let it = items.get(i).unwrap_or(&Value::Null);
        (str_field(it, "modelName").map(str::to_owned), str_field(it, "action").unwrap_or("").to_owned())
    };
    if compiled.get("type").and_then(Value::as_str) == Some("compacted") {
        let (model, action) = item_key(0);
        let plan = compiled.get("plan").cloned().unwrap_or(Value::Null);
        let key = reply::data_key(&action, model.as_deref());
        return match outcome(internal(app, guard, headers, query_path, plan_body(model.as_deref(), "findMany", &plan)).await) {
            Outcome::Data(rows, _) => {
                let results: Vec<Value> = reply::split_compacted(&rows, compiled)
                    .into_iter()
                    .map(|r| match r {
                        Ok(v) => json!({"data": {key.clone(): v}}),
                        Err((code, msg)) => json!({"errors": [reply::error_entry(Some(&code), &msg, json!({}), model.as_deref(), None)]}),
                    })
                    .collect();
                reply::json(StatusCode::OK, &json!({"batchResult": results}))
            }
            Outcome::Error { code, message, meta } => {
                let e = reply::error_entry(code.as_deref(), &message, meta, model.as_deref(), None);
                reply::json(StatusCode::OK, &json!({"batchResult": items.iter().map(|_| json!({"errors": [e.clone()]})).collect::<Vec<_>>()}))
            }
            Outcome::Service(r) => r,
        };
    }
    let plans = compiled.get("plans").and_then(Value::as_array).cloned().unwrap_or_default();
    // A transactional batch outside an interactive transaction gets a transaction of its own
    // (the start route answers `{"id"}` at the top level, not under `data`).
    let tx_id = if let (Some(t), false) = (&tx, in_itx) {
        let mut opts = serde_json::Map::new();
        if let Some(level) = t.get("isolationLevel").and_then(Value::as_str) {
            opts.insert("isolationLevel".into(), isolation(level).into());
        }
        let (status, _, bytes) = internal(app, guard, headers, "/transaction/start", Value::Object(opts).to_string().into_bytes()).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match (status, str_field(&v, "id")) {
            (StatusCode::OK, Some(id)) => Some(id.to_owned()),
            _ => match outcome((status, HeaderMap::new(), bytes)) {
                Outcome::Service(r) => return r,
                Outcome::Error { code, message, .. } => return reply::service_error(StatusCode::BAD_REQUEST, code.as_deref().unwrap_or("P2028"), &message),
                Outcome::Data(..) => return reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", "could not start the batch transaction"),
            },
        }
    } else {
        None
    };
    let transactional = tx.is_some() || in_itx;
    let path = tx_id.as_ref().map(|id| format!("/transaction/{id}/query")).unwrap_or_else(|| query_path.to_owned());
    let mut results = Vec::with_capacity(plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let (model, action) = item_key(i);
        let key = reply::data_key(&action, model.as_deref());
        match outcome(internal(app, guard, headers, &path, plan_body(model.as_deref(), &action, plan)).await) {
            Outcome::Data(x, _) => results.push(json!({"data": {key: x}})),
            Outcome::Error { code, message, meta } if transactional => {
                if let Some(id) = &tx_id {
                    internal(app, guard, headers, &format!("/transaction/{id}/rollback"), Vec::new()).await;
                }
                let e = reply::error_entry(code.as_deref(), &message, meta, model.as_deref(), Some(i));
                return reply::json(StatusCode::OK, &json!({"errors": [e]}));
            }
            Outcome::Error { code, message, meta } => {
                results.push(json!({"errors": [reply::error_entry(code.as_deref(), &message, meta, model.as_deref(), None)]}))
            }
            Outcome::Service(r) => {
                if let Some(id) = &tx_id {
                    internal(app, guard, headers, &format!("/transaction/{id}/rollback"), Vec::new()).await;
                }
                return r;
            }
        }
    }
    if let Some(id) = &tx_id {
        let (status, h, bytes) = internal(app, guard, headers, &format!("/transaction/{id}/commit"), Vec::new()).await;
        if status != StatusCode::OK {
            return match outcome((status, h, bytes)) {
                Outcome::Error { code, message, meta } => {
                    reply::json(StatusCode::OK, &json!({"errors": [reply::error_entry(code.as_deref(), &message, meta, None, None)]}))
                }
                Outcome::Service(r) => r,
                Outcome::Data(..) => reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", "commit failed"),
            };
        }
    }
    reply::json(StatusCode::OK, &json!({"batchResult": results}))
}

/// `PUT …/schema`: the base64 schema text, whose sha256 (of the base64) must be the path's hash.
async fn schema(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, hash)): Path<(String, String)>, body: Body) -> Response {
    let (_key, target) = match authenticate(&app, &guard, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let config = app.config();
    let cfg = &config.dataproxy;
    let body = match read(body, cfg.max_schema_size).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b64: &[u8] = body.trim_ascii();
    if hex::encode(Sha256::digest(b64)) != hash {
        return reply::invalid_request(StatusCode::BAD_REQUEST, "the schema does not match the schema hash of the URL");
    }
    let text = match base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|t| String::from_utf8(t).ok()) {
        Some(t) => t,
        None => return reply::invalid_request(StatusCode::BAD_REQUEST, "the schema is not base64-encoded UTF-8 text"),
    };
    let db = target.db.config.name.to_string();
    let text: Arc<str> = text.into();
    // Build the compiler now: a schema it cannot load is refused here, not on every query.
    match app.dataproxy.compile(cfg, &db, &hash, text.clone(), JobKind::Load, b"").await {
        Ok(_) => {}
        Err(CompileFailure::Compile(e)) => {
            return reply::json(StatusCode::BAD_REQUEST, &json!({"EngineStartupError": {"msg": format!("the schema could not be loaded: {e}"), "logs": []}}))
        }
        Err(f) => return compile_failed(f, None),
    }
    app.dataproxy.insert_schema(cfg, &db, &hash, text);
    reply::json(StatusCode::OK, &json!({}))
}

/// `POST …/transaction/start` → `{"id", "data-proxy": {"endpoint": "<absolute itx URL>"}}`.
async fn tx_start(
    State(app): State<Arc<App>>,
    guard: Guard,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((version, hash)): Path<(String, String)>,
    body: Body,
) -> Response {
    if let Err(r) = authenticate(&app, &guard, &headers) {
        return r;
    }
    let body = match read(body, app.config().http.max_request_size).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts: Value = if body.trim_ascii().is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    if !opts.is_object() {
        return reply::invalid_request(StatusCode::BAD_REQUEST, "the transaction options are not a JSON object");
    }
    let mut p7 = serde_json::Map::new();
    for (from, to) in [("max_wait", "maxWait"), ("timeout", "timeout")] {
        if let Some(v) = opts.get(from).filter(|v| v.is_u64()) {
            p7.insert(to.into(), v.clone());
        }
    }
    if let Some(level) = str_field(&opts, "isolation_level") {
        p7.insert("isolationLevel".into(), isolation(level).into());
    }
    let (status, h, bytes) = internal(&app, &guard, &headers, "/transaction/start", Value::Object(p7).to_string().into_bytes()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match (status, str_field(&v, "id")) {
        (StatusCode::OK, Some(id)) => {
            let scheme = if app.config().http.tls_cert.is_some() { "https" } else { "http" };
            // HTTP/1.1 `Host`, else the HTTP/2 `:authority`.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or("localhost");
            let endpoint = format!("{scheme}://{host}/{version}/{hash}/itx/{id}");
            reply::json(StatusCode::OK, &json!({"id": id, "data-proxy": {"endpoint": endpoint}}))
        }
        _ => match outcome((status, h, bytes)) {
            Outcome::Error { code, message, .. } => reply::service_error(status, code.as_deref().unwrap_or("P2028"), &message),
            Outcome::Service(r) => r,
            Outcome::Data(..) => reply::service_error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", "could not start the transaction"),
        },
    }
}

async fn itx_end(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, commit: bool) -> Response {
    let path = format!("/transaction/{id}/{}", if commit { "commit" } else { "rollback" });
    let (status, h, bytes) = internal(&app, &guard, &headers, &path, Vec::new()).await;
    if status == StatusCode::OK {
        return reply::json(StatusCode::OK, &json!({}));
    }
    match outcome((status, h, bytes)) {
        Outcome::Error { code, message, .. } => reply::service_error(status, code.as_deref().unwrap_or("P2028"), &message),
        Outcome::Service(r) => r,
        Outcome::Data(..) => reply::json(StatusCode::OK, &json!({})),
    }
}

async fn itx_commit(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, _h, id)): Path<(String, String, String)>) -> Response {
    itx_end(app, guard, headers, id, true).await
}

async fn itx_rollback(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, Path((_v, _h, id)): Path<(String, String, String)>) -> Response {
    itx_end(app, guard, headers, id, false).await
}
