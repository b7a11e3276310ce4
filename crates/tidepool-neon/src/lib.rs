//! Sans-IO codec for the SQL-over-HTTP protocol of Neon's serverless driver
//! (`@neondatabase/serverless`: `neon()`, `sql.transaction()`, `Pool` with `poolQueryViaFetch`).
//!
//! The crate turns a `POST /sql` request into typed statements and turns the host's text-format
//! results or errors into the exact JSON Neon's proxy returns. It does no I/O: the host reads the
//! body, authenticates, runs the statements on a pooled connection and passes rows back in.
//! Postgres-over-WebSocket needs nothing from here (it is the ordinary Postgres protocol in binary
//! frames).
//!
//! # Flow
//!
//! 1. [`check_content_length`] (optional, before reading the body), then
//!    [`parse_request`]`(headers, body, limits)` → [`SqlRequest`]: the
//!    [`ConnectionString`] (user, password, database; host ignored), [`Credentials`] (password or
//!    `Authorization: Bearer`), [`RequestOptions`] (`Neon-Raw-Text-Output`, `Neon-Array-Mode`,
//!    the `Neon-Batch-*` headers) and the [`Payload`] (one [`Statement`] or a batch). JSON
//!    parameters are already converted to text ([`json_param_to_text`]).
//! 2. The host authenticates ([`Credentials`]) and checks out a connection for the user and
//!    database. For each statement it uses the extended protocol: `Parse` (unnamed, no parameter
//!    types) / `Bind` (text parameters, **text result format for all columns**) / `Describe` /
//!    `Execute` / `Sync`. A batch runs inside [`BatchOptions::begin_sql`] … `COMMIT`, on one
//!    connection; on any error it rolls back and returns that error alone.
//! 3. Results go through a [`ResponseEncoder`] ([`ResponseEncoder::single`] or
//!    [`ResponseEncoder::batch`]): [`ResponseEncoder::statement`] with the `RowDescription`
//!    ([`Field`]s) and [`SqlRequest::output_for`], [`StatementEncoder::push_row`] per `DataRow`,
//!    [`StatementEncoder::finish`] with the `CommandComplete` tag. The response cap
//!    ([`Limits::max_response_bytes`]) is checked after every row. [`encode_results`] does the same
//!    for results collected in memory.
//! 4. [`success_response`] wraps the body (status 200, `Content-Type: application/json`,
//!    `Access-Control-Allow-Origin: *`, batch headers echoed). Failures become a [`NeonError`]:
//!    PostgreSQL's `ErrorResponse` via [`PgErrorFields`] (HTTP 400 with all 17 fields, which the
//!    driver copies onto `NeonDbError`), and the rest with their own status; send
//!    [`error_response`]. `OPTIONS /sql` gets [`preflight_response`].
//!
//! ```
//! use http::HeaderMap;
//! use tidepool_neon::*;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(CONNECTION_STRING, "postgresql://alice:s3cret@db.example/app".parse().unwrap());
//! headers.insert(RAW_TEXT_OUTPUT, "true".parse().unwrap());
//! headers.insert(ARRAY_MODE, "true".parse().unwrap());
//! let body = br#"{"query":"SELECT $1::int8 AS n","params":[42]}"#;
//!
//! let request = parse_request(&headers, body, &Limits::default())?;
//! assert_eq!(request.connection.user, "alice");
//! let statement = &request.statements()[0];
//! assert_eq!(statement.params, vec![Some("42".to_owned())]);
//!
//! // … run it; the host got RowDescription, one DataRow and "SELECT 1" …
//! let mut response = ResponseEncoder::single(Limits::default().max_response_bytes);
//! let mut rows = response.statement(&[Field::new("n", 20)], request.output_for(statement))?;
//! rows.push_row(&[Some("42")])?;
//! rows.finish(Some("SELECT 1"))?;
//! let http_response = success_response(&request, response.finish()?);
//! assert!(String::from_utf8_lossy(http_response.body()).contains(r#""rows":[["42"]]"#));
//! # Ok::<(), NeonError>(())
//! ```
//!
//! # Value encoding
//!
//! With `Neon-Raw-Text-Output: true` (always sent by the JS driver) every non-NULL value is a
//! JSON string of PostgreSQL's text output and the driver parses it by `dataTypeID`. Otherwise
//! (curl, other clients) values are converted as Neon does: `int2`/`int4` numbers, `int8` and
//! `numeric` strings, finite `float4`/`float8` numbers and `"NaN"`/`"Infinity"`/`"-Infinity"`
//! strings, `bool` true/false, `json`/`jsonb` spliced in, arrays parsed into JSON arrays, all else
//! strings. NULL is always `null`.
//!
//! # Where this differs from Neon (deliberately)
//!
//! * `{}` (an empty array) in JSON mode is `[]`; Neon's parser yields `[""]` or fails.
//! * `box[]` is split on `;`, its real delimiter; `int2vector`/`oidvector` are sent as text.
//! * Only PostgreSQL's own blanks (space, `\t`, `\n`, `\r`, `\v`, `\f`) are trimmed around
//!   array items; Neon trims all Unicode whitespace and so loses an unquoted leading no-break
//!   space.
//! * Arrays of types this crate does not know (user-defined enums, domains) are sent as their
//!   literal text in JSON mode; Neon looks the type up and parses them.
//! * JSON parameters keep their number text and key order; strings inside array parameters are
//!   quoted the PostgreSQL way (only `"` and `\` escaped) rather than as JSON strings, so control
//!   characters survive.
//! * `params: null` is rejected (as in Neon), but a body with both `query` and `queries` is a
//!   single statement (Neon's untagged enum behaves the same when the single form is valid).

#![deny(unsafe_code)]
#![warn(missing_docs, clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod conn_string;
mod encode;
mod error;
mod options;
mod params;
mod request;
mod response;
mod types;
mod value;

pub use conn_string::{ConnStringError, ConnectionString, Password, FORWARDED_PARAMS};
pub use encode::{encode_results, parse_command_tag, Field, ResponseEncoder, StatementEncoder, StatementResult};
pub use error::{EncodeError, MalformedErrorResponse, NeonError, PgErrorFields, RequiredCredential};
pub use options::{
    BatchOptions, IsolationLevel, OutputOptions, RequestOptions, ARRAY_MODE, BATCH_DEFERRABLE, BATCH_ISOLATION_LEVEL, BATCH_READ_ONLY, CONNECTION_STRING,
    POOL_OPT_IN, RAW_TEXT_OUTPUT,
};
pub use params::{json_param_to_text, MAX_PARAM_ARRAY_DEPTH};
pub use request::{
    check_content_length, connection_string, parse_payload, parse_request, BearerToken, Credentials, Limits, Payload, SqlRequest, Statement, DEFAULT_MAX_BYTES,
};
pub use response::{error_response, preflight_response, success_response, CORS_ALLOW_HEADERS};
pub use types::{array_element, oid};
pub use value::ValueError;
