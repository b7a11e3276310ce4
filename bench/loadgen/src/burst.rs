//! `burst`: N clients log in (at most `connect_concurrency` handshakes at a time), wait at a
//! barrier, then each runs the same select-only transaction in a loop for the measured window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use tokio::sync::{Barrier, Semaphore};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::measure::{cpu_us, percentile_ms, Errors, Sampler};
use crate::{secs, Common, Protocol};

const SIMPLE: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = ";
const EXTENDED: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

async fn connect(url: &str, errors: &Errors) -> Option<Client> {
    match tokio_postgres::connect(url, NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            errors.note(format_args!("connect: {e}"));
            None
        }
    }
}

async fn one_transaction(client: &Client, protocol: Protocol, aid: i32) -> Result<(), tokio_postgres::Error> {
    match protocol {
        // The integer is generated here, never client text: this is the bench's own query.
        Protocol::Simple => client.simple_query(&format!("{SIMPLE}{aid}")).await.map(drop),
        Protocol::Extended => client.query_typed(EXTENDED, &[(&aid, Type::INT4)]).await.map(drop),
    }
}

pub async fn run(c: &Common, clients: usize, connect_concurrency: usize, protocol: Protocol, scale: i32) -> anyhow::Result<String> {
    let sampler = Sampler::start(c.sample_url.as_deref(), &c.sample_db, c.sample_user.as_deref()).await?;
    let errors = Arc::new(Errors::default());
    let gate = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let connect_failed = Arc::new(AtomicU64::new(0));
    let max_aid = scale.max(1) * 100_000;

    let login_started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (url, gate, barrier, stop) = (c.url.clone(), gate.clone(), barrier.clone(), stop.clone());
        let (errors, failed, connect_failed) = (errors.clone(), failed.clone(), connect_failed.clone());
        tasks.push(tokio::spawn(async move {
            let client = {
                let _permit = gate.acquire().await;
                connect(&url, &errors).await
            };
            if client.is_none() {
                connect_failed.fetch_add(1, Ordering::Relaxed);
            }
            barrier.wait().await;
            let mut lat_us: Vec<u32> = Vec::new();
            let Some(client) = client else { return lat_us };
            let mut rng = rand::rngs::StdRng::from_entropy();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match one_transaction(&client, protocol, rng.gen_range(1..=max_aid)).await {
                    Ok(()) if !stop.load(Ordering::Relaxed) => {
                        lat_us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.note(format_args!("transaction: {e}"));
                        if client.is_closed() {
                            break;
                        }
                    }
                }
            }
            lat_us
        }));
    }
    barrier.wait().await;
    let login_s = login_started.elapsed().as_secs_f64();
    let cpu0 = c.pid.and_then(cpu_us);
    let t0 = Instant::now();
    tokio::time::sleep(secs(c.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = c.pid.and_then(cpu_us);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let max_upstream = sampler.finish().await;
    lat.sort_unstable();
    let n = lat.len() as f64;
    let cpu_per_tx = match (cpu0, cpu1) {
        (Some(a), Some(b)) if n > 0.0 => format!("{:.1}", (b - a) as f64 / n),
        _ => "n/a".into(),
    };
    let (p50, p99) = (percentile_ms(&lat, 50.0), percentile_ms(&lat, 99.0));
    Ok(format!(
        "mode=burst clients={clients} login_s={login_s:.2} tps={:.0} transactions={} failed={} connect_failed={} \
         p50_ms={p50:.2} p99_ms={p99:.2} p99_over_p50={:.2} max_upstream={max_upstream} cpu_us_per_tx={cpu_per_tx}",
        n / window,
        lat.len(),
        failed.load(Ordering::Relaxed),
        connect_failed.load(Ordering::Relaxed),
        p99 / p50,
    ))
}
