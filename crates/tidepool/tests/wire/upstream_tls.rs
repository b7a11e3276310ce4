//! TLS from tidepool to PostgreSQL with certificate verification (libpq's sslmode semantics).
//!
//! One cluster serves TLS with a certificate for `localhost` only (no IP SAN), signed by a test
//! CA. Connecting to `localhost` matches the name; connecting to `127.0.0.1` is a name mismatch
//! with a trusted chain. A second CA that signed nothing plays the wrong CA.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tidepool_testkit::{test_pki, TestCluster, SCRAM_PASSWORD, SCRAM_USER};

use crate::common::*;

struct Env {
    cluster: TestCluster,
    _dir: tempfile::TempDir,
    right_ca: PathBuf,
    /// A CA with the right CA's subject but another key.
    wrong_ca: PathBuf,
    /// A self-signed certificate that issued nothing on the server's chain.
    unrelated_ca: PathBuf,
}

static ENV: tokio::sync::OnceCell<Env> = tokio::sync::OnceCell::const_new();

/// The TLS cluster shared by the tests of this file (the testkit's watchdog removes it at exit).
async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let cluster = TestCluster::builder().ssl_with_ca(["localhost"]).max_connections(60).start().await.expect("TLS cluster");
        let dir = tempfile::tempdir().expect("tempdir");
        let right_ca = dir.path().join("right-ca.pem");
        let wrong_ca = dir.path().join("wrong-ca.pem");
        std::fs::write(&right_ca, cluster.ssl_ca_pem().expect("CA")).expect("write CA");
        std::fs::write(&wrong_ca, test_pki(["localhost"]).ca_cert_pem).expect("write CA");
        let unrelated_ca = dir.path().join("unrelated-ca.pem");
        std::fs::write(&unrelated_ca, tidepool_testkit::self_signed_cert(["localhost"]).0).expect("write CA");
        Env { cluster, _dir: dir, right_ca, wrong_ca, unrelated_ca }
    })
    .await
}

/// Upstream URL as `scram_user` at `host` with `query` appended (`?sslmode=…`).
fn url(env: &Env, host: &str, db: &str, query: &str) -> String {
    format!("postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@{host}:{}/{db}{query}", env.cluster.port())
}

fn toml_path(p: &std::path::Path) -> String {
    format!("\"{}\"", p.display().to_string().replace('\\', "\\\\"))
}

/// A proxy that also serves HTTP (for `/sql`), with the bound HTTP address.
async fn start(setup: Setup) -> Result<(tidepool::run::Running, std::net::SocketAddr, std::net::SocketAddr)> {
    let setup = setup.server("http_listen = \"127.0.0.1:0\"");
    let config = tidepool::Config::from_toml(&setup.toml(), std::iter::empty()).map_err(|e| anyhow!("config: {e}"))?;
    let running = tidepool::run::start(config).await?;
    let pg = running.bound.pg.ok_or_else(|| anyhow!("no pg listener"))?;
    let http = running.bound.http.ok_or_else(|| anyhow!("no http listener"))?;
    Ok((running, pg, http))
}

fn client_config(pg: std::net::SocketAddr) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1").port(pg.port()).user(SCRAM_CLIENT).password(SCRAM_CLIENT_PW).dbname(DB).connect_timeout(Duration::from_secs(10));
    c
}

/// The proxy works and its server connection is encrypted.
async fn assert_works(setup: Setup) -> Result<()> {
    let (running, pg, http) = start(setup).await?;
    let c = bounded("connect", 20, connect(&client_config(pg))).await?;
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?.get(0);
    assert!(ssl, "tidepool → PostgreSQL must be encrypted");
    let r = bounded("/sql", 20, sql(http, "SELECT 1 AS one")).await?;
    assert_eq!(r.0, 200, "/sql: {}", r.1);
    drop(c);
    running.stop().await;
    Ok(())
}

