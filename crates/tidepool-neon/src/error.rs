//! Errors and how they look on the wire.
//!
//! Every error is answered with JSON. Anything that carries a SQLSTATE must be HTTP 400: the
//! driver only reads the body of a 400 (it throws `NeonDbError` with every field copied); for any
//! other status it throws `Server error (HTTP status N): <body>` and the SQLSTATE is lost.
//!
//! The body has 17 keys in Neon's order; absent fields are `null`, `position` and `line` are
//! strings, and errors that did not come from PostgreSQL have `code` and `severity` set to `""`.
//! The one exception is a cancelled or timed-out query, which Neon answers with only
//! `{"message":"Query cancelled, connection was terminated","code":"08P01"}`.

use http::StatusCode;
use serde::Serialize;

use crate::conn_string::ConnStringError;
use crate::value::ValueError;

/// The fields of a PostgreSQL `ErrorResponse`.
///
/// Build it from the message's `(field type byte, value)` pairs with [`PgErrorFields::from_fields`]
/// or from the raw message body with [`PgErrorFields::parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgErrorFields {
    /// `S`: severity, possibly localized (`ERROR`, `FATAL`, …).
    pub severity: Option<String>,
    /// `V`: severity, never localized.
    pub severity_nonlocalized: Option<String>,
    /// `C`: SQLSTATE.
    pub code: Option<String>,
    /// `M`: primary message.
    pub message: Option<String>,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `P`: cursor position in the query (decimal text).
    pub position: Option<String>,
    /// `p`: cursor position in an internally generated query.
    pub internal_position: Option<String>,
    /// `q`: the internally generated query.
    pub internal_query: Option<String>,
    /// `W`: context ("where").
    pub where_: Option<String>,
    /// `s`: schema name.
    pub schema: Option<String>,
    /// `t`: table name.
    pub table: Option<String>,
    /// `c`: column name.
    pub column: Option<String>,
    /// `d`: data type name.
    pub data_type: Option<String>,
    /// `n`: constraint name.
    pub constraint: Option<String>,
    /// `F`: source file.
    pub file: Option<String>,
    /// `L`: source line (decimal text).
    pub line: Option<String>,
    /// `R`: source routine.
    pub routine: Option<String>,
}

