//! Attacks on the Postgres wire listener: malformed startup packets and lengths, every quoting
//! trick in startup parameters, broken authentication exchanges, broken frontend messages after
//! login, and floods of connections, logins and pipelined messages.

use anyhow::{bail, ensure, Context, Result};
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::msgs::*;
use crate::raw::{query_msg, ssl_request, startup_packet, Msg, Raw};
use crate::{case, Case, Endpoint, Group};

/// What the server must do with a case's bytes.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// An ErrorResponse with one of these SQLSTATEs, then the connection is closed.
    Fatal(&'static [&'static str]),
    /// An ErrorResponse with one of these SQLSTATEs; the session carries on (a query works).
    Error(&'static [&'static str]),
    /// The connection is closed, possibly after an ErrorResponse, never after ReadyForQuery.
    Closed,
    /// Ordinary input: answered up to ReadyForQuery without an error; the session carries on.
    Fine,
}

const PROTO: &[&str] = &["08P01"];
const PROTO_OR_LIMIT: &[&str] = &["08P01", "54000"];

pub fn describe(m: &[Msg]) -> String {
    m.iter().map(|m| if m.tag == b'E' { format!("E({:?} {:?})", m.code(), m.field(b'M')) } else { char::from(m.tag).to_string() }).collect::<Vec<_>>().join(" ")
}

/// Reads the server's reaction to a case's bytes and checks it against `expect`.
pub async fn check(r: &mut Raw, expect: Expect) -> Result<()> {
    match expect {
        Expect::Fatal(codes) => {
            let msgs = until_closed(r).await?;
            let e = msgs.iter().find(|m| m.tag == b'E').with_context(|| format!("no ErrorResponse before the close: {}", describe(&msgs)))?;
            let code = e.code().unwrap_or_default();
            ensure!(codes.contains(&code.as_str()), "SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
            ensure!(!msgs.iter().any(|m| m.tag == b'Z'), "ReadyForQuery before the close: {}", describe(&msgs));
        }
        Expect::Error(codes) => {
            let msgs = r.until_ready().await?;
            let e = msgs.iter().find(|m| m.tag == b'E').with_context(|| format!("no ErrorResponse: {}", describe(&msgs)))?;
            let code = e.code().unwrap_or_default();
            ensure!(codes.contains(&code.as_str()), "SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
            still_works(r).await?;
        }
        Expect::Closed => {
            let msgs = until_closed(r).await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'Z' || (m.tag == b'R' && m.body == [0, 0, 0, 0])), "served instead of closed: {}", describe(&msgs));
        }
        Expect::Fine => {
            let msgs = r.until_ready().await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'E'), "error: {}", describe(&msgs));
            still_works(r).await?;
        }
    }
    Ok(())
}

/// Messages until the server closes; fails as soon as a ReadyForQuery shows the session is
/// being served instead.
async fn until_closed(r: &mut Raw) -> Result<Vec<Msg>> {
    let mut out = Vec::new();
    while let Some(m) = r.read_msg().await? {
        let ready = m.tag == b'Z';
        out.push(m);
        if ready {
            bail!("served (ReadyForQuery) instead of closed: {}", describe(&out));
        }
    }
    Ok(out)
}

pub async fn still_works(r: &mut Raw) -> Result<()> {
    let col = r.query_col("SELECT 40 + 2").await?;
    ensure!(col == vec![Some("42".to_owned())], "follow-up query answered {col:?}");
    Ok(())
}

/// A case that sends `bytes` on a fresh connection (before any login).
fn pre(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        let mut r = Raw::connect(tp.pg).await?;
        let _ = r.send(&bytes).await;
        check(&mut r, expect).await
    })
}

/// Like [`pre`], then closes the sending side (EOF mid-packet).
fn pre_eof(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        let mut r = Raw::connect(tp.pg).await?;
        let _ = r.send(&bytes).await;
        let _ = r.s.shutdown().await;
        check(&mut r, expect).await
    })
}

