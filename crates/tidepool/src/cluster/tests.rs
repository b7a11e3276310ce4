//! The lease logic without a reachable Redis, on tokio's paused clock: a node that never reached
//! Redis holds nothing during its first `lease_ttl`, then its static share (1 per pool, the node
//! count being unknown).

use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::Cluster;
use crate::config::ClusterConfig;

fn unreachable() -> ClusterConfig {
    ClusterConfig {
        // Nothing listens on port 1: every call fails at once.
        redis_url: Some("redis://127.0.0.1:1".into()),
        node_id: "solo".into(),
        lease_ttl: Duration::from_secs(3),
        heartbeat: Duration::from_secs(1),
        redis_timeout: Duration::from_millis(100),
        ..ClusterConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn without_redis_a_new_node_waits_one_lease_ttl_then_holds_its_static_share() {
    let cluster = Cluster::new(&unreachable(), &mut Registry::default()).unwrap();
    let budget = cluster.budget("app", 10);
    assert!(!cluster.coordinated());
    // During the first lease_ttl: nothing (other nodes' connections may still be open).
    assert!(budget.acquire(Instant::now() + Duration::from_millis(500)).await.is_none());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Then its share: the node count was never known, so 1.
    let first = budget.acquire(Instant::now()).await.expect("the static share");
    assert!(budget.acquire(Instant::now() + Duration::from_millis(200)).await.is_none(), "never above the share");
    assert_eq!(cluster.metrics().leases_held.get(), 1);
    assert!(cluster.metrics().redis_errors.get() >= 1, "the failed heartbeats are counted");
    // A second unit frees up when the first is given back.
    drop(first);
    let _second = budget.acquire(Instant::now()).await.expect("the unit given back");
    assert_eq!(cluster.metrics().leases_held.get(), 1);
}
