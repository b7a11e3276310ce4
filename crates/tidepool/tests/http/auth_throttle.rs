//! The failed-login throttle on `/sql` passwords (the same throttle as wire and WebSocket logins).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::common::*;

async fn post_sql(client: &reqwest::Client, http: std::net::SocketAddr, user: &str, pw: &str) -> Result<(u16, Value)> {
    let cs = format!("postgresql://{user}:{pw}@{http}/{DB}");
    let r = client
        .post(format!("http://{http}/sql"))
        .header("content-type", "application/json")
        .header("neon-connection-string", cs)
        .body(serde_json::to_vec(&json!({"query": "SELECT 1 AS one", "params": []}))?)
        .send()
        .await
        .context("POST /sql")?;
    let status = r.status().as_u16();
    Ok((status, serde_json::from_str(&r.text().await?).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_passwords_are_throttled() -> Result<()> {
    init_tracing();
    let toml = Setup::new("neon_throttle").await?.toml().replace(
        "scram_iterations = 64",
        "scram_iterations = 64\nauth_failure_threshold = 2\nauth_failure_delay = \"100ms\"\nauth_failure_max_delay = \"400ms\"",
    );
    let running = tidepool::run::start(tidepool::Config::from_toml(&toml, std::iter::empty())?).await?;
    let http = running.bound.http.context("http listener")?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;

    // Brute force: 10 wrong passwords in a row take at least 100+200+400×6 ms, each answered 28P01.
    let started = Instant::now();
    for _ in 0..10 {
        let (status, body) = post_sql(&client, http, USER, "wrong").await?;
        assert_eq!((status, body["code"].as_str()), (400, Some("28P01")), "{body}");
        assert_eq!(body["message"], format!("password authentication failed for user \"{USER}\""));
    }
    assert!(started.elapsed() >= Duration::from_millis(2700), "10 wrong passwords in {:?}", started.elapsed());
    // Concurrent guesses wait their turn or are refused, never answered early.
    let started = Instant::now();
    let burst = futures_util::future::join_all((0..20).map(|_| post_sql(&client, http, USER, "wrong"))).await;
    for r in burst {
        assert_eq!(r?.1["code"], "28P01");
    }
    assert!(started.elapsed() >= Duration::from_millis(400), "burst answered in {:?}", started.elapsed());
    // Unknown users are throttled the same way.
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(post_sql(&client, http, "mallory", "x").await?.1["code"], "28P01");
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    // The right password still works, and from then on is answered without delay.
    let (status, body) = post_sql(&client, http, USER, USER_PW).await?;
    assert_eq!((status, &body["rows"]), (200, &json!([{"one": 1}])), "{body}");
    let throttled = running.app.users.throttle.throttled.get();
    assert!(throttled >= 8 + 20, "tidepool_auth_throttled = {throttled}");
    running.stop().await;
    Ok(())
}

/// The throttle is kept per client address: one address guessing does not slow another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_throttle_is_per_client_address() -> Result<()> {
    init_tracing();
    let toml = Setup::new("neon_throttle_ip").await?.toml().replace(
        "scram_iterations = 64",
        "scram_iterations = 64\nauth_failure_threshold = 2\nauth_failure_delay = \"50ms\"\nauth_failure_max_delay = \"200ms\"",
    );
    let running = tidepool::run::start(tidepool::Config::from_toml(&toml, std::iter::empty())?).await?;
    let http = running.bound.http.context("http listener")?;
    let attacker = reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>()?).timeout(Duration::from_secs(20)).build()?;
    let other = reqwest::Client::builder().local_address("127.0.0.1".parse::<std::net::IpAddr>()?).timeout(Duration::from_secs(20)).build()?;
    for _ in 0..6 {
        assert_eq!(post_sql(&attacker, http, USER, "wrong").await?.1["code"], "28P01");
    }
    let throttled = running.app.users.throttle.throttled.get();
    assert!(throttled >= 4, "the attacker was throttled ({throttled})");
    // Two failures from another address stay under its own threshold: nothing more throttled.
    for _ in 0..2 {
        assert_eq!(post_sql(&other, http, USER, "wrong").await?.1["code"], "28P01");
    }
    assert_eq!(running.app.users.throttle.throttled.get(), throttled, "another address was throttled");
    let (status, _) = post_sql(&other, http, USER, USER_PW).await?;
    assert_eq!(status, 200);
    running.stop().await;
    Ok(())
}
