//! The cluster's background work: the heartbeat (membership, bulk lease renewal, fallback state),
//! the releaser (removes the leases of closed connections), and the bus: node-to-node messages
//! over Redis pub/sub (at most once; a lost "release" is asked again, a lost cancel is like a
//! cancel that came too late).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use super::{scripts, Core, Peer};

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "My clients wait for pool `pool`: give back `n` idle connections."
    Release { pool: String, n: usize },
    /// A CancelRequest whose key is unknown on the node that received it.
    Cancel { pid: i32, secret: i32 },
}

fn encode(from: &str, m: &Message) -> String {
    match m {
        Message::Release { pool, n } => format!("R\t{from}\t{n}\t{pool}"),
        Message::Cancel { pid, secret } => format!("C\t{from}\t{pid}\t{secret}"),
    }
}

fn decode(s: &str) -> Option<(&str, Message)> {
    let mut f = s.splitn(4, '\t');
    let (kind, from, a, b) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let m = match kind {
        "R" => Message::Release { n: a.parse().ok().filter(|n| *n > 0 && *n <= 1024)?, pool: b.to_owned() },
        "C" => Message::Cancel { pid: a.parse().ok()?, secret: b.parse().ok()? },
        _ => return None,
    };
    Some((from, m))
}

/// Publishes in the background (never delays the caller).
pub(super) fn publish(core: &Arc<Core>, m: Message) {
    let core = core.clone();
    let payload = encode(&core.node_id, &m);
    tokio::spawn(async move {
        let mut conn = core.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(core.keys.bus()).arg(payload);
        let call = cmd.query_async::<i64>(&mut conn);
        match timeout(core.config.redis_timeout, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => core.failed("publish", &e.to_string()),
            Err(_) => core.failed("publish", "timed out"),
        }
    });
}

pub(super) async fn heartbeat(core: Arc<Core>) {
    loop {
        beat(&core).await;
        tokio::select! {
            _ = core.stop.cancelled() => return,
            _ = sleep(core.config.heartbeat) => {}
        }
    }
}

/// One heartbeat: membership and every held lease renewed in one pipelined round trip.
async fn beat(core: &Arc<Core>) {
    let budgets = core.live_budgets();
    let ttl = core.config.lease_ttl.as_millis() as u64;
    let settle = (core.config.heartbeat * 2).as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(scripts::HEARTBEAT)
        .arg(4)
        .arg(core.keys.nodes())
        .arg(core.keys.addrs())
        .arg(core.keys.epoch())
        .arg(core.keys.settle())
        .arg(&core.node_id)
        .arg(ttl)
        .arg(&core.config.advertise_addr)
        .arg(settle);
    for b in &budgets {
        pipe.cmd("EVAL").arg(scripts::RENEW).arg(1).arg(b.key()).arg(ttl).arg(b.held_members());
    }
    let mut conn = core.conn.clone();
    let values = match timeout(core.config.redis_timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            core.failed("heartbeat", &e.to_string());
            core.set_unusable("heartbeat failed");
            return;
        }
        Err(_) => {
            core.failed("heartbeat", "timed out");
            core.set_unusable("heartbeat timed out");
            return;
        }
    };
    let Some((settling, peers)) = values.first().and_then(parse_members) else {
        core.failed("heartbeat", "unexpected reply");
        core.set_unusable("unexpected heartbeat reply");
        return;
    };
    for (b, v) in budgets.iter().zip(values.iter().skip(1)) {
        if let Ok(live) = redis::from_redis_value_ref::<usize>(v) {
            b.observed(live);
        }
    }
    let n = peers.len().max(1);
    core.nodes.store(n, std::sync::atomic::Ordering::SeqCst);
    core.metrics.nodes.set(n as i64);
    if *core.peers.lock() != peers {
        core.metrics.peer.clear();
        for p in &peers {
            core.metrics.peer.get_or_create(&vec![("node".into(), p.node_id.clone()), ("addr".into(), p.advertise_addr.clone())]).set(1);
        }
        tracing::info!(node = %core.node_id, nodes = n, "cluster: membership changed");
        *core.peers.lock() = peers;
    }
    if settling {
        core.set_unusable("Redis lost the cluster state; settling");
    } else {
        core.set_usable();
    }
}

/// `{settling, id, addr, id, addr, …}` → (settling, peers).
fn parse_members(v: &Value) -> Option<(bool, Vec<Peer>)> {
    let Value::Array(items) = v else { return None };
    let settling: i64 = redis::from_redis_value_ref(items.first()?).ok()?;
    let mut peers = Vec::new();
    for pair in items[1..].chunks(2) {
        let [id, addr] = pair else { return None };
        peers.push(Peer { node_id: redis::from_redis_value_ref(id).ok()?, advertise_addr: redis::from_redis_value_ref(addr).ok()? });
    }
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Some((settling == 1, peers))
}

/// Removes the leases of closed connections, in batches.
pub(super) async fn releaser(core: Arc<Core>, mut rx: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::new();
    loop {
        let n = tokio::select! {
            _ = core.stop.cancelled() => return,
            n = rx.recv_many(&mut batch, 256) => n,
        };
        if n == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for (key, member) in batch.drain(..) {
            pipe.cmd("ZREM").arg(key).arg(member).ignore();
        }
        let mut conn = core.conn.clone();
        // A failure leaves the leases to expire (they are no longer renewed).
        match timeout(core.config.redis_timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => core.failed("release", &e.to_string()),
            Err(_) => core.failed("release", "timed out"),
        }
    }
}

/// Receives the other nodes' messages; reconnects with backoff.
pub(super) async fn subscriber(core: Arc<Core>) {
    let mut delay = Duration::from_millis(50);
    loop {
        let connect = async {
            let mut ps = core.client.get_async_pubsub().await?;
            ps.subscribe(core.keys.bus()).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let attempt = tokio::select! {
            _ = core.stop.cancelled() => return,
            r = timeout(Duration::from_secs(2), connect) => r,
        };
        match attempt {
            Ok(Ok(ps)) => {
                delay = Duration::from_millis(50);
                let mut stream = ps.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = core.stop.cancelled() => return,
                        m = stream.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    if let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) {
                        handle(&core, text);
                    }
                }
                if core.stop.is_cancelled() {
                    return;
                }
                core.failed("subscribe", "connection closed");
            }
            Ok(Err(e)) => core.failed("subscribe", &e.to_string()),
            Err(_) => core.failed("subscribe", "timed out"),
        }
        tokio::select! {
            _ = core.stop.cancelled() => return,
            _ = sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

fn handle(core: &Arc<Core>, text: &str) {
    let Some((from, m)) = decode(text) else { return };
    if from == core.node_id {
        return;
    }
    match m {
        Message::Release { pool, n } => {
            if let Some(b) = core.live_budgets().into_iter().find(|b| b.name() == pool) {
                b.release_requested(n);
            }
        }
        Message::Cancel { pid, secret } => {
            core.metrics.cancels_received.inc();
            if let Some(reg) = core.cancels.get().and_then(|w| w.upgrade()) {
                tokio::spawn(async move { reg.cancel_local(pid, secret).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        for m in [Message::Release { pool: "app/r\tx".into(), n: 3 }, Message::Cancel { pid: -5, secret: i32::MAX }] {
            assert_eq!(decode(&encode("n1", &m)), Some(("n1", m.clone())));
        }
        for bad in ["", "R\tn1\t0\tapp", "R\tn1\t99999\tapp", "C\tn1\tx\t1", "X\tn1\t1\t2", "C\tn1\t1"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
