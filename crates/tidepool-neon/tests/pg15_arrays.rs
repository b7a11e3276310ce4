//! Array literals exactly as PostgreSQL 15 printed them (`tests/fixtures/pg15_arrays.json`,
//! recorded with psql from a real server, together with the server's own `array_to_json` where
//! that is the same conversion as Neon's JSON mode).

use serde_json::{json, Value};
use tidepool_neon::{Field, OutputOptions, ResponseEncoder, DEFAULT_MAX_BYTES};

#[derive(serde::Deserialize)]
struct Case {
    sql: String,
    type_oid: u32,
    text: String,
    array_to_json: Option<Value>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("fixtures/pg15_arrays.json")).expect("fixture")
}

fn encode(case: &Case, raw_text: bool) -> Value {
    let mut response = ResponseEncoder::single(DEFAULT_MAX_BYTES);
    let options = OutputOptions { raw_text, array_mode: true };
    let mut statement = response.statement(&[Field::new("v", case.type_oid)], options).expect("fields");
    statement.push_row(&[Some(case.text.as_str())]).unwrap_or_else(|e| panic!("{}: {e}", case.sql));
    statement.finish(Some("SELECT 1")).expect("finish");
    let body: Value = serde_json::from_slice(&response.finish().expect("body")).expect("JSON");
    body["rows"][0][0].clone()
}

/// Neon's JSON mode where it differs from `array_to_json` (strings for int8, numeric, dates, …).
fn expected_without_oracle(sql: &str) -> Value {
    match sql {
        s if s.contains("int8[]") => json!(["9223372036854775807", null]),
        s if s.contains("float8[]") => {
            json!([1.5, "NaN", "Infinity", "-Infinity", 1e300, 0.0, 0.1])
        }
        s if s.contains("float4[]") => json!([1.5, 3.4028235e38, 0.1]),
        s if s.contains("numeric[]") => json!(["1.10", "NaN", "-0.000001"]),
        s if s.contains("timestamptz") => json!(["2024-01-02 01:04:05.678+00", "infinity"]),
        s if s.contains("::timestamp]") => json!(["2024-01-02 03:04:05.678"]),
        s if s.contains("::date") => json!(["2024-01-02", "2024-01-02 BC"]),
        s if s.contains("::time]") => json!(["03:04:05"]),
        s if s.contains("::interval") => json!(["1 day 02:00:00", "-1 years"]),
        s if s.contains("::bytea") => json!(["\\x0102ff", "\\x"]),
        s if s.contains("::point") => json!(["(1,2)"]),
        s if s.contains("::box") => json!(["(1,1),(0,0)", "(2,2),(1,1)"]),
        s if s.contains("int4range") => json!(["[1,5)", "empty"]),
        s if s.contains("::inet") => json!(["192.168.0.1/24"]),
        s if s.contains("::money") => json!(["$12.34"]),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn json_mode_matches_postgres() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in &cases {
        let expected = case.array_to_json.clone().unwrap_or_else(|| expected_without_oracle(&case.sql));
        assert_eq!(encode(case, false), expected, "{}\n  text: {:?}", case.sql, case.text);
    }
}

#[test]
fn raw_mode_is_the_literal() {
    for case in &cases() {
        assert_eq!(encode(case, true), json!(case.text), "{}", case.sql);
    }
}
