//! Proves the testkit works: clusters start (as root too), every auth role
//! connects with the method it is meant for, databases are per test,
//! restart keeps port and data, helpers run psql/pgbench, and clusters are
//! cleaned up however the process ends.

use std::time::Duration;

use anyhow::{Context, Result};
use tidepool_testkit::{
    free_port, run_pgbench, run_psql, self_signed_cert, test_pki, BackendFilter, StopMode, TestCluster, AUTH_ROLES, MD5_USER, SCRAM_USER, SUPERUSER, TRUST_USER,
};
use tokio_postgres::NoTls;

async fn connect_url(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test]
async fn every_auth_role_connects_and_wrong_passwords_fail() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("auth_roles").await?;
    for (user, password, method) in AUTH_ROLES {
        let url = cluster.url(user, &db);
        assert!(url.contains(password), "{url}");
        let client = connect_url(&url).await.with_context(|| format!("{user} via {method}"))?;
        let row = client.query_one("SELECT current_user::text", &[]).await?;
        assert_eq!(row.get::<_, String>(0), user);

        let bad = cluster.url_with_password(user, Some("wrong"), &db);
        let res = connect_url(&bad).await;
        if method == "trust" {
            assert!(res.is_ok(), "trust must ignore the password");
        } else {
            let Err(err) = res else { panic!("{user}: wrong password must fail") };
            let msg = err.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
            assert!(msg.contains("password authentication failed"), "{user}: {err:?}");
        }
    }
    // Superuser without password.
    let su = connect_url(&cluster.url(SUPERUSER, &db)).await?;
    let is_super: String = su.query_one("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user", &[]).await?.get(0);
    assert_eq!(is_super, "true");

    // Stored password formats match the methods.
    let stored: Vec<(String, String)> = su
        .query(
            "SELECT rolname::text, left(rolpassword, 14) FROM pg_authid
             WHERE rolname IN ('scram_user','md5_user','pass_user','trust_user') ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (role, prefix) in &stored {
        if role == MD5_USER {
            assert!(prefix.starts_with("md5"), "{role}: {prefix}");
        } else {
            assert_eq!(prefix, "SCRAM-SHA-256$", "{role}");
        }
    }
    assert_eq!(stored.len(), 4);
    Ok(())
}

#[tokio::test]
async fn servers_really_use_each_auth_method() -> Result<()> {
    // A private cluster logging connections: the log names the method used.
    let cluster = TestCluster::builder().setting("log_connections", "on").start().await?;
    let db = cluster.unique_database("methods").await?;
    for (user, _, _) in AUTH_ROLES {
        let c = connect_url(&cluster.url(user, &db)).await?;
        c.simple_query("SELECT 1").await?;
    }
    let log = std::fs::read_to_string(cluster.log_path())?;
    for (user, method) in [(SCRAM_USER, "scram-sha-256"), (MD5_USER, "md5"), ("pass_user", "password")] {
        let needle = format!("identity=\"{user}\" method={method}");
        assert!(log.contains(&needle), "missing {needle:?} in log:\n{log}");
    }
    assert!(!log.contains(&format!("identity=\"{TRUST_USER}\"")));
    Ok(())
}

#[tokio::test]
async fn per_test_databases_are_usable_by_non_superusers() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("objects").await?;
    let c = cluster.client_as(SCRAM_USER, &db).await?;
    c.batch_execute("CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'x')").await?;
    let v: String = c.query_one("SELECT v FROM t WHERE id = 1", &[]).await?.get(0);
    assert_eq!(v, "x");

    // create_database on an existing name replaces it.
    drop(c);
    cluster.create_database(&db).await?;
    let c = cluster.client(&db).await?;
    let n: i64 = c.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 't'", &[]).await?.get(0);
    assert_eq!(n, 0);
    let max: String = c.query_one("SHOW max_connections", &[]).await?.get(0);
    assert_eq!(max, "300");
    Ok(())
}

