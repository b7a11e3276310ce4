//! The one check-in policy: how a leased server connection goes back to its pool, for every front
//! end (wire and WebSocket sessions, Neon `/sql`, the Prisma API). [`plan`] decides, as a pure
//! function of what the front end knows about the connection, whether it can be reused and what
//! must run first (ROLLBACK, DISCARD ALL, DEALLOCATE ALL); [`check_in`] carries the plan out and
//! [`cancel_and_discard`] is the one way to give up on a connection that is mid-query.

use std::time::Duration;

use crate::app::ServerLease;
use crate::upstream::{send_cancel, ServerConn, UpstreamError};

/// Whether `sql` may leave state on the server beyond its transaction (so the connection must be
/// reset before another client gets it). The text goes through `tidepool-sql`'s lexer, statement
/// by statement; anything it cannot classify counts as state-changing. `utf8_client`: the session's
/// `client_encoding` is UTF-8, where a backslash can never be the second byte of a character.
pub fn leaves_session_state(sql: &[u8], utf8_client: bool) -> bool {
    let opts = tidepool_sql::Options { standard_conforming_strings: None, backslash_safe_encoding: utf8_client };
    tidepool_sql::leaves_session_state_with(sql, opts)
}

/// Marks `conn` dirty if `sql` (sent by tidepool on a client's behalf, UTF-8) may leave session
/// state, so [`check_in`] resets it.
pub fn note_sql(conn: &mut ServerConn, sql: &str) {
    if leaves_session_state(sql.as_bytes(), true) {
        conn.dirty = true;
    }
}

/// How the connection was lent out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lent for one transaction (or one HTTP request): session state must not survive it.
    Transaction,
    /// Lent for a whole client session: everything the client did is reset.
    Session,
}

/// What the front end knows about a connection it is giving back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Answers are still owed, bytes were not sent, a COPY is open or an extended-protocol batch
    /// has no Sync yet: the server is (or may be) working for the client.
    pub busy: bool,
    /// Transaction status from the last ReadyForQuery ('I', 'T' or 'E').
    pub tx_status: u8,
}

impl Held {
    /// A connection whose every message was answered.
    pub fn idle(tx_status: u8) -> Held {
        Held { busy: false, tx_status }
    }
}

/// What [`check_in`] will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Close the connection; `cancel` first stops what the backend is running.
    Discard { cancel: bool },
    /// Return it to the pool after the listed clean-ups.
    Reuse { rollback: bool, discard_all: bool, deallocate_all: bool },
}

/// Decides how a connection goes back. `dirty`: a client may have left session state;
/// `prepared`/`max_prepared`: tidepool's server-side statements and their per-server cap.
pub fn plan(held: Held, broken: bool, dirty: bool, mode: Mode, prepared: usize, max_prepared: usize) -> Plan {
    if broken {
        return Plan::Discard { cancel: false };
    }
    if held.busy {
        return Plan::Discard { cancel: true };
    }
    let discard_all = dirty || mode == Mode::Session;
    Plan::Reuse {
        rollback: held.tx_status != b'I',
        discard_all,
        // DISCARD ALL drops the statements anyway.
        deallocate_all: !discard_all && prepared > max_prepared,
    }
}

/// How a check-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Returned,
    Discarded,
}

/// Gives a connection back to its pool according to [`plan`]. Any failure of a clean-up closes
/// the connection instead: a connection of unknown state is never reused.
pub async fn check_in(lease: ServerLease, held: Held, mode: Mode, max_prepared: usize) -> Outcome {
    match plan(held, lease.broken, lease.dirty, mode, lease.prepared.len(), max_prepared) {
        Plan::Discard { cancel } => {
            if cancel {
                cancel_and_discard(lease);
            } else {
                lease.discard();
            }
            Outcome::Discarded
        }
        // Nothing to run: back at once (the clean-up future is not even built).
        Plan::Reuse { rollback: false, discard_all: false, deallocate_all: false } if lease.tx_status == b'I' => {
            lease.release();
            Outcome::Returned
        }
        // Boxed: most check-ins need none of it.
        Plan::Reuse { rollback, discard_all, deallocate_all } => Box::pin(clean_and_return(lease, rollback, discard_all, deallocate_all)).await,
    }
}

