//! `tidepool_neon::parse_request(headers, body, limits)` (and `check_content_length`) on a fuzzed
//! header block and body.
//!
//! Invariants:
//! * no panic;
//! * a body over `max_request_bytes` is never accepted;
//! * an accepted request has a non-empty user and database without NUL, at least one statement
//!   for a single-statement body, and its response helpers (`begin_sql`, `success_response`,
//!   `output_for`) work;
//! * every error renders as a JSON body with an HTTP error status;
//! * a JSON array parameter becomes a PostgreSQL array literal that the crate's own array reader
//!   (the JSON-mode result encoder for `text[]`) reads back to the same elements: strings stay
//!   strings, numbers and booleans keep their text, objects become compact JSON text, `null`
//!   stays NULL, nesting is kept. A mismatch would mean a parameter reaches PostgreSQL as a
//!   different value than the client sent.
//!
//! Input: [`tidepool_fuzz::format::HttpRequest`].
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tidepool_fuzz::format::HttpRequest;
use tidepool_neon::{check_content_length, oid, parse_request, success_response, Field, Limits, OutputOptions, Payload, ResponseEncoder, DEFAULT_MAX_BYTES};

/// Checks one element read back from the array literal against the JSON the client sent.
fn check_element(sent: &RawValue, read: &Value) {
    let text = sent.get();
    match text.as_bytes().first() {
        Some(b'n') => assert_eq!(read, &Value::Null, "null element became {read}"),
        Some(b'"') => {
            let s: String = serde_json::from_str(text).unwrap();
            assert_eq!(read.as_str(), Some(s.as_str()), "string element {text} became {read}");
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).unwrap();
            let got = read.as_array().unwrap_or_else(|| panic!("array element {text} became {read}"));
            assert_eq!(items.len(), got.len(), "array element {text} became {read}");
            for (a, b) in items.iter().zip(got) {
                check_element(a, b);
            }
        }
        Some(b'{') => {
            // Compact JSON text of the same object (key order is the client's).
            let s = read.as_str().unwrap_or_else(|| panic!("object element {text} became {read}"));
            let a: Value = serde_json::from_str(text).unwrap();
            let b: Value = serde_json::from_str(s).unwrap_or_else(|e| panic!("object element {text} became {s:?}: {e}"));
            assert_eq!(a, b);
        }
        // Numbers and booleans: exactly their JSON text.
        _ => assert_eq!(read.as_str(), Some(text), "element {text} became {read}"),
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default)]
    query: Option<String>,
    #[serde(default, borrow)]
    params: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    queries: Option<Vec<Stmt<'a>>>,
}

#[derive(Deserialize)]
struct Stmt<'a> {
    #[serde(default, borrow)]
    params: Vec<&'a RawValue>,
}

/// Reads `literal` with the crate's `text[]` JSON-mode conversion.
fn read_text_array(literal: &str) -> Option<Value> {
    let mut response = ResponseEncoder::single(DEFAULT_MAX_BYTES);
    let options = OutputOptions { raw_text: false, array_mode: true };
    let mut st = response.statement(&[Field::new("a", oid::TEXT_ARRAY)], options).ok()?;
    st.push_row(&[Some(literal)]).ok()?;
    st.finish(Some("SELECT 1")).ok()?;
    let body: Value = serde_json::from_slice(&response.finish().ok()?).expect("encoder output is JSON");
    Some(body["rows"][0][0].clone())
}

fuzz_target!(|data: &[u8]| {
    let input = HttpRequest::decode(data);
    let mut headers = HeaderMap::new();
    let mut limits = Limits::default();
    for (name, value) in &input.headers {
        if name.eq_ignore_ascii_case(b"x-fuzz-max-request") {
            if let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                limits.max_request_bytes = n;
            }
            continue;
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else { continue };
        headers.append(name, value);
    }

    let _ = check_content_length(&headers, &limits);
    let request = match parse_request(&headers, input.body, &limits) {
        Ok(r) => r,
        Err(e) => {
            let body: Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
            assert!(body.is_object());
            assert!(e.status().is_client_error() || e.status().is_server_error());
            return;
        }
    };
    assert!(input.body.len() <= limits.max_request_bytes, "an oversized body was accepted");
    let c = &request.connection;
    assert!(!c.user.is_empty() && !c.user.contains('\0'));
    assert!(!c.database.is_empty() && !c.database.contains('\0'));
    if let Payload::Single(_) = request.payload {
        assert_eq!(request.statements().len(), 1);
    }
    let _ = request.options.batch.begin_sql();
    let _ = success_response(&request, b"{}".to_vec());

    // Parameters: JSON → text; arrays → PostgreSQL literal → the crate's literal reader.
    let body: Body<'_> = serde_json::from_slice(input.body).expect("accepted bodies parse");
    let sent: Vec<&RawValue> = match (&body.query, &body.queries) {
        (Some(_), _) => body.params,
        (None, Some(q)) => q.iter().flat_map(|s| s.params.iter().copied()).collect(),
        (None, None) => unreachable!("accepted without a query"),
    };
    let texts: Vec<&Option<String>> = request.statements().iter().flat_map(|s| &s.params).collect();
    assert_eq!(sent.len(), texts.len());
    for statement in request.statements() {
        let _ = request.output_for(statement);
    }
    for (raw, text) in sent.into_iter().zip(texts) {
        let json = raw.get();
        match (json.as_bytes()[0], text) {
            (b'n', None) => {}
            (b'n', Some(_)) | (_, None) => panic!("NULL mismatch for {json}"),
            (b'"', Some(t)) => assert_eq!(&serde_json::from_str::<String>(json).unwrap(), t),
            (b'[', Some(literal)) => {
                // The reader refuses nesting deeper than 32 by design (PostgreSQL allows 6).
                if depth(&serde_json::from_str(json).unwrap()) > 32 {
                    continue;
                }
                let read = read_text_array(literal).unwrap_or_else(|| panic!("literal {literal:?} from {json} is unreadable"));
                check_element(raw, &read);
            }
            (b'{', Some(t)) => {
                let a: Value = serde_json::from_str(json).unwrap();
                assert_eq!(a, serde_json::from_str::<Value>(t).expect("object parameter stays JSON"));
            }
            (_, Some(t)) => assert_eq!(t, json),
        }
    }
});

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
