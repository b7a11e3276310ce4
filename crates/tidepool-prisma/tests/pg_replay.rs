//! Differential replay against a real PostgreSQL: every exchange captured from the Prisma 7
//! client suite (recorded against Prisma's reference executor on PostgreSQL 15) is replayed
//! through the interpreter on a fresh database, and our response must equal the captured one.
//!
//! Runs on the test kit's throwaway cluster (started by the test; `TIDEPOOL_TEST_PG=host:port`
//! points it at another trust-auth server instead). Skips only when the fixtures are absent. Values that are random per run
//! (generated ids, `now()`) are normalised before comparing.

mod common;
mod pg;

use std::collections::HashMap;

use pg::PgConn;
use tidepool_prisma::json::{self, Value};
use tidepool_prisma::{handle_query, Executor, Limits, QueryContext, TransactionOptions};

const DB: &str = "tidepool_prisma_replay";

static ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn addr() -> String {
    ADDR.get().cloned().unwrap_or_default()
}

fn suite_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/prisma")
}

fn connect() -> PgConn {
    let c = PgConn::connect(&addr(), "postgres", DB).expect("connect to replay database");
    c.set_timeout(std::time::Duration::from_secs(10));
    c
}

fn is_generated_id(s: &str) -> bool {
    let cuid2 = s.len() == 24 && s.as_bytes()[0].is_ascii_lowercase() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let uuid = s.len() == 36 && s.bytes().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
    let cuid = s.len() == 25 && s.starts_with('c') && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    uuid || cuid || cuid2
}

/// Learn which of our generated ids stand for which captured ones (same position in the response).
fn learn(want: &Value, got: &Value, map: &mut Vec<(String, String)>) {
    match (want, got) {
        (Value::String(w), Value::String(g)) if w != g && is_generated_id(w) && is_generated_id(g) => map.push((w.clone(), g.clone())),
        (Value::List(a), Value::List(b)) => a.iter().zip(b).for_each(|(x, y)| learn(x, y, map)),
        (Value::Object(a), Value::Object(b)) => a.iter().for_each(|(k, x)| learn(x, b.get(k).unwrap_or(&Value::Null), map)),
        _ => {}
    }
}

/// Replace per-run values: generated ids and instants in the recent past (`now()`).
fn normalise(v: &Value) -> Value {
    match v {
        Value::String(s) if is_generated_id(s) => Value::from("<id>"),
        Value::String(s) if s.len() >= 20 && (s.starts_with("202") || s.starts_with("203")) && tidepool_prisma::datetime::parse_js_date(s).is_some() => {
            let ms = tidepool_prisma::datetime::parse_js_date(s).unwrap_or_default();
            let now = tidepool_prisma::datetime::now_millis();
            if (now - ms).abs() < 400 * 24 * 3600 * 1000 {
                Value::from("<now>")
            } else {
                v.clone()
            }
        }
        Value::List(items) => Value::List(items.iter().map(normalise).collect()),
        Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| k.as_str() != "extensions").map(|(k, x)| (k.clone(), normalise(x))).collect()),
        other => other.clone(),
    }
}

struct Replay {
    main: PgConn,
    txs: HashMap<String, PgConn>,
    mismatches: Vec<String>,
    compared: usize,
    /// Captured generated id → the id our run generated in its place.
    ids: Vec<(String, String)>,
}