/// The certificate is refused: wire clients get a FATAL 08006 naming the TLS failure, `/sql` a
/// 503 with the same text, both promptly (not after pool_timeout), and no connection is pooled.
async fn assert_refused(setup: Setup, needle: &str) -> Result<String> {
    // A long pool_timeout shows the failure is not retried until the timeout.
    let (running, pg, http) = start(setup.db("pool_timeout = \"30s\"")).await?;
    let began = Instant::now();
    let err = bounded("connect", 20, try_connect(&client_config(pg))).await.expect_err("connected despite a bad certificate");
    assert_eq!(code(&err).as_deref(), Some("08006"), "{err:?}");
    let msg = message(&err);
    assert!(msg.contains("upstream TLS") && msg.contains(needle), "wire message {msg:?} lacks {needle:?}");
    let (status, body) = bounded("/sql", 20, sql(http, "SELECT 1")).await?;
    assert_eq!(status, 503, "/sql: {body}");
    assert!(body.contains("upstream TLS") && body.contains(needle), "/sql body {body:?} lacks {needle:?}");
    assert!(began.elapsed() < Duration::from_secs(10), "refusal took {:?}", began.elapsed());
    let db = running.app.database(DB).expect("db");
    let pool = &db.pool;
    assert_eq!(pool.stats().opened.get(), 0, "a connection was opened");
    assert!(pool.stats().errors.get() >= 2, "failed connects are counted");
    assert_eq!((pool.active(), pool.idle_count()), (0, 0), "a failed lease holds nothing");
    running.stop().await;
    Ok(msg)
}

/// POST /sql as the SCRAM client; returns (status, body).
async fn sql(http: std::net::SocketAddr, query: &str) -> Result<(u16, String)> {
    let cs = format!("postgresql://{SCRAM_CLIENT}:{SCRAM_CLIENT_PW}@{http}/{DB}");
    let r = reqwest::Client::new()
        .post(format!("http://{http}/sql"))
        .header("neon-connection-string", cs)
        .json(&serde_json::json!({"query": query, "params": []}))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_verify_full_with_the_right_ca_works() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("vfull_ok").await?;
    // Config keys…
    let setup =
        Setup::with_url(url(env, "localhost", &db, "")).db("upstream_tls = \"verify-full\"").db(&format!("upstream_tls_ca = {}", toml_path(&env.right_ca)));
    assert_works(setup).await?;
    // …and the libpq URL parameters.
    let q = format!("?sslmode=verify-full&sslrootcert={}", env.right_ca.display());
    assert_works(Setup::with_url(url(env, "localhost", &db, &q))).await
}

