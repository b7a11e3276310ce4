//! Interpreter for Prisma 7 query plans, the core of tidepool's Prisma Accelerate-compatible API.
//!
//! Prisma ORM 7 (and 6.16+ with `engineType = "client"`) compiles every operation into a *query
//! plan* and, when given an `accelerateUrl`, POSTs it to `/query` or `/transaction/{id}/query`.
//! This crate parses those bodies, evaluates the plan against a database the host provides,
//! and produces the JSON body Prisma's own executor (`@prisma/query-plan-executor` 7.10) would
//! return — byte-for-byte where practical. It does no I/O of its own: no HTTP, no sockets, no
//! runtime. The host (tidepool's HTTP front end) owns routing, authentication, interactive
//! transactions and pooling.
//!
//! # Using it
//!
//! ```ignore
//! use tidepool_prisma::{handle_query, Limits, QueryContext};
//!
//! // `conn` implements `tidepool_prisma::Executor` (text-format statements on one connection).
//! let ctx = QueryContext { in_transaction: false, ..Default::default() };
//! let response = handle_query(&mut conn, body_bytes, &ctx, &Limits::default()).await;
//! reply(response.status, "application/json", response.body);
//! ```
//!
//! For more control: [`QueryRequest::parse`] → [`execute`] → [`data_body`] (or
//! [`Error::body_json`] and [`Error::http_status`] on failure).
//!
//! # Public API
//!
//! * Requests: [`QueryRequest`] (`{model?, operation, plan, params, comments?}`), [`RequestBody`]
//!   (single, or a JSON array / `{"batch":[…]}` of requests), [`TransactionOptions`] (body of
//!   `/transaction/start`, with [`TransactionOptions::isolation`]).
//! * Database seam: [`Executor`] (`query`, `execute`, and `begin`/`commit`/`rollback` with
//!   defaults that send SQL), [`Param`], [`Column`], [`Rows`], [`DbError`], [`ServerError`],
//!   [`IsolationLevel`].
//! * Evaluation: [`execute`], [`execute_batch`], [`handle_query`], [`data_body`], [`Limits`],
//!   [`QueryContext`], [`HttpResponse`].
//! * Errors: [`Error`] with [`Error::code`] (P-code), [`Error::http_status`], [`Error::body`].
//! * Values: [`Value`] (JavaScript-semantics JSON) and [`json::parse`].
//!
//! # Node catalogue
//!
//! Pure: `value`, `seq`, `let`, `get`, `getFirstNonEmpty`, `concat`, `sum`, `reverse`, `unique`,
//! `required`, `mapField`, `join`, `dataMap`, `validate`, `if`, `unit`, `diff`,
//! `initializeRecord`, `mapRecord`, `process`. Impure: `query`, `execute` (`rawSql` or
//! `templateSql` with `parameter`/`parameterTuple`/`parameterTupleList` fragments, chunked
//! above [`Limits::max_bind_values`]), and `transaction` (runs the subtree between
//! [`Executor::begin`] and [`Executor::commit`], or inline when already in a transaction).
//! Values may be literals (Prisma 6.19 style), `prisma__type` placeholders and generator calls
//! (7.x style), or the compact `$p`/`$g` forms. Generators: `now` (frozen per request), `uuid`
//! 4/7, `cuid` 1/2, `ulid`, `nanoid`, `product`.
//!
//! # Semantics worth knowing
//!
//! * Parameters are text; by default every parameter has type OID 0 so PostgreSQL infers its type
//!   from the SQL, as `@prisma/adapter-pg` does ([`Limits::typed_params`] opts into OIDs).
//! * Results are decoded from text by column type OID exactly as the adapter converts them
//!   (int8/numeric as strings, timestamps as UTC, bytea as bytes, arrays element-wise); built-in
//!   types Prisma cannot read (`interval`, `point`, …) fail with P2010.
//! * Database errors map to Prisma's codes and `meta` (P2002 with the constraint, P2003, P2011,
//!   P2000, P2034, P2039 fallback; P2010 for raw SQL), with `meta.driverAdapterError` exactly
//!   as Prisma builds it. Interactive-transaction bookkeeping (ids, timeouts, P2028) is the
//!   host's; [`TransactionOptions`] parses the start body and validates the isolation level.
//! * Hostile input cannot panic or recurse without bound: JSON nesting
//!   ([`Limits::max_json_depth`]) and plan nesting ([`Limits::max_plan_depth`]) are capped, and
//!   fetched rows plus the serialised response are capped by [`Limits::max_response_bytes`]
//!   (error P6009).
//! * The session must use `TimeZone=UTC`, `DateStyle=ISO`, `bytea_output=hex`,
//!   `standard_conforming_strings=on` (the host's job), as Prisma's adapter assumes.
//!
//! Not covered: the newest compact *node* encoding (arrays such as `["q", …]`), `lastInsertId`
//! (PostgreSQL never produces one), and the legacy Prisma 5/6 JSON protocol.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod datamap;
pub mod datetime;
mod db;
mod db_error;
mod decimal;
mod decode;
mod encode;
mod error;
mod generators;
mod interp;
pub mod json;
pub mod plan;
mod plan_parse;
mod process;
mod render;
mod request;

