//! Throwaway PostgreSQL clusters.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use crate::os_user::OsUser;
use crate::{
    free_port, known_password, pg_bin_dir, MD5_PASSWORD, MD5_USER, PASS_PASSWORD, PASS_USER, SCRAM_PASSWORD, SCRAM_USER, SUPERUSER, TRUST_PASSWORD, TRUST_USER,
};

/// `application_name` of every connection the testkit itself opens; such
/// connections are never counted by [`TestCluster::backend_count`].
pub const TESTKIT_APP_NAME: &str = "tidepool-testkit";

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for all clients to disconnect.
    Smart,
    /// Terminate sessions, then shut down cleanly (what [`TestCluster::restart`] uses).
    Fast,
    /// Quit without a shutdown checkpoint (a crash, as far as clients can tell).
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Which rows of `pg_stat_activity` [`TestCluster::backend_count`] counts
/// (always only client backends of the given database, never the testkit's
/// own connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendFilter {
    /// Every client backend of the database.
    Any,
    /// Backends whose `application_name` equals this.
    ApplicationName(String),
    /// Backends whose role (`usename`) equals this.
    User(String),
}

impl BackendFilter {
    pub fn app(name: impl Into<String>) -> Self {
        BackendFilter::ApplicationName(name.into())
    }
    pub fn user(name: impl Into<String>) -> Self {
        BackendFilter::User(name.into())
    }
}

/// Options for a private cluster; see [`TestCluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    max_connections: u32,
    ssl: bool,
    /// Host names of a CA-signed server certificate ([`ClusterBuilder::ssl_with_ca`]).
    ssl_ca_hosts: Option<Vec<String>>,
    settings: Vec<(String, String)>,
    extra_hba: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder { max_connections: 300, ssl: false, ssl_ca_hosts: None, settings: Vec::new(), extra_hba: Vec::new() }
    }
}

impl ClusterBuilder {
    /// `max_connections` (default 300).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Enable server-side TLS with a fresh self-signed certificate for
    /// `localhost` / `127.0.0.1` (see [`TestCluster::ssl_cert_pem`]).
    /// `host` rows in pg_hba.conf accept both TLS and plain connections.
    pub fn ssl(mut self, on: bool) -> Self {
        self.ssl = on;
        self
    }

    /// Enable server-side TLS with a certificate for `hostnames` (DNS names
    /// or IP addresses) signed by a fresh test CA, for clients that verify
    /// the chain and host name: trust [`TestCluster::ssl_ca_pem`]. The
    /// server itself is the same as with [`ssl`](Self::ssl).
    pub fn ssl_with_ca<I>(mut self, hostnames: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.ssl = true;
        self.ssl_ca_hosts = Some(hostnames.into_iter().map(|h| h.as_ref().to_owned()).collect());
        self
    }

    /// Any extra `postgresql.conf` setting, written as `key = value`
    /// verbatim (quote string values yourself: `.setting("log_connections", "on")`,
    /// `.setting("search_path", "'x'")`).
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// An extra pg_hba.conf line, placed before the predefined rows (so it
    /// takes precedence), e.g. `"host all alice 127.0.0.1/32 reject"`.
    pub fn hba_line(mut self, line: impl Into<String>) -> Self {
        self.extra_hba.push(line.into());
        self
    }

    /// Creates and starts the cluster.
    pub async fn start(self) -> Result<TestCluster> {
        TestCluster::start_with(self, false).await
    }
}

/// A throwaway PostgreSQL cluster. See the crate docs.
pub struct TestCluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// Removed on drop (`None` once removed).
    dir: Mutex<Option<TempDir>>,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    os_user: Option<OsUser>,
    running: Mutex<bool>,
    /// Kills the server and removes `root` when our end of its stdin closes,
    /// i.e. when this process exits in any way (the shared cluster is a
    /// static and never dropped).
    watchdog: Mutex<Option<Child>>,
    ssl_cert_pem: Option<String>,
    ssl_ca_pem: Option<String>,
    shared: bool,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("port", &self.inner.port).field("root", &self.inner.root).field("shared", &self.inner.shared).finish()
    }
}

static SHARED: tokio::sync::OnceCell<Result<TestCluster, String>> = tokio::sync::OnceCell::const_new();

