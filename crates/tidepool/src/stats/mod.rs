//! Per-request latency figures: Prometheus histograms and counters per database and front end
//! (`wire`, `ws`, `sql`, `prisma`) for transaction/request duration, pool wait, outcomes and bytes,
//! plus the small in-memory history the dashboard draws (see [`history`]). Every label set is
//! created when the database is configured: recording is a few atomic operations, no allocation.

pub mod history;
pub mod period;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use history::History;

/// Upper bounds (seconds) of the duration and wait buckets.
pub const BUCKETS: [f64; 15] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The front end a client came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    Wire,
    Ws,
    Sql,
    Prisma,
}

impl Front {
    pub const ALL: [Front; 4] = [Front::Wire, Front::Ws, Front::Sql, Front::Prisma];

    pub fn name(self) -> &'static str {
        match self {
            Front::Wire => "wire",
            Front::Ws => "ws",
            Front::Sql => "sql",
            Front::Prisma => "prisma",
        }
    }
}

/// How a transaction (wire, ws) or request (sql, prisma) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Outcome {
    #[default]
    Ok,
    ClientError,
    ServerError,
    Timeout,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::ClientError, Outcome::ServerError, Outcome::Timeout];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
        }
    }

    /// The outcome a Postgres error with this SQLSTATE stands for: cancellations and timeouts
    /// (57014, 25P03, 57P05) are `timeout`; connection, resource, operator and internal errors
    /// (classes 08, 53, 57, 58, XX) are the server's; everything else is the client's.
    pub fn from_sqlstate(code: &str) -> Outcome {
        match code {
            "57014" | "25P03" | "57P05" => Outcome::Timeout,
            _ if ["08", "53", "57", "58", "XX"].iter().any(|c| code.starts_with(c)) => Outcome::ServerError,
            _ => Outcome::ClientError,
        }
    }

    /// The outcome an HTTP status stands for (408 and 504 are timeouts).
    pub fn from_status(status: u16) -> Outcome {
        match status {
            408 | 504 => Outcome::Timeout,
            s if s < 400 => Outcome::Ok,
            s if s < 500 => Outcome::ClientError,
            _ => Outcome::ServerError,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontLabels {
    database: String,
    front: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    database: String,
    front: String,
    outcome: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.into_iter())
}

/// The metric families, registered once; each database takes its label sets from them.
#[derive(Clone)]
pub struct Families {
    duration: HistFamily<FrontLabels>,
    wait: HistFamily<FrontLabels>,
    requests: Family<OutcomeLabels, Counter>,
    bytes_in: Family<FrontLabels, Counter>,
    bytes_out: Family<FrontLabels, Counter>,
    clients: Family<FrontLabels, Gauge>,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            duration: Family::new_with_constructor(histogram),
            wait: Family::new_with_constructor(histogram),
            requests: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            clients: Family::default(),
        }
    }
}

impl Families {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("request_duration_seconds", "Duration of a transaction (wire, ws) or request (sql, prisma)", self.duration.clone());
        registry.register("request_pool_wait_seconds", "Time a transaction or request waited for a pooled connection", self.wait.clone());
        registry.register("requests", "Transactions (wire, ws) and requests (sql, prisma) by outcome", self.requests.clone());
        registry.register("client_bytes_received", "Protocol bytes received from clients (wire, ws)", self.bytes_in.clone());
        registry.register("client_bytes_sent", "Protocol bytes sent to clients (wire, ws)", self.bytes_out.clone());
        registry.register("front_clients", "Connected sessions (wire, ws) or requests in progress (sql, prisma)", self.clients.clone());
    }
}

/// One front end's metrics within a database.
struct FrontTraffic {
    duration: Histogram,
    wait: Histogram,
    outcomes: [Counter; 4],
    bytes_in: Counter,
    bytes_out: Counter,
    clients: Gauge,
    /// Microseconds spent in transactions/requests and waiting for a connection (`SHOW STATS`).
    time_us: AtomicU64,
    wait_us: AtomicU64,
}

