//! Hostile nesting at 100,000 levels on every recursive path of the crate: each is refused by a
//! depth limit (HTTP 400 `P6000`, or a clean error) long before the stack is at risk.
//!
//! Values are built directly (bypassing the JSON parser's own limit) to reach the plan parser's
//! paths; they are leaked at the end because `Value`'s drop glue is itself recursive — which is
//! why everything that builds a `Value` from client or database bytes goes through
//! `json::parse` with its depth limit.

mod common;

use common::*;
use tidepool_prisma::json::{self, Map, Value};
use tidepool_prisma::{Limits, QueryRequest};

const DEPTH: usize = 100_000;

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map>())
}

/// `wrap` applied `DEPTH` times around `leaf`, without recursion.
fn deep(leaf: Value, wrap: impl Fn(Value) -> Value) -> Value {
    (0..DEPTH).fold(leaf, |v, _| wrap(v))
}

fn request(plan: Value) -> Value {
    obj(vec![("operation", Value::from("x")), ("plan", plan), ("params", Value::Object(Map::new()))])
}

/// Parses a request built as a `Value`; the error text (the tree is leaked, see above).
fn refused(v: Value) -> String {
    let r = QueryRequest::from_value(&v, &Limits::default());
    let _leaked = std::mem::ManuallyDrop::new(v);
    match r {
        Ok(_) => panic!("a 100,000-deep request was accepted"),
        Err(e) => {
            assert_eq!((e.http_status(), e.code()), (400, "P6000"));
            e.body_json()
        }
    }
}

#[test]
fn json_text_nesting() {
    for text in [format!("{}1{}", "[".repeat(DEPTH), "]".repeat(DEPTH)), format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH))] {
        let e = json::parse(text.as_bytes(), 128).unwrap_err();
        assert!(e.to_string().contains("deeper than 128"), "{e}");
        // Through every body entry point.
        for body in [
            format!(r#"{{"operation":"x","plan":{text},"params":{{}}}}"#),
            format!(r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{"%1":{text}}}}}"#),
            format!(r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{}},"comments":{text}}}"#),
        ] {
            let e = QueryRequest::parse(body.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!((e.http_status(), e.code()), (400, "P6000"));
            assert!(tidepool_prisma::RequestBody::parse(body.as_bytes(), &Limits::default()).is_err());
        }
        // The transaction-start body goes through serde_json (recursion limit 128, never
        // disabled in this workspace; unknown keys are skipped iteratively).
        assert!(tidepool_prisma::TransactionOptions::parse(format!(r#"{{"timeout":{text}}}"#).as_bytes()).is_err());
        assert!(tidepool_prisma::TransactionOptions::parse(format!(r#"{{"other":{text}}}"#).as_bytes()).is_ok());
    }
}

#[test]
fn plan_node_nesting() {
    let unit = obj(vec![("type", Value::from("unit"))]);
    let plan = deep(unit, |inner| obj(vec![("type", Value::from("reverse")), ("args", inner)]));
    assert!(refused(request(plan)).contains("Query plan nesting exceeds the limit of 64 levels"));
    // Through `let` bindings and join children as well.
    let unit = obj(vec![("type", Value::from("unit"))]);
    let plan = deep(unit, |inner| {
        let binding = obj(vec![("name", Value::from("a")), ("expr", inner)]);
        obj(vec![
            ("type", Value::from("let")),
            ("args", obj(vec![("bindings", Value::List(vec![binding])), ("expr", obj(vec![("type", Value::from("unit"))]))])),
        ])
    });
    assert!(refused(request(plan)).contains("nesting exceeds"));
}

#[test]
fn value_nesting() {
    // Lists in a `value` node and generator arguments are walked for placeholders.
    let list = deep(Value::from(1.0), |inner| Value::List(vec![inner]));
    assert!(refused(request(obj(vec![("type", Value::from("value")), ("args", list)]))).contains("nesting exceeds"));
    let call = deep(Value::from(1.0), |inner| obj(vec![("$g", Value::List(vec![Value::from("product"), Value::List(vec![inner])]))]));
    assert!(refused(request(obj(vec![("type", Value::from("value")), ("args", call)]))).contains("nesting exceeds"));
}

#[test]
fn result_structure_and_operations_nesting() {
    let field = obj(vec![("type", Value::from("affectedRows"))]);
    let structure = deep(field, |inner| {
        obj(vec![("type", Value::from("object")), ("fields", obj(vec![("f", inner)])), ("serializedName", Value::Null), ("skipNulls", Value::Bool(false))])
    });
    let unit = obj(vec![("type", Value::from("unit"))]);
    let plan = obj(vec![("type", Value::from("dataMap")), ("args", obj(vec![("expr", unit.clone()), ("structure", structure)]))]);
    assert!(refused(request(plan)).contains("nesting exceeds"));
    let ops = deep(obj(vec![]), |inner| obj(vec![("nested", obj(vec![("f", inner)]))]));
    let plan = obj(vec![("type", Value::from("process")), ("args", obj(vec![("expr", unit), ("operations", ops)]))]);
    assert!(refused(request(plan)).contains("nesting exceeds"));
}

#[tokio::test]
async fn database_text_nesting() {
    // Array and JSON column text from the database: bounded as well (8 array levels, JSON 128).
    let deep_array = format!("{}1{}", "{".repeat(DEPTH), "}".repeat(DEPTH));
    let deep_json = format!("{}1{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let plan = r#"{"type":"query","args":{"type":"rawSql","sql":"SELECT x","args":[],"argTypes":[]}}"#;
    for (oid, text) in [(1007, &deep_array), (JSONB, &deep_json)] {
        let cells: Vec<Option<&str>> = vec![Some(text.as_str())];
        let mut fake = Fake::with_rows(vec![rows(&[("x", oid)], &[&cells])]);
        let r = run(&mut fake, &format!(r#"{{"operation":"queryRaw","plan":{plan},"params":{{}}}}"#)).await;
        assert_ne!(r.status, 200, "{}", &r.body[..r.body.len().min(200)]);
        assert!(r.body.len() < 1000, "the deep value was echoed back");
    }
}

#[test]
fn giant_numbers_and_strings_are_linear() {
    // 5 MB of digits (with a fraction and an exponent) parse in linear time, like strings.
    let started = std::time::Instant::now();
    for text in ["9".repeat(5_000_000), format!("0.{}e-99999999999", "1".repeat(5_000_000)), format!("\"{}\"", "\\u00e9".repeat(800_000))] {
        let body = format!(r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{"%1":{text}}}}}"#);
        let _ = QueryRequest::parse(body.as_bytes(), &Limits::default());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}
