//! A wake-gated future: [`Armed`] polls the future it wraps (a cancellation or shutdown signal,
//! polled on every turn of a session's loop) only when that future's own waker fired, or the
//! task's waker changed. A signal that has registered its waker needs no polling until it wakes
//! the task: without the gate, every turn paid for the signal's locks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// The waker handed to the inner future: notes that it fired, then wakes the task.
struct Flag {
    fired: AtomicBool,
    task: Waker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

/// Wraps `F` (pinned by the caller: `Pin<&mut _>`); see the module note.
pub(super) struct Armed<F> {
    inner: F,
    /// The flag whose waker the inner future holds, once it was first polled.
    flag: Option<Arc<Flag>>,
}

impl<F: Future + Unpin> Armed<F> {
    pub(super) fn new(inner: F) -> Self {
        Armed { inner, flag: None }
    }

    /// Polls the inner future if it may have become ready since it was last polled.
    pub(super) fn poll_armed(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        let flag = match &self.flag {
            Some(flag) if flag.task.will_wake(cx.waker()) => {
                if !flag.fired.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                flag.clone()
            }
            // First poll, or the task's waker changed: the inner future must see the new one.
            _ => self.flag.insert(Arc::new(Flag { fired: AtomicBool::new(false), task: cx.waker().clone() })).clone(),
        };
        Pin::new(&mut self.inner).poll(&mut Context::from_waker(&Waker::from(flag)))
    }
}

impl<F: Future + Unpin> Future for Armed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.get_mut().poll_armed(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn fires_once_cancelled_and_not_before() {
        let token = CancellationToken::new();
        let mut armed = Armed::new(Box::pin(token.clone().cancelled_owned()));
        let polled = std::future::poll_fn(|cx| Poll::Ready(armed.poll_armed(cx).is_ready())).await;
        assert!(!polled);
        let polled = std::future::poll_fn(|cx| Poll::Ready(armed.poll_armed(cx).is_ready())).await;
        assert!(!polled);
        // Another task: its waker is new to the gate.
        let waiter = tokio::spawn(armed);
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(30), waiter).await.expect("woken").expect("joined");
    }

    #[tokio::test]
    async fn already_cancelled_is_ready_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        Armed::new(Box::pin(token.cancelled_owned())).await;
    }
}
