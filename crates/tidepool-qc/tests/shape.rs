//! Plans by query shape: the pinned schema tooling's DMMF → parameterization graph → requests that
//! differ only in values become one request text, which the pinned compiler turns into a plan with
//! placeholders. Needs both `.wasm` files: `tools/fetch-query-compiler.sh` (run by .ci/run).

use serde_json::{json, Value};
use tidepool_qc::{parameterize, CompilerModule, DmmfModule, Limits, ParamGraph, J};

const SCHEMA: &str = r#"
generator client {
  provider = "prisma-client-js"
}
datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
enum Role {
  USER
  ADMIN @map("admin")
}
model User {
  id       Int      @id @default(autoincrement())
  name     String
  email    String   @unique
  role     Role     @default(USER)
  karma    BigInt   @default(0)
  born     DateTime?
  tags     String[]
  profile  Json?
  posts    Post[]
}
model Post {
  id       Int    @id @default(autoincrement())
  title    String
  author   User   @relation(fields: [authorId], references: [id])
  authorId Int
}
"#;

fn graph() -> ParamGraph {
    let path = tidepool_qc::default_schema_wasm_path().expect("no cache directory ($HOME unset)");
    assert!(path.exists(), "{} is missing: run tools/fetch-query-compiler.sh", path.display());
    let m = DmmfModule::load(&path, Limits::default()).expect("load schema wasm");
    let dmmf = m.dmmf(SCHEMA).expect("DMMF of a Prisma 5 schema (datasource url stripped)");
    ParamGraph::from_dmmf(&dmmf).expect("graph")
}

fn p(g: &ParamGraph, req: &str) -> (String, Value) {
    let j: J = serde_json::from_str(req).unwrap();
    let out = parameterize(g, &j).expect("an object");
    (out.request, Value::Object(out.params))
}

#[test]
fn requests_that_differ_only_in_values_share_one_text() {
    let g = graph();
    let find = |id: i64, email: &str| {
        format!(
            r#"{{"modelName":"User","action":"findMany","query":{{"arguments":{{"where":{{"id":{id},"email":{{"contains":"{email}"}},"role":"ADMIN","karma":{{"gt":{{"$type":"BigInt","value":"10"}}}}}},"take":5,"orderBy":{{"id":"desc"}}}},"selection":{{"name":true,"$scalars":true,"posts":{{"arguments":{{"where":{{"title":"t{id}"}}}},"selection":{{"$scalars":true}}}}}}}}}}"#
        )
    };
    let (a, pa) = p(&g, &find(1, "x"));
    let (b, pb) = p(&g, &find(3, "y"));
    assert_eq!(a, b, "same shape, same text");
    assert_ne!(pa, pb);
    assert_eq!(pa["%1"], json!(1), "{a} {pa}");
    assert_eq!(pa["%2"], json!("x"));
    // The enum binds its database name; BigInt binds the tagged value's text.
    assert!(pa.as_object().unwrap().values().any(|v| v == "admin"), "{pa}");
    assert!(pa.as_object().unwrap().values().any(|v| v == "10"), "{pa}");
    // Sort order and selection keep their literal form and order.
    assert!(a.contains(r#""orderBy":{"id":"desc"}"#), "{a}");
    assert!(a.find(r#""name":true"#) < a.find(r#""$scalars":true"#), "{a}");
    // The nested relation's filter is parameterized too.
    assert!(pa.as_object().unwrap().values().any(|v| v == "t1"), "{pa}");
    // Equal values share a placeholder.
    let (_, pc) = p(&g, r#"{"modelName":"User","action":"findMany","query":{"arguments":{"where":{"name":"z","email":"z"}},"selection":{"$scalars":true}}}"#);
    assert_eq!(pc.as_object().unwrap().len(), 1, "{pc}");
}

#[test]
fn raw_queries_and_unknown_operations_are_left_alone() {
    let g = graph();
    let raw = r#"{"action":"queryRaw","query":{"arguments":{"query":"SELECT $1","parameters":"[1]"},"selection":{}}}"#;
    let (a, pa) = p(&g, raw);
    assert_eq!(serde_json::from_str::<Value>(&a).unwrap(), serde_json::from_str::<Value>(raw).unwrap());
    assert!(pa.as_object().unwrap().is_empty());
    let (_, pb) = p(&g, r#"{"modelName":"Nope","action":"findMany","query":{"arguments":{"where":{"id":1}}}}"#);
    assert!(pb.as_object().unwrap().is_empty());
}

#[test]
fn parameterized_requests_compile_to_plans_with_placeholders() {
    let g = graph();
    let path = tidepool_qc::default_wasm_path().unwrap();
    let m = CompilerModule::load(&path, Limits::default()).expect("load query compiler");
    let mut c = m.instantiate(SCHEMA, true).expect("schema accepted");
    let reqs = [
        r#"{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":7}},"selection":{"$scalars":true}}}"#,
        r#"{"modelName":"User","action":"createOne","query":{"arguments":{"data":{"name":"A","email":"a@x","role":"ADMIN","tags":["a","b"],"profile":{"$type":"Json","value":"{\"k\":1}"},"born":{"$type":"DateTime","value":"2020-01-02T03:04:05.000Z"}}},"selection":{"$scalars":true}}}"#,
        r#"{"modelName":"User","action":"findMany","query":{"arguments":{"where":{"id":{"in":[1,2,3]},"role":{"in":["USER","ADMIN"]}},"skip":1},"selection":{"$scalars":true}}}"#,
        r#"{"modelName":"User","action":"updateMany","query":{"arguments":{"where":{"karma":{"lt":{"$type":"BigInt","value":"5"}}},"data":{"karma":{"increment":{"$type":"BigInt","value":"1"}}}},"selection":{"count":true}}}"#,
        r#"{"batch":[{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":1}},"selection":{"$scalars":true}}},{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":2}},"selection":{"$scalars":true}}}]}"#,
    ];
    for r in reqs {
        let (text, params) = p(&g, r);
        assert!(!params.as_object().unwrap().is_empty(), "{r} was not parameterized");
        let plan = if r.starts_with(r#"{"batch""#) { c.compile_batch(&text) } else { c.compile(&text) };
        let plan = plan.unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(plan.to_string().contains("%1"), "{text} -> {plan}");
    }
}
