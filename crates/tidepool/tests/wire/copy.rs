//! COPY FROM STDIN / TO STDOUT through the pooler (extended protocol via tokio-postgres, simple
//! protocol via psql's \copy). pool_size 1 with a short pool_timeout makes a server connection
//! that is never returned after a COPY show up as an error for the next client.

use anyhow::Result;
use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tidepool_testkit::{run_psql, TestCluster, SCRAM_USER};

use crate::common::*;

async fn count(c: &tokio_postgres::Client) -> Result<i64> {
    let r = bounded("count", 30, c.query_one("SELECT count(*) FROM t", &[])).await;
    Ok(r.map_err(|e| anyhow::anyhow!("count: {e:?}"))?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_with_tokio_postgres() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("copy").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE t (id int PRIMARY KEY, name text)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"5s\"").start().await?;
    let a = p.client().await?;
    let b = p.client().await?;

    // COPY FROM STDIN, several chunks.
    let sink = a.copy_in("COPY t (id, name) FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    for chunk in 0..10 {
        let rows: String = (0..1000).map(|i| format!("{}\tname-{}\n", chunk * 1000 + i, chunk * 1000 + i)).collect();
        sink.send(Bytes::from(rows)).await?;
    }
    let n = bounded("copy_in finish", 30, sink.as_mut().finish()).await?;
    assert_eq!(n, 10_000);
    // The server connection went back to the pool: another client gets it.
    assert_eq!(count(&b).await?, 10_000);
    assert_eq!(count(&a).await?, 10_000);

    // COPY TO STDOUT.
    let stream = a.copy_out("COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT").await?;
    let chunks: Vec<Bytes> = bounded("copy_out", 30, stream.try_collect()).await?;
    let text: Vec<u8> = chunks.concat();
    let text = String::from_utf8(text)?;
    assert_eq!(text.lines().count(), 10_000);
    assert_eq!(text.lines().next(), Some("0\tname-0"));
    assert_eq!(text.lines().last(), Some("9999\tname-9999"));
    assert_eq!(count(&b).await?, 10_000);

    // COPY inside an explicit transaction, rolled back.
    a.batch_execute("BEGIN").await?;
    let sink = a.copy_in("COPY t FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"20000\tx\n")).await?;
    assert_eq!(sink.as_mut().finish().await?, 1);
    a.batch_execute("ROLLBACK").await?;
    assert_eq!(count(&b).await?, 10_000);

    // Failed COPYs. (tokio-postgres itself cannot use a connection again after a failed COPY, even
    // against PostgreSQL directly, so each runs on a client of its own; what matters is that the
    // server connection goes back to the pool clean.)
    let e = p.client().await?;
    let sink = e.copy_in("COPY t FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"not-a-number\tx\n")).await?;
    let err = bounded("bad copy", 30, sink.as_mut().finish()).await.expect_err("bad COPY data");
    assert_eq!(code(&err).as_deref(), Some("22P02"), "{err:?}");
    assert_eq!(count(&b).await?, 10_000);
    drop(e);
    assert_eq!(count(&a).await?, 10_000);

    // COPY into a table that does not exist fails before any data.
    let e = p.client().await?;
    let err = e.copy_in::<_, Bytes>("COPY nosuch FROM STDIN").await.err().expect("no such table");
    assert_eq!(code(&err).as_deref(), Some("42P01"));
    assert_eq!(count(&b).await?, 10_000);
    drop(e);

    // A COPY abandoned by the client (sink dropped: CopyFail).
    let e = p.client().await?;
    {
        let sink = e.copy_in("COPY t FROM STDIN").await?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"30000\tabandoned\n")).await?;
    }
    assert_eq!(count(&b).await?, 10_000);
    drop(e);
    assert_eq!(count(&a).await?, 10_000);

    // A client whose socket closes in the middle of a COPY.
    let (mut r, _) = crate::raw::Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    r.send(&crate::raw::query_msg("COPY t FROM STDIN")).await?;
    let m = r.read_msg().await?.expect("CopyInResponse");
    assert_eq!(m.tag, b'G', "{m:?}");
    let row = b"40000\tgone\n";
    let mut data = vec![b'd'];
    data.extend_from_slice(&((row.len() + 4) as i32).to_be_bytes());
    data.extend_from_slice(row);
    r.send(&data).await?;
    drop(r);
    assert_eq!(count(&b).await?, 10_000);
    assert_eq!(count(&p.client().await?).await?, 10_000);
    drop((a, b));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_copy_from_stdin_returns_the_server() -> Result<()> {
    use crate::raw::*;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("copy_pipelined").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE t (id int, name text)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"5s\"").start().await?;
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let b = p.client().await?;

    // Extended protocol, everything in one write, before the server has said it is a COPY:
    // the first Sync reaches the server during the COPY and is ignored; one ReadyForQuery comes.
    let mut w = parse_msg("", "COPY t FROM STDIN");
    w.extend(bind_msg("", ""));
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    w.extend(copy_data_msg(b"1\tone\n2\ttwo\n"));
    w.extend(copy_done_msg());
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    let tags: Vec<char> = msgs.iter().map(|m| m.tag as char).collect();
    assert_eq!(tags, vec!['1', '2', 'G', 'C', 'Z'], "{msgs:?}");
    assert_eq!(count(&b).await?, 2);

    // Simple protocol, COPY data in the same write as the Query.
    let mut w = query_msg("COPY t FROM STDIN");
    w.extend(copy_data_msg(b"3\tthree\n"));
    w.extend(copy_done_msg());
    r.send(&w).await?;
    let tags: Vec<char> = r.until_ready().await?.iter().map(|m| m.tag as char).collect();
    assert_eq!(tags, vec!['G', 'C', 'Z']);
    assert_eq!(count(&b).await?, 3);

    // Extended protocol, COPY data sent after the CopyInResponse, with a stray Sync during the COPY.
    let mut w = parse_msg("", "COPY t FROM STDIN");
    w.extend(bind_msg("", ""));
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    r.send(&w).await?;
    for want in [b'1', b'2', b'G'] {
        let m = r.read_msg().await?.expect("message");
        assert_eq!(m.tag, want, "{m:?}");
    }
    let mut w = copy_data_msg(b"4\tfour\n");
    w.extend(sync_msg());
    w.extend(copy_data_msg(b"5\tfive\n"));
    r.send(&w).await?;
    // The server is mid-COPY: nobody else may get it now.
    let blocked = b.query_one("SELECT count(*) FROM t", &[]).await;
    assert_eq!(blocked.as_ref().err().and_then(code).as_deref(), Some("53300"), "{blocked:?}");
    let mut w = copy_done_msg();
    w.extend(sync_msg());
    r.send(&w).await?;
    let tags: Vec<char> = r.until_ready().await?.iter().map(|m| m.tag as char).collect();
    assert_eq!(tags, vec!['C', 'Z']);
    assert_eq!(count(&b).await?, 5);

    // Failed COPY in the extended protocol: the server discards until Sync, then answers once.
    let mut w = parse_msg("", "COPY t FROM STDIN");
    w.extend(bind_msg("", ""));
    w.extend(execute_msg(""));
    w.extend(sync_msg());
    w.extend(copy_data_msg(b"oops\tbad\n"));
    w.extend(copy_done_msg());
    w.extend(sync_msg());
    r.send(&w).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(msgs.iter().find(|m| m.tag == b'E').and_then(|m| m.code()).as_deref(), Some("22P02"), "{msgs:?}");
    assert_eq!(count(&b).await?, 5);
    let rows = r.query_col("SELECT count(*) FROM t").await?;
    assert_eq!(rows, vec![Some("5".to_owned())]);
    drop((r, b));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_through_tidepool() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("psql_copy").await?;
    cluster.client_as(SCRAM_USER, &db).await?.batch_execute("CREATE TABLE t (id int, name text)").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"5s\"").start().await?;
    let url = p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.tsv");
    std::fs::write(&input, (1..=500).map(|i| format!("{i}\trow {i}\n")).collect::<String>())?;
    let output = dir.path().join("out.tsv");

    run_psql(&url, &format!("\\copy t FROM '{}'", input.display())).await?.ok()?;
    run_psql(&url, &format!("\\copy (SELECT * FROM t WHERE id % 2 = 0 ORDER BY id) TO '{}'", output.display())).await?.ok()?;
    let out = std::fs::read_to_string(&output)?;
    assert_eq!(out.lines().count(), 250);
    assert_eq!(out.lines().next(), Some("2\trow 2"));

    let out = run_psql(&url, "SELECT count(*), sum(id) FROM t").await?.ok()?;
    assert_eq!(out.stdout.trim(), "500|125250");
    // A failing \copy leaves the pool usable.
    std::fs::write(&input, "x\ty\n")?;
    let bad = run_psql(&url, &format!("\\copy t FROM '{}'", input.display())).await?;
    assert!(!bad.success() && bad.stderr.contains("invalid input syntax"), "{bad:?}");
    let c = p.client().await?;
    assert_eq!(count(&c).await?, 500);
    drop(c);
    p.stop().await;
    Ok(())
}
