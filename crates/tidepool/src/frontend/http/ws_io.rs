//! Postgres over WebSocket: turns the upgraded connection into an `AsyncRead`/`AsyncWrite` byte
//! stream for the Postgres session code. The frame codec itself is sans-IO, in
//! `tidepool_proto::websocket`; this module owns the I/O, the limits and the login watch.
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

use bytes::{Buf, BytesMut};
use tidepool_proto::websocket::{self as ws, Decoder, CLOSE_NORMAL, CLOSE_TOO_BIG, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// Most bytes read from the socket at once (the WebSocket layer's whole read buffer).
pub const READ_CHUNK: usize = 8 * 1024;
/// Outgoing frames buffered before writes wait for the socket.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Largest payload put in one outgoing frame.
const MAX_OUT_FRAME: usize = 256 * 1024;

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
    decoder: Decoder,
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
            decoder: Decoder::default(),
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

    fn queue_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        ws::encode_close(&mut self.wbuf, code, reason);
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
        // Before login a message may be larger than the login allowance (the driver pipelines
        // its first query behind the password): only the bytes actually read before login
        // count, checked as they are handed over.
        let max_message = self.login.is_none().then_some(self.limits.max_message as u64);
        match self.decoder.decode_header(&self.rbuf, max_message) {
            Ok(None) => Ok(None),
            Ok(Some((h, n))) => {
                self.rbuf.advance(n);
                Ok(Some(Frame { opcode: h.opcode, fin: h.fin, mask: h.mask, remaining: h.len, offset: 0 }))
            }
            Err(v) => Err(self.fail(cx, v.code, v.reason)),
        }
    }

    /// Handles a complete control frame whose payload is at the start of `rbuf`.
    fn control(&mut self, cx: &mut Context<'_>, f: Frame) -> io::Result<()> {
        let mut payload = self.rbuf.split_to(f.remaining as usize);
        ws::unmask(&mut payload, f.mask, 0);
        match f.opcode {
            // A client that never reads its pongs does not get to grow the write buffer.
            OP_PING if !self.close_sent && self.wbuf.len() < WRITE_HIGH_WATER => {
                ws::encode_frame(&mut self.wbuf, OP_PONG, &payload);
                let _ = self.poll_write_out(cx);
            }
            OP_CLOSE => {
                let code = ws::close_reply_code(&payload).map_err(|v| self.fail(cx, v.code, v.reason))?;
                self.queue_close(code, "");
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
                        this.decoder.data_frame_done(&ws::FrameHeader { opcode: f.opcode, fin: f.fin, mask: f.mask, len: 0 });
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
                        ws::unmask(chunk, f.mask, f.offset);
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
        ws::encode_frame(&mut this.wbuf, OP_BINARY, out);
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