pub use db::{Column, DbError, Executor, IsolationLevel, Param, Rows, ServerError};
pub use error::{Error, Result};
pub use generators::Generators;
pub use json::Value;
pub use render::sql_comment;
pub use request::{QueryRequest, RequestBody, TransactionOptions};

/// Resource limits and binding options. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum JSON nesting accepted anywhere (request bodies, JSON columns). Default 128 (real
    /// Prisma plans nest about 35 levels).
    pub max_json_depth: usize,
    /// Maximum plan-node nesting. Default 64 (real plans nest about 15 nodes). Each level costs
    /// a few KiB of stack in debug builds, well under 1 KiB in release.
    pub max_plan_depth: usize,
    /// Maximum bytes fetched from the database and maximum serialised response size; exceeding
    /// it fails with P6009. Default 5 MiB (Accelerate's documented limit).
    pub max_response_bytes: usize,
    /// Bind-parameter limit per statement; larger `chunkable` statements are split, others fail
    /// with P2029. `None` disables chunking. Default `Some(32766)` (Prisma's Postgres default).
    pub max_bind_values: Option<usize>,
    /// Send parameter type OIDs derived from `scalarType` instead of 0. Default `false`.
    pub typed_params: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_json_depth: 128, max_plan_depth: 64, max_response_bytes: 5 * 1024 * 1024, max_bind_values: Some(32766), typed_params: false }
    }
}

/// Per-request settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryContext {
    /// The request runs inside an interactive transaction (`/transaction/{id}/query`):
    /// `transaction` nodes and chunked statements then run inline, without `BEGIN`.
    pub in_transaction: bool,
    /// Freeze `now()` to this instant (ms since the epoch) instead of the first call's clock.
    pub fixed_now_millis: Option<i64>,
}

/// An HTTP response for the host to send (`Content-Type: application/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// The Prisma error code of an error response (also usable as a metric label).
    pub error_code: Option<String>,
}

impl HttpResponse {
    pub fn from_error(e: &Error) -> Self {
        HttpResponse { status: e.http_status(), body: e.body_json(), error_code: Some(e.code().to_owned()) }
    }
}

/// Evaluate a parsed request's plan and return the result value (the response's `data`).
pub async fn execute<E: Executor>(exec: &mut E, request: &QueryRequest, ctx: &QueryContext, limits: &Limits) -> Result<Value> {
    let mut generators = Generators::new(limits.max_response_bytes / 8);
    if let Some(ms) = ctx.fixed_now_millis {
        generators = generators.with_fixed_now(ms);
    }
    let mut interp = interp::Interpreter {
        exec,
        limits,
        params: &request.params,
        scope: Vec::new(),
        generators,
        in_transaction: ctx.in_transaction,
        comment: sql_comment(&request.comments),
        fetched_bytes: 0,
    };
    interp.eval(&request.plan).await
}

/// Evaluate several requests in order, stopping after the first failure. The host decides
/// whether to wrap them in a transaction (call [`Executor::begin`] first and set
/// [`QueryContext::in_transaction`]).
pub async fn execute_batch<E: Executor>(exec: &mut E, requests: &[QueryRequest], ctx: &QueryContext, limits: &Limits) -> Vec<Result<Value>> {
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let result = execute(exec, r, ctx, limits).await;
        let failed = result.is_err();
        out.push(result);
        if failed {
            break;
        }
    }
    out
}

/// Serialise a successful result as `{"data": …}`, enforcing the response size limit.
pub fn data_body(data: &Value, limits: &Limits) -> Result<String> {
    let body = json::object([("data", data.clone())]).to_json();
    if body.len() > limits.max_response_bytes {
        return Err(Error::ResponseTooLarge { limit: limits.max_response_bytes });
    }
    Ok(body)
}

/// Parse, evaluate and serialise one `/query` (or `/transaction/{id}/query`) body.
pub async fn handle_query<E: Executor>(exec: &mut E, body: &[u8], ctx: &QueryContext, limits: &Limits) -> HttpResponse {
    let result = match QueryRequest::parse(body, limits) {
        Ok(request) => execute(exec, &request, ctx, limits).await.and_then(|data| data_body(&data, limits)),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => HttpResponse { status: 200, body, error_code: None },
        Err(e) => HttpResponse::from_error(&e),
    }
}
