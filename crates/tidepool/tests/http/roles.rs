//! API keys bound to upstream roles (`[[databases.roles]]`, `role` in `[[api_keys]]`): each key
//! runs as its role's own login on the role's own pool, so `RESET ROLE`, `SET ROLE` and
//! `SET SESSION AUTHORIZATION` in raw SQL (Prisma raw, Neon /sql) cannot leave the role; role
//! pools bound server connections per role; `tidepool keys create --role` round trip.

use anyhow::Result;
use serde_json::{json, Value};
use tidepool_testkit::{BackendFilter, TestCluster, SCRAM_USER};

use crate::common::*;

/// Keys bound to the roles (KEY_A / KEY_B of the common setup have no role).
const KEY_R: &str = "tp-test-key-reader-rrrrrrrrrrrrrr";
const KEY_W: &str = "tp-test-key-writer-wwwwwwwwwwwwww";
const READER_POOL: usize = 2;
const WRITER_POOL: usize = 3;

/// Upstream logins of the two roles (cluster-wide names, so made unique per test database).
struct Roles {
    reader: String,
    writer: String,
}

/// A fresh database with table `items` (owned by the upstream user), login roles
/// `<db>_reader` (SELECT only) and `<db>_writer` (SELECT, INSERT) created with SQL, and a
/// tidepool config binding `KEY_R`/`KEY_W` to them.
async fn setup(prefix: &str) -> Result<(Setup, Roles)> {
    let s = Setup::new(prefix).await?;
    let cluster = TestCluster::shared().await?;
    let roles = Roles { reader: format!("{}_reader", s.real_db), writer: format!("{}_writer", s.real_db) };
    let su = cluster.client(&s.real_db).await?;
    su.batch_execute(&format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE {r} LOGIN PASSWORD 'reader-pw';
         CREATE ROLE {w} LOGIN PASSWORD 'writer-pw';",
        r = roles.reader,
        w = roles.writer
    ))
    .await?;
    let owner = cluster.client_as(SCRAM_USER, &s.real_db).await?;
    owner
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, note text);
             INSERT INTO items VALUES (1, 'seed');
             GRANT SELECT ON items TO {r};
             GRANT SELECT, INSERT ON items TO {w};",
            r = roles.reader,
            w = roles.writer
        ))
        .await?;
    let writer_url = cluster.url_with_password(&roles.writer, Some("writer-pw"), &s.real_db);
    let s = s.db("pool_size = 10\npool_timeout = \"1s\"").http("itx_max_per_key_share = 1.0\nitx_max_share = 1.0").append(&format!(
        r#"
[[databases.roles]]
name = "reader"
user = "{r}"
password = "reader-pw"
pool_size = {READER_POOL}

[[databases.roles]]
name = "writer"
url = "{wurl}"
pool_size = {WRITER_POOL}

[[api_keys]]
sha256 = "{kr}"
database = "{DB}"
role = "reader"
label = "reader"

[[api_keys]]
sha256 = "{kw}"
database = "{DB}"
role = "writer"
label = "writer"
"#,
        r = roles.reader,
        wurl = writer_url,
        kr = hex::encode(tidepool::keys::hash_key(KEY_R)),
        kw = hex::encode(tidepool::keys::hash_key(KEY_W)),
    ));
    Ok((s, roles))
}

/// `$queryRaw` of `sql` with `key`; asserts success and returns the rows.
async fn rows(p: &Proxy, key: &str, sql: &str) -> Result<Value> {
    let r = p.prisma("/query", Some(key), &raw_query(sql, json!([]))).await?;
    assert_eq!(r.status, 200, "{sql}: {}", r.text);
    Ok(r.json["data"]["rows"].clone())
}

/// Asserts a Prisma raw-query failure with SQLSTATE `code` (P2010 carries it in the message).
#[track_caller]
fn raw_failed(r: &Resp, code: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text);
    assert_eq!(r.s("code"), "P2010", "{what}: {}", r.text);
    assert!(r.text.contains(code), "{what}: want SQLSTATE {code}: {}", r.text);
}

/// POST /sql with an API key as `Authorization: Bearer`.
async fn neon_key(p: &Proxy, key: &str, body: &Value) -> Result<Resp> {
    let cs = p.conn_str("anyone", None, DB);
    let auth = format!("Bearer {key}");
    p.neon_raw(&[("neon-connection-string", &cs), ("authorization", &auth)], serde_json::to_vec(body)?).await
}

async fn item_count(p: &Proxy) -> Result<i64> {
    Ok(p.direct().await?.query_one("SELECT count(*) FROM items", &[]).await?.get(0))
}

