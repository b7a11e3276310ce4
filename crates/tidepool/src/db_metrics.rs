//! The Prometheus series of one database name (label `database`, plus `role` for role pools):
//! registered the first time the name is built and kept by the [`App`](crate::app::App) for the
//! life of the process. Every later incarnation of the database — a reload that changes its
//! upstream, or removes it and a later one that adds it back — counts into these same series:
//! the registry can neither unregister a series nor take a second one with the same labels, so
//! metrics built anew would never be scraped.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pool::PoolStats;

/// The registered metrics of one database name.
pub struct DbMetrics {
    name: String,
    /// The database's own pool.
    pub pool: PoolStats,
    pub pinned: Gauge,
    pub listen_channels: Gauge,
    pub notifications_dropped: Counter,
    /// Role name → its pool's metrics (registered when the role first appears).
    roles: Mutex<HashMap<String, PoolStats>>,
}

impl DbMetrics {
    /// Registers the database-level series of `name` under `registry`.
    pub fn register(name: &str, registry: &mut Registry) -> Arc<DbMetrics> {
        let m = DbMetrics {
            name: name.to_owned(),
            pool: PoolStats::default(),
            pinned: Gauge::default(),
            listen_channels: Gauge::default(),
            notifications_dropped: Counter::default(),
            roles: Mutex::new(HashMap::new()),
        };
        let r = registry.sub_registry_with_label(("database".into(), name.to_owned().into()));
        // The own pool's metrics keep only the `database` label (as before roles existed).
        m.pool.register(r);
        r.register("pinned_clients", "Clients keeping their server between transactions (session state)", m.pinned.clone());
        r.register("listen_channels", "Channels the shared listener connection listens to", m.listen_channels.clone());
        r.register("notifications_dropped", "Notifications dropped because a client's queue was full", m.notifications_dropped.clone());
        Arc::new(m)
    }

    /// The pool metrics of role `role`, registered under `registry` the first time.
    pub fn role(&self, role: &str, registry: &mut Registry) -> PoolStats {
        self.roles
            .lock()
            .entry(role.to_owned())
            .or_insert_with(|| {
                let stats = PoolStats::default();
                let r = registry.sub_registry_with_label(("database".into(), self.name.clone().into()));
                stats.register(r.sub_registry_with_label(("role".into(), role.to_owned().into())));
                stats
            })
            .clone()
    }
}

/// Every database name's metrics, by name.
#[derive(Default)]
pub struct MetricsBook(HashMap<String, Arc<DbMetrics>>);

impl MetricsBook {
    /// The metrics of database `name`, registered under `registry` the first time.
    pub fn get(&mut self, name: &str, registry: &mut Registry) -> Arc<DbMetrics> {
        self.0.entry(name.to_owned()).or_insert_with(|| DbMetrics::register(name, registry)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_registered_once_and_its_series_are_shared() {
        let mut registry = Registry::default();
        let mut book = MetricsBook::default();
        let first = book.get("app", &mut registry);
        let again = book.get("app", &mut registry);
        first.pool.opened.inc();
        again.pool.opened.inc();
        first.role("ro", &mut registry).opened.inc();
        again.role("ro", &mut registry).opened.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert_eq!(text.matches("pool_connections_opened_total{database=\"app\"} 2").count(), 1, "{text}");
        assert_eq!(text.matches("pool_connections_opened_total{database=\"app\",role=\"ro\"} 2").count(), 1, "{text}");
    }
}
