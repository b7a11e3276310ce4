//! The task that listens for other nodes' invalidations: a dedicated pub/sub connection,
//! re-established with bounded exponential backoff, checked with a PING when quiet (a silently
//! dead connection would otherwise never deliver again). Each (re)subscription calls
//! `on_reconnect` *after* the SUBSCRIBE is confirmed, so nothing published afterwards is missed
//! and anything missed before is covered by the local clear.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{sleep, timeout, MissedTickBehavior};

use super::message;
use super::redis::{Inner, OnInvalidation, OnReconnect};

const FIRST_DELAY: Duration = Duration::from_millis(50);
/// A quiet subscription is checked this often.
const PING_INTERVAL: Duration = Duration::from_secs(5);

pub(super) async fn run(inner: Arc<Inner>, on_invalidation: OnInvalidation, on_reconnect: OnReconnect) {
    let mut delay = FIRST_DELAY;
    loop {
        let connect = async {
            let mut pubsub = timeout(inner.connect_timeout, inner.client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            timeout(inner.connect_timeout, pubsub.subscribe(message::CHANNEL))
                .await
                .map_err(|_| "subscribe timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        let attempt = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            r = connect => r,
        };
        match attempt {
            Ok(pubsub) => {
                delay = FIRST_DELAY;
                // Odd: subscribed. Then the local entries go, then the counter says so (tests wait
                // on it).
                inner.session.fetch_add(1, Ordering::SeqCst);
                // Redis answers again: reads need not wait for their pause to end.
                *inner.reads_paused_until.lock() = None;
                on_reconnect();
                inner.metrics.subscriptions.inc();
                tracing::info!(node = %inner.node_id, "cache: subscribed to Redis invalidations; local entries dropped");
                let why = listen(&inner, pubsub, &on_invalidation).await;
                // Even: invalidations may be missed from now on; queued entry writes are dropped.
                inner.session.fetch_add(1, Ordering::SeqCst);
                if inner.cancel.is_cancelled() {
                    return;
                }
                inner.failed("subscribe", &why);
            }
            Err(why) => inner.failed("subscribe", &why),
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = sleep(delay) => {}
        }
        delay = (delay * 2).min(inner.reconnect_max_delay);
    }
}

/// Delivers messages until the connection fails; returns why.
async fn listen(inner: &Inner, pubsub: redis::aio::PubSub, on_invalidation: &OnInvalidation) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset();
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return "stopped".into(),
            msg = stream.next() => {
                let Some(msg) = msg else { return "connection closed".into() };
                if msg.get_channel_name() != message::CHANNEL {
                    continue;
                }
                match message::decode(msg.get_payload_bytes()) {
                    Some((node, _)) if node == inner.node_id => {}
                    Some((_, event)) => {
                        inner.metrics.remote_invalidations.inc();
                        on_invalidation(&event);
                    }
                    None => {
                        inner.metrics.rejected.inc();
                    }
                }
                ping.reset();
            }
            _ = ping.tick() => {
                match timeout(inner.connect_timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Err(_) => return "ping timed out".into(),
                }
            }
        }
    }
}
