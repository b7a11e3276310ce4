//! Shared helpers: an in-process tidepool with an HTTP listener, built from a TOML string, and
//! thin HTTP wrappers for the Prisma and Neon APIs that return status, headers and parsed JSON.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tidepool::run::Running;
use tidepool_testkit::{TestCluster, SCRAM_USER};

/// Database name clients use on tidepool (the `[[databases]] name`).
pub const DB: &str = "app";
/// tidepool user with a plaintext password (SCRAM on the wire protocol).
pub const USER: &str = "alice";
pub const USER_PW: &str = "alice-pw";
/// tidepool user with trust authentication.
pub const TRUST_USER: &str = "carol";
/// Two API keys for [`DB`].
pub const KEY_A: &str = "tp-test-key-aaaaaaaaaaaaaaaaaaaa";
pub const KEY_B: &str = "tp-test-key-bbbbbbbbbbbbbbbbbbbb";

/// Logs of tidepool itself when `TIDEPOOL_TEST_LOG` is set (e.g. `tidepool=debug`).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("TIDEPOOL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_test_writer().try_init();
    }
}

/// What a test wants from one tidepool: one database [`DB`] in front of a fresh real database.
/// Cloning it gives a second tidepool in front of the same real database.
#[derive(Clone)]
pub struct Setup {
    /// The real database's name in the test cluster.
    pub real_db: String,
    url: String,
    db_extra: String,
    http_extra: String,
    /// Raw TOML appended after the generated file (more tables, e.g. `[[api_keys]]`).
    cache_extra: String,
    server_extra: String,
    tail: String,
}

impl Setup {
    /// A fresh database (name starting with `prefix`) in the shared cluster; tidepool connects
    /// upstream as the testkit's SCRAM user.
    pub async fn new(prefix: &str) -> Result<Setup> {
        let cluster = TestCluster::shared().await?;
        let real_db = cluster.unique_database(prefix).await?;
        let url = cluster.url(SCRAM_USER, &real_db);
        Ok(Setup {
            real_db,
            url,
            db_extra: String::new(),
            http_extra: String::new(),
            cache_extra: String::new(),
            server_extra: String::new(),
            tail: String::new(),
        })
    }

    /// The same upstream database as `other` (several nodes in front of one database).
    pub fn same_database_as(mut self, other: &Setup) -> Setup {
        self.url = other.url.clone();
        self.real_db = other.real_db.clone();
        self
    }

    /// An extra `key = value` line for the `[[databases]]` table.
    pub fn db(mut self, line: &str) -> Setup {
        self.db_extra.push_str(line);
        self.db_extra.push('\n');
        self
    }

    /// An extra `key = value` line for `[server]`.
    pub fn server(mut self, line: &str) -> Setup {
        self.server_extra.push_str(line);
        self.server_extra.push('\n');
        self
    }

    /// An extra `key = value` line for `[http]`.
    pub fn http(mut self, line: &str) -> Setup {
        self.http_extra.push_str(line);
        self.http_extra.push('\n');
        self
    }

