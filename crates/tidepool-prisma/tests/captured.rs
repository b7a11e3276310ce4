//! Replays the request/response pairs captured in the protocol reference (Appendix A) against
//! the interpreter with canned rows, checking the exact response bodies, SQL and parameters.

mod common;

use common::*;
use tidepool_prisma::{DbError, ServerError};

async fn check(name: &str, fake: &mut Fake, in_tx: bool) -> Vec<Call> {
    let resp = run_with(fake, &read(&format!("{name}.request.json")), in_tx, &Default::default()).await;
    let (status, body) = expected(&format!("{name}.response.json"));
    assert_eq!(resp.body, body, "{name} body");
    assert_eq!(resp.status, status, "{name} status");
    fake.calls.clone()
}

fn user_row(id: &str, name: &str, email: &str, pw: &str) -> tidepool_prisma::Rows {
    rows(&[("id", INT4), ("name", TEXT), ("email", TEXT), ("password", TEXT)], &[&[Some(id), Some(name), Some(email), Some(pw)]])
}

#[tokio::test]
async fn a2_create() {
    let mut fake = Fake::with_rows(vec![user_row("1", "Alice", "alice@example.com", "secret")]);
    let calls = check("A2", &mut fake, false).await;
    assert_eq!(calls.len(), 1);
    assert!(calls[0].sql().unwrap().contains("VALUES ($1,$2,$3) RETURNING"));
    assert_eq!(calls[0].values(), vec![Some("Alice".into()), Some("alice@example.com".into()), Some("secret".into())]);
}

#[tokio::test]
async fn a3_a4_a5_find_many() {
    let mut fake = Fake::with_rows(vec![user_row("1", "Alice", "alice@example.com", "secret")]);
    let calls = check("A3", &mut fake, false).await;
    assert!(calls[0].sql().unwrap().ends_with("WHERE 1=1 OFFSET $1"));
    assert_eq!(calls[0].values(), vec![Some("0".into())]);

    let mut fake = Fake::with_rows(vec![user_row("1", "Alice", "alice@example.com", "secret")]);
    let calls = check("A4", &mut fake, false).await;
    assert_eq!(calls[0].values(), vec![Some("alice@example.com".into()), Some("0".into())]);

    let mut fake = Fake::with_rows(vec![user_row("1", "Alice2", "alice@example.com", "secret")]);
    let calls = check("A5", &mut fake, false).await;
    assert!(calls[0].sql().unwrap().contains("LIMIT $1 OFFSET $2"));
    assert_eq!(calls[0].values(), vec![Some("1".into()), Some("0".into())]);
}

#[tokio::test]
async fn a6_find_unique() {
    let mut fake = Fake::with_rows(vec![rows(&[("id", INT4), ("name", TEXT)], &[&[Some("1"), Some("Alice")]])]);
    let calls = check("A6", &mut fake, false).await;
    assert_eq!(calls[0].values(), vec![Some("1".into()), Some("1".into()), Some("0".into())]);
}

#[tokio::test]
async fn a7_count() {
    let mut fake = Fake::with_rows(vec![rows(&[("_count$_all", INT8)], &[&[Some("1")]])]);
    check("A7", &mut fake, false).await;
}

#[tokio::test]
async fn a8_to_a11_interactive_transaction_queries() {
    let mut fake = Fake::with_rows(vec![user_row("1", "Alice", "alice@example.com", "secret")]);
    check("A8_tx0", &mut fake, true).await;
    let mut fake = Fake::with_rows(vec![user_row("1", "Alice2", "alice@example.com", "secret")]);
    let calls = check("A8_tx1", &mut fake, true).await;
    assert!(calls[0].sql().unwrap().starts_with("UPDATE"));
    assert_eq!(calls[0].values(), vec![Some("Alice2".into()), Some("1".into())]);
    let mut fake = Fake::with_rows(vec![user_row("2", "Bob", "bob@example.com", "pw")]);
    check("A9_tx0", &mut fake, true).await;
    let mut fake = Fake::with_rows(vec![user_row("2", "Bob", "bob@example.com", "pw")]);
    check("A9_tx1", &mut fake, true).await;
    let mut fake = Fake::with_rows(vec![user_row("3", "Carol", "c@example.com", "pw")]);
    check("A10_tx0", &mut fake, true).await;
    let mut fake = Fake::with_rows(vec![rows(&[("_count$_all", INT8)], &[&[Some("1")]])]);
    let calls = check("A11_tx0", &mut fake, true).await;
    assert!(!calls.iter().any(|c| matches!(c, Call::Begin(_))), "no BEGIN inside an ITX");
}

#[tokio::test]
async fn a12_find_unique_or_throw_miss() {
    let mut fake = Fake::with_rows(
        vec![user_row("1", "x", "y", "z").clone()]
            .into_iter()
            .map(|mut r| {
                r.rows.clear();
                r
            })
            .collect(),
    );
    check("A12", &mut fake, false).await;
}

