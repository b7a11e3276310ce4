//! The live dashboard on `admin_listen`: `GET /api/stats` (JSON figures per database, basic auth
//! when `dashboard_password` is set) and `GET /` rendered by a real headless Chromium, whose DOM
//! names the database and shows numbers that change while load runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::common::*;

async fn get(p: &Proxy, path: &str, password: Option<&str>) -> Result<reqwest::Response> {
    let admin = p.admin().context("no admin listener")?;
    let mut req = p.client.get(format!("http://{admin}{path}"));
    if let Some(pw) = password {
        req = req.basic_auth("ops", Some(pw));
    }
    Ok(req.send().await?)
}

async fn stats(p: &Proxy, password: Option<&str>) -> Result<Value> {
    let r = get(p, "/api/stats", password).await?;
    assert_eq!(r.status().as_u16(), 200);
    Ok(r.json().await?)
}

/// The entry for [`DB`] in `/api/stats`.
fn app_db(stats: &Value) -> &Value {
    stats["databases"].as_array().and_then(|d| d.iter().find(|d| d["name"] == DB)).expect("database in /api/stats")
}

#[tokio::test]
async fn api_stats_reports_pools_requests_and_errors() -> Result<()> {
    let p = Setup::new("dash_api").await?.server("admin_listen = \"127.0.0.1:0\"").server("dashboard_password = \"s3cret\"").start().await?;
    // The password is required for the page and the JSON, not for /metrics.
    for path in ["/", "/api/stats"] {
        assert_eq!(get(&p, path, None).await?.status().as_u16(), 401, "{path}");
        assert_eq!(get(&p, path, Some("wrong")).await?.status().as_u16(), 401, "{path}");
    }
    assert_eq!(get(&p, "/metrics", None).await?.status().as_u16(), 200);
    let page = get(&p, "/", Some("s3cret")).await?;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await?;
    assert!(html.contains("<canvas") || html.contains("\"canvas\""), "no chart in the page");
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");

    for _ in 0..3 {
        p.prisma_ok().await?;
    }
    let r = p.neon(&json!({"query": "SELECT * FROM no_such_table", "params": []})).await?;
    assert_eq!(r.status, 400);
    let s = stats(&p, Some("s3cret")).await?;
    let db = app_db(&s);
    assert_eq!(db["requests_total"], 4, "{s}");
    assert_eq!(db["errors_total"], 1, "{s}");
    assert_eq!(db["pool"]["max"], 20, "{s}");
    assert_eq!(db["pool"]["active"], 0, "{s}");
    assert!(db["pool"]["idle"].as_i64().is_some_and(|n| n >= 1), "{s}");
    for f in ["wire", "ws", "sql", "prisma"] {
        assert_eq!(db["clients"][f], 0, "{f}: {s}");
    }
    let errors = db["recent_errors"].as_array().expect("recent_errors");
    assert!(errors.iter().any(|e| e["front"] == "sql" && e["message"].as_str().is_some_and(|m| m.contains("no_such_table"))), "{s}");
    assert!(s["cache"]["enabled"].is_boolean(), "{s}");
    assert_eq!(s["draining"], false);
    // The sampler adds one sample a second: the history grows.
    let before = db["samples"].as_array().map_or(0, Vec::len);
    let grew = poll(50, || async {
        let s = stats(&p, Some("s3cret")).await.ok()?;
        (app_db(&s)["samples"].as_array().map_or(0, Vec::len) > before).then_some(())
    })
    .await;
    assert!(grew.is_some(), "no new sample");
    p.stop().await;
    Ok(())
}

fn chromium() -> Result<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())) {
            return Ok(p);
        }
    }
    bail!("no chromium on PATH (install Debian's `chromium`; .ci/run does)")
}

/// Loads `url` in headless Chromium, lets its scripts run for a few seconds of virtual time,
/// and returns the DOM as rendered (`--dump-dom`); with `screenshot`, also saves a PNG.
pub async fn render(url: &str, screenshot: Option<&std::path::Path>) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut cmd = tokio::process::Command::new(chromium()?);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=2500", "--window-size=1280,760"]);
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    cmd.arg(url).kill_on_drop(true).stderr(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.context("chromium timed out")??;
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number the page shows for `data-k="key"` in the card of database `db`.
fn shown(dom: &str, db: &str, key: &str) -> Option<f64> {
    let card = &dom[dom.find(&format!("data-db=\"{db}\""))?..];
    let at = card.find(&format!("data-k=\"{key}\""))?;
    let rest = &card[at..];
    let text = &rest[rest.find('>')? + 1..];
    text[..text.find('<')?].trim().parse().ok()
}

#[tokio::test]
async fn dashboard_renders_in_chromium_and_follows_the_load() -> Result<()> {
    let p = Setup::new("dash_web").await?.server("admin_listen = \"127.0.0.1:0\"").start().await?;
    let url = format!("http://{}/", p.admin().context("admin")?);
    for _ in 0..2 {
        p.prisma_ok().await?;
    }
    let first = render(&url, None).await?;
    assert!(first.contains(&format!("data-db=\"{DB}\"")) && first.contains(&format!("<h2>{DB}</h2>")), "database not shown:\n{first}");
    assert_eq!(shown(&first, DB, "requests_total"), Some(2.0), "{first}");
    assert_eq!(shown(&first, DB, "pool_max"), Some(20.0), "{first}");
    // The status line says when the figures were fetched (not "stats unavailable").
    assert!(first.contains("id=\"status\">updated"), "{first}");
    // More load: the next rendering shows it.
    for _ in 0..5 {
        p.neon_ok().await?;
    }
    let second = render(&url, None).await?;
    assert_eq!(shown(&second, DB, "requests_total"), Some(7.0), "{second}");
    if let Some(path) = std::env::var_os("TIDEPOOL_DASHBOARD_SCREENSHOT") {
        render(&url, Some(std::path::Path::new(&path))).await?;
    }
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn metrics_and_stats_answer_while_draining() -> Result<()> {
    let mut p = Setup::new("dash_drain").await?.server("admin_listen = \"127.0.0.1:0\"").server("shutdown_timeout = \"120s\"").start().await?;
    let admin = p.admin().context("admin")?;
    // A client inside a transaction keeps the drain going until it commits.
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user={TRUST_USER} dbname={DB}", p.app_pg_port()), tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    client.batch_execute("BEGIN; SELECT 1").await?;
    let stopping = p.begin_stop();
    let health = poll(100, || async {
        let r = p.client.get(format!("http://{admin}/healthz")).send().await.ok()?;
        (r.status().as_u16() == 503).then_some(())
    })
    .await;
    assert!(health.is_some(), "healthz never reported draining");
    let metrics = p.client.get(format!("http://{admin}/metrics")).send().await?;
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await?.contains("tidepool_request_duration_seconds"), "metrics while draining");
    let s: Value = p.client.get(format!("http://{admin}/api/stats")).send().await?.json().await?;
    assert_eq!(s["draining"], true, "{s}");
    assert_eq!(app_db(&s)["clients"]["wire"], 1, "{s}");
    assert!(!stopping.is_finished(), "the drain waits for the open transaction");
    client.batch_execute("COMMIT").await?;
    drop(client);
    let _ = conn.await;
    bounded("drain", 60, stopping).await?;
    Ok(())
}
