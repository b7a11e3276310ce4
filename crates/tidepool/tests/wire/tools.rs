//! Real libpq programs through tidepool, and the admin endpoints.

use std::net::SocketAddr;

use anyhow::{bail, Result};
use tidepool_testkit::{run_psql, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_through_tidepool() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("psql").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").db("pool_timeout = \"5s\"").start().await?;
    for (user, password) in [(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)), (MD5_CLIENT, Some(MD5_CLIENT_PW)), (TRUST_CLIENT, None)] {
        let url = p.url(user, password);
        let out = run_psql(&url, &format!("SELECT current_database() = $${db}$$, 40 + 2")).await?.ok()?;
        assert_eq!(out.stdout.trim(), "t|42", "{user}");
    }
    let url = p.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    // A script: DDL, a transaction, several result sets.
    let script = "CREATE TABLE notes (id serial PRIMARY KEY, body text);
                  BEGIN; INSERT INTO notes (body) VALUES ('a'), ('b'); COMMIT;
                  SELECT string_agg(body, ',' ORDER BY id) FROM notes;";
    let out = run_psql(&url, script).await?.ok()?;
    assert_eq!(out.stdout.trim(), "a,b");
    // An error inside a transaction: psql fails, the pool (size 1) is not left in a transaction.
    let out = run_psql(&url, "BEGIN; INSERT INTO notes (body) VALUES ('c'); SELECT 1/0; COMMIT;").await?;
    assert!(!out.success() && out.stderr.contains("division by zero"), "{out:?}");
    let out = run_psql(&url, "SELECT count(*) FROM notes").await?.ok()?;
    assert_eq!(out.stdout.trim(), "2");
    // Wrong password through libpq.
    let out = run_psql(&p.url(SCRAM_CLIENT, Some("wrong")), "SELECT 1").await?;
    assert!(!out.success() && out.stderr.contains("password authentication failed"), "{out:?}");
    p.stop().await;
    Ok(())
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    bounded("http response", 15, s.read_to_end(&mut buf)).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("no HTTP header end: {text:?}") };
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{'])).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_answer_on_the_admin_listener() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("admin").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 3").start().await?;
    let admin = p.admin.expect("admin_listen bound");

    let (status, body) = http_get(admin, "/healthz").await?;
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");

    let c = p.client().await?;
    for i in 0..5i32 {
        assert_eq!(c.query_one("SELECT $1::int", &[&i]).await?.get::<_, i32>(0), i);
    }
    let _ = try_connect(&p.config(SCRAM_CLIENT, Some("wrong"))).await;

    let (status, text) = http_get(admin, "/metrics").await?;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "tidepool_clients"), Some(1.0), "{text}");
    assert!(metric(&text, "tidepool_login_failures_total").is_some_and(|n| n >= 1.0), "{text}");
    assert!(metric(&text, "tidepool_transactions_total").is_some_and(|n| n >= 5.0), "{text}");
    let opened = text
        .lines()
        .find(|l| l.starts_with("tidepool_pool_connections_opened_total{") && l.contains(&format!("database=\"{DB}\"")))
        .unwrap_or_else(|| panic!("no per-database pool metric:\n{text}"));
    let opened: f64 = opened.rsplit(' ').next().unwrap_or("").parse()?;
    assert!((1.0..=3.0).contains(&opened), "opened {opened} connections with pool_size 3");
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");

    let (status, _) = http_get(admin, "/no-such-page").await?;
    assert_eq!(status, 404);
    drop(c);
    p.stop().await;
    Ok(())
}
