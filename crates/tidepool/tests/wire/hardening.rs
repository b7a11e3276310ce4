//! Regression tests for the hardening issue on the wire front end: startup parameters never
//! become SQL text, unknown ones are refused, protocol violations are answered before a server is
//! leased, idle timeouts free the pool, pre-auth connections are bounded and a client waiting for
//! a lease cannot make tidepool buffer its whole pipeline.

use std::time::Duration;

use anyhow::Result;
use tidepool_testkit::TestCluster;

use crate::common::*;
use crate::raw::*;

/// Values that would escape a hand-quoted `SET name TO '…'` under one setting of
/// `standard_conforming_strings` or the other.
const PAYLOADS: &[&str] = &[
    r"x\'; CREATE TABLE pwned_a(a int); --",
    r"x'; CREATE TABLE pwned_b(a int); --",
    r"x\\'; CREATE TABLE pwned_c(a int); --",
    r"E'\''; CREATE TABLE pwned_d(a int); --",
    "$$; CREATE TABLE pwned_e(a int); --$$",
    "x$q$'; CREATE TABLE pwned_f(a int); --$q$",
    "'); CREATE TABLE pwned_g(a int); --",
    "\\\\\\'''; CREATE TABLE pwned_h(a int); --",
];

async fn tables_named_pwned(cluster: &TestCluster, db: &str) -> Result<Vec<String>> {
    let c = cluster.client(db).await?;
    let rows = c.query("SELECT relname::text FROM pg_class WHERE relname LIKE 'pwned%'", &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_never_sql_text() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("inject").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;
    for scs in ["off", "on"] {
        for payload in PAYLOADS {
            let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
            cfg.application_name(*payload).options(format!("-c standard_conforming_strings={scs}"));
            let c = connect(&cfg).await?;
            // The value arrives intact, as data.
            let got: String = c.query_one("SELECT current_setting('application_name')", &[]).await?.get(0);
            assert_eq!(got, *payload, "scs={scs}");
            // A second client on the same servers gets its own (default) value back.
            let other = p.client().await?;
            let theirs: String = other.query_one("SELECT current_setting('application_name')", &[]).await?.get(0);
            assert_ne!(theirs, *payload);
        }
    }
    // search_path values with quotes and commas are carried as one value, not parsed as SQL.
    let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    cfg.options(r"-c search_path=public,x\';CREATE\ TABLE\ pwned_z(a\ int);--");
    if let Ok(c) = try_connect(&cfg).await {
        let _ = c.simple_query("SELECT 1").await;
    }
    // Invalid UTF-8 in a value: refused as a protocol violation, never applied.
    let mut packet = startup_packet(&[("user", TRUST_CLIENT), ("database", DB), ("application_name", "x")]);
    let at = packet.windows(2).position(|w| w == b"x\0").expect("value");
    packet.splice(at..at + 1, [0xff, 0xfe, b'\'', b';']);
    let len = (packet.len() as i32).to_be_bytes();
    packet[..4].copy_from_slice(&len);
    let mut r = Raw::connect(p.pg).await?;
    r.send(&packet).await?;
    let msgs = bounded("invalid utf-8", 10, r.read_until_closed()).await?;
    assert!(matches!(msgs.as_slice(), [e] if e.code().as_deref() == Some("08P01")), "{msgs:?}");
    assert_eq!(tables_named_pwned(cluster, &db).await?, Vec::<String>::new(), "a startup parameter ran as SQL");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameter_names_are_whitelisted() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("startup_names").await?;
    let p = Setup::new(cluster, &db).server(r#"ignore_startup_parameters = ["extra_float_digits"]"#).start().await?;
    // Unknown, dangerous or quoted names: PostgreSQL's own error for an unknown parameter.
    for name in ["role", "session_authorization", "no_such_setting", "search_path\"; DROP TABLE x; --", "work_mem'"] {
        let mut r = Raw::connect(p.pg).await?;
        r.send(&startup_packet(&[("user", TRUST_CLIENT), ("database", DB), (name, "postgres")])).await?;
        let msgs = bounded(name, 30, r.read_until_closed()).await?;
        let e = msgs.iter().find(|m| m.tag == b'E').unwrap_or_else(|| panic!("{name}: no error in {msgs:?}"));
        assert_eq!(e.code().as_deref(), Some("42704"), "{name}: {:?}", e.field(b'M'));
        assert!(!msgs.iter().any(|m| m.tag == b'Z'), "{name}: logged in");
    }
    // Through options too.
    let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    cfg.options("-c role=postgres");
    expect_code(try_connect(&cfg).await, "42704");
    // Ignored parameters are accepted and dropped; listed ones are carried.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[("extra_float_digits", "3"), ("statement_timeout", "1234")]).await?;
    assert_eq!(r.query_col("SHOW statement_timeout").await?, vec![Some("1234ms".to_owned())]);
    assert_ne!(r.query_col("SHOW extra_float_digits").await?, vec![Some("3".to_owned())]);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_refused_before_a_server_is_leased() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("violations").await?;
    // One server, held by a transaction: anything that needed a lease would wait pool_timeout.
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"30s\"").start().await?;
    let holder = p.client().await?;
    holder.batch_execute("BEGIN; SELECT 1").await?;

    // A StartupMessage sent again mid-session: its first byte (0) is no message type.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    r.send(&startup_packet(&[("user", TRUST_CLIENT), ("database", DB)])).await?;
    let msgs = bounded("startup mid-session", 10, r.read_until_closed()).await?;
    assert!(matches!(msgs.as_slice(), [e] if e.tag == b'E' && e.code().as_deref() == Some("08P01")), "{msgs:?}");

    // Unknown message types, a password message after login, each with a huge claimed length.
    for tag in [b'z', b'A', 0xff, b'p', b'W'] {
        let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
        let mut m = vec![tag];
        m.extend_from_slice(&(1i32 << 30).to_be_bytes());
        r.send(&m).await?;
        let msgs = bounded("unknown tag", 10, r.read_until_closed()).await?;
        assert!(matches!(msgs.as_slice(), [e] if e.tag == b'E' && e.code().as_deref() == Some("08P01")), "tag {tag}: {msgs:?}");
    }
    // Nothing above took the only server away from its holder.
    holder.batch_execute("COMMIT").await?;
    assert_eq!(p.app().database(DB).unwrap().pool.stats().opened.get(), 1);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transactions_do_not_hold_the_pool_forever() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("idle_tx").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").db("pool_timeout = \"20s\"").server("idle_transaction_timeout = \"1s\"").start().await?;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
        r.query_col("BEGIN").await?;
        r.query_col("CREATE TEMP TABLE mine(a int)").await.ok();
        holders.push(r);
    }
    // A third client gets a server once the idle transactions are ended.
    let c = bounded("third client", 30, p.client()).await?;
    assert_eq!(bounded("query", 30, c.query_one("SELECT 7", &[])).await?.get::<_, i32>(0), 7);
    for mut r in holders {
        let msgs = bounded("idle holder", 30, r.read_until_closed()).await?;
        let e = msgs.iter().find(|m| m.tag == b'E').expect("an error before the close");
        assert_eq!(e.code().as_deref(), Some("25P03"), "{:?}", e.field(b'M'));
        assert_eq!(e.field(b'S').as_deref(), Some("FATAL"));
    }
    // The servers came back rolled back and clean.
    let row = c.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'", &[]).await?;
    assert_eq!(row.get::<_, i64>(0), 0);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_after_client_idle_timeout() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("idle_client").await?;
    let p = Setup::new(cluster, &db).server("client_idle_timeout = \"1s\"").start().await?;
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    assert_eq!(r.query_col("SELECT 1").await?, vec![Some("1".to_owned())]);
    let msgs = bounded("idle client", 30, r.read_until_closed()).await?;
    assert!(matches!(msgs.as_slice(), [e] if e.code().as_deref() == Some("57P05")), "{msgs:?}");
    // A busy client is not idle: a 2 s query outlives the 1 s timeout.
    let c = p.client().await?;
    c.simple_query("SELECT pg_sleep(2)").await?;
    c.simple_query("SELECT 1").await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_connections_are_bounded() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("preauth").await?;
    let p = Setup::new(cluster, &db).server("max_preauth_connections = 3").server("login_timeout = \"60s\"").start().await?;
    // Three silent connections take every slot.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(Raw::connect(p.pg).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut r = Raw::connect(p.pg).await?;
    let msgs = bounded("over the cap", 10, r.read_until_closed()).await?;
    assert!(matches!(msgs.as_slice(), [e] if e.code().as_deref() == Some("53300")), "{msgs:?}");
    // Logged-in clients do not count; a closed silent connection frees its slot.
    drop(silent.pop());
    let c = bounded("login after a slot frees", 30, async {
        loop {
            match try_connect(&p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    c.simple_query("SELECT 1").await?;
    p.stop().await;
    Ok(())
}

/// Resident memory of this test process, in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_a_lease_is_not_buffered_without_bound() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("backpressure").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"20s\"").start().await?;
    let holder = p.client().await?;
    holder.batch_execute("BEGIN; SELECT 1").await?;
    let before = rss_kib();
    // Pipelines 128 MiB of queries while no server is free; tidepool must stop reading.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let big = query_msg(&format!("SELECT '{}'", "x".repeat(1 << 20)));
    let mut sent = 0usize;
    let pushed = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..128 {
            if r.send(&big).await.is_err() {
                break;
            }
            sent += big.len();
        }
    })
    .await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(pushed.is_err() || sent < 64 << 20, "tidepool read {sent} bytes while the client waited");
    assert!(grown_mib < 32, "RSS grew by {grown_mib} MiB while a client waited for a lease");
    holder.batch_execute("COMMIT").await?;
    drop(r);
    // Still serving.
    let c = p.client().await?;
    c.simple_query("SELECT 1").await?;
    p.stop().await;
    Ok(())
}

