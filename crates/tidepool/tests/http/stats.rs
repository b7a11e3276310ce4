//! Latency figures: a few wire and WebSocket transactions, /sql and Prisma requests, then the
//! per-database, per-front-end histograms and outcome counters in the `/metrics` text (counts
//! exact, timings never asserted).

use anyhow::Result;
use serde_json::json;

use crate::common::*;

/// The value of the series `name{labels}` in Prometheus text, if present.
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn histograms_count_each_front_end() -> Result<()> {
    let p = Setup::new("stats").await?.start().await?;
    // Wire: three transactions that succeed, one that fails on a missing table.
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user={TRUST_USER} dbname={DB}", p.app_pg_port()), tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    client.simple_query("SELECT 1").await?;
    client.simple_query("BEGIN; SELECT 2; COMMIT").await?;
    client.batch_execute("BEGIN").await?;
    client.simple_query("SELECT 3").await?;
    client.batch_execute("COMMIT").await?;
    assert!(client.simple_query("SELECT * FROM no_such_table").await.is_err());
    drop(client);
    let _ = conn.await;
    // WebSocket: two transactions, then two more pipelined (sent together).
    let mut ws = crate::ws::login_trust(&p).await?;
    ws.simple("SELECT 1").await?;
    ws.simple("SELECT 2").await?;
    ws.send([crate::ws::query("SELECT 3"), crate::ws::query("SELECT 4")].concat()).await?;
    ws.until_ready().await?;
    ws.until_ready().await?;
    // /sql: two that succeed, one that fails.
    p.neon_ok().await?;
    p.neon_ok().await?;
    let r = p.neon(&json!({"query": "SELECT * FROM no_such_table", "params": []})).await?;
    assert_eq!(r.status, 400, "{}", r.text);
    // Prisma /query: three that succeed; an interactive transaction: start, query, commit.
    for _ in 0..3 {
        p.prisma_ok().await?;
    }
    let id = p.itx_start(KEY_A, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query("SELECT 1 AS one", json!([]))).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = p.app().render_metrics();
    let count = |name: &str, labels: &str| series(&text, name, &format!("database=\"{DB}\",{labels}"));
    let dur = "tidepool_request_duration_seconds_count";
    assert_eq!(count(dur, r#"front="wire""#), Some(4.0), "{text}");
    assert_eq!(count(dur, r#"front="ws""#), Some(4.0), "{text}");
    assert_eq!(count(dur, r#"front="sql""#), Some(3.0), "{text}");
    assert_eq!(count(dur, r#"front="prisma""#), Some(6.0), "{text}");
    let req = "tidepool_requests_total";
    assert_eq!(count(req, r#"front="wire",outcome="ok""#), Some(3.0), "{text}");
    assert_eq!(count(req, r#"front="wire",outcome="client_error""#), Some(1.0), "{text}");
    assert_eq!(count(req, r#"front="ws",outcome="ok""#), Some(4.0), "{text}");
    assert_eq!(count(req, r#"front="sql",outcome="ok""#), Some(2.0), "{text}");
    assert_eq!(count(req, r#"front="sql",outcome="client_error""#), Some(1.0), "{text}");
    assert_eq!(count(req, r#"front="prisma",outcome="ok""#), Some(6.0), "{text}");
    assert_eq!(count(req, r#"front="prisma",outcome="server_error""#), Some(0.0), "{text}");
    // Every transaction and every request that reached the database waited for a lease once.
    let wait = "tidepool_request_pool_wait_seconds_count";
    assert_eq!(count(wait, r#"front="wire""#), Some(4.0), "{text}");
    // (the pipelined pair shares one lease: the server is released only between them if idle)
    assert!(count(wait, r#"front="ws""#).is_some_and(|n| (3.0..=4.0).contains(&n)), "{text}");
    assert_eq!(count(wait, r#"front="sql""#), Some(3.0), "{text}");
    // (the transaction waited once, at its start)
    assert_eq!(count(wait, r#"front="prisma""#), Some(4.0), "{text}");
    // Bytes are counted for the wire front ends; HTTP requests in progress: none.
    assert!(count("tidepool_client_bytes_received_total", r#"front="wire""#).is_some_and(|b| b > 0.0), "{text}");
    assert!(count("tidepool_client_bytes_sent_total", r#"front="ws""#).is_some_and(|b| b > 0.0), "{text}");
    assert_eq!(count("tidepool_front_clients", r#"front="ws""#), Some(1.0), "{text}");
    assert_eq!(count("tidepool_front_clients", r#"front="sql""#), Some(0.0), "{text}");
    // The same totals for `SHOW STATS`.
    let traffic = &p.app().database(DB).expect("db").traffic;
    let wire = traffic.front_totals(tidepool::stats::Front::Wire);
    assert_eq!(wire.requests, 4);
    assert!(wire.received > 0 && wire.sent > 0 && wire.time_us > 0, "{wire:?}");
    assert_eq!(traffic.all_totals().requests, 4 + 4 + 3 + 6);
    // The failure is among the recent errors, in the client's words.
    let errors = p.app().database(DB).expect("db").traffic.history.errors();
    assert!(errors.iter().any(|e| e.front == "wire" && e.message.contains("no_such_table")), "{errors:?}");
    drop(ws);
    p.stop().await;
    Ok(())
}
