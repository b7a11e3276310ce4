//! Prisma 5.22 and 6.19 clients, unchanged (`@prisma/client/edge` + `withAccelerate()`, generated
//! with `--no-engine`), against tidepool's DataProxy routes over HTTPS: the suite
//! `tests/clients/prisma5/suite.cjs` run from `tests/clients/prisma5` and `tests/clients/prisma6`.
//! Needs Node >= 20 and the pinned query compiler (`tools/fetch-query-compiler.sh`, which both
//! `setup.sh` scripts run; .ci/run calls them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tidepool_testkit::{TestCluster, SUPERUSER};

/// One Node suite at a time across the tests of this binary (CPU-heavy).
static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Runs `program args` in `dir`; returns (exit ok, combined output).
async fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> Result<(bool, String)> {
    let out = tempfile::NamedTempFile::new()?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(out.reopen()?)
        .stderr(out.reopen()?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {program} in {}", dir.display()))?;
    let ok = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s?.success(),
        Err(_) => {
            let _ = child.kill().await;
            false
        }
    };
    Ok((ok, std::fs::read_to_string(out.path()).unwrap_or_default()))
}

async fn suite(client_dir: &str, prefix: &str) -> Result<()> {
    let pg = TestCluster::shared().await?;
    let db = pg.unique_database(prefix).await?;
    let root = repo_root();
    let schema_sql = std::fs::read_to_string(root.join("tests/clients/prisma/schema.sql"))?;
    pg.client(&db).await?.batch_execute(&schema_sql).await.context("schema.sql")?;

    let tmp = tempfile::tempdir()?;
    let (cert, key) = tidepool_testkit::self_signed_cert(["localhost", "127.0.0.1"]);
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, cert)?;
    std::fs::write(&key_path, key)?;
    let api_key = format!("dataproxy-{db}");
    let toml = format!(
        r#"
[server]
pg_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
shutdown_timeout = "2s"

[http]
tls_cert = {cert_path:?}
tls_key = {key_path:?}

[[databases]]
name = "{db}"
url = "{url}"
pool_size = 10

[[api_keys]]
sha256 = "{sha}"
database = "{db}"
"#,
        url = pg.url(SUPERUSER, &db),
        sha = hex::encode(tidepool::keys::hash_key(&api_key)),
    );
    let config = tidepool::Config::from_toml(&toml, std::iter::empty()).with_context(|| format!("config:\n{toml}"))?;
    let running = tidepool::run::start(config).await?;
    let http = running.bound.http.ok_or_else(|| anyhow!("no http listener"))?;

    let dir = root.join("tests/clients").join(client_dir);
    let result = async {
        let _node = NODE.lock().await;
        let (ok, out) = run(&dir, "bash", &["setup.sh"], &[], Duration::from_secs(1200)).await?;
        if !ok {
            bail!("{client_dir}/setup.sh failed:\n{out}");
        }
        let env =
            [("DATABASE_URL", format!("prisma://localhost:{}/?api_key={api_key}", http.port())), ("NODE_EXTRA_CA_CERTS", cert_path.display().to_string())];
        let (ok, out) = run(&dir, "node", &["../prisma5/suite.cjs"], &env, Duration::from_secs(600)).await?;
        let counts = out.lines().rev().find(|l| l.contains(" passed, ") && l.ends_with(" failed")).unwrap_or("").to_owned();
        eprintln!("{client_dir}: {counts}");
        if !ok || !counts.ends_with(" 0 failed") || counts.starts_with("0 passed") {
            bail!("{client_dir} suite failed:\n{out}");
        }
        Ok(())
    }
    .await;
    running.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma5_client_over_dataproxy() -> Result<()> {
    suite("prisma5", "dataproxy_p5").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma6_client_over_dataproxy() -> Result<()> {
    suite("prisma6", "dataproxy_p6").await
}
