//! The Prisma Accelerate-compatible API: authentication, malformed requests, limits, query
//! timeouts and interactive transactions. Every failure is checked for its HTTP status and P-code,
//! and followed by a normal request that must still work.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::*;

/// A non-raw plan (the shape of a compiled `findUnique`): `SELECT … WHERE id = $1` with the
/// placeholder `%1` declared as an Int and bound from `params`.
fn find_by_id(id: Value) -> Value {
    json!({
        "model": "Item",
        "operation": "findUnique",
        "plan": {
            "type": "dataMap",
            "args": {
                "expr": {
                    "type": "unique",
                    "args": {
                        "type": "query",
                        "args": {
                            "type": "templateSql",
                            "fragments": [
                                {"type": "stringChunk", "chunk": "SELECT \"t0\".\"id\", \"t0\".\"name\" FROM \"public\".\"Item\" AS \"t0\" WHERE \"t0\".\"id\" = "},
                                {"type": "parameter"},
                                {"type": "stringChunk", "chunk": " LIMIT "},
                                {"type": "parameter"}
                            ],
                            "args": [
                                {"prisma__type": "param", "prisma__value": {"name": "%1", "type": "Int"}},
                                "1"
                            ],
                            "argTypes": [
                                {"arity": "scalar", "scalarType": "int", "dbType": "INTEGER"},
                                {"arity": "scalar", "scalarType": "bigint", "dbType": null}
                            ],
                            "placeholderFormat": {"prefix": "$", "hasNumbering": true},
                            "chunkable": true
                        }
                    }
                },
                "structure": {
                    "type": "object",
                    "serializedName": null,
                    "fields": {
                        "id": {"type": "field", "dbName": "id", "fieldType": {"arity": "required", "type": "int"}},
                        "name": {"type": "field", "dbName": "name", "fieldType": {"arity": "required", "type": "string"}}
                    },
                    "skipNulls": false
                },
                "enums": {}
            }
        },
        "params": {"%1": id}
    })
}

