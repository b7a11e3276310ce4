//! The suite's harness: tidepool as a real child process (`tidepool serve` with a config written
//! to a temp dir) in front of two testkit databases, its liveness and resident memory, a raw
//! HTTP/1.1 client for requests no well-behaved library would send, and the well-behaved
//! clients that must keep working while an attack group runs.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tidepool_testkit::{free_port, TestCluster, SCRAM_USER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Database names clients use on tidepool, each in front of its own real database.
pub const DB: &str = "app";
pub const DB2: &str = "other";
/// SCRAM user for well-behaved clients (never sent a wrong password).
pub const ALICE: &str = "alice";
pub const ALICE_PW: &str = "alice-pw";
/// md5 user.
pub const BOB: &str = "bob";
pub const BOB_PW: &str = "bob-pw";
/// trust user (raw-socket logins).
pub const CAROL: &str = "carol";
/// md5 user that attackers guess passwords for (so the throttle never slows the healthy users).
pub const MALLORY: &str = "mallory";
/// SCRAM user that attackers guess passwords for.
pub const TRENT: &str = "trent";
/// SCRAM user allowed only on [`DB2`].
pub const EVE: &str = "eve";
pub const EVE_PW: &str = "eve-pw";
/// API keys: two for [`DB`], one for [`DB2`].
pub const KEY_A: &str = "tp-hostile-key-aaaaaaaaaaaaaaaaaaaa";
pub const KEY_B: &str = "tp-hostile-key-bbbbbbbbbbbbbbbbbbbb";
pub const KEY_OTHER: &str = "tp-hostile-key-oooooooooooooooooooo";

/// Limits the config sets (small, so the suite reaches them quickly).
pub const MAX_MESSAGE: usize = 1 << 20;
pub const MAX_REQUEST: usize = 4 << 20;

/// A `tidepool serve` child process.
pub struct Tidepool {
    child: parking_lot::Mutex<Child>,
    pub pid: u32,
    pub pg: SocketAddr,
    pub http: SocketAddr,
    pub real_db: String,
    pub real_db2: String,
    pub client: reqwest::Client,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn config(pg: u16, http: u16, url: &str, url2: &str, tls_dir: &std::path::Path, db_extra: &str) -> String {
    let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    let hash = |k: &str| hex::encode(tidepool::keys::hash_key(k));
    format!(
        r#"
[server]
pg_listen = "127.0.0.1:{pg}"
http_listen = "127.0.0.1:{http}"
shutdown_timeout = "2s"
scram_iterations = 64
tls_cert = "{cert}"
tls_key = "{key}"
login_timeout = "3s"
idle_transaction_timeout = "2s"
auth_failure_max_delay = "1s"
log_level = "warn"

[http]
header_read_timeout = "2s"
body_read_timeout = "3s"
query_timeout = "3s"
prisma_query_timeout = "3s"
max_request_size = {MAX_REQUEST}
max_ws_message_size = {MAX_MESSAGE}
ws_idle_timeout = "10s"

[[databases]]
name = "{DB}"
url = "{url}"
pool_size = 8
pool_timeout = "5s"
max_message_size = {MAX_MESSAGE}
{db_extra}

[[databases]]
name = "{DB2}"
url = "{url2}"
pool_size = 4
max_message_size = {MAX_MESSAGE}

[[users]]
name = "{ALICE}"
auth = "scram-sha-256"
password = "{ALICE_PW}"

[[users]]
name = "{BOB}"
auth = "md5"
password = "{BOB_PW}"

[[users]]
name = "{CAROL}"
auth = "trust"

[[users]]
name = "{MALLORY}"
auth = "md5"
password = "mallory-secret"

[[users]]
name = "{TRENT}"
auth = "scram-sha-256"
password = "trent-secret"

[[users]]
name = "{EVE}"
auth = "scram-sha-256"
password = "{EVE_PW}"
databases = ["{DB2}"]

[[api_keys]]
sha256 = "{a}"
database = "{DB}"
label = "a"

[[api_keys]]
sha256 = "{b}"
database = "{DB}"
label = "b"

[[api_keys]]
sha256 = "{o}"
database = "{DB2}"
label = "other"
"#,
        a = hash(KEY_A),
        b = hash(KEY_B),
        o = hash(KEY_OTHER),
        cert = cert.display(),
        key = key.display(),
    )
}

impl Tidepool {
    /// Two fresh databases in the shared cluster, a config in a temp dir, and the binary built
    /// by cargo started on free ports; returns once `/health` answers.
    pub async fn start() -> Result<Tidepool> {
        Tidepool::start_with("").await
    }