/// Running totals of one front end (or all), in the units PgBouncer's `SHOW STATS` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Finished transactions (wire, ws) or requests (sql, prisma), any outcome.
    pub requests: u64,
    pub time_us: u64,
    pub wait_us: u64,
    pub received: u64,
    pub sent: u64,
}

/// The traffic figures of one database: what front ends record into.
pub struct DbTraffic {
    fronts: [FrontTraffic; 4],
    /// Requests per duration bucket (last slot: above the largest bound), all front ends.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    errors: AtomicU64,
    pub history: History,
}

impl DbTraffic {
    pub fn new(families: &Families, database: &str) -> Arc<DbTraffic> {
        let front = |f: Front| {
            let labels = FrontLabels { database: database.to_owned(), front: f.name().to_owned() };
            let outcome = |o: Outcome| {
                families
                    .requests
                    .get_or_create(&OutcomeLabels { database: database.to_owned(), front: f.name().to_owned(), outcome: o.name().to_owned() })
                    .clone()
            };
            FrontTraffic {
                duration: families.duration.get_or_create(&labels).clone(),
                wait: families.wait.get_or_create(&labels).clone(),
                outcomes: Outcome::ALL.map(outcome),
                bytes_in: families.bytes_in.get_or_create(&labels).clone(),
                bytes_out: families.bytes_out.get_or_create(&labels).clone(),
                clients: families.clients.get_or_create(&labels).clone(),
                time_us: AtomicU64::new(0),
                wait_us: AtomicU64::new(0),
            }
        };
        Arc::new(DbTraffic {
            fronts: Front::ALL.map(front),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            history: History::default(),
        })
    }

    fn front(&self, f: Front) -> &FrontTraffic {
        &self.fronts[f as usize]
    }

    /// One finished transaction (wire, ws) or request (sql, prisma).
    pub fn record_request(&self, front: Front, outcome: Outcome, duration: Duration) {
        let t = self.front(front);
        let secs = duration.as_secs_f64();
        t.duration.observe(secs);
        t.outcomes[outcome as usize].inc();
        t.time_us.fetch_add(duration.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        let slot = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Time spent waiting for a pooled connection (successful or not).
    pub fn record_wait(&self, front: Front, wait: Duration) {
        let t = self.front(front);
        t.wait.observe(wait.as_secs_f64());
        t.wait_us.fetch_add(wait.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Protocol bytes exchanged with a client.
    pub fn record_bytes(&self, front: Front, received: u64, sent: u64) {
        let t = self.front(front);
        if received > 0 {
            t.bytes_in.inc_by(received);
        }
        if sent > 0 {
            t.bytes_out.inc_by(sent);
        }
    }

    /// A client-safe error message for the dashboard's recent errors.
    pub fn note_error(&self, front: Front, message: &str) {
        self.history.note_error(front, message);
    }

    /// Counts a connected session or request in progress until the guard is dropped.
    pub fn client(self: &Arc<Self>, front: Front) -> ClientGuard {
        self.front(front).clients.inc();
        ClientGuard { traffic: self.clone(), front }
    }

    /// Connected sessions / requests in progress per front end.
    pub fn clients(&self) -> [(Front, i64); 4] {
        Front::ALL.map(|f| (f, self.front(f).clients.get()))
    }

    /// Finished requests per outcome, one front end.
    pub fn outcomes(&self, front: Front) -> [(Outcome, u64); 4] {
        Outcome::ALL.map(|o| (o, self.front(front).outcomes[o as usize].get()))
    }

    /// Running totals of one front end.
    pub fn front_totals(&self, front: Front) -> Totals {
        let t = self.front(front);
        Totals {
            requests: t.outcomes.iter().map(Counter::get).sum(),
            time_us: t.time_us.load(Ordering::Relaxed),
            wait_us: t.wait_us.load(Ordering::Relaxed),
            received: t.bytes_in.get(),
            sent: t.bytes_out.get(),
        }
    }

    /// Running totals of every front end together.
    pub fn all_totals(&self) -> Totals {
        Front::ALL.iter().map(|f| self.front_totals(*f)).fold(Totals::default(), |a, b| Totals {
            requests: a.requests + b.requests,
            time_us: a.time_us.saturating_add(b.time_us),
            wait_us: a.wait_us.saturating_add(b.wait_us),
            received: a.received + b.received,
            sent: a.sent + b.sent,
        })
    }

    /// (requests per duration bucket, requests that did not end `ok`) since start.
    pub fn totals(&self) -> ([u64; BUCKETS.len() + 1], u64) {
        (std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)), self.errors.load(Ordering::Relaxed))
    }
}

/// See [`DbTraffic::client`].
pub struct ClientGuard {
    traffic: Arc<DbTraffic>,
    front: Front,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.traffic.front(self.front).clients.dec();
    }
}

/// Measures one HTTP request: started on arrival, attached to a database once the request is
/// authorized (requests refused before that belong to no database and are not counted).
pub struct RequestMeter {
    front: Front,
    start: tokio::time::Instant,
    client: Option<ClientGuard>,
}

impl RequestMeter {
    pub fn start(front: Front) -> RequestMeter {
        RequestMeter { front, start: tokio::time::Instant::now(), client: None }
    }

