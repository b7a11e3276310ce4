//! Client authentication (scram / md5 / trust on tidepool) × upstream authentication (scram / md5 /
//! cleartext / trust on PostgreSQL), and the login failures.

use anyhow::{Context, Result};
use tidepool_testkit::{TestCluster, MD5_USER, PASS_USER, SCRAM_USER, TRUST_USER};

use crate::common::*;
use crate::raw::*;

const UPSTREAMS: [(&str, &str); 4] = [("via_scram", SCRAM_USER), ("via_md5", MD5_USER), ("via_pass", PASS_USER), ("via_trust", TRUST_USER)];

async fn auth_proxy(cluster: &TestCluster, real_db: &str) -> Result<Proxy> {
    let mut toml = String::from("[server]\npg_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"2s\"\n");
    for (name, user) in UPSTREAMS {
        toml.push_str(&format!("\n[[databases]]\nname = \"{name}\"\nurl = \"{}\"\npool_size = 2\n", cluster.url(user, real_db)));
    }
    toml.push_str(&format!(
        r#"
[[users]]
name = "{SCRAM_CLIENT}"
auth = "scram-sha-256"
password = "{SCRAM_CLIENT_PW}"

[[users]]
name = "{MD5_CLIENT}"
auth = "md5"
password = "{MD5_CLIENT_PW}"

[[users]]
name = "{TRUST_CLIENT}"
auth = "trust"

[[users]]
name = "dave"
password = "dave-pw"
databases = ["via_scram"]
"#
    ));
    Proxy::start(&toml).await
}

