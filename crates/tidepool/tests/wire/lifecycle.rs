//! Graceful drain, session pooling mode, and logging in while every server connection is busy.

use anyhow::Result;
use tidepool_testkit::{TestCluster, SCRAM_USER};

use crate::common::*;
use crate::raw::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_open_transactions_finish_and_closes_idle_clients() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("drain").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE t (v int)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").server("shutdown_timeout = \"20s\"").start().await?;
    let pg = p.pg;
    let (mut idle, _) = Raw::login_trust(pg, TRUST_CLIENT, DB, &[]).await?;
    let busy = p.client().await?;
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await?;

    let stopper = tokio::spawn(p.stop());
    // The idle client is told why it is being closed.
    let msgs = bounded("idle client during drain", 30, idle.read_until_closed()).await?;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].code().as_deref(), Some("57P01"), "{msgs:?}");
    // New connections are no longer served.
    let refused = match tokio::net::TcpStream::connect(pg).await {
        Err(_) => true,
        Ok(s) => {
            let mut r = Raw::from_stream(s);
            r.send(&crate::raw::startup_packet(&[("user", TRUST_CLIENT), ("database", DB)])).await.is_err() || r.until_ready().await.is_err()
        }
    };
    assert!(refused, "a new client was served while draining");
    // The client inside a transaction finishes it.
    busy.batch_execute("INSERT INTO t VALUES (2)").await?;
    busy.batch_execute("COMMIT").await?;
    assert!(busy.query_one("SELECT 1", &[]).await.is_err(), "after its transaction the client is closed");
    bounded("drain", 30, stopper).await?;
    let n: i64 = cluster.client(&db).await?.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(n, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_server_per_client_and_resets_it() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("session_mode").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_mode = \"session\"").db("pool_timeout = \"1s\"").start().await?;
    let a = p.client().await?;
    a.batch_execute("SET statement_timeout = '4321ms'; CREATE TEMP TABLE mine (x int); LISTEN chan").await?;
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    for _ in 0..3 {
        let row = a.query_one("SELECT current_setting('statement_timeout'), pg_backend_pid(), (SELECT count(*) FROM mine)", &[]).await?;
        assert_eq!(row.get::<_, String>(0), "4321ms", "session state lasts in session mode");
        assert_eq!(row.get::<_, i32>(1), pid);
    }
    // The only server is A's for as long as A is connected.
    let b_login = try_connect(&p.config(MD5_CLIENT, Some(MD5_CLIENT_PW))).await;
    if let Ok(b) = &b_login {
        let r = b.query_one("SELECT 1", &[]).await;
        assert_eq!(r.as_ref().err().and_then(code).as_deref(), Some("53300"), "{r:?}");
    }
    drop(b_login);
    drop(a);
    // Once A leaves, the next client gets the same server, reset.
    let b = poll(100, || async { try_connect(&p.config(MD5_CLIENT, Some(MD5_CLIENT_PW))).await.ok() }).await.expect("login after A left");
    let row = bounded(
        "query after A left",
        30,
        b.query_one(
            "SELECT current_setting('statement_timeout'), pg_backend_pid(), to_regclass('mine')::text, (SELECT count(*) FROM pg_listening_channels())",
            &[],
        ),
    )
    .await?;
    assert_eq!(row.get::<_, String>(0), "0");
    assert_eq!(row.get::<_, i32>(1), pid, "the server was reused");
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert_eq!(row.get::<_, i64>(3), 0);
    drop(b);
    p.stop().await;
    Ok(())
}

/// Regression: a login with any startup parameter
/// besides application_name (tokio-postgres always sends client_encoding) leases a server
/// connection to check it, so while every server is inside a transaction nobody can log in; after
/// pool_timeout the login fails with 08006.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_does_not_need_a_free_server_connection() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("login_busy").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"1s\"").start().await?;
    let a = p.client().await?;
    a.batch_execute("BEGIN; SELECT 1").await?;
    let b = try_connect(&p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await;
    a.batch_execute("COMMIT").await?;
    let b = b.map_err(|e| anyhow::anyhow!("login while the only server is busy: {e:?}"))?;
    assert_eq!(b.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    p.stop().await;
    Ok(())
}