/// An `ErrorResponse` body that is not a sequence of NUL-terminated fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ErrorResponse: {0}")]
pub struct MalformedErrorResponse(&'static str);

impl PgErrorFields {
    /// An error with the three fields PostgreSQL always sends.
    pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            severity: Some(severity.to_owned()),
            severity_nonlocalized: Some(severity.to_owned()),
            code: Some(code.to_owned()),
            message: Some(message.into()),
            ..Self::default()
        }
    }

    /// What PostgreSQL answers when one query string holds several statements in the extended
    /// protocol (`select 1; select 2`). The host normally relays PostgreSQL's own error; this is
    /// for hosts that detect the case themselves.
    pub fn multiple_statements() -> Self {
        Self::new("ERROR", "42601", "cannot insert multiple commands into a prepared statement")
    }

    /// Collects fields from `(field type, value)` pairs; unknown types are ignored and a repeated
    /// type keeps its last value.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (u8, &'a str)>) -> Self {
        let mut e = Self::default();
        for (kind, value) in fields {
            let slot = match kind {
                b'S' => &mut e.severity,
                b'V' => &mut e.severity_nonlocalized,
                b'C' => &mut e.code,
                b'M' => &mut e.message,
                b'D' => &mut e.detail,
                b'H' => &mut e.hint,
                b'P' => &mut e.position,
                b'p' => &mut e.internal_position,
                b'q' => &mut e.internal_query,
                b'W' => &mut e.where_,
                b's' => &mut e.schema,
                b't' => &mut e.table,
                b'c' => &mut e.column,
                b'd' => &mut e.data_type,
                b'n' => &mut e.constraint,
                b'F' => &mut e.file,
                b'L' => &mut e.line,
                b'R' => &mut e.routine,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        e
    }

    /// Parses the body of an `ErrorResponse` (or `NoticeResponse`) message: everything after the
    /// type byte and the length. Values that are not UTF-8 are decoded lossily.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedErrorResponse> {
        let mut fields = Vec::new();
        let mut rest = body;
        loop {
            let (&kind, after) = rest.split_first().ok_or(MalformedErrorResponse("missing terminator"))?;
            if kind == 0 {
                break;
            }
            let end = after.iter().position(|&b| b == 0).ok_or(MalformedErrorResponse("unterminated field"))?;
            fields.push((kind, String::from_utf8_lossy(&after[..end])));
            rest = &after[end + 1..];
        }
        Ok(Self::from_fields(fields.iter().map(|(k, v)| (*k, v.as_ref()))))
    }

    fn body<'a>(&'a self, fallback_message: &'a str) -> ErrorBody<'a> {
        // Like tokio-postgres (whose parsed error Neon serialises): a `P` position wins and hides
        // `p`/`q`.
        let (position, internal_position, internal_query) = match &self.position {
            Some(p) => (Some(p.as_str()), None, None),
            None => (None, self.internal_position.as_deref(), self.internal_query.as_deref()),
        };
        ErrorBody {
            message: self.message.as_deref().unwrap_or(fallback_message),
            code: self.code.as_deref().unwrap_or(""),
            detail: self.detail.as_deref(),
            hint: self.hint.as_deref(),
            position,
            internal_position,
            internal_query,
            severity: self.severity.as_deref().or(self.severity_nonlocalized.as_deref()).unwrap_or(""),
            where_: self.where_.as_deref(),
            table: self.table.as_deref(),
            column: self.column.as_deref(),
            schema: self.schema.as_deref(),
            data_type: self.data_type.as_deref(),
            constraint: self.constraint.as_deref(),
            file: self.file.as_deref(),
            line: self.line.as_deref(),
            routine: self.routine.as_deref(),
        }
    }
}

/// The 17-key error body, in Neon's key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    message: &'a str,
    code: &'a str,
    detail: Option<&'a str>,
    hint: Option<&'a str>,
    position: Option<&'a str>,
    internal_position: Option<&'a str>,
    internal_query: Option<&'a str>,
    severity: &'a str,
    #[serde(rename = "where")]
    where_: Option<&'a str>,
    table: Option<&'a str>,
    column: Option<&'a str>,
    schema: Option<&'a str>,
    data_type: Option<&'a str>,
    constraint: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<&'a str>,
    routine: Option<&'a str>,
}

/// The body of a cancelled query.
#[derive(Serialize)]
struct CancelledBody<'a> {
    message: &'a str,
    code: &'a str,
}

/// The credential a request lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequiredCredential {
    /// A password in the connection string.
    #[error("required password")]
    Password,
    /// An `Authorization: Bearer <token>` header.
    #[error("required authorization bearer token in JWT format")]
    BearerToken,
}

/// Why the result could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body grew past the response limit.
    #[error("response is too large (max is {limit} bytes)")]
    ResponseTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A value PostgreSQL should never produce for its type.
    #[error("column {column}: {source}")]
    InvalidValue {
        /// Zero-based column index.
        column: usize,
        /// What was wrong with it.
        source: ValueError,
    },
    /// A row with a different number of values than there are fields.
    #[error("row has {got} values but the statement has {expected} fields")]
    ColumnCountMismatch {
        /// Number of fields.
        expected: usize,
        /// Number of values in the row.
        got: usize,
    },
    /// The encoder was used out of order (a statement left unfinished, or a single-statement
    /// response with other than one statement). A bug in the host.
    #[error("response encoder misuse: {0}")]
    Misuse(&'static str),
}

