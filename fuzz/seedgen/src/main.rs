//! Seed corpora for the fuzz targets, built from real messages: PostgreSQL messages encoded with
//! `tidepool-proto`'s own encoders, Neon requests as `@neondatabase/serverless` sends them, and
//! every request body of the Prisma fixtures (`tests/clients/prisma/fixtures/*.json`).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml -p tidepool-fuzz-seedgen` (run.sh does it) writes
//! `fuzz/seeds/<target>/…`; the directory is rebuilt from scratch each time.

#[path = "../../src/format.rs"]
#[allow(dead_code)]
mod format;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use format::{Framing, HttpRequest, Results, Scram, Tagged};
use tidepool_proto::framing::write_msg;
use tidepool_proto::{backend, frontend, startup};

struct Seeds {
    root: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn msgs(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b);
    b.to_vec()
}

/// A client session in the extended protocol, as the wire carries it after login.
fn client_session() -> Vec<u8> {
    msgs(|b| {
        frontend::query(b, "select 1");
        frontend::parse(b, "s1", "select $1::int4, $2", &[23, 0]);
        frontend::bind_text(b, "", "s1", &[Some("42"), None]);
        frontend::describe(b, b'P', "");
        frontend::execute(b, "", 0);
        frontend::close(b, b'S', "s1");
        frontend::sync(b);
        write_msg(b, b'd', |b| b.extend_from_slice(b"1\tcopy row\n"));
        write_msg(b, b'c', |_| {});
        frontend::terminate(b);
    })
}

