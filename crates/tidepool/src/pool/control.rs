//! Run-time control of a pool, for operations (reload and the admin console):
//!
//! - **Resize** ([`Pool::update`]): growing adds permits; shrinking forgets the permits that are
//!   free and records the rest as a debt that leases pay back when they end, so a surplus
//!   connection is closed as it is returned, never in the middle of a transaction. The pool never
//!   has more than `size` connections once the debt is paid, and never more than the old size
//!   meanwhile. A pool resized while paused takes its new size at RESUME.
//! - **Pause** ([`Pool::pause`] / [`Pool::resume`]): a background acquisition of every permit,
//!   queued in the same fair semaphore as the clients, so it waits for the leases out to end
//!   (transactions finish) and every lease asked for later queues behind it, in order. Once it
//!   holds every permit, idle connections are closed. Queued waiters are held past `timeout` while
//!   the pool is paused (queued, not failed); RESUME drops the permits and they are served FIFO.
//! - **Generations** ([`Pool::reconnect`] / [`Pool::wait_close`]): every connection carries the
//!   tag of the generation it was opened in; RECONNECT starts a new one, so older connections are
//!   closed as they are returned (idle ones at once), and WAIT_CLOSE waits until none is left.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Inner, Manager, Pool, PoolSettings};

/// The generation a connection was opened in (alive while any of its connections is).
pub(super) type Tag = Arc<()>;

pub(super) struct Control {
    /// Permits still out on leases that are to be forgotten when they end (a shrink).
    debt: AtomicUsize,
    /// Mirrors `state.paused` for the hot paths.
    paused: AtomicBool,
    state: Mutex<PauseState>,
    generation: Mutex<Tag>,
    /// Generations replaced by RECONNECT whose connections may still be open.
    retired: Mutex<Vec<Weak<()>>>,
    /// Signalled when a pause completes or is lifted.
    changed: Notify,
    /// When the last pause was lifted.
    resumed_at: Mutex<Option<Instant>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            debt: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            state: Mutex::new(PauseState::default()),
            generation: Mutex::new(Arc::new(())),
            retired: Mutex::new(Vec::new()),
            changed: Notify::new(),
            resumed_at: Mutex::new(None),
        }
    }
}

#[derive(Default)]
struct PauseState {
    /// Every permit, once the pause completed.
    held: Option<OwnedSemaphorePermit>,
    /// The task acquiring them.
    task: Option<JoinHandle<()>>,
    /// Settings asked for by a reload while paused; applied at RESUME.
    pending: Option<PoolSettings>,
}

pub(super) enum AcquireError {
    Closed,
    Timeout,
}

/// Waits for a permit in FIFO order, at most `timeout` unless the pool is paused.
pub(super) async fn acquire(sem: &Arc<Semaphore>, control: &Control, timeout: Duration) -> Result<OwnedSemaphorePermit, AcquireError> {
    // A free permit is taken at once (no timer, no clock read). Permits a release frees go to
    // queued waiters first, so a free one means nobody is queued: FIFO order is kept.
    match sem.clone().try_acquire_owned() {
        Ok(p) => return Ok(p),
        Err(tokio::sync::TryAcquireError::Closed) => return Err(AcquireError::Closed),
        Err(tokio::sync::TryAcquireError::NoPermits) => {}
    }
    let fut = sem.clone().acquire_owned();
    tokio::pin!(fut);
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::select! {
            biased;
            r = &mut fut => return r.map_err(|_| AcquireError::Closed),
            () = tokio::time::sleep_until(deadline) => {
                if control.is_paused() {
                    // Held while paused: the same queue position, a fresh timeout.
                    deadline = Instant::now() + timeout;
                    continue;
                }
                // A waiter held by a pause gets its full timeout from the RESUME on.
                match *control.resumed_at.lock() {
                    Some(at) if at + timeout > deadline => deadline = at + timeout,
                    _ => return Err(AcquireError::Timeout),
                }
            }
        }
    }
}

impl Control {
    pub(super) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Takes one unit of resize debt, if any: the caller forgets its permit.
    pub(super) fn take_debt(&self) -> bool {
        self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok()
    }

    pub(super) fn tag(&self) -> Tag {
        self.generation.lock().clone()
    }

    pub(super) fn is_stale(&self, tag: &Tag) -> bool {
        !Arc::ptr_eq(tag, &*self.generation.lock())
    }

    /// Waits until `done` holds, re-checking whenever the pause state changes.
    async fn wait_for(&self, done: impl Fn() -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return;
            }
            changed.await;
        }
    }
}

impl<M: Manager> Inner<M> {
    /// Closes every idle connection.
    fn clear_idle(&self) {
        let n = std::mem::take(&mut *self.idle.lock()).len();
        self.stats.idle.set(0);
        self.stats.closed.inc_by(n as u64);
    }

