//! One test (or more) per plan node type, with hand-written plans and a fake executor.

mod common;

use common::*;

fn v(json: &str) -> String {
    format!(r#"{{"type":"value","args":{json}}}"#)
}

fn get(name: &str) -> String {
    format!(r#"{{"type":"get","args":{{"name":"{name}"}}}}"#)
}

fn q(sql: &str) -> String {
    format!(
        r#"{{"type":"query","args":{{"type":"templateSql","fragments":[{{"type":"stringChunk","chunk":"{sql}"}}],"args":[],"argTypes":[],"placeholderFormat":{{"prefix":"$","hasNumbering":true}},"chunkable":true}}}}"#
    )
}

async fn eval(plan: &str, params: &str) -> (u16, String) {
    let mut fake = Fake::default();
    let r = run(&mut fake, &body(plan, params)).await;
    (r.status, r.body)
}

async fn data(plan: &str) -> String {
    let (status, body) = eval(plan, "{}").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn value_seq_unit_let_get() {
    assert_eq!(data(&v(r#"[1,"a",null,{"k":true}]"#)).await, r#"{"data":[1,"a",null,{"k":true}]}"#);
    assert_eq!(data(r#"{"type":"seq","args":[]}"#).await, "{}");
    assert_eq!(data(r#"{"type":"unit"}"#).await, "{}");
    assert_eq!(data(&format!(r#"{{"type":"seq","args":[{},{}]}}"#, v("1"), v("2"))).await, r#"{"data":2}"#);
    let plan = format!(
        r#"{{"type":"let","args":{{"bindings":[{{"name":"a","expr":{}}},{{"name":"b","expr":{}}}],"expr":{{"type":"concat","args":[{},{},{}]}}}}}}"#,
        v("1"),
        get("a"),
        get("a"),
        get("b"),
        get("%1")
    );
    let (status, body) = eval(&plan, r#"{"%1":"p"}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"data":[1,1,"p"]}"#));
    // Shadowing: an inner let sees its own binding, the outer one is restored afterwards.
    let plan = format!(
        r#"{{"type":"let","args":{{"bindings":[{{"name":"x","expr":{}}}],"expr":{{"type":"concat","args":[{{"type":"let","args":{{"bindings":[{{"name":"x","expr":{}}}],"expr":{}}}}},{}]}}}}}}"#,
        v("1"),
        v("2"),
        get("x"),
        get("x")
    );
    assert_eq!(data(&plan).await, r#"{"data":[2,1]}"#);
    assert_eq!(data(&get("missing")).await, "{}");
}

#[tokio::test]
async fn get_first_non_empty() {
    let plan = r#"{"type":"getFirstNonEmpty","args":{"names":["a","b","c"]}}"#;
    assert_eq!(eval(plan, r#"{"a":[],"b":null,"c":[5]}"#).await.1, r#"{"data":[5]}"#);
    assert_eq!(eval(plan, r#"{"a":[]}"#).await.1, r#"{"data":[]}"#);
}

#[tokio::test]
async fn concat_sum_reverse() {
    let plan = format!(r#"{{"type":"concat","args":[{},{},{}]}}"#, v("[1,2]"), v("3"), v("[[4]]"));
    assert_eq!(data(&plan).await, r#"{"data":[1,2,3,[4]]}"#);
    assert_eq!(data(r#"{"type":"concat","args":[]}"#).await, r#"{"data":[]}"#);
    let plan = format!(r#"{{"type":"sum","args":[{},{},{}]}}"#, v("1"), v(r#""2.5""#), v("3"));
    assert_eq!(data(&plan).await, r#"{"data":6.5}"#);
    assert_eq!(data(r#"{"type":"sum","args":[]}"#).await, r#"{"data":0}"#);
    assert_eq!(data(&format!(r#"{{"type":"sum","args":[{}]}}"#, v(r#""7""#))).await, r#"{"data":"7"}"#);
    assert_eq!(data(&format!(r#"{{"type":"reverse","args":{}}}"#, v("[1,2,3]"))).await, r#"{"data":[3,2,1]}"#);
    assert_eq!(data(&format!(r#"{{"type":"reverse","args":{}}}"#, v("4"))).await, r#"{"data":4}"#);
}

#[tokio::test]
async fn unique_and_required() {
    let u = |x: &str| format!(r#"{{"type":"unique","args":{}}}"#, v(x));
    assert_eq!(data(&u("[]")).await, r#"{"data":null}"#);
    assert_eq!(data(&u("[7]")).await, r#"{"data":7}"#);
    assert_eq!(data(&u(r#"{"a":1}"#)).await, r#"{"data":{"a":1}}"#);
    assert_eq!(eval(&u("[1,2]"), "{}").await, (500, r#"{"code":"P6000","error":"Expected zero or one element, got 2"}"#.into()));
    let r = |x: &str| format!(r#"{{"type":"required","args":{}}}"#, v(x));
    assert_eq!(data(&r("[1]")).await, r#"{"data":[1]}"#);
    assert_eq!(eval(&r("[]"), "{}").await.0, 500);
    assert_eq!(eval(&r("null"), "{}").await.1, r#"{"code":"P6000","error":"Required value is empty"}"#);
}

#[tokio::test]
async fn map_field() {
    let plan = format!(r#"{{"type":"mapField","args":{{"field":"id","records":{}}}}}"#, v(r#"[{"id":1},{"x":2},[{"id":3}],5]"#));
    assert_eq!(data(&plan).await, r#"{"data":[1,null,[3],5]}"#);
    let plan = format!(r#"{{"type":"mapField","args":{{"field":"id","records":{}}}}}"#, v(r#"{"id":"a"}"#));
    assert_eq!(data(&plan).await, r#"{"data":"a"}"#);
}

#[tokio::test]
async fn join_strict_and_cast() {
    let join = |parent: &str, child: &str, unique: bool, strict: bool| {
        format!(
            r#"{{"type":"join","args":{{"parent":{},"children":[{{"child":{},"on":[["id","pid"]],"parentField":"kids","isRelationUnique":{unique}}}],"canAssumeStrictEquality":{strict}}}}}"#,
            v(parent),
            v(child)
        )
    };
    let plan = join(r#"[{"id":1},{"id":2}]"#, r#"[{"pid":1,"n":"a"},{"pid":1,"n":"b"},null,{"pid":3}]"#, false, true);
    assert_eq!(data(&plan).await, r#"{"data":[{"id":1,"kids":[{"pid":1,"n":"a"},{"pid":1,"n":"b"}]},{"id":2,"kids":[]}]}"#);
    // Non-strict: child keys are cast to the parent's key type ("1" matches 1).
    let plan = join(r#"{"id":1}"#, r#"[{"pid":"1"}]"#, true, false);
    assert_eq!(data(&plan).await, r#"{"data":{"id":1,"kids":{"pid":"1"}}}"#);
    let plan = join(r#"{"id":1}"#, r#"[{"pid":"1"}]"#, true, true);
    assert_eq!(data(&plan).await, r#"{"data":{"id":1,"kids":null}}"#);
    assert_eq!(data(&join("null", "[]", true, true)).await, r#"{"data":null}"#);
}

#[tokio::test]
async fn validate_rules_and_errors() {
    let val = |x: &str, rule: &str, ident: &str, ctx: &str| {
        format!(r#"{{"type":"validate","args":{{"expr":{},"rules":[{rule}],"errorIdentifier":"{ident}","context":{ctx}}}}}"#, v(x))
    };
    assert_eq!(data(&val("[1]", r#"{"type":"rowCountNeq","args":0}"#, "MISSING_RECORD", r#"{"operation":"a query"}"#)).await, r#"{"data":[1]}"#);
    assert_eq!(data(&val("5", r#"{"type":"affectedRowCountEq","args":5}"#, "MISSING_RECORD", "{}")).await, r#"{"data":5}"#);
    let cases = [
        ("null", r#"{"type":"rowCountNeq","args":0}"#, "MISSING_RECORD", r#"{"operation":"an update"}"#, "P2025", "No record was found for an update."),
        (
            "[]",
            r#"{"type":"rowCountNeq","args":0}"#,
            "MISSING_RELATED_RECORD",
            r#"{"model":"User","relation":"PostToUser","relationType":"one-to-many","operation":"a nested create","neededFor":"inline the relation"}"#,
            "P2025",
            "No 'User' record (needed to inline the relation) was found for a nested create on one-to-many relation 'PostToUser'.",
        ),
        (
            "[1]",
            r#"{"type":"rowCountEq","args":2}"#,
            "INCOMPLETE_CONNECT_INPUT",
            r#"{"expectedRows":2}"#,
            "P2025",
            "Expected 2 records to be connected, found only 1.",
        ),
        (
            "[1]",
            r#"{"type":"rowCountEq","args":2}"#,
            "INCOMPLETE_CONNECT_OUTPUT",
            r#"{"expectedRows":2,"relation":"R","relationType":"one-to-many"}"#,
            "P2018",
            "Expected 2 records to be connected after connect operation on one-to-many relation 'R', found 1.",
        ),
        (
            "[]",
            r#"{"type":"never"}"#,
            "RELATION_VIOLATION",
            r#"{"relation":"R","modelA":"A","modelB":"B"}"#,
            "P2014",
            "would violate the required relation 'R' between the `A` and `B` models.",
        ),
        (
            "[]",
            r#"{"type":"never"}"#,
            "RECORDS_NOT_CONNECTED",
            r#"{"relation":"R","parent":"P","child":"C"}"#,
            "P2017",
            "The records for relation `R` between the `P` and `C` models are not connected.",
        ),
    ];
    for (value, rule, ident, ctx, code, msg) in cases {
        let (status, body) = eval(&val(value, rule, ident, ctx), "{}").await;
        assert_eq!(status, 400);
        assert!(body.contains(&format!(r#""code":"{code}""#)), "{body}");
        assert!(body.contains(msg), "{body}");
        assert!(body.ends_with(&format!(r#""meta":{ctx}}}"#)), "{body}");
    }
}

#[tokio::test]
async fn if_node() {
    let plan = |x: &str| {
        format!(r#"{{"type":"if","args":{{"value":{},"rule":{{"type":"rowCountEq","args":0}},"then":{},"else":{}}}}}"#, v(x), v(r#""empty""#), v(r#""rows""#))
    };
    assert_eq!(data(&plan("[]")).await, r#"{"data":"empty"}"#);
    assert_eq!(data(&plan("null")).await, r#"{"data":"empty"}"#);
    assert_eq!(data(&plan("[1]")).await, r#"{"data":"rows"}"#);
    assert_eq!(data(&plan("{}")).await, r#"{"data":"rows"}"#);
}

#[tokio::test]
async fn diff_node() {
    let plan = format!(
        r#"{{"type":"diff","args":{{"from":{},"to":{},"fields":["a","b"]}}}}"#,
        v(r#"[{"a":1,"b":2},{"a":1,"b":3},{"a":2,"b":2}]"#),
        v(r#"[{"a":1,"b":3,"c":9}]"#)
    );
    assert_eq!(data(&plan).await, r#"{"data":[{"a":1,"b":2},{"a":2,"b":2}]}"#);
}

#[tokio::test]
async fn initialize_and_map_record() {
    let plan = format!(
        r#"{{"type":"initializeRecord","args":{{"expr":{},"fields":{{"z":{{"type":"value","value":{{"prisma__type":"param","prisma__value":{{"name":"%1","type":"Int"}}}}}},"id":{{"type":"lastInsertId"}},"a":{{"type":"value","value":"x"}}}}}}}}"#,
        v("1")
    );
    assert_eq!(eval(&plan, r#"{"%1":5}"#).await.1, r#"{"data":{"z":5,"a":"x"}}"#);
    let plan = format!(
        r#"{{"type":"mapRecord","args":{{"expr":{},"fields":{{"n":{{"type":"add","value":2}},"m":{{"type":"multiply","value":"3"}},"d":{{"type":"divide","value":0}},"s":{{"type":"subtract","value":1}},"t":{{"type":"set","value":"new"}}}}}}}}"#,
        v(r#"{"n":1,"m":2,"d":4,"s":"10"}"#)
    );
    assert_eq!(data(&plan).await, r#"{"data":{"n":3,"m":6,"d":null,"s":9,"t":"new"}}"#);
    let plan = format!(r#"{{"type":"mapRecord","args":{{"expr":{},"fields":{{"t":{{"type":"set","value":1}}}}}}}}"#, v("null"));
    assert_eq!(data(&plan).await, r#"{"data":{"t":1}}"#);
}

fn process(input: &str, ops: &str) -> String {
    format!(r#"{{"type":"process","args":{{"expr":{},"operations":{ops}}}}}"#, v(input))
}

const ROWS: &str = r#"[{"id":1,"g":"a"},{"id":2,"g":"b"},{"id":3,"g":"a"},{"id":4,"g":"b"},{"id":5,"g":"a"}]"#;

#[tokio::test]
async fn process_pagination_cursor_distinct_reverse() {
    let ops = r#"{"pagination":{"cursor":{"id":2},"take":2,"skip":1},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}"#;
    assert_eq!(data(&process(ROWS, ops)).await, r#"{"data":[{"id":3,"g":"a"},{"id":4,"g":"b"}]}"#);
    let ops = r#"{"pagination":{"cursor":{"id":{"prisma__type":"param","prisma__value":{"name":"%1","type":"Int"}}},"take":null,"skip":null},"distinct":null,"reverse":true,"linkingFields":null,"nested":{}}"#;
    assert_eq!(eval(&process(ROWS, ops), r#"{"%1":"4"}"#).await.1, r#"{"data":[{"id":5,"g":"a"},{"id":4,"g":"b"}]}"#);
    let ops = r#"{"pagination":{"cursor":{"id":99},"take":1,"skip":0},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}"#;
    assert_eq!(data(&process(ROWS, ops)).await, r#"{"data":[]}"#);
    let ops = r#"{"pagination":null,"distinct":["g"],"reverse":false,"linkingFields":null,"nested":{}}"#;
    assert_eq!(data(&process(ROWS, ops)).await, r#"{"data":[{"id":1,"g":"a"},{"id":2,"g":"b"}]}"#);
}

#[tokio::test]
async fn process_linking_fields_paginates_per_parent() {
    let ops = r#"{"pagination":{"cursor":null,"take":1,"skip":1},"distinct":null,"reverse":false,"linkingFields":["g"],"nested":{}}"#;
    assert_eq!(data(&process(ROWS, ops)).await, r#"{"data":[{"id":3,"g":"a"},{"id":4,"g":"b"}]}"#);
    let ops = r#"{"pagination":null,"distinct":["id"],"reverse":false,"linkingFields":["g"],"nested":{}}"#;
    assert_eq!(data(&process(r#"[{"id":1,"g":"a"},{"id":1,"g":"b"},{"id":1,"g":"a"}]"#, ops)).await, r#"{"data":[{"id":1,"g":"a"},{"id":1,"g":"b"}]}"#);
}

#[tokio::test]
async fn process_single_record_nested_and_json_text() {
    let nested = r#"{"pagination":null,"distinct":null,"reverse":false,"linkingFields":null,"nested":{"posts":{"pagination":{"cursor":null,"take":1,"skip":null},"distinct":null,"reverse":true,"linkingFields":null,"nested":{}}}}"#;
    let input = r#""{\"id\":1,\"posts\":[{\"p\":1},{\"p\":2}]}""#;
    assert_eq!(data(&process(input, nested)).await, r#"{"data":{"id":1,"posts":[{"p":1}]}}"#);
    let skip = r#"{"pagination":{"cursor":null,"take":null,"skip":1},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}"#;
    assert_eq!(data(&process(r#"{"id":1}"#, skip)).await, r#"{"data":null}"#);
    let cursor = r#"{"pagination":{"cursor":{"id":2},"take":null,"skip":null},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}"#;
    assert_eq!(data(&process(r#"{"id":1}"#, cursor)).await, r#"{"data":null}"#);
    assert_eq!(data(&process("null", cursor)).await, r#"{"data":null}"#);
}

#[tokio::test]
async fn cursor_matches_dates_by_instant() {
    let ops = r#"{"pagination":{"cursor":{"at":{"prisma__type":"param","prisma__value":{"name":"%1","type":"DateTime"}}},"take":1,"skip":null},"distinct":null,"reverse":false,"linkingFields":null,"nested":{}}"#;
    let input = r#"[{"at":"2024-01-01T00:00:00+00:00"},{"at":"2024-01-02T00:00:00.000+00:00"}]"#;
    assert_eq!(eval(&process(input, ops), r#"{"%1":"2024-01-02T00:00:00.000Z"}"#).await.1, r#"{"data":[{"at":"2024-01-02T00:00:00.000+00:00"}]}"#);
}

#[tokio::test]
async fn transaction_node_wraps_and_rolls_back() {
    let mut fake = Fake::with_rows(vec![rows(&[("n", INT4)], &[&[Some("1")]])]);
    let plan = format!(r#"{{"type":"transaction","args":{}}}"#, q("SELECT 1 AS n"));
    let r = run(&mut fake, &body(&plan, "{}")).await;
    assert_eq!(r.body, r#"{"data":[{"n":1}]}"#);
    assert_eq!(fake.calls.first(), Some(&Call::Begin(None)));
    assert_eq!(fake.calls.last(), Some(&Call::Commit));

    let mut fake = Fake::new(vec![Err(tidepool_prisma::DbError::ConnectionClosed)]);
    let r = run(&mut fake, &body(&plan, "{}")).await;
    assert_eq!(r.error_code.as_deref(), Some("P1017"));
    assert_eq!(fake.calls.last(), Some(&Call::Rollback));

    // Inside an interactive transaction: inline, no BEGIN.
    let mut fake = Fake::default();
    run_with(&mut fake, &body(&plan, "{}"), true, &Default::default()).await;
    assert!(fake.calls.iter().all(|c| c.sql().is_some()));

    // Nested transaction nodes do not nest BEGIN.
    let nested = format!(r#"{{"type":"transaction","args":{plan}}}"#);
    let mut fake = Fake::default();
    run(&mut fake, &body(&nested, "{}")).await;
    assert_eq!(fake.calls.iter().filter(|c| matches!(c, Call::Begin(_))).count(), 1);

    // A failing COMMIT is reported.
    let mut fake = Fake { fail_commit: Some(tidepool_prisma::DbError::Timeout), ..Default::default() };
    assert_eq!(run(&mut fake, &body(&plan, "{}")).await.error_code.as_deref(), Some("P1008"));
}
