//! `StartupPacket::parse` on arbitrary bodies, and on packets split off by `try_startup` with
//! PostgreSQL's startup limit (as tidepool's listener does).
//!
//! Invariants: no panic; a parsed StartupMessage re-encodes (`encode_startup`) to a packet that
//! parses to the same value; parameter names are non-empty and no string contains NUL; an
//! SSLRequest/GSSENCRequest is exactly 8 bytes and a CancelRequest exactly 16.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tidepool_proto::framing::{try_startup, MAX_STARTUP_PACKET};
use tidepool_proto::startup::{encode_cancel, encode_startup, StartupPacket};

fn check(body: &[u8]) {
    let Ok(packet) = StartupPacket::parse(body) else { return };
    match &packet {
        StartupPacket::SslRequest | StartupPacket::GssEncRequest => assert_eq!(body.len(), 4),
        StartupPacket::Cancel { pid, secret } => {
            assert_eq!(body.len(), 12);
            let mut b = BytesMut::new();
            encode_cancel(&mut b, *pid, *secret);
            assert_eq!(&b[4..], body);
        }
        StartupPacket::Startup { params } => {
            for (k, v) in params {
                assert!(!k.is_empty());
                assert!(!k.contains('\0') && !v.contains('\0'));
            }
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut b = BytesMut::new();
            encode_startup(&mut b, &pairs);
            assert_eq!(&b[4..], body, "re-encoding a parsed StartupMessage changed it");
            let again = try_startup(&mut b, usize::MAX).expect("re-encoded packet frames").expect("complete");
            assert_eq!(StartupPacket::parse(&again).expect("re-encoded packet parses"), packet);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes as a stream of length-prefixed packets.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(body)) = try_startup(&mut buf, MAX_STARTUP_PACKET) {
        assert!(body.len() + 4 <= MAX_STARTUP_PACKET);
        check(&body);
    }
});