impl Replay {
    async fn exchange(&mut self, scenario: &str, ex: &Value) {
        let path = ex.get("path").as_str().unwrap_or_default().to_owned();
        let mut text = ex.get("body").to_json();
        for (captured, ours) in &self.ids {
            text = text.replace(&format!("\"{captured}\""), &format!("\"{ours}\""));
        }
        let body_value = json::parse(text.as_bytes(), 1024).expect("body");
        let body = &body_value;
        let expected = ex.get("response");
        if expected.get("body").get("code").as_str() == Some("P2028") {
            return; // interactive-transaction manager errors belong to the host.
        }
        let want_status = expected.get("status").as_f64().unwrap_or_default() as u16;
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (status, got) = match parts.as_slice() {
            ["query"] => self.query(&self_main_marker(), body, false).await,
            ["transaction", "start"] => {
                let opts = TransactionOptions::parse(body.to_json().as_bytes()).expect("tx options");
                match opts.isolation() {
                    Err(e) => (e.http_status(), e.body()),
                    Ok(level) => {
                        let mut conn = connect();
                        conn.begin(level).await.expect("BEGIN");
                        let id = expected.get("body").get("id").as_str().unwrap_or_default().to_owned();
                        self.txs.insert(id, conn);
                        return;
                    }
                }
            }
            ["transaction", id, action] => {
                let id = (*id).to_owned();
                if !self.txs.contains_key(&id) {
                    return; // closed or expired on the reference: transaction-manager territory.
                }
                match *action {
                    "query" => self.query(&id, body, true).await,
                    "commit" | "rollback" => {
                        let mut conn = self.txs.remove(&id).expect("tx");
                        let r = if *action == "commit" { conn.commit().await } else { conn.rollback().await };
                        r.expect("end transaction");
                        return;
                    }
                    _ => return,
                }
            }
            _ => return,
        };
        self.compared += 1;
        learn(expected.get("body"), &got, &mut self.ids);
        let want = normalise(expected.get("body"));
        let got = normalise(&got);
        if (status, got.to_json()) != (want_status, want.to_json()) {
            let op = format!("{}.{}", body.get("model").to_js_string(), body.get("operation").to_js_string());
            self.mismatches.push(format!("{scenario} {path} {op}\n   want {want_status} {}\n   got  {status} {}", want.to_json(), got.to_json()));
        }
    }

    async fn query(&mut self, tx: &str, body: &Value, in_transaction: bool) -> (u16, Value) {
        let conn = if tx == self_main_marker() { &mut self.main } else { self.txs.get_mut(tx).expect("tx conn") };
        let ctx = QueryContext { in_transaction, fixed_now_millis: None };
        let resp = handle_query(conn, body.to_json().as_bytes(), &ctx, &Limits::default()).await;
        (resp.status, json::parse(resp.body.as_bytes(), 1024).expect("our json"))
    }
}

fn self_main_marker() -> String {
    "\u{0}main".into()
}

#[tokio::test]
async fn replay_fixtures_against_postgres() {
    let dir = suite_dir();
    let Ok(schema) = std::fs::read_to_string(dir.join("schema.sql")) else {
        eprintln!("no Prisma client suite; skipping");
        return;
    };
    let target = match std::env::var("TIDEPOOL_TEST_PG") {
        Ok(a) => a,
        Err(_) => tidepool_testkit::TestCluster::shared().await.expect("start the test cluster").addr().to_string(),
    };
    let _ = ADDR.set(target);
    let Some(mut admin) = PgConn::connect(&addr(), "postgres", "postgres") else {
        panic!("no PostgreSQL at {}", addr());
    };
    admin.simple(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)")).expect("drop");
    admin.simple(&format!("CREATE DATABASE {DB}")).expect("create");
    let mut setup = connect();
    setup.simple(&schema).expect("schema");
    let seed = std::fs::read_to_string(dir.join("seed.sql")).expect("seed.sql");

    let mut files: Vec<_> = std::fs::read_dir(dir.join("fixtures")).expect("fixtures").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    let mut replay = Replay { main: connect(), txs: HashMap::new(), mismatches: Vec::new(), compared: 0, ids: Vec::new() };
    for f in files {
        let v = json::parse(&std::fs::read(&f).expect("read"), 1024).expect("json");
        let Some(exchanges) = v.get("exchanges").as_list() else { continue };
        let scenario = v.get("scenario").to_js_string();
        setup
            .simple("DO $$ DECLARE t text; BEGIN SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO t FROM pg_tables WHERE schemaname = 'public'; EXECUTE 'TRUNCATE ' || t || ' RESTART IDENTITY CASCADE'; END $$")
            .expect("truncate");
        if matches!(v.get("seed"), Value::Bool(true)) {
            setup.simple(&seed).expect("seed");
        }
        for ex in exchanges {
            replay.exchange(&scenario, ex).await;
        }
        replay.txs.clear();
    }
    for m in &replay.mismatches {
        eprintln!("MISMATCH {m}");
    }
    eprintln!("{} compared, {} mismatched", replay.compared, replay.mismatches.len());
    assert!(replay.compared > 100);
    assert!(replay.mismatches.is_empty(), "{} of {} exchanges differ from the reference executor", replay.mismatches.len(), replay.compared);
}
