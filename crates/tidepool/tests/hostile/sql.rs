//! Attacks on Neon's `POST /sql`: broken HTTP, hostile headers and credentials before
//! authentication; malformed, huge, deeply nested and trickled bodies, injection attempts and
//! session-state tricks after it.

use std::time::Duration;

use anyhow::{ensure, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::{case, Case, Endpoint, Group};

/// What an HTTP attack must get back.
#[derive(Debug, Clone, Copy)]
pub enum HttpExpect {
    /// One of these statuses, and a JSON error body whose `code` is one of these (`""`: no
    /// code) with a message (`message` for Neon, `error` for Prisma).
    Error(&'static [u16], &'static [&'static str]),
    /// One of these statuses (the body is the HTTP layer's, not an API's).
    Status(&'static [u16]),
    /// One of these statuses, or the connection closed without an answer.
    StatusOrClosed(&'static [u16]),
}

/// Which API's error shape a response must have.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    Neon,
    Prisma,
}

pub fn check_http(a: &HttpAnswer, expect: HttpExpect, api: Api) -> Result<()> {
    let shown = || format!("{:?} {}", a.status, a.body.chars().take(300).collect::<String>());
    // Whatever went wrong, no secret of the configuration is reflected back.
    for secret in [ALICE_PW, BOB_PW, EVE_PW, "mallory-secret", "trent-secret", KEY_A, KEY_B, KEY_OTHER, tidepool_testkit::SCRAM_PASSWORD] {
        ensure!(!a.body.contains(secret) && !a.head.contains(secret), "a secret is echoed: {}", shown());
    }
    match expect {
        HttpExpect::Error(statuses, codes) => {
            ensure!(a.status.is_some_and(|s| statuses.contains(&s)), "status {}, want one of {statuses:?}", shown());
            ensure!(codes.contains(&a.code()), "code {:?}, want one of {codes:?}: {}", a.code(), shown());
            let field = match api {
                Api::Neon => "message",
                Api::Prisma => "error",
            };
            ensure!(a.json.get(field).and_then(|v| v.as_str()).is_some_and(|m| !m.is_empty()), "no {field} in the error body: {}", shown());
        }
        HttpExpect::Status(statuses) => ensure!(a.status.is_some_and(|s| statuses.contains(&s)), "status {}, want one of {statuses:?}", shown()),
        HttpExpect::StatusOrClosed(statuses) => {
            ensure!(a.status.is_none_or(|s| statuses.contains(&s)), "status {}, want one of {statuses:?} or a close", shown())
        }
    }
    Ok(())
}

/// A Neon connection string (the host part is not checked by tidepool).
pub fn cs(user: &str, password: &str, db: &str) -> String {
    format!("postgresql://{user}:{password}@tidepool.test/{db}")
}

fn alice() -> String {
    cs(ALICE, ALICE_PW, DB)
}

pub const BAD: &[u16] = &[400];

/// A raw HTTP request (bytes) sent on its own connection.
pub fn raw(endpoint: Endpoint, pre_auth: bool, name: &str, bytes: Vec<u8>, expect: HttpExpect, api: Api) -> Case {
    case(endpoint, pre_auth, name, move |tp| async move {
        let a = http_raw(tp.http, &bytes).await?;
        check_http(&a, expect, api)
    })
}

/// `POST /sql` with these headers and body.
fn neon(pre_auth: bool, name: &str, headers: Vec<(&'static str, Vec<u8>)>, body: Vec<u8>, expect: HttpExpect) -> Case {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let bytes = request("POST", "/sql", &h, &body);
    raw(Endpoint::Sql, pre_auth, name, bytes, expect, Api::Neon)
}

fn with_cs(cs: String) -> Vec<(&'static str, Vec<u8>)> {
    vec![("neon-connection-string", cs.into_bytes())]
}

fn body(query: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"query": query, "params": []})).unwrap_or_default()
}

/// `POST /sql` as alice with a JSON body.
fn post(name: &str, body: Vec<u8>, expect: HttpExpect) -> Case {
    neon(false, name, with_cs(alice()), body, expect)
}

pub fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Sends `head` then trickles `trickle` a byte per 300 ms; the server must answer with one of
/// `statuses` or close.
pub fn trickled(endpoint: Endpoint, pre_auth: bool, name: &str, head: Vec<u8>, trickle: Vec<u8>, statuses: &'static [u16]) -> Case {
    case(endpoint, pre_auth, name, move |tp| async move {
        let mut s = TcpStream::connect(tp.http).await?;
        s.write_all(&head).await?;
        for b in trickle {
            if s.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let a = HttpAnswer::parse(&read_to_close(&mut s, 1 << 20).await);
        ensure!(a.status.is_none_or(|st| statuses.contains(&st)), "trickled request answered {:?} {}", a.status, a.body);
        Ok(())
    })
}

pub fn pre_auth() -> Group {
    let deep = format!(r#"{{"query":"SELECT $1","params":[{}]}}"#, nested(100_000)).into_bytes();
    let wrong = || with_cs(cs(ALICE, "wrong", DB));
    let cases = vec![
        neon(true, "no Neon-Connection-String", vec![], body("SELECT 1"), HttpExpect::Error(BAD, &[""])),
        neon(true, "connection string that is not a URL", with_cs("garbage".into()), body("SELECT 1"), HttpExpect::Error(BAD, &[""])),
        neon(true, "connection string with scheme http", with_cs(format!("http://{ALICE}:{ALICE_PW}@h/{DB}")), body("SELECT 1"), HttpExpect::Error(BAD, &[""])),
        neon(true, "connection string with bad percent-encoding", with_cs(format!("postgresql://%zz:{ALICE_PW}@h/{DB}")), body("SELECT 1"), HttpExpect::Error(BAD, &["", "28P01"])),
        neon(true, "connection string with percent-encoded NUL", with_cs(format!("postgresql://alice%00:{ALICE_PW}@h/{DB}")), body("SELECT 1"), HttpExpect::Error(BAD, &["", "28P01"])),
        neon(true, "connection string with invalid UTF-8 bytes", vec![("neon-connection-string", b"postgresql://al\xffice:x@h/app".to_vec())], body("SELECT 1"), HttpExpect::Error(BAD, &[""])),
        neon(true, "connection string without a database", with_cs(format!("postgresql://{ALICE}:{ALICE_PW}@h")), body("SELECT 1"), HttpExpect::Error(BAD, &["", "3D000"])),
        neon(true, "wrong SCRAM user password", wrong(), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01"])),
        neon(true, "wrong md5 user password", with_cs(cs(MALLORY, "guess", DB)), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01"])),
        neon(true, "unknown user", with_cs(cs("nobody", "guess", DB)), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01"])),
        neon(true, "empty password", with_cs(format!("postgresql://{ALICE}:@h/{DB}")), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01", ""])),
        neon(true, "trust user without a password", with_cs(format!("postgresql://{CAROL}@h/{DB}")), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01", ""])),
        neon(true, "user of another database", with_cs(cs(EVE, EVE_PW, DB)), body("SELECT 1"), HttpExpect::Error(BAD, &["28000"])),
        neon(true, "unknown database", with_cs(cs(ALICE, ALICE_PW, "no_such_db")), body("SELECT 1"), HttpExpect::Error(BAD, &["3D000"])),
        neon(true, "SQL in the database name", with_cs(cs(ALICE, ALICE_PW, "app'%3B%20CREATE%20TABLE%20pwned_s4%20()%3B%20--")), body("SELECT 1"), HttpExpect::Error(BAD, &["3D000"])),
        raw(
            Endpoint::Sql,
            true,
            "Expect: 100-continue with a wrong password",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nconnection: close\r\nexpect: 100-continue\r\nneon-connection-string: {}\r\ncontent-length: 100000\r\n\r\n", cs(ALICE, "wrong", DB)).into_bytes(),
            HttpExpect::Error(BAD, &["28P01"]),
            Api::Neon,
        ),
        raw(Endpoint::Sql, true, "HTTP/1.0 without Host", b"POST /sql HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}".to_vec(), HttpExpect::Error(BAD, &[""]), Api::Neon),
        raw(Endpoint::Sql, true, "absolute-form request target", request("POST", "http://evil.example/sql", &[], b"{}"), HttpExpect::StatusOrClosed(&[400]), Api::Neon),
        neon(true, "SQL in the user name", with_cs(cs("x'%20OR%20'1'='1", "guess", DB)), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01"])),
        neon(true, "30 KB user name", with_cs(cs(&"u".repeat(30_000), "guess", DB)), body("SELECT 1"), HttpExpect::Error(BAD, &["28P01"])),
        neon(
            true,
            "wrong bearer token",
            vec![("neon-connection-string", cs(ALICE, "", DB).into_bytes()), ("authorization", b"Bearer tp-not-a-key".to_vec())],
            body("SELECT 1"),
            HttpExpect::Error(BAD, &["28P01", ""]),
        ),
        neon(
            true,
            "API key of another database",
            vec![("neon-connection-string", format!("postgresql://{ALICE}@h/{DB}").into_bytes()), ("authorization", format!("Bearer {KEY_OTHER}").into_bytes())],
            body("SELECT 1"),
            HttpExpect::Error(BAD, &["28000"]),
        ),
        neon(
            true,
            "duplicate Neon-Connection-String, wrong one first",
            vec![("neon-connection-string", cs(ALICE, "wrong", DB).into_bytes()), ("neon-connection-string", alice().into_bytes())],
            body("SELECT 1"),
            HttpExpect::Error(BAD, &["28P01", ""]),
        ),
        neon(true, "100,000-deep params with a wrong password", wrong(), deep, HttpExpect::Error(BAD, &["28P01"])),
        raw(
            Endpoint::Sql,
            true,
            "Content-Length 10^12 with a wrong password",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {}\r\ncontent-length: 1000000000000\r\n\r\n{{", cs(ALICE, "wrong", DB)).into_bytes(),
            HttpExpect::Error(BAD, &["28P01"]),
            Api::Neon,
        ),
        neon(true, "invalid isolation level", vec![("neon-connection-string", alice().into_bytes()), ("neon-batch-isolation-level", b"Serializable; DROP TABLE x".to_vec())], body("SELECT 1"), HttpExpect::Error(BAD, &[""])),
        neon(true, "header over 64 KiB", vec![("x-junk", vec![b'a'; 70_000])], body("SELECT 1"), HttpExpect::StatusOrClosed(&[431, 400])),
        neon(true, "1,000 headers", (0..1000).map(|_| ("x-junk", b"1".to_vec())).collect(), body("SELECT 1"), HttpExpect::StatusOrClosed(&[431, 400])),
        neon(true, "NUL in a header value", vec![("neon-connection-string", b"postgresql://alice:alice-pw\0@h/app".to_vec())], body("SELECT 1"), HttpExpect::StatusOrClosed(&[400])),
        raw(Endpoint::Sql, true, "garbage request line", b"\x00\x01\x02 /sql HTTP/1.1\r\n\r\n".to_vec(), HttpExpect::StatusOrClosed(&[400]), Api::Neon),
        raw(Endpoint::Sql, true, "HTTP/9.9", b"POST /sql HTTP/9.9\r\nhost: x\r\n\r\n".to_vec(), HttpExpect::StatusOrClosed(&[400, 505]), Api::Neon),
        raw(
            Endpoint::Sql,
            true,
            "Content-Length and Transfer-Encoding together (smuggling)",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\n\r\n", alice()).into_bytes(),
            HttpExpect::StatusOrClosed(&[400]),
            Api::Neon,
        ),
        raw(
            Endpoint::Sql,
            true,
            "two Content-Length headers",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {}\r\ncontent-length: 2\r\ncontent-length: 40\r\n\r\n{{}}", cs(ALICE, "wrong", DB)).into_bytes(),
            HttpExpect::StatusOrClosed(&[400]),
            Api::Neon,
        ),
        raw(
            Endpoint::Sql,
            true,
            "chunk size of 2^72",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nconnection: close\r\nneon-connection-string: {}\r\ntransfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nab\r\n0\r\n\r\n", alice()).into_bytes(),
            HttpExpect::StatusOrClosed(&[400]),
            Api::Neon,
        ),
        raw(Endpoint::Sql, true, "GET /sql", request("GET", "/sql", &[], b""), HttpExpect::Error(BAD, &[""]), Api::Neon),
        raw(Endpoint::Sql, true, "DELETE /sql", request("DELETE", "/sql", &[], b""), HttpExpect::Error(BAD, &[""]), Api::Neon),
        raw(Endpoint::Sql, true, "HTTP/2 preface then garbage", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(), HttpExpect::StatusOrClosed(&[400]), Api::Neon),
        trickled(Endpoint::Sql, true, "request head trickled (slowloris)", Vec::new(), b"POST /sql HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(), &[408, 400]),
        trickled(Endpoint::Sql, true, "silent connection", Vec::new(), Vec::new(), &[408]),
        case(Endpoint::Sql, true, "300 idle connections", |tp| async move {
            let mut conns = Vec::new();
            for _ in 0..300 {
                conns.push(TcpStream::connect(tp.http).await?);
            }
            for mut s in conns {
                let a = HttpAnswer::parse(&read_to_close(&mut s, 1 << 16).await);
                ensure!(a.status.is_none_or(|st| st == 408 || st == 503), "idle connection answered {:?}", a.status);
            }
            Ok(())
        }),
    ];
    Group { name: "sql pre-auth", parallel: 8, cases }
}

pub fn post_auth() -> Group {
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
    let many: Vec<serde_json::Value> = (0..100_000).map(|i| serde_json::json!(i)).collect();
    let batch: Vec<serde_json::Value> = (0..10_000).map(|_| serde_json::json!({"query": "SELECT 1", "params": []})).collect();
    let nested_comments = format!("{}{} SELECT 1 AS one", "/* ".repeat(100_000), "*/ ".repeat(100_000));
    let cases = vec![
        post("empty body", Vec::new(), HttpExpect::Error(BAD, &[""])),
        post("invalid JSON", b"{\"query\": ".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("a JSON array", b"[1,2,3]".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("query is a number", b"{\"query\": 1}".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("no query", b"{\"params\": []}".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("params is an object", b"{\"query\": \"SELECT 1\", \"params\": {\"a\": 1}}".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("invalid UTF-8 body", b"{\"query\": \"SELECT '\xff'\"}".to_vec(), HttpExpect::Error(BAD, &[""])),
        post("a lone surrogate escape", br#"{"query": "SELECT $1", "params": ["\ud800"]}"#.to_vec(), HttpExpect::Error(BAD, &[""])),
        post("100,000-deep params", format!(r#"{{"query":"SELECT $1","params":[{}]}}"#, nested(100_000)).into_bytes(), HttpExpect::Error(BAD, &[""])),
        post("100,000-deep queries", format!(r#"{{"queries":{}}}"#, nested(100_000)).into_bytes(), HttpExpect::Error(BAD, &[""])),
        post(
            "100,000-deep object in params",
            format!(r#"{{"query":"SELECT $1","params":[{}1{}]}}"#, "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
            HttpExpect::Status(&[200, 400]),
        ),
        post("100,000 params", json(serde_json::json!({"query": "SELECT $1", "params": many})), HttpExpect::Error(BAD, &["54000"])),
        post("a number of 10^1000000", br#"{"query":"SELECT $1","params":[1e1000000]}"#.to_vec(), HttpExpect::Status(&[200, 400])),
        post(
            "NUL in the SQL",
            json(serde_json::json!({"query": "SELECT 1\u{0}; CREATE TABLE pwned_s1 ()", "params": []})),
            HttpExpect::Error(BAD, &["08P01", "22021", "42601"]),
        ),
        post("NUL in a parameter", json(serde_json::json!({"query": "SELECT $1::text", "params": ["a\u{0}b"]})), HttpExpect::Error(BAD, &["22021", "08P01"])),
        post("unterminated quote", body("SELECT 'abc"), HttpExpect::Error(BAD, &["42601"])),
        post("two statements", body("SELECT 1; CREATE TABLE pwned_s2 ()"), HttpExpect::Error(BAD, &["42601"])),
        post("set/**/search_path", body("set/**/search_path to leak_s1"), HttpExpect::Status(&[200])),
        neon(
            false,
            "write in a read-only batch",
            vec![("neon-connection-string", alice().into_bytes()), ("neon-batch-read-only", b"true".to_vec())],
            json(serde_json::json!({"queries": [{"query": "SELECT 1"}, {"query": "CREATE TABLE pwned_s3 ()"}]})),
            HttpExpect::Error(BAD, &["25006"]),
        ),
        post("SET ROLE to the superuser", body("SET ROLE postgres"), HttpExpect::Error(BAD, &["42501"])),
        post("set_config search_path", body("SELECT set_config('search_path', 'leak_s2', false)"), HttpExpect::Status(&[200])),
        post(
            "SET inside a batch",
            json(serde_json::json!({"queries": [{"query": "SET search_path TO leak_s3"}, {"query": "SELECT 1"}]})),
            HttpExpect::Status(&[200]),
        ),
        post("100,000 nested comments", body(&nested_comments), HttpExpect::Status(&[200])),
        post("batch of 10,000 statements", json(serde_json::json!({"queries": batch})), HttpExpect::Status(&[200, 400])),
        neon(
            false,
            "invalid Neon-Array-Mode",
            vec![("neon-connection-string", alice().into_bytes()), ("neon-array-mode", b"maybe\xff".to_vec())],
            body("SELECT 1"),
            HttpExpect::StatusOrClosed(&[200, 400]),
        ),
        neon(
            false,
            "options in the connection string",
            with_cs(format!("postgresql://{ALICE}:{ALICE_PW}@h/{DB}?options=-c%20search_path%3Dleak_s4&application_name=leak_s5")),
            body("SELECT current_setting('search_path') AS sp"),
            HttpExpect::Status(&[200, 400]),
        ),
        raw(
            Endpoint::Sql,
            false,
            "Content-Length of 10 GB",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nconnection: close\r\nneon-connection-string: {}\r\ncontent-length: 10000000000\r\n\r\n{{", alice())
                .into_bytes(),
            HttpExpect::Error(&[413], &[""]),
            Api::Neon,
        ),
        post(
            "body over max_request_size",
            json(serde_json::json!({"query": format!("SELECT '{}'", "a".repeat(MAX_REQUEST))})),
            HttpExpect::Error(&[413], &[""]),
        ),
        raw(
            Endpoint::Sql,
            false,
            "chunked body over max_request_size",
            {
                let mut b =
                    format!("POST /sql HTTP/1.1\r\nhost: x\r\nconnection: close\r\nneon-connection-string: {}\r\ntransfer-encoding: chunked\r\n\r\n", alice())
                        .into_bytes();
                for _ in 0..(MAX_REQUEST >> 16) + 8 {
                    b.extend_from_slice(format!("{:x}\r\n{}\r\n", 65_536, "a".repeat(65_536)).as_bytes());
                }
                b.extend_from_slice(b"0\r\n\r\n");
                b
            },
            HttpExpect::StatusOrClosed(&[413]),
            Api::Neon,
        ),
        trickled(
            Endpoint::Sql,
            false,
            "body trickled (slowloris)",
            format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {}\r\ncontent-length: 100\r\n\r\n", alice()).into_bytes(),
            b"{\"query\": \"SELECT 1\"            ".to_vec(),
            &[408],
        ),
        post("pg_sleep past query_timeout", body("SELECT pg_sleep(30)"), HttpExpect::Error(BAD, &["08P01", "57014"])),
        post("result over max_response_size", body("SELECT repeat('x', 1000) FROM generate_series(1, 100000)"), HttpExpect::Error(&[507], &[""])),
        case(Endpoint::Sql, false, "100 pipelined keep-alive requests", |tp| async move {
            let body = r#"{"query":"SELECT 1","params":[]}"#;
            let one = format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {}\r\ncontent-length: {}\r\n\r\n{body}", alice(), body.len());
            let mut s = TcpStream::connect(tp.http).await?;
            s.write_all(one.repeat(99).as_bytes()).await?;
            s.write_all(one.replace("host: x\r\n", "host: x\r\nconnection: close\r\n").as_bytes()).await?;
            let text = String::from_utf8_lossy(&read_to_close(&mut s, 16 << 20).await).into_owned();
            let answers = text.matches("HTTP/1.1 200").count();
            ensure!(answers == 100, "{answers} of 100 pipelined requests answered 200");
            Ok(())
        }),
        case(Endpoint::Sql, false, "60 concurrent slow requests on a pool of 8", |tp| async move {
            let tasks: Vec<_> = (0..60)
                .map(|_| {
                    let (client, url, cs) = (tp.client.clone(), tp.url("/sql"), tp.alice_cs());
                    tokio::spawn(async move {
                        let r =
                            client.post(url).header("neon-connection-string", cs).json(&serde_json::json!({"query": "SELECT pg_sleep(0.2)"})).send().await?;
                        anyhow::Ok(r.status().as_u16())
                    })
                })
                .collect();
            for t in tasks {
                let st = t.await??;
                ensure!(st == 200 || st == 503, "status {st}");
            }
            Ok(())
        }),
    ];
    Group { name: "sql post-auth", parallel: 6, cases }
}
