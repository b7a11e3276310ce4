//! Error mapping (SQLSTATE → P-code and meta, raw P2010, connection errors), malformed input,
//! and resource limits (nesting depth, response size).

mod common;

use common::*;
use tidepool_prisma::{DbError, Limits, QueryRequest, RequestBody, ServerError, TransactionOptions, Value};

const PLAN: &str = r#"{"type":"query","args":{"type":"templateSql","fragments":[{"type":"stringChunk","chunk":"SELECT 1"}],"args":[],"argTypes":[],"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":true}}"#;
const RAW: &str = r#"{"type":"execute","args":{"type":"rawSql","sql":"INSERT …","args":[],"argTypes":[]}}"#;

async fn fail_with(plan: &str, e: DbError) -> (u16, String) {
    let mut fake = Fake::new(vec![Err(e)]);
    let r = run(&mut fake, &body(plan, "{}")).await;
    (r.status, r.body)
}

fn server(code: &str, message: &str) -> ServerError {
    ServerError::new(code, message)
}

#[tokio::test]
async fn sqlstates_map_to_prisma_codes() {
    let mut fk = server("23503", "insert or update on table \"Post\" violates foreign key constraint \"Post_authorId_fkey\"");
    fk.constraint = Some("Post_authorId_fkey".into());
    let mut nn = server("23502", "null value in column \"title\" of relation \"Post\" violates not-null constraint");
    nn.column = Some("title".into());
    let mut len = server("22001", "value too long for type character varying(3)");
    len.column = None;
    let mut uq_fields = server("23505", "duplicate key value violates unique constraint");
    uq_fields.detail = Some("Key (a, b)=(1, 2) already exists.".into());
    let cases: Vec<(ServerError, &str, &str)> = vec![
        (fk, "P2003", "Foreign key constraint violated on the constraint: `Post_authorId_fkey`"),
        (nn, "P2011", "Null constraint violation on the (not available)"),
        (len, "P2000", "The provided value for the column is too long for the column's type. Column: (not available)"),
        (uq_fields, "P2002", "Unique constraint failed on the fields: (`a`, `b`)"),
        (server("22003", "integer out of range"), "P2020", "Value out of range for the type: integer out of range"),
        (server("22P02", "invalid input syntax for type integer: \"x\""), "P2007", "Invalid input value: invalid input syntax for type integer: \"x\""),
        (
            server("40001", "could not serialize access due to concurrent update"),
            "P2034",
            "Transaction failed due to a write conflict or a deadlock. Please retry your transaction",
        ),
        (server("40P01", "deadlock detected"), "P2034", "Transaction failed due to a write conflict or a deadlock. Please retry your transaction"),
        (server("42P01", "relation \"Nope\" does not exist"), "P2021", "The table `Nope` does not exist in the current database."),
        (server("42703", "column \"t0\".\"nope\" does not exist"), "P2022", "The column `t0.nope` does not exist in the current database."),
        (server("3D000", "database \"gone\" does not exist"), "P1003", "Database `gone` does not exist on the database server"),
        (
            server("28P01", "password authentication failed for user \"bob\""),
            "P1000",
            "Authentication failed against the database server, the provided database credentials for `bob` are not valid",
        ),
        (server("53300", "sorry, too many clients already"), "P2037", "Too many database connections opened: sorry, too many clients already"),
        (server("25P02", "current transaction is aborted"), "P2039", "Database error. Code: `25P02`. Message: `current transaction is aborted`"),
    ];
    for (e, code, message) in cases {
        let (status, b) = fail_with(PLAN, DbError::Server(Box::new(e.clone()))).await;
        assert_eq!(status, 400);
        let v = tidepool_prisma::json::parse(b.as_bytes(), 32).unwrap();
        assert_eq!(v.get("code").as_str(), Some(code), "{b}");
        assert_eq!(v.get("error").as_str(), Some(message), "{b}");
        let cause = v.get("meta").get("driverAdapterError").get("cause");
        assert_eq!(cause.get("originalCode").as_str(), Some(e.code.as_str()));
        assert_eq!(cause.get("originalMessage").as_str(), Some(e.message.as_str()));
    }
}

#[tokio::test]
async fn generic_postgres_error_meta() {
    let mut e = server("XX000", "boom");
    e.hint = Some("try again".into());
    let (_, b) = fail_with(PLAN, DbError::Server(Box::new(e))).await;
    assert_eq!(
        b,
        r#"{"code":"P2039","error":"Database error. Code: `XX000`. Message: `boom`","meta":{"driverAdapterError":{"name":"DriverAdapterError","cause":{"originalCode":"XX000","originalMessage":"boom","kind":"postgres","code":"XX000","severity":"ERROR","message":"boom","hint":"try again"}}}}"#
    );
}

