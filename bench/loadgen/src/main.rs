//! `tidepool-loadgen`: the load generator behind `bench/burst.sh`. Two modes, each printing one
//! `key=value` result line for the script to tabulate:
//! - `burst`: N concurrent clients (10,000 by default) connect, then run equal select-only
//!   transactions for a fixed window; reports throughput, per-transaction latency (p50/p99: with
//!   far more clients than pooled connections this is almost all queueing time), failures, the
//!   proxy's CPU time per transaction and the most upstream connections seen in `pg_stat_activity`.
//! - `storm`: a fixed rate of brand-new connections per second (connect, one query, close).
//!
//! Both work against any Postgres-speaking endpoint (tidepool, PgBouncer, Postgres itself), so one
//! run compares them side by side.

mod burst;
mod measure;
mod storm;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Concurrent-client and connect-storm load for poolers")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Protocol {
    /// Simple query protocol (one Query message per transaction).
    Simple,
    /// Extended protocol with the unnamed statement (Parse/Bind/Execute/Sync).
    Extended,
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Where the clients connect (the proxy under test).
    #[arg(long)]
    url: String,
    /// Superuser connection straight to Postgres, used to sample upstream connections.
    #[arg(long)]
    sample_url: Option<String>,
    /// Database whose client backends are counted when sampling.
    #[arg(long, default_value = "bench")]
    sample_db: String,
    /// Only backends of this upstream role are counted (tells proxies sharing one server apart).
    #[arg(long)]
    sample_user: Option<String>,
    /// Process whose CPU time (utime+stime from /proc/PID/stat) is charged to the run.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Many concurrent clients, equal select-only transactions.
    Burst {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Connection attempts in flight while the clients log in.
        #[arg(long, default_value_t = 200)]
        connect_concurrency: usize,
        #[arg(long, value_enum, default_value = "simple")]
        protocol: Protocol,
        /// pgbench scale of `pgbench_accounts` (aid is drawn from 1..=scale*100000).
        #[arg(long, default_value_t = 1)]
        scale: i32,
    },
    /// New connections at a fixed rate: connect, `SELECT 1`, close.
    Storm {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let line = match cli.mode {
        Mode::Burst { common, clients, connect_concurrency, protocol, scale } => burst::run(&common, clients, connect_concurrency, protocol, scale).await?,
        Mode::Storm { common, rate } => storm::run(&common, rate).await?,
    };
    println!("{line}");
    Ok(())
}

/// Seconds as a `Duration` (clap gives integers).
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
