//! Shared test helpers: a fake [`Executor`] that records every call and replays canned results.
#![allow(dead_code)]

use std::collections::VecDeque;

use tidepool_prisma::{handle_query, Column, DbError, Executor, HttpResponse, IsolationLevel, Limits, Param, QueryContext, Rows};

/// One recorded executor call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Query { sql: String, params: Vec<Param> },
    Execute { sql: String, params: Vec<Param> },
    Begin(Option<IsolationLevel>),
    Commit,
    Rollback,
}

impl Call {
    pub fn sql(&self) -> Option<&str> {
        match self {
            Call::Query { sql, .. } | Call::Execute { sql, .. } => Some(sql),
            _ => None,
        }
    }

    pub fn values(&self) -> Vec<Option<String>> {
        match self {
            Call::Query { params, .. } | Call::Execute { params, .. } => params.iter().map(|p| p.value.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Records calls; `query`/`execute` pop canned results in order (empty rows / 0 when exhausted).
#[derive(Default)]
pub struct Fake {
    pub calls: Vec<Call>,
    pub results: VecDeque<Result<Rows, DbError>>,
    pub fail_commit: Option<DbError>,
}

impl Fake {
    pub fn new(results: Vec<Result<Rows, DbError>>) -> Self {
        Fake { results: results.into(), ..Default::default() }
    }

    pub fn with_rows(rows: Vec<Rows>) -> Self {
        Self::new(rows.into_iter().map(Ok).collect())
    }

    pub fn statements(&self) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.sql().is_some()).collect()
    }
}

impl Executor for Fake {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Rows, DbError> {
        self.calls.push(Call::Query { sql: sql.to_owned(), params: params.to_vec() });
        self.results.pop_front().unwrap_or_else(|| Ok(Rows::default()))
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        self.calls.push(Call::Execute { sql: sql.to_owned(), params: params.to_vec() });
        self.results.pop_front().unwrap_or_else(|| Ok(Rows::default())).map(|r| r.rows_affected)
    }

    async fn begin(&mut self, isolation: Option<IsolationLevel>) -> Result<(), DbError> {
        self.calls.push(Call::Begin(isolation));
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), DbError> {
        self.calls.push(Call::Commit);
        match self.fail_commit.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn rollback(&mut self) -> Result<(), DbError> {
        self.calls.push(Call::Rollback);
        Ok(())
    }
}

/// Build `Rows` from `(name, oid)` columns and text cells (`None` = NULL).
pub fn rows(cols: &[(&str, u32)], data: &[&[Option<&str>]]) -> Rows {
    Rows {
        columns: cols.iter().map(|(n, o)| Column::new(*n, *o)).collect(),
        rows: data.iter().map(|r| r.iter().map(|c| c.map(str::to_owned)).collect()).collect(),
        rows_affected: data.len() as u64,
    }
}

pub fn affected(n: u64) -> Rows {
    Rows { rows_affected: n, ..Default::default() }
}

pub const INT4: u32 = 23;
pub const INT8: u32 = 20;
pub const TEXT: u32 = 25;
pub const TIMESTAMP: u32 = 1114;
pub const JSONB: u32 = 3802;

/// Run a body through `handle_query` with a fixed clock.
pub async fn run(fake: &mut Fake, body: &str) -> HttpResponse {
    run_with(fake, body, false, &Limits::default()).await
}

pub async fn run_with(fake: &mut Fake, body: &str, in_transaction: bool, limits: &Limits) -> HttpResponse {
    let ctx = QueryContext { in_transaction, fixed_now_millis: Some(1_795_814_334_330) };
    handle_query(fake, body.as_bytes(), &ctx, limits).await
}

pub fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn read(name: &str) -> String {
    std::fs::read_to_string(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Expected `(status, body)` of a captured response file, re-serialised compactly.
pub fn expected(name: &str) -> (u16, String) {
    let v = tidepool_prisma::json::parse(read(name).as_bytes(), 64).expect("response json");
    let status = v.get("status").as_f64().expect("status") as u16;
    (status, v.get("body").to_json())
}

/// Minimal plan wrapper: `{"operation":"test","plan":<plan>,"params":<params>}`.
pub fn body(plan: &str, params: &str) -> String {
    format!(r#"{{"operation":"test","plan":{plan},"params":{params}}}"#)
}
