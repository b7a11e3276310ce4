//! Neon-compatible SQL over HTTP (`POST /sql`, `OPTIONS /sql`): authenticates the
//! `Neon-Connection-String` (or an API key as `Authorization: Bearer`) against tidepool's users,
//! runs the statement(s) on a lease from the pool of the request's [`Target`] (an API key's
//! role, else the database's own user) and encodes the result with
//! `tidepool-neon`. A batch runs in one transaction with the requested isolation options.

use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response};
use axum::Extension;
use tidepool_neon::{self as neon, ConnectionString, Credentials, Field, NeonError, PgErrorFields, RequestOptions, ResponseEncoder, SqlRequest};

use super::lease::{self, HttpLeaseError};
use super::neon_cache;
use super::{BodyError, ConnGuard};
use crate::app::{App, LeaseError};
use crate::cache::{Bypass, Filled, Request as CacheRequest, Status};
use crate::stats::{Front, RequestMeter};
use crate::target::Target;
use crate::upstream::{QueryResult, ServerConn, UpstreamError};
use tidepool_proto::ProtoError;

fn to_http(r: axum::http::Response<Vec<u8>>) -> Response<Body> {
    r.map(Body::from)
}

pub async fn preflight() -> Response<Body> {
    to_http(neon::preflight_response())
}

/// Any other method on `/sql`: Neon's own answer (400 "query is not supported"), not an empty 405.
pub async fn unsupported() -> Response<Body> {
    to_http(neon::error_response(&NeonError::UnsupportedRoute))
}

pub async fn sql(State(app): State<Arc<App>>, guard: Option<Extension<Arc<ConnGuard>>>, headers: HeaderMap, body: Body) -> Response<Body> {
    let task_app = app.clone();
    super::detached(&app, async move {
        let mut meter = RequestMeter::start(Front::Sql);
        match handle(&task_app, guard.as_deref(), &headers, body, &mut meter).await {
            Ok(r) => {
                meter.finish(r.status().as_u16(), None);
                r
            }
            Err(e) => {
                tracing::debug!(error = %e, "/sql request failed");
                let r = to_http(neon::error_response(&e));
                meter.finish(r.status().as_u16(), Some(&e.to_string()));
                r
            }
        }
    })
    .await
}

/// Checks the credentials in the headers; where the request runs. A password login runs as the
/// database's own upstream user; an API key as the role it is bound to (`App::target_for_key`).
async fn authorize(app: &App, client: Option<std::net::IpAddr>, connection: &ConnectionString, credentials: &Credentials) -> Result<Target, NeonError> {
    let user = &connection.user;
    let key_target = match credentials {
        Credentials::Password(p) => {
            let ok = match p.as_str() {
                Some(p) => app.users.verify_password(client, user, p).await,
                None => false,
            };
            if !ok {
                return Err(NeonError::AuthenticationFailed { user: shown(user) });
            }
            None
        }
        Credentials::BearerToken(t) => {
            let key = app.api_keys.lookup(t.as_str()).ok_or_else(|| NeonError::AuthenticationFailed { user: shown(user) })?;
            Some(app.target_for_key(&key).ok_or_else(|| NeonError::AuthenticationFailed { user: shown(user) })?)
        }
    };
    let dbname = &connection.database;
    let db = app.database(dbname).ok_or_else(|| pg_error("FATAL", "3D000", format!("database \"{}\" does not exist", shown(dbname))))?;
    let allowed = match &key_target {
        Some(t) => &t.db.config.name == dbname,
        None => app.users.get(user).is_some_and(|u| u.may_use(dbname)),
    };
    if !allowed {
        return Err(pg_error("FATAL", "28000", format!("user \"{}\" may not use database \"{}\"", shown(user), shown(dbname))));
    }
    Ok(key_target.unwrap_or_else(|| Target::own(db.clone())))
}

