//! `tidepool dev`'s setup (the code path the command runs, without waiting for Ctrl-C): private
//! file modes, and a local cluster that asks every role for its password, the superuser included,
//! also when it was created by an older version with trust authentication.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use tidepool::dev::{find_pg_bin, prepare, DevArgs};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn args(dir: &Path) -> DevArgs {
    DevArgs {
        upstream: None,
        dir: dir.to_owned(),
        pg_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        tls: true,
    }
}

/// `psql -h 127.0.0.1 -U postgres` with no password available: (exit ok, stderr).
fn psql_without_password(port: u16) -> (bool, String) {
    let psql = find_pg_bin("psql").or_else(|| which("psql")).expect("psql");
    let out = Command::new(psql)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-w", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/dev/null")
        .output()
        .expect("running psql");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

async fn check_cluster(env: &tidepool::dev::DevEnv) -> Result<()> {
    let port = env.port.context("local cluster port")?;
    let (ok, stderr) = psql_without_password(port);
    assert!(!ok, "passwordless psql -U postgres was let in");
    assert!(stderr.contains("password"), "{stderr}");
    // tokio-postgres without a password: refused too; with the generated one: in.
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1").port(port).user("postgres").dbname("app");
    assert!(c.connect(tokio_postgres::NoTls).await.is_err(), "passwordless login as postgres");
    let (client, conn) = tokio_postgres::connect(&env.upstream, tokio_postgres::NoTls).await.context("login with the superuser password")?;
    tokio::spawn(conn);
    let row = client.query_one("SELECT current_user::text, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'", &[]).await?;
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("postgres".to_owned(), true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_setup_keeps_secrets_private_and_requires_passwords() -> Result<()> {
    if find_pg_bin("initdb").is_none() {
        eprintln!("skipped: no initdb");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("dot-tidepool");
    let env = prepare(&args(&dir)).await?;
    let result = async {
        assert_eq!(mode(&dir), 0o700, "data dir");
        for f in ["dev-password", "dev-api-key", "postgres-password", "tls/key.pem"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&dir.join("tls")), 0o700);
        assert_eq!(mode(&dir.join("pgdata")), 0o700);
        let pw = std::fs::read_to_string(dir.join("postgres-password"))?;
        assert!(env.upstream.contains(&format!("postgres:{}@", pw.trim())), "upstream URL uses the superuser password");
        check_cluster(&env).await
    }
    .await;
    env.stop();
    result?;

    // A directory left by an older version: trust rules, no superuser password file, world-readable
    // secrets. The next run converts it.
    std::fs::write(dir.join("pgdata/pg_hba.conf"), "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")?;
    std::fs::remove_file(dir.join("postgres-password"))?;
    for f in ["dev-password", "dev-api-key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let old_password = std::fs::read_to_string(dir.join("dev-password"))?;
    let env = prepare(&args(&dir)).await?;
    let result = async {
        assert_eq!(mode(&dir), 0o700, "data dir");
        for f in ["dev-password", "dev-api-key", "postgres-password"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(env.password, old_password.trim(), "the dev password is kept");
        check_cluster(&env).await
    }
    .await;
    env.stop();
    result
}