/// Whether [`check_in`] would return `lease` to its pool at once, with nothing to run first (a
/// caller may then call [`ServerLease::release`] itself, without a future).
pub fn returns_at_once(lease: &ServerLease, held: Held, mode: Mode, max_prepared: usize) -> bool {
    lease.tx_status == b'I'
        && plan(held, lease.broken, lease.dirty, mode, lease.prepared.len(), max_prepared)
            == Plan::Reuse { rollback: false, discard_all: false, deallocate_all: false }
}

/// Runs a [`Plan::Reuse`]'s clean-ups, then returns the connection (or closes it if one fails).
async fn clean_and_return(mut lease: ServerLease, rollback: bool, discard_all: bool, deallocate_all: bool) -> Outcome {
    let clean = async {
        if rollback {
            lease.simple("ROLLBACK").await?;
        }
        if discard_all {
            lease.dirty = true;
            lease.reset_if_dirty().await?;
        }
        if deallocate_all {
            lease.simple("DEALLOCATE ALL").await?;
            lease.prepared.clear();
        }
        if lease.tx_status != b'I' {
            return Err(UpstreamError::Closed);
        }
        Ok::<_, UpstreamError>(())
    };
    match clean.await {
        Ok(()) => {
            lease.release();
            Outcome::Returned
        }
        Err(e) => {
            tracing::warn!(error = %e, "server clean-up failed; closing it");
            lease.discard();
            Outcome::Discarded
        }
    }
}

/// Closes a connection that may be running a query, after asking the server (in a tracked task,
/// so shutdown waits for it) to cancel that query.
pub fn cancel_and_discard(lease: ServerLease) {
    let target = lease.cancel.clone();
    let tracker = lease.manager().tracker.clone();
    lease.discard();
    tracker.spawn(async move {
        let _ = send_cancel(&target, Duration::from_secs(5)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Mode = Mode::Transaction;

    #[test]
    fn clean_idle_connection_is_reused_as_is() {
        assert_eq!(plan(Held::idle(b'I'), false, false, T, 0, 10), Plan::Reuse { rollback: false, discard_all: false, deallocate_all: false });
    }

    #[test]
    fn broken_or_busy_connections_are_never_reused() {
        assert_eq!(plan(Held::idle(b'I'), true, false, T, 0, 10), Plan::Discard { cancel: false });
        let busy = Held { busy: true, tx_status: b'I' };
        assert_eq!(plan(busy, false, false, T, 0, 10), Plan::Discard { cancel: true });
        assert_eq!(plan(Held { busy: true, tx_status: b'T' }, false, true, Mode::Session, 0, 10), Plan::Discard { cancel: true });
    }

    #[test]
    fn open_or_failed_transactions_are_rolled_back() {
        for status in [b'T', b'E'] {
            let Plan::Reuse { rollback, .. } = plan(Held::idle(status), false, false, T, 0, 10) else { panic!("reused") };
            assert!(rollback);
        }
    }

    #[test]
    fn session_state_is_discarded() {
        let p = plan(Held::idle(b'I'), false, true, T, 0, 10);
        assert_eq!(p, Plan::Reuse { rollback: false, discard_all: true, deallocate_all: false });
        // Session mode: whatever the client did goes.
        let p = plan(Held::idle(b'I'), false, false, Mode::Session, 0, 10);
        assert_eq!(p, Plan::Reuse { rollback: false, discard_all: true, deallocate_all: false });
    }

    #[test]
    fn too_many_statements_are_deallocated_unless_discarded() {
        assert_eq!(plan(Held::idle(b'I'), false, false, T, 11, 10), Plan::Reuse { rollback: false, discard_all: false, deallocate_all: true });
        assert_eq!(plan(Held::idle(b'I'), false, true, T, 11, 10), Plan::Reuse { rollback: false, discard_all: true, deallocate_all: false });
    }
}
