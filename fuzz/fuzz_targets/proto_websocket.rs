//! `tidepool_proto::websocket::Decoder` on arbitrary client bytes, as the WebSocket front end
//! feeds it: headers decoded one after another, payload skipped (and unmasked in two pieces).
//!
//! Invariants: no panic; a decoded header took at most `MAX_HEADER` bytes; control frames are
//! final and ≤ 125 bytes; with a message bound the declared total of a message never exceeds
//! it; a header re-encoded as a client frame decodes to the same header.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tidepool_proto::websocket::{close_reply_code, encode_client_frame, unmask, Decoder, MAX_HEADER, OP_CLOSE};

fuzz_target!(|data: &[u8]| {
    let max = 4096u64;
    let mut d = Decoder::default();
    let mut rest = data;
    let mut message = 0u64;
    while let Ok(Some((h, n))) = d.decode_header(rest, Some(max)) {
        assert!(n <= MAX_HEADER && n <= rest.len());
        assert!(!h.is_control() || (h.fin && h.len <= 125));
        if !h.is_control() {
            message += h.len;
            assert!(message <= max);
            if h.fin {
                message = 0;
            }
        }
        let end = (n as u64).saturating_add(h.len).min(rest.len() as u64) as usize;
        let mut payload = rest[n..end].to_vec();
        let cut = payload.len() / 2;
        let (a, b) = payload.split_at_mut(cut);
        unmask(a, h.mask, 0);
        unmask(b, h.mask, cut as u64);
        if h.opcode == OP_CLOSE && payload.len() as u64 == h.len {
            let _ = close_reply_code(&payload);
        }
        if payload.len() as u64 == h.len {
            let mut again = BytesMut::new();
            encode_client_frame(&mut again, h.opcode, h.fin, h.mask, &payload);
            let fresh = if h.is_control() || h.opcode == 0x2 { Decoder::default().decode_header(&again, None) } else { Ok(None) };
            if let Ok(Some((h2, _))) = fresh {
                assert_eq!(h2, h);
            }
        }
        d.data_frame_done(&h);
        if end == 0 {
            break;
        }
        rest = &rest[end..];
    }
});
