//! PgBouncer's per-period averages (`avg_*` of `SHOW STATS`, `SHOW STATS_AVERAGES`): each
//! database's running totals are snapshotted every period (60 s, PgBouncer's `stats_period`) by
//! the task [`run`] starts; the averages are those of the last complete period — counts and bytes
//! per second, transaction time per transaction, wait time per server assignment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::app::{App, Database};
use crate::stats::Front;

/// One database's running totals, as PgBouncer's STATS columns count them.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbTotals {
    pub xacts: u64,
    pub assigned: u64,
    /// Pool wait, µs.
    pub wait: u64,
    /// Bytes relayed from and to Postgres-protocol clients (wire and WebSocket).
    pub received: u64,
    pub sent: u64,
    /// Time inside those clients' transactions, µs.
    pub xact_time: u64,
}

impl DbTotals {
    pub fn of(db: &Database) -> DbTotals {
        let (assigned, wait) = db.pools().fold((0, 0), |(a, w), p| (a + p.stats().assignments.get(), w + p.stats().wait_us.get()));
        let (wire, ws) = (db.traffic.front_totals(Front::Wire), db.traffic.front_totals(Front::Ws));
        DbTotals {
            xacts: db.xacts.load(Ordering::Relaxed),
            assigned,
            wait,
            received: wire.received + ws.received,
            sent: wire.sent + ws.sent,
            xact_time: wire.time_us.saturating_add(ws.time_us),
        }
    }
}

/// The averages of one database over the last complete period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Averages {
    /// Per second.
    pub xact_count: u64,
    pub recv: u64,
    pub sent: u64,
    pub server_assignment_count: u64,
    /// µs per transaction.
    pub xact_time: u64,
    /// µs per server assignment.
    pub wait_time: u64,
}

#[derive(Default)]
struct State {
    last: Option<(Instant, HashMap<String, DbTotals>)>,
    averages: HashMap<String, Averages>,
}

/// The snapshots and the averages they give.
pub struct StatsPeriod {
    period_ms: AtomicU64,
    state: Mutex<State>,
}

impl Default for StatsPeriod {
    fn default() -> Self {
        StatsPeriod { period_ms: AtomicU64::new(60_000), state: Mutex::default() }
    }
}

fn per(delta: u64, over: u64) -> u64 {
    delta.checked_div(over).unwrap_or(0)
}

impl StatsPeriod {
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms.load(Ordering::Relaxed).max(1))
    }

    /// Changes the period (tests); the next snapshot is taken after it.
    pub fn set_period(&self, d: Duration) {
        self.period_ms.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
    }

    /// Takes a snapshot at `now`; the averages become those since the previous one.
    pub fn record(&self, now: Instant, totals: HashMap<String, DbTotals>) {
        let mut st = self.state.lock();
        if let Some((then, before)) = &st.last {
            let secs = now.duration_since(*then).as_secs().max(1);
            let averages = totals
                .iter()
                .map(|(name, cur)| {
                    let b = before.get(name).copied().unwrap_or_default();
                    let d = |c: u64, p: u64| c.saturating_sub(p);
                    let (xacts, assigned) = (d(cur.xacts, b.xacts), d(cur.assigned, b.assigned));
                    let avg = Averages {
                        xact_count: per(xacts, secs),
                        recv: per(d(cur.received, b.received), secs),
                        sent: per(d(cur.sent, b.sent), secs),
                        server_assignment_count: per(assigned, secs),
                        xact_time: per(d(cur.xact_time, b.xact_time), xacts),
                        wait_time: per(d(cur.wait, b.wait), assigned),
                    };
                    (name.clone(), avg)
                })
                .collect();
            st.averages = averages;
        }
        st.last = Some((now, totals));
    }

    /// The last complete period's averages of `database` (zeros before the first period ends).
    pub fn averages(&self, database: &str) -> Averages {
        self.state.lock().averages.get(database).copied().unwrap_or_default()
    }
}

/// Snapshots every database's totals each period until the app stops.
pub async fn run(app: Arc<App>) {
    let snapshot = |app: &App| {
        let totals = app.databases().iter().map(|db| (db.config.name.clone(), DbTotals::of(db))).collect();
        app.stats_period.record(Instant::now(), totals);
        Instant::now()
    };
    let mut last = snapshot(&app);
    loop {
        // Short ticks, so a changed period applies without waiting out the old one.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = app.stopped.cancelled() => return,
        }
        if last.elapsed() >= app.stats_period.period() {
            last = snapshot(&app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_deltas_per_second_and_per_event() {
        let p = StatsPeriod::default();
        let t0 = Instant::now();
        let totals = |xacts, assigned, wait, received, xact_time| {
            HashMap::from([("app".to_owned(), DbTotals { xacts, assigned, wait, received, sent: received * 2, xact_time })])
        };
        p.record(t0, totals(100, 100, 1000, 5000, 10_000));
        assert_eq!(p.averages("app"), Averages::default(), "no complete period yet");
        p.record(t0 + Duration::from_secs(10), totals(300, 150, 6000, 25_000, 50_000));
        let a = p.averages("app");
        assert_eq!(a.xact_count, 20);
        assert_eq!(a.server_assignment_count, 5);
        assert_eq!(a.recv, 2000);
        assert_eq!(a.sent, 4000);
        assert_eq!(a.xact_time, 200);
        assert_eq!(a.wait_time, 100);
        assert_eq!(p.averages("other"), Averages::default());
    }
}
