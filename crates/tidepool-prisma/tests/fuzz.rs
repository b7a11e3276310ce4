//! Property tests: hostile bytes, JSON, plans and database text never panic the crate.

mod common;

use common::*;
use proptest::prelude::*;
use tidepool_prisma::{json, Limits, QueryRequest};

fn arb_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "[a-z%$@0-9 _\"\\\\]{0,8}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            r#""type""#,
            r#""args""#,
            r#""prisma__type""#,
            r#""param""#,
            r#""%1""#,
            r#""templateSql""#,
            r#""rawSql""#,
            r#""parameterTuple""#,
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-zA-Z%]{1,6}", inner), 0..5)
                .prop_map(|kv| format!("{{{}}}", kv.into_iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","))),
        ]
    })
}

const NODE_TYPES: &[&str] = &[
    "value",
    "seq",
    "get",
    "let",
    "getFirstNonEmpty",
    "concat",
    "sum",
    "reverse",
    "unique",
    "required",
    "mapField",
    "join",
    "dataMap",
    "validate",
    "if",
    "unit",
    "diff",
    "initializeRecord",
    "mapRecord",
    "process",
    "query",
    "execute",
    "transaction",
];

/// Random plan-shaped trees: real node names with random (often wrong) arguments.
fn arb_plan() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        arb_json().prop_map(|v| format!(r#"{{"type":"value","args":{v}}}"#)),
        Just(r#"{"type":"unit"}"#.to_owned()),
        "[a-z%0-9]{1,3}".prop_map(|n| format!(r#"{{"type":"get","args":{{"name":"{n}"}}}}"#)),
        Just(r#"{"type":"query","args":{"type":"templateSql","fragments":[{"type":"stringChunk","chunk":"SELECT "},{"type":"parameterTuple","itemPrefix":"","itemSeparator":",","itemSuffix":""}],"args":[{"prisma__type":"param","prisma__value":{"name":"%1","type":"Int"}}],"argTypes":[{"arity":"scalar","scalarType":"int"}],"placeholderFormat":{"prefix":"$","hasNumbering":true},"chunkable":true}}"#.to_owned()),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        (prop::sample::select(NODE_TYPES), prop::collection::vec(inner, 0..4), arb_json()).prop_map(|(ty, kids, extra)| {
            let k = |i: usize| kids.get(i).cloned().unwrap_or_else(|| r#"{"type":"unit"}"#.to_owned());
            let args = match ty {
                "seq" | "concat" | "sum" => format!("[{}]", kids.join(",")),
                "reverse" | "unique" | "required" | "transaction" => k(0),
                "let" => format!(r#"{{"bindings":[{{"name":"%1","expr":{}}}],"expr":{}}}"#, k(0), k(1)),
                "mapField" => format!(r#"{{"field":"id","records":{}}}"#, k(0)),
                "join" => format!(r#"{{"parent":{},"children":[{{"child":{},"on":[["id","pid"]],"parentField":"c","isRelationUnique":false}}],"canAssumeStrictEquality":false}}"#, k(0), k(1)),
                "dataMap" => format!(r#"{{"expr":{},"structure":{{"type":"object","serializedName":null,"skipNulls":true,"fields":{{"id":{{"type":"field","dbName":"id","fieldType":{{"arity":"required","type":"int"}}}}}}}},"enums":{{}}}}"#, k(0)),
                "validate" => format!(r#"{{"expr":{},"rules":[{{"type":"rowCountEq","args":1}}],"errorIdentifier":"MISSING_RECORD","context":{extra}}}"#, k(0)),
                "if" => format!(r#"{{"value":{},"rule":{{"type":"rowCountNeq","args":0}},"then":{},"else":{}}}"#, k(0), k(1), k(2)),
                "diff" => format!(r#"{{"from":{},"to":{},"fields":["id"]}}"#, k(0), k(1)),
                "mapRecord" => format!(r#"{{"expr":{},"fields":{{"n":{{"type":"divide","value":{extra}}}}}}}"#, k(0)),
                "initializeRecord" => format!(r#"{{"expr":{},"fields":{{"n":{{"type":"value","value":{extra}}}}}}}"#, k(0)),
                "process" => format!(r#"{{"expr":{},"operations":{{"pagination":{{"cursor":{{"id":1}},"take":-1,"skip":2}},"distinct":["id"],"reverse":true,"linkingFields":["g"],"nested":{{}}}}}}"#, k(0)),
                _ => extra,
            };
            format!(r#"{{"type":"{ty}","args":{args}}}"#)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = json::parse(&bytes, 64);
        let _ = QueryRequest::parse(&bytes, &Limits::default());
        let _ = tidepool_prisma::RequestBody::parse(&bytes, &Limits::default());
        let _ = tidepool_prisma::TransactionOptions::parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let parsed = json::parse(v.as_bytes(), 64).expect("generator emits valid JSON");
        prop_assert_eq!(json::parse(parsed.to_json().as_bytes(), 64).expect("round trip"), parsed);
        let _ = QueryRequest::parse(format!(r#"{{"operation":"x","plan":{v},"params":{v}}}"#).as_bytes(), &Limits::default());
    }

    #[test]
    fn arbitrary_plans_never_panic(plan in arb_plan(), params in arb_json(), cells in prop::collection::vec(("\\PC{0,12}", prop::sample::select(vec![0u32, 16, 17, 20, 21, 23, 25, 114, 700, 701, 1000, 1007, 1009, 1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950, 3802, 16400])), 0..4)) {
        let params = if params.starts_with('{') { params } else { "{}".to_owned() };
        let cols: Vec<(&str, u32)> = cells.iter().enumerate().map(|(i, (_, oid))| (["id", "g", "c", "x"][i], *oid)).collect();
        let row: Vec<Option<&str>> = cells.iter().map(|(t, _)| Some(t.as_str())).collect();
        let mut fake = Fake::with_rows(vec![rows(&cols, &[&row]), rows(&cols, &[&row, &row])]);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let r = rt.block_on(run(&mut fake, &body(&plan, &params)));
        prop_assert!(r.status == 200 || r.error_code.is_some());
        prop_assert!(json::parse(r.body.as_bytes(), 1000).is_ok(), "response is JSON: {}", r.body);
    }

    #[test]
    fn date_and_number_text_never_panics(s in "\\PC{0,40}") {
        let _ = tidepool_prisma::datetime::parse_js_date(&s);
        let _ = tidepool_prisma::datetime::normalize_datetime_text(&s);
        let _ = json::format_number(s.len() as f64 / 7.0);
    }
}
