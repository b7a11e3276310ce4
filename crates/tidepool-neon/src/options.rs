//! The `Neon-*` option headers and what they turn into.
//!
//! Only the exact value `true` switches a boolean header on, as in Neon's proxy; anything else
//! (including `True` or `1`) counts as false.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::NeonError;

/// `Neon-Connection-String`: `postgres://user:password@host/db?…` (required).
pub const CONNECTION_STRING: HeaderName = HeaderName::from_static("neon-connection-string");
/// `Neon-Raw-Text-Output`: `true` → every value as its PostgreSQL text.
pub const RAW_TEXT_OUTPUT: HeaderName = HeaderName::from_static("neon-raw-text-output");
/// `Neon-Array-Mode`: `true` → rows are arrays instead of objects.
pub const ARRAY_MODE: HeaderName = HeaderName::from_static("neon-array-mode");
/// `Neon-Batch-Isolation-Level`: `Serializable`, `ReadUncommitted`, `ReadCommitted`, `RepeatableRead`.
pub const BATCH_ISOLATION_LEVEL: HeaderName = HeaderName::from_static("neon-batch-isolation-level");
/// `Neon-Batch-Read-Only`: `true` → `READ ONLY` batch transaction.
pub const BATCH_READ_ONLY: HeaderName = HeaderName::from_static("neon-batch-read-only");
/// `Neon-Batch-Deferrable`: `true` → `DEFERRABLE` batch transaction.
pub const BATCH_DEFERRABLE: HeaderName = HeaderName::from_static("neon-batch-deferrable");
/// `Neon-Pool-Opt-In`: accepted and ignored (tidepool always pools).
pub const POOL_OPT_IN: HeaderName = HeaderName::from_static("neon-pool-opt-in");

/// Transaction isolation level of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED`
    ReadUncommitted,
    /// `READ COMMITTED`
    ReadCommitted,
    /// `REPEATABLE READ`
    RepeatableRead,
    /// `SERIALIZABLE`
    Serializable,
}

impl IsolationLevel {
    /// Parses the header value; the names are case-sensitive.
    pub fn from_header(value: &[u8]) -> Option<Self> {
        match value {
            b"ReadUncommitted" => Some(Self::ReadUncommitted),
            b"ReadCommitted" => Some(Self::ReadCommitted),
            b"RepeatableRead" => Some(Self::RepeatableRead),
            b"Serializable" => Some(Self::Serializable),
            _ => None,
        }
    }

    /// The header spelling, echoed in batch responses.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "ReadUncommitted",
            Self::ReadCommitted => "ReadCommitted",
            Self::RepeatableRead => "RepeatableRead",
            Self::Serializable => "Serializable",
        }
    }

    /// The SQL spelling.
    pub fn sql(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "READ UNCOMMITTED",
            Self::ReadCommitted => "READ COMMITTED",
            Self::RepeatableRead => "REPEATABLE READ",
            Self::Serializable => "SERIALIZABLE",
        }
    }
}

/// How a batch's transaction is started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOptions {
    /// From `Neon-Batch-Isolation-Level`; `None` = the server default.
    pub isolation_level: Option<IsolationLevel>,
    /// `Neon-Batch-Read-Only: true`.
    pub read_only: bool,
    /// `Neon-Batch-Deferrable: true`.
    pub deferrable: bool,
}

impl BatchOptions {
    /// The statement that opens the batch transaction, e.g.
    /// `START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE`
    /// (plain `START TRANSACTION` without options). Run it with the simple protocol, then each
    /// statement, then `COMMIT` (or `ROLLBACK` after any error).
    pub fn begin_sql(&self) -> String {
        let mut modes = Vec::with_capacity(3);
        if let Some(level) = self.isolation_level {
            modes.push(format!("ISOLATION LEVEL {}", level.sql()));
        }
        if self.read_only {
            modes.push("READ ONLY".to_owned());
        }
        if self.deferrable {
            modes.push("DEFERRABLE".to_owned());
        }
        if modes.is_empty() {
            "START TRANSACTION".to_owned()
        } else {
            format!("START TRANSACTION {}", modes.join(", "))
        }
    }

    /// Adds the headers Neon echoes on a successful batch response.
    pub fn write_response_headers(&self, headers: &mut HeaderMap) {
        let yes = HeaderValue::from_static("true");
        if self.read_only {
            headers.insert(BATCH_READ_ONLY, yes.clone());
        }
        if self.deferrable {
            headers.insert(BATCH_DEFERRABLE, yes);
        }
        if let Some(level) = self.isolation_level {
            headers.insert(BATCH_ISOLATION_LEVEL, HeaderValue::from_static(level.header_value()));
        }
    }
}

/// How values and rows of one statement are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Raw text mode: every non-NULL value is a JSON string of its PostgreSQL text.
    pub raw_text: bool,
    /// Rows are JSON arrays (`true`) or objects keyed by column name (`false`).
    pub array_mode: bool,
}

/// The option headers of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// `Neon-Raw-Text-Output: true` (the JS driver always sends it).
    pub raw_text_output: bool,
    /// `Neon-Array-Mode: true`; a statement's `arrayMode` overrides it.
    pub array_mode: bool,
    /// The batch transaction options (used only for `{queries: …}` bodies).
    pub batch: BatchOptions,
}