#[tokio::test]
async fn keys_of_two_roles_run_as_their_roles() -> Result<()> {
    let (s, roles) = setup("roles_current_user").await?;
    let p = s.start().await?;
    let who = "SELECT current_user::text AS cu, session_user::text AS su";
    assert_eq!(rows(&p, KEY_R, who).await?, json!([[roles.reader, roles.reader]]));
    assert_eq!(rows(&p, KEY_W, who).await?, json!([[roles.writer, roles.writer]]));
    assert_eq!(rows(&p, KEY_A, who).await?, json!([[SCRAM_USER, SCRAM_USER]]), "a key without a role runs as the database's user");

    // Neon /sql with the same keys.
    for (key, user) in [(KEY_R, &roles.reader), (KEY_W, &roles.writer), (KEY_A, &SCRAM_USER.to_owned())] {
        let r = neon_key(&p, key, &json!({"query": "SELECT current_user::text AS cu", "params": []})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["rows"], json!([{"cu": user}]));
    }
    // A password login on /sql runs as the database's user.
    assert_eq!(p.neon_rows("SELECT current_user::text AS cu").await?, vec![json!({"cu": SCRAM_USER})]);

    // Interactive transactions lease from the key's role pool too.
    let id = p.itx_start(KEY_R, &json!({})).await?;
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_R), &raw_query("SELECT current_user::text", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[roles.reader]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_R), &json!({})).await?;
    assert_eq!(r.status, 200, "{}", r.text);

    // The routing API other layers (the query cache) key by: the role a request runs as.
    let app = p.app();
    let target = |key: &str| app.target_for_key(&app.api_keys.lookup(key).expect("key")).expect("target");
    assert_eq!((target(KEY_R).upstream_role(), target(KEY_R).role_name()), (roles.reader.as_str(), Some("reader")));
    assert_eq!((target(KEY_W).upstream_role(), target(KEY_W).pool_size()), (roles.writer.as_str(), WRITER_POOL));
    assert_eq!((target(KEY_A).upstream_role(), target(KEY_A).role_name()), (SCRAM_USER, None));
    assert_eq!(target(KEY_A).pool_size(), 10 - READER_POOL - WRITER_POOL, "the own pool keeps what the roles leave");

    // Each role logged in as itself upstream.
    let cluster = TestCluster::shared().await?;
    assert!(cluster.backend_count(&p.real_db, BackendFilter::User(roles.reader.clone())).await? >= 1);
    assert!(cluster.backend_count(&p.real_db, BackendFilter::User(roles.writer.clone())).await? >= 1);
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn reader_cannot_write_and_cannot_leave_its_role() -> Result<()> {
    let (s, roles) = setup("roles_escape").await?;
    let p = s.start().await?;
    let insert = |id: i32| format!("INSERT INTO items VALUES ({id}, 'x')");

    // Plain write: refused.
    let r = p.prisma("/query", Some(KEY_R), &raw_execute(&insert(10))).await?;
    raw_failed(&r, "42501", "reader INSERT");

    // RESET ROLE succeeds (there is nothing to reset: the session's user is the reader) and
    // changes nothing: on the same connection (one interactive transaction) the reader is still
    // current_user and the INSERT is still refused.
    let id = p.itx_start(KEY_R, &json!({})).await?;
    let q = |sql: String| raw_execute(&sql);
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_R), &q("RESET ROLE".into())).await?;
    assert_eq!(r.status, 200, "RESET ROLE: {}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_R), &raw_query("SELECT current_user::text", json!([]))).await?;
    assert_eq!(r.json["data"]["rows"], json!([[roles.reader]]), "{}", r.text);
    let r = p.prisma(&format!("/transaction/{id}/query"), Some(KEY_R), &q(insert(11))).await?;
    raw_failed(&r, "42501", "INSERT after RESET ROLE");
    let _ = p.prisma(&format!("/transaction/{id}/rollback"), Some(KEY_R), &json!({})).await?;

    // Becoming the table's owner or another role is refused.
    for sql in
        [format!("SET ROLE {SCRAM_USER}"), format!("SET ROLE {}", roles.writer), format!("SET SESSION AUTHORIZATION {SCRAM_USER}"), "SET ROLE postgres".into()]
    {
        let r = p.prisma("/query", Some(KEY_R), &raw_execute(&sql)).await?;
        raw_failed(&r, "42501", &sql);
    }

    // The same through Neon /sql: a batch runs on one connection in one transaction.
    let batch = json!({"queries": [{"query": "RESET ROLE", "params": []}, {"query": insert(12), "params": []}]});
    let r = neon_key(&p, KEY_R, &batch).await?;
    r.neon_err(400, "42501");
    let batch = json!({"queries": [{"query": "RESET SESSION AUTHORIZATION", "params": []}, {"query": "SELECT current_user::text AS cu", "params": []}]});
    let r = neon_key(&p, KEY_R, &batch).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][1]["rows"], json!([{"cu": roles.reader}]), "{}", r.text);
    let r = neon_key(&p, KEY_R, &json!({"query": format!("SET ROLE {SCRAM_USER}"), "params": []})).await?;
    r.neon_err(400, "42501");
    let r = neon_key(&p, KEY_R, &json!({"query": insert(13), "params": []})).await?;
    r.neon_err(400, "42501");

    // Nothing was written; the writer (same table, same proxy) can write, so the refusals above
    // were the reader's permissions, not a broken table.
    assert_eq!(item_count(&p).await?, 1);
    let r = p.prisma("/query", Some(KEY_W), &raw_execute(&insert(20))).await?;
    assert_eq!(r.status, 200, "writer INSERT: {}", r.text);
    assert_eq!(item_count(&p).await?, 2);
    // And the reader still reads, as itself.
    assert_eq!(rows(&p, KEY_R, "SELECT count(*)::int AS n, current_user::text FROM items").await?, json!([[2, roles.reader]]));
    p.stop().await;
    Ok(())
}

