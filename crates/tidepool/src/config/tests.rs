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
    check("cache", &value["cache"]);
    assert!(missing.is_empty(), "keys missing from examples/tidepool.toml: {missing:?}");
}
