//! Several tidepool nodes (in-process) sharing one `redis-server` and one Postgres, all started
//! by the test on free ports: the global connection budget under pgbench on every node at once,
//! with a node crashing and Redis restarting mid-run (upstream connections sampled from
//! `pg_stat_activity`), cancel requests sent to a node other than the client's, and a node that
//! stops gracefully leaving at once (membership and leases gone long before `lease_ttl`), and a
//! node reaching Redis over TLS (`rediss://`).

mod cluster_support;
#[allow(dead_code)]
#[path = "wire/common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cluster_support::{hold_idle, show_peers, wait_until_async, RealNode};
use common::{Proxy, Setup, SCRAM_CLIENT, SCRAM_CLIENT_PW};
use parking_lot::Mutex;
use tidepool_testkit::{run_pgbench, TestCluster, TestRedis, SCRAM_USER};
use tokio::io::AsyncWriteExt;

const BUDGET: i64 = 10;

fn cluster_toml(setup: &Setup, redis: &str, node: &str) -> String {
    format!(
        "{}\n[cluster]\nredis_url = \"{redis}\"\nnode_id = \"{node}\"\nlease_ttl = \"3s\"\nheartbeat = \"500ms\"\nredis_timeout = \"300ms\"\n",
        setup.toml()
    )
}

async fn node(cluster: &TestCluster, db: &str, redis: &str, name: &str) -> Result<Proxy> {
    let setup =
        Setup::new(cluster, db).db(&format!("pool_size = {BUDGET}")).db("pool_timeout = \"60s\"").server(&format!("admin_users = [\"{SCRAM_CLIENT}\"]"));
    Proxy::start(&cluster_toml(&setup, redis, name)).await
}

/// Polls `cond` until it holds; fails after 30 s (a hang guard, not a timing check).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..3000 {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("timed out waiting until {what}")
}

async fn coordinated(nodes: &[&Proxy], n: usize) -> Result<()> {
    for p in nodes {
        let c = p.app().cluster.clone().context("cluster")?;
        wait_until("all nodes see each other", || c.coordinated() && c.peers().len() == n).await?;
    }
    Ok(())
}

/// Samples the upstream connections of `db` (tidepool's upstream user) every few ms; keeps the
/// maximum of the current phase.
struct Sampler {
    max: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Sampler {
    async fn start(cluster: &TestCluster, db: &str) -> Result<Sampler> {
        let direct = cluster.client("postgres").await?;
        let (max, stop) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicBool::new(false)));
        let (m, s, db) = (max.clone(), stop.clone(), db.to_owned());
        let task = tokio::spawn(async move {
            let q = direct.prepare("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = $1 AND usename = $2").await?;
            while !s.load(Ordering::SeqCst) {
                let n: i64 = direct.query_one(&q, &[&db, &SCRAM_USER]).await?.get(0);
                m.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        });
        Ok(Sampler { max, stop, task })
    }

    /// The maximum since the last call (resets it).
    fn take_max(&self) -> i64 {
        self.max.swap(0, Ordering::SeqCst)
    }