/// Like [`post`], then closes the sending side (EOF mid-message).
fn post_eof(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, false, name, move |tp| async move {
        let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
        let _ = r.send(&bytes).await;
        let _ = r.s.shutdown().await;
        check(&mut r, expect).await
    })
}

/// A case that logs in as the trust user with `params`: the login must succeed or fail with
/// one of `codes` (an empty list: it must succeed), and the session must then work.
fn login(name: &str, params: Vec<(&'static str, String)>, codes: &'static [&'static str]) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        let mut all: Vec<(&str, &str)> = vec![("user", CAROL), ("database", DB)];
        all.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut r = Raw::connect(tp.pg).await?;
        r.send(&startup_packet(&all)).await?;
        if codes.is_empty() {
            check(&mut r, Expect::Fine).await
        } else {
            let msgs = r.read_until_closed().await?;
            match msgs.iter().find(|m| m.tag == b'E') {
                Some(e) => {
                    let code = e.code().unwrap_or_default();
                    ensure!(codes.contains(&code.as_str()), "SQLSTATE {code} ({:?}), want one of {codes:?}", e.field(b'M'));
                    Ok(())
                }
                None => bail!("login not refused: {}", describe(&msgs)),
            }
        }
    })
}

/// A case that logs in as the trust user first, then sends `bytes`.
fn post(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, false, name, move |tp| async move {
        let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
        let _ = r.send(&bytes).await;
        check(&mut r, expect).await
    })
}

/// A tokio-postgres login that must fail with `code`.
fn refused_login(name: &str, user: &'static str, password: &'static str, db: &'static str, code: &'static str) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        match pg_connect(&tp.pg_config(user, Some(password), db)).await {
            Ok(_) => bail!("login succeeded"),
            Err(e) => {
                let got = e.as_db_error().map(|d| d.code().code().to_owned());
                ensure!(got.as_deref() == Some(code), "want SQLSTATE {code}, got {e:?}");
                Ok(())
            }
        }
    })
}

/// Starts a SCRAM login as `user` (reads AuthenticationSASL), then sends `bytes`.
fn during_scram(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        let mut r = Raw::connect(tp.pg).await?;
        r.send(&startup_packet(&[("user", TRENT), ("database", DB)])).await?;
        let m = r.read_msg().await?.context("closed before AuthenticationSASL")?;
        ensure!(m.tag == b'R' && m.body.get(..4) == Some(&[0, 0, 0, 10]), "expected AuthenticationSASL, got {m:?}");
        let _ = r.send(&bytes).await;
        check(&mut r, expect).await
    })
}

/// Starts an md5 login as `user` (reads AuthenticationMD5Password), then sends `bytes`.
fn during_md5(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    case(Endpoint::Wire, true, name, move |tp| async move {
        let mut r = Raw::connect(tp.pg).await?;
        r.send(&startup_packet(&[("user", MALLORY), ("database", DB)])).await?;
        let m = r.read_msg().await?.context("closed before AuthenticationMD5Password")?;
        ensure!(m.tag == b'R' && m.body.get(..4) == Some(&[0, 0, 0, 5]), "expected AuthenticationMD5Password, got {m:?}");
        let _ = r.send(&bytes).await;
        check(&mut r, expect).await
    })
}