/// The URL alone asks for verification: no CA file, so the system roots, which do not include the
/// test CA. (Before verification was implemented this connected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_verify_full_refuses_a_certificate_the_system_does_not_trust() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("vfull_system").await?;
    for host in ["localhost", "127.0.0.1"] {
        let setup = Setup::with_url(url(env, host, &db, "?sslmode=verify-full"));
        if let Err(e) = tidepool::Config::from_toml(&setup.toml(), std::iter::empty()) {
            // A machine without a system trust store refuses at load time instead.
            assert!(e.to_string().contains("no trusted root certificates"), "{e}");
            continue;
        }
        let msg = assert_refused(setup, "UnknownIssuer").await?;
        assert!(msg.contains("sslmode=verify-full, system roots"), "{msg}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_wrong_ca_is_refused() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("wrong_ca").await?;
    for mode in ["verify-full", "verify-ca"] {
        let setup = Setup::with_url(url(env, "localhost", &db, ""))
            .db(&format!("upstream_tls = \"{mode}\""))
            .db(&format!("upstream_tls_ca = {}", toml_path(&env.wrong_ca)));
        // The wrong CA has the same subject as the right one, so rustls reports BadSignature
        // (an unrelated issuer gives UnknownIssuer): either way an invalid certificate.
        let msg = assert_refused(setup, "invalid peer certificate").await?;
        assert!(msg.contains(&format!("sslmode={mode}")), "{msg}");
    }
    let q = format!("?sslmode=verify-full&sslrootcert={}", env.unrelated_ca.display());
    assert_refused(Setup::with_url(url(env, "localhost", &db, &q)), "UnknownIssuer").await?;
    // As in libpq, a CA file makes `require` check the chain as well.
    let q = format!("?sslmode=require&sslrootcert={}", env.wrong_ca.display());
    assert_refused(Setup::with_url(url(env, "localhost", &db, &q)), "invalid peer certificate").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_verify_full_refuses_a_host_name_mismatch() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("vfull_name").await?;
    // The certificate names only `localhost`; 127.0.0.1 is the same server under another name.
    let setup = Setup::with_url(url(env, "127.0.0.1", &db, "?sslmode=verify-full")).db(&format!("upstream_tls_ca = {}", toml_path(&env.right_ca)));
    assert_refused(setup, "not valid for name").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_verify_ca_accepts_a_host_name_mismatch() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("vca_name").await?;
    let setup =
        Setup::with_url(url(env, "127.0.0.1", &db, "")).db("upstream_tls = \"verify-ca\"").db(&format!("upstream_tls_ca = {}", toml_path(&env.right_ca)));
    assert_works(setup).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_require_accepts_any_certificate() -> Result<()> {
    let env = env().await;
    let db = env.cluster.unique_database("require_any").await?;
    // No CA configured: encryption without verification, whatever the name or issuer.
    assert_works(Setup::with_url(url(env, "127.0.0.1", &db, "")).db("upstream_tls = \"require\"")).await?;
    assert_works(Setup::with_url(url(env, "127.0.0.1", &db, "?sslmode=require"))).await
}

#[test]
fn upstream_verify_without_roots_fails_at_load() {
    let cfg_url = |url: &str, db_lines: &str| {
        let toml = format!("[[databases]]\nname = \"app\"\nurl = \"{url}\"\n{db_lines}\n");
        tidepool::Config::from_toml(&toml, std::iter::empty()).map(|_| ()).map_err(|e| e.to_string())
    };
    let cfg = |db_lines: &str| cfg_url("postgres://u@db.example.com/app", db_lines);
    let e = cfg("upstream_tls = \"verify-full\"\nupstream_tls_ca = \"/nonexistent/ca.pem\"").unwrap_err();
    assert!(e.contains("database \"app\": upstream TLS") && e.contains("/nonexistent/ca.pem"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = cfg(&format!("upstream_tls = \"verify-ca\"\nupstream_tls_ca = {}", toml_path(&empty))).unwrap_err();
    assert!(e.contains("no certificates"), "{e}");
    assert!(cfg("upstream_tls = \"sslmode\"").unwrap_err().contains("unknown variant"));
    let e = cfg_url("postgres://u@db.example.com/app?sslmode=require&sslrootcert=system", "").unwrap_err();
    assert!(e.contains("verify-full"), "{e}");
}

/// `verify-full` without a CA file uses the system trust store; an empty one fails the load
/// (checked with `tidepool check-config` in a child process, whose store is set through
/// `SSL_CERT_FILE`).
#[test]
fn upstream_verify_with_an_empty_system_store_fails_at_load() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tidepool.toml");
    std::fs::write(&config, "[[databases]]\nname = \"app\"\nurl = \"postgres://u@db.example.com/app?sslmode=verify-full\"\n")?;
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "")?;
    let some = dir.path().join("ca.pem");
    std::fs::write(&some, test_pki(["localhost"]).ca_cert_pem)?;
    let check = |store: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .arg("check-config")
            .arg(&config)
            .env("SSL_CERT_FILE", store)
            .env_remove("SSL_CERT_DIR")
            .output()
    };
    let out = check(&empty)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an empty trust store was accepted");
    assert!(stderr.contains("no trusted root certificates") && stderr.contains("upstream_tls_ca"), "{stderr}");
    let out = check(&some)?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