    /// [`Tidepool::start`] with extra `key = value` lines for the first `[[databases]]` table.
    pub async fn start_with(db_extra: &str) -> Result<Tidepool> {
        let cluster = TestCluster::shared().await?;
        let real_db = cluster.unique_database("hostile_a").await?;
        let real_db2 = cluster.unique_database("hostile_b").await?;
        let dir = tempfile::tempdir()?;
        let (pg, http) = (free_port(), free_port());
        let path = dir.path().join("tidepool.toml");
        // The wire listener offers TLS (SSLRequest is answered `S`); HTTP stays plain.
        let (cert, key) = tidepool_testkit::self_signed_cert(["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), cert)?;
        std::fs::write(dir.path().join("key.pem"), key)?;
        std::fs::write(&path, config(pg, http, &cluster.url(SCRAM_USER, &real_db), &cluster.url(SCRAM_USER, &real_db2), dir.path(), db_extra))?;
        let log = dir.path().join("tidepool.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning tidepool")?;
        let pid = child.id();
        // Idle keep-alive connections are dropped before the server's header_read_timeout (2 s) closes them.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).pool_idle_timeout(Duration::from_millis(1000)).build()?;
        let tp = Tidepool {
            child: parking_lot::Mutex::new(child),
            pid,
            pg: ([127, 0, 0, 1], pg).into(),
            http: ([127, 0, 0, 1], http).into(),
            real_db,
            real_db2,
            client,
            log,
            _dir: dir,
        };
        for _ in 0..300 {
            tp.alive()?;
            if let Ok(r) = tp.client.get(tp.url("/health")).send().await {
                if r.status().as_u16() == 200 && TcpStream::connect(tp.pg).await.is_ok() {
                    return Ok(tp);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("tidepool did not become healthy; log:\n{}", tp.log_tail())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The process is still running (not exited, not a zombie).
    pub fn alive(&self) -> Result<()> {
        match self.child.lock().try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow!("tidepool exited ({status}); log:\n{}", self.log_tail())),
        }
    }

    /// Resident memory of the child (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `Neon-Connection-String` for `user[:password]@…/db`.
    pub fn conn_str(&self, user: &str, password: Option<&str>, db: &str) -> String {
        match password {
            Some(p) => format!("postgresql://{user}:{p}@{}/{db}", self.http),
            None => format!("postgresql://{user}@{}/{db}", self.http),
        }
    }

    pub fn alice_cs(&self) -> String {
        self.conn_str(ALICE, Some(ALICE_PW), DB)
    }

    /// tokio-postgres config for `user` on `db` through tidepool's wire listener.
    pub fn pg_config(&self, user: &str, password: Option<&str>, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.pg.port()).user(user).dbname(db).connect_timeout(Duration::from_secs(10));
        if let Some(p) = password {
            c.password(p);
        }
        c
    }

    /// A direct (not proxied) superuser client on a real database.
    pub async fn direct(&self, real_db: &str) -> Result<tokio_postgres::Client> {
        TestCluster::shared().await?.client(real_db).await
    }

    pub fn kill(&self) {
        let mut c = self.child.lock();
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Tidepool {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn pg_connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// An HTTP answer read off a raw socket: `status` is `None` when the server closed the
/// connection without answering.
#[derive(Debug, Default)]
pub struct HttpAnswer {
    pub status: Option<u16>,
    pub head: String,
    pub body: String,
    pub json: Value,
}

impl HttpAnswer {
    /// The error code field of the JSON body (Neon `code`, Prisma `code`).
    pub fn code(&self) -> &str {
        self.json.get("code").and_then(Value::as_str).unwrap_or("")
    }

    pub fn parse(raw: &[u8]) -> HttpAnswer {
        let mut text = String::from_utf8_lossy(raw).into_owned();
        // Interim answers (`100 Continue`) precede the final one.
        while text.starts_with("HTTP/1.1 1") {
            match text.split_once("\r\n\r\n") {
                Some((_, rest)) => text = rest.to_owned(),
                None => break,
            }
        }
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return HttpAnswer { head: text, ..Default::default() };
        };
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        HttpAnswer { status, head: head.to_owned(), body, json }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An HTTP/1.1 request with `Host`, `Content-Length` and `Connection: close` added.
pub fn request(method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Reads until the peer closes (EOF or reset) or `max` bytes arrived.
pub async fn read_to_close(s: &mut TcpStream, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    while out.len() < max {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Sends raw bytes to the HTTP listener (a write error is tolerated: the server may close
/// first) and reads the answer until the server closes the connection.
pub async fn http_raw(addr: SocketAddr, bytes: &[u8]) -> Result<HttpAnswer> {
    let mut s = TcpStream::connect(addr).await?;
    let _ = s.write_all(bytes).await;
    Ok(HttpAnswer::parse(&read_to_close(&mut s, 64 << 20).await))
}

/// Clients that must keep working while an attack group runs: a SCRAM wire session running a
/// query every 20 ms plus a fresh md5 login every few rounds, and `/sql` requests.
pub struct Healthy {
    stop: Arc<AtomicBool>,
    pub wire_ok: Arc<AtomicUsize>,
    pub sql_ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Healthy {
    pub async fn start(tp: &Tidepool) -> Result<Healthy> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wire_ok, sql_ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let wire = pg_connect(&tp.pg_config(ALICE, Some(ALICE_PW), DB)).await.context("healthy wire login")?;
        let md5 = tp.pg_config(BOB, Some(BOB_PW), DB);
        let (client, url, cs) = (tp.client.clone(), tp.url("/sql"), tp.alice_cs());
        let task = tokio::spawn({
            let (stop, wire_ok, sql_ok) = (stop.clone(), wire_ok.clone(), sql_ok.clone());
            async move {
                let mut failures = Vec::new();
                let mut i = 0i32;
                while !stop.load(Ordering::Relaxed) || wire_ok.load(Ordering::Relaxed) == 0 || sql_ok.load(Ordering::Relaxed) == 0 {
                    i += 1;
                    if i > 5000 {
                        failures.push("healthy client never completed a round".to_owned());
                        break;
                    }
                    match wire.query_one("SELECT $1::int + 1", &[&i]).await {
                        Ok(r) if r.get::<_, i32>(0) == i + 1 => {
                            wire_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("wire query: {other:?}")),
                    }
                    if i % 10 == 1 {
                        match pg_connect(&md5).await {
                            Ok(c) => {
                                if let Err(e) = c.simple_query("SELECT 1").await {
                                    failures.push(format!("md5 session: {e}"));
                                }
                            }
                            Err(e) => failures.push(format!("md5 login: {e}")),
                        }
                    }
                    let body = json!({"query": "SELECT $1::int AS n", "params": [i]});
                    match client.post(&url).header("neon-connection-string", &cs).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 200 => match r.json::<Value>().await {
                            Ok(v) if v["rows"] == json!([{"n": i}]) => {
                                sql_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.push(format!("/sql body: {other:?}")),
                        },
                        Ok(r) => failures.push(format!("/sql status {}: {:?}", r.status(), r.text().await)),
                        Err(e) => failures.push(format!("/sql: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                failures
            }
        });
        Ok(Healthy { stop, wire_ok, sql_ok, task })
    }

    /// Stops the clients; the failures they saw (empty when all went well).
    pub async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(60), self.task).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => vec![format!("healthy client task: {e}")],
            Err(_) => vec!["healthy client hung".to_owned()],
        }
    }
}
