//! Attacks on the Prisma Accelerate API: every route without or with a wrong API key, broken
//! and hostile bodies after authentication, and tenants reaching for each other (interactive
//! transactions of another key, another database's key, the per-key transaction cap).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::common::*;
use crate::sql::{check_http, nested, raw, trickled, Api, HttpExpect};
use crate::{case, Case, Endpoint, Group};

const UNAUTHORIZED: HttpExpect = HttpExpect::Error(&[401], &["P6002"]);
const BAD_BODY: HttpExpect = HttpExpect::Error(&[400], &["P6000"]);
/// An ITX id that is well-formed but was never issued.
const UNKNOWN_ITX: &str = "0123456789abcdef0123456789abcdef";

fn bearer(key: &str) -> Vec<u8> {
    format!("Bearer {key}").into_bytes()
}

/// A request to a Prisma route with these headers.
fn route(pre_auth: bool, name: &str, method: &str, path: &str, headers: Vec<(&'static str, Vec<u8>)>, body: Vec<u8>, expect: HttpExpect) -> Case {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let bytes = request(method, path, &h, &body);
    raw(Endpoint::Prisma, pre_auth, name, bytes, expect, Api::Prisma)
}

/// `POST path` with key A.
fn post(name: &str, path: &str, body: Vec<u8>, expect: HttpExpect) -> Case {
    route(false, name, "POST", path, vec![("authorization", bearer(KEY_A))], body, expect)
}

pub fn raw_query(sql: &str, args: Value) -> Value {
    let n = args.as_array().map_or(0, Vec::len);
    let types: Vec<Value> = (0..n).map(|_| json!({"scalarType": "unknown", "arity": "scalar"})).collect();
    json!({"operation": "queryRaw", "plan": {"type": "query", "args": {"type": "rawSql", "sql": sql, "args": args, "argTypes": types}}, "params": {}})
}

fn raw_execute(sql: &str) -> Value {
    json!({"operation": "executeRaw", "plan": {"type": "execute", "args": {"type": "rawSql", "sql": sql, "args": [], "argTypes": []}}, "params": {}})
}

fn js(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

/// POSTs JSON with `key`; the raw answer.
async fn call(tp: &Tidepool, path: &str, key: &str, body: &Value) -> Result<HttpAnswer> {
    http_raw(tp.http, &request("POST", path, &[("authorization", &bearer(key)), ("content-type", b"application/json")], &js(body.clone()))).await
}

async fn itx_start(tp: &Tidepool, key: &str) -> Result<String> {
    let a = call(tp, "/transaction/start", key, &json!({"maxWait": 5000, "timeout": 10000})).await?;
    ensure!(a.status == Some(200), "transaction/start: {:?} {}", a.status, a.body);
    a.json["id"].as_str().map(str::to_owned).context("no id")
}

pub fn pre_auth() -> Group {
    let routes = [
        ("POST", "/query".to_owned()),
        ("POST", "/transaction/start".to_owned()),
        ("POST", format!("/transaction/{UNKNOWN_ITX}/query")),
        ("POST", format!("/transaction/{UNKNOWN_ITX}/commit")),
        ("POST", format!("/transaction/{UNKNOWN_ITX}/rollback")),
        ("POST", "/invalidate".to_owned()),
        ("GET", "/connection-info".to_owned()),
    ];
    let body = js(raw_query("SELECT 1", json!([])));
    let mut cases: Vec<Case> = routes.iter().map(|(m, p)| route(true, &format!("{m} {p} without a key"), m, p, vec![], body.clone(), UNAUTHORIZED)).collect();
    cases.extend(
        routes
            .iter()
            .map(|(m, p)| route(true, &format!("{m} {p} with a wrong key"), m, p, vec![("authorization", bearer("tp-wrong"))], body.clone(), UNAUTHORIZED)),
    );
    let q = "/query";
    cases.extend([
        route(true, "empty bearer token", "POST", q, vec![("authorization", b"Bearer ".to_vec())], body.clone(), UNAUTHORIZED),
        route(true, "Basic credentials", "POST", q, vec![("authorization", b"Basic YWxpY2U6YWxpY2UtcHc=".to_vec())], body.clone(), UNAUTHORIZED),
        route(true, "the key without 'Bearer'", "POST", q, vec![("authorization", KEY_A.as_bytes().to_vec())], body.clone(), UNAUTHORIZED),
        route(true, "a 10 KB key", "POST", q, vec![("authorization", bearer(&"k".repeat(10_000)))], body.clone(), UNAUTHORIZED),
        route(true, "invalid UTF-8 in the key", "POST", q, vec![("authorization", b"Bearer tp-\xff\xfe".to_vec())], body.clone(), UNAUTHORIZED),
        route(true, "a key prefix", "POST", q, vec![("authorization", bearer(&KEY_A[..20]))], body.clone(), UNAUTHORIZED),
        route(
            true,
            "the key's SHA-256 as the key",
            "POST",
            q,
            vec![("authorization", bearer(&hex::encode(tidepool::keys::hash_key(KEY_A))))],
            body.clone(),
            UNAUTHORIZED,
        ),
        route(true, "NUL in the key", "POST", q, vec![("authorization", b"Bearer tp-\0".to_vec())], body.clone(), HttpExpect::StatusOrClosed(&[400])),
        route(true, "100,000-deep body without a key", "POST", q, vec![], format!(r#"{{"plan":{}}}"#, nested(100_000)).into_bytes(), UNAUTHORIZED),
        raw(
            Endpoint::Prisma,
            true,
            "Content-Length 10^12 without a key",
            b"POST /query HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000000\r\n\r\n{".to_vec(),
            UNAUTHORIZED,
            Api::Prisma,
        ),
        route(true, "unknown route", "POST", "/admin/shutdown", vec![("authorization", bearer(KEY_A))], body.clone(), HttpExpect::Status(&[404])),
        route(true, "GET /query", "GET", q, vec![], Vec::new(), HttpExpect::Status(&[405])),
        route(true, "DELETE /transaction/start", "DELETE", "/transaction/start", vec![], Vec::new(), HttpExpect::Status(&[405])),
        route(
            true,
            "a 100 KB transaction id without a key",
            "POST",
            &format!("/transaction/{}/query", "a".repeat(100_000)),
            vec![],
            body.clone(),
            HttpExpect::StatusOrClosed(&[401, 400, 414, 431]),
        ),
        trickled(
            Endpoint::Prisma,
            true,
            "body trickled without a key",
            b"POST /query HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n".to_vec(),
            b"{\"plan\":".to_vec(),
            &[401],
        ),
    ]);
    Group { name: "prisma pre-auth", parallel: 8, cases }
}

pub fn post_auth() -> Group {
    let q = "/query";
    let args: Vec<Value> = (0..70_000).map(|i| json!(i)).collect();
    let cases = vec![
        post("empty body", q, Vec::new(), BAD_BODY),
        post("invalid JSON", q, b"{\"plan\": ".to_vec(), BAD_BODY),
        post("a JSON array", q, b"[]".to_vec(), BAD_BODY),
        post("invalid UTF-8 body", q, b"{\"operation\": \"\xff\"}".to_vec(), BAD_BODY),
        post(
            "100,000-deep plan",
            q,
            format!(r#"{{"operation":"x","plan":{{"type":"value","args":{}}},"params":{{}}}}"#, nested(100_000)).into_bytes(),
            BAD_BODY,
        ),
        post("100,000-deep params", q, format!(r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{"a":{}}}}}"#, nested(100_000)).into_bytes(), BAD_BODY),
        post(
            "unknown plan node",
            q,
            js(json!({"operation": "x", "plan": {"type": "dropDatabase"}, "params": {}})),
            HttpExpect::Error(&[400, 500], &["P6000", ""]),
        ),
        post("rawSql with 70,000 arguments", q, js(raw_query("SELECT $1", json!(args))), HttpExpect::Error(&[400], &["P2029"])),
        post("NUL in rawSql", q, js(raw_query("SELECT 1\u{0}; CREATE TABLE pwned_p1 ()", json!([]))), HttpExpect::Error(&[400], &["P2010"])),
        post("two statements in rawSql", q, js(raw_query("SELECT 1; CREATE TABLE pwned_p2 ()", json!([]))), HttpExpect::Error(&[400], &["P2010"])),
        post(
            "quote injection through an argument",
            q,
            js(raw_query("SELECT $1::text AS v", json!(["x'); CREATE TABLE pwned_p3 (); --"]))),
            HttpExpect::Status(&[200]),
        ),
        post(
            "SQL comment injection through 'comments'",
            q,
            js({
                let mut b = raw_query("SELECT 1 AS one", json!([]));
                b["comments"] = json!({"app": "*/; CREATE TABLE pwned_p5 (); /*", "x'": "'; --"});
                b
            }),
            HttpExpect::Status(&[200]),
        ),
        post("set/**/search_path by executeRaw", q, js(raw_execute("set/**/search_path to leak_p1")), HttpExpect::Status(&[200])),
        post("set_config by queryRaw", q, js(raw_query("SELECT set_config('application_name', 'leak_p2', false)", json!([]))), HttpExpect::Status(&[200])),
        post(
            "body over max_request_size",
            q,
            js(raw_query(&format!("SELECT '{}'", "a".repeat(MAX_REQUEST)), json!([]))),
            HttpExpect::Error(&[413], &["P6005"]),
        ),
        post("pg_sleep past prisma_query_timeout", q, js(raw_query("SELECT pg_sleep(30)", json!([]))), HttpExpect::Error(&[504], &["P6004"])),
        post(
            "result over the response limit",
            q,
            js(raw_query("SELECT repeat('x', 1000) FROM generate_series(1, 100000)", json!([]))),
            HttpExpect::Error(&[413], &["P6009"]),
        ),
        trickled(
            Endpoint::Prisma,
            false,
            "body trickled (slowloris)",
            format!("POST /query HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY_A}\r\ncontent-length: 100\r\n\r\n").into_bytes(),
            b"{\"operation\": \"queryRaw\"     ".to_vec(),
            &[408],
        ),
        post("transaction/start with a timeout of 1e30", "/transaction/start", b"{\"timeout\": 1e30}".to_vec(), HttpExpect::Error(&[400], &["P6000", "P2028"])),
        post("transaction/start with a negative maxWait", "/transaction/start", b"{\"maxWait\": -1}".to_vec(), HttpExpect::Error(&[400], &["P6000", "P2028"])),
        post(
            "transaction/start with an injected isolation level",
            "/transaction/start",
            js(json!({"isolationLevel": "Serializable; CREATE TABLE pwned_p4 ()"})),
            HttpExpect::Error(&[400], &["P6000", "P2028"]),
        ),
        post(
            "transaction/start with a 100,000-deep body",
            "/transaction/start",
            format!(r#"{{"timeout":{}}}"#, nested(100_000)).into_bytes(),
            HttpExpect::Error(&[400], &["P6000", "P2028"]),
        ),
        post("ITX id '..'", "/transaction/../query", js(raw_query("SELECT 1", json!([]))), HttpExpect::StatusOrClosed(&[404, 409])),
        post("ITX id with a percent-encoded NUL", "/transaction/%00/query", js(raw_query("SELECT 1", json!([]))), HttpExpect::Error(&[409], &["P2028"])),
        post("ITX id with invalid UTF-8 escapes", "/transaction/%ff%fe/commit", Vec::new(), HttpExpect::StatusOrClosed(&[400, 409])),
        post("ITX id in upper case", &format!("/transaction/{}/commit", UNKNOWN_ITX.to_uppercase()), Vec::new(), HttpExpect::Error(&[409], &["P2028"])),
        post("unknown ITX id", &format!("/transaction/{UNKNOWN_ITX}/rollback"), Vec::new(), HttpExpect::Error(&[409], &["P2028"])),
        post("a 100 KB ITX id", &format!("/transaction/{}/query", "a".repeat(100_000)), Vec::new(), HttpExpect::StatusOrClosed(&[409, 414, 431, 400])),
        post(
            "100,000 keys in params",
            q,
            format!(
                r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{{}}}}}"#,
                (0..100_000).map(|i| format!(r#""k{i}":{i}"#)).collect::<Vec<_>>().join(",")
            )
            .into_bytes(),
            HttpExpect::Status(&[200, 400]),
        ),
        post("a 3 MB string argument", q, js(raw_query("SELECT length($1::text) AS n", json!(["a".repeat(3 << 20)]))), HttpExpect::Status(&[200])),
        post("/invalidate with junk", "/invalidate", b"\xff\x00junk".to_vec(), HttpExpect::Status(&[200, 400])),
    ];
    Group { name: "prisma post-auth", parallel: 3, cases }
}

/// Tenants reaching for each other's transactions and databases.
pub fn tenants() -> Group {
    let cases = vec![
        case(Endpoint::Prisma, false, "query another key's transaction", |tp| async move {
            let id = itx_start(&tp, KEY_A).await?;
            for key in [KEY_B, KEY_OTHER] {
                let a = call(&tp, &format!("/transaction/{id}/query"), key, &raw_query("SELECT 1", json!([]))).await?;
                check_http(&a, HttpExpect::Error(&[409], &["P2028"]), Api::Prisma)?;
            }
            let a = call(&tp, &format!("/transaction/{id}/commit"), KEY_A, &json!({})).await?;
            ensure!(a.status == Some(200), "the owner's commit: {:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "commit and roll back another key's transaction", |tp| async move {
            let id = itx_start(&tp, KEY_A).await?;
            for (key, op) in [(KEY_B, "commit"), (KEY_OTHER, "rollback"), (KEY_B, "rollback")] {
                let a = call(&tp, &format!("/transaction/{id}/{op}"), key, &json!({})).await?;
                check_http(&a, HttpExpect::Error(&[409], &["P2028"]), Api::Prisma)?;
            }
            let a = call(&tp, &format!("/transaction/{id}/query"), KEY_A, &raw_query("SELECT 7 AS n", json!([]))).await?;
            ensure!(a.status == Some(200), "the owner's transaction was disturbed: {:?} {}", a.status, a.body);
            let a = call(&tp, &format!("/transaction/{id}/rollback"), KEY_A, &json!({})).await?;
            ensure!(a.status == Some(200), "the owner's rollback: {:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "reuse a committed transaction id", |tp| async move {
            let id = itx_start(&tp, KEY_B).await?;
            let a = call(&tp, &format!("/transaction/{id}/commit"), KEY_B, &json!({})).await?;
            ensure!(a.status == Some(200), "commit: {:?} {}", a.status, a.body);
            let a = call(&tp, &format!("/transaction/{id}/query"), KEY_B, &raw_query("SELECT 1", json!([]))).await?;
            check_http(&a, HttpExpect::Error(&[409], &["P2028"]), Api::Prisma)
        }),
        case(Endpoint::Prisma, false, "another database's table through key A", |tp| async move {
            tidepool_testkit::TestCluster::shared()
                .await?
                .client_as(tidepool_testkit::SCRAM_USER, &tp.real_db2)
                .await?
                .batch_execute("CREATE TABLE IF NOT EXISTS tenant_secret (s text); INSERT INTO tenant_secret VALUES ('b-only')")
                .await?;
            let a = call(&tp, "/query", KEY_A, &raw_query("SELECT s FROM tenant_secret", json!([]))).await?;
            check_http(&a, HttpExpect::Error(&[400], &["P2010"]), Api::Prisma)?;
            ensure!(!a.body.contains("b-only"), "{}", a.body);
            let a = call(&tp, "/query", KEY_OTHER, &raw_query("SELECT s FROM tenant_secret", json!([]))).await?;
            ensure!(a.status == Some(200) && a.body.contains("b-only"), "the owner's key: {:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "one key opens transactions until refused", |tp| async move {
            let mut ids = Vec::new();
            let mut refused = None;
            for _ in 0..20 {
                let a = call(&tp, "/transaction/start", KEY_B, &json!({"maxWait": 5000, "timeout": 10000})).await?;
                match a.status {
                    Some(200) => ids.push(a.json["id"].as_str().unwrap_or_default().to_owned()),
                    _ => {
                        refused = Some(a);
                        break;
                    }
                }
            }
            let refused = refused.context("20 transactions of one key on a pool of 8 were all granted")?;
            check_http(&refused, HttpExpect::Error(&[429], &["P5011"]), Api::Prisma)?;
            ensure!(ids.len() < 8, "{} transactions held by one key on a pool of 8", ids.len());
            for id in ids {
                call(&tp, &format!("/transaction/{id}/rollback"), KEY_B, &json!({})).await?;
            }
            Ok(())
        }),
        case(Endpoint::Prisma, false, "two keys open transactions until refused", |tp| async move {
            // Each key alone is capped at half the pool; together they must still leave
            // connections for everyone else.
            let mut held = Vec::new();
            for key in [KEY_A, KEY_B] {
                for _ in 0..8 {
                    let a = call(&tp, "/transaction/start", key, &json!({"maxWait": 3000, "timeout": 15000})).await?;
                    match a.status {
                        Some(200) => held.push((key, a.json["id"].as_str().unwrap_or_default().to_owned())),
                        _ => {
                            check_http(&a, HttpExpect::Error(&[429], &["P5011"]), Api::Prisma)?;
                            break;
                        }
                    }
                }
            }
            let r = tp.client.post(tp.url("/sql")).header("neon-connection-string", tp.alice_cs()).json(&json!({"query": "SELECT 1 AS one"})).send().await?;
            let status = r.status().as_u16();
            for (key, id) in &held {
                call(&tp, &format!("/transaction/{id}/rollback"), key, &json!({})).await?;
            }
            ensure!(status == 200, "with {} interactive transactions open, /sql answered {status}", held.len());
            Ok(())
        }),
        case(Endpoint::Prisma, false, "30 concurrent queries on one transaction", |tp| async move {
            let id = itx_start(&tp, KEY_A).await?;
            let tasks: Vec<_> = (0..30)
                .map(|i| {
                    let (tp, id) = (tp.clone(), id.clone());
                    tokio::spawn(async move { call(&tp, &format!("/transaction/{id}/query"), KEY_A, &raw_query("SELECT $1::int AS n", json!([i]))).await })
                })
                .collect();
            for t in tasks {
                let a = t.await??;
                ensure!(a.status == Some(200), "{:?} {}", a.status, a.body);
            }
            let a = call(&tp, &format!("/transaction/{id}/commit"), KEY_A, &json!({})).await?;
            ensure!(a.status == Some(200), "commit: {:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "commit while a query of the transaction runs", |tp| async move {
            let id = itx_start(&tp, KEY_A).await?;
            let slow = {
                let (tp, id) = (tp.clone(), id.clone());
                tokio::spawn(
                    async move { call(&tp, &format!("/transaction/{id}/query"), KEY_A, &raw_query("SELECT 1 AS n FROM pg_sleep(1)", json!([]))).await },
                )
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let commit = call(&tp, &format!("/transaction/{id}/commit"), KEY_A, &json!({})).await?;
            let slow = slow.await??;
            ensure!(slow.status == Some(200), "the running query: {:?} {}", slow.status, slow.body);
            match commit.status {
                Some(200) => Ok(()),
                _ => check_http(&commit, HttpExpect::Error(&[409], &["P2028"]), Api::Prisma),
            }
        }),
        case(Endpoint::Prisma, false, "query an expired transaction", |tp| async move {
            let a = call(&tp, "/transaction/start", KEY_A, &json!({"maxWait": 5000, "timeout": 300})).await?;
            let id = a.json["id"].as_str().context("no id")?.to_owned();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let a = call(&tp, &format!("/transaction/{id}/query"), KEY_A, &raw_query("SELECT 1", json!([]))).await?;
            check_http(&a, HttpExpect::Error(&[409], &["P2028"]), Api::Prisma)
        }),
    ];
    Group { name: "prisma tenants", parallel: 1, cases }
}
