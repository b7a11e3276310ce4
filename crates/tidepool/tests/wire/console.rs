//! The PgBouncer-compatible admin console (database `pgbouncer` / `tidepool` on the wire
//! listener): every SHOW with psql and tokio-postgres, live figures under a held transaction,
//! admin vs stats permissions, refused logins, errors that leave the session usable, and column
//! parity with a real PgBouncer (the Debian `pgbouncer` package) started by the test.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tidepool_testkit::{free_port, os_user, pg_bin, TestCluster};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::*;

/// Every SHOW the console answers with a table.
const TABLES: [&str; 12] =
    ["POOLS", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "DATABASES", "CLIENTS", "SERVERS", "LISTS", "CONFIG", "USERS", "MEM", "VERSION"];

/// tidepool with alice (SCRAM) as admin and bob (md5) as stats user; carol (trust) is neither.
async fn console_proxy(cluster: &TestCluster, db: &str) -> Result<Proxy> {
    Setup::new(cluster, db)
        .db("pool_size = 3")
        .db("pool_timeout = \"10s\"")
        .server(&format!("admin_users = [\"{SCRAM_CLIENT}\"]"))
        .server(&format!("stats_users = [\"{MD5_CLIENT}\"]"))
        .server(&format!("dashboard_password = \"{DASHBOARD_PW}\""))
        .start()
        .await
}

/// A secret that SHOW CONFIG must never print.
const DASHBOARD_PW: &str = "dash-secret-never-shown";

async fn console(p: &Proxy, user: &str, password: Option<&str>, dbname: &str) -> Result<Client, tokio_postgres::Error> {
    let mut c = p.config(user, password);
    c.dbname(dbname).application_name("console-test");
    try_connect(&c).await
}

/// Rows of a simple query as (column names, rows of column → value).
async fn show(c: &Client, sql: &str) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), tokio_postgres::Error> {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::RowDescription(cols) => columns = cols.iter().map(|c| c.name().to_owned()).collect(),
            SimpleQueryMessage::Row(r) => rows.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            _ => {}
        }
    }
    Ok((columns, rows))
}

fn col(columns: &[String], name: &str) -> usize {
    columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {columns:?}"))
}

