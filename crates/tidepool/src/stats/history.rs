//! The dashboard's short memory of one database: a ring of 1-second samples (requests, errors,
//! p50/p99 latency estimated from the duration buckets) and a bounded ring of recent error
//! messages. Fed by a sampler task once a second; read by `GET /api/stats`.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use super::{Front, BUCKETS};

/// Seconds of history kept (five minutes).
pub const SAMPLES: usize = 300;
/// Recent error messages kept per database.
pub const ERRORS: usize = 20;
/// Longest error message kept (characters).
const ERROR_CHARS: usize = 300;

#[derive(Clone, Copy, Serialize, Default, Debug)]
pub struct Sample {
    /// Unix time, seconds.
    pub t: u64,
    /// Requests (transactions) finished during this second.
    pub requests: u64,
    /// Of which did not end `ok`.
    pub errors: u64,
    /// Estimated latency percentiles of that second, milliseconds (0 without requests).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Serialize, Debug)]
pub struct ErrorEntry {
    pub t: u64,
    pub front: &'static str,
    pub message: String,
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<Sample>,
    last: Option<([u64; BUCKETS.len() + 1], u64)>,
}

#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
    errors: Mutex<VecDeque<ErrorEntry>>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `q` quantile (0..1) of requests counted per bucket, interpolated within its bucket, in ms.
pub fn quantile_ms(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (seen + c) as f64 >= rank {
            let lo = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let Some(&hi) = BUCKETS.get(i) else { return lo * 1000.0 };
            let within = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
            return (lo + (hi - lo) * within) * 1000.0;
        }
        seen += c;
    }
    BUCKETS[BUCKETS.len() - 1] * 1000.0
}

impl History {
    /// Takes one sample from the running totals (called once a second).
    pub fn sample(&self, totals: ([u64; BUCKETS.len() + 1], u64)) {
        let mut inner = self.inner.lock();
        let (buckets, errors) = totals;
        let (prev_buckets, prev_errors) = inner.last.unwrap_or(totals);
        let delta: Vec<u64> = buckets.iter().zip(prev_buckets.iter()).map(|(a, b)| a.saturating_sub(*b)).collect();
        let sample = Sample {
            t: now(),
            requests: delta.iter().sum(),
            errors: errors.saturating_sub(prev_errors),
            p50_ms: quantile_ms(&delta, 0.5),
            p99_ms: quantile_ms(&delta, 0.99),
        };
        inner.last = Some(totals);
        if inner.samples.len() == SAMPLES {
            inner.samples.pop_front();
        }
        inner.samples.push_back(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.inner.lock().samples.iter().copied().collect()
    }

    pub fn note_error(&self, front: Front, message: &str) {
        let message: String = message.chars().take(ERROR_CHARS).collect();
        let mut errors = self.errors.lock();
        if errors.len() == ERRORS {
            errors.pop_front();
        }
        errors.push_back(ErrorEntry { t: now(), front: front.name(), message });
    }

    /// Most recent first.
    pub fn errors(&self) -> Vec<ErrorEntry> {
        self.errors.lock().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deltas_and_bounded() {
        let h = History::default();
        let mut b = [0u64; BUCKETS.len() + 1];
        h.sample((b, 0));
        b[4] = 10; // ten requests of 5–10 ms
        h.sample((b, 2));
        let s = h.samples();
        assert_eq!((s[0].requests, s[1].requests, s[1].errors), (0, 10, 2));
        assert!(s[1].p50_ms > 5.0 && s[1].p50_ms <= 10.0, "{:?}", s[1]);
        for _ in 0..SAMPLES + 5 {
            h.sample((b, 2));
        }
        assert_eq!(h.samples().len(), SAMPLES);
        for i in 0..ERRORS + 3 {
            h.note_error(Front::Wire, &format!("e{i}"));
        }
        let e = h.errors();
        assert_eq!((e.len(), e[0].message.as_str()), (ERRORS, format!("e{}", ERRORS + 2).as_str()));
    }
}
