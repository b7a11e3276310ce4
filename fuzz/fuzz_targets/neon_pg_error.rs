//! `tidepool_neon::PgErrorFields::parse` on arbitrary `ErrorResponse` bodies from upstream, with
//! a differential check against `tidepool_proto::backend::ErrorFields::parse` (the same wire
//! format parsed by the other crate).
//!
//! Invariants:
//! * no panic;
//! * both parsers accept exactly the same bodies;
//! * each of the 18 known fields holds the *last* value of that type in the message (as
//!   `from_fields` documents);
//! * the rendered error is a JSON object with Neon's 17 keys, HTTP 400, and the SQLSTATE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_neon::{NeonError, PgErrorFields};
use tidepool_proto::backend::ErrorFields;

fuzz_target!(|data: &[u8]| {
    let neon = PgErrorFields::parse(data);
    let proto = ErrorFields::parse(data);
    assert_eq!(neon.is_ok(), proto.is_ok(), "the two ErrorResponse parsers disagree");
    let (Ok(neon), Ok(proto)) = (neon, proto) else { return };

    let last = |t: u8| proto.fields.iter().rev().find(|(k, _)| *k == t).map(|(_, v)| v.clone());
    assert_eq!(neon.severity, last(b'S'));
    assert_eq!(neon.severity_nonlocalized, last(b'V'));
    assert_eq!(neon.code, last(b'C'));
    assert_eq!(neon.message, last(b'M'));
    assert_eq!(neon.detail, last(b'D'));
    assert_eq!(neon.hint, last(b'H'));
    assert_eq!(neon.position, last(b'P'));
    assert_eq!(neon.internal_position, last(b'p'));
    assert_eq!(neon.internal_query, last(b'q'));
    assert_eq!(neon.where_, last(b'W'));
    assert_eq!(neon.schema, last(b's'));
    assert_eq!(neon.table, last(b't'));
    assert_eq!(neon.column, last(b'c'));
    assert_eq!(neon.data_type, last(b'd'));
    assert_eq!(neon.constraint, last(b'n'));
    assert_eq!(neon.file, last(b'F'));
    assert_eq!(neon.line, last(b'L'));
    assert_eq!(neon.routine, last(b'R'));

    let code = neon.code.clone();
    let message = neon.message.clone();
    let e = NeonError::from(neon);
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    assert_eq!(e.sqlstate(), code.as_deref());
    let body: serde_json::Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
    let obj = body.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 17, "{body}");
    assert_eq!(obj["code"].as_str(), Some(code.as_deref().unwrap_or("")));
    assert_eq!(obj["message"].as_str(), Some(message.as_deref().unwrap_or("unknown postgres error")));
});
