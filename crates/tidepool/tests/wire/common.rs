//! Shared helpers: an in-process tidepool built from a TOML string, client configs for it, error
//! inspection, and bounded polling.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tidepool::run::Running;
use tidepool_testkit::{TestCluster, SCRAM_USER};
use tokio_postgres::{Client, NoTls};

/// tidepool user authenticated with SCRAM-SHA-256.
pub const SCRAM_CLIENT: &str = "alice";
pub const SCRAM_CLIENT_PW: &str = "alice-pw";
/// tidepool user authenticated with md5.
pub const MD5_CLIENT: &str = "bob";
pub const MD5_CLIENT_PW: &str = "bob-pw";
/// tidepool user with trust (no password).
pub const TRUST_CLIENT: &str = "carol";

/// Database name clients use on tidepool (the `[[databases]] name`).
pub const DB: &str = "app";

/// Logs of tidepool itself when `TIDEPOOL_TEST_LOG` is set (e.g. `tidepool=debug`).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("TIDEPOOL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_test_writer().try_init();
    }
}

/// What a test wants from one tidepool instance with one database named [`DB`].
pub struct Setup {
    /// Upstream URL of the database.
    pub url: String,
    /// Extra `key = value` lines for the `[[databases]]` table.
    pub db_extra: String,
    /// Extra `key = value` lines for `[server]`.
    pub server_extra: String,
    pub scram_iterations: u32,
}

impl Setup {
    /// tidepool in front of `db` of `cluster`, connecting upstream as `scram_user`.
    pub fn new(cluster: &TestCluster, db: &str) -> Setup {
        Setup::with_url(cluster.url(SCRAM_USER, db))
    }

    pub fn with_url(url: String) -> Setup {
        Setup { url, db_extra: String::new(), server_extra: String::new(), scram_iterations: 64 }
    }

    pub fn db(mut self, line: &str) -> Setup {
        self.db_extra.push_str(line);
        self.db_extra.push('\n');
        self
    }

    pub fn server(mut self, line: &str) -> Setup {
        self.server_extra.push_str(line);
        self.server_extra.push('\n');
        self
    }

    pub fn toml(&self) -> String {
        let mut server_extra = self.server_extra.clone();
        if !server_extra.contains("shutdown_timeout") {
            server_extra.push_str("shutdown_timeout = \"2s\"\n");
        }
        format!(
            r#"
[server]
pg_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
scram_iterations = {iters}
{server_extra}

[[databases]]
name = "{DB}"
url = "{url}"
{db_extra}

[[users]]
name = "{SCRAM_CLIENT}"
auth = "scram-sha-256"
password = "{SCRAM_CLIENT_PW}"

[[users]]
name = "{MD5_CLIENT}"
auth = "md5"
password = "{MD5_CLIENT_PW}"

[[users]]
name = "{TRUST_CLIENT}"
auth = "trust"
"#,
            iters = self.scram_iterations,
            server_extra = server_extra,
            url = self.url,
            db_extra = self.db_extra,
        )
    }

    pub async fn start(self) -> Result<Proxy> {
        Proxy::start(&self.toml()).await
    }
}

/// A running in-process tidepool.
pub struct Proxy {
    running: Option<Running>,
    pub pg: SocketAddr,
    pub admin: Option<SocketAddr>,
}

impl Proxy {
    pub async fn start(toml: &str) -> Result<Proxy> {
        init_tracing();
        let config = tidepool::Config::from_toml(toml, std::iter::empty()).with_context(|| format!("config:\n{toml}"))?;
        let running = tidepool::run::start(config).await?;
        let pg = running.bound.pg.ok_or_else(|| anyhow!("no pg listener bound"))?;
        let admin = running.bound.admin;
        Ok(Proxy { running: Some(running), pg, admin })
    }

    /// Starts from a config file, as `tidepool serve FILE` does: RELOAD re-reads `path`.
    pub async fn start_file(path: &std::path::Path) -> Result<Proxy> {
        init_tracing();
        let config = tidepool::Config::load(path, std::iter::empty()).with_context(|| format!("config {}", path.display()))?;
        let running = tidepool::run::start(config).await?;
        *running.app.config_path.lock() = Some(path.to_owned());
        let pg = running.bound.pg.ok_or_else(|| anyhow!("no pg listener bound"))?;
        let admin = running.bound.admin;
        Ok(Proxy { running: Some(running), pg, admin })
    }

    pub fn app(&self) -> &tidepool::App {
        &self.running.as_ref().expect("running").app
    }

    /// tokio-postgres config for `user` on [`DB`] through tidepool.
    pub fn config(&self, user: &str, password: Option<&str>) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.pg.port()).user(user).dbname(DB).connect_timeout(Duration::from_secs(10));
        if let Some(p) = password {
            c.password(p);
        }
        c
    }

    /// A SCRAM-authenticated client on [`DB`].
    pub async fn client(&self) -> Result<Client> {
        connect(&self.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await
    }

    /// `postgres://` URL for libpq tools (psql, pgbench).
    pub fn url(&self, user: &str, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("postgresql://{user}:{p}@127.0.0.1:{}/{DB}?sslmode=disable", self.pg.port()),
            None => format!("postgresql://{user}@127.0.0.1:{}/{DB}?sslmode=disable", self.pg.port()),
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.app.shutdown.cancel();
            for db in r.app.databases() {
                db.close_pools();
            }
        }
    }
}

/// Connects with tokio-postgres (no TLS) and drives the connection in a task.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    Ok(try_connect(config).await?)
}

pub async fn try_connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// SQLSTATE of a tokio-postgres error, if the server (tidepool) sent one.
pub fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// Message of a server error.
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())
}

/// Asserts `r` failed with SQLSTATE `want`; returns the error message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>, want: &str) -> String {
    match r {
        Ok(v) => panic!("expected SQLSTATE {want}, got success {v:?}"),
        Err(e) => {
            assert_eq!(code(&e).as_deref(), Some(want), "expected SQLSTATE {want}, got {e:?}");
            message(&e)
        }
    }
}

/// Polls `f` every 50 ms (at most `tries` times) until it returns `Some`.
pub async fn poll<T, F, Fut>(tries: usize, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits (bounded) until a backend of `db` runs a query containing `needle` and is active.
pub async fn wait_active(cluster: &TestCluster, db: &str, needle: &str) -> Result<i32> {
    let c = cluster.client(db).await?;
    poll(200, || async {
        let row = c
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
                 AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid() LIMIT 1",
                &[&needle],
            )
            .await
            .ok()??;
        Some(row.get::<_, i32>(0))
    })
    .await
    .ok_or_else(|| anyhow!("no active backend running {needle:?} on {db}"))
}

/// Runs a future with a generous upper bound, so a hang fails the test instead of blocking CI.
pub async fn bounded<T>(what: &str, secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs}s (hang)"),
    }
}

/// First column of each row of a `simple_query` result.
pub fn simple_col(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Option<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}
