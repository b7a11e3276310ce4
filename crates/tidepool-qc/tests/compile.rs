//! The pinned query compiler, hosted by tidepool-qc, on real Prisma 5.22 request bodies.
//! Needs the `.wasm`: `tools/fetch-query-compiler.sh` (run by .ci/run).

use serde_json::Value;
use std::sync::Arc;
use tidepool_qc::{CompileError, CompilerModule, Limits};

const SCHEMA: &str = r#"
generator client {
  provider = "prisma-client-js"
}
datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
model User {
  id       Int    @id @default(autoincrement())
  name     String
  email    String @unique
  password String
  posts    Post[]
}
model Post {
  id       Int    @id @default(autoincrement())
  title    String
  author   User   @relation(fields: [authorId], references: [id])
  authorId Int
}
"#;

fn module() -> Arc<CompilerModule> {
    module_with(Limits::default())
}

fn module_with(limits: Limits) -> Arc<CompilerModule> {
    let path = tidepool_qc::default_wasm_path().expect("no cache directory ($HOME unset)");
    assert!(path.exists(), "{} is missing: run tools/fetch-query-compiler.sh (it fetches the pinned @prisma/query-compiler-wasm)", path.display());
    CompilerModule::load(&path, limits).expect("load query compiler")
}

#[test]
fn compiles_create_find_and_batches() {
    let m = module();
    let mut c = m.instantiate(SCHEMA, true).expect("schema accepted");
    let plan = c
        .compile(r#"{"modelName":"User","action":"createOne","query":{"arguments":{"data":{"name":"Alice","email":"a@x","password":"s"}},"selection":{"$composites":true,"$scalars":true}}}"#)
        .expect("createOne compiles");
    let text = plan.to_string();
    assert!(text.contains("INSERT INTO"), "{text}");
    assert!(text.contains("Alice"), "{text}");

    let plan = c
        .compile(r#"{"modelName":"User","action":"findMany","query":{"arguments":{"where":{"name":{"contains":"o"}},"orderBy":{"id":"desc"},"take":5},"selection":{"$composites":true,"$scalars":true,"posts":true}}}"#)
        .expect("findMany compiles");
    assert!(plan.to_string().contains("SELECT"), "{plan}");

    let batch: Value = c
        .compile_batch(r#"{"batch":[{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":1}},"selection":{"$scalars":true}}},{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":3}},"selection":{"$scalars":true}}}]}"#)
        .expect("batch compiles");
    assert_eq!(batch["type"], "compacted", "{batch}");
    assert_eq!(batch["keys"], serde_json::json!(["id"]));

    // The same instance keeps working after many calls (arena reset, handles reused).
    for i in 0..50 {
        let req = format!(r#"{{"modelName":"User","action":"findUnique","query":{{"arguments":{{"where":{{"id":{i}}}}},"selection":{{"$scalars":true}}}}}}"#);
        c.compile(&req).expect("findUnique compiles");
    }
}

#[test]
fn rejected_request_is_a_prisma_error_and_instance_survives() {
    let m = module();
    let mut c = m.instantiate(SCHEMA, true).expect("schema accepted");
    let err = c.compile(r#"{"modelName":"User","action":"findMany","query":{"arguments":{"where":{"nope":1}},"selection":{"$scalars":true}}}"#).unwrap_err();
    match &err {
        CompileError::Rejected { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("P2009"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!c.is_poisoned());
    let err = c.compile("not json").unwrap_err();
    assert!(matches!(err, CompileError::Rejected { .. } | CompileError::Trap(_)), "{err:?}");
    if !c.is_poisoned() {
        c.compile(r#"{"modelName":"User","action":"findMany","query":{"arguments":{},"selection":{"$scalars":true}}}"#).expect("still usable");
    }
}

#[test]
fn fuel_limit_cuts_off_a_compile() {
    let m = module_with(Limits { fuel_per_compile: 10_000, ..Limits::default() });
    let mut c = m.instantiate(SCHEMA, true).expect("schema accepted");
    let err = c.compile(r#"{"modelName":"User","action":"findMany","query":{"arguments":{},"selection":{"$scalars":true}}}"#).unwrap_err();
    assert!(matches!(err, CompileError::Trap(_)), "{err:?}");
    assert!(c.is_poisoned());
}

/// Prints how long a schema load and compiles take (no assertion on time):
/// `cargo test -p tidepool-qc --release --test compile -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_compile_timings() {
    let m = module();
    let t = std::time::Instant::now();
    let mut c = m.instantiate(SCHEMA, true).expect("schema accepted");
    eprintln!("schema load: {:?}", t.elapsed());
    let req = r#"{"modelName":"User","action":"createOne","query":{"arguments":{"data":{"name":"Alice","email":"a@x","password":"s"}},"selection":{"$composites":true,"$scalars":true}}}"#;
    let t = std::time::Instant::now();
    c.compile(req).expect("compiles");
    eprintln!("first createOne: {:?}", t.elapsed());
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        c.compile(req).expect("compiles");
    }
    eprintln!("createOne, mean of {n}: {:?}", t.elapsed() / n);
    let req = r#"{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":1}},"selection":{"$scalars":true,"posts":true}}}"#;
    let t = std::time::Instant::now();
    for _ in 0..n {
        c.compile(req).expect("compiles");
    }
    eprintln!("findUnique + posts, mean of {n}: {:?}", t.elapsed() / n);
}
