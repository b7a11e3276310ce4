//! Batches of the DataProxy protocol (`{"batch":[…], "transaction"?}`): a compacted batch (one
//! query for many `findUnique`s) is run once and split back per request; a `multi` batch runs its
//! plans in order, inside one transaction when the client asked for one (or inside its itx).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::prisma::Guard;
use super::{internal, outcome, plan_body, reply, str_field, Outcome};
use crate::app::App;
use tidepool_qc::J;

/// 5.x isolation names (`Serializable`, `ReadCommitted`, …) in Prisma 7's spelling.
pub(super) fn isolation(level: &str) -> String {
    match level {
        "ReadUncommitted" => "READ UNCOMMITTED".into(),
        "ReadCommitted" => "READ COMMITTED".into(),
        "RepeatableRead" => "REPEATABLE READ".into(),
        "Serializable" => "SERIALIZABLE".into(),
        "Snapshot" => "SNAPSHOT".into(),
        other => other.to_owned(),
    }
}

/// One batch request's context: where its plans run and the values of their placeholders.
pub(super) struct BatchRun<'a> {
    pub app: &'a Arc<App>,
    pub guard: &'a Guard,
    pub headers: &'a HeaderMap,
    pub query_path: &'a str,
    pub in_itx: bool,
    pub params: &'a Map<String, Value>,
}

impl BatchRun<'_> {
    pub async fn batch(&self, tx: Option<Value>, items: &[Value], compiled: &J) -> Response {
        let BatchRun { app, guard, headers, query_path, in_itx, params } = *self;
        let item_key = |i: usize| {
            let it = items.get(i).unwrap_or(&Value::Null);
            (str_field(it, "modelName").map(str::to_owned), str_field(it, "action").unwrap_or("").to_owned())
        };
        if compiled.get("type").and_then(J::as_str) == Some("compacted") {
            let (model, action) = item_key(0);
            let plan = compiled.get("plan").map_or_else(|| "null".to_owned(), J::to_json_string);
            let key = reply::data_key(&action, model.as_deref());
            return match outcome(internal(app, guard, headers, query_path, plan_body(model.as_deref(), "findMany", &plan, params)).await) {
                Outcome::Data(rows, _) => {
                    let rows: Value = serde_json::from_slice(&rows).unwrap_or(Value::Null);
                    let results: Vec<Value> = reply::split_compacted(&rows, &compiled.to_value(), params)
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
        let plans: Vec<String> = match compiled.get("plans") {
            Some(J::Arr(a)) => a.iter().map(J::to_json_string).collect(),
            _ => Vec::new(),
        };
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
            match outcome(internal(app, guard, headers, &path, plan_body(model.as_deref(), &action, plan, params)).await) {
                // Spliced as text: the fields keep the order the plan gives them.
                Outcome::Data(x, _) => results.push(reply::data_text(&key, &x)),
                Outcome::Error { code, message, meta } if transactional => {
                    if let Some(id) = &tx_id {
                        internal(app, guard, headers, &format!("/transaction/{id}/rollback"), Vec::new()).await;
                    }
                    let e = reply::error_entry(code.as_deref(), &message, meta, model.as_deref(), Some(i));
                    return reply::json(StatusCode::OK, &json!({"errors": [e]}));
                }
                Outcome::Error { code, message, meta } => {
                    results.push(json!({"errors": [reply::error_entry(code.as_deref(), &message, meta, model.as_deref(), None)]}).to_string().into_bytes())
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
        let mut body = b"{\"batchResult\":[".to_vec();
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.extend_from_slice(b"]}");
        reply::json_bytes(StatusCode::OK, body)
    }
}
