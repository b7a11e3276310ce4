//! Leasing for HTTP requests: every HTTP front end runs its statements on a pool lease whose
//! session is pinned to the settings JSON encoders expect, under a per-request timeout that
//! cancels the query upstream, and leaves the connection clean for the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use crate::app::{Database, LeaseError, ServerLease};
use crate::frontend::pg::state::leaves_session_state;
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

pub async fn lease(db: &Database) -> Result<ServerLease, LeaseError> {
    db.lease_with(pinned_params()).await
}

/// Marks the connection dirty if `sql` may leave session state, so it is reset before reuse.
pub fn note_sql(conn: &mut ServerConn, sql: &str) {
    if leaves_session_state(sql) {
        conn.dirty = true;
    }
}

/// Runs `work` on `lease` within `timeout`. On timeout the running query is cancelled upstream
/// and the connection is closed; otherwise it is rolled back if left in a transaction, reset if
/// dirty, and returned to the pool.
pub async fn run_bounded<T, F>(mut lease: ServerLease, timeout: Duration, work: F) -> Result<T, HttpLeaseError>
where
    F: for<'a> FnOnce(&'a mut ServerLease) -> std::pin::Pin<Box<dyn Future<Output = Result<T, UpstreamError>> + Send + 'a>>,
{
    let target = lease.cancel.clone();
    let r = tokio::time::timeout(timeout, work(&mut lease)).await;
    match r {
        Err(_) => {
            tokio::spawn(async move {
                let _ = crate::upstream::send_cancel(&target, Duration::from_secs(5)).await;
            });
            lease.discard();
            Err(HttpLeaseError::Timeout(timeout))
        }
        Ok(result) => {
            finish(lease).await;
            Ok(result?)
        }
    }
}

/// Leaves a lease clean: ROLLBACK an open transaction, DISCARD ALL if dirty, else close it.
pub async fn finish(mut lease: ServerLease) {
    if lease.broken {
        return lease.discard();
    }
    if lease.tx_status != b'I' && lease.simple("ROLLBACK").await.is_err() {
        return lease.discard();
    }
    match lease.reset_if_dirty().await {
        Ok(()) => lease.release(),
        Err(_) => lease.discard(),
    }
}
