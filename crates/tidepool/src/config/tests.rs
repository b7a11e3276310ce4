use super::*;

const MINIMAL: &str = r#"
[server]
pg_listen    = "127.0.0.1:6432"   # Postgres wire protocol
http_listen  = "127.0.0.1:4466"   # HTTP APIs (Prisma, Neon) — later issues
admin_listen = "127.0.0.1:9930"   # /metrics, /healthz

[[databases]]
name      = "app"                                    # the name clients connect to
url       = "postgres://postgres@127.0.0.1:5432/app" # upstream
pool_size = 20
pool_mode = "transaction"                            # or "session"

[[users]]
name     = "app"
password = "secret"
"#;

fn no_env() -> Vec<(String, String)> {
    vec![]
}

#[test]
fn minimal_file_from_the_docs_loads() {
    let c = Config::from_toml(MINIMAL, no_env()).unwrap();
    assert_eq!(c.databases[0].pool_size, 20);
    assert_eq!(c.databases[0].pool_timeout, Duration::from_secs(10));
    assert_eq!(c.server.http_listen, Some("127.0.0.1:4466".parse().unwrap()));
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::from_toml(&MINIMAL.replace("pool_size = 20", "pool_sise = 20"), no_env()).unwrap_err();
    assert!(err.to_string().contains("pool_sise"), "{err}");
    let err = Config::from_toml("[server]\nbogus = 1\n", no_env()).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn env_overrides_file() {
    let env = vec![
        ("TIDEPOOL_SERVER__PG_LISTEN".to_owned(), "0.0.0.0:7000".to_owned()),
        ("TIDEPOOL_DATABASES__0__POOL_SIZE".to_owned(), "7".to_owned()),
        ("TIDEPOOL_DATABASES__0__POOL_TIMEOUT".to_owned(), "3s".to_owned()),
        ("TIDEPOOL_CONFIG".to_owned(), "ignored".to_owned()),
    ];
    let c = Config::from_toml(MINIMAL, env).unwrap();
    assert_eq!(c.server.pg_listen, Some("0.0.0.0:7000".parse().unwrap()));
    assert_eq!(c.databases[0].pool_size, 7);
    assert_eq!(c.databases[0].pool_timeout, Duration::from_secs(3));
}

#[test]
fn validation_catches_mistakes() {
    for (from, to) in
        [("pool_size = 20", "pool_size = 0"), ("password = \"secret\"", "scram_verifier = \"nope\""), ("postgres://postgres@127.0.0.1:5432/app", "mysql://x")]
    {
        assert!(Config::from_toml(&MINIMAL.replace(from, to), no_env()).is_err(), "{to}");
    }
    let dashboard = |line: &str| Config::from_toml(&MINIMAL.replace("admin_listen =", &format!("{line}\nadmin_listen =")), no_env());
    assert!(dashboard("dashboard_password = \"\"").is_err(), "an empty dashboard password");
    assert_eq!(dashboard("dashboard_password = \"pw\"").unwrap().server.dashboard_password.as_deref(), Some("pw"));
    for bad in ["max_tags = 0", "max_bytes = 1000", "max_entry_bytes = 0", "max_ttl = \"0s\"", "max_bytes_per_database = 10"] {
        assert!(Config::from_toml(&format!("{MINIMAL}\n[cache]\n{bad}\n"), no_env()).is_err(), "[cache] {bad}");
    }
    let ok = Config::from_toml(&format!("{MINIMAL}\n[cache]\ninvalidate_on_write = true\nmax_ttl = \"1h\"\n"), no_env()).unwrap();
    assert!(ok.cache.invalidate_on_write && ok.cache.enabled);
}

#[test]
fn url_parsing() {
    let u = UpstreamUrl::parse("postgresql://us%40er:p%3Ass@[::1]:6000/my%20db?sslmode=require").unwrap();
    assert_eq!((u.user.as_str(), u.password.as_deref(), u.host.as_str(), u.port), ("us@er", Some("p:ss"), "::1", 6000));
    assert_eq!((u.database.as_str(), u.sslmode.as_deref()), ("my db", Some("require")));
    let u = UpstreamUrl::parse("postgres://localhost").unwrap();
    assert_eq!((u.user.as_str(), u.database.as_str(), u.port), ("postgres", "postgres", 5432));
}

#[test]
fn example_file_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tidepool.toml")).unwrap();
    Config::from_toml(&text, no_env()).unwrap();
}

