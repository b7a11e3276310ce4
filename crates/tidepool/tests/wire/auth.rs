//! Client authentication (scram / md5 / trust on tidepool) × upstream authentication (scram / md5 /
//! cleartext / trust on PostgreSQL), and the login failures.

use anyhow::{Context, Result};
use tidepool_testkit::{TestCluster, MD5_USER, PASS_USER, SCRAM_USER, TRUST_USER};

use crate::common::*;

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
