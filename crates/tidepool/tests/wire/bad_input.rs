//! Hostile or broken input on raw sockets: every bad connection gets (at most) an ErrorResponse
//! and is closed, while a well-behaved client keeps working throughout.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tidepool_testkit::TestCluster;

use crate::common::*;
use crate::raw::*;

/// Expects at most one ErrorResponse (with one of `codes`) and then a closed socket.
async fn expect_refused(r: &mut Raw, codes: &[&str], what: &str) -> Result<()> {
    let msgs = bounded(what, 30, r.read_until_closed()).await?;
    match msgs.as_slice() {
        [e] if e.tag == b'E' => {
            let code = e.code().unwrap_or_default();
            assert!(codes.contains(&code.as_str()), "{what}: SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
            assert_eq!(e.field(b'S').as_deref(), Some("FATAL"), "{what}");
        }
        other => panic!("{what}: expected one ErrorResponse then EOF, got {other:?}"),
    }
    Ok(())
}

fn header(tag: Option<u8>, len: i32) -> Vec<u8> {
    let mut out: Vec<u8> = tag.into_iter().collect();
    out.extend_from_slice(&len.to_be_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_refused_while_other_clients_work() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("bad_input").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 2").db("max_message_size = 4096").start().await?;

    // A well-behaved client, busy all along.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let normal = {
        let c = p.client().await?;
        let (stop, ok) = (stop.clone(), ok.clone());
        tokio::spawn(async move {
            for i in 0..100_000i32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let row = c.query_one("SELECT $1::int + 1", &[&i]).await?;
                anyhow::ensure!(row.get::<_, i32>(0) == i + 1);
                ok.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        })
    };

    let started = poll(400, || async { (ok.load(Ordering::Relaxed) > 0).then_some(()) }).await;
    assert!(started.is_some(), "the normal client never got a query through");

    // Startup packet declaring more than 10,000 bytes.
    let mut r = Raw::connect(p.pg).await?;
    let mut w = header(None, 10_001);
    w.extend_from_slice(&[0u8; 64]);
    r.send(&w).await?;
    expect_refused(&mut r, &["08P01", "54000"], "startup length 10001").await?;
    // …or i32::MAX.
    let mut r = Raw::connect(p.pg).await?;
    r.send(&header(None, i32::MAX)).await?;
    expect_refused(&mut r, &["08P01", "54000"], "startup length i32::MAX").await?;
    // Declared lengths below the minimum.
    for len in [2, 0, -1] {
        let mut r = Raw::connect(p.pg).await?;
        r.send(&header(None, len)).await?;
        expect_refused(&mut r, &["08P01"], &format!("startup length {len}")).await?;
    }
    // An unsupported protocol version.
    let mut r = Raw::connect(p.pg).await?;
    let mut w = header(None, 8);
    w.extend_from_slice(&0x0002_0000i32.to_be_bytes());
    r.send(&w).await?;
    expect_refused(&mut r, &["0A000", "08P01"], "protocol 2.0").await?;

    // After login: a message declaring more than max_message_size, or less than 4 bytes.
    for (len, what) in [(100_000, "message over max_message_size"), (4097, "message one byte over"), (2, "message length 2")] {
        let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
        r.send(&header(Some(b'Q'), len)).await?;
        expect_refused(&mut r, &["08P01", "54000"], what).await?;
    }
    // A message just under the limit is fine.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, DB, &[]).await?;
    let long = "x".repeat(4000);
    let sql = format!("SELECT length('{long}')");
    assert!(sql.len() + 5 < 4096);
    assert_eq!(r.query_col(&sql).await?, vec![Some("4000".to_owned())]);
    drop(r);

    // SSLRequest with more bytes behind it in the same write (no TLS configured here).
    let mut r = Raw::connect(p.pg).await?;
    let mut w = ssl_request();
    w.extend_from_slice(&startup_packet(&[("user", TRUST_CLIENT), ("database", DB)]));
    r.send(&w).await?;
    let first = r.read_byte().await?;
    assert!(first != Some(b'S') && first != Some(b'N'), "stuffed SSLRequest answered with {first:?}");
    if first.is_some() {
        assert_eq!(first, Some(b'E'));
        let _ = r.read_until_closed().await;
    }
    // A lone SSLRequest is declined and the login goes on in plaintext.
    let mut r = Raw::connect(p.pg).await?;
    r.send(&ssl_request()).await?;
    assert_eq!(r.read_byte().await?, Some(b'N'));
    r.send(&startup_packet(&[("user", TRUST_CLIENT), ("database", DB)])).await?;
    let msgs = r.until_ready().await?;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{msgs:?}");
    drop(r);

    // The normal client is still making progress after all that.
    let mark = ok.load(Ordering::Relaxed);
    let going = poll(400, || async { (ok.load(Ordering::Relaxed) > mark).then_some(()) }).await;
    stop.store(true, Ordering::Relaxed);
    bounded("normal client", 30, normal).await??;
    assert!(going.is_some(), "the normal client stopped getting answers");
    let fresh = p.client().await?;
    assert_eq!(fresh.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    drop(fresh);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_logging_in_are_closed_after_login_timeout() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("login_timeout").await?;
    let p = Setup::new(cluster, &db).server("login_timeout = \"500ms\"").start().await?;
    // Clients that never finish logging in are closed after login_timeout.
    let mut silent = Raw::connect(p.pg).await?;
    let mut partial = Raw::connect(p.pg).await?;
    partial.send(&header(None, 100)).await?;
    partial.send(&[0, 3, 0, 0]).await?;
    let mut stalled = Raw::connect(p.pg).await?;
    stalled.send(&startup_packet(&[("user", SCRAM_CLIENT), ("database", DB)])).await?;
    let rest = bounded("silent client", 30, silent.read_until_closed()).await?;
    assert!(rest.iter().all(|m| m.tag == b'E'), "{rest:?}");
    let rest = bounded("partial startup", 30, partial.read_until_closed()).await?;
    assert!(rest.iter().all(|m| m.tag == b'E'), "{rest:?}");
    let rest = bounded("stalled SASL", 30, stalled.read_until_closed()).await?;
    assert_eq!(rest.first().map(|m| m.tag), Some(b'R'), "SASL request first: {rest:?}");
    assert!(rest[1..].iter().all(|m| m.tag == b'E'), "{rest:?}");

    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_exceeded_gets_53300() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("max_clients").await?;
    let p = Setup::new(cluster, &db).db("max_client_conn = 2").start().await?;
    let c1 = p.client().await?;
    let c2 = p.client().await?;
    for _ in 0..3 {
        let msg = expect_code(try_connect(&p.config(MD5_CLIENT, Some(MD5_CLIENT_PW))).await, "53300");
        assert!(msg.contains("max_client_conn"), "{msg}");
    }
    // Failed logins (refused for the limit or a bad password) do not use up slots.
    let _ = try_connect(&p.config(SCRAM_CLIENT, Some("wrong"))).await;
    assert_eq!(c1.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    drop(c1);
    let c3 = poll(200, || async { try_connect(&p.config(MD5_CLIENT, Some(MD5_CLIENT_PW))).await.ok() }).await;
    let c3 = c3.expect("a slot frees up when a client leaves");
    assert_eq!(c3.query_one("SELECT 3", &[]).await?.get::<_, i32>(0), 3);
    expect_code(try_connect(&p.config(TRUST_CLIENT, None)).await, "53300");
    drop((c2, c3));
    let back = poll(200, || async {
        let a = try_connect(&p.config(TRUST_CLIENT, None)).await.ok()?;
        let b = try_connect(&p.config(TRUST_CLIENT, None)).await.ok()?;
        Some((a, b))
    })
    .await;
    assert!(back.is_some(), "both slots free again");
    drop(back);
    p.stop().await;
    Ok(())
}