pub fn pre_auth() -> Group {
    let long = "a".repeat(100_000);
    let many: Vec<(&[u8], &[u8])> = (0..1000).map(|_| (&b"application_name"[..], &b"x"[..])).collect();
    let cases = vec![
        pre("startup length 0", declared(None, 0, &[]), Expect::Fatal(PROTO)),
        pre("startup length -1", declared(None, -1, &[]), Expect::Fatal(PROTO)),
        pre("startup length i32::MIN", declared(None, i32::MIN, &[]), Expect::Fatal(PROTO)),
        pre("startup length 7 (below the minimum)", declared(None, 7, &[0, 3, 0]), Expect::Fatal(PROTO)),
        pre("startup length 10,001", declared(None, 10_001, &[0u8; 64]), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("startup length i32::MAX", declared(None, i32::MAX, &[]), Expect::Fatal(PROTO_OR_LIMIT)),
        pre_eof("startup truncated (100 declared, 10 sent, EOF)", declared(None, 100, &[0, 3, 0, 0, b'u', b's', 0, 0, 0, 0]), Expect::Closed),
        pre("protocol version 2.0", startup_bytes(2 << 16, &kv(&[(b"user", b"carol")])), Expect::Fatal(&["08P01", "0A000"])),
        pre("protocol version 4.0", startup_bytes(4 << 16, &kv(&[(b"user", b"carol")])), Expect::Fatal(&["08P01", "0A000"])),
        pre("protocol version 1234.9999", startup_bytes(0x04d2_270f, &kv(&[(b"user", b"carol")])), Expect::Fatal(&["08P01", "0A000"])),
        pre("startup without a user", startup_bytes(196608, &kv(&[(b"database", b"app")])), Expect::Fatal(&["28000", "08P01"])),
        pre("startup with an empty user", startup_bytes(196608, &kv(&[(b"user", b""), (b"database", b"app")])), Expect::Fatal(&["28000", "08P01", "28P01"])),
        pre("startup without the final NUL", startup_bytes(196608, b"user\0carol\0database\0app\0"), Expect::Fatal(PROTO)),
        pre("startup key without a value", startup_bytes(196608, b"user\0carol\0database\0"), Expect::Fatal(PROTO)),
        pre("startup unterminated value", startup_bytes(196608, b"user\0carol"), Expect::Fatal(PROTO)),
        pre("invalid UTF-8 user", startup_bytes(196608, &kv(&[(b"user", b"car\xffol"), (b"database", b"app")])), Expect::Fatal(PROTO)),
        pre("invalid UTF-8 database", startup_bytes(196608, &kv(&[(b"user", b"carol"), (b"database", b"\xc3\x28")])), Expect::Fatal(PROTO)),
        pre(
            "invalid UTF-8 application_name",
            startup_bytes(196608, &kv(&[(b"user", b"carol"), (b"database", b"app"), (b"application_name", b"\xed\xa0\x80")])),
            Expect::Fatal(PROTO),
        ),
        pre("unknown database", startup_packet(&[("user", CAROL), ("database", "no_such_db")]), Expect::Fatal(&["3D000"])),
        pre("SQL in the database name", startup_packet(&[("user", CAROL), ("database", "app'; CREATE TABLE pwned_w10 (); --")]), Expect::Fatal(&["3D000"])),
        pre(
            "database name with a NUL-free 10 KB value",
            startup_packet(&[("user", CAROL), ("database", &"d".repeat(9_000))]),
            Expect::Fatal(&["3D000", "08P01", "54000"]),
        ),
        pre("100 KB application_name", startup_packet(&[("user", CAROL), ("database", DB), ("application_name", &long)]), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("1,000 startup parameters", startup_bytes(196608, &kv(&many)), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("an HTTP request on the wire port", b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("a TLS ClientHello without SSLRequest", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03], Expect::Fatal(PROTO_OR_LIMIT)),
        pre("PasswordMessage before the startup", frame(b'p', b"secret\0"), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("Query before the startup", query_msg("SELECT 1"), Expect::Fatal(PROTO_OR_LIMIT)),
        pre("CancelRequest with an unknown key", declared(None, 16, &[0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]), Expect::Closed),
        pre("CancelRequest too short", declared(None, 12, &[0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1]), Expect::Closed),
        pre("CancelRequest too long", declared(None, 24, &[0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]), Expect::Closed),
        pre("half-closed before a byte", Vec::new(), Expect::Closed),
        login("unknown startup parameter", vec![("no_such_guc", "1".into())], &["42704", "08P01", "0A000"]),
        login("startup parameter role", vec![("role", "postgres".into())], &["42704", "08P01", "0A000", "42501"]),
        login("startup parameter session_authorization", vec![("session_authorization", "postgres".into())], &["42704", "08P01", "0A000", "42501"]),
        login("options -c role=postgres", vec![("options", "-c role=postgres".into())], &["42704", "08P01", "0A000", "42501"]),
        login("options -c search_path=leak_opt", vec![("options", "-c search_path=leak_opt".into())], &[]),
        login("replication=database", vec![("replication", "database".into())], &["42704", "08P01", "0A000"]),
        login("application_name with a quote", vec![("application_name", "x'; CREATE TABLE pwned_w1 (); --".into())], &[]),
        login(
            "application_name with a backslash quote, standard_conforming_strings=off",
            vec![("standard_conforming_strings", "off".into()), ("application_name", "x\\'; CREATE TABLE pwned_w2 (); --".into())],
            &[],
        ),
        login("application_name with an E'' string", vec![("application_name", "x' || E'\\''; CREATE TABLE pwned_w3 (); --".into())], &[]),
        login("application_name with dollar quotes", vec![("application_name", "$$; CREATE TABLE pwned_w4 (); $$".into())], &[]),
        login("search_path with a double quote", vec![("search_path", "public\"; CREATE TABLE pwned_w5 (); --".into())], &["22023"]),
        login("timezone with a quote", vec![("timezone", "UTC'; CREATE TABLE pwned_w6 (); --".into())], &["22023", "08P01"]),
        login("statement_timeout with a semicolon", vec![("statement_timeout", "0; CREATE TABLE pwned_w7 ()".into())], &["22023", "08P01"]),
        refused_login("wrong SCRAM password", TRENT, "guess", DB, "28P01"),
        refused_login("wrong md5 password", MALLORY, "guess", DB, "28P01"),
        refused_login("unknown user", "nobody", "guess", DB, "28P01"),
        refused_login("user of another database", EVE, EVE_PW, DB, "28000"),
        refused_login("SQL in the user name", "x' OR '1'='1", "guess", DB, "28P01"),
        during_scram("Query instead of SASLInitialResponse", query_msg("SELECT 1"), Expect::Fatal(&["08P01", "28000", "28P01"])),
        during_scram("SASL with an unknown mechanism", sasl_initial(b"SCRAM-SHA-1", 4, b"n,,x"), Expect::Fatal(&["08P01", "28000", "28P01"])),
        during_scram(
            "SASL with a garbage client-first message",
            sasl_initial(b"SCRAM-SHA-256", 6, b"\xff\x00zz\x01x"),
            Expect::Fatal(&["08P01", "28000", "28P01"]),
        ),
        during_scram("SASL with a negative data length", sasl_initial(b"SCRAM-SHA-256", -5, b"n,,n=,r=abc"), Expect::Fatal(&["08P01", "28000", "28P01"])),
        during_scram(
            "SASL data length beyond the message",
            sasl_initial(b"SCRAM-SHA-256", 1_000_000, b"n,,n=,r=abc"),
            Expect::Fatal(&["08P01", "28000", "28P01"]),
        ),
        during_scram(
            "SASL message of 100 KB",
            sasl_initial(b"SCRAM-SHA-256", 100_000, &vec![b'a'; 100_000]),
            Expect::Fatal(&["08P01", "28000", "28P01", "54000"]),
        ),
        during_scram("SASL message declaring i32::MAX bytes", declared(Some(b'p'), i32::MAX, b"SCRAM"), Expect::Fatal(&["08P01", "28000", "28P01", "54000"])),
        during_md5("md5 password without a NUL", frame(b'p', b"md5abc"), Expect::Fatal(&["08P01", "28P01"])),
        during_md5("md5 password empty", frame(b'p', b"\0"), Expect::Fatal(&["08P01", "28P01"])),
        during_md5("md5 password of 1 MB", frame(b'p', &vec![b'a'; 1 << 20]), Expect::Fatal(&["08P01", "28P01", "54000"])),
        during_md5("StartupMessage instead of the password", startup_packet(&[("user", CAROL)]), Expect::Fatal(&["08P01", "28P01"])),
        case(Endpoint::Wire, true, "SSLRequest then a garbage TLS record", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            r.send(&ssl_request()).await?;
            ensure!(r.read_byte().await? == Some(b'S'), "SSLRequest not answered S");
            let _ = r.send(b"\x16\x03\x01\x00\x05garbage-not-a-client-hello").await;
            let rest = read_to_close(&mut r.s, 1 << 16).await;
            ensure!(!rest.contains(&b'Z'), "served after a garbage handshake: {rest:?}");
            Ok(())
        }),
        case(Endpoint::Wire, true, "SSLRequest then a stalled TLS handshake", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            r.send(&ssl_request()).await?;
            ensure!(r.read_byte().await? == Some(b'S'), "SSLRequest not answered S");
            // A ClientHello record header promising 512 bytes, then nothing: login_timeout.
            let _ = r.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).await;
            read_to_close(&mut r.s, 1 << 16).await;
            Ok(())
        }),
        case(Endpoint::Wire, true, "SSLRequest then a plaintext startup", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            r.send(&ssl_request()).await?;
            ensure!(r.read_byte().await? == Some(b'S'), "SSLRequest not answered S");
            let _ = r.send(&startup_packet(&[("user", CAROL), ("database", DB)])).await;
            let rest = read_to_close(&mut r.s, 1 << 16).await;
            ensure!(!rest.starts_with(b"R"), "plaintext login accepted after S: {rest:?}");
            Ok(())
        }),
        case(Endpoint::Wire, true, "GSSENCRequest three times", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            // Each is declined; the connection is refused after the third startup packet.
            for _ in 0..3 {
                r.send(&declared(None, 8, &80_877_104i32.to_be_bytes())).await?;
                ensure!(r.read_byte().await? == Some(b'N'), "GSSENCRequest not answered N");
            }
            check(&mut r, Expect::Fatal(PROTO)).await
        }),
        case(Endpoint::Wire, true, "startup trickled a byte per 250 ms (slowloris)", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            for b in startup_packet(&[("user", CAROL), ("database", DB)]) {
                if r.s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            check(&mut r, Expect::Closed).await
        }),
        case(Endpoint::Wire, true, "silent connection", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            check(&mut r, Expect::Closed).await
        }),
        case(Endpoint::Wire, true, "SCRAM login abandoned after AuthenticationSASL", |tp| async move {
            let mut r = Raw::connect(tp.pg).await?;
            r.send(&startup_packet(&[("user", TRENT), ("database", DB)])).await?;
            let msgs = r.read_until_closed().await?;
            ensure!(msgs.first().is_some_and(|m| m.tag == b'R'), "{msgs:?}");
            ensure!(!msgs.iter().any(|m| m.tag == b'Z'), "{msgs:?}");
            Ok(())
        }),
    ];
    Group { name: "wire pre-auth", parallel: 8, cases }
}

