//! Failures around a session: clients that vanish mid-transaction, query cancellation, backends
//! killed under tidepool, and PostgreSQL restarting under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tidepool_testkit::{BackendFilter, TestCluster, SCRAM_USER};
use tokio_postgres::NoTls;

use crate::common::*;
use crate::raw::{startup_packet, Raw};

async fn idle_in_transaction(cluster: &TestCluster, db: &str) -> Result<i64> {
    let c = cluster.client(db).await?;
    Ok(c.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'", &[]).await?.get(0))
}

/// Locks row 1 from another client, waiting at most lock_timeout (a bounded wait, not a timing check).
async fn lock_row(p: &Proxy) -> Result<i32> {
    let mut c = p.client().await?;
    let tx = c.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = '15s'").await?;
    let v: i32 = tx.query_one("SELECT v FROM accounts WHERE id = 1 FOR UPDATE", &[]).await?.get(0);
    tx.execute("UPDATE accounts SET v = v + 1 WHERE id = 1", &[]).await?;
    tx.commit().await?;
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_transaction_releases_its_locks() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("disconnect").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, v int); INSERT INTO accounts VALUES (1, 0)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;

    // 1. tokio-postgres client dropped inside a transaction (it sends Terminate).
    let a = p.client().await?;
    a.batch_execute("BEGIN; SELECT * FROM accounts WHERE id = 1 FOR UPDATE").await?;
    assert_eq!(idle_in_transaction(cluster, &db).await?, 1);
    drop(a);
    assert_eq!(bounded("lock after Terminate", 30, lock_row(&p)).await?, 0);

    // 2. Raw client whose socket just closes (no Terminate) while idle in a transaction.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let msgs = r.query("BEGIN; SELECT * FROM accounts WHERE id = 1 FOR UPDATE").await?;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    assert_eq!(msgs.last().map(|m| m.body.clone()), Some(b"T".to_vec()), "in a transaction");
    drop(r);
    assert_eq!(bounded("lock after socket close", 30, lock_row(&p)).await?, 1);

    // 3. Socket closed while a query runs inside the transaction holding the lock.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    r.send(&crate::raw::query_msg("BEGIN; SELECT * FROM accounts WHERE id = 1 FOR UPDATE; SELECT pg_sleep(60)")).await?;
    wait_active(cluster, &db, "pg_sleep(60)").await?;
    drop(r);
    assert_eq!(bounded("lock after close mid-query", 30, lock_row(&p)).await?, 2);

    let stuck = poll(200, || async {
        let n = idle_in_transaction(cluster, &db).await.ok()?;
        (n == 0).then_some(())
    })
    .await;
    assert!(stuck.is_some(), "a backend stayed idle in transaction");
    // The mid-query backend was not left running its sleep either.
    let sleeping = poll(200, || async {
        let c = cluster.client(&db).await.ok()?;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    assert!(sleeping.is_some(), "the abandoned pg_sleep(60) is still running");
    let v: i32 = cluster.client(&db).await?.query_one("SELECT v FROM accounts WHERE id = 1", &[]).await?.get(0);
    assert_eq!(v, 3);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_query() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cancel").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;
    let c = Arc::new(p.client().await?);
    let token = c.cancel_token();
    let running = {
        let c = c.clone();
        tokio::spawn(async move { c.query_one("SELECT pg_sleep(30)", &[]).await })
    };
    wait_active(cluster, &db, "pg_sleep(30)").await?;
    token.cancel_query(NoTls).await?;
    let r = bounded("cancelled query", 20, running).await?;
    let msg = expect_code(r, "57014");
    assert!(msg.contains("cancel"), "{msg}");
    // The session goes on, on a clean server.
    let row = c.query_one("SELECT 7", &[]).await?;
    assert_eq!(row.get::<_, i32>(0), 7);
    p.stop().await;
    Ok(())
}

/// CancelRequest on a raw socket; returns once tidepool has handled it and closed the socket.
async fn raw_cancel(p: &Proxy, pid: i32, secret: i32) -> Result<()> {
    let mut s = Raw::connect(p.pg).await?;
    let mut pkt = 16i32.to_be_bytes().to_vec();
    pkt.extend_from_slice(&80877102i32.to_be_bytes());
    pkt.extend_from_slice(&pid.to_be_bytes());
    pkt.extend_from_slice(&secret.to_be_bytes());
    s.send(&pkt).await?;
    let rest = s.read_until_closed().await?;
    assert!(rest.is_empty(), "a cancel request gets no answer: {rest:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_cancel_does_not_hit_another_clients_query() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("late_cancel").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;

    // Client 1 (raw, to know its cancel key) runs a query that finishes.
    let (mut one, greeting) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let key = greeting.iter().find(|m| m.tag == b'K').ok_or_else(|| anyhow!("no BackendKeyData"))?;
    let pid = i32::from_be_bytes(key.body[0..4].try_into()?);
    let secret = i32::from_be_bytes(key.body[4..8].try_into()?);
    let one_backend = one.query_col("SELECT pg_backend_pid()").await?.remove(0).unwrap_or_default();

    // Client 2 now runs a long query on the same (only) backend.
    let two = Arc::new(p.client().await?);
    let running = {
        let two = two.clone();
        tokio::spawn(async move { two.query_one("SELECT pg_backend_pid(), pg_sleep(3)::text", &[]).await })
    };
    let backend = wait_active(cluster, &db, "pg_sleep(3)").await?;
    assert_eq!(backend.to_string(), one_backend, "pool_size 1: same backend");

    // Client 1's cancel arrives now: it must not reach client 2's query.
    raw_cancel(&p, pid, secret).await?;
    // A cancel with a made-up key goes nowhere either.
    raw_cancel(&p, pid ^ 0x5a5a, secret).await?;
    raw_cancel(&p, 12345, 67890).await?;
    let row = bounded("client 2's query", 30, running).await?.map_err(|e| anyhow!("client 2's query was hit: {e:?}"))?;
    assert_eq!(row.get::<_, i32>(0), backend);

    // Client 1's own key still cancels its own query.
    one.send(&crate::raw::query_msg("SELECT pg_sleep(30)")).await?;
    wait_active(cluster, &db, "pg_sleep(30)").await?;
    raw_cancel(&p, pid, secret).await?;
    let msgs = bounded("client 1's cancelled query", 20, one.until_ready()).await?;
    let err = msgs.iter().find(|m| m.tag == b'E').ok_or_else(|| anyhow!("no error: {msgs:?}"))?;
    assert_eq!(err.code().as_deref(), Some("57014"));
    drop(two);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_gives_a_clean_error_and_the_pool_heals() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("terminate").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;
    let idle = p.client().await?;
    assert_eq!(idle.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);

    // A backend killed while it runs a client's query.
    let c = Arc::new(p.client().await?);
    let running = {
        let c = c.clone();
        tokio::spawn(async move { c.query_one("SELECT pg_sleep(30)", &[]).await })
    };
    wait_active(cluster, &db, "pg_sleep(30)").await?;
    let killed = cluster.terminate_backends(&db, BackendFilter::user(SCRAM_USER)).await?;
    assert!(killed >= 1);
    let err = bounded("query on a killed backend", 20, running).await?.expect_err("the query's backend was killed");
    let code = code(&err);
    assert!(matches!(code.as_deref(), Some("57P01" | "08006")) || err.is_closed(), "expected 57P01 (admin shutdown) or 08006, got {err:?}");
    cluster.wait_for_backend_count(&db, BackendFilter::Any, Duration::from_secs(10), |n| n == 0).await?;

    // Idle pooled connections were killed too: clients still connected and new clients work.
    let row = bounded("query after kill", 30, idle.query_one("SELECT 2", &[])).await?;
    assert_eq!(row.get::<_, i32>(0), 2);
    let fresh = p.client().await?;
    assert_eq!(fresh.query_one("SELECT 3", &[]).await?.get::<_, i32>(0), 3);

    // Kill every backend while nobody uses them, several times: each next query still succeeds.
    for round in 0..3 {
        cluster.terminate_backends(&db, BackendFilter::Any).await?;
        cluster.wait_for_backend_count(&db, BackendFilter::Any, Duration::from_secs(10), |n| n == 0).await?;
        let row = bounded("query after idle kill", 30, fresh.query_one("SELECT $1::int", &[&round])).await?;
        assert_eq!(row.get::<_, i32>(0), round);
    }
    let n = cluster.backend_count(&db, BackendFilter::Any).await?;
    assert!(n <= 2, "{n} backends for pool_size 2");
    drop((idle, fresh));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load() -> Result<()> {
    const WORKERS: usize = 6;
    let own = TestCluster::start().await?;
    let cluster = &own;
    let db = cluster.unique_database("restart").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 4").db("pool_timeout = \"5s\"").db("connect_timeout = \"2s\"").start().await?;

    let after = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let mut ok_before = Vec::new();
    let mut ok_after = Vec::new();
    for w in 0..WORKERS {
        let (after, stop, errors) = (after.clone(), stop.clone(), errors.clone());
        let config = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
        let before_n = Arc::new(AtomicUsize::new(0));
        let after_n = Arc::new(AtomicUsize::new(0));
        ok_before.push(before_n.clone());
        ok_after.push(after_n.clone());
        workers.push(tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            // Bounded: at most 3000 iterations, or until told to stop.
            for i in 0..3000i32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let c = match &client {
                    Some(c) if !c.is_closed() => c,
                    _ => match try_connect(&config).await {
                        Ok(c) => client.insert(c),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let phase = after.load(Ordering::Relaxed);
                match c.query_one("SELECT $1::int + $2::int", &[&i, &(w as i32)]).await {
                    Ok(row) if row.get::<_, i32>(0) == i + w as i32 => {
                        if phase { &after_n } else { &before_n }.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => panic!("wrong result"),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // Somebody is inside a long query when PostgreSQL goes down: it must get an error.
    let long_client = p.client().await?;
    let long = tokio::spawn(async move { long_client.query_one("SELECT pg_sleep(60)", &[]).await });
    let warm = poll(400, || async { ok_before.iter().all(|n| n.load(Ordering::Relaxed) > 0).then_some(()) }).await;
    assert!(warm.is_some(), "workers did not get going before the restart");
    wait_active(cluster, &db, "pg_sleep(60)").await?;

    bounded("restart", 60, cluster.restart()).await?;
    after.store(true, Ordering::Relaxed);

    let long_result = bounded("long query across the restart", 30, long).await?;
    let err = long_result.expect_err("a query running during the restart must fail");
    assert!(code(&err).is_some() || err.is_closed(), "expected a server error or a closed connection, got {err:?}");

    let healed = poll(600, || async { ok_after.iter().all(|n| n.load(Ordering::Relaxed) >= 5).then_some(()) }).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        bounded("worker", 60, w).await?;
    }
    let after_counts: Vec<usize> = ok_after.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    assert!(healed.is_some(), "not every worker succeeded after the restart: {after_counts:?}");
    eprintln!("restart: {} errors seen by workers during the restart", errors.load(Ordering::Relaxed));

    // A brand-new client works too.
    let fresh = p.client().await?;
    assert_eq!(fresh.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    drop(fresh);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packet_helper_sanity() -> Result<()> {
    // The raw helper's startup packet is well-formed: PostgreSQL itself accepts it.
    let cluster = TestCluster::shared().await?;
    let mut r = Raw::connect(cluster.addr()).await?;
    r.send(&startup_packet(&[("user", "postgres"), ("database", "postgres")])).await?;
    let msgs = r.until_ready().await?;
    assert!(msgs.iter().any(|m| m.tag == b'K'), "{msgs:?}");
    Ok(())
}
