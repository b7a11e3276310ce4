//! Operations against a real Postgres with real clients: reload of the config file (console
//! `RELOAD`) shrinking and growing a pool under pgbench, adding and removing databases, changing
//! a password, rejecting a broken file; `PAUSE`/`RESUME` across a Postgres restart under pgbench;
//! `RECONNECT`/`WAIT_CLOSE`, `KILL`, `DISABLE`/`ENABLE` and their errors; the `/metrics` of a
//! database removed by one reload and added back by another.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use tidepool_testkit::{run_pgbench, BackendFilter, TestCluster, SCRAM_USER};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::*;

/// A config with alice as console admin; `db_lines` go into the `app` database table, `more` is
/// appended (further databases).
fn setup(cluster: &TestCluster, db: &str, db_lines: &[&str]) -> Setup {
    let mut s = Setup::new(cluster, db).server(&format!("admin_users = [\"{SCRAM_CLIENT}\"]"));
    for l in db_lines {
        s = s.db(l);
    }
    s
}

async fn write(path: &Path, text: &str) -> Result<()> {
    tokio::fs::write(path, text).await?;
    Ok(())
}

async fn admin(p: &Proxy) -> Result<Client> {
    let mut c = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    c.dbname("pgbouncer");
    connect(&c).await
}

/// The command tag of a console command.
async fn command(c: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(_) => Some(sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase()),
            _ => None,
        })
        .unwrap_or_default())
}

/// Server connections tidepool holds to `db` (its upstream user's backends).
async fn upstream(cluster: &TestCluster, db: &str) -> Result<i64> {
    cluster.backend_count(db, BackendFilter::User(SCRAM_USER.into())).await
}

async fn pgbench_init(url: &str) -> Result<()> {
    let init = bounded("pgbench -i", 120, run_pgbench(["-i", "-s", "1", "-q", url])).await?;
    if !init.status.success() {
        bail!("pgbench -i failed: {}", init.stderr);
    }
    Ok(())
}