#[tokio::test]
async fn a13_query_raw() {
    let mut fake = Fake::with_rows(vec![rows(&[("n", INT4)], &[&[Some("1")]])]);
    let calls = check("A13", &mut fake, false).await;
    assert_eq!(calls[0].sql().unwrap(), "SELECT count(*)::int AS n FROM \"User\" WHERE name = $1");
    assert_eq!(calls[0].values(), vec![Some("Alice2".into())]);
}

#[tokio::test]
async fn a14_create_many() {
    let mut fake = Fake::with_rows(vec![affected(2)]);
    let calls = check("A14", &mut fake, false).await;
    assert!(matches!(calls[0], Call::Execute { .. }));
    let v: Vec<_> = calls[0].values().into_iter().map(Option::unwrap).collect();
    assert_eq!(v, ["D", "d@x", "p", "E", "e@x", "p"]);
}

#[tokio::test]
async fn a16_nested_create_in_transaction() {
    let mut fake = Fake::with_rows(vec![
        rows(&[("id", INT4)], &[&[Some("1")]]),
        rows(&[("id", TEXT)], &[&[Some("f62036d5-831e-4716-a90e-efab435593bb")]]),
        rows(&[("id", INT4), ("email", TEXT), ("createdAt", TIMESTAMP)], &[&[Some("1"), Some("rel@example.com"), Some("2026-11-27 21:18:54.33")]]),
        rows(&[("id", TEXT), ("title", TEXT), ("authorId", INT4)], &[&[Some("f62036d5-831e-4716-a90e-efab435593bb"), Some("Hello"), Some("1")]]),
    ]);
    let calls = check("A16", &mut fake, false).await;
    assert_eq!(calls.first(), Some(&Call::Begin(None)));
    assert_eq!(calls.last(), Some(&Call::Commit));
    let st: Vec<&Call> = calls.iter().filter(|c| c.sql().is_some()).collect();
    assert_eq!(st.len(), 4);
    assert_eq!(st[0].values(), vec![Some("rel@example.com".into()), Some("2026-11-27 21:18:54.330".into())]);
    let post = st[1].values();
    let uuid = uuid::Uuid::parse_str(post[0].as_deref().unwrap()).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(post[1..], [Some("Hello".into()), Some("1".into())]);
    assert_eq!(st[2].values(), vec![Some("1".into()), Some("1".into()), Some("0".into())]);
    assert!(st[3].sql().unwrap().contains("\"authorId\" = $1 OFFSET $2"));
}

#[tokio::test]
async fn a17_include_with_in_tuples() {
    let mut fake = Fake::with_rows(vec![
        rows(&[("id", INT4), ("email", TEXT), ("createdAt", TIMESTAMP)], &[&[Some("1"), Some("rel@example.com"), Some("2026-11-27 21:18:54.33")]]),
        rows(&[("id", TEXT), ("title", TEXT), ("authorId", INT4)], &[&[Some("f62036d5-831e-4716-a90e-efab435593bb"), Some("Hello"), Some("1")]]),
    ]);
    let calls = check("A17", &mut fake, false).await;
    assert!(calls[0].sql().unwrap().contains("\"email\" IN ($1,$2) OFFSET $3"));
    assert_eq!(calls[0].values(), vec![Some("rel@example.com".into()), Some("x@y".into()), Some("0".into())]);
    assert!(calls[1].sql().unwrap().contains("\"authorId\" IN ($1) OFFSET $2"));
    assert_eq!(calls[1].values(), vec![Some("1".into()), Some("0".into())]);
}

#[tokio::test]
async fn a18_unique_violation() {
    let mut e = ServerError::new("23505", "duplicate key value violates unique constraint \"User_email_key\"");
    e.constraint = Some("User_email_key".into());
    e.table = Some("User".into());
    e.detail = Some("Key (email)=(rel@example.com) already exists.".into());
    let mut fake = Fake::new(vec![Err(DbError::Server(Box::new(e)))]);
    check("A18", &mut fake, false).await;
}

#[tokio::test]
async fn a19_relation_joins_json_column() {
    let mut fake = Fake::with_rows(vec![rows(
        &[("id", INT4), ("email", TEXT), ("createdAt", TIMESTAMP), ("posts", JSONB)],
        &[&[
            Some("1"),
            Some("rel@example.com"),
            Some("2026-11-27 21:18:54.33"),
            Some(r#"[{"id": "f62036d5-831e-4716-a90e-efab435593bb", "title": "Hello", "authorId": 1}]"#),
        ]],
    )]);
    let calls = check("A19", &mut fake, false).await;
    assert!(calls[0].values().is_empty());
}

#[tokio::test]
async fn a20_prisma6_inlined_literals() {
    let mut fake = Fake::with_rows(vec![user_row("15", "Alice", "alice@example.com", "secret")]);
    let calls = check("A20", &mut fake, false).await;
    assert_eq!(calls[0].values(), vec![Some("Alice".into()), Some("alice@example.com".into()), Some("secret".into())]);
}
