//! Every `/query` body captured from the real Prisma 7 client suite
//! (`tests/clients/prisma/fixtures/`) must parse, and must evaluate against a fake executor that
//! returns no rows without panicking or being rejected as malformed.

mod common;

use common::*;
use tidepool_prisma::json::{self, Value};
use tidepool_prisma::{Error, Limits, QueryRequest};

pub fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/prisma/fixtures")
}

/// `(file, path, request body)` of every captured query exchange.
fn query_bodies() -> Vec<(String, String, String)> {
    let Ok(dir) = std::fs::read_dir(fixture_dir()) else { return Vec::new() };
    let mut files: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read(&f).expect("read fixture");
        let v = json::parse(&text, 1024).expect("fixture json");
        for ex in v.get("exchanges").as_list().unwrap_or_default() {
            let path = ex.get("path").as_str().unwrap_or_default();
            if path.ends_with("/query") {
                let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
                out.push((name, path.to_owned(), ex.get("body").to_json()));
            }
        }
    }
    out
}

#[test]
fn every_captured_body_parses() {
    let bodies = query_bodies();
    if bodies.is_empty() {
        eprintln!("no Prisma client fixtures found; skipping");
        return;
    }
    for (file, _, body) in &bodies {
        QueryRequest::parse(body.as_bytes(), &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    assert!(bodies.len() > 50, "expected the fixture suite, found {} bodies", bodies.len());
}

#[tokio::test]
async fn every_captured_plan_runs_on_empty_results() {
    for (file, path, body) in query_bodies() {
        let mut fake = Fake::default();
        let in_tx = path.starts_with("/transaction/");
        let request = QueryRequest::parse(body.as_bytes(), &Limits::default()).expect("parses");
        let ctx = tidepool_prisma::QueryContext { in_transaction: in_tx, fixed_now_millis: Some(0) };
        match tidepool_prisma::execute(&mut fake, &request, &ctx, &Limits::default()).await {
            Ok(_) | Err(Error::Known { .. }) | Err(Error::Internal(_)) => {}
            Err(e) => panic!("{file} {}: {e}", request.operation),
        }
        for call in fake.statements() {
            let sql = call.sql().unwrap_or_default();
            let placeholders = (1..=call.values().len()).all(|n| sql.contains(&format!("${n}")));
            assert!(placeholders, "{file}: every parameter has a placeholder in {sql}");
        }
    }
}

#[test]
fn fixture_values_round_trip_through_our_json() {
    for (file, _, body) in query_bodies() {
        let v: Value = json::parse(body.as_bytes(), 1024).expect("json");
        assert_eq!(json::parse(v.to_json().as_bytes(), 1024).expect("again"), v, "{file}");
    }
}