/// Every key of every section is documented (set or commented out) in examples/tidepool.toml.
#[test]
fn example_config_documents_every_key() {
    let example = include_str!("../../../../examples/tidepool.toml");
    Config::from_toml(example, no_env()).expect("the example loads");
    let full = Config::from_toml(MINIMAL, no_env()).unwrap();
    let value = toml::Value::try_from(&full).unwrap();
    let mut missing = Vec::new();
    let mut check = |section: &str, table: &toml::Value| {
        for key in table.as_table().into_iter().flat_map(|t| t.keys()) {
            let documented = example.lines().any(|l| {
                let l = l.trim_start().trim_start_matches('#').trim_start();
                l.strip_prefix(key.as_str()).is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            if !documented {
                missing.push(format!("{section}.{key}"));
            }
        }
    };
    check("server", &value["server"]);
    check("http", &value["http"]);
    check("databases", &value["databases"][0]);
    check("users", &value["users"][0]);
    let role = RoleConfig { name: "r".into(), user: Some("u".into()), password: Some("p".into()), url: Some("postgres://h/d".into()), pool_size: 1 };
    check("databases.roles", &toml::Value::try_from(&role).unwrap());
    let key = ApiKeyConfig { sha256: String::new(), database: "app".into(), label: String::new(), role: Some("r".into()) };
    check("api_keys", &toml::Value::try_from(&key).unwrap());
    check("cache", &value["cache"]);
    let cluster = ClusterConfig { redis_url: Some("redis://h".into()), ..Default::default() };
    check("cluster", &toml::Value::try_from(&cluster).unwrap());
    check("dataproxy", &value["dataproxy"]);
    assert!(missing.is_empty(), "keys missing from examples/tidepool.toml: {missing:?}");
}

/// MINIMAL plus roles `reader` and `writer` (pool_size 20) and `extra` appended.
fn with_roles(extra: &str) -> String {
    let roles = "\n[[databases.roles]]\nname = \"reader\"\nuser = \"app_reader\"\npassword = \"r-pw\"\npool_size = 4\n\n[[databases.roles]]\nname = \"writer\"\nurl = \"postgres://app_writer:w-pw@127.0.0.1:5432/app\"\n";
    let at = MINIMAL.find("[[users]]").unwrap();
    format!("{}{roles}\n{}{extra}", &MINIMAL[..at], &MINIMAL[at..])
}

fn key(database: &str, role: Option<&str>) -> String {
    let role = role.map(|r| format!("role = {r:?}\n")).unwrap_or_default();
    format!("\n[[api_keys]]\nsha256 = \"{}\"\ndatabase = {database:?}\n{role}", "ab".repeat(32))
}

#[test]
fn roles_load_with_their_credentials_and_pools() {
    let c = Config::from_toml(&with_roles(&key("app", Some("reader"))), no_env()).unwrap();
    let db = &c.databases[0];
    let url = UpstreamUrl::parse(&db.url).unwrap();
    let reader = db.role("reader").unwrap();
    assert_eq!(reader.pool_size, 4);
    let r = reader.upstream_url(&url).unwrap();
    assert_eq!((r.user.as_str(), r.password.as_deref(), r.database.as_str(), r.port), ("app_reader", Some("r-pw"), "app", 5432));
    let writer = db.role("writer").unwrap();
    assert_eq!(writer.pool_size, 5, "default role pool_size");
    let w = writer.upstream_url(&url).unwrap();
    assert_eq!((w.user.as_str(), w.password.as_deref()), ("app_writer", Some("w-pw")));
    assert_eq!(db.own_pool_size(), 20 - 4 - 5, "role pools are carved out of pool_size");
    assert_eq!(c.api_keys[0].role.as_deref(), Some("reader"));
    assert!(!format!("{reader:?}").contains("r-pw"), "Debug hides the role password");
    // A role without user/url logs in as its name.
    let c = Config::from_toml(&with_roles("").replace("user = \"app_reader\"\n", ""), no_env()).unwrap();
    assert_eq!(c.databases[0].role("reader").unwrap().upstream_url(&url).unwrap().user, "reader");
    // A key without a role still loads and names none.
    let c = Config::from_toml(&with_roles(&key("app", None)), no_env()).unwrap();
    assert_eq!(c.api_keys[0].role, None);
}

#[test]
fn role_passwords_come_from_the_environment() {
    let env = vec![
        ("TIDEPOOL_DATABASES__0__ROLES__0__PASSWORD".to_owned(), "from-env".to_owned()),
        ("TIDEPOOL_DATABASES__0__ROLES__1__POOL_SIZE".to_owned(), "2".to_owned()),
    ];
    let c = Config::from_toml(&with_roles(""), env).unwrap();
    let db = &c.databases[0];
    assert_eq!(db.role("reader").unwrap().password.as_deref(), Some("from-env"));
    assert_eq!(db.role("writer").unwrap().pool_size, 2);
    // A role can be declared from the environment alone.
    let env = vec![("TIDEPOOL_DATABASES__0__ROLES__0__NAME".to_owned(), "ops".to_owned())];
    let c = Config::from_toml(MINIMAL, env).unwrap();
    assert_eq!(c.databases[0].roles[0].name, "ops");
}

#[test]
fn role_mistakes_are_config_errors() {
    let cases: Vec<(String, &str)> = vec![
        (with_roles(&key("app", Some("admin"))), "has no role \"admin\""),
        (with_roles("").replace("name = \"writer\"", "name = \"reader\""), "duplicated"),
        (with_roles("").replace("pool_size = 4", "pool_size = 15"), "must stay below"),
        (with_roles("").replace("pool_size = 4", "pool_size = 16"), "must stay below"),
        (with_roles("").replace("pool_size = 4", "pool_size = 0"), "at least 1"),
        (with_roles("").replace("name = \"reader\"", "name = \"read er\""), "role name"),
        (with_roles("").replace("name = \"reader\"", "name = \"\""), "role name"),
        (with_roles("").replace("name = \"reader\"", &format!("name = \"{}\"", "r".repeat(64))), "role name"),
        (with_roles("").replace("127.0.0.1:5432/app\"\n", "127.0.0.1:5433/app\"\n"), "own host, port and database"),
        (with_roles("").replace("127.0.0.1:5432/app\"\n", "127.0.0.1:5432/other\"\n"), "own host, port and database"),
        (with_roles("").replace("name = \"writer\"\n", "name = \"writer\"\nuser = \"w\"\n"), "not both"),
        (with_roles("").replace("pool_size = 20", "pool_size = 20\nmin_idle = 12"), "min_idle"),
        (with_roles("").replace("pool_size = 4", "pool_sise = 4"), "pool_sise"),
    ];
    for (text, want) in cases {
        let err = Config::from_toml(&text, no_env()).expect_err(want).to_string();
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
    // At the limit: 4 + 5 of 10 leaves the database's own pool 1 connection.
    let c = Config::from_toml(&with_roles("").replace("pool_size = 20", "pool_size = 10"), no_env()).unwrap();
    assert_eq!(c.databases[0].own_pool_size(), 1);
    assert!(Config::from_toml(&with_roles("").replace("pool_size = 20", "pool_size = 9"), no_env()).is_err());
}

#[test]
fn itx_database_share() {
    let mut h = HttpConfig::default();
    assert_eq!(h.itx_max_per_database(8), 6);
    assert_eq!(h.itx_max_per_database(1), 1);
    h.itx_max_share = 1.0;
    assert_eq!(h.itx_max_per_database(8), usize::MAX);
}

#[test]
fn dataproxy_limits_are_validated() {
    let ok = Config::from_toml(&format!("{MINIMAL}\n[dataproxy]\nmax_schemas = 4\ncompile_threads = 1\n"), no_env()).unwrap();
    assert_eq!((ok.dataproxy.max_schemas, ok.dataproxy.compile_threads), (4, 1));
    assert_eq!(ok.dataproxy.max_schema_size, 1 << 20, "default");
    for bad in [
        "max_schemas = 0",
        "compile_threads = 0",
        "compile_threads = 1000",
        "max_schema_size = 10",
        "max_compiler_memory = 1024",
        "plan_cache_entries = 0",
        "plan_cache_bytes = 1000",
    ] {
        let err = Config::from_toml(&format!("{MINIMAL}\n[dataproxy]\n{bad}\n"), no_env()).unwrap_err();
        assert!(err.to_string().contains("[dataproxy]"), "{bad}: {err}");
    }
}
