//! The query cache on the Prisma API (`cache-control` / `accelerate-cache-tags`, `POST
//! /invalidate`): statuses none → miss → ttl → swr → refreshed ttl, exactly one background
//! refresh, single-flight of concurrent misses, what is never cached (writes, raw queries,
//! interactive transactions, volatile functions), invalidation by tag / all and its scope, the
//! rate limit, bad input, and invalidation on writes. Database work is counted through a view
//! that bumps a sequence once per execution, so "ran on the database" is a fact, not a timing.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::*;

/// A compiled `findMany` over `from` (a table or view with `id`, `name`) with `id >= %1`.
pub(crate) fn find_many(from: &str, min_id: i64) -> Value {
    json!({
        "model": "Item",
        "operation": "findMany",
        "plan": {"type": "dataMap", "args": {
            "expr": {"type": "query", "args": {
                "type": "templateSql",
                "fragments": [
                    {"type": "stringChunk", "chunk": format!("SELECT \"t0\".\"id\", \"t0\".\"name\" FROM \"public\".\"{from}\" AS \"t0\" WHERE \"t0\".\"id\" >= ")},
                    {"type": "parameter"},
                    {"type": "stringChunk", "chunk": " ORDER BY \"t0\".\"id\" ASC"}
                ],
                "args": [{"prisma__type": "param", "prisma__value": {"name": "%1", "type": "Int"}}],
                "argTypes": [{"arity": "scalar", "scalarType": "int", "dbType": "INTEGER"}],
                "placeholderFormat": {"prefix": "$", "hasNumbering": true},
                "chunkable": true
            }},
            "structure": {"type": "object", "serializedName": null, "fields": {
                "id": {"type": "field", "dbName": "id", "fieldType": {"arity": "required", "type": "int"}},
                "name": {"type": "field", "dbName": "name", "fieldType": {"arity": "required", "type": "string"}}
            }, "skipNulls": false},
            "enums": {}
        }},
        "params": {"%1": min_id}
    })
}

/// A templateSql read of arbitrary SQL (no parameters), as `findMany` with one column `v`.
pub(crate) fn find_sql(sql: &str) -> Value {
    json!({
        "model": "Item", "operation": "findMany",
        "plan": {"type": "dataMap", "args": {
            "expr": {"type": "query", "args": {"type": "templateSql", "fragments": [{"type": "stringChunk", "chunk": sql}],
                "args": [], "argTypes": [], "placeholderFormat": {"prefix": "$", "hasNumbering": true}, "chunkable": false}},
            "structure": {"type": "object", "serializedName": null, "fields": {
                "v": {"type": "field", "dbName": "v", "fieldType": {"arity": "required", "type": "string"}}}, "skipNulls": false},
            "enums": {}}},
        "params": {}
    })
}

/// `Item` (two rows), the sequence `runs` and the view `Counted` over `Item` that takes one
/// value of `runs` per execution (and `delay` seconds), so reads through it count themselves.
pub(crate) async fn schema(p: &Proxy, delay: f64) -> Result<()> {
    p.direct()
        .await?
        .batch_execute(&format!(
            "CREATE TABLE \"Item\" (id int PRIMARY KEY, name text NOT NULL); INSERT INTO \"Item\" VALUES (1, 'one'), (2, 'two');
             CREATE SEQUENCE runs;
             CREATE VIEW \"Counted\" AS SELECT i.id, i.name FROM \"Item\" i, (SELECT nextval('runs') AS n, pg_sleep({delay})) s;"
        ))
        .await?;
    Ok(())
}

/// Executions of `Counted` so far.
pub(crate) async fn runs(p: &Proxy) -> Result<i64> {
    let row = p.direct().await?.query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM runs", &[]).await?;
    Ok(row.get(0))
}

/// `POST /query` with key A and the given cache headers.
pub(crate) async fn q(p: &Proxy, body: &Value, cc: Option<&str>, tags: Option<&str>) -> Result<Resp> {
    q_key(p, KEY_A, body, cc, tags).await
}

pub(crate) async fn q_key(p: &Proxy, key: &str, body: &Value, cc: Option<&str>, tags: Option<&str>) -> Result<Resp> {
    let mut req = p.client.post(p.url("/query")).bearer_auth(key).json(body);
    if let Some(cc) = cc {
        req = req.header("cache-control", cc);
    }
    if let Some(t) = tags {
        req = req.header("accelerate-cache-tags", t);
    }
    Resp::from(req.send().await?).await
}

