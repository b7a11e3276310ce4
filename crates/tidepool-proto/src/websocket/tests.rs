//! Frame decoder unit and property tests: round trips, arbitrary splits, arbitrary bytes.

use proptest::prelude::*;

use super::*;

fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode_client_frame(&mut b, opcode, fin, [1, 2, 3, 4], payload);
    b
}

#[test]
fn header_sizes_and_lengths() {
    for len in [0usize, 125, 126, 65_535, 65_536] {
        let f = client_frame(OP_BINARY, true, &vec![7; len]);
        let (h, n) = Decoder::default().decode_header(&f, None).unwrap().unwrap();
        assert_eq!(h.len, len as u64);
        assert_eq!(n + len, f.len());
        // Every strict prefix of the header asks for more bytes.
        for cut in 0..n {
            assert_eq!(Decoder::default().decode_header(&f[..cut], None), Ok(None), "cut {cut}");
        }
    }
}

#[test]
fn violations_carry_their_close_codes() {
    let code = |bytes: &[u8], d: &mut Decoder| d.decode_header(bytes, Some(100)).unwrap_err().code;
    let mut unmasked = BytesMut::new();
    encode_frame(&mut unmasked, OP_BINARY, b"x");
    assert_eq!(code(&unmasked, &mut Decoder::default()), CLOSE_PROTOCOL);
    assert_eq!(code(&client_frame(OP_TEXT, true, b"x"), &mut Decoder::default()), CLOSE_UNSUPPORTED);
    assert_eq!(code(&client_frame(OP_PING, false, b"x"), &mut Decoder::default()), CLOSE_PROTOCOL);
    assert_eq!(code(&client_frame(OP_PING, true, &[0; 126]), &mut Decoder::default()), CLOSE_PROTOCOL);
    assert_eq!(code(&client_frame(OP_CONTINUATION, true, b"x"), &mut Decoder::default()), CLOSE_PROTOCOL);
    assert_eq!(code(&client_frame(0x3, true, b"x"), &mut Decoder::default()), CLOSE_PROTOCOL);
    let mut rsv = client_frame(OP_BINARY, true, b"x");
    rsv[0] |= 0x40;
    assert_eq!(code(&rsv, &mut Decoder::default()), CLOSE_PROTOCOL);
    // 2^63 and above is not a valid length.
    let mut huge = BytesMut::from(&[0x82u8, 0xFF][..]);
    huge.put_u64(1 << 63);
    huge.extend_from_slice(&[0; 4]);
    assert_eq!(code(&huge, &mut Decoder::default()), CLOSE_PROTOCOL);
    // The message bound counts every fragment.
    let mut d = Decoder::default();
    assert!(d.decode_header(&client_frame(OP_BINARY, false, &[0; 60]), Some(100)).unwrap().is_some());
    assert_eq!(code(&client_frame(OP_CONTINUATION, true, &[0; 60]), &mut d), CLOSE_TOO_BIG);
    // A new message inside an open one.
    let mut d = Decoder::default();
    d.decode_header(&client_frame(OP_BINARY, false, b"a"), None).unwrap();
    assert_eq!(code(&client_frame(OP_BINARY, true, b"b"), &mut d), CLOSE_PROTOCOL);
}

#[test]
fn fragments_and_interleaved_control_frames() {
    let mut d = Decoder::default();
    let (h, _) = d.decode_header(&client_frame(OP_BINARY, false, b"ab"), Some(10)).unwrap().unwrap();
    d.data_frame_done(&h);
    assert!(d.in_message());
    let (p, _) = d.decode_header(&client_frame(OP_PING, true, b"hi"), Some(10)).unwrap().unwrap();
    d.data_frame_done(&p);
    assert!(d.in_message(), "a control frame does not end the message");
    let (c, _) = d.decode_header(&client_frame(OP_CONTINUATION, true, b"cd"), Some(10)).unwrap().unwrap();
    d.data_frame_done(&c);
    assert_eq!(d, Decoder::default());
}

#[test]
fn close_codes() {
    assert_eq!(close_reply_code(&[]), Ok(CLOSE_NORMAL));
    assert!(close_reply_code(&[3]).is_err());
    assert_eq!(close_reply_code(&[0x03, 0xE9, b'x']), Ok(1001));
    assert_eq!(close_reply_code(&1005u16.to_be_bytes()), Ok(CLOSE_NORMAL));
    assert!(close_reply_code(&999u16.to_be_bytes()).is_err());
    assert!(close_reply_code(&5000u16.to_be_bytes()).is_err());
    let mut b = BytesMut::new();
    encode_close(&mut b, 1000, &"é".repeat(100));
    assert!(b.len() <= 2 + 2 + MAX_CLOSE_REASON);
    assert!(std::str::from_utf8(&b[4..]).is_ok(), "the reason is cut on a character boundary");
}

proptest! {
    #[test]
    fn client_frames_round_trip(opcode in prop_oneof![Just(OP_BINARY), Just(OP_PING), Just(OP_PONG), Just(OP_CLOSE)],
                                mask in any::<[u8; 4]>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let control = opcode & 0x8 != 0;
        let payload = if control { &payload[..payload.len().min(125)] } else { &payload[..] };
        let mut f = BytesMut::new();
        encode_client_frame(&mut f, opcode, true, mask, payload);
        let (h, n) = Decoder::default().decode_header(&f, None).unwrap().unwrap();
        prop_assert_eq!(h, FrameHeader { opcode, fin: true, mask, len: payload.len() as u64 });
        // Unmasking in two arbitrary pieces gives the payload back.
        let mut body = f[n..].to_vec();
        let cut = body.len() / 3;
        let (a, b) = body.split_at_mut(cut);
        unmask(a, mask, 0);
        unmask(b, mask, cut as u64);
        prop_assert_eq!(&body[..], payload);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_headers_fit(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in proptest::option::of(0u64..1000)) {
        let mut d = Decoder::default();
        let mut rest = &bytes[..];
        while let Ok(Some((h, n))) = d.decode_header(rest, max) {
            prop_assert!(n <= MAX_HEADER && n <= rest.len());
            prop_assert!(!h.is_control() || (h.fin && h.len <= 125));
            let skip = (n as u64).saturating_add(h.len).min(rest.len() as u64) as usize;
            d.data_frame_done(&h);
            rest = &rest[skip..];
            if skip == 0 { break; }
        }
    }

    #[test]
    fn a_prefix_never_decides_differently(bytes in proptest::collection::vec(any::<u8>(), 0..20), cut in 0usize..20) {
        // Fed fewer bytes, the decoder either waits or reaches the same verdict.
        let full = Decoder::default().decode_header(&bytes, Some(1 << 20));
        let part = Decoder::default().decode_header(&bytes[..cut.min(bytes.len())], Some(1 << 20));
        if let Ok(Some(_)) | Err(_) = part {
            prop_assert_eq!(part, full);
        }
    }
}