/// Ways to change session state that a first-word check missed; each must be reset before the
/// next client gets the server.
const LEAKS: &[&str] = &[
    "set/**/search_path to leaked_schema",
    "/* comment */ SET search_path TO leaked_schema",
    "-- comment\nSET search_path TO leaked_schema",
    "SELECT set_config('search_path', 'leaked_schema', false)",
    "SELECT pg_catalog.set_config('search_path', 'leaked_schema', false)",
    "SELECT \"set_config\"('search_path', 'leaked_schema', false)",
    "SELECT 1; SET search_path TO leaked_schema",
    "(SELECT set_config('search_path', 'leaked_schema', false))",
    "SELECT query_to_xml($$select set_config('search_path', 'leaked_schema', false)$$, true, true, '')",
    "select 1 as \"x;\"; set search_path = leaked_schema",
    "SELECT $$;$$; SET search_path TO leaked_schema",
    "SeT SeSsIoN search_path TO leaked_schema",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_never_reaches_the_next_client() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("leaks").await?;
    cluster.client(&db).await?.batch_execute("CREATE SCHEMA leaked_schema").await?;
    // One server: every client gets the connection the previous one used.
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;
    let probe = p.client().await?;
    let pristine: String = probe.query_one("SHOW search_path", &[]).await?.get(0);
    for (i, sql) in LEAKS.iter().enumerate() {
        let attacker = p.client().await?;
        // Simple protocol (the statement text as sent), then the extended protocol (Parse).
        // State that would pin the server is refused at pool_size 1 (max_pinned 0).
        if let Err(e) = attacker.simple_query(sql).await {
            anyhow::ensure!(code(&e).as_deref() == Some("53300"), "{sql}: {e}");
        }
        let seen: String = probe.query_one("SHOW search_path", &[]).await?.get(0);
        assert_eq!(seen, pristine, "simple query {i} leaked: {sql}");
        if !sql.contains(';') || sql.starts_with("select 1 as") {
            let _ = attacker.query(*sql, &[]).await;
            let seen: String = probe.query_one("SHOW search_path", &[]).await?.get(0);
            assert_eq!(seen, pristine, "extended query {i} leaked: {sql}");
        }
    }
    // Advisory locks taken at session level are released for the next client too.
    let attacker = p.client().await?;
    let r = attacker.simple_query("/* x */ SELECT pg_advisory_lock(4242)").await;
    assert_eq!(r.err().and_then(|e| code(&e)).as_deref(), Some("53300"), "max_pinned is 0 at pool_size 1");
    let held: i64 = probe.query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", &[]).await?.get(0);
    assert_eq!(held, 0, "an advisory lock reached another client");
    p.stop().await;
    Ok(())
}
