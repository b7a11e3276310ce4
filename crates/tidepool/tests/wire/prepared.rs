//! Protocol-level prepared statements in transaction mode: statements follow their client across
//! transactions and server connections; pgbench in every query mode.

use anyhow::{ensure, Result};
use tidepool_testkit::{run_pgbench, TestCluster, SCRAM_USER};
use tokio_postgres::types::Type;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_clients_across_transactions_and_connections() -> Result<()> {
    const CLIENTS: i32 = 20;
    const ROUNDS: i32 = 30;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("prepared").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE items (client int, n int, label text)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 3").db("pool_timeout = \"60s\"").server("login_timeout = \"60s\"").start().await?;

    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let config = p.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&config).await?;
            // Same text in every client (shared on servers), and text unique to this client under
            // the same client-side statement names (tokio-postgres names them s0, s1, …).
            let add = c.prepare("SELECT $1::int + $2::int").await?;
            let own = c.prepare(&format!("SELECT $1::text || '-{i}'")).await?;
            let insert = c.prepare_typed("INSERT INTO items VALUES ($1, $2, $3)", &[Type::INT4, Type::INT4, Type::TEXT]).await?;
            let fails = c.prepare("SELECT 1 / $1::int").await?;
            for n in 0..ROUNDS {
                let row = c.query_one(&add, &[&i, &n]).await?;
                ensure!(row.get::<_, i32>(0) == i + n, "add");
                let row = c.query_one(&own, &[&format!("x{n}")]).await?;
                ensure!(row.get::<_, String>(0) == format!("x{n}-{i}"), "own statement of client {i} gave {:?}", row.get::<_, String>(0));
                if n % 5 == 0 {
                    let tx = c.transaction().await?;
                    tx.execute(&insert, &[&i, &n, &format!("tx{n}")]).await?;
                    let row = tx.query_one(&add, &[&n, &1i32]).await?;
                    ensure!(row.get::<_, i32>(0) == n + 1);
                    tx.commit().await?;
                } else {
                    c.execute(&insert, &[&i, &n, &"auto"]).await?;
                }
                if n % 7 == 0 {
                    // An error inside a prepared statement leaves the session and pool usable.
                    let e = c.query_one(&fails, &[&0i32]).await.expect_err("division by zero");
                    ensure!(code(&e).as_deref() == Some("22012"), "{e:?}");
                }
                if i % 4 == 0 && n % 6 == 0 {
                    // Session state makes tidepool DISCARD ALL this server after the transaction,
                    // which drops its prepared statements: they must be re-created when needed.
                    c.batch_execute("SET search_path = public").await?;
                }
                if n == ROUNDS / 2 {
                    // Close and prepare again under a new client name.
                    let again = c.prepare("SELECT $1::int + $2::int").await?;
                    let row = c.query_one(&again, &[&1i32, &2i32]).await?;
                    ensure!(row.get::<_, i32>(0) == 3);
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = bounded("client task", 120, t).await? {
            failed.push(format!("{e:#}"));
        }
    }
    assert!(failed.is_empty(), "{} clients failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    let direct = cluster.client(&db).await?;
    let n: i64 = direct.query_one("SELECT count(*) FROM items", &[]).await?.get(0);
    assert_eq!(n, (CLIENTS * ROUNDS) as i64);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_extended_and_simple_modes() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("pgbench").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").db("pool_timeout = \"30s\"").start().await?;
    let url = p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));

    // Initialisation runs through tidepool too (DDL, COPY FROM STDIN, VACUUM).
    let init = bounded("pgbench -i", 120, run_pgbench(["-i", "-s", "1", "-q", url.as_str()])).await?;
    let init = init.ok()?;
    assert!(init.stderr.contains("done"), "{}", init.stderr);

    // pgbench 15 prepares synchronously per thread: -j must equal -c under a transaction pooler.
    for (mode, jobs) in [("prepared", "4"), ("extended", "2"), ("simple", "2")] {
        let out = bounded(&format!("pgbench -M {mode}"), 120, run_pgbench(["-M", mode, "-c", "4", "-j", jobs, "-t", "40", "-n", url.as_str()])).await?;
        let out = out.ok()?;
        assert_eq!(out.pgbench_failed(), 0, "{mode}: {}", out.stdout);
        assert!(out.stdout.contains("number of transactions actually processed: 160/160"), "{mode}: {}\n{}", out.stdout, out.stderr);
    }

    // Every transaction was applied whole: balances match the history.
    let direct = cluster.client(&db).await?;
    let row = direct
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::bigint, (SELECT sum(delta) FROM pgbench_history)::bigint, \
                    (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1));
    assert_eq!(row.get::<_, i64>(2), 3 * 160);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_and_discard_do_not_break_other_clients_statements() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("deallocate").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;
    let a = p.client().await?;
    let b = p.client().await?;
    let stmt = a.prepare("SELECT $1::int * 3").await?;
    assert_eq!(a.query_one(&stmt, &[&1i32]).await?.get::<_, i32>(0), 3);
    for (i, sql) in ["DEALLOCATE ALL", "DISCARD ALL", "BEGIN; DEALLOCATE ALL; COMMIT", "DISCARD PLANS"].into_iter().enumerate() {
        // B wipes the statements of the (only) server connection with SQL.
        b.batch_execute(sql).await.map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
        let n = i as i32 + 2;
        let row = a.query_one(&stmt, &[&n]).await.map_err(|e| anyhow::anyhow!("A's statement after B's {sql}: {e}"))?;
        assert_eq!(row.get::<_, i32>(0), n * 3);
    }
    drop((a, b));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_limits() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("prepared_limits").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("max_prepared_statements = 5").start().await?;
    let a = p.client().await?;
    let b = p.client().await?;
    // Each client keeps 4 statements of its own: the server sees 8 > 5 and is cleaned up
    // (DEALLOCATE ALL) after transactions; statements are re-created on demand.
    let mut sa = Vec::new();
    let mut sb = Vec::new();
    for k in 0..4 {
        sa.push(a.prepare(&format!("SELECT $1::int + {k}")).await?);
        sb.push(b.prepare(&format!("SELECT $1::int - {k}")).await?);
    }
    for round in 0..5i32 {
        for k in 0..4 {
            assert_eq!(a.query_one(&sa[k], &[&round]).await?.get::<_, i32>(0), round + k as i32);
            assert_eq!(b.query_one(&sb[k], &[&round]).await?.get::<_, i32>(0), round - k as i32);
        }
    }
    let on_server: i64 = a.query_one("SELECT count(*) FROM pg_prepared_statements", &[]).await?.get(0);
    assert!(on_server <= 6, "{on_server} statements kept on the server with max_prepared_statements 5");
    // A client that goes past the limit itself is refused.
    let mut kept = Vec::new();
    let mut refused = None;
    for k in 0..10 {
        match a.prepare(&format!("SELECT {k} + $1::int")).await {
            Ok(s) => kept.push(s),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("more than max_prepared_statements statements were accepted");
    assert_eq!(code(&e).as_deref(), Some("54000"), "{e:?}");
    assert_eq!(b.query_one(&sb[0], &[&7i32]).await?.get::<_, i32>(0), 7);
    drop((a, b));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parse_of_a_shared_statement_keeps_the_unnamed_statement() -> Result<()> {
    use crate::raw::*;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("unnamed").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").start().await?;
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let tags = |msgs: &[Msg]| msgs.iter().map(|m| m.tag as char).collect::<String>();
    let rows = |msgs: &[Msg]| msgs.iter().filter(|m| m.tag == b'D').map(|m| m.row()[0].clone().unwrap_or_default()).collect::<Vec<_>>();

    // The server gets "SELECT 1" prepared (as tidepool's shared statement).
    let mut w = parse_msg("s1", "SELECT 1");
    w.extend(sync_msg());
    r.send(&w).await?;
    assert_eq!(tags(&r.until_ready().await?), "1Z");

    // Unnamed statement, then a named Parse of text the server already has, then Bind of the
    // unnamed statement: the unnamed statement must still be the client's own.
    let mut w = parse_msg("", "SELECT 'unnamed'");
    w.extend(parse_msg("s2", "SELECT 1"));
    w.extend(bind_msg("", ""));
    w.extend(execute_msg(""));
    w.extend(bind_msg("", "s2"));
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(tags(&msgs), "112DC2DCZ", "{msgs:?}");
    assert_eq!(rows(&msgs), vec!["unnamed", "1"]);

    // The same inside a batch that fails first: nothing after the error happens, s3 never exists.
    let mut w = parse_msg("", "SELECT * FROM no_such_table");
    w.extend(parse_msg("s3", "SELECT 1"));
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(tags(&msgs), "EZ", "{msgs:?}");
    let mut w = bind_msg("", "s3");
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(msgs.iter().find(|m| m.tag == b'E').and_then(|m| m.code()).as_deref(), Some("26000"), "{msgs:?}");

    // Close, Parse again under the same name, Flush only: the ParseComplete comes without a Sync.
    let mut w = vec![b'C', 0, 0, 0, 8, b'S', b's', b'1', 0];
    w.extend(parse_msg("s1", "SELECT 1"));
    w.extend([b'H', 0, 0, 0, 4]);
    r.send(&w).await?;
    let first = r.read_msg().await?.expect("CloseComplete");
    let second = r.read_msg().await?.expect("ParseComplete");
    assert_eq!((first.tag, second.tag), (b'3', b'1'));
    let mut w = bind_msg("", "s1");
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(rows(&msgs), vec!["1"], "{msgs:?}");
    drop(r);
    p.stop().await;
    Ok(())
}