    /// Raw TOML appended to the file (after the `[[databases]]` table, its `db` lines and the
    /// standard users and keys), e.g. `[[databases.roles]]` or more `[[api_keys]]`.
    pub fn append(mut self, toml: &str) -> Setup {
        self.tail.push('\n');
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    /// An extra `key = value` line for `[cache]`.
    pub fn cache(mut self, line: &str) -> Setup {
        self.cache_extra.push_str(line);
        self.cache_extra.push('\n');
        self
    }

    /// Raw TOML appended at the end (more databases, keys, …); `{url}` is replaced by the
    /// upstream URL of this setup's database.
    pub fn tail(mut self, toml: &str) -> Setup {
        self.tail.push_str(&toml.replace("{url}", &self.url));
        self
    }

    pub fn toml(&self) -> String {
        let key_a = hex::encode(tidepool::keys::hash_key(KEY_A));
        let key_b = hex::encode(tidepool::keys::hash_key(KEY_B));
        format!(
            r#"
[server]
pg_listen = "127.0.0.1:0"
{http_listen}
{shutdown}
scram_iterations = 64
{server_extra}

[http]
{http_extra}

[cache]
{cache_extra}

[[databases]]
name = "{DB}"
url = "{url}"
{db_extra}

[[users]]
name = "{USER}"
password = "{USER_PW}"

[[users]]
name = "{TRUST_USER}"
auth = "trust"

[[api_keys]]
sha256 = "{key_a}"
database = "{DB}"
label = "a"

[[api_keys]]
sha256 = "{key_b}"
database = "{DB}"
label = "b"
{tail}
"#,
            cache_extra = self.cache_extra,
            server_extra = self.server_extra,
            // A `server("shutdown_timeout = …")` line replaces the default.
            shutdown = if self.server_extra.contains("shutdown_timeout") { "" } else { "shutdown_timeout = \"2s\"" },
            // A `server("http_listen = …")` line replaces the default (a free port).
            http_listen = if self.server_extra.contains("http_listen") { "" } else { "http_listen = \"127.0.0.1:0\"" },
            http_extra = self.http_extra,
            url = self.url,
            db_extra = self.db_extra,
            tail = self.tail,
        )
    }

    pub async fn start(self) -> Result<Proxy> {
        init_tracing();
        let toml = self.toml();
        let config = tidepool::Config::from_toml(&toml, std::iter::empty()).with_context(|| format!("config:\n{toml}"))?;
        let running = tidepool::run::start(config).await?;
        let http = running.bound.http.ok_or_else(|| anyhow!("no http listener bound"))?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        Ok(Proxy { running: Some(running), http, real_db: self.real_db, client })
    }
}

/// A running in-process tidepool with an HTTP listener.
pub struct Proxy {
    running: Option<Running>,
    pub http: SocketAddr,
    pub real_db: String,
    pub client: reqwest::Client,
}

/// An HTTP answer: status, headers, the body as text and (if it parses) as JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Result<Resp> {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp { status, headers, text, json })
    }

    /// A string field of the JSON body (`""` if absent).
    pub fn s(&self, field: &str) -> &str {
        self.json.get(field).and_then(Value::as_str).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the Prisma error `code`; returns the `error` message.
    #[track_caller]
    pub fn prisma_err(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "status (want {status} {code}); body: {}", self.text);
        assert_eq!(self.s("code"), code, "Prisma code; body: {}", self.text);
        let msg = self.s("error");
        assert!(!msg.is_empty(), "Prisma error without a message: {}", self.text);
        msg
    }

    /// Asserts the status and the Neon error `code` (SQLSTATE, `""` for non-Postgres errors);
    /// returns the `message`.
    #[track_caller]
    pub fn neon_err(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "status (want {status} {code:?}); body: {}", self.text);
        assert_eq!(self.s("code"), code, "Neon code; body: {}", self.text);
        let msg = self.s("message");
        assert!(!msg.is_empty(), "Neon error without a message: {}", self.text);
        msg
    }
}