impl TestCluster {
    /// Starts a private cluster with default options (max_connections 300,
    /// no TLS). Stopped and deleted on drop.
    pub async fn start() -> Result<TestCluster> {
        ClusterBuilder::default().start().await
    }

    /// Options for a private cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The cluster shared by all tests of this test binary, started on first
    /// use. Use your own database in it ([`TestCluster::unique_database`]).
    /// It cannot be stopped or restarted; it is shut down and deleted when the
    /// process exits.
    pub async fn shared() -> Result<&'static TestCluster> {
        let res = SHARED.get_or_init(|| async { TestCluster::start_with(ClusterBuilder::default(), true).await.map_err(|e| format!("{e:#}")) }).await;
        res.as_ref().map_err(|e| anyhow!("shared test cluster failed to start: {e}"))
    }

    async fn start_with(opts: ClusterBuilder, shared: bool) -> Result<TestCluster> {
        let inner = tokio::task::spawn_blocking(move || Inner::create(&opts, shared)).await.context("cluster start task panicked")??;
        let cluster = TestCluster { inner: Arc::new(inner) };
        cluster.bootstrap().await.with_context(|| format!("bootstrapping cluster; log:\n{}", cluster.log_tail()))?;
        Ok(cluster)
    }

    /// Creates the auth roles and opens schema `public` to everyone in
    /// template1 (PostgreSQL 15 no longer does), so test roles can create
    /// tables in every database made afterwards.
    async fn bootstrap(&self) -> Result<()> {
        let client = self.client("postgres").await?;
        let q = |s: &str| s.replace('\'', "''");
        let sql = format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{}';
             CREATE ROLE {PASS_USER} LOGIN PASSWORD '{}';
             CREATE ROLE {TRUST_USER} LOGIN PASSWORD '{}';
             SET password_encryption = 'md5';
             CREATE ROLE {MD5_USER} LOGIN PASSWORD '{}';
             RESET password_encryption;",
            q(SCRAM_PASSWORD),
            q(PASS_PASSWORD),
            q(TRUST_PASSWORD),
            q(MD5_PASSWORD),
        );
        client.batch_execute(&sql).await?;
        // Check the stored formats really are what the roles are for.
        for (user, prefix) in [(SCRAM_USER, "SCRAM-SHA-256$"), (MD5_USER, "md5")] {
            let row = client.query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&user]).await?;
            let stored: String = row.get(0);
            if !stored.starts_with(prefix) {
                bail!("role {user} has password stored as {stored:?}, expected {prefix}...");
            }
        }
        {
            let t1 = self.client("template1").await?;
            t1.batch_execute("GRANT ALL ON SCHEMA public TO PUBLIC").await?;
        }
        // CREATE DATABASE fails while anyone is connected to the template;
        // wait until that session is really gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n: i64 = client.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = 'template1'", &[]).await?.get(0);
            if n == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("a session on template1 did not go away");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The TCP port (on 127.0.0.1). Unchanged by [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.inner.port))
    }

    /// Directory of the unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.inner.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.inner.log
    }

    /// The last ~8 KiB of the server log (for failure messages).
    pub fn log_tail(&self) -> String {
        self.inner.log_tail(8192)
    }

    /// The server certificate when started with [`ClusterBuilder::ssl`]
    /// (self-signed, so it is also the CA to trust).
    pub fn ssl_cert_pem(&self) -> Option<&str> {
        self.inner.ssl_cert_pem.as_deref()
    }

    /// The CA that signed the server certificate when started with
    /// [`ClusterBuilder::ssl_with_ca`].
    pub fn ssl_ca_pem(&self) -> Option<&str> {
        self.inner.ssl_ca_pem.as_deref()
    }

    /// Whether this is the per-binary [`shared`](Self::shared) cluster.
    pub fn is_shared(&self) -> bool {
        self.inner.shared
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        *lock(&self.inner.running)
    }

    /// `postgres://user[:password]@127.0.0.1:port/db`, with the known
    /// password of a predefined role (none for `postgres` and unknown roles).
    pub fn url(&self, user: &str, db: &str) -> String {
        self.url_with_password(user, known_password(user), db)
    }

    /// Like [`url`](Self::url) with an explicit password.
    pub fn url_with_password(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let mut s = format!("postgres://{}", pct(user));
        if let Some(p) = password {
            let _ = write!(s, ":{}", pct(p));
        }
        let _ = write!(s, "@127.0.0.1:{}/{}", self.inner.port, pct(db));
        s
    }

    /// tokio-postgres config for `user` on `db` over TCP (known password
    /// filled in), tagged with application_name `tidepool-testkit`.
    pub fn config(&self, user: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.inner.port).user(user).dbname(db).application_name(TESTKIT_APP_NAME).connect_timeout(Duration::from_secs(10));
        if let Some(p) = known_password(user) {
            c.password(p);
        }
        c
    }

    /// A superuser client connected to `db` directly (not through a proxy).
    /// Its connection task runs on the current tokio runtime.
    pub async fn client(&self, db: &str) -> Result<Client> {
        self.client_as(SUPERUSER, db).await
    }

    /// A client for `user` (known password used) connected to `db` directly.
    pub async fn client_as(&self, user: &str, db: &str) -> Result<Client> {
        connect(&self.config(user, db)).await.with_context(|| format!("connecting to 127.0.0.1:{} as {user} to {db}", self.inner.port))
    }

    /// Creates database `name` (dropping an existing one of that name first),
    /// owned by the superuser; everybody may create objects in its `public`
    /// schema.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let c = self.client("postgres").await?;
        let ident = quote_ident(name);
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)")).await?;
        // Retried: CREATE DATABASE refuses while template1 has a session
        // (some other test may be poking at it).
        let mut attempt = 0;
        loop {
            match c.batch_execute(&format!("CREATE DATABASE {ident}")).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 && e.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("CREATE DATABASE {ident}")),
            }
        }
    }

    /// Creates a database with a fresh unique name starting with `prefix`
    /// (sanitized, truncated) and returns the name.
    pub async fn unique_database(&self, prefix: &str) -> Result<String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let clean: String = prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
        let name = format!("{clean}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name).await?;
        Ok(name)
    }

    /// Drops database `name` (terminating its sessions).
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let c = self.client("postgres").await?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))).await?;
        Ok(())
    }

    /// Number of client backends (server connections) on `db` matching
    /// `filter`, from `pg_stat_activity`, not counting the testkit's own
    /// connections (application_name `tidepool-testkit`).
    pub async fn backend_count(&self, db: &str, filter: BackendFilter) -> Result<i64> {
        let c = self.client("postgres").await?;
        let (cond, arg) = filter_sql(&filter);
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND datname = $1 AND application_name IS DISTINCT FROM $2 {cond}"
        );
        let row = match &arg {
            Some(a) => c.query_one(&sql, &[&db, &TESTKIT_APP_NAME, a]).await?,
            None => c.query_one(&sql, &[&db, &TESTKIT_APP_NAME]).await?,
        };
        Ok(row.get(0))
    }

    /// Polls [`backend_count`](Self::backend_count) every 50 ms until `pred`
    /// holds; returns the count, or an error with the last count on timeout.
    pub async fn wait_for_backend_count(&self, db: &str, filter: BackendFilter, timeout: Duration, pred: impl Fn(i64) -> bool) -> Result<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.backend_count(db, filter.clone()).await?;
            if pred(n) {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                bail!("backend count on {db} ({filter:?}) still {n} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_terminate_backend` on every matching backend of `db` (never the
    /// testkit's own); returns how many were signalled.
    pub async fn terminate_backends(&self, db: &str, filter: BackendFilter) -> Result<i64> {
        let c = self.client("postgres").await?;
        let (cond, arg) = filter_sql(&filter);
        let sql = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND datname = $1 AND application_name IS DISTINCT FROM $2 {cond}"
        );
        let row = match &arg {
            Some(a) => c.query_one(&sql, &[&db, &TESTKIT_APP_NAME, a]).await?,
            None => c.query_one(&sql, &[&db, &TESTKIT_APP_NAME]).await?,
        };
        Ok(row.get(0))
    }

    /// Stops the server (`pg_ctl stop -m fast`); data is kept, see
    /// [`start_again`](Self::start_again). Not allowed on the shared cluster.
    pub async fn stop(&self) -> Result<()> {
        self.stop_with(StopMode::Fast).await
    }

    /// Stops the server with the given shutdown mode.
    pub async fn stop_with(&self, mode: StopMode) -> Result<()> {
        self.not_shared("stop")?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.stop(mode)).await.context("stop task panicked")?
    }

    /// Starts a stopped server again, on the same port with the same data.
    pub async fn start_again(&self) -> Result<()> {
        self.not_shared("start_again")?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.start_server()).await.context("start task panicked")?
    }

    /// Fast shutdown then start, same port and data. Existing connections
    /// are terminated; new ones fail until the server is back.
    pub async fn restart(&self) -> Result<()> {
        self.restart_with(StopMode::Fast).await
    }

    /// Restart with the given shutdown mode (`Immediate` = crash + recovery).
    pub async fn restart_with(&self, mode: StopMode) -> Result<()> {
        self.not_shared("restart")?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.stop(mode)?;
            inner.start_server()
        })
        .await
        .context("restart task panicked")?
    }

    fn not_shared(&self, what: &str) -> Result<()> {
        if self.inner.shared {
            bail!("{what}: not allowed on the shared cluster; use TestCluster::start() for a private one");
        }
        Ok(())
    }
}

