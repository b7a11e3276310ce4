//! Neon-compatible SQL over HTTP (`POST /sql`, `OPTIONS /sql`): authenticates the
//! `Neon-Connection-String` (or an API key as `Authorization: Bearer`) against tidepool's users,
//! runs the statement(s) on a lease from the shared pool and encodes the result with
//! `tidepool-neon`. A batch runs in one transaction with the requested isolation options.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response};
use tidepool_neon::{self as neon, Credentials, Field, NeonError, PgErrorFields, ResponseEncoder, SqlRequest};

use super::lease::{self, HttpLeaseError};
use crate::app::{App, LeaseError};
use crate::upstream::{QueryResult, ServerConn, UpstreamError};

fn to_http(r: axum::http::Response<Vec<u8>>) -> Response<Body> {
    r.map(Body::from)
}

pub async fn preflight() -> Response<Body> {
    to_http(neon::preflight_response())
}

pub async fn sql(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response<Body> {
    super::detached(async move {
        match handle(&app, &headers, body).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "/sql request failed");
                to_http(neon::error_response(&e))
            }
        }
    })
    .await
}

async fn handle(app: &App, headers: &HeaderMap, body: Body) -> Result<Response<Body>, NeonError> {
    let limits = neon::Limits { max_request_bytes: app.config.http.max_request_size, max_response_bytes: app.config.http.max_response_size };
    let too_large = NeonError::RequestTooLarge { limit: limits.max_request_bytes };
    if neon::check_content_length(headers, &limits).is_err() {
        super::drain(body, limits.max_request_bytes).await;
        return Err(too_large);
    }
    let body = super::read_limited(body, limits.max_request_bytes).await.ok_or(too_large)?;
    let request = neon::parse_request(headers, &body, &limits)?;
    let user = &request.connection.user;
    let authorized_db = match &request.credentials {
        Credentials::Password(p) => {
            let ok = match p.as_str() {
                Some(p) => app.users.verify_password(None, user, p).await,
                None => false,
            };
            if !ok {
                return Err(NeonError::AuthenticationFailed { user: user.clone() });
            }
            None
        }
        Credentials::BearerToken(t) => {
            let key = app.api_keys.lookup(t.as_str()).ok_or_else(|| NeonError::AuthenticationFailed { user: user.clone() })?;
            Some(key.database)
        }
    };
    let dbname = &request.connection.database;
    let db = app.database(dbname).ok_or_else(|| pg_error("FATAL", "3D000", format!("database \"{dbname}\" does not exist")))?;
    let allowed = match &authorized_db {
        Some(d) => d == dbname,
        None => app.users.get(user).is_some_and(|u| u.may_use(dbname)),
    };
    if !allowed {
        return Err(pg_error("FATAL", "28000", format!("user \"{user}\" may not use database \"{dbname}\"")));
    }
    let conn = lease::lease(db).await.map_err(lease_error)?;
    let request = Arc::new(request);
    let req = request.clone();
    let max = limits.max_response_bytes;
    let results = lease::run_bounded(conn, app.config.http.query_timeout, move |c| Box::pin(run(c, req, max))).await.map_err(|e| match e {
        HttpLeaseError::Timeout(_) => NeonError::Cancelled,
        HttpLeaseError::Lease(l) => lease_error(l),
        HttpLeaseError::Upstream(u) => upstream_error(u, max),
    })?;
    let body = encode(&request, &results, max)?;
    Ok(to_http(neon::success_response(&request, body)))
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
        other => NeonError::Unavailable(other.to_string()),
    }
}
