//! Helpers of the cluster tests (tests/cluster.rs): a real `tidepool serve` process, SHOW PEERS,
//! idle connections that hold leases, an async hang-bounded wait.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::common::{self, Proxy, SCRAM_CLIENT, SCRAM_CLIENT_PW};

/// A real `tidepool serve` process with this TOML (killed on drop).
pub struct RealNode {
    pub child: std::process::Child,
    _dir: tempfile::TempDir,
    pg: u16,
}

impl RealNode {
    pub fn start(toml: &str, pg: u16) -> Result<RealNode> {
        Self::start_with_ca(toml, pg, None)
    }

    /// With `ca`: the process trusts that CA file for TLS verified against the system store
    /// (`SSL_CERT_FILE`, read by rustls-native-certs), e.g. a `rediss://` test server's.
    pub fn start_with_ca(toml: &str, pg: u16, ca: Option<&Path>) -> Result<RealNode> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tidepool.toml");
        std::fs::write(&path, toml)?;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"));
        if let Some(ca) = ca {
            cmd.env("SSL_CERT_FILE", ca);
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(RealNode { child, _dir: dir, pg })
    }

    pub fn url(&self) -> String {
        format!("postgresql://{SCRAM_CLIENT}:{SCRAM_CLIENT_PW}@127.0.0.1:{}/{}?sslmode=disable", self.pg, common::DB)
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds; fails after 30 s (a hang guard, not a timing check).
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) -> Result<()> {
    for _ in 0..3000 {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("timed out waiting until {what}")
}

/// Peer node ids in SHOW PEERS on `p`'s console.
pub async fn show_peers(p: &Proxy) -> Result<Vec<String>> {
    let mut cfg = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    cfg.dbname("pgbouncer");
    let console = common::connect(&cfg).await?;
    Ok(console
        .simple_query("SHOW PEERS")
        .await?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect())
}

/// Opens `n` connections through `cfg` at once (n transactions held together), then leaves them
/// idle in the node's pool: the node holds `n` leases.
pub async fn hold_idle(cfg: &tokio_postgres::Config, n: usize) -> Result<()> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let c = common::connect(cfg).await?;
        c.batch_execute("BEGIN; SELECT 1").await?;
        clients.push(c);
    }
    for c in &clients {
        c.batch_execute("COMMIT").await?;
    }
    Ok(())
}