/// The figure in column `name` of the row whose first column is `first` (and second `second`).
fn figure(columns: &[String], rows: &[Vec<Option<String>>], key: &[&str], name: &str) -> i64 {
    let row = rows.iter().find(|r| key.iter().enumerate().all(|(i, k)| r[i].as_deref() == Some(*k))).unwrap_or_else(|| panic!("no row {key:?} in {rows:?}"));
    row[col(columns, name)].as_deref().expect("value").parse().expect("integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_live_pools_and_clients() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console").await?;
    let p = console_proxy(cluster, &db).await?;
    let admin = console(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "pgbouncer").await?;
    // Every SHOW answers; with a trailing ';' and any case too.
    for what in TABLES {
        let (columns, _) = show(&admin, &format!("SHOW {what}")).await?;
        assert!(!columns.is_empty(), "SHOW {what} has columns");
        let (again, _) = show(&admin, &format!("  show {};", what.to_lowercase())).await?;
        assert_eq!(columns, again, "SHOW {what} case and ';'");
    }
    let (cols, rows) = show(&admin, "SHOW VERSION").await?;
    assert_eq!(cols, ["version"]);
    assert!(rows[0][0].as_deref().is_some_and(|v| v.starts_with("tidepool ")), "{rows:?}");

    // A client holding a transaction: one active server; another client: idle between transactions.
    let holder = p.client().await?;
    holder.batch_execute("BEGIN; SELECT 1").await?;
    let holder_pid = holder.simple_query("SELECT pg_backend_pid()").await?.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert!(holder_pid.is_some(), "the holder's backend pid");
    let idle = p.client().await?;
    idle.simple_query("SELECT 1").await?;
    // SHOW SERVERS: the held server is active (with the holder's backend pid), the other idle.
    let (cols, rows) = show(&admin, "SHOW SERVERS").await?;
    let (state, pid) = (col(&cols, "state"), col(&cols, "remote_pid"));
    let mine: Vec<_> = rows.iter().filter(|r| r[col(&cols, "database")].as_deref() == Some(DB)).collect();
    assert_eq!(mine.len(), 2, "{rows:?}");
    assert!(mine.iter().all(|r| r[0].as_deref() == Some("S") && r[col(&cols, "port")].as_deref() == Some(cluster.port().to_string().as_str())), "{rows:?}");
    let active: Vec<_> = mine.iter().filter(|r| r[state].as_deref() == Some("active")).collect();
    assert_eq!(active.len(), 1, "{rows:?}");
    assert_eq!(active[0][pid], holder_pid, "{rows:?}");
    assert_eq!(mine.iter().filter(|r| r[state].as_deref() == Some("idle")).count(), 1, "{rows:?}");
    let (cols, rows) = show(&admin, "SHOW POOLS").await?;
    assert_eq!(figure(&cols, &rows, &[DB], "sv_active"), 1, "{rows:?}");
    assert_eq!(figure(&cols, &rows, &[DB], "sv_idle"), 1, "{rows:?}");
    assert_eq!(figure(&cols, &rows, &[DB], "cl_active"), 2, "{rows:?}");
    assert_eq!(figure(&cols, &rows, &["pgbouncer"], "cl_active"), 1, "{rows:?}");
    holder.batch_execute("COMMIT").await?;
    let (cols, rows) = show(&admin, "SHOW POOLS").await?;
    assert_eq!(figure(&cols, &rows, &[DB], "sv_active"), 0, "{rows:?}");
    assert_eq!(figure(&cols, &rows, &[DB], "sv_idle"), 2, "{rows:?}");
    let (cols, rows) = show(&admin, "SHOW SERVERS").await?;
    let idle_now = rows.iter().filter(|r| r[col(&cols, "database")].as_deref() == Some(DB) && r[col(&cols, "state")].as_deref() == Some("idle"));
    assert_eq!(idle_now.count(), 2, "both servers idle after COMMIT: {rows:?}");
    let (cols, rows) = show(&admin, "SHOW DATABASES").await?;
    assert_eq!(figure(&cols, &rows, &[DB], "pool_size"), 3);
    assert_eq!(figure(&cols, &rows, &[DB], "current_connections"), 2);
    assert_eq!(figure(&cols, &rows, &[DB], "current_client_connections"), 2);
    let (cols, rows) = show(&admin, "SHOW STATS_TOTALS").await?;
    assert!(figure(&cols, &rows, &[DB], "xact_count") >= 2, "{rows:?}");
    assert!(figure(&cols, &rows, &[DB], "server_assignment_count") >= 2, "{rows:?}");

    // SHOW CLIENTS lists the two pooled clients and the console itself.
    let (cols, rows) = show(&admin, "SHOW CLIENTS").await?;
    let (user, database, state, frontend) = (col(&cols, "user"), col(&cols, "database"), col(&cols, "state"), col(&cols, "frontend"));
    let on_db: Vec<_> = rows.iter().filter(|r| r[database].as_deref() == Some(DB)).collect();
    assert_eq!(on_db.len(), 2, "{rows:?}");
    assert!(on_db.iter().all(|r| r[user].as_deref() == Some(SCRAM_CLIENT) && r[state].as_deref() == Some("active") && r[frontend].as_deref() == Some("tcp")));
    let me: Vec<_> = rows.iter().filter(|r| r[database].as_deref() == Some("pgbouncer")).collect();
    assert_eq!(me.len(), 1, "{rows:?}");
    assert_eq!(me[0][col(&cols, "application_name")].as_deref(), Some("console-test"));
    drop(idle);
    let gone = poll(200, || async {
        let (_, rows) = show(&admin, "SHOW CLIENTS").await.ok()?;
        (rows.iter().filter(|r| r[database].as_deref() == Some(DB)).count() == 1).then_some(())
    })
    .await;
    assert!(gone.is_some(), "a closed client leaves SHOW CLIENTS");
    let (cols, rows) = show(&admin, "SHOW CONFIG").await?;
    let admins = rows.iter().find(|r| r[0].as_deref() == Some("admin_users")).ok_or_else(|| anyhow!("no admin_users in {rows:?}"))?;
    assert_eq!(admins[col(&cols, "value")].as_deref(), Some(SCRAM_CLIENT));
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_permissions_and_errors() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_perm").await?;
    let p = console_proxy(cluster, &db).await?;
    // The alias works; an admin gets "not supported yet" for the control commands tidepool lacks.
    let admin = console(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "tidepool").await?;
    expect_code(admin.simple_query("SUSPEND").await, "0A000");
    // Unknown commands, SQL and a bad SHOW: 08P01 as PgBouncer, and the session goes on.
    let msg = expect_code(admin.simple_query("SHOW FOO").await, "08P01");
    assert!(msg.contains("invalid command"), "{msg}");
    expect_code(admin.simple_query("SELECT 1").await, "08P01");
    // The extended protocol is refused; the session still answers simple queries.
    expect_code(admin.query("SHOW POOLS", &[]).await, "08P01");
    let (cols, _) = show(&admin, "SHOW POOLS").await?;
    assert_eq!(cols[0], "database");
    // Empty query.
    assert!(admin.simple_query("").await.is_ok());

    // The stats user: SHOW yes, control commands no.
    let stats = console(&p, MD5_CLIENT, Some(MD5_CLIENT_PW), "pgbouncer").await?;
    assert!(!show(&stats, "SHOW STATS").await?.0.is_empty());
    let msg = expect_code(stats.simple_query("SHUTDOWN").await, "08P01");
    assert!(msg.contains("admin access needed"), "{msg}");
    for verb in ["PAUSE", "RESUME", "RELOAD", "KILL_CLIENT 1", "SET x = 1"] {
        let msg = expect_code(stats.simple_query(verb).await, "08P01");
        assert!(msg.contains("admin access needed"), "{verb}: {msg}");
    }
    assert!(!show(&stats, "SHOW CLIENTS").await?.1.is_empty());
    // Secrets are never printed, to either kind of console user.
    for c in [&stats, &admin] {
        let (cols, rows) = show(c, "SHOW CONFIG").await?;
        let pw = rows.iter().find(|r| r[0].as_deref() == Some("dashboard_password")).ok_or_else(|| anyhow!("no dashboard_password row"))?;
        assert_eq!(pw[col(&cols, "value")].as_deref(), Some("(set)"));
        assert!(!format!("{rows:?}").contains(DASHBOARD_PW), "SHOW CONFIG printed the dashboard password");
    }

    // A normal user is refused the console (28000); a wrong password stays a password failure.
    let e = console(&p, TRUST_CLIENT, None, "pgbouncer").await.err().ok_or_else(|| anyhow!("trust user got the console"))?;
    assert_eq!(code(&e).as_deref(), Some("28000"), "{e:?}");
    let e = console(&p, SCRAM_CLIENT, Some("wrong"), "pgbouncer").await.err().ok_or_else(|| anyhow!("wrong password accepted"))?;
    assert_eq!(code(&e).as_deref(), Some("28P01"), "{e:?}");
    // Normal sessions are unaffected.
    let c = p.client().await?;
    let (_, rows) = show(&c, "SELECT 1").await?;
    assert_eq!(rows, [[Some("1".to_owned())]]);
    p.stop().await;

    // Without admin_users/stats_users there is no console: the database does not exist.
    let p = Setup::new(cluster, &db).start().await?;
    let e = console(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "pgbouncer").await.err().ok_or_else(|| anyhow!("console without admin_users"))?;
    assert_eq!(code(&e).as_deref(), Some("3D000"), "{e:?}");
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn console_users_must_exist() {
    let toml = Setup::with_url("postgresql://u@127.0.0.1:1/x".into()).server("admin_users = [\"nobody-here\"]").toml();
    let e = tidepool::Config::from_toml(&toml, std::iter::empty()).expect_err("unknown admin user rejected");
    assert!(e.to_string().contains("admin_users"), "{e}");
}

/// psql's header line for `sql` (unaligned, `|`-separated), split into column names.
async fn psql_columns(url: &str, sql: &str) -> Result<Vec<String>> {
    let out = tokio::process::Command::new(pg_bin("psql")?)
        .args(["-X", "-A", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("psql {sql} failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout.lines().next().unwrap_or_default().split('|').map(str::to_owned).collect())
}

/// A real PgBouncer on a free port (trust auth, `adm` admin), in front of `db` of the cluster.
struct PgBouncer {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    async fn start(cluster: &TestCluster, db: &str) -> Result<PgBouncer> {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .ok_or_else(|| anyhow!("pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"))?;
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let port = free_port();
        let auth = dir.path().join("users.txt");
        std::fs::write(&auth, "\"adm\" \"\"\n")?;
        let ini = dir.path().join("pgbouncer.ini");
        let text = format!(
            "[databases]\n{db} = host=127.0.0.1 port={} dbname={db}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\nadmin_users = adm\nstats_users = adm\n",
            cluster.port(),
            auth.display()
        );
        std::fs::write(&ini, text)?;
        for f in [&auth, &ini] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))?;
        }
        let mut cmd = tokio::process::Command::new(bin);
        // PgBouncer refuses to run as root: the testkit's unprivileged server user runs it then.
        if let Some(u) = os_user()? {
            cmd.args(["-u", &u.name]);
        }
        cmd.arg(&ini).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
        let up = poll(200, || async { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok() }).await;
        if up.is_none() {
            let _ = child.start_kill();
            let out = child.wait_with_output().await?;
            bail!("pgbouncer did not start: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(PgBouncer { child, port, _dir: dir })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_columns_match_pgbouncer() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_parity").await?;
    let bouncer = PgBouncer::start(cluster, &db).await?;
    let p = console_proxy(cluster, &db).await?;
    let theirs_url = format!("postgresql://adm@127.0.0.1:{}/pgbouncer?sslmode=disable", bouncer.port);
    let ours_url = format!("postgresql://{SCRAM_CLIENT}:{SCRAM_CLIENT_PW}@127.0.0.1:{}/pgbouncer?sslmode=disable", p.pg.port());
    for what in TABLES {
        let sql = format!("SHOW {what}");
        let theirs = psql_columns(&theirs_url, &sql).await?;
        let ours = psql_columns(&ours_url, &sql).await?;
        assert!(theirs.len() > 1 || what == "VERSION", "PgBouncer's {sql} header: {theirs:?}");
        assert!(
            ours.len() >= theirs.len() && ours[..theirs.len()] == theirs[..],
            "{sql}: tidepool's columns {ours:?} do not start with PgBouncer's {theirs:?}"
        );
    }
    p.stop().await;
    Ok(())
}

/// The console keeps answering while a query holds every connection of the pool (it never
/// leases one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_needs_no_server() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_busy").await?;
    let p = Setup::new(cluster, &db).db("pool_size = 1").server(&format!("admin_users = [\"{SCRAM_CLIENT}\"]")).start().await?;
    let holder = p.client().await?;
    holder.batch_execute("BEGIN; SELECT 1").await?;
    let admin = tokio::time::timeout(Duration::from_secs(30), console(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "pgbouncer")).await??;
    let (cols, rows) = show(&admin, "SHOW POOLS").await?;
    assert_eq!(figure(&cols, &rows, &[DB], "sv_active"), 1);
    holder.batch_execute("COMMIT").await?;
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_kill_client_and_shutdown() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_kill").await?;
    let p = console_proxy(cluster, &db).await?;
    let admin = console(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "pgbouncer").await?;
    let stats = console(&p, MD5_CLIENT, Some(MD5_CLIENT_PW), "pgbouncer").await?;
    // A client inside a transaction, holding a server.
    let victim = p.client().await?;
    victim.batch_execute("BEGIN; SELECT 1").await?;
    let (cols, rows) = show(&admin, "SHOW CLIENTS").await?;
    let id = rows
        .iter()
        .find(|r| r[col(&cols, "database")].as_deref() == Some(DB))
        .and_then(|r| r[col(&cols, "id")].clone())
        .ok_or_else(|| anyhow!("victim not listed: {rows:?}"))?;
    let msg = expect_code(stats.simple_query(&format!("KILL_CLIENT {id}")).await, "08P01");
    assert!(msg.contains("admin access needed"), "{msg}");
    expect_code(admin.simple_query("KILL_CLIENT 999999").await, "08P01");
    expect_code(admin.simple_query("KILL_CLIENT x").await, "08P01");
    admin.simple_query(&format!("KILL_CLIENT {id}")).await?;
    // The victim's session is gone (its next query fails) and its server was not kept.
    let r = poll(200, || async { victim.simple_query("SELECT 1").await.err() }).await;
    assert!(r.is_some(), "the killed client still works");
    let settled = poll(200, || async {
        let (cols, rows) = show(&admin, "SHOW POOLS").await.ok()?;
        (figure(&cols, &rows, &[DB], "sv_active") == 0 && figure(&cols, &rows, &[DB], "sv_idle") == 0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the killed client's server is closed, not returned");
    let (_, rows) = show(&admin, "SHOW CLIENTS").await?;
    assert!(!rows.iter().any(|r| r.iter().any(|v| v.as_deref() == Some(id.as_str())) && r[2].as_deref() == Some(DB)), "{rows:?}");
    // Other clients are unaffected.
    let c = p.client().await?;
    assert_eq!(show(&c, "SELECT 1").await?.1, [[Some("1".to_owned())]]);

    // SHUTDOWN: only admins; asks `tidepool serve` to drain.
    expect_code(stats.simple_query("SHUTDOWN").await, "08P01");
    assert!(!p.app().stop_requested.is_cancelled());
    admin.simple_query("SHUTDOWN").await?;
    assert!(p.app().stop_requested.is_cancelled());
    p.stop().await;
    Ok(())
}

/// Hostile bytes on the console: bad UTF-8 and the extended protocol get an error and the
/// session goes on; an oversized or unexpected message closes it with FATAL 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_hostile_input() -> Result<()> {
    use crate::raw::*;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_raw").await?;
    let p = Setup::new(cluster, &db).server(&format!("stats_users = [\"{TRUST_CLIENT}\"]")).start().await?;
    let (mut r, greeting) = Raw::login_trust(p.pg, TRUST_CLIENT, "pgbouncer", &[]).await?;
    assert!(greeting.iter().any(|m| m.param().is_some_and(|(k, _)| k == "server_version")), "{greeting:?}");
    // Invalid UTF-8 in a Query.
    let mut bad = vec![b'Q'];
    bad.extend_from_slice(&9i32.to_be_bytes());
    bad.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc, 0]);
    r.send(&bad).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(msgs.iter().filter_map(Msg::code).collect::<Vec<_>>(), ["08P01"], "{msgs:?}");
    // An extended-protocol batch: one error, then ReadyForQuery at Sync.
    let mut batch = parse_msg("", "SHOW POOLS");
    batch.extend(bind_msg("", ""));
    batch.extend(execute_msg(""));
    batch.extend(sync_msg());
    r.send(&batch).await?;
    let msgs = r.until_ready().await?;
    assert_eq!(msgs.iter().map(|m| m.tag).collect::<Vec<_>>(), [b'E', b'Z'], "{msgs:?}");
    // HELP is a notice; the session still answers.
    let msgs = r.query("SHOW HELP").await?;
    assert_eq!(msgs.iter().map(|m| m.tag).collect::<Vec<_>>(), [b'N', b'C', b'Z'], "{msgs:?}");
    assert_eq!(r.query_col("SHOW VERSION").await?.len(), 1);
    // A message over the console's 64 KiB limit: FATAL and closed.
    let mut huge = vec![b'Q'];
    huge.extend_from_slice(&(1_000_000i32).to_be_bytes());
    r.send(&huge).await?;
    let msgs = r.read_until_closed().await?;
    assert!(msgs.iter().any(|m| m.tag == b'E' && m.code().as_deref() == Some("08P01")), "{msgs:?}");
    // An unexpected message type: FATAL and closed.
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, "tidepool", &[]).await?;
    r.send(&copy_data_msg(b"x")).await?;
    let msgs = r.read_until_closed().await?;
    assert!(msgs.iter().any(|m| m.tag == b'E' && m.code().as_deref() == Some("08P01")), "{msgs:?}");
    p.stop().await;
    Ok(())
}

/// `SHOW HELP` lists every command the console accepts: PEERS among the SHOWs, each control verb,
/// and every listed command is one the console then runs (no "invalid command", no 0A000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_help_lists_every_command() -> Result<()> {
    use crate::raw::*;
    let cluster = TestCluster::shared().await?;
    let db = cluster.unique_database("console_help").await?;
    let p = Setup::new(cluster, &db).server(&format!("admin_users = [\"{TRUST_CLIENT}\"]")).start().await?;
    let (mut r, _) = Raw::login_trust(p.pg, TRUST_CLIENT, "pgbouncer", &[]).await?;
    let msgs = r.query("SHOW HELP").await?;
    let help = msgs.iter().find(|m| m.tag == b'N').and_then(|m| m.field(b'D')).ok_or_else(|| anyhow!("no HELP notice: {msgs:?}"))?;
    let (mut subjects, mut verbs) = (Vec::new(), Vec::new());
    for line in help.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("SHOW ") {
            Some(rest) => subjects.extend(rest.split('|').map(str::to_owned)),
            None => {
                let (names, usage) = line.split_once(' ').unwrap_or((line, ""));
                verbs.extend(names.split('|').map(|v| (v.to_owned(), usage.to_owned())));
            }
        }
    }
    for want in TABLES.iter().chain(&["PEERS", "HELP"]) {
        assert!(subjects.iter().any(|s| s == want), "SHOW {want} missing from HELP: {help}");
    }
    for want in ["PAUSE", "RESUME", "RECONNECT", "KILL", "WAIT_CLOSE", "DISABLE", "ENABLE", "RELOAD", "KILL_CLIENT", "SHUTDOWN"] {
        assert!(verbs.iter().any(|(v, _)| v == want), "{want} missing from HELP: {help}");
    }
    for unsupported in ["SUSPEND", "SET"] {
        assert!(!verbs.iter().any(|(v, _)| v == unsupported), "{unsupported} is not run, yet listed: {help}");
    }
    // Every listed SHOW answers without an error.
    for s in &subjects {
        let msgs = r.query(&format!("SHOW {s}")).await?;
        assert!(!msgs.iter().any(|m| m.tag == b'E'), "SHOW {s}: {msgs:?}");
    }
    // Every listed verb is accepted: it may refuse its argument, never the command itself.
    // SHUTDOWN last (it drains this proxy).
    verbs.sort_by_key(|(v, _)| v == "SHUTDOWN");
    for (verb, usage) in &verbs {
        let arg = match usage.as_str() {
            "" => "",
            "<id>" => " 4294967295",
            _ => " nosuchdb",
        };
        let msgs = r.query(&format!("{verb}{arg}")).await?;
        for e in msgs.iter().filter(|m| m.tag == b'E') {
            let msg = e.field(b'M').unwrap_or_default();
            assert!(!msg.contains("invalid command") && e.code().as_deref() != Some("0A000"), "{verb}{arg} refused as a command: {msg}");
        }
        assert!(msgs.iter().any(|m| m.tag == b'C' || m.tag == b'E'), "{verb}{arg}: {msgs:?}");
    }
    p.stop().await;
    Ok(())
}
