//! Two tidepool nodes (two in-process instances, each with its own cache, Redis tier and node id)
//! in front of one database and one `redis-server` started on a free port: an entry cached
//! through node A is a `ttl` hit on node B without running on the database; an invalidation sent
//! to B drops A's local copy; with Redis killed requests still succeed (and the errors are
//! counted); after Redis comes back each node re-subscribes and drops its local entries.

use anyhow::Result;
use serde_json::json;
use tidepool_testkit::TestRedis;

use crate::cache::{find_many, names, q, runs, schema, status};
use crate::common::*;

/// The value of a counter in a node's `/metrics` text (0 when absent).
fn counter(p: &Proxy, name: &str) -> u64 {
    let text = p.app().render_metrics();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

async fn subscribed(p: &Proxy, times: u64) {
    let ok = poll(400, || async { (counter(p, "tidepool_cache_redis_subscriptions_total") >= times).then_some(()) }).await;
    assert!(ok.is_some(), "node never subscribed to invalidations ({times})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_entries_and_invalidations_through_redis() -> Result<()> {
    let mut redis = TestRedis::start()?;
    let setup = Setup::new("cache_nodes")
        .await?
        .cache(&format!("redis_url = \"{}\"", redis.url()))
        // Generous for a shared machine: these check behaviour, not speed.
        .cache("redis_timeout = \"500ms\"")
        .cache("redis_reconnect_max_delay = \"200ms\"");
    let a = setup.clone().start().await?;
    let b = setup.start().await?;
    subscribed(&a, 1).await;
    subscribed(&b, 1).await;
    schema(&a, 0.0).await?;
    let (users, cc) = (find_many("Counted", 1), Some("max-age=600"));

    // Cached through A (one run on the database), written through to Redis...
    assert_eq!(status(&q(&a, &users, cc, Some("users")).await?), "miss");
    assert_eq!(runs(&a).await?, 1);
    let stored = poll(400, || async { (redis.command("KEYS tidepool:v1:74*").ok()? == "*1").then_some(()) }).await;
    assert!(stored.is_some(), "the entry never reached Redis");
    // ...so B's first read is a ttl hit that does not run.
    let r = q(&b, &users, cc, Some("users")).await?;
    assert_eq!(status(&r), "ttl");
    assert_eq!(names(&r), ["one", "two"]);
    assert_eq!(runs(&a).await?, 1, "a hit from Redis does not run on the database");

    // Invalidating on B drops A's local copy (broadcast) and the Redis copy (generations).
    let r = b.prisma("/invalidate", Some(KEY_A), &json!({"tags": ["users"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let dropped = poll(400, || async {
        let r = q(&a, &users, cc, Some("users")).await.ok()?;
        (status(&r) == "miss").then_some(())
    })
    .await;
    assert!(dropped.is_some(), "node A kept serving an entry invalidated on node B");
    assert_eq!(counter(&a, "tidepool_cache_redis_remote_invalidations_total"), 1);
    assert_eq!(counter(&b, "tidepool_cache_redis_remote_invalidations_total"), 0, "a node ignores its own broadcast");

    // Redis killed: every request still succeeds, cached or not; the errors are counted.
    let other = find_many("Counted", 2);
    redis.kill();
    for p in [&a, &b] {
        for body in [&users, &other] {
            let r = bounded("a request with Redis down", 30, q(p, body, cc, Some("users"))).await?;
            let s = status(&r);
            assert!(s == "miss" || s == "ttl", "{s}");
            assert!(!names(&r).is_empty());
        }
        let r = bounded("a request without strategy", 30, q(p, &users, None, None)).await?;
        assert_eq!(status(&r), "none");
    }
    assert!(counter(&a, "tidepool_cache_redis_errors_total") + counter(&b, "tidepool_cache_redis_errors_total") > 0);
    // B now holds `other` locally (cached during the outage).
    assert_eq!(status(&q(&b, &other, cc, Some("users")).await?), "ttl");

    // Redis back: each node re-subscribes and drops its local entries (it may have missed
    // invalidations), so `other` runs again on B.
    redis.restart()?;
    subscribed(&a, 2).await;
    subscribed(&b, 2).await;
    let before = runs(&b).await?;
    assert_eq!(status(&q(&b, &other, cc, Some("users")).await?), "miss");
    assert_eq!(runs(&b).await?, before + 1);
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// A `tidepool serve` child process (killed on drop) with its HTTP and admin listeners.
struct Process {
    proxy: Proxy,
    admin: std::net::SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary on `setup`'s config (given fixed ports here) and waits until `/health`
    /// answers.
    async fn start(setup: &Setup) -> Result<Process> {
        let free = tidepool_testkit::free_port;
        let (pg, http, admin) = (free(), free(), free());
        let toml = setup.toml().replacen("pg_listen = \"127.0.0.1:0\"", &format!("pg_listen = \"127.0.0.1:{pg}\""), 1).replacen(
            "http_listen = \"127.0.0.1:0\"",
            &format!("http_listen = \"127.0.0.1:{http}\"\nadmin_listen = \"127.0.0.1:{admin}\""),
            1,
        );
        anyhow::ensure!(toml.contains(&format!("admin_listen = \"127.0.0.1:{admin}\"")), "the test config's listeners changed:\n{toml}");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tidepool.toml");
        std::fs::write(&path, toml)?;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let proxy = Proxy::external(([127, 0, 0, 1], http).into(), setup.real_db.clone())?;
        let up = poll(400, || async { proxy.client.get(proxy.url("/health")).send().await.ok().filter(|r| r.status() == 200).map(|_| ()) }).await;
        anyhow::ensure!(up.is_some(), "tidepool serve did not come up");
        Ok(Process { proxy, admin: ([127, 0, 0, 1], admin).into(), _child: child, _dir: dir })
    }

    async fn counter(&self, name: &str) -> Result<u64> {
        let text = self.proxy.client.get(format!("http://{}/metrics", self.admin)).send().await?.text().await?;
        Ok(text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0))
    }
}

/// The same through two `tidepool serve` processes (the binary, its config loading and wiring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tidepool_processes_share_the_cache_through_redis() -> Result<()> {
    let mut redis = TestRedis::start()?;
    let setup = Setup::new("cache_procs")
        .await?
        .cache(&format!("redis_url = \"{}\"", redis.url()))
        .cache("redis_timeout = \"500ms\"")
        .cache("redis_reconnect_max_delay = \"200ms\"");
    let (a, b) = (Process::start(&setup).await?, Process::start(&setup).await?);
    for p in [&a, &b] {
        let ok = poll(400, || async { (p.counter("tidepool_cache_redis_subscriptions_total").await.ok()? >= 1).then_some(()) }).await;
        assert!(ok.is_some(), "a process never subscribed");
    }
    schema(&a.proxy, 0.0).await?;
    let (users, cc) = (find_many("Counted", 1), Some("max-age=600"));
    assert_eq!(status(&q(&a.proxy, &users, cc, Some("users")).await?), "miss");
    let stored = poll(400, || async { (redis.command("KEYS tidepool:v1:74*").ok()? == "*1").then_some(()) }).await;
    assert!(stored.is_some(), "the entry never reached Redis");
    assert_eq!(status(&q(&b.proxy, &users, cc, Some("users")).await?), "ttl");
    assert_eq!(runs(&a.proxy).await?, 1);

    let r = b.proxy.prisma("/invalidate", Some(KEY_A), &json!({"tags": ["users"]})).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    let dropped = poll(400, || async { (status(&q(&a.proxy, &users, cc, Some("users")).await.ok()?) == "miss").then_some(()) }).await;
    assert!(dropped.is_some(), "process A kept serving an entry invalidated through process B");

    redis.kill();
    for p in [&a, &b] {
        for min_id in [1, 2, 3] {
            let r = bounded("a request with Redis down", 30, q(&p.proxy, &find_many("Counted", min_id), cc, Some("users"))).await?;
            assert!(matches!(status(&r), "miss" | "ttl"));
        }
    }
    assert!(a.counter("tidepool_cache_redis_errors_total").await? + b.counter("tidepool_cache_redis_errors_total").await? > 0);
    Ok(())
}
