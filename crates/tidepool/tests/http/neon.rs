//! Neon-compatible `POST /sql`: request validation, authentication, limits, Postgres errors with
//! all their fields, batches as one transaction, and sessions left clean between requests.
//! Every failure is checked for its HTTP status and JSON fields, and followed by a normal request
//! that must still work.

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400() -> Result<()> {
    let p = Setup::new("neon_malformed").await?.start().await?;
    let cs = p.conn_str(USER, Some(USER_PW), DB);

    // Not JSON.
    let r = p.neon_raw(&[("neon-connection-string", &cs)], b"SELECT 1".to_vec()).await?;
    let msg = r.neon_err(400, "");
    assert!(msg.contains("could not parse the HTTP request body"), "{msg}");
    // JSON without a query.
    let r = p.neon_raw(&[("neon-connection-string", &cs)], b"{\"params\": []}".to_vec()).await?;
    r.neon_err(400, "");

    // No connection string.
    let r = p.neon_raw(&[], serde_json::to_vec(&json!({"query": "SELECT 1"}))?).await?;
    let msg = r.neon_err(400, "");
    assert!(msg.to_ascii_lowercase().contains("neon-connection-string"), "{msg}");
    // Malformed connection strings.
    for bad in ["not a url", "mysql://alice:pw@host/app", "postgresql://", "postgresql://alice:alice-pw@host"] {
        let r = p.neon_raw(&[("neon-connection-string", bad)], serde_json::to_vec(&json!({"query": "SELECT 1"}))?).await?;
        assert_eq!(r.status, 400, "connection string {bad:?}: {}", r.text);
        assert!(!r.s("message").is_empty(), "connection string {bad:?}: {}", r.text);
    }
    // No password and no bearer token.
    let no_pw = p.conn_str(USER, None, DB);
    let r = p.neon_raw(&[("neon-connection-string", &no_pw)], serde_json::to_vec(&json!({"query": "SELECT 1"}))?).await?;
    let msg = r.neon_err(400, "");
    assert!(msg.contains("password"), "{msg}");
    // A bad batch option header.
    let r = p
        .neon_raw(
            &[("neon-connection-string", &cs), ("neon-batch-isolation-level", "Chaotic")],
            serde_json::to_vec(&json!({"queries": [{"query": "SELECT 1"}]}))?,
        )
        .await?;
    r.neon_err(400, "");

    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_database_errors_carry_sqlstates() -> Result<()> {
    let p = Setup::new("neon_auth").await?.start().await?;
    let body = serde_json::to_vec(&json!({"query": "SELECT 1"}))?;

    // Wrong password, unknown user: 28P01, the same message shape as PostgreSQL's.
    for (user, pw) in [(USER, "wrong"), ("mallory", "whatever")] {
        let cs = p.conn_str(user, Some(pw), DB);
        let r = p.neon_raw(&[("neon-connection-string", &cs)], body.clone()).await?;
        let msg = r.neon_err(400, "28P01");
        assert_eq!(msg, format!("password authentication failed for user \"{user}\""));
        assert_eq!(r.s("severity"), "FATAL", "{}", r.text);
    }
    // Unknown database.
    let cs = p.conn_str(USER, Some(USER_PW), "nosuchdb");
    let r = p.neon_raw(&[("neon-connection-string", &cs)], body.clone()).await?;
    let msg = r.neon_err(400, "3D000");
    assert!(msg.contains("nosuchdb"), "{msg}");

    // An API key as `Authorization: Bearer` replaces the password.
    let no_pw = p.conn_str(USER, None, DB);
    let auth = format!("Bearer {KEY_A}");
    let r = p.neon_raw(&[("neon-connection-string", &no_pw), ("authorization", &auth)], serde_json::to_vec(&json!({"query": "SELECT 5 AS five"}))?).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["rows"], json!([{"five": 5}]));
    // An unknown key is refused like a wrong password.
    let r = p.neon_raw(&[("neon-connection-string", &no_pw), ("authorization", "Bearer not-a-key")], body.clone()).await?;
    r.neon_err(400, "28P01");
    // A key for another database does not open this one.
    let cs = p.conn_str(USER, None, "nosuchdb");
    let r = p.neon_raw(&[("neon-connection-string", &cs), ("authorization", &auth)], body.clone()).await?;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(["3D000", "28000"].contains(&r.s("code")), "{}", r.text);

    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_limits() -> Result<()> {
    let p = Setup::new("neon_limits").await?.http("max_request_size = 4096").http("max_response_size = 2048").start().await?;
    let big = json!({"query": "SELECT length($1) AS n", "params": ["x".repeat(10_000)]});
    let r = p.neon(&big).await?;
    let msg = r.neon_err(413, "");
    assert!(msg.contains("4096"), "{msg}");

    let r = p.neon(&json!({"query": "SELECT g, repeat('x', 50) AS pad FROM generate_series(1, 1000) g"})).await?;
    let msg = r.neon_err(507, "");
    assert!(msg.contains("2048"), "{msg}");
    // The same in a batch.
    let r = p.neon(&json!({"queries": [{"query": "SELECT 1 AS one"}, {"query": "SELECT g, repeat('x', 50) FROM generate_series(1, 1000) g"}]})).await?;
    r.neon_err(507, "");

    // Just under both limits passes.
    let r = p.neon(&json!({"query": "SELECT length($1) AS n", "params": ["y".repeat(3000)]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["rows"], json!([{"n": 3000}]));
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_have_every_field() -> Result<()> {
    let p = Setup::new("neon_pg_errors").await?.start().await?;
    p.direct().await?.batch_execute("CREATE TABLE t (id int CONSTRAINT t_pkey PRIMARY KEY, v text)").await?;

    // Two statements in one (extended-protocol) query.
    let r = p.neon(&json!({"query": "SELECT 1; SELECT 2"})).await?;
    let msg = r.neon_err(400, "42601");
    assert!(msg.contains("multiple commands"), "{msg}");
    assert_eq!(r.s("severity"), "ERROR", "{}", r.text);

    // Unique violation: constraint, detail, table, schema.
    let r = p.neon(&json!({"query": "INSERT INTO t VALUES ($1, 'a'), ($1, 'b')", "params": [7]})).await?;
    let msg = r.neon_err(400, "23505");
    assert!(msg.contains("t_pkey"), "{msg}");
    assert_eq!(r.s("constraint"), "t_pkey", "{}", r.text);
    assert_eq!(r.s("detail"), "Key (id)=(7) already exists.", "{}", r.text);
    assert_eq!(r.s("table"), "t", "{}", r.text);
    assert_eq!(r.s("schema"), "public", "{}", r.text);
    assert!(!r.s("file").is_empty() && !r.s("routine").is_empty(), "{}", r.text);

    // A syntax error has a position.
    let r = p.neon(&json!({"query": "SELEC 1"})).await?;
    r.neon_err(400, "42601");
    assert_eq!(r.s("position"), "1", "{}", r.text);

    // Wrong parameter type.
    let r = p.neon(&json!({"query": "SELECT $1::int AS n", "params": ["abc"]})).await?;
    r.neon_err(400, "22P02");

    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_one_transaction() -> Result<()> {
    let p = Setup::new("neon_batch").await?.start().await?;
    let direct = p.direct().await?;
    direct.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await?;

    let r = p
        .neon(&json!({"queries": [
            {"query": "INSERT INTO t VALUES (1)"},
            {"query": "INSERT INTO t VALUES (2)"},
            {"query": "INSERT INTO t VALUES (1)"},
            {"query": "INSERT INTO t VALUES (3)"}
        ]}))
        .await?;
    r.neon_err(400, "23505");
    let n: i64 = direct.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(n, 0, "a failed batch left rows behind");

    let r = p
        .neon(&json!({"queries": [
            {"query": "INSERT INTO t VALUES ($1)", "params": [1]},
            {"query": "INSERT INTO t VALUES ($1)", "params": [2]},
            {"query": "SELECT count(*)::int AS n FROM t"}
        ]}))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.json["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "{}", r.text);
    assert_eq!(results[2]["rows"], json!([{"n": 2}]));
    let n: i64 = direct.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(n, 2);

    // Batch isolation options are applied.
    let cs = p.conn_str(USER, Some(USER_PW), DB);
    let r = p
        .neon_raw(
            &[("neon-connection-string", &cs), ("neon-batch-isolation-level", "Serializable"), ("neon-batch-read-only", "true")],
            serde_json::to_vec(&json!({"queries": [
                {"query": "SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro"},
            ]}))?,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][0]["rows"], json!([{"iso": "serializable", "ro": "on"}]), "{}", r.text);

    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight() -> Result<()> {
    let p = Setup::new("neon_cors").await?.start().await?;
    let r = p
        .client
        .request(reqwest::Method::OPTIONS, p.url("/sql"))
        .header("origin", "https://example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "neon-connection-string, content-type")
        .send()
        .await?;
    assert!(r.status().is_success(), "OPTIONS /sql: {}", r.status());
    let h = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(h("access-control-allow-origin"), "*");
    let allowed = h("access-control-allow-headers").to_ascii_lowercase();
    for needed in [
        "neon-connection-string",
        "authorization",
        "neon-array-mode",
        "neon-raw-text-output",
        "neon-batch-isolation-level",
        "tidepool-cache-ttl",
        "tidepool-cache-swr",
        "tidepool-cache-tags",
    ] {
        assert!(allowed.contains(needed), "allow-headers lacks {needed}: {allowed}");
    }
    assert!(h("allow").contains("POST") || h("access-control-allow-methods").contains("POST"), "no POST allowed");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

/// Single-value helper: the only row's only column.
fn only(rows: &[Value]) -> Value {
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].as_object().and_then(|o| o.values().next()).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_begin_does_not_leak_into_the_next_request() -> Result<()> {
    let p = Setup::new("neon_begin").await?.db("pool_size = 1").start().await?;
    let direct = p.direct().await?;
    direct.batch_execute("CREATE TABLE t (id int)").await?;
    let pid = only(&p.neon_rows("SELECT pg_backend_pid() AS pid").await?);

    let r = p.neon(&json!({"query": "BEGIN"})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    // Same server connection (pool_size 1), not in a transaction any more.
    assert_eq!(only(&p.neon_rows("SELECT pg_backend_pid() AS pid").await?), pid);
    let r = p.neon(&json!({"query": "SAVEPOINT s"})).await?;
    r.neon_err(400, "25P01");
    // An insert is committed at once, visible from outside.
    let r = p.neon(&json!({"query": "INSERT INTO t VALUES (1)"})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let n: i64 = direct.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(n, 1, "insert after a stray BEGIN is not committed");

    // A batch that opens a transaction of its own inside is not left open either.
    let r = p.neon(&json!({"queries": [{"query": "INSERT INTO t VALUES (2)"}, {"query": "SELECT 1/0"}]})).await?;
    r.neon_err(400, "22012");
    let r = p.neon(&json!({"query": "SAVEPOINT s"})).await?;
    r.neon_err(400, "25P01");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_do_not_leak_between_requests() -> Result<()> {
    let p = Setup::new("neon_set").await?.db("pool_size = 1").start().await?;
    tidepool_testkit::TestCluster::shared()
        .await?
        .client(&p.real_db)
        .await?
        .batch_execute(&format!(
            "CREATE SCHEMA other; CREATE TABLE other.only_there (x int); \
             GRANT USAGE ON SCHEMA other TO {u}; GRANT SELECT ON other.only_there TO {u}",
            u = tidepool_testkit::SCRAM_USER
        ))
        .await?;
    let pid = only(&p.neon_rows("SELECT pg_backend_pid() AS pid").await?);
    let default_path = only(&p.neon_rows("SHOW search_path").await?);

    for set in ["SET search_path TO other", "SET TimeZone TO 'America/New_York'", "SET SESSION DateStyle TO 'German'"] {
        let r = p.neon(&json!({"query": set})).await?;
        assert_eq!(r.status, 200, "{set}: {}", r.text);
        assert_eq!(only(&p.neon_rows("SELECT pg_backend_pid() AS pid").await?), pid, "pool_size 1: same connection");
        assert_eq!(only(&p.neon_rows("SHOW search_path").await?), default_path, "after {set}");
        assert_eq!(only(&p.neon_rows("SHOW TimeZone").await?), json!("UTC"), "after {set}");
        assert_eq!(only(&p.neon_rows("SHOW DateStyle").await?), json!("ISO, MDY"), "after {set}");
    }
    // SET inside a batch: also gone afterwards.
    let r = p.neon(&json!({"queries": [{"query": "SET search_path TO other"}, {"query": "SELECT count(*)::int AS n FROM only_there"}]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][1]["rows"], json!([{"n": 0}]));
    let r = p.neon(&json!({"query": "SELECT count(*) FROM only_there"})).await?;
    r.neon_err(400, "42P01");
    // set_config(…, false) is a SET too.
    let r = p.neon(&json!({"query": "SELECT set_config('search_path', 'other', false) AS v"})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(only(&p.neon_rows("SHOW search_path").await?), default_path, "after set_config");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_inside_do_block_does_not_leak() -> Result<()> {
    let p = Setup::new("neon_set_do").await?.db("pool_size = 1").start().await?;
    let default_path = only(&p.neon_rows("SHOW search_path").await?);
    let r = p.neon(&json!({"query": "DO $$ BEGIN EXECUTE 'SET search_path TO pg_catalog'; END $$"})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(only(&p.neon_rows("SHOW search_path").await?), default_path, "SET inside DO leaked");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_are_pinned() -> Result<()> {
    let setup = Setup::new("neon_pinned").await?.db("pool_size = 1");
    // Make the database's own defaults differ from what JSON encoding needs.
    alter_database_defaults(&setup.real_db).await?;
    let p = setup.start().await?;
    for _ in 0..2 {
        assert_eq!(only(&p.neon_rows("SHOW TimeZone").await?), json!("UTC"));
        assert_eq!(only(&p.neon_rows("SHOW DateStyle").await?), json!("ISO, MDY"));
        assert_eq!(only(&p.neon_rows("SHOW bytea_output").await?), json!("hex"));
        assert_eq!(only(&p.neon_rows("SHOW IntervalStyle").await?), json!("postgres"));
        assert_eq!(only(&p.neon_rows("SELECT '\\x0102'::bytea AS b").await?), json!("\\x0102"));
        assert_eq!(only(&p.neon_rows("SELECT '2024-01-02 03:04:05+00'::timestamptz::text AS t").await?), json!("2024-01-02 03:04:05+00"));
        // A request that dirties the session (and is reset with DISCARD ALL) in between.
        let r = p.neon(&json!({"query": "SET TimeZone TO 'Asia/Tokyo'"})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    p.stop().await;
    Ok(())
}

/// Sets per-database defaults that differ from the settings HTTP sessions are pinned to; new
/// server connections pick them up.
async fn alter_database_defaults(real_db: &str) -> Result<()> {
    let c = tidepool_testkit::TestCluster::shared().await?.client(real_db).await?;
    c.batch_execute(&format!(
        "ALTER DATABASE \"{real_db}\" SET TimeZone = 'America/New_York'; \
         ALTER DATABASE \"{real_db}\" SET DateStyle = 'SQL, DMY'; \
         ALTER DATABASE \"{real_db}\" SET bytea_output = 'escape'; \
         ALTER DATABASE \"{real_db}\" SET IntervalStyle = 'iso_8601'"
    ))
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_the_query() -> Result<()> {
    let p = Setup::new("neon_timeout").await?.http("query_timeout = \"500ms\"").start().await?;
    let r = bounded("timed-out /sql", 15, p.neon(&json!({"query": "SELECT pg_sleep(30)"}))).await?;
    r.neon_err(400, "08P01");
    let gone = poll(100, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 0).then_some(()) }).await;
    assert!(gone.is_some(), "pg_sleep(30) still running 5 s after the /sql request timed out");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_still_cancels_the_query() -> Result<()> {
    let p = Setup::new("neon_disconnect").await?.http("query_timeout = \"1s\"").db("pool_size = 1").start().await?;
    let cs = p.conn_str(USER, Some(USER_PW), DB);
    let req = p.client.post(p.url("/sql")).header("neon-connection-string", &cs).body(serde_json::to_vec(&json!({"query": "SELECT pg_sleep(30)"}))?);
    let request = tokio::spawn(req.send());
    // Once the query runs upstream, the client goes away.
    let running = poll(100, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 1).then_some(()) }).await;
    assert!(running.is_some(), "pg_sleep(30) never started");
    request.abort();
    let _ = request.await;
    p.neon_ok().await?;
    let gone = poll(120, || async { (active_backends(&p.real_db, "pg_sleep(30)").await.ok()? == 0).then_some(()) }).await;
    assert!(gone.is_some(), "pg_sleep(30) still running 6 s after its client went away (query_timeout 1s)");
    p.stop().await;
    Ok(())
}
