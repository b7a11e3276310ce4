//! The Node.js client suites under `tests/clients/` and `examples/hono-worker/`, run against an
//! in-process tidepool in front of a throwaway PostgreSQL cluster:
//!
//! * `prisma_accelerate_suite` — Prisma 7 client (`accelerateUrl` + `withAccelerate()`) scenarios
//!   against the Accelerate-compatible API.
//! * `prisma_accelerate_cache` — the query cache through the same client: `cacheStrategy`,
//!   `.withAccelerateInfo()` statuses and `$accelerate.invalidate()` (`tests/clients/prisma/cache.mjs`).
//! * `prisma_accelerate_differential` — the same scenarios against Prisma's reference executor and
//!   against tidepool; the normalised results must be identical (`0 different`).
//! * `neon_serverless_suite` — `@neondatabase/serverless` over `POST /sql` and WebSocket, compared
//!   with node-postgres talking to PostgreSQL directly.
//! * `prisma_adapter_neon_smoke` — Prisma 7 through `@prisma/adapter-neon` over WebSocket: CRUD and
//!   interactive transactions.
//! * `hono_worker_smoke` — a Hono Worker under `wrangler dev` (local workerd) creating users via
//!   Prisma `accelerateUrl`; passes with a notice when workerd cannot start on the machine (exit 3).
//!
//! Each test has its own database and its own tidepool. The suites need `node` (>= 20) and `npm`;
//! their packages are installed by the suites' setup scripts (`npm ci`, skipped when
//! `package-lock.json` has not changed since the last install). The Node processes run one at a
//! time (they are CPU-heavy and share install directories), so the tests queue on [`NODE`].
//!
//! `TIDEPOOL_NODE_VERBOSE=1` prints every suite's full output even when it passes
//! (`cargo test -p tidepool --test node_clients -- --nocapture`).

use std::fmt::Write as _;
use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tidepool::run::Running;
use tidepool_testkit::{TestCluster, SCRAM_PASSWORD, SCRAM_USER, SUPERUSER};

/// One Node suite (or setup step) at a time, across all tests of this binary.
static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SETUP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const SUITE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn init_tracing() {
    if let Ok(filter) = std::env::var("TIDEPOOL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_test_writer().try_init();
    }
}

// ---------------------------------------------------------------------------------------------
// tidepool in front of one database
// ---------------------------------------------------------------------------------------------

/// An in-process tidepool serving one database (named like the PostgreSQL database) to the user
/// [`SCRAM_USER`] / [`SCRAM_PASSWORD`] and to one API key. Upstream it connects as the superuser.
struct Tidepool {
    running: Option<Running>,
    http: SocketAddr,
    db: String,
    api_key: String,
    direct_url: String,
}

impl Tidepool {
    async fn start(pg: &TestCluster, prefix: &str) -> Result<Tidepool> {
        init_tracing();
        let db = pg.unique_database(prefix).await?;
        let api_key = format!("node-clients-{db}");
        let toml = format!(
            r#"
[server]
pg_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
shutdown_timeout = "2s"
scram_iterations = 64

[[databases]]
name = "{db}"
url = "{url}"
pool_size = 10

[[users]]
name = "{SCRAM_USER}"
auth = "scram-sha-256"
password = "{SCRAM_PASSWORD}"

[[api_keys]]
sha256 = "{sha}"
database = "{db}"
label = "node_clients"
"#,
            url = pg.url(SUPERUSER, &db),
            sha = hex::encode(tidepool::keys::hash_key(&api_key)),
        );
        let config = tidepool::Config::from_toml(&toml, std::iter::empty()).with_context(|| format!("config:\n{toml}"))?;
        let running = tidepool::run::start(config).await?;
        let http = running.bound.http.ok_or_else(|| anyhow!("no http listener bound"))?;
        Ok(Tidepool { running: Some(running), http, direct_url: pg.url(SUPERUSER, &db), db, api_key })
    }

    fn accelerate_url(&self) -> String {
        format!("prisma+postgres://{}/?api_key={}", self.http, self.api_key)
    }

