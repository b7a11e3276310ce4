//! Framing: split complete messages off a receive buffer, checking every declared length against a
//! limit *before* reserving memory for the body.
//!
//! Regular messages are `tag:u8 len:i32 body` (len counts itself); startup-phase packets have no tag.
//! A frame keeps its raw bytes so a proxy can forward it untouched.

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtoError;

/// PostgreSQL's own limit for the startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// PostgreSQL's limit for messages before authentication completes (`PQ_SMALL_MESSAGE_LIMIT`).
pub const MAX_PRE_AUTH_MESSAGE: usize = 10_000;
/// Absolute ceiling for any message (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB − 1).
pub const MAX_MESSAGE_CEILING: usize = (1 << 30) - 1;

/// Length limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted message after authentication (whole frame, header included).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_size: 64 << 20 }
    }
}

/// One complete tagged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    /// The whole message: tag, length and body.
    pub raw: Bytes,
}

impl Frame {
    /// The body after the 5-byte header.
    pub fn body(&self) -> &[u8] {
        self.raw.get(5..).unwrap_or_default()
    }
}

/// Splits one tagged message off `buf`. `Ok(None)` means "need more bytes" (capacity for the
/// rest of the frame has been reserved, bounded by `max`).
pub fn try_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtoError> {
    let Some(total) = frame_len(buf, max)? else { return Ok(None) };
    if buf.len() < total {
        reserve_frame(buf, total);
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    // `total` is at least 5, so the frame has its tag byte.
    let tag = raw.first().copied().unwrap_or_default();
    Ok(Some(Frame { tag, raw }))
}

/// The tag and whole length (header included) of the complete message at the start of `buf`,
/// checked as [`try_frame`] checks it, without splitting it off (for a relay that handles
/// messages where they lie). `Ok(None)` means "need more bytes"; then [`reserve_partial`].
pub fn peek_frame(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ProtoError> {
    match frame_len(buf, max)? {
        Some(total) if buf.len() >= total => Ok(Some((buf.first().copied().unwrap_or_default(), total))),
        _ => Ok(None),
    }
}

/// Reserves room for the rest of a partial message at the start of `buf` (what [`try_frame`]
/// does when it returns `Ok(None)`); nothing if its header is incomplete or invalid.
pub fn reserve_partial(buf: &mut BytesMut, max: usize) {
    if let Ok(Some(total)) = frame_len(buf, max) {
        if buf.len() < total {
            reserve_frame(buf, total);
        }
    }
}

/// The declared whole length of the message at the start of `buf`, checked against `max`;
/// `Ok(None)` until its 5-byte header is there.
fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtoError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let declared = i32::from_be_bytes(header_int(buf, 1));
    if declared < 4 {
        return Err(ProtoError::BadLength(declared.into()));
    }
    let total = declared as usize + 1;
    if total > max.min(MAX_MESSAGE_CEILING) {
        return Err(ProtoError::TooLarge { len: total, max });
    }
    Ok(Some(total))
}

/// Splits one untagged startup-phase packet off `buf`, returning its body (after the length).
pub fn try_startup(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let declared = i32::from_be_bytes(header_int(buf, 0));
    if declared < 8 {
        return Err(ProtoError::BadLength(declared.into()));
    }
    let total = declared as usize;
    if total > max {
        return Err(ProtoError::TooLarge { len: total, max });
    }
    if buf.len() < total {
        reserve_frame(buf, total);
        return Ok(None);
    }
    let mut packet = buf.split_to(total);
    packet.advance(4);
    Ok(Some(packet.freeze()))
}

/// Makes room for a whole frame of `total` bytes (already checked against the limit), allocating
/// exactly that. `BytesMut::reserve` is not bounded by `total`: it keeps the bytes already split
/// off the front of the allocation (a frame just consumed) in front of the new room, and grows a
/// `Vec`-backed buffer by doubling, so a peer could make one connection hold up to about twice
/// the limit.
fn reserve_frame(buf: &mut BytesMut, total: usize) {
    if buf.capacity() >= total {
        return;
    }
    let mut grown = BytesMut::with_capacity(total);
    grown.extend_from_slice(buf);
    *buf = grown;
}

/// Writes a tagged message: `tag`, the length placeholder, `body` from the closure, then patches the length.
pub fn write_msg(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    let start = out.len() - 4;
    body(out);
    patch_len(out, start);
}

/// Writes the length of everything from `start` (the length field itself included) at `start`.
/// tidepool never builds a message near 2 GiB (bodies are bounded far below), so the length fits.
pub(crate) fn patch_len(out: &mut BytesMut, start: usize) {
    let len = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// The big-endian 4 bytes at `at` of a buffer known to hold at least `at + 4` bytes.
fn header_int(buf: &[u8], at: usize) -> [u8; 4] {
    buf.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4])
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.extend_from_slice(s);
    out.extend_from_slice(&[0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_oversized_before_allocating() {
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        assert!(matches!(try_frame(&mut buf, 1024), Err(ProtoError::TooLarge { .. })));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn rejects_short_length() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert_eq!(try_frame(&mut buf, 1024), Err(ProtoError::BadLength(3)));
        let mut buf = BytesMut::from(&[0, 0, 0, 2][..]);
        assert_eq!(try_startup(&mut buf, 1024), Err(ProtoError::BadLength(2)));
    }

    #[test]
    fn splits_whole_frames() {
        let mut buf = BytesMut::new();
        write_msg(&mut buf, b'Q', |b| put_cstr(b, b"select 1"));
        write_msg(&mut buf, b'S', |_| {});
        let f = try_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"select 1\0");
        let f = try_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag, b'S');
        assert!(buf.is_empty());
        assert_eq!(try_frame(&mut buf, 1024).unwrap(), None);
    }

    proptest! {
        #[test]
        fn peeking_agrees_with_splitting(data in proptest::collection::vec(any::<u8>(), 0..256), max in 5usize..512) {
            let mut buf = BytesMut::from(&data[..]);
            let peeked = peek_frame(&data, max);
            match try_frame(&mut buf, max) {
                Ok(Some(f)) => prop_assert_eq!(peeked, Ok(Some((f.tag, f.raw.len())))),
                Ok(None) => prop_assert_eq!(peeked, Ok(None)),
                Err(e) => prop_assert_eq!(peeked, Err(e)),
            }
            let mut partial = BytesMut::from(&data[..]);
            reserve_partial(&mut partial, max);
            prop_assert_eq!(&partial[..], &data[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overallocate(data in proptest::collection::vec(any::<u8>(), 0..4096), max in 5usize..2048) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(f)) = try_frame(&mut buf, max) {
                prop_assert!(f.raw.len() <= max);
            }
            prop_assert!(buf.capacity() <= data.len().max(max) + 64);
            let mut buf = BytesMut::from(&data[..]);
            let _ = try_startup(&mut buf, max);
        }

        #[test]
        fn any_chunking_yields_same_frames(msgs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..20), cuts in proptest::collection::vec(1usize..32, 1..50)) {
            let mut wire = BytesMut::new();
            for (tag, body) in &msgs { write_msg(&mut wire, *tag, |b| b.extend_from_slice(body)); }
            let wire = wire.freeze();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut ci = 0;
            while pos < wire.len() {
                let n = cuts[ci % cuts.len()].min(wire.len() - pos);
                ci += 1;
                buf.extend_from_slice(&wire[pos..pos + n]);
                pos += n;
                while let Some(f) = try_frame(&mut buf, 1 << 20).unwrap() { out.push((f.tag, f.body().to_vec())); }
            }
            prop_assert_eq!(out, msgs);
        }
    }
}