/// Connections of `user` to the test database (pg_stat_activity).
async fn backends(p: &Proxy, user: &str) -> Result<i64> {
    TestCluster::shared().await?.backend_count(&p.real_db, BackendFilter::User(user.to_owned())).await
}

#[tokio::test]
async fn role_pools_bound_server_connections_per_role() -> Result<()> {
    let (s, roles) = setup("roles_pool_bound").await?;
    let p = s.start().await?;

    // Concurrent load on both roles: never more backends per role than its pool_size.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let key = if i % 2 == 0 { KEY_R } else { KEY_W };
        let client = p.client.clone();
        let url = p.url("/query");
        tasks.push(tokio::spawn(async move {
            let body = raw_query("SELECT pg_sleep(0.05)::text", json!([]));
            client.post(url).header("authorization", format!("Bearer {key}")).json(&body).send().await.map(|r| r.status().as_u16())
        }));
    }
    // One observer connection samples both roles' backends in one snapshot while the load runs.
    let observer = TestCluster::shared().await?.client("postgres").await?;
    let per_user = "SELECT count(*) FILTER (WHERE usename = $2), count(*) FILTER (WHERE usename = $3) \
                    FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'";
    let (mut max_r, mut max_w) = (0i64, 0i64);
    while tasks.iter().any(|t| !t.is_finished()) {
        let row = observer.query_one(per_user, &[&p.real_db, &roles.reader, &roles.writer]).await?;
        max_r = max_r.max(row.get(0));
        max_w = max_w.max(row.get(1));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for t in tasks {
        let status = t.await??;
        assert!(status == 200 || status == 503, "status {status}");
    }
    max_r = max_r.max(backends(&p, &roles.reader).await?);
    max_w = max_w.max(backends(&p, &roles.writer).await?);
    assert!((1..=READER_POOL as i64).contains(&max_r), "reader backends {max_r} (pool {READER_POOL})");
    assert!((1..=WRITER_POOL as i64).contains(&max_w), "writer backends {max_w} (pool {WRITER_POOL})");

    // Pin the whole reader pool in interactive transactions: exactly READER_POOL backends log in
    // as the reader, a further reader request times out on the reader pool, while the writer and
    // a key without a role are served from their own pools.
    let mut open = Vec::new();
    for _ in 0..READER_POOL {
        open.push(p.itx_start(KEY_R, &json!({"timeout": 20000})).await?);
    }
    assert_eq!(backends(&p, &roles.reader).await?, READER_POOL as i64);
    let r = p.prisma("/query", Some(KEY_R), &raw_query("SELECT 1", json!([]))).await?;
    let msg = r.prisma_err(503, "P2024");
    assert!(msg.contains("app/reader"), "the error names the role pool: {msg}");
    assert_eq!(rows(&p, KEY_W, "SELECT current_user::text").await?, json!([[roles.writer]]));
    assert_eq!(rows(&p, KEY_A, "SELECT current_user::text").await?, json!([[SCRAM_USER]]));
    assert_eq!(backends(&p, &roles.reader).await?, READER_POOL as i64, "the reader pool opened no more");
    for id in open {
        let r = p.prisma(&format!("/transaction/{id}/commit"), Some(KEY_R), &json!({})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(rows(&p, KEY_R, "SELECT current_user::text").await?, json!([[roles.reader]]));

    // Role pools report metrics with a `role` label; the database's own pool keeps its series.
    let m = p.app().render_metrics();
    assert!(m.contains(r#"tidepool_pool_connections_opened_total{database="app",role="reader"}"#), "{m}");
    assert!(m.contains(r#"tidepool_pool_connections_opened_total{database="app",role="writer"}"#), "{m}");
    assert!(m.contains(r#"tidepool_pool_timeouts_total{database="app",role="reader"} 1"#), "{m}");
    assert!(m.contains(r#"tidepool_pool_connections_opened_total{database="app"}"#), "{m}");
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn keys_create_role_round_trip_and_unknown_roles_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("keys.toml");
    let (s, roles) = setup("roles_cli").await?;
    let s = s.http(&format!("api_key_file = {:?}", key_file.display().to_string()));
    let config = dir.path().join("tidepool.toml");
    std::fs::write(&config, s.toml())?;
    let cli = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_tidepool")).arg("keys").args(args).arg("--config").arg(&config).output();

    let out = cli(&["create", "--database", DB, "--role", "reader", "--label", "ro"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout)?.trim().to_owned();
    assert!(key.starts_with("tp_"), "{key}");
    let out = cli(&["create", "--database", DB, "--role", "admin"])?;
    assert!(!out.status.success(), "a role the database lacks was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no role \"admin\""), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["list"])?;
    let listed = String::from_utf8(out.stdout)?;
    assert!(listed.lines().any(|l| l.contains(" reader ") && l.ends_with("ro")), "{listed}");

    // A key file entry naming a role the config lacks (written behind the CLI's back).
    let ghost = tidepool::keys::create(&key_file, DB, Some("ghost"), "ghost")?;

    let p = s.start().await?;
    assert_eq!(rows(&p, &key, "SELECT current_user::text").await?, json!([[roles.reader]]));
    let r = p.prisma("/query", Some(&key), &raw_execute("INSERT INTO items VALUES (5, 'x')")).await?;
    raw_failed(&r, "42501", "CLI reader key INSERT");
    // The ghost key is refused outright, never run as the database's own user.
    let r = p.prisma("/query", Some(&ghost), &raw_query("SELECT current_user::text", json!([]))).await?;
    r.prisma_err(401, "P6002");
    let r = neon_key(&p, &ghost, &json!({"query": "SELECT 1", "params": []})).await?;
    r.neon_err(400, "28P01");
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

/// The query cache keys entries by the role a request runs as: under row-level security the
/// reader and the writer see different rows for the same request, and neither is ever served
/// the other's cached entry; two keys of the same role share entries.
#[tokio::test]
async fn cached_entries_are_per_role() -> Result<()> {
    use crate::cache::{find_sql, q_key, status};
    const KEY_R2: &str = "tp-test-key-reader2-qqqqqqqqqqqqq";
    let (s, roles) = setup("roles_cache").await?;
    let s = s.append(&format!(
        "[[api_keys]]\nsha256 = \"{}\"\ndatabase = \"{DB}\"\nrole = \"reader\"\nlabel = \"reader2\"\n",
        hex::encode(tidepool::keys::hash_key(KEY_R2))
    ));
    let p = s.start().await?;
    let owner = TestCluster::shared().await?.client_as(SCRAM_USER, &p.real_db).await?;
    owner
        .batch_execute(&format!(
            "CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, v text NOT NULL);
             INSERT INTO notes VALUES (1, '{r}', 'reader row'), (2, '{w}', 'writer row');
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mine ON notes USING (owner = current_user);
             GRANT SELECT ON notes TO {r}, {w};",
            r = roles.reader,
            w = roles.writer
        ))
        .await?;
    let body = find_sql("SELECT \"t0\".\"v\" FROM \"public\".\"notes\" AS \"t0\" ORDER BY \"t0\".\"id\"");
    let values = |r: &Resp| r.json["data"].as_array().into_iter().flatten().map(|v| v["v"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>();
    let cc = Some("max-age=60");

    let r = q_key(&p, KEY_R, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("miss", vec!["reader row".to_owned()]));
    let r = q_key(&p, KEY_R, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("ttl", vec!["reader row".to_owned()]));
    // The writer's identical request is its own entry, with its own rows.
    let r = q_key(&p, KEY_W, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("miss", vec!["writer row".to_owned()]), "the reader's entry must not serve the writer");
    let r = q_key(&p, KEY_W, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("ttl", vec!["writer row".to_owned()]));
    // A key without a role runs as the table owner (RLS does not apply to it): again its own entry.
    let r = q_key(&p, KEY_A, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("miss", vec!["reader row".to_owned(), "writer row".to_owned()]));
    // Another key of the reader role shares the reader's entry.
    let r = q_key(&p, KEY_R2, &body, cc, None).await?;
    assert_eq!((status(&r), values(&r)), ("ttl", vec!["reader row".to_owned()]));
    Ok(())
}