    /// What the Neon driver logs in with (`Neon-Connection-String`, WebSocket startup).
    fn conn_string(&self) -> String {
        format!("postgresql://{SCRAM_USER}:{SCRAM_PASSWORD}@{}/{}", self.http, self.db)
    }

    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------------------------

struct Outcome {
    what: String,
    /// Exit code; `None` when killed by a signal or timed out.
    code: Option<i32>,
    timed_out: bool,
    /// stdout and stderr interleaved.
    output: String,
    elapsed: Duration,
}

impl Outcome {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn describe(&self) -> String {
        let status = match (self.timed_out, self.code) {
            (true, _) => "timed out".to_string(),
            (false, Some(c)) => format!("exit status {c}"),
            (false, None) => "killed by a signal".to_string(),
        };
        format!("{}: {status} after {:.1}s\n----- output -----\n{}\n----- end of output -----", self.what, self.elapsed.as_secs_f64(), self.output.trim_end())
    }

    fn ensure_success(&self) -> Result<()> {
        if !self.success() {
            bail!("{}", self.describe());
        }
        if std::env::var_os("TIDEPOOL_NODE_VERBOSE").is_some() {
            eprintln!("{}", self.describe());
        }
        Ok(())
    }

    /// The last line of the form `N passed, N failed` (optionally `, N skipped`).
    fn passed_failed(&self) -> Option<(u64, u64)> {
        self.output.lines().rev().find_map(|l| {
            let l = l.trim();
            let (p, rest) = l.split_once(" passed, ")?;
            let f = rest.strip_suffix(" failed").or_else(|| rest.split_once(" failed, ").map(|(f, _)| f))?;
            Some((p.parse().ok()?, f.parse().ok()?))
        })
    }

