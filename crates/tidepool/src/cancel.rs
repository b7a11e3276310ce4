//! Cancel keys: every client gets a random (pid, secret) pair of its own; a CancelRequest carrying
//! it is forwarded only to the upstream backend that client holds at that moment. The slot's lock
//! is held while the cancel is delivered and taken before a lease is returned, so a late cancel
//! can never reach a backend that already serves another client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::upstream::{send_cancel, CancelTarget};

#[derive(Default)]
pub struct CancelSlot {
    target: tokio::sync::Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
    pub async fn set(&self, target: Option<CancelTarget>) {
        if let Err(target) = self.try_set(target) {
            *self.target.lock().await = target;
        }
    }

    /// Sets the target if no cancel is being delivered right now (the per-transaction path: no
    /// wait queue, no future); gives it back otherwise, for [`CancelSlot::set`].
    pub fn try_set(&self, target: Option<CancelTarget>) -> Result<(), Option<CancelTarget>> {
        match self.target.try_lock() {
            Ok(mut slot) => {
                *slot = target;
                Ok(())
            }
            Err(_) => Err(target),
        }
    }
}

/// Sends a cancel for a key unknown here to the other nodes of a cluster (`crate::cluster`).
pub type ForwardCancel = Arc<dyn Fn(i32, i32) + Send + Sync>;

pub struct CancelRegistry {
    map: Mutex<HashMap<i32, (i32, Arc<CancelSlot>)>>,
    inflight: Semaphore,
    forward: std::sync::OnceLock<ForwardCancel>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        CancelRegistry { map: Mutex::default(), inflight: Semaphore::new(64), forward: Default::default() }
    }
}

/// A client's registration; unregisters on drop.
pub struct CancelKey {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.map.lock().remove(&self.pid);
    }
}

impl CancelRegistry {
    pub fn register(self: &Arc<Self>) -> CancelKey {
        let mut rng = rand::thread_rng();
        let slot = Arc::new(CancelSlot::default());
        let mut map = self.map.lock();
        loop {
            let pid = rng.gen_range(1..i32::MAX);
            if map.contains_key(&pid) {
                continue;
            }
            let secret = rng.gen();
            map.insert(pid, (secret, slot.clone()));
            return CancelKey { registry: self.clone(), pid, secret, slot };
        }
    }

    /// In a cluster: where cancels for keys unknown here go (set once).
    pub fn set_forward(&self, forward: ForwardCancel) {
        let _ = self.forward.set(forward);
    }

    /// Forwards a cancel if the key matches a client that holds a backend now; a key unknown
    /// here goes to the other nodes of the cluster, if any (they check it the same way).
    pub async fn cancel(&self, pid: i32, secret: i32) {
        if !self.map.lock().contains_key(&pid) {
            if let Some(forward) = self.forward.get() {
                forward(pid, secret);
            }
            return;
        }
        self.cancel_local(pid, secret).await;
    }

    /// Like [`CancelRegistry::cancel`], never forwarded (a cancel another node received).
    pub async fn cancel_local(&self, pid: i32, secret: i32) {
        let slot = {
            let map = self.map.lock();
            match map.get(&pid) {
                Some((s, slot)) if tidepool_proto::auth::ct_eq(&s.to_be_bytes(), &secret.to_be_bytes()) => slot.clone(),
                _ => return,
            }
        };
        let Ok(_permit) = self.inflight.try_acquire() else {
            tracing::warn!("too many cancel requests in flight; dropping one");
            return;
        };
        let guard = slot.target.lock().await;
        if let Some(target) = guard.as_ref() {
            if let Err(e) = send_cancel(target, Duration::from_secs(5)).await {
                tracing::warn!(error = %e, "could not forward cancel request");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
