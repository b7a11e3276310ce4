//! Client messages: `FrontendMsg::parse`, `rewrite_bind`, `parse_sasl_initial`, `parse_password`.
//!
//! Invariants:
//! * no panic;
//! * `Parse` yields exactly the declared number of parameter types;
//! * `rewrite_bind` output is one well-formed frame (length word = size − 1) that re-parses:
//!   same portal bytes, the new statement name, and the parameter/format bytes after the two
//!   names untouched; when the original parsed as `Bind`, the rewrite parses as
//!   `Bind { portal, statement: new_name }`;
//! * `parse_sasl_initial` data lies within the body and is no longer than declared.
//!
//! Input: [`tidepool_fuzz::format::Tagged`] (the name is the new statement name; tidepool's own
//! server-side names never contain NUL, so NULs are dropped).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tidepool_fuzz::format::Tagged;
use tidepool_proto::framing::{try_frame, write_msg, MAX_MESSAGE_CEILING};
use tidepool_proto::frontend::{parse_password, parse_sasl_initial, rewrite_bind, FrontendMsg};

/// Splits a NUL-terminated string off `b`.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Tagged::decode(data) else { return };
    let mut wire = BytesMut::new();
    write_msg(&mut wire, input.tag, |b| b.extend_from_slice(input.body));
    let frame = try_frame(&mut wire, MAX_MESSAGE_CEILING).expect("frames").expect("complete");
    assert!(wire.is_empty());

    let parsed = FrontendMsg::parse(&frame);
    if let Ok(FrontendMsg::Parse { param_types, .. }) = &parsed {
        // name\0 query\0 n:i16 types...
        let (_, rest) = cstr(input.body).unwrap();
        let (_, rest) = cstr(rest).unwrap();
        let n = i16::from_be_bytes([rest[0], rest[1]]);
        assert_eq!(param_types.len(), n as usize);
    }

    if let Ok(out) = rewrite_bind(&frame, &input.name) {
        let total = out.len();
        let mut out = out;
        let again = try_frame(&mut out, MAX_MESSAGE_CEILING).expect("rewrite frames").expect("rewrite is complete");
        assert!(out.is_empty(), "rewrite_bind produced trailing bytes");
        assert_eq!(again.raw.len(), total);
        assert_eq!(again.tag, b'B');
        let (portal, rest) = cstr(input.body).expect("rewrite succeeded, so the body had a portal");
        let (_, params) = cstr(rest).expect("and a statement");
        let (portal2, rest2) = cstr(again.body()).expect("rewritten portal");
        let (stmt2, params2) = cstr(rest2).expect("rewritten statement");
        assert_eq!(portal2, portal);
        assert_eq!(stmt2, input.name.as_bytes());
        assert_eq!(params2, params);
        if let Ok(FrontendMsg::Bind { portal, .. }) = parsed {
            assert_eq!(FrontendMsg::parse(&again).expect("a rewritten Bind parses"), FrontendMsg::Bind { portal, statement: &input.name });
        }
    }

    if let Ok((mech, sasl)) = parse_sasl_initial(input.body) {
        assert!(!mech.contains('\0'));
        assert!(mech.len() + 1 + 4 + sasl.len() <= input.body.len());
        let declared = i32::from_be_bytes(input.body[mech.len() + 1..mech.len() + 5].try_into().unwrap());
        assert_eq!(sasl.len(), declared.max(0) as usize);
    }
    if let Ok(pw) = parse_password(input.body) {
        assert!(pw.len() < input.body.len() && !pw.contains(&0));
    }
});