#[tokio::test]
async fn raw_errors_are_p2010() {
    let mut e = server("23505", "duplicate key value violates unique constraint \"User_email_key\"");
    e.constraint = Some("User_email_key".into());
    let (status, b) = fail_with(RAW, DbError::Server(Box::new(e))).await;
    assert_eq!(status, 400);
    assert!(b.starts_with(r#"{"code":"P2010","error":"Raw query failed. Code: `23505`. Message: `duplicate key value violates unique constraint \"User_email_key\"`","meta":{"driverAdapterError":"#), "{b}");
    let (_, b) = fail_with(RAW, DbError::ConnectionClosed).await;
    assert!(b.starts_with(r#"{"code":"P2010","error":"Raw query failed. Code: `N/A`. Message: `Server has closed the connection.`""#), "{b}");
}

#[tokio::test]
async fn connection_level_errors() {
    let cases = [
        (DbError::ConnectionClosed, "P1017", "Server has closed the connection."),
        (DbError::Timeout, "P1008", "Operation has timed out"),
        (DbError::Unreachable { host: Some("db".into()), port: Some(5432) }, "P1001", "Can't reach database server at db:5432"),
        (DbError::Tls { reason: "bad cert".into() }, "P1011", "Error opening a TLS connection: bad cert"),
    ];
    for (e, code, message) in cases {
        let (status, b) = fail_with(PLAN, e).await;
        assert_eq!(status, 400);
        assert!(b.starts_with(&format!(r#"{{"code":"{code}","error":"{message}""#)), "{b}");
    }
    let (status, b) = fail_with(PLAN, DbError::Other("pool closed".into())).await;
    assert_eq!((status, b.as_str()), (500, r#"{"code":"P6000","error":"pool closed"}"#));
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let bad = [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"operation":"x","plan":{},"params":{}}"#,
        r#"{"operation":"x","plan":{"type":"frobnicate"},"params":{}}"#,
        r#"{"operation":"","plan":{"type":"unit"},"params":{}}"#,
        r#"{"operation":"x","plan":{"type":"unit"},"params":[]}"#,
        r#"{"operation":"x","plan":{"type":"let","args":{"bindings":[{"name":1,"expr":{"type":"unit"}}],"expr":{"type":"unit"}}},"params":{}}"#,
        r#"{"operation":"x","plan":{"type":"query","args":{"type":"mongo"}},"params":{}}"#,
        r#"{"operation":"x","plan":{"type":"dataMap","args":{"expr":{"type":"unit"},"structure":{"type":"field","dbName":"a","fieldType":{"type":"quaternion"}}}},"params":{}}"#,
        r#"{"operation":"x","plan":{"type":"unit"},"params":{},"comments":{"a":1}}"#,
    ];
    for b in bad {
        let r = run(&mut Fake::default(), b).await;
        assert_eq!(r.status, 400, "{b}: {}", r.body);
        assert_eq!(r.error_code.as_deref(), Some("P6000"));
    }
    let r = run(&mut Fake::default(), r#"{"operation":"x","plan":{"type":"frobnicate"},"params":{}}"#).await;
    assert_eq!(r.body, r#"{"code":"P6000","error":"Invalid query plan: unknown node type 'frobnicate'"}"#);
}

#[tokio::test]
async fn nesting_limits() {
    let mut plan = String::from(r#"{"type":"unit"}"#);
    for _ in 0..150 {
        plan = format!(r#"{{"type":"reverse","args":{plan}}}"#);
    }
    let limits = Limits { max_plan_depth: 100, max_json_depth: 400, ..Default::default() };
    let r = run_with(&mut Fake::default(), &body(&plan, "{}"), false, &limits).await;
    assert_eq!(r.body, r#"{"code":"P6000","error":"Query plan nesting exceeds the limit of 100 levels"}"#);
    let deep_json = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = run(&mut Fake::default(), &body(&format!(r#"{{"type":"value","args":{deep_json}}}"#), "{}")).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("nesting deeper than 128"), "{}", r.body);
    // At the default limits, the deepest accepted plan runs on a 1 MiB stack even in debug builds.
    let ok = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut plan = String::from(r#"{"type":"value","args":[1]}"#);
            for _ in 0..62 {
                plan = format!(r#"{{"type":"reverse","args":{plan}}}"#);
            }
            rt.block_on(run(&mut Fake::default(), &body(&plan, "{}"))).body
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(ok, r#"{"data":[1]}"#);
}

#[tokio::test]
async fn response_size_limit_is_p6009() {
    let big = "x".repeat(1000);
    let cells: Vec<Option<&str>> = vec![Some(big.as_str())];
    let data: Vec<&[Option<&str>]> = (0..100).map(|_| cells.as_slice()).collect();
    let limits = Limits { max_response_bytes: 50_000, ..Default::default() };
    let mut fake = Fake::with_rows(vec![rows(&[("t", TEXT)], &data)]);
    let r = run_with(&mut fake, &body(PLAN, "{}"), false, &limits).await;
    assert_eq!((r.status, r.error_code.as_deref()), (413, Some("P6009")));
    assert_eq!(r.body, r#"{"code":"P6009","error":"The response size of the query exceeded the maximum of 50000 bytes."}"#);
    // The serialised response is checked as well (values produced without the database).
    let plan = format!(r#"{{"type":"value","args":"{}"}}"#, "y".repeat(60_000));
    let r = run_with(&mut Fake::default(), &body(&plan, "{}"), false, &limits).await;
    assert_eq!(r.error_code.as_deref(), Some("P6009"));
    // And generators cannot blow up memory.
    let product = r#"{"type":"value","args":{"prisma__type":"generatorCall","prisma__value":{"name":"product","args":[{"prisma__type":"param","prisma__value":{"name":"a","type":"Any"}},{"prisma__type":"param","prisma__value":{"name":"a","type":"Any"}}]}}}"#;
    let list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    let r = run_with(&mut Fake::default(), &body(product, &format!(r#"{{"a":[{}]}}"#, list.join(","))), false, &limits).await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(200)]);
}

#[test]
fn batch_and_transaction_bodies() {
    let single = format!(r#"{{"operation":"x","plan":{PLAN},"params":{{}}}}"#);
    assert!(matches!(RequestBody::parse(single.as_bytes(), &Limits::default()), Ok(RequestBody::Single(_))));
    let arr = format!("[{single},{single}]");
    assert!(matches!(RequestBody::parse(arr.as_bytes(), &Limits::default()), Ok(RequestBody::Batch(v)) if v.len() == 2));
    let obj = format!(r#"{{"batch":[{single}]}}"#);
    assert!(matches!(RequestBody::parse(obj.as_bytes(), &Limits::default()), Ok(RequestBody::Batch(v)) if v.len() == 1));
    let r = QueryRequest::parse(
        format!(r#"{{"model":"User","operation":"x","plan":{PLAN},"params":{{"%1":1}},"comments":{{"a":"b"}}}}"#).as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(r.model.as_deref(), Some("User"));
    assert_eq!(r.params.get("%1"), Some(&Value::Number(1.0)));

    let t = TransactionOptions::parse(br#"{"maxWait":1000,"timeout":3000,"isolationLevel":"SERIALIZABLE"}"#).unwrap();
    assert_eq!((t.max_wait, t.timeout), (Some(1000), Some(3000)));
    assert_eq!(t.isolation().unwrap(), Some(tidepool_prisma::IsolationLevel::Serializable));
    assert_eq!(TransactionOptions::parse(b"").unwrap(), TransactionOptions::default());
    let snap = TransactionOptions::parse(br#"{"isolationLevel":"SNAPSHOT"}"#).unwrap();
    let e = snap.isolation().unwrap_err();
    assert_eq!(e.body_json(), r#"{"code":"P2028","error":"Transaction API error: Invalid isolation level: SNAPSHOT","meta":{"isolationLevel":"SNAPSHOT"}}"#);
    assert!(TransactionOptions::parse(b"{\"timeout\":\"x\"}").is_err());
}

#[tokio::test]
async fn execute_batch_stops_at_first_error() {
    let ok = QueryRequest::parse(format!(r#"{{"operation":"x","plan":{PLAN},"params":{{}}}}"#).as_bytes(), &Limits::default()).unwrap();
    let mut fake = Fake::new(vec![Ok(rows(&[("n", INT4)], &[&[Some("1")]])), Err(DbError::Timeout), Ok(Default::default())]);
    let out = tidepool_prisma::execute_batch(&mut fake, &[ok.clone(), ok.clone(), ok], &Default::default(), &Limits::default()).await;
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok() && out[1].is_err());
}
