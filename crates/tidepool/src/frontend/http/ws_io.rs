//! Postgres over WebSocket: a server-side RFC 6455 codec that turns the upgraded connection into
//! an `AsyncRead`/`AsyncWrite` byte stream for the Postgres session code.
//!
//! Binary frames are streamed: their payload is unmasked and handed to the reader as it arrives,
//! fragments included, so no WebSocket message is ever assembled in memory (what the connection
//! holds is one read chunk, [`READ_CHUNK`], plus what the session itself buffers). Text frames,
//! unmasked or reserved-bit frames and malformed control frames close the connection with the
//! matching close code; pings are answered; a close is echoed.
//!
//! Before the Postgres login has succeeded (tidepool sent `AuthenticationOk`), a client may send
//! at most `ws_max_login_bytes` of payload and holds a permit of the listener's pre-auth
//! semaphore; both are dropped at `AuthenticationOk`. Afterwards a message may be up to
//! `max_ws_message_size`. A connection idle longer than `idle_timeout` reads as closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// Most bytes read from the socket at once (the WebSocket layer's whole read buffer).
pub const READ_CHUNK: usize = 8 * 1024;
/// Outgoing frames buffered before writes wait for the socket.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Largest payload put in one outgoing frame.
const MAX_OUT_FRAME: usize = 256 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_TOO_BIG: u16 = 1009;

/// Limits of one WebSocket connection.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Payload bytes a client may send before its login succeeded.
    pub max_login_bytes: usize,
    /// Largest message (all fragments) after login.
    pub max_message: usize,
    pub idle_timeout: Duration,
}

/// The frame being received.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes not yet consumed.
    remaining: u64,
    /// Payload bytes already consumed (position in the mask cycle).
    offset: u64,
}

pub struct WsStream<I> {
    io: I,
    rbuf: BytesMut,
    frame: Option<Frame>,
    /// Inside a fragmented binary message (continuations expected).
    in_message: bool,
    message_len: u64,
    wbuf: BytesMut,
    /// Nothing more will be read (close received, error, idle timeout, peer gone).
    read_done: bool,
    /// A close frame has been queued; nothing else may be sent.
    close_sent: bool,
    limits: WsLimits,
    /// Payload bytes handed to the session before login.
    login_bytes: usize,
    /// `None` once the login succeeded.
    login: Option<LoginWatch>,
    idle: Pin<Box<Sleep>>,
}

/// Pre-login state: the pre-auth permit and the watch for `AuthenticationOk`.
struct LoginWatch {
    _permit: Option<OwnedSemaphorePermit>,
    sniffer: AuthSniffer,
}

impl<I: AsyncRead + AsyncWrite + Unpin> WsStream<I> {
    pub fn new(io: I, limits: WsLimits, preauth: Option<OwnedSemaphorePermit>) -> Self {
        WsStream {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            frame: None,
            in_message: false,
            message_len: 0,
            wbuf: BytesMut::new(),
            read_done: false,
            close_sent: false,
            limits,
            login_bytes: 0,
            login: Some(LoginWatch { _permit: preauth, sniffer: AuthSniffer::default() }),
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    /// Whether the Postgres login has succeeded on this connection.
    #[cfg(test)]
    pub fn logged_in(&self) -> bool {
        self.login.is_none()
    }

    fn touch(&mut self) {
        let deadline = Instant::now() + self.limits.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }

    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.wbuf.put_u8(0x80 | opcode);
        match payload.len() {
            n if n < 126 => self.wbuf.put_u8(n as u8),
            n if n <= usize::from(u16::MAX) => {
                self.wbuf.put_u8(126);
                self.wbuf.put_u16(n as u16);
            }
            n => {
                self.wbuf.put_u8(127);
                self.wbuf.put_u64(n as u64);
            }
        }
        self.wbuf.extend_from_slice(payload);
    }

    fn queue_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
        self.queue_frame(OP_CLOSE, &payload);
    }

    /// Ends reading with a close frame carrying `code`, and an error for the reader.
    fn fail(&mut self, cx: &mut Context<'_>, code: u16, reason: &'static str) -> io::Error {
        self.queue_close(code, reason);
        self.read_done = true;
        let _ = self.poll_write_out(cx);
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }

