//! `tidepool_prisma::handle_query` end to end: a fuzzed `/query` body evaluated against a fake
//! [`Executor`] whose answers (columns, type OIDs, cell text, affected-row counts, database
//! errors) come from the fuzz input too, so query plans run over arbitrary "database" rows.
//!
//! Invariants:
//! * no panic, no hang (the fake executor never blocks; the future must finish on first poll);
//! * the response is either 200 or an error with a Prisma code and a 4xx/5xx status;
//! * the body is valid JSON; a 200 body is `{"data":…}` and within `max_response_bytes`.
//!
//! Input: the body, a NUL byte, then the executor's script
//! ([`tidepool_fuzz::format::split_body_script`]). The first script byte picks limits and
//! context; the fake names its columns after identifiers quoted in the SQL it receives so that
//! rows line up with what the plan expects.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use tidepool_fuzz::format::split_body_script;
use tidepool_prisma::{handle_query, json, Column, DbError, Executor, Limits, Param, QueryContext, Rows, ServerError};

/// Type OIDs the decoder distinguishes (and a few it refuses).
const OIDS: &[u32] = &[
    0, 16, 17, 20, 21, 23, 25, 26, 114, 700, 701, 790, 1000, 1001, 1005, 1007, 1009, 1016, 1021, 1022, 1042, 1043, 1082, 1083, 1114, 1115, 1182, 1184, 1185,
    1186, 1231, 1266, 1700, 2950, 2951, 3802, 3807, 16_400, 600,
];

/// Plausible text for each kind of column, plus hostile variants.
const VALUES: &[&str] = &[
    "1",
    "42",
    "-7",
    "0",
    "2147483648",
    "9007199254740993",
    "1.5",
    "-0.0",
    "1e308",
    "NaN",
    "Infinity",
    "-Infinity",
    "t",
    "f",
    "true",
    "",
    " ",
    "abc",
    "NULL",
    "{}",
    "{1,2,NULL}",
    "{{1,2},{3,4}}",
    "[0:1]={5,6}",
    r#"{"a b","c\"d",NULL}"#,
    "{",
    "{{{{{{{{{{1}}}}}}}}}}",
    r#"{"a":1}"#,
    "[1,2]",
    "null",
    r#"{"a":"#,
    r"\xdeadbeef",
    r"\x0",
    r"\\",
    r"\123abc",
    "$12.50",
    "2024-01-02",
    "10:00:00",
    "10:00:00+02",
    "2026-11-27 21:18:54.33",
    "2026-11-27 21:18:54.33+00",
    "2026-11-27 21:18:54-05:30",
    "infinity",
    "-infinity",
    "0001-01-01 00:00:00 BC",
    "9999-12-31 23:59:59.999999",
    "550e8400-e29b-41d4-a716-446655440000",
    "é",
    "\u{0}",
    "💥",
];

const SQLSTATES: &[&str] = &["23505", "23503", "23502", "23514", "22001", "22003", "40001", "40P01", "42P01", "P0001", "57014", "XX000"];

struct Fake<'a> {
    u: Unstructured<'a>,
    calls: usize,
}

