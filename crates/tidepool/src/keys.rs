//! API keys for the HTTP APIs. Only the SHA-256 of a key is ever stored: in the config
//! (`[[api_keys]]`) or in the key file managed by `tidepool keys create|list|revoke`. Lookups hash
//! the presented key and compare against every stored hash in constant time. The key file is
//! re-read when it changes, so keys created or revoked while tidepool runs take effect.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ApiKeyConfig, Config};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub sha256: [u8; 32],
    pub database: String,
    /// The upstream role (`[[databases.roles]]` name) the key's requests run as; `None`: the
    /// database's own upstream user.
    pub role: Option<String>,
    pub label: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<ApiKeyConfig>,
}

fn parse_entry(k: &ApiKeyConfig) -> Option<ApiKey> {
    let bytes: [u8; 32] = hex::decode(&k.sha256).ok()?.try_into().ok()?;
    Some(ApiKey { sha256: bytes, database: k.database.clone(), role: k.role.clone(), label: k.label.clone() })
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

struct FileState {
    modified: Option<SystemTime>,
    /// Last time the file's modification time was looked at (at most once per second).
    checked: Option<std::time::Instant>,
    keys: Vec<ApiKey>,
}

const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub struct ApiKeys {
    /// Both replaced by [`ApiKeys::reload`].
    from_config: parking_lot::RwLock<Vec<ApiKey>>,
    file: parking_lot::RwLock<Option<PathBuf>>,
    state: Mutex<FileState>,
}

impl ApiKeys {
    pub fn from_config(config: &Config) -> Self {
        let keys = ApiKeys {
            from_config: parking_lot::RwLock::new(config.api_keys.iter().filter_map(parse_entry).collect()),
            file: parking_lot::RwLock::new(config.http.api_key_file.clone()),
            state: Mutex::new(FileState { modified: None, checked: None, keys: Vec::new() }),
        };
        keys.refresh();
        keys
    }

    /// Re-reads the key file if it changed; looks at it at most once per second, so requests do
    /// not each pay a blocking `stat` on the runtime.
    /// Takes the keys of a reloaded config and re-reads the key file now.
    pub fn reload(&self, config: &Config) {
        *self.from_config.write() = config.api_keys.iter().filter_map(parse_entry).collect();
        *self.file.write() = config.http.api_key_file.clone();
        *self.state.lock() = FileState { modified: None, checked: None, keys: Vec::new() };
        self.refresh();
    }

    fn refresh(&self) {
        let Some(path) = self.file.read().clone() else { return };
        let path = &path;
        let mut st = self.state.lock();
        if st.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        st.checked = Some(std::time::Instant::now());
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == st.modified && modified.is_some() {
            return;
        }
        st.keys = read_file(path).map(|f| f.keys.iter().filter_map(parse_entry).collect()).unwrap_or_default();
        st.modified = modified;
    }

    /// Finds the key's entry; every stored hash is compared, in constant time each.
    pub fn lookup(&self, key: &str) -> Option<ApiKey> {
        self.refresh();
        let h = hash_key(key);
        let st = self.state.lock();
        let mut found = None;
        for k in self.from_config.read().iter().chain(st.keys.iter()) {
            if tidepool_proto::auth::ct_eq(&k.sha256, &h) && found.is_none() {
                found = Some(k.clone());
            }
        }
        found
    }
}

fn read_file(path: &Path) -> anyhow::Result<KeyFile> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(toml::from_str(&s)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(e) => Err(e.into()),
    }
}

fn write_file(path: &Path, f: &KeyFile) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("# tidepool API keys: SHA-256 hashes only (tidepool keys create|list|revoke)\n{}", toml::to_string(f)?))?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// Creates a key for `database` (running as `role` when set), stores its hash in `path`, returns
/// the key (shown once).
pub fn create(path: &Path, database: &str, role: Option<&str>, label: &str) -> anyhow::Result<String> {
    let key: String = format!("tp_{}", rand::thread_rng().sample_iter(Alphanumeric).take(40).map(char::from).collect::<String>());
    let mut f = read_file(path)?;
    f.keys.push(ApiKeyConfig { sha256: hex::encode(hash_key(&key)), database: database.to_owned(), label: label.to_owned(), role: role.map(str::to_owned) });
    write_file(path, &f)?;
    Ok(key)
}

pub fn list(path: &Path) -> anyhow::Result<Vec<ApiKeyConfig>> {
    Ok(read_file(path)?.keys)
}

/// Removes keys whose hash starts with `prefix` (at least 8 hex characters) or whose label equals it.
pub fn revoke(path: &Path, prefix_or_label: &str) -> anyhow::Result<usize> {
    let mut f = read_file(path)?;
    let before = f.keys.len();
    f.keys.retain(|k| !(k.label == prefix_or_label || (prefix_or_label.len() >= 8 && k.sha256.starts_with(prefix_or_label))));
    let removed = before - f.keys.len();
    write_file(path, &f)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut config = Config::from_toml("[[databases]]\nname='app'\nurl='postgres://x@h/app'\n", Vec::new()).unwrap();
        config.http.api_key_file = Some(path.clone());
        let key = create(&path, "app", None, "ci").unwrap();
        let store = ApiKeys::from_config(&config);
        assert_eq!(store.lookup(&key).unwrap().database, "app");
        assert_eq!(store.lookup(&key).unwrap().role, None);
        assert!(store.lookup("tp_wrong").is_none());
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&key), "only the hash is stored");
        assert_eq!(revoke(&path, "ci").unwrap(), 1);
        // The file changed: the running store notices.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let store2 = ApiKeys::from_config(&config);
        assert!(store2.lookup(&key).is_none());
    }

    #[test]
    fn a_key_keeps_its_role() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let key = create(&path, "app", Some("reader"), "ro").unwrap();
        let plain = create(&path, "app", None, "rw").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("role = ").count(), 1, "only the bound key names a role: {text}");
        let listed = list(&path).unwrap();
        assert_eq!(listed.iter().map(|k| k.role.as_deref()).collect::<Vec<_>>(), [Some("reader"), None]);
        let mut config = Config::from_toml("[[databases]]\nname='app'\nurl='postgres://x@h/app'\n", Vec::new()).unwrap();
        config.http.api_key_file = Some(path);
        let store = ApiKeys::from_config(&config);
        assert_eq!(store.lookup(&key).unwrap().role.as_deref(), Some("reader"));
        assert_eq!(store.lookup(&plain).unwrap().role, None);
    }
}
