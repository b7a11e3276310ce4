//! Prisma interactive transactions across two cluster nodes (in-process, one `redis-server`
//! started by the test): started via A, its queries and commit via B are forwarded to A and
//! committed once; another key's calls through B find nothing; when A is gone, B answers P2028.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tidepool_testkit::{free_port, TestCluster, TestRedis};

use crate::common::{raw_execute, raw_query, Proxy, Setup, KEY_A, KEY_B};

fn node(setup: Setup, redis: &str, name: &str) -> Setup {
    let port = free_port();
    setup.server(&format!("http_listen = \"127.0.0.1:{port}\"")).append(&format!(
        "[cluster]\nredis_url = \"{redis}\"\nnode_id = \"{name}\"\nadvertise_addr = \"127.0.0.1:{port}\"\nsecret = \"test-cluster-secret\"\n\
         lease_ttl = \"3s\"\nheartbeat = \"500ms\"\nredis_timeout = \"300ms\"\n"
    ))
}

async fn wait_peers(p: &Proxy, n: usize) -> Result<()> {
    let c = p.app().cluster.clone().expect("cluster");
    for _ in 0..3000 {
        if c.coordinated() && c.peers().len() == n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("node {} never saw {n} peers", c.node_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_started_on_a_is_used_and_committed_through_b() -> Result<()> {
    let redis = TestRedis::start()?;
    let first = Setup::new("cluster_itx").await?;
    let second = Setup::new("cluster_itx_unused").await?.same_database_as(&first);
    let real_db = first.real_db.clone();
    let a = node(first, &redis.url(), "a").start().await?;
    let b = node(second, &redis.url(), "b").start().await?;
    wait_peers(&a, 2).await?;
    wait_peers(&b, 2).await?;
    let direct = TestCluster::shared().await?.client(&real_db).await?;
    direct.batch_execute(&format!("CREATE TABLE itx_nodes (v int); GRANT ALL ON itx_nodes TO {}", tidepool_testkit::SCRAM_USER)).await?;

    let id = a.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let q = format!("/transaction/{id}/query");
    let r = b.prisma(&q, Some(KEY_A), &raw_execute("INSERT INTO itx_nodes VALUES (7)")).await?;
    assert_eq!(r.status, 200, "insert via B: {}", r.text);
    let r = b.prisma(&q, Some(KEY_A), &raw_query("SELECT count(*)::int AS n FROM itx_nodes", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[1]]), "the transaction sees its own insert via B: {}", r.text);
    // Another API key cannot use it through B (the key is checked on A).
    b.prisma(&q, Some(KEY_B), &raw_query("SELECT 1 AS one", json!([]))).await?.prisma_err(409, "P2028");
    // Not visible outside before the commit.
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_nodes", &[]).await?.get(0);
    assert_eq!(n, 0);
    let r = b.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "commit via B: {}", r.text);
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_nodes", &[]).await?.get(0);
    assert_eq!(n, 1, "committed once");
    // A second commit, via either node, finds it closed.
    b.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?.prisma_err(409, "P2028");
    a.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?.prisma_err(409, "P2028");
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_nodes", &[]).await?.get(0);
    assert_eq!(n, 1);
    // A forged forwarding header with a wrong secret is refused.
    let r = b
        .client
        .post(b.url(&q))
        .bearer_auth(KEY_A)
        .header("tidepool-cluster-secret", "wrong")
        .body(serde_json::to_vec(&raw_query("SELECT 1 AS one", json!([])))?)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);

    // A is gone: its open transaction's id gets P2028 on B, saying so.
    let id = a.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    a.stop().await;
    wait_peers(&b, 1).await?;
    let msg = b.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query("SELECT 1 AS one", json!([]))).await?;
    let msg = msg.prisma_err(409, "P2028");
    assert!(msg.contains("no longer in the cluster"), "{msg}");
    b.stop().await;
    Ok(())
}
