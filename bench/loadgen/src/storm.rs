//! `storm`: `rate` brand-new connections per second for the measured window; each logs in, runs
//! `SELECT 1` and closes. Reports successes, failures and the connect+query latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_postgres::NoTls;

use crate::measure::{cpu_us, percentile_ms, Errors, Sampler};
use crate::Common;

async fn one(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    let conn = tokio::spawn(conn);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

pub async fn run(c: &Common, rate: u32) -> anyhow::Result<String> {
    let sampler = Sampler::start(c.sample_url.as_deref(), &c.sample_db, c.sample_user.as_deref()).await?;
    let errors = Arc::new(Errors::default());
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = c.pid.and_then(cpu_us);
    let started = Instant::now();
    let total = u64::from(rate) * c.seconds;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        tick.tick().await;
        let (url, errors, failed) = (c.url.clone(), errors.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match tokio::time::timeout(Duration::from_secs(30), one(&url)).await {
                Ok(Ok(())) => Some(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)),
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.note(e);
                    None
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.note("timed out after 30 s");
                    None
                }
            }
        }));
    }
    let issue_s = started.elapsed().as_secs_f64();
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        if let Ok(Some(us)) = t.await {
            lat.push(us);
        }
    }
    let cpu1 = c.pid.and_then(cpu_us);
    let max_upstream = sampler.finish().await;
    lat.sort_unstable();
    let cpu_per_conn = match (cpu0, cpu1) {
        (Some(a), Some(b)) if !lat.is_empty() => format!("{:.1}", (b - a) as f64 / lat.len() as f64),
        _ => "n/a".into(),
    };
    Ok(format!(
        "mode=storm rate={rate} seconds={} issued_in_s={issue_s:.2} ok={} failed={} p50_ms={:.2} p99_ms={:.2} \
         max_upstream={max_upstream} cpu_us_per_conn={cpu_per_conn}",
        c.seconds,
        lat.len(),
        failed.load(Ordering::Relaxed),
        percentile_ms(&lat, 50.0),
        percentile_ms(&lat, 99.0),
    ))
}
