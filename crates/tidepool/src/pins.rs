//! Pinned clients per database: in transaction mode a wire or WebSocket client that creates
//! session state tidepool cannot replay (temp tables, SQL `PREPARE`, session advisory locks,
//! `WITH HOLD` cursors, dblink connections) keeps its server between transactions. This module
//! owns the bound on how many may do so at once (`max_pinned`) and the gauge that shows it; the
//! session (`frontend/pg/state.rs`) decides when a client pins and unpins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

/// The pin budget of one database's own pool.
pub struct Pins {
    held: AtomicUsize,
    max: AtomicUsize,
    gauge: Gauge,
}

impl Pins {
    /// `max`: `max_pinned`, or half the pool when unset. `gauge`: the database's registered
    /// `pinned_clients` ([`crate::db_metrics::DbMetrics`]).
    pub fn new(max_pinned: Option<usize>, pool_size: usize, gauge: Gauge) -> Arc<Pins> {
        Arc::new(Pins { held: AtomicUsize::new(0), max: AtomicUsize::new(max_pinned.unwrap_or(pool_size / 2)), gauge })
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A reload's new limit: pins already held are kept, new ones obey it.
    pub fn set_max(&self, max_pinned: Option<usize>, pool_size: usize) {
        self.max.store(max_pinned.unwrap_or(pool_size / 2), Ordering::Relaxed);
    }

    /// Clients pinned now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes one pin slot, unless `max` are held.
    pub fn try_pin(self: &Arc<Self>) -> Option<PinSlot> {
        self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max.load(Ordering::Relaxed)).then_some(n + 1)).ok()?;
        self.gauge.inc();
        Some(PinSlot(self.clone()))
    }
}

/// One held pin; given back on drop.
pub struct PinSlot(Arc<Pins>);

impl Drop for PinSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let pins = Pins::new(None, 5, Gauge::default());
        assert_eq!(pins.max(), 2);
        let a = pins.try_pin().unwrap();
        let _b = pins.try_pin().unwrap();
        assert!(pins.try_pin().is_none());
        drop(a);
        assert_eq!(pins.held(), 1);
        assert!(pins.try_pin().is_some());
        let zero = Pins::new(Some(0), 5, Gauge::default());
        assert!(zero.try_pin().is_none());
    }
}
