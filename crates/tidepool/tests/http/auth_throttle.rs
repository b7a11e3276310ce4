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