async fn handle(
    app: &Arc<App>,
    guard: Option<&Arc<ConnGuard>>,
    headers: &HeaderMap,
    body: Body,
    meter: &mut RequestMeter,
) -> Result<Response<Body>, NeonError> {
    let limits = neon::Limits { max_request_bytes: app.config().http.max_request_size, max_response_bytes: app.config().http.max_response_size };
    // Headers first, and the credentials in them checked before a byte of the body is read or
    // parsed: whoever cannot authenticate never reaches the JSON parser.
    let parsed_headers = (|| -> Result<_, NeonError> {
        let connection = neon::connection_string(headers)?;
        let credentials = Credentials::from_headers(headers, &connection)?;
        let options = RequestOptions::from_headers(headers)?;
        Ok((connection, credentials, options))
    })();
    let (connection, credentials, options) = match parsed_headers {
        Ok(h) => h,
        Err(e) => {
            super::drain_refused(body).await;
            return Err(e);
        }
    };
    let target = match authorize(app, guard.and_then(|g| g.peer).map(|p| p.ip()), &connection, &credentials).await {
        Ok(t) => t,
        Err(e) => {
            super::drain_refused(body).await;
            return Err(e);
        }
    };
    super::authenticated(guard);
    meter.attach(&target.db.traffic);
    let too_large = NeonError::RequestTooLarge { limit: limits.max_request_bytes };
    if neon::check_content_length(headers, &limits).is_err() {
        super::drain(body, limits.max_request_bytes).await;
        return Err(too_large);
    }
    let body = super::read_limited(body, limits.max_request_bytes).await.map_err(|e| match e {
        BodyError::TooLarge => too_large,
        BodyError::Timeout => NeonError::RequestTimeout,
        BodyError::Broken => NeonError::InvalidBody("the request body could not be read".into()),
    })?;
    let payload = neon::parse_payload(&body, &limits)?;
    let request = Arc::new(SqlRequest { connection, credentials, options, payload });
    let strategy = match (neon_cache::strategy(app.cache.config(), headers)?, app.cache.enabled()) {
        (Some(s), true) => s,
        (s, _) => {
            if s.is_some() {
                app.cache.metrics().bypass(Bypass::Disabled);
            }
            let body = execute(app.clone(), target.clone(), request.clone()).await?;
            return Ok(respond(&request, body, Status::None, None));
        }
    };
    let key = neon_cache::key(&target, &strategy.tags, &request);
    let req = CacheRequest { key, database: target.db.config.name.as_str().into(), strategy };
    let refill = || -> crate::cache::Refill {
        let (app, target, request) = (app.clone(), target.clone(), request.clone());
        Box::new(move || Box::pin(async move { execute(app, target, request).await.ok() }))
    };
    if let Some((e, status)) = app.cache.lookup(&req, refill).await {
        return Ok(respond(&request, e.payload.clone(), status, Some(&e.last_modified)));
    }
    let tables = match neon_cache::analyze(&request) {
        Ok(t) => t,
        Err(why) => {
            app.cache.metrics().bypass(why);
            let body = execute(app.clone(), target.clone(), request.clone()).await?;
            return Ok(respond(&request, body, Status::None, None));
        }
    };
    match app.cache.fill(&req, tables, refill, execute(app.clone(), target.clone(), request.clone())).await {
        Filled::Hit(e, status) => Ok(respond(&request, e.payload.clone(), status, Some(&e.last_modified))),
        Filled::Miss(e) => Ok(respond(&request, e.payload.clone(), Status::Miss, Some(&e.last_modified))),
        Filled::Failed(err) => Err(err),
    }
}

/// The success response for an encoded body (from the database or the cache).
fn respond(request: &SqlRequest, body: Bytes, status: Status, last_modified: Option<&HeaderValue>) -> Response<Body> {
    let (mut parts, _) = neon::success_response(request, Vec::new()).into_parts();
    neon_cache::mark(&mut parts.headers, status, last_modified);
    Response::from_parts(parts, Body::from(body))
}

/// Runs the request's statement(s) on a lease and encodes the result.
async fn execute(app: Arc<App>, target: Target, request: Arc<SqlRequest>) -> Result<Bytes, NeonError> {
    let max = app.config().http.max_response_size;
    let conn = lease::lease(&target, Front::Sql).await.map_err(lease_error)?;
    let req = request.clone();
    let results = lease::run_bounded(conn, app.config().http.query_timeout, move |c| Box::pin(run(c, req, max))).await.map_err(|e| match e {
        HttpLeaseError::Timeout(_) => NeonError::Cancelled,
        HttpLeaseError::Lease(l) => lease_error(l),
        HttpLeaseError::Upstream(u) => upstream_error(u, max),
    })?;
    if app.cache.config().invalidate_on_write {
        let mut tables = Vec::new();
        for s in request.statements() {
            tables.extend(crate::cache::sql::written_tables(s.query.as_bytes()));
        }
        tables.sort();
        tables.dedup();
        app.cache.written(&target.db.config.name, tables);
    }
    encode(&request, &results, max).map(Bytes::from)
}

