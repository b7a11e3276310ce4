//! [`TestRedis`]: a throwaway `redis-server` on a free `127.0.0.1` port (never the machine's
//! 6379), without persistence (`--save '' --appendonly no`), its working directory a temporary
//! directory. Killed on drop; [`TestRedis::kill`] / [`TestRedis::restart`] let a test take Redis
//! away and bring it back on the same port (empty: nothing is persisted), and
//! [`TestRedis::freeze`] / [`TestRedis::resume`] make it stop answering without closing anything.
//!
//! [`TestRedis::start_tls`] also listens with TLS on a second free port ([`TestRedis::tls_url`]),
//! with a fresh test CA ([`TestRedis::tls_ca_file`]) and no client certificates required.
//!
//! The binary is `$TIDEPOOL_REDIS_SERVER` if set, else `redis-server` on `PATH`. Process
//! management uses `std::process`, so a server started in one runtime can be used from any other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running (or killed) test `redis-server`.
pub struct TestRedis {
    port: u16,
    /// The TLS port, if started with [`TestRedis::start_tls`].
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Result<TestRedis> {
        Self::start_with(false)
    }

    /// Like [`TestRedis::start`], plus a TLS listener on another free port whose certificate (for
    /// `127.0.0.1`) is signed by a fresh test CA, written to [`TestRedis::tls_ca_file`].
    pub fn start_tls() -> Result<TestRedis> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<TestRedis> {
        // A port can be taken between free_port() and bind: retry with a new one.
        let mut last = None;
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("tidepool-redis-").tempdir().context("temp dir for redis-server")?;
            if tls {
                let pki = crate::test_pki(["127.0.0.1"]);
                std::fs::write(dir.path().join("ca.pem"), &pki.ca_cert_pem)?;
                std::fs::write(dir.path().join("server.pem"), &pki.cert_pem)?;
                std::fs::write(dir.path().join("server.key"), &pki.key_pem)?;
            }
            let mut redis = TestRedis { port: crate::free_port(), tls_port: tls.then(crate::free_port), dir, child: None };
            match redis.spawn() {
                Ok(()) => return Ok(redis),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:TLS_PORT` (a server from [`TestRedis::start_tls`]).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("rediss://127.0.0.1:{p}"))
    }

    /// The PEM file of the CA that signed the TLS listener's certificate.
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.tls_port.map(|_| self.dir.path().join("ca.pem"))
    }

    /// Whether the server process is running (not killed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel but nothing is
    /// answered, like a Redis behind a black hole. [`TestRedis::resume`] undoes it.
    pub fn freeze(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.child.as_ref().context("redis-server is not running")?.id().to_string();
        let status = Command::new("kill").args([sig, &pid]).status().context("running kill")?;
        if !status.success() {
            bail!("kill {sig} {pid}: {status}");
        }
        Ok(())
    }

    /// Kills the server if running, then starts a new, empty one on the same port and waits
    /// until it answers PING.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        // The old socket may linger briefly; redis-server sets SO_REUSEADDR, so a few tries do.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Sends one inline command and returns the raw reply: a simple line (`+PONG`, `-ERR …`,
    /// `:1`) or a bulk string's contents (for checks without a client crate).
    pub fn command(&self, line: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{line}\r\n").as_bytes())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let Some(len) = head.strip_prefix('$') else { return Ok(head) };
                let Ok(len) = len.parse::<usize>() else { return Ok(head) }; // $-1: nil
                if buf.len() >= end + 2 + len {
                    return Ok(String::from_utf8_lossy(&buf[end + 2..end + 2 + len]).into_owned());
                }
            }
            let n = s.read(&mut chunk)?;
            if n == 0 || buf.len() > 1 << 20 {
                bail!("redis-server closed the connection mid-reply");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = std::env::var_os("TIDEPOOL_REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("redis-server"));
        let port = self.port.to_string();
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"]);
        if let Some(tls_port) = self.tls_port {
            let file = |name: &str| self.dir.path().join(name);
            cmd.args(["--tls-port", &tls_port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"));
        }
        let mut child = cmd
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {} (install the redis-server package)", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("redis-server on port {port} exited at start: {status}");
            }
            // The answer must come from our process, not from whoever else took the port.
            if self.answers_as(child.id()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("redis-server on port {port} did not answer PING within 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_as(&self, pid: u32) -> bool {
        self.command("INFO server").is_ok_and(|r| r.lines().any(|l| l.trim() == format!("process_id:{pid}")))
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