#[tokio::test]
async fn many_tests_in_parallel_on_the_shared_cluster() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(tokio::spawn(async move {
            let db = cluster.unique_database(&format!("par{i}")).await?;
            let c = cluster.client_as(MD5_USER, &db).await?;
            let n: i32 = c.query_one("SELECT $1::int + 1", &[&i]).await?.get(0);
            anyhow::ensure!(n == i + 1);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test]
async fn backend_count_filters_and_terminate() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("backends").await?;
    // Testkit connections are never counted.
    let _admin = cluster.client(&db).await?;
    assert_eq!(cluster.backend_count(&db, BackendFilter::Any).await?, 0);

    let mut held = Vec::new();
    for _ in 0..3 {
        let url = format!("{}?application_name=counted", cluster.url(MD5_USER, &db));
        held.push(connect_url(&url).await?);
    }
    held.push(connect_url(&cluster.url(TRUST_USER, &db)).await?);

    assert_eq!(cluster.backend_count(&db, BackendFilter::Any).await?, 4);
    assert_eq!(cluster.backend_count(&db, BackendFilter::app("counted")).await?, 3);
    assert_eq!(cluster.backend_count(&db, BackendFilter::user(MD5_USER)).await?, 3);
    assert_eq!(cluster.backend_count(&db, BackendFilter::user(TRUST_USER)).await?, 1);
    assert_eq!(cluster.backend_count("postgres", BackendFilter::user(MD5_USER)).await?, 0);

    assert_eq!(cluster.terminate_backends(&db, BackendFilter::app("counted")).await?, 3);
    cluster.wait_for_backend_count(&db, BackendFilter::Any, Duration::from_secs(5), |n| n == 1).await?;
    assert!(held[0].simple_query("SELECT 1").await.is_err());
    assert!(held[3].simple_query("SELECT 1").await.is_ok());
    Ok(())
}

#[tokio::test]
async fn restart_keeps_port_and_data() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let port = cluster.port();
    let db = cluster.unique_database("restart").await?;
    let c = cluster.client(&db).await?;
    c.batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42); GRANT SELECT ON kept TO PUBLIC").await?;

    cluster.restart().await?;
    assert_eq!(cluster.port(), port);
    assert!(cluster.is_running());
    // The old session was terminated by the restart.
    assert!(c.simple_query("SELECT 1").await.is_err());
    let c = cluster.client(&db).await?;
    let v: i32 = c.query_one("SELECT v FROM kept", &[]).await?.get(0);
    assert_eq!(v, 42);

    // Crash-restart (immediate) also recovers.
    cluster.restart_with(StopMode::Immediate).await?;
    let c = cluster.client_as(SCRAM_USER, &db).await?;
    let v: i32 = c.query_one("SELECT v FROM kept", &[]).await?.get(0);
    assert_eq!(v, 42);

    // stop / start_again: connections fail in between.
    cluster.stop().await?;
    assert!(!cluster.is_running());
    assert!(cluster.client(&db).await.is_err());
    cluster.start_again().await?;
    cluster.client(&db).await?.simple_query("SELECT 1").await?;
    Ok(())
}

#[tokio::test]
async fn shared_cluster_refuses_stop_and_restart() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    assert!(cluster.is_shared());
    assert!(cluster.restart().await.is_err());
    assert!(cluster.stop().await.is_err());
    assert!(cluster.is_running());
    Ok(())
}

#[tokio::test]
async fn drop_stops_server_and_removes_directory() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let root = cluster.socket_dir().to_path_buf();
    let addr = cluster.addr();
    assert!(root.join("data/postmaster.pid").exists());
    drop(cluster);
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}

