//! Small helpers: free ports, psql / pgbench wrappers.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and closing the socket, so another
/// process can still take it before you bind it; ports already handed out by
/// this process are never returned twice, which avoids races between tests
/// of one binary. Code that binds the port should retry with a new one on
/// `EADDRINUSE` if it can.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("free_port: no unused port found");
}

/// Output of a finished psql / pgbench run.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `Ok(self)` if the command succeeded, else an error carrying its stderr.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!("command failed ({}): stderr:\n{}\nstdout:\n{}", self.status, self.stderr.trim_end(), self.stdout.trim_end())
        }
    }

    /// The `tps = N` figure of a pgbench run (first one printed).
    pub fn tps(&self) -> Option<f64> {
        self.stdout.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// The `number of failed transactions: N` figure of a pgbench run (0 when
    /// pgbench does not print it).
    pub fn pgbench_failed(&self) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| {
                let rest = l.trim().strip_prefix("number of failed transactions: ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    }
}

/// Runs `sql` with psql against `url` (a `postgres://` URL or a conninfo
/// string): `psql -X -q -A -t -v ON_ERROR_STOP=1 -d URL -c SQL`.
/// Unaligned, tuples-only output, so `stdout` is just the values
/// (`|`-separated columns, one row per line). Does not fail on a non-zero
/// exit; call [`CmdOutput::ok`] for that.
pub async fn run_psql(url: &str, sql: &str) -> Result<CmdOutput> {
    let psql = crate::pg_bin("psql")?;
    let mut cmd = tokio::process::Command::new(psql);
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]).env("PGCONNECT_TIMEOUT", "10");
    run(cmd).await
}

/// Runs pgbench with `args` (e.g. `["-i", "-s", "1", URL]` or
/// `["-S", "-c", "10", "-T", "5", URL]`; pgbench accepts a URL as its
/// database name argument). Does not fail on a non-zero exit.
pub async fn run_pgbench<I, S>(args: I) -> Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let pgbench = crate::pg_bin("pgbench")?;
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.args(args).env("PGCONNECT_TIMEOUT", "10");
    run(cmd).await
}

async fn run(mut cmd: tokio::process::Command) -> Result<CmdOutput> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = cmd.output().await.with_context(|| format!("spawning {cmd:?}"))?;
    Ok(CmdOutput { status: out.status, stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
}