    pub fn attach(&mut self, traffic: &Arc<DbTraffic>) {
        if self.client.is_none() {
            self.client = Some(traffic.client(self.front));
        }
    }

    /// Records the request with the outcome its HTTP status stands for.
    pub fn finish(self, status: u16, error: Option<&str>) {
        let Some(guard) = self.client else { return };
        let outcome = Outcome::from_status(status);
        guard.traffic.record_request(self.front, outcome, self.start.elapsed());
        if outcome != Outcome::Ok {
            guard.traffic.note_error(self.front, error.unwrap_or("request failed"));
        }
    }
}

/// A client-safe error message attached to an HTTP error response (read by [`RequestMeter`]).
#[derive(Clone)]
pub struct ErrorNote(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_by_sqlstate_and_status() {
        assert_eq!(Outcome::from_sqlstate("42P01"), Outcome::ClientError);
        assert_eq!(Outcome::from_sqlstate("57014"), Outcome::Timeout);
        assert_eq!(Outcome::from_sqlstate("08006"), Outcome::ServerError);
        assert_eq!(Outcome::from_sqlstate("53300"), Outcome::ServerError);
        assert_eq!(Outcome::from_status(200), Outcome::Ok);
        assert_eq!(Outcome::from_status(400), Outcome::ClientError);
        assert_eq!(Outcome::from_status(504), Outcome::Timeout);
        assert_eq!(Outcome::from_status(503), Outcome::ServerError);
    }

    #[test]
    fn records_into_the_labelled_series() {
        let families = Families::default();
        let mut registry = Registry::default();
        families.register(&mut registry);
        let t = DbTraffic::new(&families, "app");
        t.record_request(Front::Sql, Outcome::ClientError, Duration::from_millis(3));
        t.record_request(Front::Sql, Outcome::Ok, Duration::from_secs(60));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"requests_total{database="app",front="sql",outcome="client_error"} 1"#), "{text}");
        assert!(text.contains(r#"request_duration_seconds_count{database="app",front="sql"} 2"#), "{text}");
        let totals = t.front_totals(Front::Sql);
        assert_eq!((totals.requests, totals.time_us), (2, 60_003_000));
        assert_eq!(t.all_totals().requests, 2);
        let (buckets, errors) = t.totals();
        assert_eq!((buckets[3], buckets[BUCKETS.len()], errors), (1, 1, 1));
    }
}