async fn run(conn: &mut ServerConn, request: Arc<SqlRequest>, max: usize) -> Result<Vec<QueryResult>, UpstreamError> {
    let statements = request.statements();
    let mut out = Vec::with_capacity(statements.len());
    if !request.is_batch() {
        let s = &statements[0];
        lease::note_sql(conn, &s.query);
        out.push(conn.query_text(&s.query, &[], &s.params, max).await?);
        return Ok(out);
    }
    conn.simple(&request.options.batch.begin_sql()).await?;
    let mut used = 0;
    for s in statements {
        lease::note_sql(conn, &s.query);
        match conn.query_text(&s.query, &[], &s.params, max.saturating_sub(used)).await {
            Ok(r) => {
                used += r.rows.iter().flatten().flatten().map(|v| v.len() + 8).sum::<usize>();
                out.push(r);
            }
            Err(e) => {
                let _ = conn.simple("ROLLBACK").await;
                return Err(e);
            }
        }
    }
    conn.simple("COMMIT").await?;
    Ok(out)
}

fn encode(request: &SqlRequest, results: &[QueryResult], max: usize) -> Result<Vec<u8>, NeonError> {
    let mut enc = if request.is_batch() { ResponseEncoder::batch(max) } else { ResponseEncoder::single(max) };
    for (statement, r) in request.statements().iter().zip(results) {
        let fields: Vec<Field> = r
            .fields
            .iter()
            .map(|f| Field {
                name: f.name.clone(),
                table_oid: f.table_oid,
                column_id: f.column_id,
                type_oid: f.type_oid,
                type_size: f.type_size,
                type_modifier: f.type_modifier,
            })
            .collect();
        let mut rows = enc.statement(&fields, request.output_for(statement)).map_err(NeonError::from)?;
        for row in &r.rows {
            rows.push_row(row).map_err(NeonError::from)?;
        }
        rows.finish(Some(&r.tag)).map_err(NeonError::from)?;
    }
    enc.finish().map_err(NeonError::from)
}

/// A client-chosen name as echoed in an error: at most 63 bytes (PostgreSQL's identifier
/// length), so a large header is never reflected back.
fn shown(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_owned();
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

fn pg_error(severity: &str, code: &str, message: String) -> NeonError {
    NeonError::Postgres(Box::new(PgErrorFields::new(severity, code, message)))
}

fn lease_error(e: LeaseError) -> NeonError {
    match e {
        LeaseError::Params(f) => NeonError::Postgres(Box::new(PgErrorFields::from_fields(f.fields.iter().map(|(k, v)| (*k, v.as_str()))))),
        other => NeonError::Unavailable(other.to_string()),
    }
}

fn upstream_error(e: UpstreamError, max: usize) -> NeonError {
    match e {
        UpstreamError::Db(f) => NeonError::Postgres(Box::new(PgErrorFields::from_fields(f.fields.iter().map(|(k, v)| (*k, v.as_str()))))),
        UpstreamError::TooLarge(_) => NeonError::ResponseTooLarge { limit: max },
        // The client's statement cannot be encoded (more than 65,535 parameters, a value over
        // 2 GiB): refused before a byte reached the server, so it is the client's error (400
        // with PostgreSQL's program_limit_exceeded), not an unavailable upstream (503).
        UpstreamError::Protocol(p @ (ProtoError::TooManyParameters { .. } | ProtoError::ValueTooLarge { .. })) => pg_error("ERROR", "54000", p.to_string()),
        other => NeonError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencodable_statements_are_the_clients_error() {
        for p in [ProtoError::TooManyParameters { count: 100_000 }, ProtoError::ValueTooLarge { len: 1 << 31 }] {
            let e = upstream_error(UpstreamError::Protocol(p), 1);
            assert_eq!(e.status().as_u16(), 400, "{e}");
            assert_eq!(e.sqlstate(), Some("54000"), "{e}");
        }
        assert_eq!(upstream_error(UpstreamError::Closed, 1).status().as_u16(), 503);
    }
}