impl Fake<'_> {
    fn error(&mut self) -> Option<DbError> {
        if !self.u.ratio(1, 12).unwrap_or(false) {
            return None;
        }
        Some(match self.u.int_in_range(0u8..=3).unwrap_or(0) {
            0 => {
                let code = SQLSTATES[usize::from(self.u.arbitrary::<u8>().unwrap_or(0)) % SQLSTATES.len()];
                let mut e = ServerError::new(code, self.u.arbitrary::<String>().unwrap_or_default());
                e.constraint = self.u.arbitrary().unwrap_or_default();
                e.column = self.u.arbitrary().unwrap_or_default();
                e.table = self.u.arbitrary().unwrap_or_default();
                e.detail = self.u.arbitrary().unwrap_or_default();
                DbError::from(e)
            }
            1 => DbError::ConnectionClosed,
            2 => DbError::Timeout,
            _ => DbError::Other(self.u.arbitrary().unwrap_or_default()),
        })
    }

    fn rows(&mut self, sql: &str, params: &[Param]) -> Rows {
        let mut names: Vec<String> = quoted_identifiers(sql);
        names.extend(["id", "_count", "count", "_all"].map(str::to_owned));
        let ncols = self.u.int_in_range(0..=6).unwrap_or(0);
        let columns: Vec<Column> = (0..ncols)
            .map(|_| {
                let name = if self.u.ratio(1, 10).unwrap_or(false) {
                    self.u.arbitrary::<String>().unwrap_or_default()
                } else {
                    names[usize::from(self.u.arbitrary::<u8>().unwrap_or(0)) % names.len()].clone()
                };
                let oid = if self.u.ratio(1, 20).unwrap_or(false) {
                    self.u.arbitrary().unwrap_or(0)
                } else {
                    OIDS[usize::from(self.u.arbitrary::<u8>().unwrap_or(0)) % OIDS.len()]
                };
                Column::new(name, oid)
            })
            .collect();
        let nrows = self.u.int_in_range(0..=5).unwrap_or(0);
        let rows = (0..nrows)
            .map(|_| {
                (0..ncols)
                    .map(|_| match self.u.int_in_range(0u8..=9).unwrap_or(0) {
                        0 => None,
                        1 => Some(self.u.arbitrary::<String>().unwrap_or_default()),
                        2 if !params.is_empty() => params[usize::from(self.u.arbitrary::<u8>().unwrap_or(0)) % params.len()].value.clone(),
                        _ => Some(VALUES[usize::from(self.u.arbitrary::<u8>().unwrap_or(0)) % VALUES.len()].to_owned()),
                    })
                    .collect()
            })
            .collect();
        Rows { columns, rows, rows_affected: self.u.int_in_range(0..=5).unwrap_or(0) }
    }
}

/// `"…"` identifiers in the SQL, in order (`""` inside one is a quote).
fn quoted_identifiers(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

impl Executor for Fake<'_> {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Rows, DbError> {
        self.calls += 1;
        if let Some(e) = self.error() {
            return Err(e);
        }
        Ok(self.rows(sql, params))
    }

    async fn execute(&mut self, _sql: &str, _params: &[Param]) -> Result<u64, DbError> {
        self.calls += 1;
        if let Some(e) = self.error() {
            return Err(e);
        }
        Ok(if self.u.ratio(1, 8).unwrap_or(false) { self.u.arbitrary().unwrap_or(0) } else { self.u.int_in_range(0..=5).unwrap_or(0) })
    }
}

fn run_now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("handle_query waited on something other than the (always ready) executor"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (body, script) = split_body_script(data);
    let (&flags, script) = script.split_first().unwrap_or((&0, &[]));
    let limits = if flags & 1 != 0 {
        Limits { max_json_depth: 16, max_plan_depth: 12, max_response_bytes: 2048, max_bind_values: Some(3), typed_params: true }
    } else {
        Limits::default()
    };
    let ctx = QueryContext { in_transaction: flags & 2 != 0, fixed_now_millis: Some(1_795_814_334_330) };
    let mut fake = Fake { u: Unstructured::new(script), calls: 0 };

    let response = run_now(handle_query(&mut fake, body, &ctx, &limits));

    if response.status == 200 {
        assert!(response.error_code.is_none());
        assert!(response.body.starts_with(r#"{"data":"#), "{}", response.body);
        assert!(response.body.len() <= limits.max_response_bytes);
    } else {
        assert!((400..600).contains(&response.status), "status {}", response.status);
        assert!(response.error_code.as_deref().is_some_and(|c| !c.is_empty()));
    }
    if let Err(e) = json::parse(response.body.as_bytes(), 100_000) {
        panic!("response body is not JSON ({e}): {}", response.body);
    }
});
