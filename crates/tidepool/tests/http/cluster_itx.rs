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

const SCHEMA: &str = "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n\nmodel itx_things {\n  id Int @id\n  name String\n}\n";

/// A Prisma 5/6 DataProxy call: `Authorization: Bearer key`, the itx header when given.
async fn dp(p: &Proxy, path: &str, key: &str, tx: Option<&str>, body: String) -> Result<crate::common::Resp> {
    let mut req = p.client.post(p.url(path)).bearer_auth(key).header("content-type", "text/plain;charset=UTF-8").body(body);
    if let Some(id) = tx {
        req = req.header("x-transaction-id", id);
    }
    crate::common::Resp::from(req.send().await?).await
}

fn query_error_code(r: &crate::common::Resp) -> Option<&str> {
    r.json.pointer("/errors/0/user_facing_error/error_code").and_then(serde_json::Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataproxy_transaction_started_on_a_is_used_and_committed_through_b() -> Result<()> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let redis = TestRedis::start()?;
    let first = Setup::new("cluster_dp").await?;
    let second = Setup::new("cluster_dp_unused").await?.same_database_as(&first);
    let real_db = first.real_db.clone();
    let a = node(first, &redis.url(), "a").start().await?;
    let b = node(second, &redis.url(), "b").start().await?;
    wait_peers(&a, 2).await?;
    wait_peers(&b, 2).await?;
    let direct = TestCluster::shared().await?.client(&real_db).await?;
    direct
        .batch_execute(&format!(
            "CREATE TABLE itx_things (id int PRIMARY KEY, name text NOT NULL); GRANT ALL ON itx_things TO {}",
            tidepool_testkit::SCRAM_USER
        ))
        .await?;
    let schema = base64::engine::general_purpose::STANDARD.encode(SCHEMA);
    let hash = hex::encode(sha2::Sha256::digest(schema.as_bytes()));
    for (p, key) in [(&a, KEY_A), (&b, KEY_A), (&b, KEY_B)] {
        let r = p.client.put(p.url(&format!("/5.22.0/{hash}/schema"))).bearer_auth(key).body(schema.clone()).send().await?;
        assert_eq!(r.status().as_u16(), 200, "schema upload: {}", r.text().await?);
    }

    let r = dp(&a, &format!("/5.22.0/{hash}/transaction/start"), KEY_A, None, json!({"max_wait": 5000, "timeout": 20000}).to_string()).await?;
    assert_eq!(r.status, 200, "start via A: {}", r.text);
    let id = r.s("id").to_owned();
    let itx = format!("/5.22.0/{hash}/itx/{id}");
    let create = json!({"modelName":"itx_things","action":"createOne","query":{"arguments":{"data":{"id":1,"name":"via b"}},"selection":{"$scalars":true}}});
    let r = dp(&b, &format!("{itx}/graphql"), KEY_A, Some(&id), create.to_string()).await?;
    assert_eq!(r.status, 200, "create via B: {}", r.text);
    assert_eq!(r.json.pointer("/data/createOneitx_things/name"), Some(&json!("via b")), "create via B: {}", r.text);
    let find = json!({"modelName":"itx_things","action":"findMany","query":{"arguments":{},"selection":{"$scalars":true}}});
    let r = dp(&b, &format!("{itx}/graphql"), KEY_A, Some(&id), find.to_string()).await?;
    assert_eq!(r.json.pointer("/data/findManyitx_things/0/id"), Some(&json!(1)), "the transaction sees its own insert via B: {}", r.text);
    // Another API key cannot use it through B (the key is checked on A): the 5.x query error shape.
    let r = dp(&b, &format!("{itx}/graphql"), KEY_B, Some(&id), find.to_string()).await?;
    assert_eq!((r.status, query_error_code(&r)), (200, Some("P2028")), "another key via B: {}", r.text);
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_things", &[]).await?.get(0);
    assert_eq!(n, 0, "not visible before the commit");
    let r = dp(&b, &format!("{itx}/commit"), KEY_A, Some(&id), String::new()).await?;
    assert_eq!(r.status, 200, "commit via B: {}", r.text);
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_things", &[]).await?.get(0);
    assert_eq!(n, 1, "committed once");
    let r = dp(&a, &format!("{itx}/commit"), KEY_A, Some(&id), String::new()).await?;
    assert_eq!(r.json["error_code"], "P2028", "a second commit via A: {} {}", r.status, r.text);
    assert_ne!(r.status, 200);
    let n: i64 = direct.query_one("SELECT count(*) FROM itx_things", &[]).await?.get(0);
    assert_eq!(n, 1);

    // A is gone: its open transaction's id gets P2028 on B, in the 5.x shapes.
    let r = dp(&a, &format!("/5.22.0/{hash}/transaction/start"), KEY_A, None, json!({"max_wait": 5000, "timeout": 20000}).to_string()).await?;
    let id = r.s("id").to_owned();
    let itx = format!("/5.22.0/{hash}/itx/{id}");
    a.stop().await;
    wait_peers(&b, 1).await?;
    let r = dp(&b, &format!("{itx}/graphql"), KEY_A, Some(&id), find.to_string()).await?;
    assert_eq!((r.status, query_error_code(&r)), (200, Some("P2028")), "owner gone: {}", r.text);
    assert!(r.text.contains("no longer in the cluster"), "{}", r.text);
    let r = dp(&b, &format!("{itx}/rollback"), KEY_A, Some(&id), String::new()).await?;
    assert_eq!(r.json["error_code"], "P2028", "rollback with the owner gone: {} {}", r.status, r.text);
    b.stop().await;
    Ok(())
}