impl Inner {
    fn create(opts: &ClusterBuilder, shared: bool) -> Result<Inner> {
        let bin_dir = pg_bin_dir()?;
        let os_user = crate::os_user()?;
        let base = temp_base(os_user.is_some());
        let dir = tempfile::Builder::new()
            // No "tidepool" in paths that end up in process command lines:
            // a `pkill -f tidepool` elsewhere on a shared machine must not
            // take test servers down.
            .prefix("testkit-pg.")
            .tempdir_in(&base)
            .with_context(|| format!("creating temp dir in {}", base.display()))?;
        let root = dir.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        if let Some(u) = &os_user {
            std::os::unix::fs::chown(&root, Some(u.uid), Some(u.gid)).with_context(|| format!("chown {} to {}", root.display(), u.name))?;
        }
        let data = root.join("data");
        let log = root.join("postgres.log");

        let mut inner = Inner {
            dir: Mutex::new(Some(dir)),
            root,
            data,
            log,
            port: 0,
            bin_dir,
            os_user,
            running: Mutex::new(false),
            watchdog: Mutex::new(None),
            ssl_cert_pem: None,
            ssl_ca_pem: None,
            shared,
        };
        inner.spawn_watchdog()?;
        inner.initdb()?;
        inner.configure(opts)?;

        // The port can be taken between free_port() and the bind: retry.
        let mut last_err = None;
        for _ in 0..8 {
            inner.port = free_port();
            let before = fs::metadata(&inner.log).map(|m| m.len()).unwrap_or(0);
            match inner.start_server() {
                Ok(()) => return Ok(inner),
                Err(e) => {
                    let new_log = read_from(&inner.log, before);
                    let port_taken = new_log.contains("could not bind")
                        || new_log.contains("Address already in use")
                        || new_log.contains("could not create any TCP/IP sockets")
                        || new_log.contains("is another postmaster");
                    if !port_taken {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("could not start postgres")))
    }

    /// A command for a server program, as the unprivileged user when root.
    fn pg_command(&self, prog: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(prog));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.env("LC_ALL", "C").env("HOME", &self.root).current_dir(&self.root).stdin(Stdio::null());
        if let Some(u) = &self.os_user {
            cmd.uid(u.uid).gid(u.gid).env("USER", &u.name).env("LOGNAME", &u.name);
        }
        cmd
    }

    fn run_checked(&self, mut cmd: Command, what: &str) -> Result<()> {
        let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().with_context(|| format!("spawning {what}"))?;
        if !out.status.success() {
            bail!("{what} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn initdb_into(&self, data: &Path) -> Result<()> {
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D").arg(data).args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        self.run_checked(cmd, "initdb")
    }

    /// Fills `self.data`: by copying a cached pristine initdb result when
    /// possible (~0.1 s instead of ~0.7 s), else by running initdb.
    /// The cache lives in `<base>/tidepool-testkit-cache/` (base: see
    /// `temp_base`, normally /dev/shm), keyed by binary
    /// directory, server version and server uid; set
    /// `TIDEPOOL_TEST_NO_INITDB_CACHE=1` to always run initdb.
    fn initdb(&self) -> Result<()> {
        if std::env::var_os("TIDEPOOL_TEST_NO_INITDB_CACHE").is_none() {
            match self.cached_template() {
                Ok(template) => {
                    let status = Command::new("cp").arg("-a").arg(&template).arg(&self.data).stdout(Stdio::null()).stderr(Stdio::null()).status();
                    if matches!(status, Ok(s) if s.success()) {
                        return Ok(());
                    }
                    let _ = fs::remove_dir_all(&self.data);
                }
                Err(_) => { /* fall back to a plain initdb */ }
            }
        }
        self.initdb_into(&self.data)
    }

    fn cached_template(&self) -> Result<PathBuf> {
        let version = Command::new(self.bin_dir.join("postgres")).arg("--version").output()?;
        let key: String = format!(
            "{}-{}-uid{}",
            String::from_utf8_lossy(&version.stdout).trim(),
            self.bin_dir.display(),
            self.os_user.as_ref().map(|u| u.uid).unwrap_or_else(crate::os_user::effective_uid)
        )
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
        .collect();
        let cache = self.root.parent().unwrap_or(Path::new("/tmp")).join("tidepool-testkit-cache");
        fs::create_dir_all(&cache)?;
        let _ = fs::set_permissions(&cache, fs::Permissions::from_mode(0o755));
        let entry = cache.join(key);
        let valid = |p: &Path| p.join("PG_VERSION").is_file() && p.join("global/pg_control").is_file();
        if valid(&entry.join("data")) {
            return Ok(entry.join("data"));
        }
        // Build it aside, then rename into place atomically (another process
        // may be doing the same; whoever renames first wins).
        let staging = tempfile::Builder::new().prefix("staging.").tempdir_in(&cache)?;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))?;
        if let Some(u) = &self.os_user {
            std::os::unix::fs::chown(staging.path(), Some(u.uid), Some(u.gid))?;
        }
        self.initdb_into(&staging.path().join("data"))?;
        let staging = staging.keep();
        if fs::rename(&staging, &entry).is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        if valid(&entry.join("data")) {
            Ok(entry.join("data"))
        } else {
            bail!("initdb cache entry {} is not usable", entry.display())
        }
    }

    fn configure(&mut self, opts: &ClusterBuilder) -> Result<()> {
        let mut conf = String::from("\n# --- tidepool-testkit ---\n");
        let sock = self.root.to_string_lossy().replace('\'', "''");
        let _ = writeln!(conf, "listen_addresses = '127.0.0.1'");
        let _ = writeln!(conf, "unix_socket_directories = '{sock}'");
        let _ = writeln!(conf, "max_connections = {}", opts.max_connections);
        for line in [
            "shared_buffers = 64MB",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "wal_level = minimal",
            "max_wal_senders = 0",
            "max_wal_size = 1GB",
            "password_encryption = 'scram-sha-256'",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] %q%u@%d/%a '",
            "lc_messages = 'C'",
            "timezone = 'UTC'",
        ] {
            conf.push_str(line);
            conf.push('\n');
        }
        if opts.ssl {
            let (cert, key) = match &opts.ssl_ca_hosts {
                Some(hosts) => {
                    let pki = crate::test_pki(hosts);
                    self.ssl_ca_pem = Some(pki.ca_cert_pem);
                    (pki.cert_pem, pki.key_pem)
                }
                None => crate::self_signed_cert(["localhost", "127.0.0.1"]),
            };
            let cert_path = self.data.join("server.crt");
            let key_path = self.data.join("server.key");
            fs::write(&cert_path, &cert)?;
            fs::write(&key_path, &key)?;
            fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
            if let Some(u) = &self.os_user {
                for p in [&cert_path, &key_path] {
                    std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))?;
                }
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            self.ssl_cert_pem = Some(cert);
        }
        for (k, v) in &opts.settings {
            let _ = writeln!(conf, "{k} = {v}");
        }
        // Appending keeps the file's owner (the server user).
        fs::OpenOptions::new().append(true).open(self.data.join("postgresql.conf"))?.write_all(conf.as_bytes())?;

