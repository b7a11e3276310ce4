//! The database seam: what the host implements so the interpreter can reach PostgreSQL.
//!
//! Parameters and results travel in PostgreSQL's **text format**. The host runs each statement
//! over the extended protocol (Parse with [`Param::type_oid`] as the parameter type, `0` meaning
//! "let the server infer it", Bind with text values, Describe, Execute) and hands back the row
//! description's type OIDs so the interpreter can decode values exactly as
//! `@prisma/adapter-pg` would.
//!
//! Transactions go through the same trait: [`Executor::begin`] is called before the first
//! statement of a `transaction` plan node or of a chunked statement (outside an interactive
//! transaction), then [`Executor::commit`] or [`Executor::rollback`]. A pooled host should pin
//! one upstream connection between `begin` and `commit`/`rollback`. The default
//! implementations send `BEGIN`, `SET TRANSACTION ISOLATION LEVEL …`, `COMMIT` and `ROLLBACK`
//! through [`Executor::execute`].

use std::future::Future;

/// One bind parameter in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter type OID for Parse; `0` lets PostgreSQL infer it (the default, as Prisma does).
    pub type_oid: u32,
    /// Text-format value; `None` is SQL `NULL`.
    pub value: Option<String>,
}

impl Param {
    pub fn text(value: impl Into<String>) -> Self {
        Param { type_oid: 0, value: Some(value.into()) }
    }

    pub fn null() -> Self {
        Param { type_oid: 0, value: None }
    }
}

/// A result column from the RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
}

impl Column {
    pub fn new(name: impl Into<String>, type_oid: u32) -> Self {
        Column { name: name.into(), type_oid }
    }
}

/// A statement's result: columns, text-format rows, and the command tag's row count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
    pub rows_affected: u64,
}

/// Transaction isolation levels Prisma can request for PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl IsolationLevel {
    /// SQL spelling, e.g. `READ COMMITTED`.
    pub fn as_sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }

    /// Parse the wire spelling used in `/transaction/start` (`"READ COMMITTED"`, …), also
    /// accepting Prisma's enum spelling (`ReadCommitted`). `SNAPSHOT` is not valid for Postgres.
    pub fn parse(text: &str) -> Option<Self> {
        let norm: String = text.chars().filter(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase();
        match norm.as_str() {
            "READUNCOMMITTED" => Some(IsolationLevel::ReadUncommitted),
            "READCOMMITTED" => Some(IsolationLevel::ReadCommitted),
            "REPEATABLEREAD" => Some(IsolationLevel::RepeatableRead),
            "SERIALIZABLE" => Some(IsolationLevel::Serializable),
            _ => None,
        }
    }
}

/// Fields of a PostgreSQL ErrorResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// SQLSTATE (`C` field), e.g. `23505`.
    pub code: String,
    /// Primary message (`M`).
    pub message: String,
    /// Severity (`V`, non-localised), e.g. `ERROR`.
    pub severity: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl ServerError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError { code: code.into(), message: message.into(), severity: Some("ERROR".into()), ..Default::default() }
    }
}

/// A failure reported by the host's executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL answered with an ErrorResponse.
    #[error("{}", .0.message)]
    Server(Box<ServerError>),
    /// The connection was closed or reset mid-statement (Prisma P1017).
    #[error("connection closed")]
    ConnectionClosed,
    /// A socket-level timeout (Prisma P1008).
    #[error("socket timeout")]
    Timeout,
    /// The database could not be reached (Prisma P1001).
    #[error("database not reachable")]
    Unreachable { host: Option<String>, port: Option<u16> },
    /// TLS negotiation failed (Prisma P1011).
    #[error("TLS error: {reason}")]
    Tls { reason: String },
    /// The statement has more parameters than one protocol message can carry (Prisma P2029).
    #[error("too many bind parameters")]
    ParameterLimit,
    /// Anything else; reported as an internal error.
    #[error("{0}")]
    Other(String),
}

impl From<ServerError> for DbError {
    fn from(e: ServerError) -> Self {
        DbError::Server(Box::new(e))
    }
}

/// Database access provided by the host. Futures must be `Send` so the interpreter can run on
/// a multi-threaded runtime.
pub trait Executor: Send {
    /// Run a statement that returns rows.
    fn query(&mut self, sql: &str, params: &[Param]) -> impl Future<Output = Result<Rows, DbError>> + Send;

    /// Run a statement for its affected-row count (command tag; `0` when absent).
    fn execute(&mut self, sql: &str, params: &[Param]) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// Start a transaction (pin the connection until `commit`/`rollback`).
    fn begin(&mut self, isolation: Option<IsolationLevel>) -> impl Future<Output = Result<(), DbError>> + Send {
        async move {
            self.execute("BEGIN", &[]).await?;
            if let Some(level) = isolation {
                let sql = format!("SET TRANSACTION ISOLATION LEVEL {}", level.as_sql());
                self.execute(&sql, &[]).await?;
            }
            Ok(())
        }
    }

    /// Commit the transaction started by [`Executor::begin`].
    fn commit(&mut self) -> impl Future<Output = Result<(), DbError>> + Send {
        async move { self.execute("COMMIT", &[]).await.map(|_| ()) }
    }

    /// Roll back the transaction started by [`Executor::begin`].
    fn rollback(&mut self) -> impl Future<Output = Result<(), DbError>> + Send {
        async move { self.execute("ROLLBACK", &[]).await.map(|_| ()) }
    }
}
