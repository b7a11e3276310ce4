//! Transaction pooling must not leak one client's session state to another client that gets the
//! same server connection (pool_size 1 makes sure it does), while each client keeps its own
//! reported parameters and startup parameters wherever it runs.

use anyhow::Result;
use tidepool_testkit::{TestCluster, SCRAM_USER};

use crate::common::*;
use crate::raw::Raw;

async fn pid(c: &tokio_postgres::Client) -> Result<i32> {
    Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
}

async fn show(c: &tokio_postgres::Client, name: &str) -> Result<String> {
    Ok(c.query_one(&format!("SHOW {name}"), &[]).await?.get(0))
}

async fn raw_show(r: &mut Raw, name: &str) -> Result<String> {
    Ok(r.query_col(&format!("SHOW {name}")).await?.remove(0).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_does_not_leak_and_reported_parameters_stay_with_their_client() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("set_leak").await?;
    let direct = cluster.client(&db).await?;
    let default_tz = show(&direct, "TimeZone").await?;
    let default_timeout = show(&direct, "statement_timeout").await?;
    assert_ne!(default_tz, "Asia/Tokyo");
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;

    // A speaks raw protocol so the ParameterStatus messages it gets can be checked.
    let (mut a, greeting) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let tz_at_login = greeting.iter().filter_map(|m| m.param()).find(|(k, _)| k == "TimeZone").map(|(_, v)| v);
    assert_eq!(tz_at_login.as_deref(), Some(default_tz.as_str()), "greeting: {greeting:?}");
    let b = p.client().await?;

    let msgs = a.query("SET statement_timeout = '1234ms'").await?;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    let msgs = a.query("SET TimeZone = 'Asia/Tokyo'").await?;
    let reported: Vec<_> = msgs.iter().filter_map(|m| m.param()).collect();
    assert!(reported.contains(&("TimeZone".into(), "Asia/Tokyo".into())), "A must be told its new TimeZone: {msgs:?}");
    assert_eq!(raw_show(&mut a, "statement_timeout").await?, "1234ms", "a session SET is replayed on the client's later transactions");
    let a_pid: String = a.query_col("SELECT pg_backend_pid()").await?.remove(0).unwrap_or_default();

    // B runs on the very same server connection and sees defaults.
    assert_eq!(pid(&b).await?.to_string(), a_pid, "pool_size 1: same backend");
    assert_eq!(show(&b, "statement_timeout").await?, default_timeout);
    assert_eq!(show(&b, "TimeZone").await?, default_tz);
    b.batch_execute("SET TimeZone = 'America/New_York'").await?;
    assert_eq!(show(&b, "TimeZone").await?, "America/New_York");

    // A keeps its reported TimeZone in later transactions, wherever it runs.
    assert_eq!(raw_show(&mut a, "TimeZone").await?, "Asia/Tokyo");
    let now_tz: Vec<_> = a.query_col("SELECT extract(timezone from now())::int::text").await?;
    assert_eq!(now_tz, vec![Some((9 * 3600).to_string())]);
    // A SET rolled back with its transaction is undone (and reported back by the server).
    let msgs = a.query("BEGIN; SET TimeZone = 'Europe/Paris'; ROLLBACK").await?;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    assert_eq!(raw_show(&mut a, "TimeZone").await?, "Asia/Tokyo");
    // SET LOCAL never outlives its transaction.
    a.query("BEGIN; SET LOCAL TimeZone = 'Europe/Paris'; COMMIT").await?;
    assert_eq!(raw_show(&mut a, "TimeZone").await?, "Asia/Tokyo");

    assert_eq!(show(&b, "TimeZone").await?, "America/New_York");
    assert_eq!(show(&b, "statement_timeout").await?, default_timeout);
    // RESET brings B back to the server default.
    b.batch_execute("RESET TimeZone").await?;
    assert_eq!(show(&b, "TimeZone").await?, default_tz);
    assert_eq!(raw_show(&mut a, "TimeZone").await?, "Asia/Tokyo");

    // A third client that never SET anything sees defaults too.
    let c = p.client().await?;
    assert_eq!(show(&c, "TimeZone").await?, default_tz);
    drop((b, c, a));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_apply_on_whatever_backend_a_client_gets() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("startup_params").await?;
    cluster
        .client(&db)
        .await?
        .batch_execute(
            "CREATE SCHEMA myschema; CREATE TABLE myschema.marker (v text); INSERT INTO myschema.marker VALUES ('found');
             GRANT USAGE ON SCHEMA myschema TO PUBLIC; GRANT SELECT ON myschema.marker TO PUBLIC",
        )
        .await?;
    let direct = cluster.client(&db).await?;
    let default_path = show(&direct, "search_path").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;

    let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    cfg.options("-c search_path=myschema -c statement_timeout=4321").application_name("client-c");
    let c = connect(&cfg).await?;
    let d = p.client().await?;
    let mut cfg_e = p.config(MD5_CLIENT, Some(MD5_CLIENT_PW));
    cfg_e.application_name("client-e");
    let e = connect(&cfg_e).await?;

    for round in 0..3 {
        assert_eq!(show(&c, "search_path").await?, "myschema", "round {round}");
        assert_eq!(show(&c, "statement_timeout").await?, "4321ms");
        assert_eq!(show(&c, "application_name").await?, "client-c");
        let v: String = c.query_one("SELECT v FROM marker", &[]).await?.get(0);
        assert_eq!(v, "found");

        assert_eq!(show(&d, "search_path").await?, default_path, "round {round}");
        assert_eq!(show(&d, "statement_timeout").await?, "0");
        let d_app = show(&d, "application_name").await?;
        assert!(!d_app.starts_with("client-"), "D sees another client's application_name {d_app:?}");
        let err = d.query_one("SELECT v FROM marker", &[]).await.expect_err("marker is not on D's search_path");
        assert_eq!(code(&err).as_deref(), Some("42P01"));

        assert_eq!(show(&e, "application_name").await?, "client-e");
        assert_eq!(pid(&c).await?, pid(&e).await?, "pool_size 1: one backend");
    }
    // The backend carries C's application_name while C uses it (visible to monitoring).
    c.batch_execute("BEGIN").await?;
    let seen: String =
        direct.query_one("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND usename = $1", &[&SCRAM_USER]).await?.get(0);
    c.batch_execute("COMMIT").await?;
    assert_eq!(seen, "client-c");

    // A startup parameter the server rejects fails the login like PostgreSQL would.
    let mut bad = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    bad.options("-c statement_timeout=notanumber");
    let r = try_connect(&bad).await;
    assert_eq!(r.as_ref().err().and_then(code).as_deref(), Some("22023"), "{:?}", r.err());
    // …and the server connection it was tried on is still fine for others.
    assert_eq!(show(&d, "statement_timeout").await?, "0");
    drop((c, d, e));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_tables_advisory_locks_listen_cursors_do_not_leak() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("state_leak").await?;
    // max_pinned 0: state that would pin the server is refused (53300) rather than kept.
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("max_pinned = 0").start().await?;
    let a = p.client().await?;
    let b = p.client().await?;
    let a_pid = pid(&a).await?;
    assert_eq!(pid(&b).await?, a_pid, "pool_size 1: same backend");

    // (what A does, B's probe that must return 0, what leaked if it does not)
    let cases = [
        ("CREATE TEMP TABLE leak_tmp (x int)", "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()", "temp table"),
        ("SELECT 1 AS x INTO TEMP TABLE leak_tmp2", "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()", "SELECT INTO TEMP table"),
        ("CREATE TEMPORARY VIEW leak_view AS SELECT 1", "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()", "temp view"),
        ("SELECT pg_advisory_lock(4242)", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", "advisory lock"),
        ("LISTEN leak_chan", "SELECT count(*) FROM pg_listening_channels()", "LISTEN"),
        ("PREPARE leak_stmt AS SELECT 1", "SELECT count(*) FROM pg_prepared_statements WHERE name = 'leak_stmt'", "SQL PREPARE"),
        ("BEGIN; DECLARE leak_cur CURSOR WITH HOLD FOR SELECT 1; COMMIT", "SELECT count(*) FROM pg_cursors WHERE name = 'leak_cur'", "WITH HOLD cursor"),
        (
            "SELECT set_config('search_path', 'pg_catalog', false)",
            "SELECT count(*) FROM (SELECT current_setting('search_path') AS p) s WHERE p = 'pg_catalog'",
            "set_config",
        ),
    ];
    let mut leaks = Vec::new();
    for (setup, probe, what) in cases {
        if let Err(e) = a.batch_execute(setup).await {
            anyhow::ensure!(code(&e).as_deref() == Some("53300"), "{setup}: {e}");
        }
        let n: i64 = b.query_one(probe, &[]).await?.get(0);
        if n != 0 {
            leaks.push(what);
            // Clean up so the next case starts from a pristine server.
            b.batch_execute("DISCARD ALL").await?;
        }
    }
    // A prepared (protocol-level) statement that takes a session lock, executed in later
    // transactions: each execution must make tidepool reset the server afterwards.
    let lock = a.prepare("SELECT pg_advisory_lock(1::bigint)").await?;
    for _ in 1..=2 {
        // Refused (max_pinned 0) or run: either way nothing may stay behind.
        let _ = a.query(&lock, &[]).await;
        let n: i64 = b.query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", &[]).await?.get(0);
        if n != 0 {
            leaks.push("advisory lock taken by a prepared statement executed in a later transaction");
            b.batch_execute("DISCARD ALL").await?;
        }
    }
    assert!(leaks.is_empty(), "session state leaked to the next client: {leaks:?}");
    assert_eq!(pid(&b).await?, a_pid, "still one backend");

    // Nobody holds advisory locks in this database any more.
    let direct = cluster.client(&db).await?;
    let n: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND d.datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 0, "advisory locks still held");
    drop((a, b));
    p.stop().await;
    Ok(())
}

/// A login whose startup parameters the server rejects must not leave tidepool believing those
/// parameters are set on the server connection it tried them on (the SETs were rolled back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_startup_parameters_do_not_confuse_the_next_client() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("bad_params").await?;
    cluster.client(&db).await?.batch_execute("CREATE SCHEMA myschema; GRANT USAGE ON SCHEMA myschema TO PUBLIC").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;
    let plain = p.client().await?;
    let default_path = show(&plain, "search_path").await?;

    let mut bad = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    bad.options("-c search_path=myschema -c statement_timeout=notanumber -c lock_timeout=1234");
    let r = try_connect(&bad).await;
    assert_eq!(r.as_ref().err().and_then(code).as_deref(), Some("22023"), "{:?}", r.err());

    let mut good = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    good.options("-c search_path=myschema -c lock_timeout=1234");
    let c = connect(&good).await?;
    for _ in 0..2 {
        assert_eq!(show(&c, "search_path").await?, "myschema");
        assert_eq!(show(&c, "lock_timeout").await?, "1234ms");
        assert_eq!(show(&plain, "search_path").await?, default_path);
        assert_eq!(show(&plain, "lock_timeout").await?, "0");
    }
    drop((c, plain));
    p.stop().await;
    Ok(())
}
