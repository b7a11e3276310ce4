//! A `POST /sql` request: headers + body → [`SqlRequest`].

use std::fmt;

use http::header::{AUTHORIZATION, CONTENT_LENGTH};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::conn_string::{ConnectionString, Password};
use crate::error::{NeonError, RequiredCredential};
use crate::options::{OutputOptions, RequestOptions, CONNECTION_STRING};
use crate::params::json_param_to_text;

/// Neon's default cap on request and response bodies: 10 MiB.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// Size limits. Both default to [`DEFAULT_MAX_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, checked before parsing (HTTP 413 beyond it).
    pub max_request_bytes: usize,
    /// Largest response body, checked while encoding (HTTP 507 beyond it).
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_request_bytes: DEFAULT_MAX_BYTES, max_response_bytes: DEFAULT_MAX_BYTES }
    }
}

/// A bearer token from `Authorization: Bearer …`. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// What the client authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The password from the connection string (what the JS driver sends).
    Password(Password),
    /// An `Authorization: Bearer` token (the driver's `authToken` option; Neon's JWT mode).
    /// When present it takes the place of the password; the host decides whether to accept it
    /// (Neon without JWT support answers [`NeonError::MissingCredentials`] with
    /// [`RequiredCredential::Password`]).
    BearerToken(BearerToken),
}

impl Credentials {
    /// Reads `Authorization`, falling back to the connection string's password.
    pub fn from_headers(headers: &HeaderMap, connection: &ConnectionString) -> Result<Self, NeonError> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let value = value.to_str().map_err(|_| NeonError::InvalidHeader("authorization"))?;
            let token = value.strip_prefix("Bearer ").ok_or(NeonError::MissingCredentials(RequiredCredential::BearerToken))?;
            return Ok(Self::BearerToken(BearerToken(token.to_owned())));
        }
        connection.password.clone().map(Self::Password).ok_or(NeonError::MissingCredentials(RequiredCredential::Password))
    }
}

/// One statement of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text: exactly one statement, run with the extended protocol (unnamed statement,
    /// no parameter type OIDs, text parameters, text results).
    pub query: String,
    /// Parameters in text format; `None` is SQL NULL.
    pub params: Vec<Option<String>>,
    /// Per-statement `arrayMode`, overriding `Neon-Array-Mode`.
    pub array_mode: Option<bool>,
}

/// The body: one statement, or a batch run as one non-interactive transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `{"query": …, "params": […], "arrayMode"?: bool}`
    Single(Statement),
    /// `{"queries": [{…}, …]}`
    Batch(Vec<Statement>),
}

/// A parsed `/sql` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlRequest {
    /// The `Neon-Connection-String`.
    pub connection: ConnectionString,
    /// Password or bearer token.
    pub credentials: Credentials,
    /// Option headers.
    pub options: RequestOptions,
    /// The statements.
    pub payload: Payload,
}

impl SqlRequest {
    /// The statements in order (one for a single-statement request).
    pub fn statements(&self) -> &[Statement] {
        match &self.payload {
            Payload::Single(statement) => std::slice::from_ref(statement),
            Payload::Batch(statements) => statements,
        }
    }

    /// Whether the body was a batch (`{queries: …}`), to be run in one transaction.
    pub fn is_batch(&self) -> bool {
        matches!(self.payload, Payload::Batch(_))
    }

    /// How `statement`'s result is to be written.
    pub fn output_for(&self, statement: &Statement) -> OutputOptions {
        self.options.output(statement.array_mode)
    }
}

/// Parses a complete request. Checks, in Neon's order: the connection string, the credentials,
/// the option headers, the body size, the body.
pub fn parse_request(headers: &HeaderMap, body: &[u8], limits: &Limits) -> Result<SqlRequest, NeonError> {
    let connection = connection_string(headers)?;
    let credentials = Credentials::from_headers(headers, &connection)?;
    let options = RequestOptions::from_headers(headers)?;
    let payload = parse_payload(body, limits)?;
    Ok(SqlRequest { connection, credentials, options, payload })
}

/// Reads and parses `Neon-Connection-String`.
pub fn connection_string(headers: &HeaderMap) -> Result<ConnectionString, NeonError> {
    let value = headers
        .get(CONNECTION_STRING)
        .ok_or(NeonError::InvalidHeader("neon-connection-string"))?
        .to_str()
        .map_err(|_| NeonError::InvalidHeader("neon-connection-string"))?;
    Ok(ConnectionString::parse(value)?)
}

/// Rejects a request early when its `Content-Length` already exceeds the limit, before the body
/// is read. A missing or unparsable `Content-Length` passes; the body check still applies.
pub fn check_content_length(headers: &HeaderMap, limits: &Limits) -> Result<(), NeonError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > limits.max_request_bytes as u64 => Err(NeonError::RequestTooLarge { limit: limits.max_request_bytes }),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BodyRepr<'a> {
    #[serde(default)]
    query: Option<String>,
    #[serde(default, borrow)]
    params: Vec<&'a RawValue>,
    #[serde(default)]
    array_mode: Option<bool>,
    #[serde(default, borrow)]
    queries: Option<Vec<StatementRepr<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementRepr<'a> {
    query: String,
    #[serde(default, borrow)]
    params: Vec<&'a RawValue>,
    #[serde(default)]
    array_mode: Option<bool>,
}

/// Parses the body after checking its size. The `Content-Type` is ignored (the driver sends
/// `text/plain`). A body with `query` is a single statement, otherwise `queries` makes a batch.
pub fn parse_payload(body: &[u8], limits: &Limits) -> Result<Payload, NeonError> {
    if body.len() > limits.max_request_bytes {
        return Err(NeonError::RequestTooLarge { limit: limits.max_request_bytes });
    }
    let invalid = |e: serde_json::Error| NeonError::InvalidBody(e.to_string());
    let repr: BodyRepr<'_> = serde_json::from_slice(body).map_err(invalid)?;
    match (repr.query, repr.queries) {
        (Some(query), _) => Ok(Payload::Single(statement(query, &repr.params, repr.array_mode)?)),
        (None, Some(queries)) => queries.into_iter().map(|s| statement(s.query, &s.params, s.array_mode)).collect::<Result<_, _>>().map(Payload::Batch),
        (None, None) => Err(NeonError::InvalidBody("expected {\"query\": …} or {\"queries\": […]}".to_owned())),
    }
}

fn statement(query: String, params: &[&RawValue], array_mode: Option<bool>) -> Result<Statement, NeonError> {
    let params = params.iter().map(|p| json_param_to_text(p)).collect::<Result<_, _>>().map_err(|e| NeonError::InvalidBody(e.to_string()))?;
    Ok(Statement { query, params, array_mode })
}

#[cfg(test)]
mod tests;
