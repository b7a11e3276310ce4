//! Leasing and returning a session's server in transaction pooling: attaching an idle server
//! without a future when nothing needs waiting for (the usual case), the asynchronous lease
//! otherwise (waiting in the pool's queue while still reading the client), a lease that failed,
//! and the release at the end of a transaction — synchronous when nothing is read back or cleaned
//! up, through `checkin::check_in` otherwise.

use std::collections::VecDeque;

use bytes::BytesMut;
use tidepool_proto::{backend, sqlstate};
use tokio::io::AsyncReadExt;

use super::session::{Attached, End, Session, HIGH_WATER};
use super::tracking::Touched;
use crate::app::{LeaseError, ServerLease};
use crate::checkin;
use crate::net::Duplex;
use crate::stats::Outcome;

impl<S: Duplex> Session<S> {
    /// A lease could not be had: answer with an error, keep the session usable.
    pub(super) fn lease_failed(&mut self, tag: u8, e: LeaseError) -> Result<(), End> {
        tracing::warn!(error = %e, "could not lease a server connection");
        let (code, msg) = match &e {
            LeaseError::Params(f) => (f.code().to_owned(), f.message().to_owned()),
            LeaseError::Pool(crate::pool::PoolError::Timeout { .. }) => (sqlstate::TOO_MANY_CONNECTIONS.to_owned(), e.to_string()),
            _ => (sqlstate::CONNECTION_FAILURE.to_owned(), e.to_string()),
        };
        let outcome = match &e {
            LeaseError::Params(_) => Outcome::ClientError,
            LeaseError::Pool(crate::pool::PoolError::Timeout { .. }) => Outcome::Timeout,
            _ => Outcome::ServerError,
        };
        self.db.traffic.note_error(self.front, &msg);
        self.tx.end(&self.db.traffic, self.front, outcome);
        backend::error_response(&mut self.to_client, "ERROR", &code, &msg);
        match tag {
            b'Q' | b'S' | b'F' => backend::ready_for_query(&mut self.to_client, b'I'),
            _ => self.skip_until_sync = true,
        }
        Ok(())
    }

    /// Attaches `lease` at once if it carries this client's parameters already and no cancel
    /// is being delivered (the usual case); gives it back for [`Session::attach`] otherwise.
    pub(super) fn attach_now(&mut self, mut lease: ServerLease) -> Result<(), ServerLease> {
        if !crate::app::params_in_sync(&lease, &self.params) {
            return Err(lease);
        }
        if self.key.slot.try_set(Some(lease.cancel.clone())).is_err() {
            return Err(lease);
        }
        // What `Database::prepare_lease` would have done.
        lease.dirty |= self.db.config.reset_every_transaction;
        // Counted from when the client's message was read.
        self.db.traffic.record_wait(self.front, self.last_activity.elapsed());
        self.install(lease);
        Ok(())
    }

    /// Leases a server (`ready`: one taken from the pool already) and attaches it.
    pub(super) async fn attach(&mut self, ready: Option<ServerLease>) -> Result<(), LeaseError> {
        // Counted from when the client's message was read.
        let waited = self.last_activity;
        let lease = match ready {
            Some(lease) => self.db.prepare_lease(lease, &self.params).await,
            None => Box::pin(self.wait_for_lease()).await,
        };
        self.db.traffic.record_wait(self.front, waited.elapsed());
        let lease = lease?;
        if let Err(target) = self.key.slot.try_set(Some(lease.cancel.clone())) {
            Box::pin(self.key.slot.set(target)).await;
        }
        self.install(lease);
        Ok(())
    }

    fn install(&mut self, lease: ServerLease) {
        self.server = Some(Box::new(Attached {
            lease,
            to_server: BytesMut::with_capacity(1024),
            pending: 0,
            unsynced: false,
            status: b'I',
            queue: VecDeque::new(),
            copy_in: None,
            needs_flush: false,
            touched: Touched::default(),
            keep: false,
        }));
    }

    async fn wait_for_lease(&mut self) -> Result<ServerLease, LeaseError> {
        let lease_fut = self.db.lease_with(&self.params);
        let mut lease_fut = std::pin::pin!(lease_fut);
        let lease = loop {
            // Backpressure: a waiting client may queue a little, not its whole pipeline.
            if self.crbuf.len() >= HIGH_WATER {
                break lease_fut.await?;
            }
            tokio::select! {
                r = &mut lease_fut => break r?,
                n = self.client.read_buf(&mut self.crbuf) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        // The waiter left: dropping the future takes it out of the queue.
                        return Err(LeaseError::Upstream(crate::upstream::UpstreamError::Closed));
                    }
                }
            }
        };
        Ok(lease)
    }

    /// [`Session::release`] without a future, when nothing needs waiting for: no session state
    /// to read back, no cancel being delivered, nothing to run on the server. False: nothing was
    /// done, use `release`.
    pub(super) fn release_now(&mut self) -> bool {
        let max_prepared = self.db.config.max_prepared_statements;
        let Some(a) = self.server.as_ref() else { return false };
        if self.extra.is_some()
            || a.touched.any()
            || !checkin::returns_at_once(&a.lease, checkin::Held::idle(a.status), checkin::Mode::Transaction, max_prepared)
        {
            return false;
        }
        if self.key.slot.try_set(None).is_err() {
            return false;
        }
        let Some(a) = self.server.take() else { return false };
        self.drop_idle_buffers();
        a.lease.release();
        self.app.metrics.transactions.inc();
        self.db.xacts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Between transactions a client holds no read buffer and no large write buffer.
    fn drop_idle_buffers(&mut self) {
        if self.crbuf.is_empty() {
            self.crbuf = BytesMut::new();
        }
        if self.to_client.is_empty() && self.to_client.capacity() > 1024 {
            self.to_client = BytesMut::new();
        }
    }

    /// Returns the server to the pool after resetting what the client left behind.
    pub(super) async fn release(&mut self) {
        if self.extra.is_some() || self.server.as_ref().is_some_and(|a| a.touched.any()) {
            // Boxed: the read-back query's state is large and most transactions need none.
            let keep = Box::pin(self.after_transaction()).await;
            if let Some(a) = self.server.as_mut().filter(|_| keep) {
                a.keep = true;
                return;
            }
        }
        let Some(a) = self.server.take() else { return };
        if let Err(target) = self.key.slot.try_set(None) {
            Box::pin(self.key.slot.set(target)).await;
        }
        self.drop_idle_buffers();
        let held = checkin::Held::idle(a.status);
        if checkin::check_in(a.lease, held, checkin::Mode::Transaction, self.db.config.max_prepared_statements).await == checkin::Outcome::Returned {
            self.app.metrics.transactions.inc();
            self.db.xacts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
