//! `tidepool_prisma::QueryRequest::parse` and `RequestBody::parse` on arbitrary bodies (the
//! `/query` and `/transaction/{id}/query` endpoints), with the default limits and with tight
//! ones.
//!
//! Invariants:
//! * no panic, no stack overflow (JSON and plan nesting are capped);
//! * both parsers agree on a single request: `RequestBody::parse` of a body that is one request
//!   object yields `Single` equal to `QueryRequest::parse`;
//! * an accepted request has a non-empty operation, and every error has a P-code, an HTTP
//!   status and a JSON body;
//! * the crate's JSON parser round-trips: `parse(to_json(parse(x))) == parse(x)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_prisma::{json, Limits, QueryRequest, RequestBody};

fuzz_target!(|data: &[u8]| {
    let tight = Limits { max_json_depth: 8, max_plan_depth: 4, ..Limits::default() };
    for limits in [Limits::default(), tight] {
        let single = QueryRequest::parse(data, &limits);
        let body = RequestBody::parse(data, &limits);
        match &single {
            Ok(r) => {
                assert!(!r.operation.is_empty());
                if let Ok(RequestBody::Single(b)) = &body {
                    assert_eq!(**b, *r);
                }
            }
            Err(e) => {
                assert!(!e.code().is_empty());
                assert!((400..600).contains(&e.http_status()));
                json::parse(e.body_json().as_bytes(), 1000).expect("error body is JSON");
            }
        }
        if let Ok(RequestBody::Batch(items)) = &body {
            assert!(items.iter().all(|r| !r.operation.is_empty()));
        }
    }
    if let Ok(v) = json::parse(data, 128) {
        let text = v.to_json();
        let again = json::parse(text.as_bytes(), 1000).unwrap_or_else(|e| panic!("to_json output {text:?} does not parse: {e}"));
        assert_eq!(again, v);
    }
});
