//! Session features that keep working in transaction mode (docs/protocols.md "Session state in
//! transaction mode"): replayed SETs, pinned servers for state that cannot be replayed, and
//! LISTEN/NOTIFY through the shared listener, each compared with a direct connection.

use anyhow::Result;
use futures_util::StreamExt;
use tidepool_testkit::TestCluster;
use tokio_postgres::AsyncMessage;

use crate::common::*;

async fn show(c: &tokio_postgres::Client, name: &str) -> Result<String> {
    Ok(c.query_one(&format!("SHOW {name}"), &[]).await?.get(0))
}

/// Pins are counted once the transaction's end has been handled, just after the client got
/// its ReadyForQuery: wait for the count.
async fn wait_pins(pins: &tidepool::pins::Pins, n: usize) {
    let ok = poll(200, || async { (pins.held() == n).then_some(()) }).await;
    assert!(ok.is_some(), "pinned clients: {} (want {n})", pins.held());
}

async fn pid(c: &tokio_postgres::Client) -> Result<i32> {
    Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
}

/// What a client sees of session settings: same script through tidepool and directly.
async fn settings_script(c: &tokio_postgres::Client) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    c.batch_execute("SET search_path = myschema, public").await?;
    seen.push(show(c, "search_path").await?);
    let v: String = c.query_one("SELECT v FROM marker", &[]).await?.get(0);
    seen.push(v);
    c.execute("SET statement_timeout = '1234ms'", &[]).await?;
    seen.push(show(c, "statement_timeout").await?);
    // Rolled back: not kept.
    c.batch_execute("BEGIN; SET search_path = pg_catalog; ROLLBACK").await?;
    seen.push(show(c, "search_path").await?);
    // Committed inside a transaction block: kept.
    c.batch_execute("BEGIN; SET work_mem = '7MB'; COMMIT").await?;
    seen.push(show(c, "work_mem").await?);
    // SET LOCAL ends with its transaction.
    c.batch_execute("BEGIN; SET LOCAL work_mem = '9MB'; COMMIT").await?;
    seen.push(show(c, "work_mem").await?);
    c.batch_execute("SET myapp.tenant = 'acme'").await?;
    seen.push(show(c, "myapp.tenant").await?);
    c.batch_execute("RESET statement_timeout").await?;
    seen.push(show(c, "statement_timeout").await?);
    c.batch_execute("RESET ALL").await?;
    seen.push(show(c, "search_path").await?);
    seen.push(show(c, "work_mem").await?);
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_is_replayed_on_every_server_and_never_seen_by_others() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sess_set").await?;
    let direct = cluster.client(&db).await?;
    direct
        .batch_execute(
            "CREATE SCHEMA myschema; CREATE TABLE myschema.marker (v text); INSERT INTO myschema.marker VALUES ('found');
             GRANT USAGE ON SCHEMA myschema TO PUBLIC; GRANT SELECT ON myschema.marker TO PUBLIC",
        )
        .await?;
    let default_path = show(&direct, "search_path").await?;
    let want = settings_script(&cluster.client(&db).await?).await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;

    let a = p.client().await?;
    let b = p.client().await?;
    assert_eq!(settings_script(&a).await?, want, "tidepool vs a direct connection");

    // A's SET follows it to whichever server it gets; B never sees it.
    a.batch_execute("SET search_path = myschema, public").await?;
    let mut pids = std::collections::HashSet::new();
    for round in 0..6 {
        // B holds one server in a transaction every other round, so A runs on both.
        if round % 2 == 1 {
            b.batch_execute("BEGIN").await?;
        }
        pids.insert(pid(&a).await?);
        assert_eq!(show(&a, "search_path").await?, "myschema, public", "round {round}");
        let v: String = a.query_one("SELECT v FROM marker", &[]).await?.get(0);
        assert_eq!(v, "found");
        assert_eq!(show(&b, "search_path").await?, default_path, "round {round}: B sees A's SET");
        if round % 2 == 1 {
            b.batch_execute("COMMIT").await?;
        }
    }
    assert_eq!(pids.len(), 2, "A ran on both servers");
    let c = p.client().await?;
    assert_eq!(show(&c, "search_path").await?, default_path);
    let pinned = p.app().database(DB).expect("database").pins.clone();
    assert_eq!(pinned.held(), 0, "a SET never pins");

    // Bounded: too many names, also within one transaction (each SET a message of its own)…
    a.batch_execute("BEGIN").await?;
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = a.batch_execute(&format!("SET myapp.n{i} = 'v'")).await {
            refused = Some((i, code(&e)));
            break;
        }
    }
    a.batch_execute("ROLLBACK").await?;
    // search_path, statement_timeout… from the script above are among the 64 (the default).
    let (at, code) = refused.expect("max_session_settings applies inside a transaction");
    assert!(at < 64, "refused at the {at}th SET");
    assert_eq!(code.as_deref(), Some("54000"));
    // …and a huge value is refused in order, and the session goes on.
    let huge = format!("SET myapp.big = '{}'", "x".repeat(40_000));
    expect_code(a.batch_execute(&huge).await, "54000");
    assert_eq!(show(&a, "search_path").await?, "myschema, public");
    drop((a, b, c));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_cannot_be_replayed_pins_until_released_or_disconnect() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sess_pin").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 3").db("max_pinned = 1").server(&format!("admin_users = [\"{MD5_CLIENT}\"]")).start().await?;
    let pins = p.app().database(DB).expect("database").pins.clone();

    let a = p.client().await?;
    a.batch_execute("CREATE TEMP TABLE t (x int)").await?;
    a.batch_execute("INSERT INTO t VALUES (1), (2)").await?;
    let n: i64 = a.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(n, 2, "the temp table persists across transactions");
    a.batch_execute("PREPARE p (int) AS SELECT $1 * 2").await?;
    let r = a.simple_query("EXECUTE p(21)").await?;
    assert_eq!(simple_col(&r), vec![Some("42".to_owned())]);
    wait_pins(&pins, 1).await;
    assert_eq!(console_pinned(&p).await?, 1, "SHOW POOLS tp_pinned");
    let a_pid = pid(&a).await?;

    // Others still pool on the rest; a second pinning client is refused, naming the limit.
    let b = p.client().await?;
    assert_ne!(pid(&b).await?, a_pid, "A's server is not lent out");
    let msg = expect_code(b.batch_execute("CREATE TEMP TABLE u (x int)").await, "53300");
    assert!(msg.contains("max_pinned"), "{msg}");
    // Inside a transaction block the refusal aborts it like any error.
    b.batch_execute("BEGIN").await?;
    expect_code(b.batch_execute("PREPARE q AS SELECT 1").await, "53300");
    expect_code(b.batch_execute("SELECT 1").await, "25P02");
    b.batch_execute("ROLLBACK").await?;
    assert_eq!(b.query_one("SELECT 1::int", &[]).await?.get::<_, i32>(0), 1);
    let n: i64 = b.query_one("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()", &[]).await?.get(0);
    assert_eq!(n, 0, "no temp table leaked to B");

    // Releasing the state unpins A.
    a.batch_execute("DROP TABLE t").await?;
    a.batch_execute("SELECT 1").await?;
    assert_eq!(pins.held(), 1, "the prepared statement still pins");
    a.batch_execute("DEALLOCATE p").await?;
    wait_pins(&pins, 0).await;
    // Advisory locks: unlocked → unpinned.
    a.query_one("SELECT pg_advisory_lock(77)", &[]).await?;
    wait_pins(&pins, 1).await;
    a.query_one("SELECT pg_advisory_unlock(77)", &[]).await?;
    wait_pins(&pins, 0).await;
    // A temp table in a rolled-back transaction does not pin.
    a.batch_execute("BEGIN; CREATE TEMP TABLE gone (x int); ROLLBACK").await?;
    wait_pins(&pins, 0).await;
    // A statement prepared in one transaction pins when it is executed in a later one.
    let lock = a.prepare("SELECT pg_advisory_lock(88)").await?;
    wait_pins(&pins, 0).await;
    a.query(&lock, &[]).await?;
    wait_pins(&pins, 1).await;
    assert_eq!(pid(&a).await?, pid(&a).await?, "pinned: one server");
    a.query_one("SELECT pg_advisory_unlock(88)", &[]).await?;
    wait_pins(&pins, 0).await;

    // B pins now; when it disconnects the server is reset and the pool is whole again.
    b.batch_execute("CREATE TEMP TABLE u (x int); SELECT pg_advisory_lock(5)").await?;
    wait_pins(&pins, 1).await;
    drop(b);
    let freed = poll(200, || async { (pins.held() == 0).then_some(()) }).await;
    assert!(freed.is_some(), "B's pin was released on disconnect");
    let clients = [p.client().await?, p.client().await?, p.client().await?];
    let mut seen = std::collections::HashSet::new();
    for c in &clients {
        c.batch_execute("BEGIN").await?;
        seen.insert(pid(c).await?);
        let n: i64 = c.query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", &[]).await?.get(0);
        assert_eq!(n, 0, "B's lock was released");
    }
    assert_eq!(seen.len(), 3, "all of pool_size is usable again");
    for c in &clients {
        c.batch_execute("COMMIT").await?;
    }
    drop((a, clients));
    p.stop().await;
    Ok(())
}

