//! Memory bound of framing, measured with a counting allocator (its own test binary, so the
#![allow(unsafe_code)] // a counting global allocator is the point of this test
//! allocator only watches these tests): while waiting for the rest of a frame, `try_frame` and
//! `try_startup` must not allocate more than the frame needs, whatever the buffer held before.
//! Regression tests for a bug found by the fuzz target `proto_framing`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::BytesMut;
use tidepool_proto::framing::{try_frame, try_startup, write_msg};

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// The counter is global: run the measured sections one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
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

/// Largest single allocation made by `f`.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (usize, T) {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    (LARGEST.load(Ordering::Relaxed), out)
}

/// A frame already taken off the front of the buffer must not make the room reserved for the
/// next frame bigger: `BytesMut::reserve` would allocate `consumed + total` (the minimised fuzz
/// input: a 65-byte frame, then one declaring the whole 1 MiB limit, arriving byte by byte).
#[test]
fn a_consumed_frame_does_not_inflate_the_next_reservation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let max = 1 << 20;
    for consumed in [65, 4096, 512 << 10] {
        let mut buf = BytesMut::new();
        write_msg(&mut buf, b'R', |b| b.resize(b.len() + consumed - 5, 0));
        // The next frame declares exactly the limit; only its header has arrived.
        buf.extend_from_slice(&[b'D', 0, 0x0f, 0xff, 0xff]);
        let first = try_frame(&mut buf, max).unwrap().unwrap();
        assert_eq!(first.raw.len(), consumed);
        drop(first);
        let (largest, r) = largest_allocation(|| try_frame(&mut buf, max));
        assert_eq!(r, Ok(None));
        assert!(buf.capacity() >= max, "room for the whole frame");
        assert!(largest <= max, "allocated {largest} bytes for a {max}-byte frame after a {consumed}-byte one");
    }
}

/// Room already in the buffer must not be doubled: `Vec`'s amortised growth would turn a
/// 600 KiB read buffer into 1.2 MiB for a frame of 1 MiB + 1.
#[test]
fn reserving_for_a_frame_does_not_double_the_buffer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let max = (1 << 20) + 1;
    let mut buf = BytesMut::with_capacity(600 << 10);
    buf.extend_from_slice(&[b'd', 0, 0x10, 0, 0]);
    buf.resize(500 << 10, b'x');
    let (largest, r) = largest_allocation(|| try_frame(&mut buf, max));
    assert_eq!(r, Ok(None));
    assert!(buf.capacity() >= max);
    assert!(buf.capacity() <= max + 64, "capacity {} for a {max}-byte frame", buf.capacity());
    assert!(largest <= max + 64, "allocated {largest} bytes for a {max}-byte frame");
    assert_eq!(&buf[..5], &[b'd', 0, 0x10, 0, 0], "the partial frame is kept");
    assert_eq!(buf.len(), 500 << 10);
}

#[test]
fn startup_packets_get_the_same_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let max = 10_000;
    let mut buf = BytesMut::with_capacity(6000);
    buf.extend_from_slice(&10_000i32.to_be_bytes());
    buf.resize(5000, 0);
    let (largest, r) = largest_allocation(|| try_startup(&mut buf, max));
    assert_eq!(r, Ok(None));
    assert!(buf.capacity() >= max && buf.capacity() <= max + 64, "capacity {}", buf.capacity());
    assert!(largest <= max + 64, "allocated {largest} bytes for a {max}-byte packet");
}