    async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

/// pgbench (TPC-B-like, writes) on `proxy`: `clients` clients for `secs` seconds. Returns
/// (transactions processed, failed).
async fn pgbench(proxy: &Proxy, clients: u32, secs: u32) -> Result<(u64, u64)> {
    let url = proxy.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    let c = clients.to_string();
    let t = secs.to_string();
    let out = run_pgbench(["-n", "-c", c.as_str(), "-j", "1", "-T", t.as_str(), url.as_str()]).await?;
    let out = out.ok()?;
    let processed = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of transactions actually processed: ")?.split(['/', ' ']).next()?.parse().ok())
        .with_context(|| format!("pgbench output: {}", out.stdout))?;
    Ok((processed, out.pgbench_failed()))
}

/// The leases of pool `db` in Redis (members `<node>:<n>`, space-separated).
fn members(redis: &TestRedis) -> Result<String> {
    let reply = redis.command(&format!("EVAL \"return table.concat(redis.call('ZRANGE', KEYS[1], 0, -1), ' ')\" 1 {{tidepool}}:budget:{}", common::DB))?;
    anyhow::ensure!(!reply.starts_with('-'), "redis: {reply}");
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_never_exceed_one_budget_through_a_crash_and_a_redis_restart() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cluster_budget").await?;
    let mut redis = TestRedis::start()?;
    let url = redis.url();
    let a = node(cluster, &db, &url, "a").await?;
    let b = node(cluster, &db, &url, "b").await?;
    let c = node(cluster, &db, &url, "c").await?;
    coordinated(&[&a, &b, &c], 3).await?;
    let init = run_pgbench(["-i", "-s", "1", "-q", a.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)).as_str()]).await?;
    init.ok()?;
    let sampler = Sampler::start(cluster, &db).await?;
    let report = Mutex::new(Vec::new());

    // 1. pgbench on all three at once, 8 clients each (24 > 10).
    sampler.take_max();
    let (ra, rb, rc) = tokio::join!(pgbench(&a, 8, 4), pgbench(&b, 8, 4), pgbench(&c, 8, 4));
    let max = sampler.take_max();
    report.lock().push(("3 nodes", max));
    for (name, r) in [("a", ra?), ("b", rb?), ("c", rc?)] {
        assert!(r.0 > 0 && r.1 == 0, "node {name}: {r:?}");
    }
    assert!(max <= BUDGET, "{max} upstream connections with a budget of {BUDGET}");
    let c_leases = c.app().cluster.as_ref().unwrap().metrics().leases_held.get();
    assert!(c_leases > 0, "node c holds part of the budget");

    // 2. Node c crashes: its cluster tasks stop without giving its leases back, then its
    // connections go. a and b reach the whole budget once c's leases expire.
    c.app().cluster.as_ref().unwrap().halt();
    drop(c);
    sampler.take_max();
    let (ra, rb) = tokio::join!(pgbench(&a, 8, 7), pgbench(&b, 8, 7));
    let max = sampler.take_max();
    report.lock().push(("node c crashed", max));
    for (name, r) in [("a", ra?), ("b", rb?)] {
        assert!(r.0 > 0 && r.1 == 0, "node {name}: {r:?}");
    }
    assert!(max <= BUDGET, "{max} upstream connections with a budget of {BUDGET}");
    let left = members(&redis)?;
    assert!(!left.is_empty() && !left.contains("c:"), "node c's leases expired, a's and b's are there: {left}");
    // 16 clients on a and b: they used the whole budget, c's share included.
    assert_eq!(max, BUDGET, "a and b took over c's share");
    coordinated(&[&a, &b], 2).await?;

    // 3. Redis restarts (empty) in the middle of a run.
    sampler.take_max();
    let run = async { tokio::join!(pgbench(&a, 8, 8), pgbench(&b, 8, 8)) };
    let restart = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        redis.restart()
    };
    let ((ra, rb), restarted) = tokio::join!(run, restart);
    restarted?;
    let max = sampler.take_max();
    report.lock().push(("Redis restarted", max));
    for (name, r) in [("a", ra?), ("b", rb?)] {
        assert!(r.0 > 0 && r.1 == 0, "node {name}: {r:?}");
    }
    assert!(max <= BUDGET, "{max} upstream connections with a budget of {BUDGET}");
    let fallbacks = a.app().cluster.as_ref().unwrap().metrics().fallbacks.get() + b.app().cluster.as_ref().unwrap().metrics().fallbacks.get();
    assert!(fallbacks >= 1, "the restart was noticed");
    // The nodes re-registered their leases in the new Redis.
    coordinated(&[&a, &b], 2).await?;
    let held = || a.app().cluster.as_ref().unwrap().metrics().leases_held.get() + b.app().cluster.as_ref().unwrap().metrics().leases_held.get();
    let in_redis = || members(&redis).map(|m| m.split_whitespace().count() as i64).unwrap_or(-1);
    wait_until("every lease held is in the new Redis", || held() > 0 && in_redis() == held()).await?;
    assert!(in_redis() <= BUDGET);

    sampler.stop().await?;
    eprintln!("sampled maximum of upstream connections (budget {BUDGET}): {:?}", report.lock());
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// A TCP forwarder standing in for a load balancer: each new connection goes to the current target.
async fn balancer(target: Arc<Mutex<SocketAddr>>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = *target.lock();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Ok(addr)
}