    /// Writes buffered frames; `Ready(Ok)` once all are written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.wbuf.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.wbuf.capacity() > WRITE_HIGH_WATER {
            self.wbuf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more raw bytes; `Ready(Ok(false))` when the peer closed the socket.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut tmp = [0u8; READ_CHUNK];
        let mut rb = ReadBuf::new(&mut tmp);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(())) => {
                self.rbuf.extend_from_slice(rb.filled());
                self.touch();
                Poll::Ready(Ok(true))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Parses a frame header from `rbuf`; `Ok(None)` if more bytes are needed.
    fn parse_header(&mut self, cx: &mut Context<'_>) -> io::Result<Option<Frame>> {
        let b = &self.rbuf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (b[0], b[1]);
        let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]), 10),
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if b.len() < at + 4 {
            return Ok(None);
        }
        let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        if rsv != 0 {
            return Err(self.fail(cx, CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)"));
        }
        if !masked {
            return Err(self.fail(cx, CLOSE_PROTOCOL, "client frames must be masked"));
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG if !fin || len > 125 => return Err(self.fail(cx, CLOSE_PROTOCOL, "malformed control frame")),
            OP_CLOSE | OP_PING | OP_PONG => {}
            OP_TEXT => return Err(self.fail(cx, CLOSE_UNSUPPORTED, "text WebSocket frames are not supported")),
            OP_BINARY if self.in_message => return Err(self.fail(cx, CLOSE_PROTOCOL, "new message inside a fragmented one")),
            OP_CONTINUATION if !self.in_message => return Err(self.fail(cx, CLOSE_PROTOCOL, "continuation without a message")),
            OP_BINARY | OP_CONTINUATION => {
                if len >> 63 != 0 {
                    return Err(self.fail(cx, CLOSE_PROTOCOL, "invalid frame length"));
                }
                // Before login a message may be larger than the login allowance (the driver
                // pipelines its first query behind the password): only the bytes actually read
                // before login count, checked as they are handed over.
                let total = self.message_len.saturating_add(len);
                if self.login.is_none() && total > self.limits.max_message as u64 {
                    return Err(self.fail(cx, CLOSE_TOO_BIG, "WebSocket message too large"));
                }
                self.message_len = total;
                self.in_message = !fin;
            }
            _ => return Err(self.fail(cx, CLOSE_PROTOCOL, "unknown opcode")),
        }
        self.rbuf.advance(at);
        Ok(Some(Frame { opcode, fin, mask, remaining: len, offset: 0 }))
    }

    /// Handles a complete control frame whose payload is at the start of `rbuf`.
    fn control(&mut self, cx: &mut Context<'_>, f: Frame) -> io::Result<()> {
        let mut payload = self.rbuf.split_to(f.remaining as usize);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= f.mask[i % 4];
        }
        match f.opcode {
            // A client that never reads its pongs does not get to grow the write buffer.
            OP_PING if !self.close_sent && self.wbuf.len() < WRITE_HIGH_WATER => {
                self.queue_frame(OP_PONG, &payload);
                let _ = self.poll_write_out(cx);
            }
            OP_CLOSE => {
                let code = match payload.len() {
                    0 => CLOSE_NORMAL,
                    1 => return Err(self.fail(cx, CLOSE_PROTOCOL, "malformed close frame")),
                    _ => u16::from_be_bytes([payload[0], payload[1]]),
                };
                self.queue_close(if code == 1005 || code == 1006 || code == 1015 { CLOSE_NORMAL } else { code }, "");
                self.read_done = true;
                let _ = self.poll_write_out(cx);
            }
            _ => {}
        }
        Ok(())
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Pongs and close replies go out whenever the reader is polled.
        if !this.wbuf.is_empty() {
            let _ = this.poll_write_out(cx);
        }
        loop {
            if this.read_done || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.frame {
                Some(mut f) if f.opcode == OP_BINARY || f.opcode == OP_CONTINUATION => {
                    if f.remaining == 0 {
                        this.frame = None;
                        if f.fin {
                            this.message_len = 0;
                        }
                        continue;
                    }
                    if !this.rbuf.is_empty() {
                        let mut n = (f.remaining.min(this.rbuf.len() as u64) as usize).min(buf.remaining());
                        if this.login.is_some() {
                            let left = this.limits.max_login_bytes.saturating_sub(this.login_bytes);
                            if left == 0 {
                                return Poll::Ready(Err(this.fail(cx, CLOSE_TOO_BIG, "too much data before login")));
                            }
                            n = n.min(left);
                            this.login_bytes += n;
                        }
                        let chunk = &mut this.rbuf[..n];
                        for (i, byte) in chunk.iter_mut().enumerate() {
                            *byte ^= f.mask[((f.offset + i as u64) % 4) as usize];
                        }
                        buf.put_slice(chunk);
                        this.rbuf.advance(n);
                        f.remaining -= n as u64;
                        f.offset += n as u64;
                        this.frame = Some(f);
                        return Poll::Ready(Ok(()));
                    }
                }
                Some(f) => {
                    if this.rbuf.len() as u64 >= f.remaining {
                        this.frame = None;
                        this.control(cx, f)?;
                        continue;
                    }
                }
                None => {
                    if let Some(f) = this.parse_header(cx)? {
                        this.frame = Some(f);
                        continue;
                    }
                }
            }
            // More bytes are needed.
            match this.poll_fill(cx) {
                Poll::Ready(Ok(true)) => continue,
                Poll::Ready(Ok(false)) => {
                    this.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        this.read_done = true;
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.wbuf.len() >= WRITE_HIGH_WATER {
            match this.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if this.wbuf.len() >= WRITE_HIGH_WATER => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_OUT_FRAME);
        let out = &buf[..n];
        if let Some(watch) = this.login.as_mut() {
            if watch.sniffer.feed(out) {
                // Logged in: the pre-auth permit is returned and the full message size applies.
                this.login = None;
            }
        }
        this.queue_frame(OP_BINARY, out);
        this.touch();
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_write_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.queue_close(CLOSE_NORMAL, "");
        match this.poll_write_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

/// Watches tidepool's own output before login for `AuthenticationOk` (`R`, length 8, code 0):
/// the moment the client is authenticated. The only unframed server byte in the protocol, the
/// `N` refusing an SSLRequest/GSSENCRequest, can only come before any framed message.
#[derive(Default)]
struct AuthSniffer {
    head: [u8; 9],
    have: usize,
    skip: usize,
    framed: bool,
}

impl AuthSniffer {
    /// Feeds outgoing bytes; true once `AuthenticationOk` went out.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        while let Some(&first) = data.first() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            if !self.framed && self.have == 0 && first == b'N' {
                data = &data[1..];
                continue;
            }
            self.head[self.have] = first;
            self.have += 1;
            data = &data[1..];
            let len = |h: &[u8; 9]| u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if self.have == 5 && (self.head[0] != b'R' || len(&self.head) < 8) {
                self.skip = len(&self.head).saturating_sub(4);
                self.have = 0;
                self.framed = true;
            } else if self.have == 9 {
                let code = u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]]);
                if code == 0 {
                    return true;
                }
                self.skip = len(&self.head).saturating_sub(8);
                self.have = 0;
                self.framed = true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