#[track_caller]
pub(crate) fn status(r: &Resp) -> &str {
    assert_eq!(r.status, 200, "{}", r.text);
    r.header("accelerate-cache-status").unwrap_or("<absent>")
}

pub(crate) fn names(r: &Resp) -> Vec<String> {
    r.json["data"].as_array().into_iter().flatten().map(|v| v["name"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_miss_ttl_swr_and_exactly_one_refresh() -> Result<()> {
    let p = Setup::new("cache_states").await?.start().await?;
    schema(&p, 0.2).await?;
    let body = find_many("Counted", 0);
    // No strategy: none, and it runs.
    for cc in [None, Some("no-cache")] {
        let r = q(&p, &body, cc, None).await?;
        assert_eq!(status(&r), "none");
        assert!(r.header("cf-ray").is_some_and(|v| v.contains('-')), "request id in cf-ray form");
    }
    assert_eq!(runs(&p).await?, 2);
    let cc = Some("max-age=1,stale-while-revalidate=60");
    let r = q(&p, &body, cc, None).await?;
    assert_eq!(status(&r), "miss");
    assert_eq!(names(&r), ["one", "two"]);
    let lm = r.header("last-modified").expect("last-modified").to_owned();
    assert!(httpdate_ok(&lm), "{lm}");
    let r = q(&p, &body, cc, None).await?;
    assert_eq!(status(&r), "ttl");
    assert_eq!(r.header("last-modified"), Some(lm.as_str()));
    assert_eq!(names(&r), ["one", "two"]);
    assert_eq!(runs(&p).await?, 3, "a ttl hit does not run");
    p.direct().await?.execute("UPDATE \"Item\" SET name = 'ONE' WHERE id = 1", &[]).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Stale: 8 concurrent requests all get the old rows; exactly one refresh runs.
    let all = futures_util::future::join_all((0..8).map(|_| q(&p, &body, cc, None))).await;
    let mut saw_swr = false;
    for r in all {
        let r = r?;
        let s = status(&r).to_owned();
        assert!(s == "swr" || s == "ttl", "{s}");
        saw_swr |= s == "swr";
        if s == "swr" {
            assert_eq!(names(&r), ["one", "two"], "a swr hit serves the stale result");
        }
    }
    assert!(saw_swr);
    let refreshed = poll(100, || async {
        let r = q(&p, &body, cc, None).await.ok()?;
        (status(&r) == "ttl" && names(&r) == ["ONE", "two"]).then_some(r)
    })
    .await
    .expect("the refreshed entry is served as ttl");
    assert_ne!(refreshed.header("last-modified"), None);
    assert_eq!(runs(&p).await?, 4, "exactly one background refresh");
    let m = p.app().render_metrics();
    assert!(m.contains("tidepool_cache_hits_total{status=\"swr\"}"), "{m}");
    assert!(m.contains("tidepool_cache_refreshes_total 1"), "{m}");
    assert!(m.contains("tidepool_cache_bypasses_total{reason=\"no_strategy\"} 2"), "{m}");
    p.stop().await;
    Ok(())
}

fn httpdate_ok(s: &str) -> bool {
    s.ends_with(" GMT") && s.len() == 29
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_invisible_during_ttl_and_visible_after_ttl_plus_swr() -> Result<()> {
    let p = Setup::new("cache_stale").await?.start().await?;
    schema(&p, 0.0).await?;
    let body = find_many("Item", 0);
    let cc = Some("max-age=1,stale-while-revalidate=1");
    assert_eq!(status(&q(&p, &body, cc, None).await?), "miss");
    p.direct().await?.execute("UPDATE \"Item\" SET name = 'changed' WHERE id = 2", &[]).await?;
    let r = q(&p, &body, cc, None).await?;
    assert_eq!((status(&r), names(&r)), ("ttl", vec!["one".to_owned(), "two".to_owned()]));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = q(&p, &body, cc, None).await?;
    assert_eq!((status(&r), names(&r)), ("miss", vec!["one".to_owned(), "changed".to_owned()]));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_query_once() -> Result<()> {
    let p = Setup::new("cache_flight").await?.start().await?;
    schema(&p, 0.5).await?;
    let body = find_many("Counted", 1);
    let all = futures_util::future::join_all((0..16).map(|_| q(&p, &body, Some("max-age=60"), None))).await;
    for r in all {
        let r = r?;
        let s = status(&r).to_owned();
        assert!(s == "miss" || s == "ttl", "{s}");
        assert_eq!(names(&r), ["one", "two"]);
    }
    assert_eq!(runs(&p).await?, 1, "16 concurrent misses of one key ran the query once");
    // Different parameters are different entries.
    let r = q(&p, &find_many("Counted", 2), Some("max-age=60"), None).await?;
    assert_eq!((status(&r), names(&r)), ("miss", vec!["two".to_owned()]));
    let r = q(&p, &find_many("Counted", 1), Some("max-age=60"), None).await?;
    assert_eq!((status(&r), names(&r)), ("ttl", vec!["one".to_owned(), "two".to_owned()]));
    assert_eq!(runs(&p).await?, 2);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_raw_queries_transactions_and_volatile_functions_are_never_cached() -> Result<()> {
    let p = Setup::new("cache_never").await?.start().await?;
    schema(&p, 0.0).await?;
    let cc = Some("max-age=60");
    for _ in 0..2 {
        let r = q(&p, &raw_query("SELECT name FROM \"Item\" ORDER BY id", json!([])), cc, None).await?;
        assert_eq!(status(&r), "none", "raw query");
        let r = q(&p, &raw_execute("UPDATE \"Item\" SET name = name"), cc, None).await?;
        assert_eq!(status(&r), "none", "write");
        for sql in ["SELECT now()::text AS v", "SELECT random()::text AS v", "SELECT current_user::text AS v", "SELECT CURRENT_TIMESTAMP::text AS v"] {
            let r = q(&p, &find_sql(sql), cc, None).await?;
            assert_eq!(status(&r), "none", "{sql}: {}", r.text);
        }
        let r = q(&p, &find_sql("WITH d AS (UPDATE \"Item\" SET name = name RETURNING name) SELECT name AS v FROM d"), cc, None).await?;
        assert_eq!(status(&r), "none", "data-modifying CTE: {}", r.text);
    }
    // A read with the same plan inside an interactive transaction: none, and it sees its own write.
    let id = p.itx_start(KEY_A, &json!({})).await?;
    let body = find_many("Item", 0);
    assert_eq!(status(&q(&p, &body, cc, None).await?), "miss");
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("UPDATE \"Item\" SET name = 'tx' WHERE id = 1")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut req = p.client.post(p.url(&format!("/transaction/{id}/query"))).bearer_auth(KEY_A).json(&body);
    req = req.header("cache-control", "max-age=60");
    let r = Resp::from(req.send().await?).await?;
    assert_eq!((status(&r), names(&r)), ("none", vec!["tx".to_owned(), "two".to_owned()]));
    let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200);
    let r = q(&p, &body, cc, None).await?;
    assert_eq!((status(&r), names(&r)), ("ttl", vec!["one".to_owned(), "two".to_owned()]));
    let m = p.app().render_metrics();
    assert!(m.contains("tidepool_cache_bypasses_total{reason=\"volatile\"} 8"), "{m}");
    assert!(m.contains("tidepool_cache_bypasses_total{reason=\"transaction\"} 1"), "{m}");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_by_tag_all_and_only_the_keys_database() -> Result<()> {
    let key_c = "tp-test-key-cccccccccccccccccccc";
    let tail = format!(
        "[[databases]]\nname = \"other\"\nurl = \"{{url}}\"\n\n[[api_keys]]\nsha256 = \"{}\"\ndatabase = \"other\"\n",
        hex::encode(tidepool::keys::hash_key(key_c))
    );
    let p = Setup::new("cache_inval").await?.tail(&tail).start().await?;
    schema(&p, 0.0).await?;
    let (users, posts) = (find_many("Item", 1), find_many("Item", 2));
    let cc = Some("max-age=600");
    assert_eq!(status(&q(&p, &users, cc, Some("users")).await?), "miss");
    assert_eq!(status(&q(&p, &posts, cc, Some("posts,all_items")).await?), "miss");
    assert_eq!(status(&q_key(&p, key_c, &users, cc, Some("users")).await?), "miss");
    // Without a key: 401, nothing dropped.
    let r = p.prisma("/invalidate", None, &json!({"tags": ["users"]})).await?;
    r.prisma_err(401, "P6002");
    // Another database's key drops only that database's entries.
    let r = p.prisma("/invalidate", Some(key_c), &json!({"tags": ["users"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status(&q(&p, &users, cc, Some("users")).await?), "ttl");
    assert_eq!(status(&q_key(&p, key_c, &users, cc, Some("users")).await?), "miss");
    // By tag: only entries with the tag.
    let r = p.prisma("/invalidate", Some(KEY_B), &json!({"tags": ["users"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status(&q(&p, &users, cc, Some("users")).await?), "miss");
    assert_eq!(status(&q(&p, &posts, cc, Some("posts,all_items")).await?), "ttl");
    // "all": everything of the database.
    let r = p.prisma("/invalidate", Some(KEY_A), &json!({"tags": "all"})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(status(&q(&p, &posts, cc, Some("posts,all_items")).await?), "miss");
    assert_eq!(status(&q(&p, &users, cc, Some("users")).await?), "miss");
    assert_eq!(status(&q_key(&p, key_c, &users, cc, Some("users")).await?), "ttl", "other database untouched by all");
    let m = p.app().render_metrics();
    assert!(m.contains("tidepool_cache_invalidations_total{kind=\"tags\"} 2"), "{m}");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cache_input_gets_prisma_errors_and_the_server_carries_on() -> Result<()> {
    let p = Setup::new("cache_bad").await?.cache("max_entry_bytes = 20").cache("invalidations_per_minute = 3").start().await?;
    schema(&p, 0.0).await?;
    let body = find_many("Item", 0);
    for cc in ["max-age=-1", "max-age=abc", "max-age=1.5", "stale-while-revalidate=", "max-age=99999999999999999999"] {
        q(&p, &body, Some(cc), None).await?.prisma_err(400, "P6005");
    }
    let many: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    q(&p, &body, Some("max-age=60"), Some(&many.join(","))).await?.prisma_err(400, "P6005");
    q(&p, &body, Some("max-age=60"), Some("a,b,c,d,e,f")).await?.prisma_err(400, "P6005");
    q(&p, &body, Some("max-age=60"), Some("bad-tag")).await?.prisma_err(400, "P6005");
    // A 1 MB tag header never reaches the handler (431 from the header limit).
    let r = q(&p, &body, Some("max-age=60"), Some(&"a".repeat(1 << 20))).await;
    if let Ok(r) = r {
        assert!(r.status == 431 || r.status == 400, "1 MB header: {}", r.status);
    }
    // Larger than max_entry_bytes: served, never stored.
    for _ in 0..2 {
        assert_eq!(status(&q(&p, &body, Some("max-age=60"), None).await?), "miss");
    }
    assert!(p.app().render_metrics().contains("tidepool_cache_bypasses_total{reason=\"too_large\"} 2"));
    // Invalidate: malformed bodies are 400 (they count against the limit too), then 429 P6003.
    p.prisma_bytes("/invalidate", Some(KEY_A), b"{".to_vec()).await?.prisma_err(400, "P6005");
    p.prisma("/invalidate", Some(KEY_A), &json!({"tags": ["a", "b", "c", "d", "e", "f"]})).await?.prisma_err(400, "P6005");
    p.prisma("/invalidate", Some(KEY_A), &json!({"tags": []})).await?.prisma_err(400, "P6005");
    let msg = p.prisma("/invalidate", Some(KEY_A), &json!({"tags": ["ok"]})).await?.prisma_err(429, "P6003").to_owned();
    assert!(msg.contains("rate limit"), "{msg}");
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_on_write_drops_entries_that_read_the_table() -> Result<()> {
    let p = Setup::new("cache_onwrite").await?.cache("invalidate_on_write = true").start().await?;
    schema(&p, 0.0).await?;
    p.direct().await?.batch_execute("CREATE TABLE other (id int); INSERT INTO other VALUES (1);").await?;
    let items = find_many("Item", 0);
    let other = find_sql("SELECT id::text AS v FROM other");
    let cc = Some("max-age=600");
    assert_eq!(status(&q(&p, &items, cc, None).await?), "miss");
    assert_eq!(status(&q(&p, &other, cc, None).await?), "miss");
    // A write through the Prisma API drops the entries that read "Item" only.
    let r = q(&p, &raw_execute("UPDATE \"Item\" SET name = 'prisma' WHERE id = 1"), None, None).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = q(&p, &items, cc, None).await?;
    assert_eq!((status(&r), names(&r)[0].as_str()), ("miss", "prisma"));
    assert_eq!(status(&q(&p, &other, cc, None).await?), "ttl");
    // A write in an interactive transaction: a read between the write and the commit caches the
    // old rows; the commit drops them.
    let id = p.itx_start(KEY_A, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_A), &raw_execute("UPDATE \"Item\" SET name = 'itx' WHERE id = 1")).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = q(&p, &items, cc, None).await?;
    assert_eq!((status(&r), names(&r)[0].as_str()), ("miss", "prisma"));
    assert_eq!(status(&q(&p, &items, cc, None).await?), "ttl");
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_A), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = q(&p, &items, cc, None).await?;
    assert_eq!((status(&r), names(&r)[0].as_str()), ("miss", "itx"));
    // A write through /sql.
    p.neon_rows("UPDATE \"Item\" SET name = 'neon' WHERE id = 1").await?;
    let r = q(&p, &items, cc, None).await?;
    assert_eq!((status(&r), names(&r)[0].as_str()), ("miss", "neon"));
    // A write through the Postgres wire protocol.
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user={TRUST_USER} dbname={DB}", p.app_pg_port()), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.simple_query("UPDATE \"Item\" SET name = 'wire' WHERE id = 1").await?;
    client.execute("UPDATE \"Item\" SET name = $1 WHERE id = 2", &[&"wire2"]).await?;
    let r = q(&p, &items, cc, None).await?;
    assert_eq!((status(&r), names(&r)), ("miss", vec!["wire".to_owned(), "wire2".to_owned()]));
    assert_eq!(status(&q(&p, &other, cc, None).await?), "ttl");
    p.stop().await;
    Ok(())
}

/// `POST /sql` as [`USER`] with extra headers.
async fn sql(p: &Proxy, body: &Value, extra: &[(&str, &str)]) -> Result<Resp> {
    let cs = p.conn_str(USER, Some(USER_PW), DB);
    let mut headers = vec![("neon-connection-string", cs.as_str())];
    headers.extend_from_slice(extra);
    p.neon_raw(&headers, serde_json::to_vec(body)?).await
}

#[track_caller]
fn neon_status(r: &Resp) -> &str {
    assert_eq!(r.status, 200, "{}", r.text);
    r.header("tidepool-cache-status").unwrap_or("<absent>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_sql_opts_in_with_tidepool_cache_headers() -> Result<()> {
    let p = Setup::new("cache_neon").await?.start().await?;
    schema(&p, 0.0).await?;
    let read = json!({"query": "SELECT id, name FROM \"Counted\" WHERE id >= $1 ORDER BY id", "params": [1]});
    let ttl = [("tidepool-cache-ttl", "600"), ("tidepool-cache-tags", "items")];
    assert_eq!(neon_status(&sql(&p, &read, &[]).await?), "none");
    let r = sql(&p, &read, &ttl).await?;
    assert_eq!(neon_status(&r), "miss");
    assert!(r.header("last-modified").is_some());
    let rows = r.json["rows"].clone();
    let r = sql(&p, &read, &ttl).await?;
    assert_eq!(neon_status(&r), "ttl");
    assert_eq!(r.json["rows"], rows);
    assert_eq!(runs(&p).await?, 2, "none ran, miss ran, ttl did not");
    // Output options and parameters are part of the key.
    assert_eq!(neon_status(&sql(&p, &read, &[ttl[0], ttl[1], ("neon-array-mode", "true")]).await?), "miss");
    let r = sql(&p, &json!({"query": "SELECT id, name FROM \"Counted\" WHERE id >= $1 ORDER BY id", "params": [2]}), &ttl).await?;
    assert_eq!((neon_status(&r), r.json["rows"].as_array().map(Vec::len)), ("miss", Some(1)));
    // A batch of reads is cached as a whole.
    let batch = json!({"queries": [{"query": "SELECT 1 AS a FROM \"Item\" LIMIT 1", "params": []}, {"query": "SELECT name FROM \"Item\" WHERE id = $1", "params": [1]}]});
    assert_eq!(neon_status(&sql(&p, &batch, &ttl).await?), "miss");
    assert_eq!(neon_status(&sql(&p, &batch, &ttl).await?), "ttl");
    // Writes and volatile functions: none.
    for q in ["UPDATE \"Item\" SET name = name", "SELECT now()", "SELECT pg_backend_pid()"] {
        assert_eq!(neon_status(&sql(&p, &json!({"query": q, "params": []}), &ttl).await?), "none", "{q}");
    }
    // Invalidation through the Prisma endpoint (same database) drops /sql entries too.
    let r = p.prisma("/invalidate", Some(KEY_A), &json!({"tags": ["items"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(neon_status(&sql(&p, &read, &ttl).await?), "miss");
    // Bad values: 400, and the server carries on.
    for bad in [
        [("tidepool-cache-ttl", "-1"), ("tidepool-cache-swr", "1")],
        [("tidepool-cache-ttl", "60"), ("tidepool-cache-swr", "x")],
        [("tidepool-cache-ttl", "60"), ("tidepool-cache-tags", "a b")],
    ] {
        let r = sql(&p, &read, &bad).await?;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text);
    }
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}
