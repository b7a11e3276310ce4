//! Session state an attacker tries to leave on a pooled server connection (settings, temp
//! tables, prepared statements, cursors, LISTEN, advisory locks, read-only defaults), through
//! every front end, and the end-of-suite checks: no injected statement ran, and every pooled
//! connection a later client can get shows the defaults.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::common::*;
use crate::msgs::{frame, sync};
use crate::raw::{query_msg, Raw};
use crate::sql::{check_http, cs, Api, HttpExpect};
use crate::wire::{check, Expect};
use crate::{case, Case, Endpoint, Group};

/// Statements that would each leave something behind on a session; none may reach a later
/// client. Each runs alone (its own request or session).
const LEAVERS: &[(&str, &str)] = &[
    ("a temp table", "CREATE TEMP TABLE leak_tmp (x int)"),
    ("a prepared statement", "PREPARE leak_stmt AS SELECT 1"),
    ("LISTEN", "LISTEN leak_chan"),
    ("an advisory lock", "SELECT pg_advisory_lock(4242)"),
    ("default_transaction_read_only", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
    ("statement_timeout", "SET statement_timeout = 1"),
    ("set_config in a DO block", "DO $$ BEGIN PERFORM set_config('search_path', 'leak_do', false); END $$"),
    ("SET in an upper-case, quoted form", "SeT \"search_path\" = \"leak_q\""),
    ("RESET ALL followed by SET", "RESET ALL; SET application_name = 'leak_ra'"),
    ("EXECUTE of a built string in DO", "DO $$ BEGIN EXECUTE 'SE' || 'T search_path TO leak_dyn'; END $$"),
];

/// A WITH HOLD cursor survives its transaction (wire sessions only: it needs the simple protocol).
const CURSOR: &str = "DECLARE leak_cur CURSOR WITH HOLD FOR SELECT 1";

fn wire_leaver(what: &str, sql: &'static str) -> Case {
    case(Endpoint::Wire, false, format!("wire session leaves {what}"), move |tp| async move {
        let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
        r.send(&query_msg(sql)).await?;
        let msgs = r.until_ready().await?;
        ensure!(!msgs.iter().any(|m| m.tag == b'E'), "{sql}: {msgs:?}");
        Ok(())
    })
}

fn sql_leaver(what: &str, sql: &'static str) -> Case {
    case(Endpoint::Sql, false, format!("/sql request leaves {what}"), move |tp| async move {
        let body = serde_json::to_vec(&json!({"query": sql, "params": []}))?;
        let a = http_raw(tp.http, &request("POST", "/sql", &[("neon-connection-string", cs(ALICE, ALICE_PW, DB).as_bytes())], &body)).await?;
        // Multi-statement strings are refused by the extended protocol (42601); the rest run.
        match a.status {
            Some(200) => Ok(()),
            _ => check_http(&a, HttpExpect::Error(&[400], &["42601"]), Api::Neon),
        }
    })
}

fn prisma_leaver(what: &str, sql: &'static str) -> Case {
    case(Endpoint::Prisma, false, format!("Prisma request leaves {what}"), move |tp| async move {
        let body =
            json!({"operation": "executeRaw", "plan": {"type": "execute", "args": {"type": "rawSql", "sql": sql, "args": [], "argTypes": []}}, "params": {}});
        let a = http_raw(tp.http, &request("POST", "/query", &[("authorization", format!("Bearer {KEY_A}").as_bytes())], &serde_json::to_vec(&body)?)).await?;
        match a.status {
            Some(200) => Ok(()),
            _ => check_http(&a, HttpExpect::Error(&[400], &["P2010"]), Api::Prisma),
        }
    })
}

/// Proves the end-of-suite checks can fail: each leftover, made on a direct connection, is seen
/// by [`PROBE`] (or in `pg_locks`), and a `pwned…` table is found by [`injected_tables`].
pub async fn self_check(tp: &Tidepool) -> Result<()> {
    let cluster = tidepool_testkit::TestCluster::shared().await?;
    for (what, sql) in LEAVERS.iter().chain([&("a WITH HOLD cursor", CURSOR)]) {
        let c = cluster.client_as(tidepool_testkit::SCRAM_USER, &tp.real_db).await?;
        c.batch_execute(sql).await.with_context(|| format!("self-check {what}"))?;
        let probe = probe(&c).await?;
        let locks: i64 = c.query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", &[]).await?.get(0);
        ensure!(leaked(&probe) || locks > 0, "self-check: the probe misses {what}: {probe:?}");
    }
    let c = tp.direct(&tp.real_db).await?;
    c.batch_execute("CREATE TABLE pwned_selfcheck ()").await?;
    let found = injected_tables(tp).await?;
    c.batch_execute("DROP TABLE pwned_selfcheck").await?;
    ensure!(found.iter().any(|t| t.ends_with("pwned_selfcheck")), "self-check: injected_tables missed a table: {found:?}");
    ensure!(injected_tables(tp).await?.is_empty(), "self-check: leftover pwned tables");
    Ok(())
}

pub fn leavers() -> Group {
    let mut cases = Vec::new();
    for (what, sql) in LEAVERS {
        cases.push(wire_leaver(what, sql));
        cases.push(sql_leaver(what, sql));
        cases.push(prisma_leaver(what, sql));
    }
    cases.push(wire_leaver("a WITH HOLD cursor", CURSOR));
    cases.push(case(Endpoint::Wire, false, "set_config through extended-protocol parameters", |tp| async move {
        let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
        let mut bind = b"\0\0\0\0\0\x02".to_vec();
        for v in [&b"search_path"[..], b"leak_ext"] {
            bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
            bind.extend_from_slice(v);
        }
        bind.extend_from_slice(&[0, 0]);
        let parse = frame(b'P', b"\0SELECT set_config($1, $2, false)\0\0\0");
        let _ = r.send(&[parse, frame(b'B', &bind), frame(b'E', b"\0\0\0\0\0"), sync()].concat()).await;
        check(&mut r, Expect::Fine).await
    }));
    cases.push(case(Endpoint::Prisma, false, "SET inside an interactive transaction", |tp| async move {
        let start = request("POST", "/transaction/start", &[("authorization", format!("Bearer {KEY_A}").as_bytes())], b"{}");
        let a = http_raw(tp.http, &start).await?;
        let id = a.json["id"].as_str().context("transaction/start")?.to_owned();
        let body = json!({"operation": "executeRaw", "plan": {"type": "execute", "args": {"type": "rawSql", "sql": "SET search_path TO leak_itx", "args": [], "argTypes": []}}, "params": {}});
        let auth = format!("Bearer {KEY_A}");
        let a = http_raw(tp.http, &request("POST", &format!("/transaction/{id}/query"), &[("authorization", auth.as_bytes())], &serde_json::to_vec(&body)?)).await?;
        ensure!(a.status == Some(200), "{:?} {}", a.status, a.body);
        let a = http_raw(tp.http, &request("POST", &format!("/transaction/{id}/commit"), &[("authorization", auth.as_bytes())], b"{}")).await?;
        ensure!(a.status == Some(200), "{:?} {}", a.status, a.body);
        Ok(())
    }));
    cases.extend(replay_and_listen_abuse());
    Group { name: "session state", parallel: 4, cases }
}

/// Abuse of what transaction mode now keeps per client (replayed SETs, LISTEN channels): each is
/// bounded, refused in order with the session still usable, and never reaches SQL text.
fn replay_and_listen_abuse() -> Vec<Case> {
    vec![
        case(Endpoint::Wire, false, "a huge SET value is refused, not replayed", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&query_msg(&format!("SET application_name = '{}'", "x".repeat(200_000)))).await?;
            check(&mut r, Expect::Error(&["54000"])).await
        }),
        case(Endpoint::Wire, false, "thousands of distinct SETs hit max_session_settings", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            let sets: String = (0..2000).map(|i| format!("SET leak.s{i} = 'v';")).collect();
            r.send(&query_msg(&sets)).await?;
            check(&mut r, Expect::Error(&["54000"])).await
        }),
        case(Endpoint::Wire, false, "thousands of LISTEN channels hit max_listen_channels", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            let listens: String = (0..3000).map(|i| format!("LISTEN leak_c{i};")).collect();
            r.send(&query_msg(&listens)).await?;
            check(&mut r, Expect::Error(&["54000"])).await
        }),
        case(Endpoint::Wire, false, "LISTEN on channel names that look like SQL", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&query_msg(r#"LISTEN "x""; CREATE TABLE pwned_listen (); --""#)).await?;
            check(&mut r, Expect::Fine).await?;
            r.send(&query_msg(r#"LISTEN "'); CREATE TABLE pwned_listen2 (); --"; UNLISTEN *"#)).await?;
            check(&mut r, Expect::Fine).await
        }),
    ]
}