/// Re-runs this test binary, whose child test starts a cluster and aborts
/// (no destructors run); the watchdog must still kill the server and delete
/// the directory.
#[tokio::test]
async fn watchdog_cleans_up_after_abort() -> Result<()> {
    if std::env::var_os("TESTKIT_ABORT_CHILD").is_some() {
        return Ok(()); // we are the child; the real work is in abort_child
    }
    let exe = std::env::current_exe()?;
    let out =
        tokio::process::Command::new(exe).args(["--exact", "abort_child", "--nocapture", "--test-threads=1"]).env("TESTKIT_ABORT_CHILD", "1").output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD_CLUSTER ").map(|(_, rest)| rest))
        .with_context(|| format!("child printed no cluster: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))?;
    let (root, port) = line.split_once(' ').context("bad child line")?;
    let root = std::path::PathBuf::from(root);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while root.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!root.exists(), "watchdog left {}", root.display());
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?)).await.is_err());
    Ok(())
}

#[tokio::test]
async fn abort_child() -> Result<()> {
    if std::env::var_os("TESTKIT_ABORT_CHILD").is_none() {
        return Ok(()); // only meaningful when spawned by watchdog_cleans_up_after_abort
    }
    let cluster = TestCluster::shared().await?;
    println!("CHILD_CLUSTER {} {}", cluster.socket_dir().display(), cluster.port());
    std::process::abort();
}

#[tokio::test]
async fn psql_and_pgbench_wrappers() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("bench").await?;
    let out = run_psql(&cluster.url(SCRAM_USER, &db), "SELECT 1 + 1, 'a'").await?.ok()?;
    assert_eq!(out.stdout.trim(), "2|a");

    let bad = run_psql(&cluster.url(SUPERUSER, &db), "SELECT nope").await?;
    assert!(!bad.success());
    assert!(bad.stderr.contains("nope"), "{}", bad.stderr);

    let url = cluster.url(SUPERUSER, &db);
    run_pgbench(["-i", "-s", "1", "-q", &url]).await?.ok()?;
    let out = run_pgbench(["-S", "-c", "4", "-j", "2", "-T", "1", &url]).await?.ok()?;
    let tps = out.tps().context("no tps in pgbench output")?;
    assert!(tps > 0.0, "{}", out.stdout);
    assert_eq!(out.pgbench_failed(), 0);
    Ok(())
}

#[tokio::test]
async fn ssl_cluster_accepts_tls() -> Result<()> {
    let cluster = TestCluster::builder().ssl(true).max_connections(50).start().await?;
    assert!(cluster.ssl_cert_pem().unwrap().contains("BEGIN CERTIFICATE"));
    let db = cluster.unique_database("tls").await?;
    let url = format!("{}?sslmode=require", cluster.url(SCRAM_USER, &db));
    let out = run_psql(&url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await?.ok()?;
    assert_eq!(out.stdout.trim(), "t");
    let c = cluster.client(&db).await?;
    let max: String = c.query_one("SHOW max_connections", &[]).await?.get(0);
    assert_eq!(max, "50");
    Ok(())
}

#[tokio::test]
async fn ssl_with_ca_cluster_passes_libpq_verify_full() -> Result<()> {
    let cluster = TestCluster::builder().ssl_with_ca(["localhost", "127.0.0.1"]).max_connections(20).start().await?;
    let ca = cluster.ssl_ca_pem().expect("CA with ssl_with_ca");
    assert_ne!(Some(ca), cluster.ssl_cert_pem(), "the server certificate is signed by the CA, not self-signed");
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca)?;
    let db = cluster.unique_database("tls_ca").await?;
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(SCRAM_USER, &db), ca_path.display());
    let out = run_psql(&url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await?.ok()?;
    assert_eq!(out.stdout.trim(), "t");
    Ok(())
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: std::collections::HashSet<u16> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
    let p = free_port();
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port binds");
}

#[test]
fn certificates() {
    let (cert, key) = self_signed_cert(["localhost", "127.0.0.1"]);
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
    let pki = test_pki(&["localhost"]);
    assert!(pki.ca_cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(pki.cert_pem.contains("BEGIN CERTIFICATE"));
    assert_ne!(pki.ca_cert_pem, pki.cert_pem);
    assert!(pki.key_pem.contains("PRIVATE KEY"));
}
