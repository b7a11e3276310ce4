//! The hostile-input suite: a table of named attacks on every listener tidepool exposes (the
//! Postgres wire protocol, Neon's `POST /sql`, Postgres over WebSocket, the Prisma Accelerate
//! API), before and after authentication, run against a real `tidepool serve` child process.
//!
//! Every case asserts that the attacker gets the protocol's own error (an SQLSTATE, an HTTP
//! status with a Neon or Prisma error body) or a closed connection within a hang bound, and
//! that the process is still alive afterwards. Around every group a well-behaved wire and
//! `/sql` client must keep working and the child's resident memory must stay within
//! [`RSS_GROWTH_LIMIT_KIB`] of its starting point. At the end, no injected statement ran and
//! no session state leaked to later clients.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../wire/raw.rs"]
mod raw;

mod dataproxy;
mod floods;
mod h2;
mod msgs;
mod prisma;
mod sql;
mod state;
mod wire;
mod ws;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;

use crate::common::*;

/// Resident memory the child may grow by over the whole suite.
pub const RSS_GROWTH_LIMIT_KIB: u64 = 64 << 10;
/// Hang detector for one case (not a performance bound).
pub const CASE_BOUND: Duration = Duration::from_secs(20);

pub type CaseFut = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Which listener a case attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Wire,
    Sql,
    Ws,
    Prisma,
}

/// One named attack: whether it runs before or after authenticating, and the attack itself
/// (which asserts its expected outcome).
pub struct Case {
    pub name: String,
    pub endpoint: Endpoint,
    pub pre_auth: bool,
    pub run: Box<dyn FnOnce(Arc<Tidepool>) -> CaseFut + Send>,
}

pub fn case<F, Fut>(endpoint: Endpoint, pre_auth: bool, name: impl Into<String>, f: F) -> Case
where
    F: FnOnce(Arc<Tidepool>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Case { name: name.into(), endpoint, pre_auth, run: Box::new(move |tp| Box::pin(f(tp))) }
}

/// A group of cases run together (`parallel` at a time) while the healthy clients run.
pub struct Group {
    pub name: &'static str,
    pub parallel: usize,
    pub cases: Vec<Case>,
}

async fn run_group(tp: &Arc<Tidepool>, group: Group, baseline_kib: u64, failures: &mut Vec<String>) -> Result<()> {
    let started = Instant::now();
    let n = group.cases.len();
    let healthy = Healthy::start(tp).await?;
    let results: Vec<(String, Result<()>)> = futures_util::stream::iter(group.cases)
        .map(|c| {
            let tp = tp.clone();
            async move {
                let r = match tokio::time::timeout(CASE_BOUND, (c.run)(tp.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow::anyhow!("no outcome within {CASE_BOUND:?} (hang)")),
                };
                let r = r.and_then(|()| tp.alive());
                (c.name, r)
            }
        })
        .buffer_unordered(group.parallel)
        .collect()
        .await;
    for (name, r) in results {
        if let Err(e) = r {
            failures.push(format!("[{}] {name}: {e:#}", group.name));
        }
    }
    let (wire_ok, sql_ok) = (healthy.wire_ok.clone(), healthy.sql_ok.clone());
    for f in healthy.finish().await {
        failures.push(format!("[{}] healthy client: {f}", group.name));
    }
    tp.alive()?;
    let rss = tp.rss_kib();
    let growth = rss.saturating_sub(baseline_kib);
    eprintln!(
        "hostile: group {:<14} {n:>3} cases in {:>5.1}s; healthy wire/sql queries {}/{}; RSS {} MiB (+{} MiB)",
        group.name,
        started.elapsed().as_secs_f64(),
        wire_ok.load(std::sync::atomic::Ordering::Relaxed),
        sql_ok.load(std::sync::atomic::Ordering::Relaxed),
        rss >> 10,
        growth >> 10
    );
    if growth > RSS_GROWTH_LIMIT_KIB {
        failures.push(format!("[{}] RSS grew by {} KiB (limit {RSS_GROWTH_LIMIT_KIB} KiB)", group.name, growth));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs() -> Result<()> {
    let suite_started = Instant::now();
    let tp = Arc::new(Tidepool::start().await?);
    let groups = vec![
        wire::pre_auth(),
        wire::post_auth(),
        floods::wire(),
        sql::pre_auth(),
        sql::post_auth(),
        h2::attacks(),
        ws::pre_auth(),
        ws::post_auth(),
        prisma::pre_auth(),
        prisma::post_auth(),
        prisma::tenants(),
        dataproxy::attacks(),
        state::leavers(),
    ];
    // The table's shape, printed so the count is visible.
    let mut counts = std::collections::BTreeMap::<(Endpoint, bool), usize>::new();
    for g in &groups {
        for c in &g.cases {
            *counts.entry((c.endpoint, c.pre_auth)).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    let pre: usize = counts.iter().filter(|((_, p), _)| *p).map(|(_, n)| n).sum();
    eprintln!("hostile: {total} cases ({pre} before authentication, {} after)", total - pre);
    for ((e, p), n) in &counts {
        eprintln!("hostile:   {e:?} {}: {n}", if *p { "pre-auth" } else { "post-auth" });
    }
    assert!(total >= 100, "the suite must hold at least 100 cases, has {total}");

    state::self_check(&tp).await?;
    // A warm-up round so the baseline includes the pools' connections.
    Healthy::start(&tp).await?.finish().await;
    let baseline = tp.rss_kib();
    eprintln!("hostile: baseline RSS {} MiB", baseline >> 10);
    let mut failures = Vec::new();
    for g in groups {
        run_group(&tp, g, baseline, &mut failures).await?;
    }
    let injected = state::injected_tables(&tp).await?;
    if !injected.is_empty() {
        failures.push(format!("injected statements ran: tables {injected:?} exist"));
    }
    failures.extend(state::state_leaks(&tp).await?);
    tp.alive()?;
    let log = tp.log_text();
    if log.contains("panicked") {
        failures.push(format!("tidepool logged a panic:\n{}", log.lines().filter(|l| l.contains("panicked")).collect::<Vec<_>>().join("\n")));
    }
    eprintln!("hostile: finished in {:.1}s, {} failures", suite_started.elapsed().as_secs_f64(), failures.len());
    if !failures.is_empty() {
        bail!("{} hostile case(s) failed:\n{}\n--- tidepool log tail ---\n{}", failures.len(), failures.join("\n"), tp.log_tail());
    }
    Ok(())
}