/// What PostgreSQL sends during login and one query.
fn server_session() -> Vec<u8> {
    msgs(|b| {
        backend::auth_sasl(b, &["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]);
        backend::auth_sasl_continue(b, b"r=abcdefXYZ,s=QSXCR+Q6sek8bf92,i=4096");
        backend::auth_sasl_final(b, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        backend::auth_ok(b);
        backend::parameter_status(b, "server_version", "17.2");
        backend::backend_key_data(b, 4242, -17);
        backend::ready_for_query(b, b'I');
        write_msg(b, b'T', |b| {
            b.put_i16(2);
            for (name, oid) in [("id", 23u32), ("name", 25)] {
                b.extend_from_slice(name.as_bytes());
                b.put_u8(0);
                b.put_u32(16_384);
                b.put_i16(1);
                b.put_u32(oid);
                b.put_i16(-1);
                b.put_i32(-1);
                b.put_i16(0);
            }
        });
        write_msg(b, b'D', |b| {
            b.put_i16(2);
            b.put_i32(2);
            b.extend_from_slice(b"42");
            b.put_i32(-1);
        });
        write_msg(b, b'C', |b| b.extend_from_slice(b"SELECT 1\0"));
        backend::error_response(b, "ERROR", "23505", "duplicate key value violates unique constraint \"users_pkey\"");
    })
}

fn proto(s: &mut Seeds) {
    let startup_stream = msgs(|b| {
        startup::encode_ssl_request(b);
        startup::encode_startup(b, &[("user", "app"), ("database", "db"), ("application_name", "psql"), ("options", "-c search_path=x")]);
        startup::encode_cancel(b, 4242, -17);
    });
    let client = client_session();
    let server = server_session();
    for (i, seed) in [0u8, 0x20, 0x45, 0x80, 0xc1, 0xff].into_iter().enumerate() {
        s.put("proto_framing", &format!("client-{i}"), &Framing::encode(false, 1024, seed, &client));
        s.put("proto_framing", &format!("server-{i}"), &Framing::encode(false, 200, seed, &server));
        s.put("proto_framing", &format!("startup-{i}"), &Framing::encode(true, 10_000, seed, &startup_stream));
    }
    // Tidepool-style reader (mode bit 2) with a tight limit, and a large limit (bit 1).
    let mut tp = Framing::encode(false, 40, 0x61, &client);
    tp[0] = 4;
    s.put("proto_framing", "client-tidepool-reader", &tp);
    let mut big = Framing::encode(false, 0, 0xa0, &client);
    big[0] = 2;
    s.put("proto_framing", "client-large-limit", &big);

    let packets = [
        ("ssl", msgs(startup::encode_ssl_request)),
        ("startup", msgs(|b| startup::encode_startup(b, &[("user", "app"), ("database", "db")]))),
        ("cancel", msgs(|b| startup::encode_cancel(b, 7, -9))),
    ];
    for (name, p) in &packets {
        s.put("proto_startup", &format!("{name}-body"), &p[4..]);
        s.put("proto_startup", &format!("{name}-packet"), p);
    }
    s.put("proto_startup", "stream", &startup_stream);

    // WebSocket: a Postgres login and query carried in masked binary frames (one frame, then
    // fragmented with a ping in between), a close, and a 16-bit length frame.
    use tidepool_proto::websocket::{encode_client_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING};
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let ws = |f: &dyn Fn(&mut BytesMut)| msgs(|b| f(b));
    s.put("proto_websocket", "login", &ws(&|b| encode_client_frame(b, OP_BINARY, true, mask, &startup_stream)));
    s.put(
        "proto_websocket",
        "fragmented-with-ping",
        &ws(&|b| {
            let (a, rest) = client.split_at(client.len() / 2);
            encode_client_frame(b, OP_BINARY, false, mask, a);
            encode_client_frame(b, OP_PING, true, mask, b"hi");
            encode_client_frame(b, OP_CONTINUATION, true, mask, rest);
            encode_client_frame(b, OP_CLOSE, true, mask, &1000u16.to_be_bytes());
        }),
    );
    s.put("proto_websocket", "medium", &ws(&|b| encode_client_frame(b, OP_BINARY, true, mask, &[7u8; 300])));

    // One seed per client message: [tag][name len][name][body].
    let mut b = BytesMut::from(&client[..]);
    let mut i = 0;
    while let Ok(Some(f)) = tidepool_proto::framing::try_frame(&mut b, 1 << 20) {
        s.put("proto_frontend", &format!("msg-{i}-{}", f.tag as char), &Tagged::encode(f.tag, "tp_3f9a1c", f.body()));
        i += 1;
    }
    let sasl = msgs(|b| frontend::sasl_initial(b, "SCRAM-SHA-256", b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"));
    s.put("proto_frontend", "sasl-initial", &Tagged::encode(b'p', "", &sasl[5..]));
    let pw = msgs(|b| frontend::password(b, b"md5a3556571e93b0d20722ba62be61e8c2d"));
    s.put("proto_frontend", "password", &Tagged::encode(b'p', "", &pw[5..]));

    let mut b = BytesMut::from(&server[..]);
    let mut i = 0;
    while let Ok(Some(f)) = tidepool_proto::framing::try_frame(&mut b, 1 << 20) {
        let mut seed = vec![f.tag];
        seed.extend_from_slice(f.body());
        s.put("proto_backend", &format!("msg-{i}-{}", f.tag as char), &seed);
        i += 1;
    }

    let first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    s.put(
        "proto_scram",
        "fuzzed-final",
        &Scram::encode(first, 0, b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
    );
    s.put("proto_scram", "right-proof", &Scram::encode(first, 1, b""));
    s.put("proto_scram", "wrong-proof", &Scram::encode(b"y,,n=user,r=abc,e=ext", 2, b"\x13"));
    s.put(
        "proto_scram",
        "verifier",
        b"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:HKZbQ8lFNiyBv5q+Lrqkb+2YR4qdvvw/bwWbo3wB/a8=",
    );
}

fn neon(s: &mut Seeds) {
    let conn =
        "postgresql://alice:s3cr%40t@ep-cool-darkness-123456.us-east-2.aws.neon.tech/neondb?sslmode=require&application_name=app&options=-c%20search_path%3Dx";
    let base = [("neon-connection-string", conn), ("neon-raw-text-output", "true"), ("neon-array-mode", "true"), ("content-type", "text/plain;charset=UTF-8")];
    let bodies: &[(&str, &str)] = &[
        ("single", r#"{"query":"SELECT $1::int8 AS n, $2 AS s","params":["42",null]}"#),
        ("json-params", r#"{"query":"select $1, $2, $3, $4","params":[42, 9007199254740993, true, {"a": [1, "x"], "b": null}],"arrayMode":false}"#),
        ("array-params", r#"{"query":"select $1::text[]","params":[["a", "b\"c", null, "NULL", "", "x\\y"], [[1, 2], [3, 4]], [{"k": "v"}], []]}"#),
        ("batch", r#"{"queries":[{"query":"insert into t values ($1)","params":["x"]},{"query":"select * from t","params":[],"arrayMode":true}]}"#),
    ];
    for (name, body) in bodies {
        s.put("neon_request", name, &HttpRequest::encode(&base, body.as_bytes()));
    }
    let batch_headers = [
        ("neon-connection-string", "postgres://bob@localhost:5432/app"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
        ("neon-batch-isolation-level", "Serializable"),
        ("neon-batch-read-only", "true"),
        ("neon-batch-deferrable", "true"),
        ("content-length", "93"),
        ("x-fuzz-max-request", "4096"),
    ];
    s.put("neon_request", "batch-options", &HttpRequest::encode(&batch_headers, bodies[3].1.as_bytes()));

    for (i, c) in
        [conn, "postgres://bob@localhost:5432/app", "postgresql://u:p@[::1]:5432/db?application_name=a+b&options=", "POSTGRES://%C3%A9:%00@h/d%2Fx#frag"]
            .iter()
            .enumerate()
    {
        s.put("neon_conn_string", &format!("conn-{i}"), c.as_bytes());
    }

    let mut b = BytesMut::new();
    backend::error_response(&mut b, "ERROR", "23505", "duplicate key value violates unique constraint \"users_pkey\"");
    s.put("neon_pg_error", "unique", &b[5..]);
    let full: Vec<u8> = [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "42P01"),
        (b'M', "relation \"nope\" does not exist"),
        (b'D', "d"),
        (b'H', "h"),
        (b'P', "15"),
        (b'p', "3"),
        (b'q', "select 1"),
        (b'W', "PL/pgSQL function f()"),
        (b's', "public"),
        (b't', "nope"),
        (b'c', "id"),
        (b'd', "int4"),
        (b'n', "nope_pkey"),
        (b'F', "parse_relation.c"),
        (b'L', "1392"),
        (b'R', "parserOpenTable"),
        (b'C', "XX000"),
    ]
    .iter()
    .flat_map(|(t, v)| [&[*t][..], v.as_bytes(), &[0]].concat())
    .chain([0])
    .collect();
    s.put("neon_pg_error", "all-fields", &full);

    let fields = [(23, "id"), (25, "name"), (16, "ok"), (701, "f"), (3802, "j"), (1007, "ints"), (1009, "texts"), (1020, "boxes"), (20, "big")];
    let row: &[Option<&str>] = &[
        Some("1"),
        Some("alice"),
        Some("t"),
        Some("1.5"),
        Some(r#"{"a": [1, 2]}"#),
        Some("{1,2,NULL}"),
        Some(r#"{"a b","c\"d",NULL}"#),
        Some("(1,1),(0,0);(2,2),(1,1)"),
        Some("9007199254740993"),
    ];
    let nulls: &[Option<&str>] = &[None, None, None, Some("NaN"), Some("null"), Some("[1:2]={3,4}"), Some("{}"), None, None];
    for flags in 0..8u8 {
        s.put("neon_encode", &format!("rows-{flags}"), &Results::encode(flags, 0, Some("SELECT 2"), &fields, &[row, nulls]));
    }
    s.put("neon_encode", "insert-small-limit", &Results::encode(0, 300, Some("INSERT 0 2"), &fields[..2], &[&row[..2]]));
    s.put("neon_encode", "empty-query", &Results::encode(1, 0, None, &[], &[]));
}

fn prisma(s: &mut Seeds, fixtures: &Path) {
    let mut files: Vec<_> = fs::read_dir(fixtures).unwrap_or_else(|e| panic!("{}: {e}", fixtures.display())).flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let fixture: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        for (i, ex) in fixture["exchanges"].as_array().into_iter().flatten().enumerate() {
            let p = ex["path"].as_str().unwrap_or("");
            let body = serde_json::to_vec(&ex["body"]).unwrap();
            if p.ends_with("/query") {
                s.put("prisma_request", &format!("{stem}-{i}"), &body);
                // Body, NUL, then a short executor script: default limits, a few rows.
                let mut with_script = body.clone();
                with_script.extend_from_slice(&[0, 0, 3, 2, 7, 9, 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]);
                s.put("prisma_handle_query", &format!("{stem}-{i}"), &with_script);
            } else if p.ends_with("/transaction/start") {
                s.put("prisma_transaction_options", &format!("{stem}-{i}"), &body);
            }
        }
    }
    // The DataProxy parameterizer: requests in the shapes the mini schema graph knows.
    for (i, b) in [
        r#"{"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"id":5,"name":{"contains":"x","mode":"insensitive"},"kind":"B","kinds":["A","B"],"big":{"$type":"BigInt","value":"9"},"AND":[{"id":7}]},"orderBy":[{"id":"desc"}],"take":3},"selection":{"$scalars":true,"parts":{"arguments":{"where":{"id":9}},"selection":{"id":true}}}}}"#,
        r#"{"modelName":"Thing","action":"createOne","query":{"arguments":{"data":{"id":1,"tags":["a","b"],"parts":[{"label":"q","id":4}]}},"selection":{"id":true}}}"#,
        r#"{"batch":[{"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"id":1}},"selection":{"$scalars":true}}},{"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"id":{"in":[1,2]}}},"selection":{"$scalars":true}}}],"transaction":{"isolationLevel":"Serializable"}}"#,
    ]
    .iter()
    .enumerate()
    {
        s.put("dataproxy_parameterize", &format!("handmade-{i}"), b.as_bytes());
    }
    for (i, b) in ["", "{}", r#"{"maxWait":2000,"timeout":5000,"isolationLevel":"Serializable"}"#, r#"{"isolationLevel":"SNAPSHOT"}"#].iter().enumerate() {
        s.put("prisma_transaction_options", &format!("handmade-{i}"), b.as_bytes());
    }
}

fn main() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let root = fuzz_dir.join("seeds");
    let _ = fs::remove_dir_all(&root);
    let mut s = Seeds { root, count: 0 };
    proto(&mut s);
    neon(&mut s);
    prisma(&mut s, &fuzz_dir.join("../tests/clients/prisma/fixtures"));
    sql(&mut s, &fuzz_dir.join("../crates/tidepool-sql/tests/corpus.sql"));
    println!("wrote {} seeds under {}", s.count, s.root.display());
}

/// `sql_lexer`: each case of tidepool-sql's oracle corpus, behind a split byte (the target's
/// first byte chooses where it cuts the text in two).
fn sql(s: &mut Seeds, corpus: &Path) {
    let text = fs::read_to_string(corpus).unwrap();
    for (i, case) in text.split("\n-- case\n").map(str::trim).filter(|c| !c.is_empty()).enumerate() {
        s.put("sql_lexer", &format!("case-{i:03}"), &[&[0x80], case.as_bytes()].concat());
    }
}