pub fn post_auth() -> Group {
    // Separated by spaces: PostgreSQL's own scanner rescans a run like `/*/*/*` once per
    // level (quadratic), which would only measure the server.
    let nested_comments = format!("{}{} SELECT 1", "/* ".repeat(100_000), "*/ ".repeat(100_000));
    let nested_parens = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let big_literal = format!("SELECT length('{}')", "a".repeat(MAX_MESSAGE - 64));
    let cases = vec![
        post("unknown message type 'y'", frame(b'y', b"whatever"), Expect::Fatal(PROTO)),
        post("message type NUL", frame(0, b""), Expect::Fatal(PROTO)),
        post("message length -1", declared(Some(b'Q'), -1, b"SELECT 1\0"), Expect::Fatal(PROTO)),
        post("message length 3", declared(Some(b'Q'), 3, b"SELECT 1\0"), Expect::Fatal(PROTO)),
        post("message length i32::MAX", declared(Some(b'Q'), i32::MAX, b"SELECT 1\0"), Expect::Fatal(PROTO_OR_LIMIT)),
        post("message one byte over max_message_size", declared(Some(b'Q'), MAX_MESSAGE as i32 + 5, b"SELECT"), Expect::Fatal(PROTO_OR_LIMIT)),
        post_eof("message truncated then EOF", declared(Some(b'Q'), 100, b"SELECT"), Expect::Closed),
        post("StartupMessage mid-session", startup_packet(&[("user", CAROL), ("database", DB)]), Expect::Fatal(PROTO)),
        post("SSLRequest mid-session", ssl_request(), Expect::Fatal(PROTO)),
        post("CancelRequest mid-session", declared(None, 16, &[0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]), Expect::Fatal(PROTO)),
        post("Query without its NUL", frame(b'Q', b"SELECT 1"), Expect::Fatal(PROTO)),
        post("Query with invalid UTF-8", query_bytes(b"SELECT '\xff\xfe'"), Expect::Fatal(PROTO)),
        post("Query with an embedded NUL", query_bytes(b"SELECT 1\0; CREATE TABLE pwned_w8 ()"), Expect::Error(PROTO)),
        post("empty Query", query_bytes(b""), Expect::Fine),
        post("Parse declaring 65,535 types, sending none", cat(&[parse_raw(b"", b"SELECT 1", -1, &[]), sync()]), Expect::Fatal(PROTO)),
        post("Parse with a negative type count", cat(&[parse_raw(b"", b"SELECT 1", -2, &[]), sync()]), Expect::Fatal(PROTO)),
        post("Parse without the SQL terminator", cat(&[frame(b'P', b"\0SELECT 1"), sync()]), Expect::Fatal(PROTO)),
        post(
            "Bind value length i32::MAX",
            cat(&[parse_raw(b"", b"SELECT $1", 0, &[]), bind_raw(b"", 1, &i32::MAX.to_be_bytes()), sync()]),
            Expect::Error(PROTO),
        ),
        post("Bind value length -2", cat(&[parse_raw(b"", b"SELECT $1", 0, &[]), bind_raw(b"", 1, &(-2i32).to_be_bytes()), sync()]), Expect::Error(PROTO)),
        post(
            "Bind with 65,535 parameters for one placeholder",
            cat(&[parse_raw(b"", b"SELECT $1", 0, &[]), bind_raw(b"", u16::MAX, &(-1i32).to_be_bytes().repeat(65_535)), sync()]),
            Expect::Error(PROTO),
        ),
        post(
            "Bind declaring 65,535 parameters, sending none",
            cat(&[parse_raw(b"", b"SELECT $1", 0, &[]), bind_raw(b"", u16::MAX, &[]), sync()]),
            Expect::Error(PROTO),
        ),
        post("Bind to an unknown statement", cat(&[bind_raw(b"no_such_statement", 0, &[]), sync()]), Expect::Error(&["26000"])),
        post("Execute of an unknown portal", cat(&[frame(b'E', b"no_such_portal\0\0\0\0\0"), sync()]), Expect::Error(&["34000"])),
        post("Describe of kind 'Z'", cat(&[frame(b'D', b"Z\0"), sync()]), Expect::Fatal(PROTO)),
        post("Close of kind 'Z'", cat(&[frame(b'C', b"Zx\0"), sync()]), Expect::Fatal(PROTO)),
        post("FunctionCall of an unknown function", frame(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Expect::Error(&["42883", "08P01", "0A000"])),
        post("CopyData outside COPY", cat(&[frame(b'd', b"1\t2\n"), query_msg("SELECT 1")]), Expect::Fine),
        post("CopyFail outside COPY", cat(&[frame(b'f', b"nope\0"), query_msg("SELECT 1")]), Expect::Fine),
        post("Terminate then more bytes", cat(&[frame(b'X', b""), query_msg("SELECT 1")]), Expect::Closed),
        post("10,000 Flush messages", cat(&[frame(b'H', b"").repeat(10_000), query_msg("SELECT 1")]), Expect::Fine),
        post("SET search_path to a leaking schema", query_msg("SET search_path TO leak_w1"), Expect::Fine),
        post("set/**/search_path behind a comment", query_msg("set/**/search_path to leak_w2"), Expect::Fine),
        post("set_config application_name", query_msg("SELECT set_config('application_name', 'leak_w3', false)"), Expect::Fine),
        post("SET hidden in a multi-statement string", query_msg("SELECT 1; SET search_path = leak_w4"), Expect::Fine),
        post("SET after a dollar-quoted string", query_msg("SELECT $x$ ; $x$; /* ; */ SET application_name = 'leak_w5'"), Expect::Fine),
        post("BEGIN then vanish", query_msg("BEGIN; SET LOCAL search_path TO leak_w6; SET search_path TO leak_w7"), Expect::Fine),
        post("100,000 nested comments", query_msg(&nested_comments), Expect::Fine),
        post("100,000 nested parentheses", query_msg(&nested_parens), Expect::Error(&["54001", "54000", "42601"])),
        post("unterminated dollar quote", query_msg("SELECT $a$ never closed"), Expect::Error(&["42601"])),
        post("unterminated block comment", query_msg("SELECT 1 /* never closed"), Expect::Error(&["42601"])),
        post("unterminated string with backslashes", query_msg("SELECT E'\\\\\\'"), Expect::Error(&["42601"])),
        post("100,000 empty statements", query_msg(&";".repeat(100_000)), Expect::Fine),
        post("a literal just under max_message_size", query_msg(&big_literal), Expect::Fine),
        post(
            "a failed Parse skips the rest of the batch",
            cat(&[
                parse_raw(b"", b"SELEC broken", 0, &[]),
                bind_raw(b"", 0, &[]),
                frame(b'E', b"\0\0\0\0\0"),
                parse_raw(b"hostile_s1", b"SELECT 1", 0, &[]),
                sync(),
            ]),
            Expect::Error(&["42601"]),
        ),
        case(Endpoint::Wire, false, "a statement parsed after an error in its batch does not exist", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&cat(&[parse_raw(b"", b"SELEC broken", 0, &[]), parse_raw(b"hostile_s2", b"SELECT 1", 0, &[]), sync()])).await?;
            let msgs = r.until_ready().await?;
            ensure!(msgs.iter().any(|m| m.tag == b'E'), "{}", describe(&msgs));
            r.send(&cat(&[bind_raw(b"hostile_s2", 0, &[]), frame(b'E', b"\0\0\0\0\0"), sync()])).await?;
            check(&mut r, Expect::Error(&["26000"])).await
        }),
        post("Describe of an unknown statement", cat(&[frame(b'D', b"Sno_such_statement\0"), sync()]), Expect::Error(&["26000"])),
        case(Endpoint::Wire, false, "a Query in the middle of COPY FROM STDIN", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&query_msg("CREATE TEMP TABLE copy_q (x text); COPY copy_q FROM STDIN")).await?;
            loop {
                let m = r.read_msg().await?.context("closed before CopyInResponse")?;
                if m.tag == b'G' {
                    break;
                }
            }
            // PostgreSQL refuses the Query (08P01); tidepool then closes the session.
            r.send(&cat(&[frame(b'd', b"row\n"), query_msg("SELECT 1")])).await?;
            check(&mut r, Expect::Fatal(&["08P01"])).await
        }),
        post("SET ROLE to the superuser", query_msg("SET ROLE postgres"), Expect::Error(&["42501"])),
        post("SET SESSION AUTHORIZATION", query_msg("SET SESSION AUTHORIZATION postgres"), Expect::Error(&["42501"])),
        post("ALTER SYSTEM", query_msg("ALTER SYSTEM SET log_statement = 'none'"), Expect::Error(&["42501"])),
        post("pg_read_file", query_msg("SELECT pg_read_file('/etc/passwd')"), Expect::Error(&["42501"])),
        post("COPY FROM PROGRAM", query_msg("COPY pwned_w9 FROM PROGRAM 'id'"), Expect::Error(&["42501", "42P01"])),
        case(Endpoint::Wire, false, "COPY FROM STDIN abandoned mid-copy", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&query_msg("CREATE TEMP TABLE leak_copy (x text); COPY leak_copy FROM STDIN")).await?;
            loop {
                let m = r.read_msg().await?.context("closed before CopyInResponse")?;
                ensure!(m.tag != b'E', "{}", describe(&[m]));
                if m.tag == b'G' {
                    break;
                }
            }
            let _ = r.send(&frame(b'd', &b"row\n".repeat(10_000))).await;
            Ok(())
        }),
    ];
    Group { name: "wire post-auth", parallel: 6, cases }
}