async fn raw_cancel(to: SocketAddr, pid: i32, secret: i32) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(to).await?;
    let mut msg = Vec::with_capacity(16);
    msg.extend_from_slice(&16i32.to_be_bytes());
    msg.extend_from_slice(&80877102i32.to_be_bytes());
    msg.extend_from_slice(&pid.to_be_bytes());
    msg.extend_from_slice(&secret.to_be_bytes());
    s.write_all(&msg).await?;
    s.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_node_reaches_the_query_and_a_random_key_does_nothing() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cluster_cancel").await?;
    let redis = TestRedis::start()?;
    let a = node(cluster, &db, &redis.url(), "a").await?;
    let b = node(cluster, &db, &redis.url(), "b").await?;
    coordinated(&[&a, &b], 2).await?;

    // SHOW PEERS on A's console lists both nodes.
    let mut console = a.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW));
    console.dbname("pgbouncer");
    let console = common::connect(&console).await?;
    let rows: Vec<String> = console
        .simple_query("SHOW PEERS")
        .await?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(format!("{} {}", r.get(0).unwrap_or(""), r.get(2).unwrap_or(""))),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["a yes", "b no"]);

    // The client reaches A through the balancer; its cancel request is sent after the balancer
    // switched to B, so it arrives at B.
    let target = Arc::new(Mutex::new(a.pg));
    let lb = balancer(target.clone()).await?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1").port(lb.port()).user(SCRAM_CLIENT).password(SCRAM_CLIENT_PW).dbname(common::DB);
    let client = common::connect(&cfg).await?;
    let token = client.cancel_token();
    *target.lock() = b.pg;
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(60)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await?;
    let r = tokio::time::timeout(Duration::from_secs(30), query).await.context("the cancel never arrived")??;
    common::expect_code(r, "57014");
    let forwarded = b.app().cluster.as_ref().unwrap().metrics().cancels_forwarded.get();
    assert_eq!(forwarded, 1, "B did not know the key and published it");

    // A random key through B during a short query on A: no effect.
    let client = common::connect(&a.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW))).await?;
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(1.5)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        raw_cancel(b.pg, rand::random(), rand::random()).await?;
    }
    let received = a.app().cluster.as_ref().unwrap().metrics().cancels_received.clone();
    wait_until("A received the random keys", || received.get() >= 21).await?;
    query.await?.context("a random cancel key must not cancel anything")?;
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_gives_its_budget_back_within_the_lease_ttl() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cluster_sigkill").await?;
    let redis = TestRedis::start()?;
    let a = node(cluster, &db, &redis.url(), "a").await?;
    let port = tidepool_testkit::free_port();
    let setup = Setup::new(cluster, &db).db(&format!("pool_size = {BUDGET}")).db("pool_timeout = \"60s\"");
    let toml = cluster_toml(&setup, &redis.url(), "k").replace("pg_listen = \"127.0.0.1:0\"", &format!("pg_listen = \"127.0.0.1:{port}\""));
    let mut k = RealNode::start(&toml, port)?;
    coordinated(&[&a], 2).await?;
    let init = run_pgbench(["-i", "-s", "1", "-q", a.url(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)).as_str()]).await?;
    init.ok()?;
    let sampler = Sampler::start(cluster, &db).await?;

    // K takes most of the budget (12 clients, A idle), then dies with SIGKILL mid-run.
    let k_url = k.url();
    let load = tokio::spawn(async move { run_pgbench(["-n", "-c", "12", "-j", "1", "-T", "30", k_url.as_str()]).await });
    let seen = sampler.max.clone();
    wait_until_async("K holds leases and has its connections open", || async {
        members(&redis).map(|m| m.matches("k:").count()).unwrap_or(0) >= 5 && seen.load(Ordering::SeqCst) >= 5
    })
    .await?;
    k.child.kill()?;
    k.child.wait()?;
    let _ = load.await?;
    let held_by_k = members(&redis)?.matches("k:").count();
    assert!(held_by_k >= 5, "K's leases outlive it until they expire ({held_by_k})");
    let max_before = sampler.take_max();
    assert!(max_before <= BUDGET, "{max_before} upstream connections with a budget of {BUDGET}");

    // A, with 12 clients, gets the whole budget once K's leases expired.
    let r = pgbench(&a, 12, 7).await?;
    assert!(r.0 > 0 && r.1 == 0, "{r:?}");
    let max = sampler.take_max();
    let left = members(&redis)?;
    assert!(!left.is_empty() && !left.contains("k:"), "K's leases expired, A's are there: {left}");
    assert!(max <= BUDGET, "{max} upstream connections with a budget of {BUDGET}");
    // K's connections died with it: what the sampler saw since is A's alone.
    assert_eq!(max, BUDGET, "A took over K's share");
    sampler.stop().await?;
    eprintln!("SIGKILL: sampled maximum of upstream connections {max_before} before/at the kill, {max} after (budget {BUDGET}); K held {held_by_k} leases when killed");
    a.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stopped_gracefully_leave_the_cluster_at_once() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cluster_leave").await?;
    let redis = TestRedis::start()?;
    // A long lease TTL: whatever is given back well before it was given back by the leave.
    let toml = |name: &str| {
        let setup =
            Setup::new(cluster, &db).db(&format!("pool_size = {BUDGET}")).db("pool_timeout = \"20s\"").server(&format!("admin_users = [\"{SCRAM_CLIENT}\"]"));
        cluster_toml(&setup, &redis.url(), name).replace("lease_ttl = \"3s\"", "lease_ttl = \"60s\"")
    };
    // A: a real `tidepool serve` stopped by SIGTERM; C: in-process, stopped by `Running::stop`.
    let port = tidepool_testkit::free_port();
    let mut a = RealNode::start(&toml("a").replace("pg_listen = \"127.0.0.1:0\"", &format!("pg_listen = \"127.0.0.1:{port}\"")), port)?;
    let b = Proxy::start(&toml("b")).await?;
    let c = Proxy::start(&toml("c")).await?;
    coordinated(&[&b, &c], 3).await?;
    assert_eq!(show_peers(&b).await?, ["a", "b", "c"]);

    let a_cfg: tokio_postgres::Config = a.url().parse()?;
    hold_idle(&a_cfg, 6).await?;
    hold_idle(&c.config(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)), 3).await?;
    let before = members(&redis)?;
    assert!(before.matches("a:").count() >= 6 && before.matches("c:").count() >= 3, "A and C hold a lease per open connection: {before}");

    // Both stop gracefully: their membership and leases are removed as they go.
    std::process::Command::new("kill").args(["-TERM", &a.child.id().to_string()]).status()?;
    let mut exited = None;
    for _ in 0..300 {
        exited = a.child.try_wait()?;
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "A drained and exited after SIGTERM: {exited:?}");
    common::bounded("node C's graceful stop", 30, c.stop()).await;
    let left = members(&redis)?;
    assert!(!left.contains("a:") && !left.contains("c:"), "A's and C's leases are gone: {left}");

    // B uses the whole budget: 10 transactions held at once (each needs its own connection),
    // within a hang bound far below the 60 s lease TTL.
    let b = &b;
    let all = common::bounded("B taking the whole budget", 40, async {
        let mut held = Vec::new();
        for _ in 0..BUDGET {
            let c = b.client().await?;
            c.batch_execute("BEGIN").await?;
            let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
            held.push((c, pid));
        }
        anyhow::Ok(held)
    })
    .await?;
    let pids: std::collections::HashSet<i32> = all.iter().map(|(_, pid)| *pid).collect();
    assert_eq!(pids.len() as i64, BUDGET, "B holds {BUDGET} upstream connections at once");
    drop(all);

    // B's SHOW PEERS no longer lists A or C (at B's next heartbeat, not after the TTL).
    let mut peers = Vec::new();
    for _ in 0..300 {
        peers = show_peers(b).await?;
        if peers == ["b"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peers, ["b"], "A and C left B's SHOW PEERS");

    // Leaving is best effort: with its Redis unreachable a node still stops (a hang bound only).
    let dead = format!("redis://127.0.0.1:{}", tidepool_testkit::free_port());
    let setup = Setup::new(cluster, &db).db(&format!("pool_size = {BUDGET}"));
    let d = Proxy::start(&cluster_toml(&setup, &dead, "d")).await?;
    common::bounded("a stop with Redis unreachable", 20, d.stop()).await;
    Ok(())
}

