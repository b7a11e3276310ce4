//! One cached result: the final response bytes (served as they are, never re-serialised) and the
//! metadata that decides its status — when it was made (wall clock for `last-modified` and for
//! other nodes, monotonic for ages), the ttl/swr it was stored with, its tags and the tables it
//! read. Entries encode to a small versioned binary form for the shared tier ([`Entry::encode`],
//! [`Entry::decode`]); decoding is bounds-checked and never panics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::Instant;

/// How old an entry is, judged against a request's strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Younger than ttl: serve (`ttl`).
    Fresh,
    /// Past ttl, within ttl + swr: serve and refresh once in the background (`swr`).
    Stale,
    /// Past ttl + swr: run on the database (`miss`).
    Expired,
}

/// A cached result.
#[derive(Debug)]
pub struct Entry {
    /// The database it was read from (invalidation scope).
    pub database: Arc<str>,
    /// The response body, exactly as sent.
    pub payload: Bytes,
    /// Wall-clock creation time, milliseconds since the epoch.
    pub created_ms: u64,
    /// Monotonic creation time on this node (derived from `created_ms` for entries from another
    /// node).
    pub created: Instant,
    pub ttl: Duration,
    pub swr: Duration,
    pub tags: Vec<String>,
    pub tables: Vec<String>,
    /// `last-modified`, formatted once.
    pub last_modified: HeaderValue,
}

const VERSION: u8 = 1;
/// Most tags or tables an encoded entry may carry, and the longest one (bytes).
const MAX_LIST: usize = 1024;
const MAX_NAME: usize = 1024;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn http_date(ms: u64) -> HeaderValue {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

impl Entry {
    /// A result made now.
    pub fn new(database: Arc<str>, payload: Bytes, ttl: Duration, swr: Duration, tags: Vec<String>, tables: Vec<String>) -> Entry {
        let created_ms = now_ms();
        Entry { database, payload, created_ms, created: Instant::now(), ttl, swr, tags, tables, last_modified: http_date(created_ms) }
    }

    /// Its freshness for a request that accepts results up to `ttl` old, and stale ones for `swr`
    /// more.
    pub fn freshness(&self, now: Instant, ttl: Duration, swr: Duration) -> Freshness {
        let age = now.saturating_duration_since(self.created);
        if age < ttl {
            Freshness::Fresh
        } else if age < ttl.saturating_add(swr) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// How long the entry is worth keeping at all (its own ttl + swr).
    pub fn lifetime(&self) -> Duration {
        self.ttl.saturating_add(self.swr)
    }

    /// Bytes it costs in memory (payload + bookkeeping), for size-weighted eviction.
    pub fn weight(&self) -> u64 {
        let lists: usize = self.tags.iter().chain(&self.tables).map(|s| s.len() + 24).sum();
        (self.payload.len() + lists + self.database.len() + 160) as u64
    }

    /// The binary form for the shared tier: version, created-ms, ttl-ms, swr-ms, database, tags,
    /// tables, payload (lengths as u32, big-endian).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.payload.len() + 64 + self.tags.len() * 16 + self.tables.len() * 16);
        b.put_u8(VERSION);
        b.put_u64(self.created_ms);
        b.put_u64(self.ttl.as_millis() as u64);
        b.put_u64(self.swr.as_millis() as u64);
        put_str(&mut b, &self.database);
        for list in [&self.tags, &self.tables] {
            b.put_u32(list.len() as u32);
            for s in list {
                put_str(&mut b, s);
            }
        }
        b.put_u32(self.payload.len() as u32);
        b.put_slice(&self.payload);
        b.freeze()
    }

    /// Reads [`Entry::encode`]'s form; `None` for anything malformed. Its monotonic creation time
    /// is placed as far in the past as the wall clocks say.
    pub fn decode(mut b: Bytes) -> Option<Entry> {
        if b.remaining() < 1 + 24 || b.get_u8() != VERSION {
            return None;
        }
        let created_ms = b.get_u64();
        let ttl = Duration::from_millis(b.get_u64());
        let swr = Duration::from_millis(b.get_u64());
        let database: Arc<str> = get_str(&mut b)?.into();
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = get_u32(&mut b)? as usize;
            if n > MAX_LIST {
                return None;
            }
            for _ in 0..n {
                list.push(get_str(&mut b)?);
            }
        }
        let n = get_u32(&mut b)? as usize;
        if b.remaining() != n {
            return None;
        }
        let payload = b.split_to(n);
        let age = Duration::from_millis(now_ms().saturating_sub(created_ms));
        let now = Instant::now();
        let created = now.checked_sub(age).unwrap_or(now);
        let [tags, tables] = lists;
        Some(Entry { database, payload, created_ms, created, ttl, swr, tags, tables, last_modified: http_date(created_ms) })
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn get_u32(b: &mut Bytes) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32())
}

fn get_str(b: &mut Bytes) -> Option<String> {
    let n = get_u32(b)? as usize;
    if n > MAX_NAME || b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::new(
            "app".into(),
            Bytes::from_static(b"{\"data\":[1]}"),
            Duration::from_secs(10),
            Duration::from_secs(5),
            vec!["users".into()],
            vec!["User".into()],
        )
    }

    #[test]
    fn encode_decode_round_trip() {
        let e = entry();
        let d = Entry::decode(e.encode()).expect("decodes");
        assert_eq!((&*d.database, &d.payload, d.created_ms, d.ttl, d.swr), (&*e.database, &e.payload, e.created_ms, e.ttl, e.swr));
        assert_eq!((d.tags, d.tables), (e.tags, e.tables));
        assert_eq!(d.last_modified, e.last_modified);
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let good = entry().encode();
        for n in 0..good.len() {
            assert!(Entry::decode(good.slice(..n)).is_none(), "truncated at {n}");
        }
        let mut bad = good.to_vec();
        bad[0] = 9;
        assert!(Entry::decode(Bytes::from(bad)).is_none());
        let mut long = good.to_vec();
        long.push(0);
        assert!(Entry::decode(Bytes::from(long)).is_none());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Entry::decode(Bytes::from(bytes));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn freshness_follows_ttl_then_swr() {
        let e = entry();
        let (ttl, swr) = (Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(e.freshness(Instant::now(), ttl, swr), Freshness::Fresh);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(e.freshness(Instant::now(), ttl, swr), Freshness::Fresh);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(e.freshness(Instant::now(), ttl, swr), Freshness::Stale);
        assert_eq!(e.freshness(Instant::now(), ttl, Duration::ZERO), Freshness::Expired);
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(e.freshness(Instant::now(), ttl, swr), Freshness::Stale);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(e.freshness(Instant::now(), ttl, swr), Freshness::Expired);
    }
}
