//! The crate's error type and its mapping to Prisma error codes, HTTP statuses and bodies.
//!
//! | Variant | HTTP | Body |
//! |---|---|---|
//! | [`Error::InvalidRequest`] (unparsable body, unknown node, depth limit) | 400 | `{"code":"P6000","error":…}` |
//! | [`Error::InvalidPlan`] (missing placeholder value, malformed template, bad generator call) | 400 | `{"code":"P6000","error":…}` |
//! | [`Error::Known`] (P1xxx/P2xxx from the database or from `validate`/`dataMap`) | 400 | `{"code","error","meta"}` |
//! | [`Error::ResponseTooLarge`] | 413 | `{"code":"P6009","error":…}` |
//! | [`Error::Internal`] (engine assertions such as `unique` over 2 rows) | 500 | `{"code":"P6000","error":…}` |
//!
//! The Prisma client reads `code`, `error` and `meta` from any non-2xx response, so the exact
//! status only needs to be non-2xx; the choices follow Prisma's reference executor (400 for
//! user-facing errors, 500 for the rest) except that client-caused plan errors are 400.

use crate::json::{object, Value};

/// Everything that can go wrong while parsing or interpreting a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request body is not valid JSON or not a valid query request / plan.
    #[error("{0}")]
    InvalidRequest(String),
    /// The plan is well-formed JSON but cannot be evaluated (client-side bug or hostile input).
    #[error("{0}")]
    InvalidPlan(String),
    /// A Prisma user-facing error with a P-code (database errors, validation, data mapping).
    #[error("{message}")]
    Known { code: String, message: String, meta: Value },
    /// The serialised result would exceed the configured byte limit.
    #[error("The response size of the query exceeded the maximum of {limit} bytes.")]
    ResponseTooLarge { limit: usize },
    /// An engine invariant failed (what Prisma reports as a plain 500 error).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn known(code: &str, message: impl Into<String>, meta: Value) -> Self {
        Error::Known { code: code.to_owned(), message: message.into(), meta }
    }

    pub(crate) fn plan(message: impl Into<String>) -> Self {
        Error::InvalidPlan(message.into())
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// P2029: a statement needs more bind parameters than the database accepts (Prisma's
    /// own limit for chunkable templates, or the wire protocol's 65,535 for the executor).
    pub(crate) fn parameter_limit() -> Self {
        Error::known("P2029", "The query parameter limit supported by your database is exceeded.", Value::Object(Default::default()))
    }

    /// P2023, the data mapper's error code.
    pub(crate) fn data_mapper(message: impl Into<String>) -> Self {
        Error::known("P2023", message, Value::Object(Default::default()))
    }

    /// The Prisma error code reported to the client.
    pub fn code(&self) -> &str {
        match self {
            Error::Known { code, .. } => code,
            Error::ResponseTooLarge { .. } => "P6009",
            Error::InvalidRequest(_) | Error::InvalidPlan(_) | Error::Internal(_) => "P6000",
        }
    }

    /// HTTP status for the error response.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) | Error::InvalidPlan(_) | Error::Known { .. } => 400,
            Error::ResponseTooLarge { .. } => 413,
            Error::Internal(_) => 500,
        }
    }

    /// The `meta` object, if the error has one.
    pub fn meta(&self) -> Option<&Value> {
        match self {
            Error::Known { meta, .. } => Some(meta),
            _ => None,
        }
    }

    /// The JSON error body: `{"code","error","meta"?}`.
    pub fn body(&self) -> Value {
        let mut pairs = vec![("code", Value::from(self.code())), ("error", Value::from(self.to_string()))];
        if let Some(meta) = self.meta() {
            pairs.push(("meta", meta.clone()));
        }
        object(pairs)
    }

    /// The JSON error body as text.
    pub fn body_json(&self) -> String {
        self.body().to_json()
    }
}

impl From<crate::json::JsonError> for Error {
    fn from(e: crate::json::JsonError) -> Self {
        Error::InvalidRequest(format!("Invalid request body: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
