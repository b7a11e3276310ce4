//! Locating the PostgreSQL binaries.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};

/// Directory holding `initdb`, `pg_ctl` and `postgres` (all from the same
/// installation).
///
/// Order: `$TIDEPOOL_PG_BIN_DIR`; the directory of `initdb` found on `PATH`
/// after resolving symlinks (Debian puts server binaries only under
/// `/usr/lib/postgresql/N/bin`, some images symlink them into `/usr/local/bin`);
/// the highest-versioned `/usr/lib/postgresql/*/bin`; `/usr/local/pgsql/bin`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| find_bin_dir().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// Full path of a PostgreSQL program (`psql`, `pgbench`, `pg_ctl`, ...):
/// from [`pg_bin_dir`] if it is there (so client and server versions match),
/// else from `PATH`.
pub fn pg_bin(name: &str) -> Result<PathBuf> {
    if let Ok(dir) = pg_bin_dir() {
        let p = dir.join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    if let Some(p) = which(name) {
        return Ok(p);
    }
    bail!("PostgreSQL program `{name}` not found (set TIDEPOOL_PG_BIN_DIR or put it on PATH)")
}

fn has_server_bins(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|b| is_executable(&dir.join(b)))
}

fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TIDEPOOL_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if has_server_bins(&dir) {
            return Ok(dir);
        }
        bail!("TIDEPOOL_PG_BIN_DIR={} has no initdb/pg_ctl/postgres", dir.display());
    }
    if let Some(initdb) = which("initdb") {
        // Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb)
        // so pg_ctl/postgres come from the same installation.
        for candidate in [std::fs::canonicalize(&initdb).ok(), Some(initdb)].into_iter().flatten() {
            if let Some(dir) = candidate.parent() {
                if has_server_bins(dir) {
                    return Ok(dir.to_path_buf());
                }
            }
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = version_key(&name) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_server_bins(&bin) {
                versioned.push((key, bin));
            }
        }
    }
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    let local = PathBuf::from("/usr/local/pgsql/bin");
    if has_server_bins(&local) {
        return Ok(local);
    }
    bail!(
        "no PostgreSQL server binaries found (initdb on PATH, /usr/lib/postgresql/*/bin, \
         /usr/local/pgsql/bin); set TIDEPOOL_PG_BIN_DIR"
    )
}

fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_numerically() {
        let mut v = [version_key("9.6").unwrap(), version_key("15").unwrap(), version_key("10").unwrap()];
        v.sort();
        assert_eq!(v.last().unwrap(), &vec![15]);
        assert!(version_key("common").is_none());
    }
}
