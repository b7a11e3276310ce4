//! Many clients over few server connections, and the pool's queue timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tidepool_testkit::{BackendFilter, TestCluster, SCRAM_USER};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_five_server_connections() -> Result<()> {
    const CLIENTS: usize = 200;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("load200").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE hits (client int, n int)").await?;
    // Generous timeouts: on a loaded 2-core machine 200 logins (each briefly needing a server
    // connection, see lifecycle::login_does_not_need_a_free_server_connection) take a while.
    let p = Setup::new(cluster, &db).db("pool_size = 5").db("pool_timeout = \"60s\"").server("login_timeout = \"60s\"").start().await?;

    // Sample the upstream connection count while the clients run.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let mut max = 0i64;
            let mut samples = 0;
            // Bounded: at most ~6000 samples, ends as soon as the clients are done.
            for _ in 0..6000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let n = cluster.backend_count(&db, BackendFilter::user(SCRAM_USER)).await.expect("backend_count");
                max = max.max(n);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (max, samples)
        })
    };

    let mut tasks = Vec::new();
    for i in 0..CLIENTS as i32 {
        let config = p.config(if i % 2 == 0 { SCRAM_CLIENT } else { MD5_CLIENT }, Some(if i % 2 == 0 { SCRAM_CLIENT_PW } else { MD5_CLIENT_PW }));
        tasks.push(tokio::spawn(async move {
            let c = connect(&config).await?;
            for n in 0..3i32 {
                let row = c.query_one("SELECT $1::int * 2", &[&i]).await?;
                assert_eq!(row.get::<_, i32>(0), i * 2);
                c.batch_execute(&format!("BEGIN; INSERT INTO hits VALUES ({i}, {n}); SELECT pg_sleep(0.002); COMMIT")).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = bounded("client task", 120, t).await? {
            failed.push(format!("{e:#}"));
        }
    }
    done.store(true, Ordering::Relaxed);
    let (max, samples) = sampler.await?;
    failed.sort();
    failed.dedup();
    assert!(failed.is_empty(), "clients failed with: {failed:?}");

    let direct = cluster.client(&db).await?;
    let row = direct.query_one("SELECT count(*), count(DISTINCT client) FROM hits", &[]).await?;
    assert_eq!(row.get::<_, i64>(0), 3 * CLIENTS as i64);
    assert_eq!(row.get::<_, i64>(1), CLIENTS as i64);
    eprintln!("upstream connections: max {max} over {samples} samples");
    assert!(samples > 0);
    assert!(max <= 5, "saw {max} upstream connections with pool_size 5");
    assert!(max >= 1, "the sampler never saw a tidepool connection ({samples} samples)");
    let now = cluster.backend_count(&db, BackendFilter::Any).await?;
    assert!(now <= 5, "{now} backends after the run");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_gives_53300_naming_the_pool_then_recovers() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("queue_timeout").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"500ms\"").start().await?;
    // Both clients log in first (a login needs a server connection for a moment).
    let a = p.client().await?;
    let b = p.client().await?;

    a.batch_execute("BEGIN; SELECT 1").await?;
    let msg = bounded("waiting for the pool", 20, async { expect_code(b.query_one("SELECT 2", &[]).await, "53300") }).await;
    assert!(msg.contains(&format!("\"{DB}\"")) && msg.contains("pool"), "message should name the pool: {msg}");
    // The timed-out client's session is still usable, and the pool counted the timeout.
    assert_eq!(p.app().database(DB).expect("db").pool.stats().timeouts.get(), 1);
    a.batch_execute("COMMIT").await?;
    // (A few tries: on a loaded machine A's session may take a moment to hand the server back.)
    let row = poll(3, || async { b.query_one("SELECT 2", &[]).await.ok() }).await.expect("query after commit");
    assert_eq!(row.get::<_, i32>(0), 2);
    // And a simple-protocol query too, after another timeout.
    a.batch_execute("BEGIN").await?;
    let r = b.simple_query("SELECT 3").await;
    assert_eq!(r.as_ref().err().and_then(code).as_deref(), Some("53300"), "{r:?}");
    a.batch_execute("ROLLBACK").await?;
    let rows = poll(3, || async { b.simple_query("SELECT 3").await.ok() }).await.expect("query after rollback");
    assert_eq!(simple_col(&rows), vec![Some("3".to_owned())]);
    drop((a, b));
    p.stop().await;
    Ok(())
}