fn cfg(p: &Proxy, user: &str, password: Option<&str>, db: &str) -> tokio_postgres::Config {
    let mut c = p.config(user, password);
    c.dbname(db);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_client_methods_times_upstream_methods() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let real_db = cluster.unique_database("auth_matrix").await?;
    let p = auth_proxy(cluster, &real_db).await?;
    let clients = [(SCRAM_CLIENT, Some(SCRAM_CLIENT_PW)), (MD5_CLIENT, Some(MD5_CLIENT_PW)), (TRUST_CLIENT, None)];
    let mut combos = 0;
    for (client_user, password) in clients {
        for (name, upstream_user) in UPSTREAMS {
            let c = connect(&cfg(&p, client_user, password, name)).await.with_context(|| format!("client {client_user} → upstream {upstream_user}"))?;
            let row = c.query_one("SELECT current_user::text, current_database()::text, 40 + $1::int", &[&2i32]).await?;
            assert_eq!(row.get::<_, String>(0), upstream_user, "client {client_user} via {name}");
            assert_eq!(row.get::<_, String>(1), real_db);
            assert_eq!(row.get::<_, i32>(2), 42);
            combos += 1;
        }
    }
    assert_eq!(combos, 12);
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_have_postgres_sqlstates() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let real_db = cluster.unique_database("auth_fail").await?;
    let p = auth_proxy(cluster, &real_db).await?;

    // Wrong password, SCRAM and md5 users.
    let scram_msg = expect_code(try_connect(&cfg(&p, SCRAM_CLIENT, Some("wrong"), "via_scram")).await, "28P01");
    assert_eq!(scram_msg, format!("password authentication failed for user \"{SCRAM_CLIENT}\""));
    let md5_msg = expect_code(try_connect(&cfg(&p, MD5_CLIENT, Some("wrong"), "via_md5")).await, "28P01");
    assert_eq!(md5_msg, format!("password authentication failed for user \"{MD5_CLIENT}\""));

    // Unknown user: same SQLSTATE and the same message shape as a wrong password.
    let unknown_msg = expect_code(try_connect(&cfg(&p, "mallory", Some("whatever"), "via_scram")).await, "28P01");
    assert_eq!(unknown_msg, scram_msg.replace(SCRAM_CLIENT, "mallory"));

    // Unknown database, right password: 3D000.
    let msg = expect_code(try_connect(&cfg(&p, SCRAM_CLIENT, Some(SCRAM_CLIENT_PW), "nosuchdb")).await, "3D000");
    assert!(msg.contains("nosuchdb"), "{msg}");
    // Unknown database, wrong password: authentication fails first (no database probing).
    expect_code(try_connect(&cfg(&p, SCRAM_CLIENT, Some("wrong"), "nosuchdb")).await, "28P01");
    // Unknown database for a trust user.
    expect_code(try_connect(&cfg(&p, TRUST_CLIENT, None, "nosuchdb")).await, "3D000");

    // A user limited to some databases.
    let c = connect(&cfg(&p, "dave", Some("dave-pw"), "via_scram")).await?;
    assert_eq!(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    expect_code(try_connect(&cfg(&p, "dave", Some("dave-pw"), "via_md5")).await, "28000");

    // The failures left nothing broken: a good login still works.
    let c = connect(&cfg(&p, MD5_CLIENT, Some(MD5_CLIENT_PW), "via_pass")).await?;
    assert_eq!(c.query_one("SELECT current_user::text", &[]).await?.get::<_, String>(0), PASS_USER);
    let failures = p.app().metrics.login_failures.get();
    assert!(failures >= 7, "login_failures metric = {failures}");
    drop(c);
    p.stop().await;
    Ok(())
}

fn throttle_proxy_toml(cluster: &TestCluster, real_db: &str, server: &str, users: &str) -> String {
    format!(
        "[server]\npg_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"2s\"\nscram_iterations = 64\n{server}\n\n[[databases]]\nname = \"{DB}\"\nurl = \"{}\"\npool_size = 2\n{users}",
        cluster.url(tidepool_testkit::SCRAM_USER, real_db)
    )
}

const SCRAM_AND_MD5_USERS: &str = r#"
[[users]]
name = "alice"
password = "alice-pw"

[[users]]
name = "bob"
auth = "md5"
password = "bob-pw"

[[users]]
name = "erin"
password = "erin-pw"
"#;

/// Times one wire login; returns the SQLSTATE and message of its failure (`None` on success).
async fn timed_login(p: &Proxy, user: &str, password: &str) -> (std::time::Duration, Option<(String, String)>) {
    let started = std::time::Instant::now();
    let r = try_connect(&p.config(user, Some(password))).await;
    (started.elapsed(), r.err().map(|e| (code(&e).unwrap_or_default(), message(&e))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_client_and_user() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let real_db = cluster.unique_database("auth_throttle").await?;
    let server = "auth_failure_threshold = 3\nauth_failure_delay = \"200ms\"\nauth_failure_max_delay = \"1s\"";
    let p = Proxy::start(&throttle_proxy_toml(cluster, &real_db, server, SCRAM_AND_MD5_USERS)).await?;
    let failed = |user: &str| Some(("28P01".to_owned(), format!("password authentication failed for user \"{user}\"")));

    for user in ["alice", "bob", "mallory"] {
        // Three failures go unthrottled; the fourth waits 200 ms, the fifth 400 ms, and all of
        // them are answered as a wrong password (unknown users included).
        for _ in 0..3 {
            assert_eq!(timed_login(&p, user, "wrong").await.1, failed(user));
        }
        let (t4, r4) = timed_login(&p, user, "wrong").await;
        let (t5, r5) = timed_login(&p, user, "wrong").await;
        assert_eq!((r4, r5), (failed(user), failed(user)));
        assert!(t4 >= std::time::Duration::from_millis(200), "{user}: 4th attempt after {t4:?}");
        assert!(t5 >= std::time::Duration::from_millis(400), "{user}: 5th attempt after {t5:?}");
        if user == "alice" {
            // The right password still works after its turn (800 ms) and resets the count.
            let (t, r) = timed_login(&p, "alice", "alice-pw").await;
            assert_eq!(r, None);
            assert!(t >= std::time::Duration::from_millis(800), "alice waited {t:?}");
            let (t, r) = timed_login(&p, "alice", "wrong").await;
            assert_eq!(r, failed("alice"));
            assert!(t < std::time::Duration::from_millis(800), "after a success: {t:?}");
            // Another user from the same address is not slowed by alice's failures.
            let (t, r) = timed_login(&p, "erin", "erin-pw").await;
            assert_eq!(r, None);
            assert!(t < std::time::Duration::from_millis(800), "erin: {t:?}");
        }
    }
    let throttled = p.app().users.throttle.throttled.get();
    assert!(throttled >= 7, "tidepool_auth_throttled = {throttled}");
    assert!(p.app().render_metrics().contains("tidepool_auth_throttled_total"), "{}", p.app().render_metrics());
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_do_not_escape_the_throttle() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let real_db = cluster.unique_database("auth_throttle_burst").await?;
    let server = "auth_failure_threshold = 2\nauth_failure_delay = \"100ms\"\nauth_failure_max_delay = \"1s\"";
    let p = Proxy::start(&throttle_proxy_toml(cluster, &real_db, server, SCRAM_AND_MD5_USERS)).await?;
    for _ in 0..2 {
        timed_login(&p, "alice", "wrong").await;
    }
    let started = std::time::Instant::now();
    let attempts = (0..40).map(|_| timed_login(&p, "alice", "wrong"));
    let results = futures_util::future::join_all(attempts).await;
    assert!(results.iter().all(|(_, r)| r.as_ref().is_some_and(|(c, _)| c == "28P01")), "{results:?}");
    // Checks took turns at least 100 ms apart (so at most ~10 in the 1 s cap); the rest were refused
    // after the cap. None answered early.
    assert!(results.iter().all(|(t, _)| *t >= std::time::Duration::from_millis(100)), "{results:?}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(p.app().users.throttle.throttled.get(), 40);
    p.stop().await;
    Ok(())
}

/// Plays a SCRAM login with a wrong proof over a raw socket; returns the first authentication
/// request, the server-first message and the final error.
async fn scram_probe(addr: std::net::SocketAddr, user: &str) -> Result<(Msg, String, Msg)> {
    let mut r = Raw::connect(addr).await?;
    r.send(&startup_packet(&[("user", user), ("database", DB)])).await?;
    let first = r.read_msg().await?.context("auth request")?;
    let client_first = "n,,n=,r=clientnonce123";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    body.extend_from_slice(client_first.as_bytes());
    r.send(&password_msg(&body)).await?;
    let cont = r.read_msg().await?.context("SASL continue")?;
    assert_eq!((cont.tag, &cont.body[..4]), (b'R', &11i32.to_be_bytes()[..]), "{cont:?}");
    let server_first = String::from_utf8(cont.body[4..].to_vec())?;
    let nonce = server_first.split(',').find_map(|kv| kv.strip_prefix("r=")).context("nonce")?;
    let proof = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="; // base64 of 32 bytes 0x07
    r.send(&password_msg(format!("c=biws,r={nonce},p={proof}").as_bytes())).await?;
    let fin = r.read_msg().await?.context("final message")?;
    Ok((first, server_first, fin))
}

fn password_msg(body: &[u8]) -> Vec<u8> {
    let mut out = vec![b'p'];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// (salt in base64, iterations) of a server-first message.
fn salt_and_iterations(server_first: &str) -> (String, String) {
    let field = |k: &str| server_first.split(',').find_map(|kv| kv.strip_prefix(k)).unwrap_or_default().to_owned();
    (field("s="), field("i="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_are_indistinguishable_from_real_ones() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let real_db = cluster.unique_database("auth_enum").await?;
    let p = Proxy::start(&throttle_proxy_toml(cluster, &real_db, "", SCRAM_AND_MD5_USERS)).await?;

    let (alice_first, alice_sf, alice_fin) = scram_probe(p.pg, "alice").await?;
    let (m1_first, m1_sf, m1_fin) = scram_probe(p.pg, "mallory").await?;
    let (_, m2_sf, _) = scram_probe(p.pg, "mallory").await?;
    let (_, t_sf, _) = scram_probe(p.pg, "trudy").await?;
    // The first authentication request is byte-identical.
    assert_eq!((alice_first.tag, &alice_first.body), (m1_first.tag, &m1_first.body));
    // Same salt length and iterations; an unknown user's salt is stable per name and differs
    // between names, like a real user's.
    let (alice_salt, alice_iter) = salt_and_iterations(&alice_sf);
    let (m1_salt, m1_iter) = salt_and_iterations(&m1_sf);
    assert_eq!((alice_salt.len(), &alice_iter), (m1_salt.len(), &m1_iter), "{alice_sf} vs {m1_sf}");
    assert_eq!(alice_iter, "64");
    assert_eq!(m1_salt, salt_and_iterations(&m2_sf).0, "same unknown user, same salt");
    assert_ne!(m1_salt, salt_and_iterations(&t_sf).0, "different unknown users, different salts");
    assert_eq!(alice_salt, salt_and_iterations(&scram_probe(p.pg, "alice").await?.1).0);
    // The final error is byte-identical but for the user name.
    assert_eq!(alice_fin.tag, b'E');
    let m1_body = String::from_utf8_lossy(&m1_fin.body).replace("mallory", "alice");
    assert_eq!((m1_fin.tag, m1_body.as_str()), (alice_fin.tag, String::from_utf8_lossy(&alice_fin.body).as_ref()));
    assert_eq!(m1_fin.code().as_deref(), Some("28P01"));
    p.stop().await;

    // Where md5 users are the majority, unknown users are asked for md5 like them.
    let md5_only = "[[users]]\nname = \"bob\"\nauth = \"md5\"\npassword = \"bob-pw\"\n";
    let p = Proxy::start(&throttle_proxy_toml(cluster, &real_db, "", md5_only)).await?;
    let mut firsts = Vec::new();
    for user in ["bob", "mallory"] {
        let mut r = Raw::connect(p.pg).await?;
        r.send(&startup_packet(&[("user", user), ("database", DB)])).await?;
        let m = r.read_msg().await?.context("auth request")?;
        r.send(&password_msg(b"md5000000000000000000000000000000000\0")).await?;
        let fin = r.read_msg().await?.context("final")?;
        firsts.push((m.tag, m.body.len(), m.body[..4].to_vec(), fin.code(), String::from_utf8_lossy(&fin.body).replace(user, "U")));
    }
    assert_eq!(firsts[0], firsts[1]);
    assert_eq!(firsts[0].2, 5i32.to_be_bytes().to_vec(), "AuthenticationMD5Password");
    p.stop().await;
    Ok(())
}
