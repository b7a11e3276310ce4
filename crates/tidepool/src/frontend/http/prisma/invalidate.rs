//! `POST /invalidate` of the Accelerate API: validates the tags (or `"all"`), applies the
//! per-database rate limit and drops the key's database's entries from the query cache.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::{authenticate, cache, error, json_response, read_body, Guard};
use crate::app::App;
use crate::cache::Status;

/// `POST /invalidate`: `{"tags":[…]}` or `{"tags":"all"}`, scoped to the key's database.
pub(super) async fn invalidate(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, body: Body) -> Response {
    let (_key, target) = match authenticate(&app, &guard, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let db = &target.db;
    if !app.cache.allow_invalidation(&db.config.name) {
        return error(429, "P6003", "The cache invalidation rate limit has been reached. Please try again later.", json!({}));
    }
    let database = db.config.name.clone();
    let max = app.cache.config().max_tags;
    let bad = |why: &str| error(400, "P6005", format!("Invalid invalidation request: {why}"), json!({}));
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return bad("the body must be {\"tags\": [\"tag\", …]} or {\"tags\": \"all\"}."),
    };
    let inv = match value.get("tags") {
        Some(serde_json::Value::String(s)) if s == "all" => crate::cache::Invalidation::All { database },
        Some(serde_json::Value::Array(items)) if !items.is_empty() && items.len() <= max => {
            let mut tags: Vec<String> = Vec::with_capacity(items.len());
            for t in items {
                match t.as_str() {
                    Some(t) if crate::cache::valid_tag(t) => tags.push(t.to_owned()),
                    _ => return bad("tags must be 1 to 64 characters of A-Z, a-z, 0-9 and _."),
                }
            }
            crate::cache::Invalidation::Tags { database, tags }
        }
        Some(serde_json::Value::Array(items)) if !items.is_empty() => return bad(&format!("at most {max} tags may be invalidated per call.")),
        _ => return bad("the body must be {\"tags\": [\"tag\", …]} (at least one tag) or {\"tags\": \"all\"}."),
    };
    app.cache.invalidate(inv);
    cache::with_status(json_response(200, "{}"), Status::None, None)
}