/// The `tp_pinned` column of the database's row in the admin console's `SHOW POOLS`.
async fn console_pinned(p: &Proxy) -> Result<i64> {
    let mut cfg = p.config(MD5_CLIENT, Some(MD5_CLIENT_PW));
    cfg.dbname("pgbouncer");
    let admin = connect(&cfg).await?;
    for m in admin.simple_query("SHOW POOLS").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            if r.get("database") == Some(DB) {
                return Ok(r.get("tp_pinned").unwrap_or_default().parse()?);
            }
        }
    }
    anyhow::bail!("no SHOW POOLS row for {DB}")
}

/// A client whose notifications are collected by its connection task.
async fn listening_client(p: &Proxy) -> Result<(tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<(String, String)>)> {
    let (client, mut conn) = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)).connect(tokio_postgres::NoTls).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    Ok((client, rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_hears_notify_while_idle_and_unlisten_stops_it() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sess_listen").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").db("max_listen_channels = 3").start().await?;
    let (a, mut heard) = listening_client(&p).await?;
    a.batch_execute("LISTEN jobs; LISTEN \"Other\"").await?;
    let b = p.client().await?;
    b.batch_execute("NOTIFY jobs, 'one'").await?;
    let got = bounded("notification", 60, heard.recv()).await;
    assert_eq!(got, Some(("jobs".into(), "one".into())), "A hears it while idle");
    b.query_one("SELECT pg_notify('Other', 'two')", &[]).await?;
    assert_eq!(bounded("notification", 60, heard.recv()).await, Some(("Other".into(), "two".into())));

    // UNLISTEN: the next notification on that channel is not delivered.
    a.batch_execute("UNLISTEN jobs").await?;
    b.batch_execute("NOTIFY jobs, 'dropped'; NOTIFY \"Other\", 'three'").await?;
    assert_eq!(bounded("notification", 60, heard.recv()).await, Some(("Other".into(), "three".into())));
    // A keeps pooling meanwhile: its statements run on pooled servers.
    assert_eq!(a.query_one("SELECT 1::int", &[]).await?.get::<_, i32>(0), 1);
    // Bounded per client.
    a.batch_execute("LISTEN c1; LISTEN c2").await?;
    let msg = expect_code(a.batch_execute("LISTEN c3").await, "54000");
    assert!(msg.contains("max_listen_channels"), "{msg}");
    assert_eq!(p.app().database(DB).expect("database").listener.channel_count(), 3);

    // Disconnect cleans up: the listener drops its channels and gives its connection back.
    drop(a);
    let gone = poll(200, || async { (p.app().database(DB).expect("database").listener.channel_count() == 0).then_some(()) }).await;
    assert!(gone.is_some());
    let direct = cluster.client(&db).await?;
    let n = poll(200, || async {
        let n: i64 = direct.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%current_setting(''tidepool.channel'')%'", &[]).await.ok()?.get(0);
        (n == 0).then_some(n)
    })
    .await;
    assert!(n.is_some(), "the listener connection no longer listens");
    // Draining with a listening client connected ends it and the listener.
    let (c, _heard) = listening_client(&p).await?;
    c.batch_execute("LISTEN at_shutdown").await?;
    drop(b);
    bounded("drain with a listener", 30, p.stop()).await;
    assert!(c.is_closed() || c.simple_query("SELECT 1").await.is_err(), "the listening client was ended by the drain");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_keeps_its_session_across_transactions() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sess_psql").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;
    let psql = tidepool_testkit::pg_bin("psql")?;
    let out = tokio::process::Command::new(psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))])
        .args(["-c", "SET search_path = pg_catalog, public", "-c", "SHOW search_path"])
        .args(["-c", "CREATE TEMP TABLE pt AS SELECT 5 AS x", "-c", "SELECT x FROM pt"])
        .args(["-c", "PREPARE two AS SELECT 2", "-c", "EXECUTE two"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["pg_catalog, public", "5", "2"]);
    let released = poll(200, || async { (p.app().database(DB).expect("database").pins.held() == 0).then_some(()) }).await;
    assert!(released.is_some());
    p.stop().await;
    Ok(())
}

