//! `tidepool_proto::framing::{try_frame, try_startup}` on a byte stream delivered in arbitrary
//! chunks, as a socket would deliver it.
//!
//! Invariants:
//! * no panic;
//! * a returned frame never exceeds the limit, its length word matches its size, and it is
//!   exactly the next bytes of the stream (nothing lost, duplicated or reordered);
//! * `Ok(None)` consumes nothing and, once the header is in, has reserved room for the whole
//!   frame;
//! * an error is justified by the header it names (`BadLength` below the minimum, `TooLarge`
//!   above the limit);
//! * memory: no single allocation made inside `try_frame`/`try_startup` exceeds the limit plus
//!   a small slack, the buffer's capacity never grows past `max(capacity before, limit) + slack`
//!   in one call, and (with an exact-growth reader) never past `max(limit, bytes buffered) + slack`.
//!
//! Input: [`tidepool_fuzz::format::Framing`].
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tidepool_fuzz::format::Framing;
use tidepool_proto::framing::{try_frame, try_startup, MAX_MESSAGE_CEILING};
use tidepool_proto::ProtoError;

/// Allowed overshoot of the limit (allocator rounding, header bytes).
const SLACK: usize = 64;

/// Records the largest single allocation since the last `reset`.
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Chunk sizes from a tiny xorshift; seed 0 delivers the whole stream at once.
struct Chunks(u32, usize);

impl Chunks {
    fn new(seed: u8) -> Self {
        let max = match seed >> 5 {
            0 => 1,
            1 => 4,
            2 => 16,
            3 => 64,
            4 => 512,
            5 => 4096,
            6 => 65536,
            _ => usize::MAX,
        };
        Chunks(u32::from(seed) | 0x9e37_0000, max)
    }
    fn next(&mut self) -> usize {
        if self.1 == usize::MAX {
            return usize::MAX;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        1 + (self.0 as usize) % self.1
    }
}

/// Appends like a reader that grows the buffer to exactly what it needs.
fn feed_exact(buf: &mut BytesMut, chunk: &[u8]) {
    if buf.capacity() - buf.len() < chunk.len() {
        let mut grown = BytesMut::with_capacity(buf.len() + chunk.len());
        grown.extend_from_slice(buf);
        *buf = grown;
    }
    buf.extend_from_slice(chunk);
}

/// Appends like tidepool's session loop: keep some read-ahead room, then read.
fn feed_tidepool(buf: &mut BytesMut, chunk: &[u8]) {
    if buf.capacity() - buf.len() < 256 / 4 {
        buf.reserve(256);
    }
    buf.extend_from_slice(chunk);
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framing::decode(data) else { return };
    let startup = input.mode & 1 != 0;
    let tidepool_reader = input.mode & 4 != 0;
    let limit = input.limit;
    let stream = input.stream;
    // Tagged frames: header 5 bytes, length counts itself, minimum 4, total = len + 1, and the
    // ceiling applies whatever the limit. Startup packets: header 4, minimum 8, total = len.
    let (header, min_len) = if startup { (4, 8) } else { (5, 4) };
    let effective = if startup { limit } else { limit.min(MAX_MESSAGE_CEILING) };

    let mut chunks = Chunks::new(input.chunk_seed);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut framed = 0;
    let mut most_buffered = 0;
    while fed < stream.len() {
        let n = chunks.next().min(stream.len() - fed);
        if tidepool_reader {
            feed_tidepool(&mut buf, &stream[fed..fed + n]);
        } else {
            feed_exact(&mut buf, &stream[fed..fed + n]);
        }
        fed += n;
        most_buffered = most_buffered.max(buf.len());
        assert_eq!(buf.len(), fed - framed);

        loop {
            let cap_before = buf.capacity();
            let len_before = buf.len();
            let declared = (len_before >= header).then(|| {
                let at = if startup { 0 } else { 1 };
                i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
            });
            LARGEST.store(0, Ordering::Relaxed);
            let result = if startup {
                try_startup(&mut buf, limit).map(|o| o.map(|body| (body.len() + 4, body)))
            } else {
                try_frame(&mut buf, limit).map(|o| {
                    o.map(|f| {
                        assert_eq!(f.raw.first(), Some(&f.tag));
                        (f.raw.len(), f.raw)
                    })
                })
            };
            let largest = LARGEST.load(Ordering::Relaxed);
            assert!(largest <= limit + SLACK, "allocated {largest} bytes with limit {limit}");
            assert!(buf.capacity() <= cap_before.max(limit + SLACK), "capacity grew from {cap_before} to {} with limit {limit}", buf.capacity());
            match result {
                Ok(Some((total, bytes))) => {
                    let declared = declared.expect("a frame needs a header");
                    let expected_total = if startup { declared as usize } else { declared as usize + 1 };
                    assert_eq!(total, expected_total);
                    assert!(total <= limit && total <= effective);
                    assert!(declared >= min_len);
                    let start = if startup { framed + 4 } else { framed };
                    assert_eq!(&bytes[..], &stream[start..framed + total]);
                    framed += total;
                    assert_eq!(buf.len(), len_before - total);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), len_before, "Ok(None) must not consume");
                    if let Some(d) = declared {
                        let total = if startup { d as usize } else { d as usize + 1 };
                        assert!(d >= min_len && total <= effective && total > len_before);
                        assert!(buf.capacity() >= total, "room for the rest of the frame was not reserved");
                    }
                    break;
                }
                Err(ProtoError::BadLength(d)) => {
                    assert_eq!(Some(d), declared.map(i64::from));
                    assert!(d < i64::from(min_len));
                    return;
                }
                Err(ProtoError::TooLarge { len, max }) => {
                    let d = declared.expect("TooLarge needs a header");
                    assert!(d >= min_len);
                    assert_eq!(len, if startup { d as usize } else { d as usize + 1 });
                    assert_eq!(max, limit);
                    assert!(len > effective);
                    return;
                }
                Err(other) => panic!("unexpected framing error {other:?}"),
            }
        }
        if !tidepool_reader {
            assert!(
                buf.capacity() <= limit.max(most_buffered) + SLACK,
                "buffer capacity {} exceeds limit {limit} (most buffered {most_buffered})",
                buf.capacity()
            );
        }
    }
});
