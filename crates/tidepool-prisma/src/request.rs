//! Request bodies of the Accelerate-compatible API.
//!
//! * `POST /query` and `POST /transaction/{id}/query`: [`QueryRequest`]
//!   `{"model"?, "operation", "plan", "params", "comments"?}`. Prisma 7 sends one plan per
//!   request (a `$transaction([…])` batch is either compacted by the client into one plan or
//!   sent as one request per statement inside an interactive transaction). For hosts that want
//!   to accept several plans in one body, [`RequestBody`] also parses a JSON array of query
//!   requests or `{"batch":[…]}`.
//! * `POST /transaction/start`: [`TransactionOptions`] `{"maxWait"?, "timeout"?,
//!   "isolationLevel"?}`.

use indexmap::IndexMap;
use serde::Deserialize;

use crate::db::IsolationLevel;
use crate::error::{Error, Result};
use crate::json::{self, Map, Value};
use crate::plan::Node;
use crate::plan_parse::PlanParser;
use crate::Limits;

/// A parsed `/query` body.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// Model name (`"User"`); absent for raw queries.
    pub model: Option<String>,
    /// Prisma operation (`findMany`, `createOne`, `queryRaw`, …).
    pub operation: String,
    /// The query plan.
    pub plan: Node,
    /// Placeholder values keyed `%1`, `%2`, … (the root scope of the plan).
    pub params: Map,
    /// SQL-commenter tags appended to every statement.
    pub comments: IndexMap<String, String>,
}

/// A single request or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    Single(Box<QueryRequest>),
    Batch(Vec<QueryRequest>),
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("Invalid request body: {msg}"))
}

impl QueryRequest {
    /// Parse a `/query` body.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self> {
        let value = json::parse(body, limits.max_json_depth)?;
        Self::from_value(&value, limits)
    }

    /// Build from an already parsed JSON value.
    pub fn from_value(value: &Value, limits: &Limits) -> Result<Self> {
        let m = value.as_object().ok_or_else(|| invalid("expected a JSON object"))?;
        let model = match m.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(invalid("'model' must be a non-empty string")),
        };
        let operation = match m.get("operation") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(invalid("'operation' must be a non-empty string")),
        };
        let plan = match m.get("plan") {
            Some(p @ Value::Object(_)) => PlanParser { max_depth: limits.max_plan_depth }.node(p, 0)?,
            _ => return Err(invalid("'plan' must be an object")),
        };
        let params = match m.get("params") {
            Some(Value::Object(p)) => p.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(invalid("'params' must be an object")),
        };
        let mut comments = IndexMap::new();
        match m.get("comments") {
            None | Some(Value::Null) => {}
            Some(Value::Object(c)) => {
                for (k, v) in c {
                    let Value::String(v) = v else { return Err(invalid("'comments' values must be strings")) };
                    comments.insert(k.clone(), v.clone());
                }
            }
            Some(_) => return Err(invalid("'comments' must be an object")),
        }
        Ok(QueryRequest { model, operation, plan, params, comments })
    }
}

impl RequestBody {
    /// Parse a single request, a JSON array of requests, or `{"batch":[…]}`.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self> {
        let value = json::parse(body, limits.max_json_depth)?;
        let items = match &value {
            Value::List(items) => items,
            Value::Object(m) if m.contains_key("batch") && !m.contains_key("plan") => {
                m["batch"].as_list().ok_or_else(|| invalid("'batch' must be an array"))?
            }
            _ => return QueryRequest::from_value(&value, limits).map(|r| RequestBody::Single(Box::new(r))),
        };
        items.iter().map(|v| QueryRequest::from_value(v, limits)).collect::<Result<_>>().map(RequestBody::Batch)
    }
}

/// Body of `POST /transaction/start`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionOptions {
    /// Milliseconds to wait for a connection and `BEGIN`.
    pub max_wait: Option<u64>,
    /// Milliseconds the transaction may stay open.
    pub timeout: Option<u64>,
    /// `"READ UNCOMMITTED"`, `"READ COMMITTED"`, `"REPEATABLE READ"`, `"SERIALIZABLE"`
    /// (`"SNAPSHOT"` parses but is rejected by [`TransactionOptions::isolation`]).
    pub isolation_level: Option<String>,
    /// Nested-transaction id (savepoints); not sent by Prisma 7.10.
    pub new_tx_id: Option<String>,
}

impl TransactionOptions {
    /// Parse the body; an empty body means "no options".
    pub fn parse(body: &[u8]) -> Result<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(invalid)
    }

    /// The requested isolation level; P2028 `Invalid isolation level` for unknown values.
    pub fn isolation(&self) -> Result<Option<IsolationLevel>> {
        match &self.isolation_level {
            None => Ok(None),
            Some(s) => IsolationLevel::parse(s).map(Some).ok_or_else(|| {
                Error::known(
                    "P2028",
                    format!("Transaction API error: Invalid isolation level: {s}"),
                    json::object([("isolationLevel", Value::from(s.as_str()))]),
                )
            }),
        }
    }
}