impl RequestOptions {
    /// Reads the option headers. Fails only on an unknown isolation level.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, NeonError> {
        let is_true = |name: &HeaderName| headers.get(name).is_some_and(|v| v.as_bytes() == b"true");
        let isolation_level = match headers.get(BATCH_ISOLATION_LEVEL) {
            Some(value) => Some(IsolationLevel::from_header(value.as_bytes()).ok_or(NeonError::InvalidIsolationLevel)?),
            None => None,
        };
        Ok(Self {
            raw_text_output: is_true(&RAW_TEXT_OUTPUT),
            array_mode: is_true(&ARRAY_MODE),
            batch: BatchOptions { isolation_level, read_only: is_true(&BATCH_READ_ONLY), deferrable: is_true(&BATCH_DEFERRABLE) },
        })
    }

    /// Output options for a statement whose body may carry its own `arrayMode`.
    pub fn output(&self, statement_array_mode: Option<bool>) -> OutputOptions {
        OutputOptions { raw_text: self.raw_text_output, array_mode: statement_array_mode.unwrap_or(self.array_mode) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert((*name).clone(), HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    #[test]
    fn defaults_are_off() {
        let o = RequestOptions::from_headers(&HeaderMap::new()).expect("ok");
        assert_eq!(o, RequestOptions::default());
        assert_eq!(o.batch.begin_sql(), "START TRANSACTION");
    }

    #[test]
    fn only_exact_true_counts() {
        for value in ["True", "TRUE", "1", "yes", "true ", ""] {
            let o = RequestOptions::from_headers(&headers(&[
                (&RAW_TEXT_OUTPUT, value),
                (&ARRAY_MODE, value),
                (&BATCH_READ_ONLY, value),
                (&BATCH_DEFERRABLE, value),
            ]))
            .expect("ok");
            assert_eq!(o, RequestOptions::default(), "{value:?}");
        }
        let o = RequestOptions::from_headers(&headers(&[
            (&RAW_TEXT_OUTPUT, "true"),
            (&ARRAY_MODE, "true"),
            (&BATCH_READ_ONLY, "true"),
            (&BATCH_DEFERRABLE, "true"),
        ]))
        .expect("ok");
        assert!(o.raw_text_output && o.array_mode && o.batch.read_only && o.batch.deferrable);
    }

    #[test]
    fn isolation_levels() {
        for (value, level, sql) in [
            ("Serializable", IsolationLevel::Serializable, "SERIALIZABLE"),
            ("ReadUncommitted", IsolationLevel::ReadUncommitted, "READ UNCOMMITTED"),
            ("ReadCommitted", IsolationLevel::ReadCommitted, "READ COMMITTED"),
            ("RepeatableRead", IsolationLevel::RepeatableRead, "REPEATABLE READ"),
        ] {
            let o = RequestOptions::from_headers(&headers(&[(&BATCH_ISOLATION_LEVEL, value)])).expect("ok");
            assert_eq!(o.batch.isolation_level, Some(level));
            assert_eq!(level.header_value(), value);
            assert_eq!(o.batch.begin_sql(), format!("START TRANSACTION ISOLATION LEVEL {sql}"));
        }
        for bad in ["serializable", "SERIALIZABLE", "Read Committed", "", "Snapshot"] {
            let err = RequestOptions::from_headers(&headers(&[(&BATCH_ISOLATION_LEVEL, bad)])).expect_err(bad);
            assert!(matches!(err, NeonError::InvalidIsolationLevel));
            assert_eq!(err.to_string(), "invalid isolation level");
        }
    }

    #[test]
    fn begin_sql_combinations() {
        let all = BatchOptions { isolation_level: Some(IsolationLevel::Serializable), read_only: true, deferrable: true };
        assert_eq!(all.begin_sql(), "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
        let ro = BatchOptions { read_only: true, ..BatchOptions::default() };
        assert_eq!(ro.begin_sql(), "START TRANSACTION READ ONLY");
        let d = BatchOptions { deferrable: true, ..BatchOptions::default() };
        assert_eq!(d.begin_sql(), "START TRANSACTION DEFERRABLE");
    }

    #[test]
    fn batch_response_headers_echo_only_what_is_set() {
        let mut h = HeaderMap::new();
        BatchOptions::default().write_response_headers(&mut h);
        assert!(h.is_empty());

        let mut h = HeaderMap::new();
        BatchOptions { isolation_level: Some(IsolationLevel::RepeatableRead), read_only: true, deferrable: false }.write_response_headers(&mut h);
        assert_eq!(h.get(BATCH_ISOLATION_LEVEL).map(HeaderValue::as_bytes), Some(&b"RepeatableRead"[..]));
        assert_eq!(h.get(BATCH_READ_ONLY).map(HeaderValue::as_bytes), Some(&b"true"[..]));
        assert!(h.get(BATCH_DEFERRABLE).is_none());
    }

    #[test]
    fn statement_array_mode_overrides_header() {
        let o = RequestOptions { raw_text_output: true, array_mode: true, ..Default::default() };
        assert_eq!(o.output(None), OutputOptions { raw_text: true, array_mode: true });
        assert_eq!(o.output(Some(false)), OutputOptions { raw_text: true, array_mode: false });
    }
}
