//! Protocol traffic shapes: pipelined queries, large messages both ways.

use anyhow::Result;
use bytes::Bytes;
use futures_util::TryStreamExt;
use tidepool_testkit::TestCluster;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_from_several_clients_over_one_server() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("pipeline").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"30s\"").start().await?;
    let mut tasks = Vec::new();
    for c in 0..4i32 {
        let config = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
        tasks.push(tokio::spawn(async move {
            let client = connect(&config).await?;
            let stmt = client.prepare("SELECT $1::int * 10 + $2::int").await?;
            // tokio-postgres writes all of these before reading any answer.
            let futs = (0..100i32).map(|i| {
                let (client, stmt) = (&client, &stmt);
                async move {
                    let v: i32 = client.query_one(stmt, &[&i, &c]).await?.get(0);
                    anyhow::ensure!(v == i * 10 + c, "query {i} of client {c} got {v}");
                    anyhow::Ok(())
                }
            });
            for r in futures_util::future::join_all(futs).await {
                r?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        bounded("pipelining client", 60, t).await??;
    }
    p.stop().await;
    Ok(())
}

/// Large messages both ways on `c` while `other` waits for the only server connection. Each step
/// is bounded: a stalled transfer fails instead of hanging.
async fn large_traffic(c: &tokio_postgres::Client, other: &tokio_postgres::Client) -> Result<()> {
    // A 4 MiB parameter (Bind) and a 3 MiB literal (Query).
    let big = "y".repeat(4 << 20);
    let n: i32 = bounded("4 MiB Bind", 60, c.query_one("SELECT length($1::text)", &[&big])).await?.get(0);
    assert_eq!(n, 4 << 20);
    let sql = format!("SELECT length('{}')", "z".repeat(3 << 20));
    let r = bounded("3 MiB Query", 60, c.simple_query(&sql)).await?;
    assert_eq!(simple_col(&r), vec![Some((3 << 20).to_string())]);

    // A 5 MB result set, and a 30 MB COPY OUT stream.
    let rows = bounded("5 MB result", 60, c.query("SELECT repeat('x', 1000) || i FROM generate_series(1, 5000) i", &[])).await?;
    assert_eq!(rows.len(), 5000);
    assert_eq!(rows[4999].get::<_, String>(0), format!("{}5000", "x".repeat(1000)));
    let stream = bounded("copy out", 60, c.copy_out("COPY (SELECT repeat('w', 3000) FROM generate_series(1, 10000)) TO STDOUT")).await?;
    let chunks: Vec<Bytes> = bounded("copy out data", 60, stream.try_collect()).await?;
    let total: usize = chunks.iter().map(|b| b.len()).sum();
    assert_eq!(total, 10000 * 3001);
    // The server went back to the pool.
    assert_eq!(bounded("other client", 60, other.query_one("SELECT 1", &[])).await?.get::<_, i32>(0), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_both_ways() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("large").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"30s\"").start().await?;
    let c = p.client().await?;
    let other = p.client().await?;
    large_traffic(&c, &other).await?;
    drop((c, other));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_carries_large_messages() -> Result<()> {
    let own = TestCluster::builder().ssl(true).start().await?;
    let db = own.unique_database("upstream_tls").await?;
    let p = Setup::new(&own, &db).db("pool_size = 1").db("pool_timeout = \"30s\"").db("upstream_tls = \"require\"").start().await?;
    let c = p.client().await?;
    let other = p.client().await?;
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?.get(0);
    assert!(ssl, "tidepool → PostgreSQL must use TLS with upstream_tls = require");
    large_traffic(&c, &other).await?;
    drop((c, other));
    p.stop().await;
    Ok(())
}
