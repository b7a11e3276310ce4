//! Where an API-key request runs: [`Target`] = a database plus the upstream role its key is bound
//! to, carrying the pool to lease from. Each `[[databases.roles]]` entry has its own bounded
//! [`RolePool`] that logs in with the role's credentials, so a `RESET ROLE`, `SET ROLE` or
//! `SET SESSION AUTHORIZATION` in a client's SQL cannot leave the role (it is not a superuser
//! and holds no other role's membership unless granted). Every HTTP front end that takes API
//! keys finds its target with [`App::target_for_key`] and leases through [`Target::lease_with`].

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use crate::app::{lease_from, App, Database, LeaseError, ServerLease, Upstream};
use crate::config::{DatabaseConfig, RoleConfig, UpstreamUrl};
use crate::db_metrics::DbMetrics;
use crate::keys::ApiKey;
use crate::pool::{Pool, PoolSettings, PoolStats};
use crate::upstream::UpstreamTarget;

/// One configured role at run time: its own pool of connections logged in as `user`.
pub struct RolePool {
    /// The `[[databases.roles]]` name (what API keys name).
    pub name: String,
    /// The upstream user its connections log in as (`current_user` of its sessions).
    pub user: String,
    pub pool: Pool<Upstream>,
}

/// Builds the role pools of one database; each counts into its role's series of `metrics`
/// (registered under `registry` when the role is new).
pub fn role_pools(
    db: &DatabaseConfig,
    db_url: &UpstreamUrl,
    tracker: &TaskTracker,
    metrics: &DbMetrics,
    registry: &mut Registry,
    cluster: Option<&crate::cluster::Cluster>,
) -> anyhow::Result<HashMap<String, Arc<RolePool>>> {
    let mut out = HashMap::new();
    for role in &db.roles {
        let stats = metrics.role(&role.name, registry);
        out.insert(role.name.clone(), Arc::new(role_pool(db, db_url, role, tracker, stats, cluster)?));
    }
    Ok(out)
}

fn role_pool(
    db: &DatabaseConfig,
    db_url: &UpstreamUrl,
    role: &RoleConfig,
    tracker: &TaskTracker,
    stats: PoolStats,
    cluster: Option<&crate::cluster::Cluster>,
) -> anyhow::Result<RolePool> {
    let url = role.upstream_url(db_url).map_err(|e| anyhow::anyhow!("database {} role {}: {e}", db.name, role.name))?;
    let user = url.user.clone();
    let target = UpstreamTarget::from_config(url, db).map_err(|e| anyhow::anyhow!("database {} role {}: upstream TLS: {e}", db.name, role.name))?;
    let settings = PoolSettings {
        name: format!("{}/{}", db.name, role.name),
        size: role.pool_size,
        min_idle: 0,
        timeout: db.pool_timeout,
        idle_timeout: db.idle_timeout,
        max_lifetime: db.max_lifetime,
    };
    let budget = cluster.map(|c| c.budget(&settings.name, settings.size));
    let pool = Pool::with_budget(settings, Upstream { target, tracker: tracker.clone(), servers: Default::default() }, stats, budget);
    Ok(RolePool { name: role.name.clone(), user, pool })
}

/// A request's database and the role it runs as; carries the pool to lease from.
#[derive(Clone)]
pub struct Target {
    pub db: Arc<Database>,
    /// `None`: the database's own upstream user and pool.
    pub role: Option<Arc<RolePool>>,
}

impl Target {
    /// Runs as the database's own upstream user.
    pub fn own(db: Arc<Database>) -> Target {
        Target { db, role: None }
    }

    /// The upstream role the request runs as (`current_user`): the role's user, or the
    /// database's upstream user when the key names no role. Two targets with the same database
    /// and `upstream_role` see the same rows.
    pub fn upstream_role(&self) -> &str {
        match &self.role {
            Some(r) => &r.user,
            None => &self.db.upstream_user,
        }
    }

    /// The `[[databases.roles]]` name, if the key is bound to one.
    pub fn role_name(&self) -> Option<&str> {
        self.role.as_deref().map(|r| r.name.as_str())
    }

    /// Names the pool this target leases from: `database` or `database/role`.
    pub fn pool_id(&self) -> String {
        match self.role_name() {
            Some(role) => format!("{}/{role}", self.db.config.name),
            None => self.db.config.name.clone(),
        }
    }

    /// The pool requests of this target lease from.
    pub fn pool(&self) -> &Pool<Upstream> {
        match &self.role {
            Some(r) => &r.pool,
            None => &self.db.pool,
        }
    }

    /// Most connections this target's pool opens.
    pub fn pool_size(&self) -> usize {
        self.pool().settings().size
    }

    /// Leases from this target's pool with session parameters `want` (see [`lease_from`]).
    pub async fn lease_with(&self, want: &HashMap<String, String>) -> Result<ServerLease, LeaseError> {
        lease_from(self.pool(), want, self.db.config.reset_every_transaction).await
    }
}

impl App {
    /// Where a request authenticated by `key` runs. `None` when the key's database or role is not
    /// configured (a key file entry may name one that config no longer has): the request is
    /// refused, never run as the database's own user instead.
    pub fn target_for_key(&self, key: &ApiKey) -> Option<Target> {
        let db = self.database(&key.database)?.clone();
        let role = match key.role.as_deref() {
            None => None,
            Some(name) => match db.roles.get(name) {
                Some(r) => Some(r.clone()),
                None => {
                    tracing::warn!(database = %key.database, role = %name, label = %key.label, "API key names a role the database does not have; refused");
                    return None;
                }
            },
        };
        Some(Target { db, role })
    }
}