/// Tables whose existence would prove an injected statement ran.
pub async fn injected_tables(tp: &Tidepool) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for db in [&tp.real_db, &tp.real_db2] {
        let c = tp.direct(db).await?;
        for row in c.query("SELECT relname::text FROM pg_class WHERE relname LIKE 'pwned%'", &[]).await? {
            found.push(format!("{db}.{}", row.get::<_, String>(0)));
        }
    }
    Ok(found)
}

/// One row of text describing the session: settings and leftovers, `|`-separated.
const PROBE: &str = "SELECT concat_ws('|', current_setting('search_path'), current_setting('application_name'), \
     current_setting('statement_timeout'), current_setting('default_transaction_read_only'), \
     to_regclass('pg_temp.leak_tmp') IS NULL, \
     (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'leak%'), \
     (SELECT count(*) FROM pg_cursors WHERE name LIKE 'leak%'), \
     (SELECT count(*) FROM pg_listening_channels() c WHERE c LIKE 'leak%')) AS s";

/// Runs [`PROBE`]; a leftover `statement_timeout` that cancels the probe itself is reported
/// as a leak too.
async fn probe(c: &tokio_postgres::Client) -> Result<String> {
    match c.query_one(PROBE, &[]).await {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "57014") => Ok("leaked statement_timeout cancelled the probe".into()),
        Err(e) => Err(e.into()),
    }
}