        let mut hba = String::from("# written by tidepool-testkit\n");
        for l in &opts.extra_hba {
            hba.push_str(l);
            hba.push('\n');
        }
        for (user, method) in [(SUPERUSER, "trust"), (SCRAM_USER, "scram-sha-256"), (MD5_USER, "md5"), (PASS_USER, "password"), (TRUST_USER, "trust")] {
            let _ = writeln!(hba, "local all {user} {method}");
            let _ = writeln!(hba, "host  all {user} 127.0.0.1/32 {method}");
        }
        // Roles created by tests: md5 means md5 or SCRAM, by the stored hash.
        hba.push_str("local all all md5\nhost  all all 127.0.0.1/32 md5\n");
        fs::write(self.data.join("pg_hba.conf"), hba)?;
        Ok(())
    }

    fn spawn_watchdog(&self) -> Result<()> {
        const SCRIPT: &str = r#"
trap '' INT TERM HUP PIPE
cat >/dev/null 2>&1
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = postgres ]; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
rm -rf "$1"
"#;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("testkit-pg-watchdog")
            .arg(&self.root)
            .arg(&self.data)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C on the test run must not kill it
            // before it has cleaned up.
            .process_group(0)
            .spawn()
            .context("spawning watchdog")?;
        *lock(&self.watchdog) = Some(child);
        Ok(())
    }

    fn start_server(&self) -> Result<()> {
        let mut running = lock(&self.running);
        if *running {
            return Ok(());
        }
        let ctl_out = self.root.join("pg_ctl.out");
        let out_file = fs::File::create(&ctl_out)?;
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("start")
            // Files, not pipes: the postmaster must not hold our pipe open.
            .stdout(Stdio::from(out_file.try_clone()?))
            .stderr(Stdio::from(out_file));
        let status = cmd.status().context("spawning pg_ctl start")?;
        if !status.success() {
            bail!(
                "pg_ctl start on port {} failed ({status}): {}\nlog:\n{}",
                self.port,
                fs::read_to_string(&ctl_out).unwrap_or_default().trim(),
                self.log_tail(4096)
            );
        }
        *running = true;
        Ok(())
    }

    fn stop(&self, mode: StopMode) -> Result<()> {
        let mut running = lock(&self.running);
        if !*running {
            return Ok(());
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(&self.data).args(["-w", "-t", "60", "-m", mode.as_arg(), "stop"]);
        self.run_checked(cmd, "pg_ctl stop")?;
        *running = false;
        Ok(())
    }

    fn log_tail(&self, max: u64) -> String {
        let len = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        read_from(&self.log, len.saturating_sub(max))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let running = *lock(&self.running);
        if running && self.stop(StopMode::Immediate).is_err() {
            // Last resort: SIGQUIT the postmaster = immediate shutdown.
            if let Some(pid) = fs::read_to_string(self.data.join("postmaster.pid")).ok().and_then(|s| s.lines().next().map(str::to_owned)) {
                let _ = Command::new("kill").args(["-QUIT", &pid]).status();
            }
        }
        if let Some(dir) = lock(&self.dir).take() {
            let _ = dir.close();
        }
        if let Some(mut child) = lock(&self.watchdog).take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn filter_sql(f: &BackendFilter) -> (&'static str, Option<String>) {
    match f {
        BackendFilter::Any => ("", None),
        BackendFilter::ApplicationName(a) => ("AND application_name = $3", Some(a.clone())),
        BackendFilter::User(u) => ("AND usename = $3", Some(u.clone())),
    }
}

/// Where to create cluster directories: `$TIDEPOOL_TEST_TMPDIR`; else
/// `/dev/shm` when it is a world-writable directory (memory-backed: initdb
/// and copies are several times faster than on disk, and fsync is off
/// anyway); else the system temp dir, falling back to `/tmp` when the server
/// runs as another user who could not traverse it.
fn temp_base(other_user: bool) -> PathBuf {
    if let Some(d) = std::env::var_os("TIDEPOOL_TEST_TMPDIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if fs::metadata(shm).map(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777).unwrap_or(false) {
        return shm.to_path_buf();
    }
    let base = std::env::temp_dir();
    if !other_user {
        return base;
    }
    let traversable = base.ancestors().all(|p| fs::metadata(p).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false));
    if traversable {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_end(&mut s);
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Percent-encodes everything but unreserved URL characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_and_quote() {
        assert_eq!(pct("a b@c"), "a%20b%40c");
        assert_eq!(pct("scram_user"), "scram_user");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