#[tokio::test]
async fn reload_shrinks_a_pool_under_pgbench_and_grows_it_back() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("reload_size").await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tidepool.toml");
    let toml = |size: usize| setup(cluster, &db, &[&format!("pool_size = {size}"), "pool_timeout = \"30s\""]).toml();
    write(&file, &toml(5)).await?;
    let p = Proxy::start_file(&file).await?;
    let url = p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    pgbench_init(&url).await?;
    let console = admin(&p).await?;

    let bench = tokio::spawn(run_pgbench(["-c", "8", "-j", "8", "-T", "14", "-n", &url].map(String::from)));
    // Under load the pool fills up to 5.
    let full = cluster.wait_for_backend_count(&db, BackendFilter::User(SCRAM_USER.into()), Duration::from_secs(20), |n| n == 5).await?;
    assert_eq!(full, 5);

    write(&file, &toml(2)).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    let settled = cluster.wait_for_backend_count(&db, BackendFilter::User(SCRAM_USER.into()), Duration::from_secs(20), |n| n <= 2).await?;
    assert!(settled <= 2);
    // And it stays there while the load goes on.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let n = upstream(cluster, &db).await?;
        assert!(n <= 2, "{n} upstream connections after shrinking to 2");
    }

    write(&file, &toml(5)).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    let grown = cluster.wait_for_backend_count(&db, BackendFilter::User(SCRAM_USER.into()), Duration::from_secs(20), |n| n > 2).await?;
    assert!(grown > 2 && grown <= 5, "{grown}");

    let out = bounded("pgbench", 120, bench).await??;
    assert!(out.status.success(), "pgbench: {}\n{}", out.stdout, out.stderr);
    assert_eq!(out.pgbench_failed(), 0, "{}", out.stdout);
    assert!(out.stdout.contains("number of transactions actually processed"), "{}", out.stdout);
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn reload_adds_and_drains_databases_changes_passwords_and_refuses_a_broken_file() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("reload_dbs").await?;
    let other = cluster.unique_database("reload_other").await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tidepool.toml");
    let base = setup(cluster, &db, &["pool_size = 3"]).toml();
    let second = format!("\n[[databases]]\nname = \"second\"\nurl = \"{}\"\npool_size = 2\n", cluster.url(SCRAM_USER, &other));
    write(&file, &base).await?;
    let p = Proxy::start_file(&file).await?;
    let console = admin(&p).await?;
    let mut on_second = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    on_second.dbname("second");
    expect_code(try_connect(&on_second).await, "3D000");

    // Added by reload: reachable.
    write(&file, &format!("{base}{second}")).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    let c2 = connect(&on_second).await?;
    let name: String = c2.query_one("SELECT current_database()::text", &[]).await?.get(0);
    assert_eq!(name, other);

    // Removed while a client is inside a transaction: that client finishes, new ones are refused.
    c2.batch_execute("BEGIN; SELECT 1").await?;
    write(&file, &base).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    expect_code(try_connect(&on_second).await, "3D000");
    let v: i32 = c2.query_one("SELECT 41 + 1", &[]).await?.get(0);
    assert_eq!(v, 42);
    c2.batch_execute("COMMIT").await?;
    drop(c2);

    // A changed password: the next login needs the new one.
    let changed = base.replace(&format!("password = \"{SCRAM_CLIENT_PW}\""), "password = \"alice-new-pw\"");
    assert_ne!(changed, base);
    write(&file, &changed).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    expect_code(try_connect(&p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await, "28P01");
    let c = connect(&p.config(SCRAM_CLIENT, Some("alice-new-pw"))).await?;
    c.simple_query("SELECT 1").await?;

    // A paused database whose upstream settings change gets new pools, still paused; a session
    // from before (on the old pool) is held too, and RESUME lets both go.
    assert_eq!(command(&console, "PAUSE app").await?, "PAUSE");
    let replaced = changed.replace("pool_size = 3", "pool_size = 3\nconnect_timeout = \"4s\"");
    write(&file, &replaced).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    let held_old = tokio::spawn(async move { c.query_one("SELECT 11", &[]).await.map(|r| r.get::<_, i32>(0)) });
    let fresh = connect(&p.config(SCRAM_CLIENT, Some("alice-new-pw"))).await?;
    let held_new = tokio::spawn(async move { fresh.query_one("SELECT 12", &[]).await.map(|r| r.get::<_, i32>(0)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held_old.is_finished() && !held_new.is_finished(), "paused across the reload");
    assert_eq!(command(&console, "RESUME app").await?, "RESUME");
    assert_eq!(bounded("old session", 30, held_old).await??, 11);
    assert_eq!(bounded("new session", 30, held_new).await??, 12);
    write(&file, &changed).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");

    // A broken file: RELOAD errors, the running configuration keeps serving.
    write(&file, "[server]\npg_listen = 12\n[[databases]]\n").await?;
    let err = command(&console, "RELOAD").await.expect_err("a broken file must be refused");
    assert_eq!(code(&err).as_deref(), Some("F0000"), "{}", message(&err));
    // An invalid value (validation, not syntax) is refused the same way.
    write(&file, &changed.replace("pool_size = 3", "pool_size = 0")).await?;
    let err = command(&console, "RELOAD").await.expect_err("pool_size 0 must be refused");
    assert_eq!(code(&err).as_deref(), Some("F0000"), "{}", message(&err));
    let c = connect(&p.config(SCRAM_CLIENT, Some("alice-new-pw"))).await?;
    let v: i32 = c.query_one("SELECT 7", &[]).await?.get(0);
    assert_eq!(v, 7);
    assert_eq!(p.app().database(DB).map(|d| d.config.pool_size), Some(3));
    // The console session survived its errors.
    assert_eq!(command(&console, "SHOW VERSION").await?, "SHOW");
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn pause_resume_across_a_postgres_restart_under_pgbench() -> Result<()> {
    // Its own cluster: it is restarted.
    let cluster = TestCluster::start().await?;
    let db = cluster.unique_database("pause").await?;
    let p = setup(&cluster, &db, &["pool_size = 4", "pool_timeout = \"20s\""]).start().await?;
    let url = p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    pgbench_init(&url).await?;
    let console = admin(&p).await?;
    // Transactions that last (a sleep inside), so one is always in flight: a restart without
    // PAUSE fails them (checked by hand: pgbench aborts its clients).
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("slow.sql");
    write(&script, "BEGIN;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;\nSELECT pg_sleep(0.05);\nEND;\n").await?;
    let script = script.to_string_lossy().into_owned();
    let bench = tokio::spawn(run_pgbench(["-c", "6", "-j", "6", "-T", "10", "-n", "-f", &script, &url].map(String::from)));
    wait_active(&cluster, &db, "pg_sleep").await?;

    assert_eq!(command(&console, "PAUSE app").await?, "PAUSE");
    // Paused: no server connection left, SHOW DATABASES says so.
    let left = cluster.wait_for_backend_count(&db, BackendFilter::User(SCRAM_USER.into()), Duration::from_secs(10), |n| n == 0).await?;
    assert_eq!(left, 0);
    let shown = console.simple_query("SHOW DATABASES").await?;
    let paused = shown.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) if r.get("name") == Some(DB) => r.get("paused").map(str::to_owned),
        _ => None,
    });
    assert_eq!(paused.as_deref(), Some("1"));
    let err = command(&console, "PAUSE app").await.expect_err("already paused");
    assert_eq!(code(&err).as_deref(), Some("08P01"));

    cluster.restart().await?;
    assert_eq!(command(&console, "RESUME app").await?, "RESUME");
    let out = bounded("pgbench", 120, bench).await??;
    assert!(out.status.success(), "pgbench: {}\n{}", out.stdout, out.stderr);
    assert_eq!(out.pgbench_failed(), 0, "{}", out.stdout);
    assert!(!out.stderr.contains("aborted"), "{}", out.stderr);
    let err = command(&console, "RESUME app").await.expect_err("not paused");
    assert_eq!(code(&err).as_deref(), Some("08P01"));
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn reconnect_wait_close_kill_disable_enable() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("ops_verbs").await?;
    let p = setup(cluster, &db, &["pool_size = 2"]).start().await?;
    let console = admin(&p).await?;
    let c = p.client().await?;
    let before: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);

    // RECONNECT: a connection inside a transaction is closed when it is released.
    c.batch_execute("BEGIN").await?;
    let in_tx: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    assert_eq!(command(&console, "RECONNECT app").await?, "RECONNECT");
    let waiting = tokio::spawn({
        let console = admin(&p).await?;
        async move { command(&console, "WAIT_CLOSE app").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "WAIT_CLOSE returned while an old connection is in a transaction");
    let still: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    assert_eq!(still, in_tx, "never closed mid-transaction");
    c.batch_execute("COMMIT").await?;
    assert_eq!(bounded("WAIT_CLOSE", 30, waiting).await??, "WAIT_CLOSE");
    let after: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    assert_ne!(after, before);
    assert_ne!(after, in_tx);

    // DISABLE refuses new clients (existing ones go on); ENABLE admits them again.
    assert_eq!(command(&console, "DISABLE app").await?, "DISABLE");
    expect_code(try_connect(&p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await, "55000");
    c.simple_query("SELECT 1").await?;
    assert_eq!(command(&console, "ENABLE app").await?, "ENABLE");
    p.client().await?.simple_query("SELECT 1").await?;

    // KILL drops the database's clients and leaves it paused until RESUME.
    assert_eq!(command(&console, "KILL app").await?, "KILL");
    let dead = poll(100, || async { c.simple_query("SELECT 1").await.err().map(|_| ()) }).await;
    assert!(dead.is_some(), "a killed client must be disconnected");
    let fresh = p.client().await?;
    let held = tokio::spawn(async move { fresh.query_one("SELECT 5", &[]).await.map(|r| r.get::<_, i32>(0)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a query after KILL waits for RESUME");
    assert_eq!(command(&console, "RESUME app").await?, "RESUME");
    assert_eq!(bounded("held query", 30, held).await??, 5);

    // Errors: unknown database, the admin database, a stats-less argument.
    let err = command(&console, "PAUSE nosuchdb").await.expect_err("unknown db");
    assert_eq!(code(&err).as_deref(), Some("08P01"));
    assert!(message(&err).contains("no such database"), "{}", message(&err));
    let err = command(&console, "DISABLE").await.expect_err("needs a db");
    assert_eq!(code(&err).as_deref(), Some("08P01"));
    // A proxy not started from a file has nothing to reload.
    let err = command(&console, "RELOAD").await.expect_err("no file");
    assert_eq!(code(&err).as_deref(), Some("08P01"));
    p.stop().await;
    Ok(())
}

/// SIGHUP against the real binary (`tidepool serve --config FILE`): a database added to the file
/// becomes reachable; a broken file is refused and the process keeps serving.
#[tokio::test]
async fn sighup_reloads_the_running_binary() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sighup").await?;
    let other = cluster.unique_database("sighup_other").await?;
    let port = tidepool_testkit::free_port();
    let base = setup(cluster, &db, &["pool_size = 2"]).toml().replacen("pg_listen = \"127.0.0.1:0\"", &format!("pg_listen = \"127.0.0.1:{port}\""), 1);
    assert!(base.contains(&format!(":{port}\"")), "the test config's listener changed:\n{base}");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tidepool.toml");
    write(&file, &base).await?;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?.to_string();
    let cfg = |dbname: &str| {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(port).user(SCRAM_CLIENT).password(SCRAM_CLIENT_PW).dbname(dbname).connect_timeout(Duration::from_secs(5));
        c
    };
    let up = poll(200, || async { try_connect(&cfg(DB)).await.ok() }).await;
    assert!(up.is_some(), "tidepool serve did not come up");
    expect_code(try_connect(&cfg("second")).await, "3D000");

    let hup = || async { tokio::process::Command::new("kill").args(["-HUP", &pid]).status().await };
    write(&file, &format!("{base}\n[[databases]]\nname = \"second\"\nurl = \"{}\"\n", cluster.url(SCRAM_USER, &other))).await?;
    assert!(hup().await?.success());
    let reached = poll(200, || async { try_connect(&cfg("second")).await.ok() }).await;
    let c = reached.ok_or_else(|| anyhow::anyhow!("the database added before SIGHUP never became reachable"))?;
    let name: String = c.query_one("SELECT current_database()::text", &[]).await?.get(0);
    assert_eq!(name, other);

    write(&file, "this is not toml [").await?;
    assert!(hup().await?.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = connect(&cfg("second")).await?;
    c.simple_query("SELECT 1").await?;
    connect(&cfg(DB)).await?.simple_query("SELECT 1").await?;
    drop(child);
    Ok(())
}

/// `SHOW STATS_AVERAGES` and the `avg_*` columns of `SHOW STATS` are the last stats period's
/// figures (the period is shortened here; PgBouncer's default, 60 s, is tidepool's).
#[tokio::test]
async fn stats_averages_cover_the_last_period() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("ops_avg").await?;
    let p = setup(cluster, &db, &["pool_size = 2"]).start().await?;
    p.app().stats_period.set_period(Duration::from_secs(1));
    let console = admin(&p).await?;
    let c = p.client().await?;
    let averages = |sql: &'static str, column: &'static str| {
        let console = &console;
        async move {
            let msgs = console.simple_query(sql).await.ok()?;
            msgs.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) if r.get(0) == Some(DB) => r.get(column)?.parse::<i64>().ok(),
                _ => None,
            })
        }
    };
    // Transactions keep running while the averages are polled.
    let mut seen = None;
    for _ in 0..100 {
        for _ in 0..20 {
            c.batch_execute("BEGIN; SELECT 1; COMMIT").await?;
        }
        if let Some(n) = averages("SHOW STATS_AVERAGES", "xact_count").await.filter(|n| *n > 0) {
            seen = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.is_some(), "STATS_AVERAGES xact_count never became positive under load");
    assert!(averages("SHOW STATS_AVERAGES", "server_assignment_count").await.is_some_and(|n| n > 0));
    assert!(averages("SHOW STATS", "avg_xact_count").await.is_some_and(|n| n > 0));
    // With the load stopped, the next complete period averages to zero.
    let idle = poll(100, || async { averages("SHOW STATS_AVERAGES", "xact_count").await.filter(|n| *n == 0) }).await;
    assert_eq!(idle, Some(0), "averages must follow the period, not the totals");
    let totals = averages("SHOW STATS_TOTALS", "xact_count").await;
    assert!(totals.is_some_and(|n| n > 0));
    p.stop().await;
    Ok(())
}

/// The value of the series `name{labels}` in the admin listener's `/metrics` (None: absent).
async fn metric(p: &Proxy, series: &str) -> Result<Option<f64>> {
    let admin = p.admin.ok_or_else(|| anyhow::anyhow!("no admin listener"))?;
    let text = reqwest::get(format!("http://{admin}/metrics")).await?.text().await?;
    Ok(text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()))
}

#[tokio::test]
async fn a_database_removed_and_added_back_by_reload_keeps_its_metrics_live() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("reload_metrics").await?;
    let other = cluster.unique_database("reload_metrics_other").await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tidepool.toml");
    let base = setup(cluster, &db, &[]).toml();
    let second = format!("\n[[databases]]\nname = \"second\"\nurl = \"{}\"\npool_size = 2\n", cluster.url(SCRAM_USER, &other));
    let opened = "tidepool_pool_connections_opened_total{database=\"second\"}";
    write(&file, &format!("{base}{second}")).await?;
    let p = Proxy::start_file(&file).await?;
    let console = admin(&p).await?;
    let mut on_second = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    on_second.dbname("second");
    let c = connect(&on_second).await?;
    c.simple_query("SELECT 1").await?;
    drop(c);
    let first = metric(&p, opened).await?.unwrap_or(0.0);
    assert!(first >= 1.0, "the first incarnation's connection is counted ({first})");

    // Removed by one reload, added back by the next: its new pool counts into the same series.
    write(&file, &base).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    expect_code(try_connect(&on_second).await, "3D000");
    write(&file, &format!("{base}{second}")).await?;
    assert_eq!(command(&console, "RELOAD").await?, "RELOAD");
    let c = connect(&on_second).await?;
    c.simple_query("SELECT 1").await?;
    let after = metric(&p, opened).await?.unwrap_or(0.0);
    assert!(after > first, "connections opened after the database came back are counted ({first} → {after})");
    let size = metric(&p, "tidepool_pool_size{database=\"second\"}").await?;
    assert_eq!(size, Some(2.0), "pool_size of the re-added database");
    drop(c);
    p.stop().await;
    Ok(())
}