/// `rediss://`: a real node reaching Redis only over TLS (certificate signed by a test CA the
/// process trusts through `SSL_CERT_FILE`) joins the cluster and takes leases there; a node on the
/// same Redis's plain port sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_redis_over_tls() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("cluster_tls").await?;
    let redis = TestRedis::start_tls()?;
    let (tls_url, ca) = (redis.tls_url().context("tls url")?, redis.tls_ca_file().context("ca file")?);
    let b = node(cluster, &db, &redis.url(), "b").await?;
    let port = tidepool_testkit::free_port();
    let setup = Setup::new(cluster, &db).db(&format!("pool_size = {BUDGET}"));
    let toml = cluster_toml(&setup, &tls_url, "t").replace("pg_listen = \"127.0.0.1:0\"", &format!("pg_listen = \"127.0.0.1:{port}\""));
    let t = RealNode::start_with_ca(&toml, port, Some(&ca))?;
    coordinated(&[&b], 2).await?;
    assert_eq!(show_peers(&b).await?, ["b", "t"]);
    let c = common::connect(&t.url().parse()?).await?;
    c.batch_execute("SELECT 1").await?;
    let leases = members(&redis)?;
    assert!(leases.contains("t:"), "the TLS node took its lease in Redis: {leases}");
    Ok(())
}