fn leaked(probe: &str) -> bool {
    let f: Vec<&str> = probe.split('|').collect();
    probe.contains("leak") || probe.contains("pwned") || f.len() != 8 || f[2] != "0" || f[3] != "off" || f[4] != "t" || f[5..] != ["0", "0", "0"]
}

/// Later clients see the defaults on every pooled connection: 8 concurrent wire sessions inside
/// transactions (so each holds its own server connection of the pool of 8), 8 concurrent
/// `/sql` requests, and no advisory lock left in either database.
pub async fn state_leaks(tp: &Tidepool) -> Result<Vec<String>> {
    let mut leaks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = pg_connect(&tp.pg_config(ALICE, Some(ALICE_PW), DB)).await?;
        c.batch_execute("BEGIN").await?;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        let s = probe(c).await?;
        if leaked(&s) {
            leaks.push(format!("wire client {i} sees {s:?}"));
        }
    }
    drop(clients);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, cs) = (tp.client.clone(), tp.url("/sql"), tp.alice_cs());
            tokio::spawn(async move {
                let body = json!({"queries": [{"query": "SELECT pg_sleep(0.3)"}, {"query": PROBE}]});
                let v: Value = client.post(url).header("neon-connection-string", cs).json(&body).send().await?.json().await?;
                anyhow::Ok(v)
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let v = t.await??;
        let s = v["results"][1]["rows"][0]["s"].as_str().unwrap_or("<missing>").to_owned();
        if leaked(&s) {
            leaks.push(format!("/sql request {i} sees {s:?} ({v})"));
        }
    }
    for db in [&tp.real_db, &tp.real_db2] {
        let c = tp.direct(db).await?;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()",
                &[],
            )
            .await?
            .get(0);
        if n > 0 {
            leaks.push(format!("{n} advisory lock(s) still held in {db}"));
        }
    }
    Ok(leaks)
}

/// Sessions that call a function the client defined, which runs `set_config(…, false)`: the
/// lexical classifier cannot see inside it. What later clients see afterwards.
async fn user_function_leaks(tp: &Tidepool) -> Result<Vec<String>> {
    tp.direct(&tp.real_db).await?.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {}", tidepool_testkit::SCRAM_USER)).await?;
    let c = pg_connect(&tp.pg_config(ALICE, Some(ALICE_PW), DB)).await?;
    c.batch_execute("CREATE FUNCTION public.hostile_fn() RETURNS text LANGUAGE sql AS $$ SELECT set_config('search_path', 'leak_fn', false) $$").await?;
    for _ in 0..4 {
        let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
        r.query_col("SELECT public.hostile_fn()").await?;
    }
    let body = json!({"query": "SELECT public.hostile_fn()", "params": []});
    for _ in 0..4 {
        tp.client.post(tp.url("/sql")).header("neon-connection-string", tp.alice_cs()).json(&body).send().await?;
    }
    state_leaks(tp).await
}

/// Known gap (reported, not fixed by default): with the default configuration a call to a
/// function the client defined that runs `set_config` leaves its setting on the pooled
/// connection for other clients. Run with `-- --ignored` to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: a user-defined function that calls set_config leaks session state unless reset_every_transaction is set (see docs/security.md)"]
async fn user_function_calling_set_config_leaks() -> Result<()> {
    let tp = Tidepool::start().await?;
    let leaks = user_function_leaks(&tp).await?;
    ensure!(leaks.is_empty(), "{leaks:?}");
    Ok(())
}

/// `reset_every_transaction = true` closes that gap: nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_every_transaction_stops_user_function_leaks() -> Result<()> {
    let tp = Tidepool::start_with("reset_every_transaction = true").await?;
    let leaks = user_function_leaks(&tp).await?;
    ensure!(leaks.is_empty(), "{leaks:?}");
    tp.alive()
}
