//! Leasing for HTTP requests: every HTTP front end runs its statements on a pool lease whose
//! session is pinned to the settings JSON encoders expect, under a per-request timeout that
//! cancels the query upstream, and leaves the connection clean for the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use crate::app::{LeaseError, ServerLease};
use crate::checkin;
use crate::stats::Front;
use crate::target::Target;
use crate::upstream::{ServerConn, UpstreamError};

/// Session settings every HTTP lease runs with.
pub fn pinned_params() -> &'static HashMap<String, String> {
    static P: OnceLock<HashMap<String, String>> = OnceLock::new();
    P.get_or_init(|| {
        [("timezone", "UTC"), ("datestyle", "ISO, MDY"), ("intervalstyle", "postgres"), ("bytea_output", "hex"), ("client_encoding", "UTF8")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HttpLeaseError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("query timed out after {0:?}; it was cancelled")]
    Timeout(Duration),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Leases from the pool of `target` (the API key's role, or the database's own user); the wait
/// is recorded under `front`.
pub async fn lease(target: &Target, front: Front) -> Result<ServerLease, LeaseError> {
    let start = tokio::time::Instant::now();
    let r = target.lease_with(pinned_params()).await;
    target.db.traffic.record_wait(front, start.elapsed());
    r
}

/// Marks the connection dirty if `sql` may leave session state, so it is reset before reuse
/// (HTTP leases are pinned to UTF-8).
pub fn note_sql(conn: &mut ServerConn, sql: &str) {
    checkin::note_sql(conn, sql);
}

/// Runs `work` on `lease` within `timeout`. On timeout the running query is cancelled upstream
/// and the connection is closed; otherwise it goes back through the check-in policy.
pub async fn run_bounded<T, F>(mut lease: ServerLease, timeout: Duration, work: F) -> Result<T, HttpLeaseError>
where
    F: for<'a> FnOnce(&'a mut ServerLease) -> std::pin::Pin<Box<dyn Future<Output = Result<T, UpstreamError>> + Send + 'a>>,
{
    let r = tokio::time::timeout(timeout, work(&mut lease)).await;
    match r {
        Err(_) => {
            checkin::cancel_and_discard(lease);
            Err(HttpLeaseError::Timeout(timeout))
        }
        Ok(result) => {
            finish(lease).await;
            Ok(result?)
        }
    }
}

/// Gives a lease back after an HTTP request: every message was answered (tidepool's own query
/// runner reads each answer), so only an open transaction and session state need undoing.
pub async fn finish(lease: ServerLease) {
    let held = checkin::Held::idle(lease.tx_status);
    checkin::check_in(lease, held, checkin::Mode::Transaction, usize::MAX).await;
}
