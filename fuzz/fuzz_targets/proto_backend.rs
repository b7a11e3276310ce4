//! Server messages as tidepool reads them from upstream PostgreSQL: authentication requests,
//! ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse/NoticeResponse fields,
//! RowDescription, DataRow and CommandComplete.
//!
//! Invariants: no panic; DataRow values are slices of the frame that re-encode to the same row;
//! RowDescription has exactly the declared column count; ErrorResponse fields survive a
//! re-encode/re-parse round trip (after lossy UTF-8 decoding, which is idempotent); a parsed
//! SASL mechanism list never contains an empty name.
//!
//! Input: `[tag][body…]`.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use tidepool_proto::backend::{
    parse_auth, parse_backend_key, parse_command_complete, parse_data_row, parse_parameter_status, parse_ready, parse_row_description, AuthRequest, ErrorFields,
};
use tidepool_proto::framing::{put_cstr, try_frame, write_msg, MAX_MESSAGE_CEILING};

fuzz_target!(|data: &[u8]| {
    let Some((&tag, body)) = data.split_first() else { return };
    let mut wire = BytesMut::new();
    write_msg(&mut wire, tag, |b| b.extend_from_slice(body));
    let frame = try_frame(&mut wire, MAX_MESSAGE_CEILING).expect("frames").expect("complete");

    match parse_auth(body) {
        Ok(AuthRequest::Sasl { mechanisms }) => assert!(mechanisms.iter().all(|m| !m.is_empty())),
        Ok(AuthRequest::SaslContinue(d) | AuthRequest::SaslFinal(d)) => assert_eq!(d, &body[4..]),
        _ => {}
    }
    let _ = parse_parameter_status(body);
    let _ = parse_backend_key(body);
    let _ = parse_ready(body);
    let _ = parse_command_complete(body);

    if let Ok(e) = ErrorFields::parse(body) {
        let _ = (e.code(), e.message(), e.severity());
        let mut re = BytesMut::new();
        for (t, v) in &e.fields {
            assert_ne!(*t, 0);
            re.put_u8(*t);
            put_cstr(&mut re, v.as_bytes());
        }
        re.put_u8(0);
        assert_eq!(ErrorFields::parse(&re).expect("re-encoded ErrorResponse parses"), e);
    }

    if let Ok(cols) = parse_row_description(body) {
        let n = i16::from_be_bytes([body[0], body[1]]);
        assert_eq!(cols.len(), n.max(0) as usize);
    }

    if let Ok(values) = parse_data_row(&frame) {
        let n = i16::from_be_bytes([body[0], body[1]]);
        assert_eq!(values.len(), n.max(0) as usize);
        let mut re = BytesMut::new();
        write_msg(&mut re, tag, |b| {
            b.put_i16(n);
            for v in &values {
                match v {
                    None => b.put_i32(-1),
                    Some(v) => {
                        b.put_i32(v.len() as i32);
                        b.extend_from_slice(v);
                    }
                }
            }
        });
        let re = try_frame(&mut re, MAX_MESSAGE_CEILING).unwrap().unwrap();
        assert_eq!(parse_data_row(&re).expect("re-encoded DataRow parses"), values);
        // The values were read from the front of the body; what follows them is ignored.
        assert!(re.body().len() <= body.len());
    }
});
