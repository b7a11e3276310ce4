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

/// The backend a client holds now. A cancel is delivered with the slot marked busy, and setting
/// the slot waits until no delivery is under way (what an async mutex held across the delivery
/// gave, with a plain lock on the per-transaction path instead of the mutex's wait queue).
#[derive(Default)]
pub struct CancelSlot {
    state: Mutex<SlotState>,
    /// Signalled when a delivery ends.
    delivered: tokio::sync::Notify,
}

#[derive(Default)]
struct SlotState {
    target: Option<CancelTarget>,
    /// A cancel is being delivered to `target`.
    delivering: bool,
}

impl CancelSlot {
    pub async fn set(&self, mut target: Option<CancelTarget>) {
        loop {
            // Registered before the check: a delivery ending in between still wakes this.
            let ended = self.delivered.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            match self.try_set(target) {
                Ok(()) => return,
                Err(t) => target = t,
            }
            ended.await;
        }
    }

    /// Sets the target if no cancel is being delivered right now (the per-transaction path: no
    /// wait, no future); gives it back otherwise, for [`CancelSlot::set`].
    pub fn try_set(&self, target: Option<CancelTarget>) -> Result<(), Option<CancelTarget>> {
        let mut state = self.state.lock();
        if state.delivering {
            return Err(target);
        }
        state.target = target;
        Ok(())
    }

    /// Waits until no other delivery is under way, then marks the slot busy and returns its
    /// target (`None`: the client holds no backend now; the slot is left as it was).
    async fn begin_delivery(&self) -> Option<Delivery<'_>> {
        loop {
            let ended = self.delivered.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            {
                let mut state = self.state.lock();
                if !state.delivering {
                    let target = state.target.clone()?;
                    state.delivering = true;
                    return Some(Delivery { slot: self, target });
                }
            }
            ended.await;
        }
    }
}

/// A cancel being delivered; the slot is free again when this is dropped (also if the delivering
/// future is dropped half-way).
struct Delivery<'a> {
    slot: &'a CancelSlot,
    target: CancelTarget,
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        self.slot.state.lock().delivering = false;
        self.slot.delivered.notify_waiters();
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
        let Some(delivery) = slot.begin_delivery().await else { return };
        if let Err(e) = send_cancel(&delivery.target, Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "could not forward cancel request");
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        CancelTarget { host: "127.0.0.1".into(), port: 1, pid, secret: 0 }
    }

    #[tokio::test]
    async fn setting_waits_for_a_delivery_under_way() {
        let slot = Arc::new(CancelSlot::default());
        assert!(slot.begin_delivery().await.is_none(), "no backend, nothing to deliver");
        slot.try_set(Some(target(1))).expect("free");
        let delivery = slot.begin_delivery().await.expect("a target");
        assert_eq!(delivery.target.pid, 1);
        assert_eq!(slot.try_set(None), Err(None), "busy while delivering");
        let setter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.set(Some(target(2))).await }
        });
        tokio::task::yield_now().await;
        assert!(!setter.is_finished());
        drop(delivery);
        tokio::time::timeout(Duration::from_secs(30), setter).await.expect("woken").expect("joined");
        assert_eq!(slot.begin_delivery().await.expect("a target").target.pid, 2);
    }
}
