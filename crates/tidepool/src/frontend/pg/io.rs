//! Buffer helpers of the session loop: growing a read buffer without doubling a large one, and
//! writing (then flushing) as much of a buffer as a stream takes without blocking.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;

pub(super) fn reserve(buf: &mut BytesMut, want: usize) {
    let spare = buf.capacity() - buf.len();
    // A partial message whose header was seen already has exactly its size reserved by the
    // framing layer; growing it here could double a large buffer.
    if buf.len() >= 5 && spare > 0 {
        return;
    }
    if spare < want / 4 {
        buf.reserve(want);
    }
}

/// Writes as much of `buf` as the stream takes now; flushes once it is empty.
#[inline]
pub(super) fn write_some<W: AsyncWrite + Unpin>(w: &mut W, buf: &mut BytesMut, needs_flush: &mut bool, cx: &mut Context<'_>) -> std::io::Result<()> {
    // Most turns of the session loop have nothing to write (checked without a call).
    if buf.is_empty() && !*needs_flush {
        return Ok(());
    }
    write_pending(w, buf, needs_flush, cx)
}

fn write_pending<W: AsyncWrite + Unpin>(w: &mut W, buf: &mut BytesMut, needs_flush: &mut bool, cx: &mut Context<'_>) -> std::io::Result<()> {
    while !buf.is_empty() {
        match Pin::new(&mut *w).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                *needs_flush = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    if *needs_flush {
        match Pin::new(&mut *w).poll_flush(cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(())
}