impl Proxy {
    /// A handle on a tidepool running elsewhere (another process) whose HTTP listener is `http`,
    /// in front of the real database `real_db`. [`Proxy::app`] is not available on it.
    pub fn external(http: SocketAddr, real_db: String) -> Result<Proxy> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        Ok(Proxy { running: None, http, real_db, client })
    }

    pub fn app(&self) -> &tidepool::App {
        &self.running.as_ref().expect("running").app
    }

    /// Address of the admin listener (`admin_listen`), if one is bound.
    pub fn admin(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.bound.admin)
    }

    /// Port of the Postgres wire listener.
    pub fn app_pg_port(&self) -> u16 {
        self.running.as_ref().and_then(|r| r.bound.pg).map_or(0, |a| a.port())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.http)
    }

    /// POST `body` (raw bytes) to a Prisma route with `Authorization: Bearer key` when `key` is set.
    pub async fn prisma_bytes(&self, path: &str, key: Option<&str>, body: Vec<u8>) -> Result<Resp> {
        let mut req = self.client.post(self.url(path)).header("content-type", "application/json").body(body);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        Resp::from(req.send().await.with_context(|| format!("POST {path}"))?).await
    }

    pub async fn prisma(&self, path: &str, key: Option<&str>, body: &Value) -> Result<Resp> {
        self.prisma_bytes(path, key, serde_json::to_vec(body)?).await
    }

    /// `POST /query` with key A.
    pub async fn query(&self, body: &Value) -> Result<Resp> {
        self.prisma("/query", Some(KEY_A), body).await
    }

    /// Starts an interactive transaction; returns its id (asserts success).
    pub async fn itx_start(&self, key: &str, opts: &Value) -> Result<String> {
        let r = self.prisma("/transaction/start", Some(key), opts).await?;
        assert_eq!(r.status, 200, "transaction/start: {}", r.text);
        let id = r.s("id").to_owned();
        assert!(!id.is_empty(), "transaction/start without id: {}", r.text);
        assert_eq!(r.header("prisma-transaction-id"), Some(id.as_str()));
        Ok(id)
    }

    /// A harmless Prisma query that must succeed: the server carries on.
    pub async fn prisma_ok(&self) -> Result<()> {
        let r = self.query(&raw_query("SELECT 41 + 1 AS answer", json!([]))).await?;
        assert_eq!(r.status, 200, "follow-up Prisma query failed: {}", r.text);
        assert_eq!(r.json["data"]["rows"], json!([[42]]), "follow-up Prisma query: {}", r.text);
        Ok(())
    }

    /// `Neon-Connection-String` for `user:password` on `db`.
    pub fn conn_str(&self, user: &str, password: Option<&str>, db: &str) -> String {
        match password {
            Some(p) => format!("postgresql://{user}:{p}@{}/{db}", self.http),
            None => format!("postgresql://{user}@{}/{db}", self.http),
        }
    }

    /// POST /sql with the given headers and raw body.
    pub async fn neon_raw(&self, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Resp> {
        let mut req = self.client.post(self.url("/sql")).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Resp::from(req.send().await.context("POST /sql")?).await
    }

    /// POST /sql as [`USER`] on [`DB`].
    pub async fn neon(&self, body: &Value) -> Result<Resp> {
        let cs = self.conn_str(USER, Some(USER_PW), DB);
        self.neon_raw(&[("neon-connection-string", &cs)], serde_json::to_vec(body)?).await
    }

    /// Runs one statement over /sql and returns its rows (asserts success).
    pub async fn neon_rows(&self, query: &str) -> Result<Vec<Value>> {
        let r = self.neon(&json!({"query": query, "params": []})).await?;
        assert_eq!(r.status, 200, "/sql {query:?}: {}", r.text);
        Ok(r.json["rows"].as_array().cloned().unwrap_or_default())
    }

    /// A harmless /sql request that must succeed: the server carries on.
    pub async fn neon_ok(&self) -> Result<()> {
        let rows = self.neon_rows("SELECT 41 + 1 AS answer").await?;
        assert_eq!(rows, vec![json!({"answer": 42})], "follow-up /sql query");
        Ok(())
    }

    /// A direct (not proxied) client on the real database, as the upstream user.
    pub async fn direct(&self) -> Result<tokio_postgres::Client> {
        TestCluster::shared().await?.client_as(SCRAM_USER, &self.real_db).await
    }

    /// Starts draining (as on SIGTERM) in a task of its own; the task ends once draining is over.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<()> {
        let running = self.running.take().expect("running");
        tokio::spawn(running.stop())
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

/// A Prisma `$queryRaw` body: `sql` with positional `args` (sent with scalar type `unknown`).
pub fn raw_query(sql: &str, args: Value) -> Value {
    let n = args.as_array().map_or(0, Vec::len);
    let types: Vec<Value> = (0..n).map(|_| json!({"scalarType": "unknown", "arity": "scalar"})).collect();
    json!({
        "operation": "queryRaw",
        "plan": {"type": "query", "args": {"type": "rawSql", "sql": sql, "args": args, "argTypes": types}},
        "params": {}
    })
}

/// A Prisma `$executeRaw` body.
pub fn raw_execute(sql: &str) -> Value {
    json!({
        "operation": "executeRaw",
        "plan": {"type": "execute", "args": {"type": "rawSql", "sql": sql, "args": [], "argTypes": []}},
        "params": {}
    })
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

/// Runs a future with a generous upper bound, so a hang fails the test instead of blocking CI.
pub async fn bounded<T>(what: &str, secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs}s (hang)"),
    }
}

/// Number of backends on `real_db` (other than the asking one) running a query containing
/// `needle` that are still active.
pub async fn active_backends(real_db: &str, needle: &str) -> Result<i64> {
    let c = TestCluster::shared().await?.client(real_db).await?;
    let row = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
             AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&needle],
        )
        .await?;
    Ok(row.get(0))
}
