//! Pool counters and gauges, shared with the Prometheus registry (the metric types are atomic).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct PoolStats {
    /// The configured size (changes on reload).
    pub size: Gauge,
    pub active: Gauge,
    pub idle: Gauge,
    pub waiting: Gauge,
    pub opened: Counter,
    pub closed: Counter,
    pub errors: Counter,
    pub timeouts: Counter,
    pub wait: Histogram,
    /// Connections handed out (the console's `server_assignment_count`).
    pub assignments: Counter,
    /// Total time waited for those, in microseconds (the console's `total_wait_time`).
    pub wait_us: Counter,
}

impl Default for PoolStats {
    fn default() -> Self {
        PoolStats {
            size: Gauge::default(),
            active: Gauge::default(),
            idle: Gauge::default(),
            waiting: Gauge::default(),
            opened: Counter::default(),
            closed: Counter::default(),
            errors: Counter::default(),
            timeouts: Counter::default(),
            wait: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0].into_iter()),
            assignments: Counter::default(),
            wait_us: Counter::default(),
        }
    }
}

/// Decrements the waiting gauge when a waiter is served or leaves.
pub struct WaitingGuard<'a>(&'a Gauge);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl PoolStats {
    pub fn waiting_guard(&self) -> WaitingGuard<'_> {
        self.waiting.inc();
        WaitingGuard(&self.waiting)
    }

    /// Records one connection handed out after waiting `waited`.
    pub fn record_assignment(&self, waited: std::time::Duration) {
        self.wait.observe(waited.as_secs_f64());
        self.assignments.inc();
        self.wait_us.inc_by(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
    }

    /// Registers this pool's metrics under `registry` (already labelled with the pool's name).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("pool_size", "Most upstream connections the pool may open (pool_size)", self.size.clone());
        registry.register("pool_active_connections", "Upstream connections lent out", self.active.clone());
        registry.register("pool_idle_connections", "Upstream connections idle in the pool", self.idle.clone());
        registry.register("pool_waiting_clients", "Clients waiting for a connection", self.waiting.clone());
        registry.register("pool_connections_opened", "Upstream connections opened", self.opened.clone());
        registry.register("pool_connections_closed", "Upstream connections closed", self.closed.clone());
        registry.register("pool_connect_errors", "Failed upstream connection attempts", self.errors.clone());
        registry.register("pool_timeouts", "Waiters that gave up after pool_timeout", self.timeouts.clone());
        registry.register("pool_wait_seconds", "Time to obtain a connection", self.wait.clone());
    }
}