/// Everything that can go wrong with a `/sql` request, with its HTTP status and JSON body.
///
/// `Display` is the message the client sees.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NeonError {
    /// A required header is missing or not visible ASCII (the header name, lowercase).
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
    /// `Neon-Connection-String` could not be used.
    #[error(transparent)]
    ConnectionString(#[from] ConnStringError),
    /// No password and no bearer token (or the host refuses the kind that was sent).
    #[error("missing authentication credentials: {0}")]
    MissingCredentials(RequiredCredential),
    /// `Neon-Batch-Isolation-Level` is not one of the four level names.
    #[error("invalid isolation level")]
    InvalidIsolationLevel,
    /// The body exceeds the request limit (HTTP 413).
    #[error("request is too large (max is {limit} bytes)")]
    RequestTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within the host's body read timeout (HTTP 408).
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// The body is not a valid `{query, params}` / `{queries}` JSON document.
    #[error("could not parse the HTTP request body: {0}")]
    InvalidBody(String),
    /// An error reported by PostgreSQL; relayed with all its fields.
    #[error("{}", .0.message.as_deref().unwrap_or("unknown postgres error"))]
    Postgres(Box<PgErrorFields>),
    /// tidepool rejected the password itself (SQLSTATE 28P01, as PostgreSQL would).
    #[error("password authentication failed for user \"{user}\"")]
    AuthenticationFailed {
        /// The role name from the connection string.
        user: String,
    },
    /// The query timed out or the client went away: HTTP 400 with code 08P01.
    #[error("Query cancelled, connection was terminated")]
    Cancelled,
    /// The response grew past the response limit (HTTP 507).
    #[error("response is too large (max is {limit} bytes)")]
    ResponseTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// PostgreSQL sent a value that could not be converted (HTTP 500). The detail is for logs.
    #[error("could not parse postgres response")]
    InvalidResult {
        /// What went wrong, for logs only.
        detail: String,
    },
    /// Any other server-side failure (HTTP 500). The message is shown to the client.
    #[error("{0}")]
    Internal(String),
    /// The server cannot take the request now, e.g. shutting down or no upstream capacity
    /// (HTTP 503). The message is shown to the client.
    #[error("{0}")]
    Unavailable(String),
    /// A method or path other than `POST /sql` / `OPTIONS /sql`.
    #[error("query is not supported")]
    UnsupportedRoute,
}

impl From<EncodeError> for NeonError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::ResponseTooLarge { limit } => Self::ResponseTooLarge { limit },
            other => Self::InvalidResult { detail: other.to_string() },
        }
    }
}

impl From<PgErrorFields> for NeonError {
    fn from(e: PgErrorFields) -> Self {
        Self::Postgres(Box::new(e))
    }
}

impl NeonError {
    /// The HTTP status Neon uses for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ResponseTooLarge { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Self::InvalidResult { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidHeader(_)
            | Self::ConnectionString(_)
            | Self::MissingCredentials(_)
            | Self::InvalidIsolationLevel
            | Self::InvalidBody(_)
            | Self::Postgres(_)
            | Self::AuthenticationFailed { .. }
            | Self::Cancelled
            | Self::UnsupportedRoute => StatusCode::BAD_REQUEST,
        }
    }

    /// The SQLSTATE the client will see, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Postgres(e) => e.code.as_deref(),
            Self::AuthenticationFailed { .. } => Some("28P01"),
            Self::Cancelled => Some("08P01"),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let message = self.to_string();
        let encoded = match self {
            Self::Cancelled => serde_json::to_vec(&CancelledBody { message: &message, code: "08P01" }),
            Self::Postgres(fields) => serde_json::to_vec(&fields.body(&message)),
            Self::AuthenticationFailed { .. } => {
                let fields = PgErrorFields::new("FATAL", "28P01", message.clone());
                serde_json::to_vec(&fields.body(&message))
            }
            _ => serde_json::to_vec(&PgErrorFields::default().body(&message)),
        };
        // Serialising a struct of strings and options into a Vec cannot fail.
        encoded.unwrap_or_else(|_| br#"{"message":"internal error"}"#.to_vec())
    }
}

#[cfg(test)]
mod tests;