    /// `# name N` lines of node's test runner (`pass`, `fail`, `skipped`, ...).
    fn node_test_count(&self, name: &str) -> Option<u64> {
        let prefix = format!("# {name} ");
        self.output.lines().rev().find_map(|l| l.trim().strip_prefix(&prefix)?.trim().parse().ok())
    }
}

/// Runs `program args` in `dir` with extra `env`, stdout+stderr captured together, in its own
/// process group (killed as a whole on timeout).
async fn run(what: &str, dir: &Path, program: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> Result<Outcome> {
    let mut log = tempfile::tempfile().context("temp file for output")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CHECKPOINT_DISABLE", "1")
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("npm_config_update_notifier", "false")
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("{what}: cannot start {program} in {}", dir.display()))?;
    let pid = child.id();
    let (code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            // TERM first so the scripts' EXIT traps stop what they started (reference server,
            // wrangler), then KILL whatever is left of the group.
            if let Some(pid) = pid {
                kill_group(pid, "TERM").await;
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                kill_group(pid, "KILL").await;
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    let elapsed = started.elapsed();
    let mut output = Vec::new();
    log.rewind()?;
    log.read_to_end(&mut output)?;
    Ok(Outcome { what: what.to_string(), code, timed_out, output: String::from_utf8_lossy(&output).into_owned(), elapsed })
}

async fn kill_group(pid: u32, signal: &str) {
    let _ = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Fails clearly when Node.js or npm is missing or too old.
fn require_node() -> Result<()> {
    let hint = "the Node client tests need Node.js >= 20 and npm on PATH \
                (CI installs them; on Debian: apt-get install nodejs npm)";
    let version = |tool: &str| -> Result<String> {
        let out = std::process::Command::new(tool).arg("--version").output().map_err(|e| anyhow!("`{tool} --version` failed ({e}): {hint}"))?;
        if !out.status.success() {
            bail!("`{tool} --version` exited with {}: {hint}", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let node = version("node")?;
    version("npm")?;
    let major: u32 = node.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < 20 {
        bail!("node {node} is too old: {hint}");
    }
    Ok(())
}

/// `npm ci --ignore-scripts` in `dir` unless `package-lock.json` is unchanged since the last
/// install (same stamp file as the suites' `setup.sh`).
async fn npm_ci_if_needed(dir: &Path) -> Result<()> {
    let lock = std::fs::read(dir.join("package-lock.json")).with_context(|| format!("{}/package-lock.json", dir.display()))?;
    let sum = hex::encode(Sha256::digest(&lock));
    let stamp = dir.join("node_modules/.tidepool-lock.sha256");
    if std::fs::read_to_string(&stamp).map(|s| s.trim() == sum).unwrap_or(false) {
        return Ok(());
    }
    let out = run(&format!("npm ci in {}", dir.display()), dir, "npm", &["ci", "--ignore-scripts", "--no-audit", "--no-fund"], &[], SETUP_TIMEOUT).await?;
    out.ensure_success()?;
    std::fs::write(&stamp, format!("{sum}\n"))?;
    Ok(())
}

async fn setup_script(dir: &Path) -> Result<()> {
    run(&format!("{}/setup.sh", dir.display()), dir, "bash", &["setup.sh"], &[], SETUP_TIMEOUT).await?.ensure_success()
}

/// Checks a suite that ends with `N passed, N failed`: exit 0, something passed, nothing failed.
fn check_counted(out: &Outcome) -> Result<(u64, u64)> {
    out.ensure_success()?;
    let (passed, failed) = out.passed_failed().ok_or_else(|| anyhow!("no `N passed, N failed` line\n{}", out.describe()))?;
    if passed == 0 || failed != 0 {
        bail!("{passed} passed, {failed} failed\n{}", out.describe());
    }
    eprintln!("{}: {passed} passed, {failed} failed in {:.1}s", out.what, out.elapsed.as_secs_f64());
    Ok((passed, failed))
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma_accelerate_suite() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_prisma_suite").await?;
    let dir = repo_root().join("tests/clients/prisma");
    let results = tempfile::tempdir()?;
    let result = async {
        let _node = NODE.lock().await;
        setup_script(&dir).await?;
        let out = run(
            "prisma accelerate suite vs tidepool",
            &dir,
            "node",
            &["--import", "tsx", "suite.mjs"],
            &[
                ("ACCELERATE_URL", tp.accelerate_url()),
                ("DATABASE_URL", tp.direct_url.clone()),
                ("RESULTS_OUT", results.path().join("results-tidepool.json").display().to_string()),
            ],
            SUITE_TIMEOUT,
        )
        .await?;
        check_counted(&out).map(drop)
    }
    .await;
    tp.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma_accelerate_cache() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_prisma_cache").await?;
    let dir = repo_root().join("tests/clients/prisma");
    let result = async {
        let _node = NODE.lock().await;
        setup_script(&dir).await?;
        let out = run(
            "prisma cache (withAccelerate cacheStrategy, withAccelerateInfo, $accelerate.invalidate)",
            &dir,
            "node",
            &["--import", "tsx", "cache.mjs"],
            &[("ACCELERATE_URL", tp.accelerate_url()), ("DATABASE_URL", tp.direct_url.clone())],
            SUITE_TIMEOUT,
        )
        .await?;
        check_counted(&out).map(drop)
    }
    .await;
    tp.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma_accelerate_differential() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_prisma_differential").await?;
    let dir = repo_root().join("tests/clients/prisma");
    let results = tempfile::tempdir()?;
    let result = async {
        let _node = NODE.lock().await;
        setup_script(&dir).await?;
        let out = run(
            "prisma differential (reference executor vs tidepool)",
            &dir,
            "bash",
            &["differential.sh"],
            &[("ACCELERATE_URL", tp.accelerate_url()), ("DATABASE_URL", tp.direct_url.clone()), ("OUT_DIR", results.path().display().to_string())],
            SUITE_TIMEOUT * 2,
        )
        .await?;
        out.ensure_success()?;
        // diff.mjs ends with `N same, N different (A=…, B=…)`.
        let (summary, same, different) = out
            .output
            .lines()
            .rev()
            .map(str::trim)
            .find_map(|l| {
                let (same, rest) = l.split_once(" same, ")?;
                let different = rest.split_once(" different")?.0;
                Some((l, same.parse::<u64>().ok()?, different.parse::<u64>().ok()?))
            })
            .ok_or_else(|| anyhow!("no `N same, N different` line\n{}", out.describe()))?;
        if same == 0 || different != 0 {
            bail!("{summary}\n{}", out.describe());
        }
        let runs: Vec<&str> = out.output.lines().filter(|l| l.contains(" passed, ") && l.contains(" failed")).collect();
        eprintln!("{}: {summary} (runs: {}) in {:.1}s", out.what, runs.join(" / "), out.elapsed.as_secs_f64());
        Ok(())
    }
    .await;
    tp.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_serverless_suite() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_neon_suite").await?;
    let dir = repo_root().join("tests/clients/neon");
    let result = async {
        let _node = NODE.lock().await;
        npm_ci_if_needed(&dir).await?;
        let out = run(
            "neon serverless suite vs tidepool",
            &dir,
            "node",
            &["--test", "--test-concurrency=1", "test/"],
            &[
                ("TIDEPOOL_HTTP", format!("http://{}", tp.http)),
                ("TIDEPOOL_WS", tp.http.to_string()),
                ("DIRECT_PG_URL", tp.direct_url.clone()),
                ("TIDEPOOL_CONN_STRING", tp.conn_string()),
            ],
            SUITE_TIMEOUT,
        )
        .await?;
        out.ensure_success()?;
        let count = |name| out.node_test_count(name).ok_or_else(|| anyhow!("no `# {name} N` line\n{}", out.describe()));
        let (pass, fail, skipped) = (count("pass")?, count("fail")?, count("skipped")?);
        // The suite skips whole sections when an environment variable is missing: all are set.
        if pass == 0 || fail != 0 || skipped != 0 {
            bail!("{pass} passed, {fail} failed, {skipped} skipped\n{}", out.describe());
        }
        eprintln!("{}: {pass} passed, {fail} failed in {:.1}s", out.what, out.elapsed.as_secs_f64());
        Ok(())
    }
    .await;
    tp.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prisma_adapter_neon_smoke() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_prisma_adapter_neon").await?;
    let dir = repo_root().join("tests/clients/prisma-adapter-neon");
    let result = async {
        let _node = NODE.lock().await;
        setup_script(&dir).await?;
        let out = run(
            "prisma + @prisma/adapter-neon (WebSocket) vs tidepool",
            &dir,
            "node",
            &["--import", "tsx", "smoke.mjs"],
            &[("TIDEPOOL_WS", tp.http.to_string()), ("TIDEPOOL_CONN_STRING", tp.conn_string()), ("DIRECT_PG_URL", tp.direct_url.clone())],
            SUITE_TIMEOUT,
        )
        .await?;
        check_counted(&out).map(drop)
    }
    .await;
    tp.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hono_worker_smoke() -> Result<()> {
    require_node()?;
    let pg = TestCluster::shared().await?;
    let tp = Tidepool::start(pg, "node_hono_worker").await?;
    let dir = repo_root().join("examples/hono-worker");
    let result = async {
        let _node = NODE.lock().await;
        setup_script(&dir).await?;
        let out = run(
            "hono worker (wrangler dev) smoke vs tidepool",
            &dir,
            "bash",
            &["smoke.sh"],
            &[("ACCELERATE_URL", tp.accelerate_url()), ("DATABASE_URL", tp.direct_url.clone())],
            SUITE_TIMEOUT,
        )
        .await?;
        if out.code == Some(3) {
            let mut msg = String::from("hono_worker_smoke: NOT RUN — workerd cannot start on this machine (smoke.sh exit 3):");
            for l in out.output.lines().filter(|l| l.contains("workerd")) {
                let _ = write!(msg, "\n  {l}");
            }
            eprintln!("{msg}");
            println!("{msg}");
            return Ok(());
        }
        check_counted(&out).map(drop)
    }
    .await;
    tp.stop().await;
    result
}

/// The harness itself: a suite that hangs is stopped at its timeout, with everything it started.
#[tokio::test]
async fn harness_stops_a_hung_suite_and_its_children() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("child.pid");
    let script = format!("sleep 300 & echo $! > {}; echo started; wait", marker.display());
    let t0 = Instant::now();
    let out = run("hung suite", dir.path(), "bash", &["-c", &script], &[], Duration::from_millis(500)).await?;
    assert!(out.timed_out && !out.success(), "{}", out.describe());
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(out.output.contains("started"), "{}", out.describe());
    assert!(out.describe().contains("timed out"));
    let child: u32 = std::fs::read_to_string(&marker)?.trim().parse()?;
    // The background child was in the group and got the signal (it may linger briefly as a zombie
    // of an exited parent, so look at its state rather than its existence).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let alive = state.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "child {child} of the timed-out suite still running: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