async fn with_items(p: &Proxy) -> Result<()> {
    p.direct()
        .await?
        .batch_execute("CREATE TABLE \"Item\" (id int PRIMARY KEY, name text NOT NULL); INSERT INTO \"Item\" VALUES (1, 'one'), (2, 'two');")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_and_checked() -> Result<()> {
    let p = Setup::new("prisma_auth").await?.start().await?;
    let body = raw_query("SELECT 1 AS x", json!([]));
    for path in ["/query", "/transaction/start", "/invalidate"] {
        let r = p.prisma(path, None, &body).await?;
        let msg = r.prisma_err(401, "P6002");
        assert!(msg.contains("API Key is invalid"), "{path}: {msg}");
        assert_eq!(r.header("prisma-error-code"), Some("P6002"));
        let r = p.prisma(path, Some("not-a-key"), &body).await?;
        r.prisma_err(401, "P6002");
    }
    // Not Bearer.
    let r = p.client.post(p.url("/query")).header("authorization", format!("Basic {KEY_A}")).body(serde_json::to_vec(&body)?).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    let r = p.client.get(p.url("/connection-info")).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    // Unknown key on a transaction route.
    let r = p.prisma("/transaction/0123/commit", Some("nope"), &json!({})).await?;
    r.prisma_err(401, "P6002");
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_info_and_invalidate() -> Result<()> {
    let p = Setup::new("prisma_info").await?.start().await?;
    let r = p.client.get(p.url("/connection-info")).bearer_auth(KEY_A).send().await?;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v, json!({"provider": "postgres", "connectionInfo": {"supportsRelationJoins": true}}));
    let r = p.prisma("/invalidate", Some(KEY_B), &json!({"tags": ["a"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({}));
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_client_errors() -> Result<()> {
    let p = Setup::new("prisma_malformed").await?.start().await?;
    with_items(&p).await?;

    // Not JSON at all, truncated JSON, JSON of the wrong shape.
    for body in [&b"this is not json"[..], b"{\"operation\": \"queryRaw\", \"plan\": {", b"[1, 2, 3]", b"null", b""] {
        let r = p.prisma_bytes("/query", Some(KEY_A), body.to_vec()).await?;
        assert!((400..500).contains(&r.status), "body {:?}: {} {}", String::from_utf8_lossy(body), r.status, r.text);
        assert!(r.s("code").starts_with('P'), "body {:?}: no P-code: {}", String::from_utf8_lossy(body), r.text);
    }
    let r = p.prisma_bytes("/query", Some(KEY_A), b"this is not json".to_vec()).await?;
    r.prisma_err(400, "P6000");

    // An unknown plan node type.
    let body = json!({"operation": "queryRaw", "plan": {"type": "frobnicate", "args": {}}, "params": {}});
    let r = p.query(&body).await?;
    let msg = r.prisma_err(400, "P6000");
    assert!(msg.contains("frobnicate"), "{msg}");

    // A placeholder without a value.
    let mut body = find_by_id(json!(1));
    body["params"] = json!({});
    let r = p.query(&body).await?;
    assert!((400..500).contains(&r.status), "missing placeholder: {} {}", r.status, r.text);
    assert!(r.s("code").starts_with('P'), "{}", r.text);

    // A string where the plan's placeholder is compared with an int column: PostgreSQL refuses
    // the text value (22P02), which Prisma reports as P2007.
    let r = p.query(&find_by_id(json!("not-a-number"))).await?;
    let msg = r.prisma_err(400, "P2007");
    assert!(msg.contains("invalid input syntax"), "{msg}");

    // Sanity: the same plan with the right type works.
    let r = p.query(&find_by_id(json!(2))).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"], json!({"id": 2, "name": "two"}));

    // Nesting far past the depth limit.
    let mut deep = json!(1);
    for _ in 0..500 {
        deep = json!([deep]);
    }
    let body = json!({"operation": "queryRaw", "plan": {"type": "value", "args": deep}, "params": {}});
    let r = p.query(&body).await?;
    r.prisma_err(400, "P6000");

    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_body_is_413() -> Result<()> {
    let p = Setup::new("prisma_big_req").await?.http("max_request_size = 4096").start().await?;
    let filler = "x".repeat(10_000);
    let body = raw_query("SELECT $1::text AS s", json!([filler]));
    for path in ["/query", "/transaction/start"] {
        let r = p.prisma(path, Some(KEY_A), &body).await?;
        let msg = r.prisma_err(413, "P6005");
        assert!(msg.contains("4096"), "{msg}");
    }
    // Just under the limit passes.
    let body = raw_query("SELECT length($1::text) AS n", json!(["y".repeat(3000)]));
    let r = p.query(&body).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"]["rows"], json!([[3000]]));
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

const MANY_ROWS: &str = "SELECT g, repeat('x', 50) AS pad FROM generate_series(1, 1000) g";

/// A response over `prisma_max_response_size` is refused, in and out of an interactive
/// transaction, and the connection and the transaction stay usable. (The exact status and code
/// are checked by [`response_over_the_limit_is_413_p6009`].)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_over_the_limit_is_refused_and_others_carry_on() -> Result<()> {
    let p = Setup::new("prisma_big_resp").await?.http("prisma_max_response_size = 2048").db("pool_size = 1").start().await?;
    let r = p.query(&raw_query(MANY_ROWS, json!([]))).await?;
    assert!(r.status >= 400, "{} {}", r.status, r.text);
    assert!(r.s("code").starts_with('P'), "{}", r.text);
    assert!(r.s("error").contains("2048"), "{}", r.text);
    p.prisma_ok().await?;
    let id = p.itx_start(KEY_A, &json!({"maxWait": 2000, "timeout": 10000})).await?;
    let q = format!("/transaction/{id}/query");
    let r = p.prisma(&q, Some(KEY_A), &raw_query(MANY_ROWS, json!([]))).await?;
    assert!(r.status >= 400, "{} {}", r.status, r.text);
    let r = p.prisma(&q, Some(KEY_A), &raw_query("SELECT 5 AS five", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[5]]), "transaction unusable after a too-large result: {}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "rollback after a too-large result: {}", r.text);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_over_the_limit_is_413_p6009() -> Result<()> {
    let p = Setup::new("prisma_p6009").await?.http("prisma_max_response_size = 2048").start().await?;
    let r = p.query(&raw_query(MANY_ROWS, json!([]))).await?;
    let msg = r.prisma_err(413, "P6009");
    assert!(msg.contains("2048"), "{msg}");
    let id = p.itx_start(KEY_A, &json!({"maxWait": 2000, "timeout": 10000})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query(MANY_ROWS, json!([]))).await?;
    r.prisma_err(413, "P6009");
    let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_is_504_and_cancels_the_query() -> Result<()> {
    let p = Setup::new("prisma_timeout").await?.http("prisma_query_timeout = \"500ms\"").start().await?;
    let r = bounded("timed-out query", 15, p.query(&raw_query("SELECT pg_sleep(30) AS slept", json!([])))).await?;
    let msg = r.prisma_err(504, "P6004");
    assert!(msg.contains("500 ms"), "{msg}");
    // The sleep must be cancelled upstream, not left running for 30 s.
    let gone = poll(100, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 0).then_some(()) }).await;
    assert!(gone.is_some(), "pg_sleep(30) still running 5 s after the Prisma query timed out");
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_still_cancels_the_query() -> Result<()> {
    let p = Setup::new("prisma_disconnect").await?.http("prisma_query_timeout = \"1s\"").db("pool_size = 1").start().await?;
    let req = p.client.post(p.url("/query")).bearer_auth(KEY_A).body(serde_json::to_vec(&raw_query("SELECT pg_sleep(30) AS slept", json!([])))?);
    let request = tokio::spawn(req.send());
    // Once the query runs upstream, the client goes away.
    let running = poll(100, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 1).then_some(()) }).await;
    assert!(running.is_some(), "pg_sleep(30) never started");
    request.abort();
    let _ = request.await;
    p.prisma_ok().await?;
    let gone = poll(120, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 0).then_some(()) }).await;
    assert!(gone.is_some(), "pg_sleep(30) still running 6 s after its client went away (prisma_query_timeout 1s)");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_in_a_transaction_does_not_desync_it() -> Result<()> {
    let p = Setup::new("prisma_itx_disconnect").await?.start().await?;
    let id = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let q = format!("/transaction/{id}/query");
    let req = p.client.post(p.url(&q)).bearer_auth(KEY_A).body(serde_json::to_vec(&raw_query("SELECT 'first' AS v FROM pg_sleep(1)", json!([])))?);
    let request = tokio::spawn(req.send());
    let running = poll(100, || async { (active_backends(&p.real_db, "pg_sleep(1)").await.ok()? == 1).then_some(()) }).await;
    assert!(running.is_some(), "pg_sleep(1) never started");
    request.abort();
    let _ = request.await;
    let r = p.prisma(&q, Some(KEY_A), &raw_query("SELECT 'second' AS v", json!([]))).await?;
    // Either the transaction is usable and answers this query, or it is reported closed.
    if r.status == 200 {
        assert_eq!(r.json["data"]["rows"], json!([["second"]]), "wrong result after an abandoned query: {}", r.text);
    } else {
        r.prisma_err(409, "P2028");
    }
    let _ = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

fn pool_waiting(p: &Proxy) -> i64 {
    p.app().database(DB).expect("database").pool.stats().waiting.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_during_start_frees_its_slot() -> Result<()> {
    let p = Setup::new("prisma_itx_start_gone")
        .await?
        .db("pool_size = 2")
        .http("prisma_max_transactions_per_key = 2")
        .http("itx_max_per_key_share = 1.0")
        .http("itx_max_share = 1.0")
        .start()
        .await?;
    let holder = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    // Key B holds the pool's other connection, so A's second start waits with its slot reserved.
    let other = p.itx_start(KEY_B, &json!({"timeout": 20000})).await?;
    let req = p.client.post(p.url("/transaction/start")).bearer_auth(KEY_A).body(serde_json::to_vec(&json!({"maxWait": 10000}))?);
    let request = tokio::spawn(req.send());
    let waiting = poll(100, || async { (pool_waiting(&p) >= 1).then_some(()) }).await;
    assert!(waiting.is_some(), "the second start never waited for the pool");
    request.abort();
    let _ = request.await;
    let r = p.prisma(&format!("/transaction/{holder}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    // One open transaction of the two allowed…
    let id = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    // …so the next start must fail on maxWait (no connection), not on the per-key limit.
    let r = p.prisma("/transaction/start", Some(KEY_A), &json!({"maxWait": 200})).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("Unable to start a transaction in the given time."), "{msg}");
    for (id, key) in [(&id, KEY_A), (&other, KEY_B)] {
        let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(key), &json!({})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_during_commit_closes_the_transaction() -> Result<()> {
    let p = Setup::new("prisma_itx_commit_gone").await?.http("prisma_max_transactions_per_key = 1").start().await?;
    // COMMIT takes a second: a deferred constraint trigger sleeps.
    p.direct()
        .await?
        .batch_execute(
            "CREATE TABLE t (id int); \
             CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .await?;
    let id = p.itx_start(KEY_A, &json!({"timeout": 1500})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("INSERT INTO t VALUES (1)")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let req = p.client.post(p.url(&format!("/transaction/{id}/commit"))).bearer_auth(KEY_A).body("{}");
    let request = tokio::spawn(req.send());
    let running = poll(100, || async { (active_backends(&p.real_db, "COMMIT").await.ok()? == 1).then_some(()) }).await;
    assert!(running.is_some(), "COMMIT never started");
    request.abort();
    let _ = request.await;
    // Well past the transaction's timeout, it must be gone and its slot free.
    let closed = poll(100, || async { (p.app().itx.open_count() == 0).then_some(()) }).await;
    assert!(closed.is_some(), "transaction still registered 5 s after its commit was abandoned");
    let id2 = p.itx_start(KEY_A, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id2}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_transaction_commit_and_rollback() -> Result<()> {
    let p = Setup::new("prisma_itx").await?.start().await?;
    with_items(&p).await?;
    let id = p.itx_start(KEY_A, &json!({"maxWait": 2000, "timeout": 10000})).await?;
    let q = format!("/transaction/{id}/query");
    let r = p.prisma(&q, Some(KEY_A), &raw_execute("INSERT INTO \"Item\" VALUES (10, 'ten')")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"], json!(1));
    // Not visible outside before the commit.
    let direct = p.direct().await?;
    let n: i64 = direct.query_one("SELECT count(*) FROM \"Item\" WHERE id = 10", &[]).await?.get(0);
    assert_eq!(n, 0, "uncommitted row visible");
    // Visible inside.
    let r = p.prisma(&q, Some(KEY_A), &raw_query("SELECT name FROM \"Item\" WHERE id = 10", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([["ten"]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({}));
    let n: i64 = direct.query_one("SELECT count(*) FROM \"Item\" WHERE id = 10", &[]).await?.get(0);
    assert_eq!(n, 1, "committed row missing");

    // Commit again: already closed, committed.
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("already closed") && msg.contains("committed"), "{msg}");
    let r = p.prisma(&q, Some(KEY_A), &raw_query("SELECT 1", json!([]))).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("already closed") && msg.contains("committed"), "{msg}");

    // Rollback discards.
    let id = p.itx_start(KEY_A, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("INSERT INTO \"Item\" VALUES (11, 'eleven')")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let n: i64 = direct.query_one("SELECT count(*) FROM \"Item\" WHERE id = 11", &[]).await?.get(0);
    assert_eq!(n, 0, "rolled-back row present");
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("rolled back"), "{msg}");

    // A database error inside the transaction is reported with its P-code.
    let id = p.itx_start(KEY_A, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("INSERT INTO \"Item\" VALUES (1, 'dup')")).await?;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.s("code"), "P2010", "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);

    // An isolation level is applied.
    let id = p.itx_start(KEY_A, &json!({"isolationLevel": "Serializable"})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query("SELECT current_setting('transaction_isolation') AS iso", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([["serializable"]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    // An unknown isolation level is refused without opening anything.
    let r = p.prisma("/transaction/start", Some(KEY_A), &json!({"isolationLevel": "Chaotic"})).await?;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    assert!(r.s("code").starts_with('P'), "{}", r.text);

    assert_eq!(p.app().itx.open_count(), 0);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_ids_unknown_or_of_another_key_are_not_found() -> Result<()> {
    let p = Setup::new("prisma_itx_ids").await?.start().await?;
    for op in ["query", "commit", "rollback"] {
        let r = p.prisma(&format!("/transaction/00000000000000000000000000000000/{op}"), Some(KEY_A), &raw_query("SELECT 1", json!([]))).await?;
        let msg = r.prisma_err(409, "P2028");
        assert!(msg.contains("Transaction not found"), "{op}: {msg}");
    }
    let id = p.itx_start(KEY_A, &json!({"timeout": 10000})).await?;
    for op in ["query", "commit", "rollback"] {
        let r = p.prisma(&format!("/transaction/{id}/{op}"), Some(KEY_B), &raw_query("SELECT 1", json!([]))).await?;
        let msg = r.prisma_err(409, "P2028");
        assert!(msg.contains("Transaction not found"), "key B {op}: {msg}");
    }
    // Key B's attempts did not disturb it.
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query("SELECT 7 AS n", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[7]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_transaction_of_another_key_is_not_found() -> Result<()> {
    let p = Setup::new("prisma_itx_closed_ids").await?.start().await?;
    let id = p.itx_start(KEY_A, &json!({"timeout": 10000})).await?;
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_B), &raw_query("SELECT 1", json!([]))).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("Transaction not found"), "key B sees key A's closed transaction: {msg}");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_transaction_is_p2028_with_timing_meta() -> Result<()> {
    let p = Setup::new("prisma_itx_expired").await?.start().await?;
    with_items(&p).await?;
    let id = p.itx_start(KEY_A, &json!({"maxWait": 2000, "timeout": 300})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("INSERT INTO \"Item\" VALUES (20, 'late')")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_query("SELECT 1", json!([]))).await?;
    let msg = r.prisma_err(409, "P2028").to_owned();
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(r.json["meta"]["timeout"], json!(300), "{}", r.text);
    let taken = r.json["meta"]["timeTaken"].as_u64().unwrap_or(0);
    assert!(taken >= 300, "timeTaken {taken} < timeout: {}", r.text);
    assert_eq!(r.json["meta"]["operation"], json!("query"), "{}", r.text);
    // Commit after expiry: the same error, and the work was rolled back.
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("expired"), "{msg}");
    let n: i64 = p.direct().await?.query_one("SELECT count(*) FROM \"Item\" WHERE id = 20", &[]).await?.get(0);
    assert_eq!(n, 0, "expired transaction's insert was committed");
    assert_eq!(p.app().itx.open_count(), 0);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_with_the_pool_exhausted() -> Result<()> {
    // Interactive transactions may hold the whole pool here (the default leaves a quarter free).
    let p = Setup::new("prisma_itx_maxwait").await?.db("pool_size = 1").http("itx_max_share = 1.0").start().await?;
    let holder = p.itx_start(KEY_A, &json!({"maxWait": 2000, "timeout": 20000})).await?;
    let r = bounded("start with maxWait", 10, p.prisma("/transaction/start", Some(KEY_B), &json!({"maxWait": 200, "timeout": 5000}))).await?;
    let msg = r.prisma_err(409, "P2028");
    assert!(msg.contains("Unable to start a transaction in the given time."), "{msg}");
    // The holder is unaffected; once it ends, others carry on.
    let r = p.prisma(&format!("/transaction/{holder}/query"), Some(KEY_A), &raw_query("SELECT 1 AS one", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[1]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{holder}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = p.itx_start(KEY_B, &json!({"maxWait": 2000})).await?;
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_B), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_open_transactions_per_key_is_429() -> Result<()> {
    let p = Setup::new("prisma_itx_limit").await?.http("prisma_max_transactions_per_key = 2").start().await?;
    let a1 = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let _a2 = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let r = p.prisma("/transaction/start", Some(KEY_A), &json!({"timeout": 20000})).await?;
    r.prisma_err(429, "P5011");
    // The limit is per key.
    let b1 = p.itx_start(KEY_B, &json!({"timeout": 20000})).await?;
    // Closing one frees a slot.
    let r = p.prisma(&format!("/transaction/{a1}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let a3 = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    for (id, key) in [(&a3, KEY_A), (&_a2, KEY_A), (&b1, KEY_B)] {
        let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(key), &json!({})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(p.app().itx.open_count(), 0);
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}