    /// Closes idle connections beyond what `size` leaves room for next to the leases out.
    fn trim_idle(&self, size: usize) {
        let room = size.saturating_sub(self.stats.active.get().max(0) as usize);
        let mut idle = self.idle.lock();
        if idle.len() > room {
            let n = idle.len() - room;
            // The vector is a stack: the oldest-idle are at the front.
            idle.drain(..n);
            self.stats.idle.set(idle.len() as i64);
            self.stats.closed.inc_by(n as u64);
        }
    }

    fn resize(&self, new: PoolSettings) {
        let old = std::mem::replace(&mut *self.settings.lock(), new.clone());
        let c = &self.control;
        self.stats.size.set(i64::try_from(new.size).unwrap_or(i64::MAX));
        if let Some(b) = &self.budget {
            b.resize(new.size);
        }
        if new.size > old.size {
            let mut add = new.size - old.size;
            // Cancel outstanding debt first: those permits are simply kept.
            while add > 0 && c.take_debt() {
                add -= 1;
            }
            self.sem.add_permits(add);
        } else if new.size < old.size {
            let cut = old.size - new.size;
            let forgotten = self.sem.forget_permits(cut);
            c.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
            self.trim_idle(new.size);
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Applies new settings (reload): size up or down, timeouts and lifetimes from now on.
    pub fn update(&self, settings: PoolSettings) {
        let inner = &self.inner;
        let mut st = inner.control.state.lock();
        if inner.control.is_paused() {
            // The pause holds the old number of permits; resizing waits for RESUME.
            st.pending = Some(settings);
            return;
        }
        drop(st);
        inner.resize(settings);
    }

    pub fn is_paused(&self) -> bool {
        self.inner.control.is_paused()
    }

    /// Whether both handles are the same pool.
    pub fn same_as(&self, other: &Pool<M>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether a pause holds every permit (its leases all ended).
    pub fn is_fully_paused(&self) -> bool {
        self.inner.control.state.lock().held.is_some()
    }

    /// PAUSE: new leases queue from now on; the returned future completes once every lease out
    /// has ended and idle connections are closed. Dropping it leaves the pool pausing.
    pub fn pause(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        {
            let mut st = inner.control.state.lock();
            if !inner.control.is_paused() {
                inner.control.paused.store(true, Ordering::Release);
                inner.clear_idle();
                let size = inner.settings.lock().size;
                let (sem, weak) = (inner.sem.clone(), Arc::downgrade(&inner));
                st.task = Some(tokio::spawn(async move {
                    let Ok(permits) = sem.acquire_many_owned(u32::try_from(size).unwrap_or(u32::MAX)).await else { return };
                    let Some(inner) = weak.upgrade() else { return };
                    {
                        let mut st = inner.control.state.lock();
                        if !inner.control.is_paused() {
                            return;
                        }
                        st.held = Some(permits);
                    }
                    inner.clear_idle();
                    inner.control.changed.notify_waiters();
                }));
            }
        }
        async move {
            let c = &inner.control;
            c.wait_for(|| !c.is_paused() || c.state.lock().held.is_some() || inner.sem.is_closed()).await;
        }
    }

    /// RESUME: lifts a pause (complete or not); queued waiters are served in order.
    pub fn resume(&self) {
        let inner = &self.inner;
        let (held, pending) = {
            let mut st = inner.control.state.lock();
            inner.control.paused.store(false, Ordering::Release);
            *inner.control.resumed_at.lock() = Some(Instant::now());
            if let Some(t) = st.task.take() {
                t.abort();
            }
            (st.held.take(), st.pending.take())
        };
        drop(held);
        if let Some(s) = pending {
            inner.resize(s);
        }
        inner.control.changed.notify_waiters();
    }

    /// RECONNECT: connections opened so far are closed as they are returned (idle ones now);
    /// new ones are opened as needed.
    pub fn reconnect(&self) {
        let c = &self.inner.control;
        let old = std::mem::replace(&mut *c.generation.lock(), Arc::new(()));
        c.retired.lock().push(Arc::downgrade(&old));
        drop(old);
        self.inner.clear_idle();
    }

    /// Connections from before the last RECONNECT still open.
    pub fn retiring(&self) -> usize {
        let mut retired = self.inner.control.retired.lock();
        retired.retain(|w| w.strong_count() > 0);
        retired.iter().map(Weak::strong_count).sum()
    }

    /// WAIT_CLOSE: completes once every connection from before the last RECONNECT is closed.
    pub fn wait_close(&self) -> impl Future<Output = ()> + Send + 'static {
        let pool = self.clone();
        async move {
            while pool.retiring() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Closes the idle connections now (KILL).
    pub fn close_idle(&self) {
        self.inner.clear_idle();
    }
}
