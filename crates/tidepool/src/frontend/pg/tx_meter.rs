//! Per-transaction measurement of a Postgres-protocol session (wire or WebSocket): when a
//! transaction starts and ends, its outcome and its bytes, recorded into `crate::stats`.

use tokio::time::Instant;

use crate::stats::{DbTraffic, Front, Outcome};

/// Measures one transaction: from the client's first message to the server's idle
/// ReadyForQuery (or the session's end).
#[derive(Default)]
pub(super) struct TxMeter {
    start: Option<Instant>,
    /// When the previous transaction ended: where a pipelined one (whose messages arrived
    /// before that end) starts.
    last_end: Option<Instant>,
    outcome: Outcome,
    received: u64,
    sent: u64,
}

impl TxMeter {
    /// A client message arrived (read at `now`): starts the transaction's clock if it is not running.
    pub fn client_message(&mut self, len: usize, now: Instant) {
        if self.start.is_none() {
            self.start = Some(now);
        }
        self.received += len as u64;
    }

    /// A server message was relayed; an error makes the transaction's outcome at least `error`.
    pub fn server_message(&mut self, len: usize, error: Option<Outcome>) {
        self.sent += len as u64;
        if let Some(e) = error {
            self.outcome = self.outcome.max(e);
        }
    }

    /// The server reported idle (ReadyForQuery 'I'): a transaction is over. Each such answer
    /// ends one, pipelined ones too (their clock starts where the previous one ended). `now`:
    /// when the answer was read.
    pub fn ready(&mut self, traffic: &DbTraffic, front: Front, now: Instant) {
        let start = self.start.or(self.last_end).unwrap_or(now);
        self.record(traffic, front, Outcome::Ok, now - start);
        self.last_end = Some(now);
    }

    /// The transaction ended without the server's answer (lease failed, session over): recorded
    /// if one was running.
    pub fn end(&mut self, traffic: &DbTraffic, front: Front, outcome: Outcome) {
        if let Some(start) = self.start {
            self.record(traffic, front, outcome, start.elapsed());
        }
    }

    fn record(&mut self, traffic: &DbTraffic, front: Front, outcome: Outcome, took: std::time::Duration) {
        traffic.record_request(front, self.outcome.max(outcome), took);
        traffic.record_bytes(front, self.received, self.sent);
        *self = TxMeter { last_end: self.last_end, ..TxMeter::default() };
    }
}
