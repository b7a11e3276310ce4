//! RFC 6455 WebSocket framing, server side, without I/O: decoding and validating client frame
//! headers (with the message-level state fragmentation needs), unmasking payload in pieces, and
//! encoding server frames and close replies.
//!
//! The decoder never buffers payload: it returns the header and its length, and the caller
//! streams the payload through [`unmask`] (the WebSocket front end hands binary payload to the
//! Postgres session as it arrives). Every violation carries the close code to answer with.

use bytes::{BufMut, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Longest close reason sent (a close frame's payload must stay under 126 bytes).
pub const MAX_CLOSE_REASON: usize = 120;
/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// A validated client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub opcode: u8,
    pub fin: bool,
    pub mask: [u8; 4],
    /// Payload length.
    pub len: u64,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// A protocol violation: close the connection with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// What the decoder remembers between frames: whether a fragmented binary message is open and
/// how many payload bytes it declared so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoder {
    in_message: bool,
    message_len: u64,
}

impl Decoder {
    /// Decodes the frame header at the start of `buf`. `Ok(None)`: more bytes are needed (at most
    /// [`MAX_HEADER`] are ever required). `Ok(Some((header, n)))`: the header took `n` bytes and
    /// the payload follows. `max_message` bounds a binary message's declared total (all
    /// fragments); `None` leaves it unbounded (the caller counts bytes as they arrive instead).
    pub fn decode_header(&mut self, buf: &[u8], max_message: Option<u64>) -> Result<Option<(FrameHeader, usize)>, Violation> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else { return Ok(None) };
        let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
        // Everything decidable from the first two bytes is decided before waiting for more.
        if rsv != 0 {
            return Err(violation(CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)"));
        }
        if b1 & 0x80 == 0 {
            return Err(violation(CLOSE_PROTOCOL, "client frames must be masked"));
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG if !fin || b1 & 0x7F > 125 => return Err(violation(CLOSE_PROTOCOL, "malformed control frame")),
            OP_CLOSE | OP_PING | OP_PONG => {}
            OP_TEXT => return Err(violation(CLOSE_UNSUPPORTED, "text WebSocket frames are not supported")),
            OP_BINARY if self.in_message => return Err(violation(CLOSE_PROTOCOL, "new message inside a fragmented one")),
            OP_CONTINUATION if !self.in_message => return Err(violation(CLOSE_PROTOCOL, "continuation without a message")),
            OP_BINARY | OP_CONTINUATION => {}
            _ => return Err(violation(CLOSE_PROTOCOL, "unknown opcode")),
        }
        let (len, at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            return Err(violation(CLOSE_PROTOCOL, "invalid frame length"));
        }
        let Some(mask) = buf.get(at..at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()) else { return Ok(None) };
        if opcode == OP_BINARY || opcode == OP_CONTINUATION {
            let total = self.message_len.saturating_add(len);
            if max_message.is_some_and(|max| total > max) {
                return Err(violation(CLOSE_TOO_BIG, "WebSocket message too large"));
            }
            self.message_len = total;
            self.in_message = !fin;
        }
        Ok(Some((FrameHeader { opcode, fin, mask, len }, at + 4)))
    }

    /// Call when a data frame's payload has been consumed: a final frame ends the message.
    pub fn data_frame_done(&mut self, h: &FrameHeader) {
        if h.fin && !h.is_control() {
            self.message_len = 0;
        }
    }

    /// Whether a fragmented message is open (continuations expected).
    pub fn in_message(&self) -> bool {
        self.in_message
    }
}

/// Unmasks (or masks) `payload` in place; `offset` is how many payload bytes of this frame came
/// before it, so a frame can be unmasked in pieces.
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: u64) {
    let mut k = (offset % 4) as usize;
    for byte in payload {
        *byte ^= mask.get(k).copied().unwrap_or(0);
        k = (k + 1) & 3;
    }
}

/// Appends an unmasked, final server frame.
pub fn encode_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    put_header(out, 0x80 | (opcode & 0x0F), 0, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends a masked client frame (for tests and fuzzing the decoder).
pub fn encode_client_frame(out: &mut BytesMut, opcode: u8, fin: bool, mask: [u8; 4], payload: &[u8]) {
    put_header(out, if fin { 0x80 } else { 0 } | (opcode & 0x0F), 0x80, payload.len() as u64);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(p) = out.get_mut(start..) {
        unmask(p, mask, 0);
    }
}

fn put_header(out: &mut BytesMut, b0: u8, mask_bit: u8, len: u64) {
    out.put_u8(b0);
    match len {
        n if n < 126 => out.put_u8(mask_bit | n as u8),
        n if n <= u64::from(u16::MAX) => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n);
        }
    }
}

/// Appends a close frame with `code` and at most [`MAX_CLOSE_REASON`] bytes of `reason`.
pub fn encode_close(out: &mut BytesMut, code: u16, reason: &str) {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes().get(..cut).unwrap_or_default());
    encode_frame(out, OP_CLOSE, &payload);
}

/// The code to echo for a client's (unmasked) close payload. Codes that must not appear on the
/// wire (1005, 1006, 1015) are answered with a normal close.
pub fn close_reply_code(payload: &[u8]) -> Result<u16, Violation> {
    match payload {
        [] => Ok(CLOSE_NORMAL),
        [_] => Err(violation(CLOSE_PROTOCOL, "malformed close frame")),
        [a, b, ..] => match u16::from_be_bytes([*a, *b]) {
            1005 | 1006 | 1015 => Ok(CLOSE_NORMAL),
            code if !(1000..=4999).contains(&code) => Err(violation(CLOSE_PROTOCOL, "invalid close code")),
            code => Ok(code),
        },
    }
}

#[cfg(test)]
mod tests;
