//! Hostile clients on the HTTP listener: each attack is refused (or its connection closed) with
//! bounded memory, and a well-behaved client still gets served afterwards.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Resident memory of this test process (tidepool runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// Reads until the server closes the connection (EOF or reset); returns what was read.
/// Panics if the connection is still open after `secs`.
async fn read_until_closed(s: &mut TcpStream, secs: u64) -> Vec<u8> {
    let mut out = Vec::new();
    bounded("connection close", secs, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

fn cs_ok(p: &Proxy) -> String {
    p.conn_str(USER, Some(USER_PW), DB)
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_params_cannot_crash_the_process() -> Result<()> {
    let p = Setup::new("hard_deep").await?.start().await?;
    // Wrong password: refused from the headers, the body never reaches the parser.
    for depth in [20_000, 100_000] {
        let body = format!(r#"{{"query":"SELECT $1","params":[{}]}}"#, nested(depth));
        let cs = p.conn_str(USER, Some("wrong"), DB);
        let r = p.neon_raw(&[("neon-connection-string", &cs)], body.into_bytes()).await?;
        r.neon_err(400, "28P01");
    }
    // Right password: a clean 400 from the parser, not a stack overflow.
    let cs = p.conn_str(USER, Some(USER_PW), DB);
    for depth in [20_000, 100_000] {
        let body = format!(r#"{{"query":"SELECT $1","params":[{}]}}"#, nested(depth));
        let r = p.neon_raw(&[("neon-connection-string", &cs)], body.into_bytes()).await?;
        let msg = r.neon_err(400, "");
        assert!(msg.contains("nested deeper than"), "{msg}");
    }
    // Prisma bodies of the same shape (plan and params) are 400 as well.
    for body in [
        format!(r#"{{"operation":"x","plan":{{"type":"value","args":{}}},"params":{{}}}}"#, nested(100_000)),
        format!(r#"{{"operation":"x","plan":{{"type":"unit"}},"params":{{"a":{}}}}}"#, nested(100_000)),
    ] {
        let r = p.prisma_bytes("/query", Some(KEY_A), body.into_bytes()).await?;
        r.prisma_err(400, "P6000");
    }
    p.neon_ok().await?;
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_never_read_the_body() -> Result<()> {
    let p = Setup::new("hard_noread").await?.http("body_read_timeout = \"30s\"").start().await?;
    // Headers with a wrong password and a body that never comes: the answer does not wait for it.
    let mut s = TcpStream::connect(p.http).await?;
    let cs = p.conn_str(USER, Some("wrong"), DB);
    s.write_all(format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {cs}\r\ncontent-length: 1000000\r\n\r\n").as_bytes()).await?;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s, 10).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("28P01"), "{answer}");
    // A huge user name is not echoed back in full.
    let long = "u".repeat(30_000);
    let cs = p.conn_str(&long, Some("wrong"), DB);
    let r = p.neon_raw(&[("neon-connection-string", &cs)], b"{}".to_vec()).await?;
    let msg = r.neon_err(400, "28P01");
    assert!(msg.len() < 200, "{} bytes echoed", msg.len());
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_closed() -> Result<()> {
    let p = Setup::new("hard_slowhead").await?.http("header_read_timeout = \"1s\"").start().await?;
    // A head trickled at one byte per 300 ms.
    let mut s = TcpStream::connect(p.http).await?;
    let trickle = tokio::spawn({
        let mut w = TcpStream::connect(p.http).await?;
        async move {
            for b in b"GET /health HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if w.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            false
        }
    });
    // A connection that sends nothing, and one that stops inside the protocol preface.
    read_until_closed(&mut s, 10).await;
    let mut partial = TcpStream::connect(p.http).await?;
    partial.write_all(b"PRI * HTTP/2.0\r\n").await?;
    read_until_closed(&mut partial, 10).await;
    let closed_while_trickling = bounded("trickling client", 25, trickle).await?;
    assert!(closed_while_trickling, "the trickled head was still accepted after 20 s");
    // Keep-alive connections idle past the timeout are closed too; normal requests work.
    let mut idle = TcpStream::connect(p.http).await?;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut idle, 10).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_closed() -> Result<()> {
    let p = Setup::new("hard_slowbody").await?.http("body_read_timeout = \"1s\"").start().await?;
    let cs = p.conn_str(USER, Some(USER_PW), DB);
    let heads = [
        format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {cs}\r\ntransfer-encoding: chunked\r\n\r\n"),
        format!("POST /query HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY_A}\r\ntransfer-encoding: chunked\r\n\r\n"),
    ];
    for head in heads {
        let s = TcpStream::connect(p.http).await?;
        let (mut r, mut w) = s.into_split();
        w.write_all(head.as_bytes()).await?;
        // One byte per 300 ms, in one-byte chunks.
        let trickle = tokio::spawn(async move {
            for _ in 0..200 {
                if w.write_all(b"1\r\n{\r\n").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let mut answer = Vec::new();
        bounded("slow body close", 15, async {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        trickle.abort();
    }
    p.neon_ok().await?;
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

/// Opens a WebSocket with a raw HTTP/1.1 upgrade; returns the stream after the 101.
async fn raw_websocket(p: &Proxy) -> Result<TcpStream> {
    let mut s = TcpStream::connect(p.http).await?;
    s.write_all(
        b"GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_websocket_fragments_use_bounded_memory() -> Result<()> {
    let p = Setup::new("hard_wsfrag").await?.start().await?;
    let before = rss_kib();
    let mut s = raw_websocket(&p).await?;
    // 60 fragments of 1 MiB without FIN (mask key 0: the payload goes as it is).
    let mut frame = vec![0x02, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let payload = vec![0x41u8; 1 << 20];
    let mut sent = 0;
    for i in 0..60 {
        frame[0] = if i == 0 { 0x02 } else { 0x00 };
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            s.write_all(&frame).await?;
            s.write_all(&payload).await
        })
        .await;
        if !matches!(r, Ok(Ok(()))) {
            break;
        }
        sent += 1;
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    eprintln!("RSS growth after {sent} pre-auth fragments: {grown_mib} MiB");
    assert!(grown_mib < 20, "RSS grew by {grown_mib} MiB after {sent} unauthenticated 1 MiB fragments");
    assert!(sent < 60, "all 60 MiB were accepted before login");
    read_until_closed(&mut s, 10).await;
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_connections_are_capped() -> Result<()> {
    let p = Setup::new("hard_preauth").await?.http("max_preauth_connections = 3").http("header_read_timeout = \"30s\"").start().await?;
    // Three connections that say nothing hold the three pre-auth permits…
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(p.http).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // …so a fourth is answered 503 with a JSON body, Neon-style on /sql, Prisma-style elsewhere.
    let r = p.neon(&json!({"query": "SELECT 1"})).await?;
    r.neon_err(503, "53300");
    let r = p.query(&raw_query("SELECT 1", json!([]))).await?;
    r.prisma_err(503, "P5011");
    // A WebSocket upgrade is refused as well.
    let mut s = TcpStream::connect(p.http).await?;
    s.write_all(b"GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await?;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s, 10).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Once they go away, new clients are served; authenticated connections do not count.
    drop(idle);
    let ok = poll(100, || async { p.neon(&json!({"query": "SELECT 1"})).await.ok().filter(|r| r.status == 200) }).await;
    assert!(ok.is_some(), "still refused after the idle connections closed");
    // Three clients whose keep-alive connections authenticated stay open without counting.
    let mut kept = Vec::new();
    for _ in 0..3 {
        let client = reqwest::Client::builder().build()?;
        let r = client.post(p.url("/sql")).header("neon-connection-string", &cs_ok(&p)).body(r#"{"query":"SELECT 1"}"#).send().await?;
        assert_eq!(r.status(), 200);
        kept.push(client);
    }
    p.neon_ok().await?;
    p.prisma_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_transactions_per_key_are_a_share_of_the_pool() -> Result<()> {
    // pool_size 4, default share 0.5: two per key, so one key cannot pin the whole pool.
    let p = Setup::new("hard_itx").await?.db("pool_size = 4").start().await?;
    let a1 = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let a2 = p.itx_start(KEY_A, &json!({"timeout": 20000})).await?;
    let r = p.prisma("/transaction/start", Some(KEY_A), &json!({"timeout": 20000})).await?;
    let msg = r.prisma_err(429, "P5011");
    assert!(msg.contains("limit 2"), "{msg}");
    // Another key, and plain queries, still get connections.
    let b1 = p.itx_start(KEY_B, &json!({"timeout": 20000})).await?;
    p.prisma_ok().await?;
    p.neon_ok().await?;
    for (id, key) in [(&a1, KEY_A), (&a2, KEY_A), (&b1, KEY_B)] {
        let r = p.prisma(&format!("/transaction/{id}/rollback"), Some(key), &json!({})).await?;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Ids that cannot be ours are unknown without a lookup, however long.
    let r = p.prisma(&format!("/transaction/{}/commit", "z".repeat(5000)), Some(KEY_A), &json!({})).await?;
    r.prisma_err(409, "P2028");
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() -> Result<()> {
    let p = Setup::new("hard_bighead").await?.http("max_header_size = 16384").start().await?;
    let mut s = TcpStream::connect(p.http).await?;
    s.write_all(format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(40_000)).as_bytes()).await?;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s, 10).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_http_and_websocket_connections() -> Result<()> {
    let p = Setup::new("hard_drain").await?.http("header_read_timeout = \"60s\"").start().await?;
    let mut idle = TcpStream::connect(p.http).await?;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await?;
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut ws = raw_websocket(&p).await?;
    bounded("drain", 10, p.stop()).await;
    read_until_closed(&mut idle, 5).await;
    read_until_closed(&mut ws, 5).await;
    Ok(())
}

#[test]
fn example_http_section_lists_the_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tidepool.toml")).expect("example file");
    let config = tidepool::Config::from_toml(&text, std::iter::empty()).expect("example parses");
    let example = serde_json::to_value(&config.http).expect("serialise");
    let defaults = serde_json::to_value(tidepool::config::HttpConfig::default()).expect("serialise");
    assert_eq!(example, defaults, "examples/tidepool.toml [http] differs from HttpConfig::default()");
    // Every key is in the file, with or without its comment marker.
    for key in defaults.as_object().expect("object").keys() {
        assert!(text.contains(&format!("{key} ")) || text.contains(&format!("{key}=")), "{key} missing from the example");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_and_header_list_are_bounded() -> Result<()> {
    let p = Setup::new("hard_h2").await?.http("http2_max_concurrent_streams = 7").http("max_header_size = 16384").start().await?;
    let tcp = TcpStream::connect(p.http).await?;
    let (client, mut conn) = h2::client::handshake(tcp).await?;
    // The server announces its stream limit in its SETTINGS.
    let announced = bounded(
        "h2 settings",
        10,
        std::future::poll_fn(|cx| {
            if std::pin::Pin::new(&mut conn).poll(cx).is_ready() {
                return std::task::Poll::Ready(0);
            }
            match conn.max_concurrent_send_streams() {
                7 => std::task::Poll::Ready(7),
                _ => std::task::Poll::Pending,
            }
        }),
    )
    .await;
    assert_eq!(announced, 7);
    tokio::spawn(conn);
    let mut client = client.ready().await?;
    let get = |path: &str| axum::http::Request::get(format!("http://{}{path}", p.http)).body(()).expect("request");
    let (resp, _) = client.send_request(get("/health"), true)?;
    assert_eq!(resp.await?.status(), 200);
    // A header list over max_header_size is refused; the connection stays usable.
    let mut big = get("/health");
    big.headers_mut().insert("x-big", "a".repeat(40_000).parse()?);
    let mut client = client.ready().await?;
    match client.send_request(big, true) {
        Ok((resp, _)) => match resp.await {
            Ok(r) => assert_eq!(r.status(), 431),
            Err(e) => assert!(e.is_reset() || e.is_remote(), "{e}"),
        },
        Err(e) => assert!(e.is_reset() || e.is_remote(), "{e}"),
    }
    let mut client = client.ready().await?;
    let (resp, _) = client.send_request(get("/health"), true)?;
    assert_eq!(resp.await?.status(), 200);
    p.neon_ok().await?;
    p.stop().await;
    Ok(())
}
