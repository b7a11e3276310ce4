//! `[[databases.roles]]`: upstream roles an API key may be bound to. Each role logs in with its
//! own credentials (so a `RESET ROLE` or `SET ROLE` in a client's SQL cannot leave it) and has its
//! own bounded pool, carved out of the database's `pool_size`.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, DatabaseConfig, UpstreamUrl};

/// Longest role name (PostgreSQL's identifier limit, `NAMEDATALEN - 1`).
pub const MAX_ROLE_NAME: usize = 63;

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The name API keys use (`role = "reader"`): letters, digits, `_` and `-`, at most 63 bytes.
    pub name: String,
    /// Upstream user to log in as; default: `name`.
    #[serde(default)]
    pub user: Option<String>,
    /// Upstream password of `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// Alternatively the credentials as a URL (`postgres://user:password@host:port/db`); its host,
    /// port and database must be the database's own.
    #[serde(default)]
    pub url: Option<String>,
    /// Most upstream connections this role's pool opens; taken from the database's `pool_size`.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    5
}

impl fmt::Debug for RoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleConfig")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Whether `name` may name a role: non-empty, at most [`MAX_ROLE_NAME`] bytes of `[A-Za-z0-9_-]`.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ROLE_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl RoleConfig {
    /// The upstream URL this role's pool connects with: the database's `url` with the role's user
    /// and password in place of the database's.
    pub fn upstream_url(&self, db_url: &UpstreamUrl) -> Result<UpstreamUrl, String> {
        let mut url = db_url.clone();
        if let Some(raw) = &self.url {
            if self.user.is_some() || self.password.is_some() {
                return Err("set either url or user/password, not both".into());
            }
            let own = UpstreamUrl::parse(raw).map_err(|e| format!("url: {e}"))?;
            if (own.host.as_str(), own.port, own.database.as_str()) != (url.host.as_str(), url.port, url.database.as_str()) {
                return Err("url must name the database's own host, port and database".into());
            }
            url.user = own.user;
            url.password = own.password;
        } else {
            url.user = self.user.clone().unwrap_or_else(|| self.name.clone());
            url.password = self.password.clone();
        }
        if url.user.is_empty() || url.user.len() > MAX_ROLE_NAME || url.user.contains('\0') {
            return Err(format!("user {:?} is not a valid upstream user name", url.user));
        }
        Ok(url)
    }
}

/// Checks a database's roles: valid unique names, usable credentials, and role pools that leave
/// the database's own pool at least one connection (and room for its `min_idle`).
pub fn validate(db: &DatabaseConfig, db_url: &UpstreamUrl) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut carved = 0usize;
    for r in &db.roles {
        if !valid_role_name(&r.name) {
            return Err(invalid(format!("database {:?}: role name {:?} must be 1..=63 characters of A-Z a-z 0-9 _ -", db.name, r.name)));
        }
        if !names.insert(r.name.as_str()) {
            return Err(invalid(format!("database {:?}: role {:?} is duplicated", db.name, r.name)));
        }
        r.upstream_url(db_url).map_err(|e| invalid(format!("database {:?}: role {:?}: {e}", db.name, r.name)))?;
        if r.pool_size == 0 {
            return Err(invalid(format!("database {:?}: role {:?}: pool_size must be at least 1", db.name, r.name)));
        }
        carved = carved.saturating_add(r.pool_size);
    }
    if db.roles.is_empty() {
        return Ok(());
    }
    if carved >= db.pool_size {
        return Err(invalid(format!(
            "database {:?}: the roles' pool_size add up to {carved}, which must stay below the database's pool_size {} (its own pool keeps the rest)",
            db.name, db.pool_size
        )));
    }
    if db.min_idle > db.pool_size - carved {
        return Err(invalid(format!("database {:?}: min_idle exceeds what the roles leave of pool_size ({})", db.name, db.pool_size - carved)));
    }
    Ok(())
}

impl DatabaseConfig {
    /// The role named `name`, if the database has one.
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Size of the database's own pool: `pool_size` minus what its roles take.
    pub fn own_pool_size(&self) -> usize {
        let carved: usize = self.roles.iter().map(|r| r.pool_size).sum();
        self.pool_size.saturating_sub(carved).max(1)
    }
}