/// ParameterStatus as a direct connection reports it: once, when the SET runs, never again when
/// tidepool replays the value on another server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_no_extra_parameter_status() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("sess_ps").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").start().await?;
    let (mut a, greeting) = crate::raw::Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let default_tz = greeting.iter().filter_map(|m| m.param()).find(|(k, _)| k == "TimeZone").map(|(_, v)| v).unwrap_or_default();
    let msgs = a.query("SET TimeZone = 'Asia/Tokyo'").await?;
    let reported: Vec<_> = msgs.iter().filter_map(|m| m.param()).collect();
    assert_eq!(reported, [("TimeZone".to_owned(), "Asia/Tokyo".to_owned())], "{msgs:?}");
    let b = p.client().await?;
    let mut pids = std::collections::HashSet::new();
    for round in 0..4 {
        if round % 2 == 1 {
            b.batch_execute("BEGIN").await?;
        }
        let msgs = a.query("SELECT pg_backend_pid()::text, current_setting('TimeZone')").await?;
        assert!(msgs.iter().all(|m| m.param().is_none()), "round {round}: replay reported {msgs:?}");
        let row = msgs.iter().find(|m| m.tag == b'D').map(|m| m.row()).unwrap_or_default();
        pids.insert(row.first().cloned().flatten());
        assert_eq!(row.get(1).cloned().flatten().as_deref(), Some("Asia/Tokyo"));
        if round % 2 == 1 {
            b.batch_execute("COMMIT").await?;
        }
    }
    assert_eq!(pids.len(), 2, "A ran on both servers");
    let msgs = a.query("RESET TimeZone").await?;
    let reported: Vec<_> = msgs.iter().filter_map(|m| m.param()).collect();
    assert_eq!(reported, [("TimeZone".to_owned(), default_tz)], "{msgs:?}");
    drop(b);
    p.stop().await;
    Ok(())
}
