//! What every mode measures besides its own counters: latency percentiles, the proxy's CPU time
//! (from `/proc/PID/stat`) and the peak number of upstream connections (sampled every 50 ms from
//! `pg_stat_activity` over a direct superuser connection).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

/// p-th percentile (0..=100) of microsecond samples, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0
}

/// CPU time (user + system) of a process in microseconds, or `None` if it cannot be read.
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 after the name and state.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 Hz on Linux (sysconf(_SC_CLK_TCK)); the workspace denies unsafe code.
    Some((utime + stime) * 10_000)
}

/// Samples the number of client backends of one database until stopped; keeps the maximum.
pub struct Sampler {
    pub max: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sampler {
    pub async fn start(url: Option<&str>, db: &str, user: Option<&str>) -> anyhow::Result<Self> {
        let max = Arc::new(AtomicI64::new(-1));
        let stop = Arc::new(AtomicBool::new(false));
        let Some(url) = url else { return Ok(Self { max, stop, task: None }) };
        let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(conn);
        let stmt = client
            .prepare(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                 AND ($2::text IS NULL OR usename = $2)",
            )
            .await?;
        let (m, s, db, user) = (max.clone(), stop.clone(), db.to_owned(), user.map(str::to_owned));
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Ok(row) = client.query_one(&stmt, &[&db, &user]).await {
                    m.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(Self { max, stop, task: Some(task) })
    }

    /// Stops sampling; the peak seen (-1 when sampling was off).
    pub async fn finish(mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// Keeps the first few distinct error messages for the report (stderr).
#[derive(Default)]
pub struct Errors {
    seen: std::sync::Mutex<Vec<String>>,
}

impl Errors {
    pub fn note(&self, e: impl std::fmt::Display) {
        let msg = e.to_string();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < 5 && !seen.contains(&msg) {
            eprintln!("loadgen: error: {msg}");
            seen.push(msg);
        }
    }
}
