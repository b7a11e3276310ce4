//! Which OS user runs the PostgreSQL server commands.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// An unprivileged OS user the server commands run as (only when the test
/// process is root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Name of the system user created when no `postgres` user exists.
const FALLBACK_USER: &str = "tidepool-pg";

/// `None` when the test process is not root (the server then runs as the
/// current user). When root: `$TIDEPOOL_TEST_PG_OS_USER`, else `postgres` if
/// it exists, else `tidepool-pg` (created with `useradd --system` if
/// missing), else `nobody`.
pub fn os_user() -> Result<Option<OsUser>> {
    static USER: OnceLock<Result<Option<OsUser>, String>> = OnceLock::new();
    USER.get_or_init(|| resolve().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

pub(crate) fn effective_uid() -> u32 {
    // /proc/self resolves to /proc/<pid>, owned by the process's effective uid.
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return m.uid();
    }
    Command::new("id").arg("-u").output().ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(u32::MAX)
}

fn resolve() -> Result<Option<OsUser>> {
    if effective_uid() != 0 {
        return Ok(None);
    }
    if let Ok(name) = std::env::var("TIDEPOOL_TEST_PG_OS_USER") {
        return lookup(&name).map(Some).with_context(|| format!("TIDEPOOL_TEST_PG_OS_USER={name}"));
    }
    if let Ok(u) = lookup("postgres") {
        return Ok(Some(u));
    }
    if let Ok(u) = lookup(FALLBACK_USER) {
        return Ok(Some(u));
    }
    let created = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", FALLBACK_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    // Another test binary may have created it concurrently: look again either way.
    if let Ok(u) = lookup(FALLBACK_USER) {
        return Ok(Some(u));
    }
    if let Ok(u) = lookup("nobody") {
        return Ok(Some(u));
    }
    bail!("running as root and found no unprivileged user for PostgreSQL (useradd: {created:?})")
}

fn lookup(name: &str) -> Result<OsUser> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id").args([flag, name]).stderr(Stdio::null()).output().context("running `id`")?;
        if !out.status.success() {
            bail!("no such user {name}");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    let uid = id("-u")?;
    let gid = id("-g")?;
    if uid == 0 {
        bail!("user {name} is root");
    }
    Ok(OsUser { name: name.to_string(), uid, gid })
}
