//! Statement rendering: placeholders, tuples, chunking above the bind limit, P2029, SQL
//! comments, every argType's text encoding, typed OIDs, and result decoding through `dataMap`.

mod common;

use common::*;
use tidepool_prisma::Limits;

fn template(fragments: &str, args: &str, arg_types: &str, chunkable: bool) -> String {
    format!(
        r#"{{"type":"query","args":{{"type":"templateSql","fragments":{fragments},"args":{args},"argTypes":{arg_types},"placeholderFormat":{{"prefix":"$","hasNumbering":true}},"chunkable":{chunkable}}}}}"#
    )
}

const TUPLE: &str = r#"{"type":"parameterTuple","itemPrefix":"","itemSeparator":",","itemSuffix":""}"#;
const TUPLE_LIST: &str = r#"{"type":"parameterTupleList","itemPrefix":"(","itemSeparator":",","itemSuffix":")","groupSeparator":","}"#;
const INT: &str = r#"{"arity":"scalar","scalarType":"int","dbType":"INTEGER"}"#;
const TEXT_T: &str = r#"{"arity":"scalar","scalarType":"string","dbType":"TEXT"}"#;

fn chunk(s: &str) -> String {
    format!(r#"{{"type":"stringChunk","chunk":"{s}"}}"#)
}

async fn statements(plan: &str, params: &str, limits: &Limits) -> (tidepool_prisma::HttpResponse, Fake) {
    let mut fake = Fake::default();
    let r = run_with(&mut fake, &body(plan, params), false, limits).await;
    (r, fake)
}

#[tokio::test]
async fn tuples_render_and_empty_tuple_is_null() {
    let frags = format!(r#"[{},{TUPLE},{},{{"type":"parameter"}}]"#, chunk("SELECT 1 WHERE x IN "), chunk(" AND y = "));
    let plan = template(&frags, r#"[[1,2,3],"z"]"#, &format!("[{INT},{TEXT_T}]"), true);
    let (r, fake) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.calls[0].sql(), Some("SELECT 1 WHERE x IN ($1,$2,$3) AND y = $4"));
    assert_eq!(fake.calls[0].values(), ["1", "2", "3", "z"].map(|s| Some(s.to_owned())));
    let plan = template(&frags, r#"[[],"z"]"#, &format!("[{INT},{TEXT_T}]"), true);
    let (_, fake) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(fake.calls[0].sql(), Some("SELECT 1 WHERE x IN (NULL) AND y = $1"));
    let plan = template(&frags, r#"[5,"z"]"#, &format!("[{INT},{TEXT_T}]"), true);
    let (_, fake) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(fake.calls[0].sql(), Some("SELECT 1 WHERE x IN ($1) AND y = $2"));
}

#[tokio::test]
async fn tuple_list_with_tuple_arg_types() {
    let frags = format!(r#"[{},{TUPLE_LIST}]"#, chunk("INSERT INTO t (a,b) VALUES "));
    let arg_types = format!(r#"[{{"arity":"tuple","elements":[{INT},{TEXT_T}]}}]"#);
    let plan = template(&frags, r#"[[[1,"a"],[2,"b"]]]"#, &arg_types, true);
    let (_, fake) = statements(&plan, "{}", &Limits { typed_params: true, ..Default::default() }).await;
    assert_eq!(fake.calls[0].sql(), Some("INSERT INTO t (a,b) VALUES ($1,$2),($3,$4)"));
    let Call::Query { params, .. } = &fake.calls[0] else { panic!() };
    assert_eq!(params.iter().map(|p| p.type_oid).collect::<Vec<_>>(), [23, 0, 23, 0]);
    // Malformed: tuple arity mismatch, empty list, non-list.
    for args in [r#"[[[1,"a",3]]]"#, "[[]]", "[5]", r#"[[1]]"#] {
        let (r, _) = statements(&template(&frags, args, &arg_types, true), "{}", &Limits::default()).await;
        assert_eq!(r.status, 400, "{args}: {}", r.body);
        assert!(r.body.contains("Malformed query template"), "{}", r.body);
    }
}

#[tokio::test]
async fn too_few_args_is_malformed() {
    let frags = format!(r#"[{},{{"type":"parameter"}}]"#, chunk("SELECT "));
    let (r, _) = statements(&template(&frags, "[]", "[]", true), "{}", &Limits::default()).await;
    assert_eq!(r.body, r#"{"code":"P6000","error":"Malformed query template. Fragments attempt to read over 0 parameters."}"#);
}

#[tokio::test]
async fn parameter_tuple_is_chunked_inside_a_transaction() {
    let frags = format!(r#"[{},{{"type":"parameter"}},{},{TUPLE}]"#, chunk("SELECT * FROM t WHERE a = "), chunk(" AND id IN "));
    let plan = template(&frags, r#"["k",[1,2,3,4,5,6,7]]"#, &format!("[{TEXT_T},{INT}]"), true);
    let limits = Limits { max_bind_values: Some(4), ..Default::default() };
    let (r, fake) = statements(&plan, "{}", &limits).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.calls.first(), Some(&Call::Begin(None)));
    assert_eq!(fake.calls.last(), Some(&Call::Commit));
    let st = fake.statements();
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].sql(), Some("SELECT * FROM t WHERE a = $1 AND id IN ($2,$3,$4)"));
    assert_eq!(st[2].values(), [Some("k".into()), Some("7".into())]);
    // Not chunkable → P2029.
    let plan = template(&frags, r#"["k",[1,2,3,4,5,6,7]]"#, &format!("[{TEXT_T},{INT}]"), false);
    let (r, _) = statements(&plan, "{}", &limits).await;
    assert_eq!(r.body, r#"{"code":"P2029","error":"The query parameter limit supported by your database is exceeded.","meta":{}}"#);
    // Chunking concatenates rows from every chunk; execute sums counts.
    let mut fake =
        Fake::with_rows(vec![rows(&[("id", INT4)], &[&[Some("1")]]), rows(&[("id", INT4)], &[&[Some("5")], &[Some("6")]]), rows(&[("id", INT4)], &[])]);
    let plan = template(&frags, r#"["k",[1,2,3,4,5,6,7]]"#, &format!("[{TEXT_T},{INT}]"), true);
    let r = run_with(&mut fake, &body(&plan, "{}"), false, &limits).await;
    assert_eq!(r.body, r#"{"data":[{"id":1},{"id":5},{"id":6}]}"#);
    let exec = plan.replacen(r#""type":"query""#, r#""type":"execute""#, 1);
    let mut fake = Fake::with_rows(vec![affected(2), affected(3), affected(1)]);
    let r = run_with(&mut fake, &body(&exec, "{}"), true, &limits).await;
    assert_eq!(r.body, r#"{"data":6}"#);
    assert!(!fake.calls.iter().any(|c| matches!(c, Call::Begin(_))), "already in a transaction");
}

#[tokio::test]
async fn tuple_list_is_chunked_by_whole_tuples() {
    let frags = format!(r#"[{},{TUPLE_LIST}]"#, chunk("INSERT INTO t VALUES "));
    let arg_types = format!(r#"[{{"arity":"tuple","elements":[{INT},{INT}]}}]"#);
    let plan = template(&frags, "[[[1,2],[3,4],[5,6]]]", &arg_types, true);
    let (r, fake) =
        statements(&plan.replacen(r#""type":"query""#, r#""type":"execute""#, 1), "{}", &Limits { max_bind_values: Some(5), ..Default::default() }).await;
    assert_eq!(r.status, 200);
    let st = fake.statements();
    assert_eq!(st.iter().map(|s| s.sql().unwrap()).collect::<Vec<_>>(), ["INSERT INTO t VALUES ($1,$2),($3,$4)", "INSERT INTO t VALUES ($1,$2)"]);
}

#[tokio::test]
async fn sql_comments_are_sorted_and_encoded() {
    let plan = template(&format!("[{}]", chunk("SELECT 1")), "[]", "[]", true);
    let req = format!(r#"{{"operation":"x","plan":{plan},"params":{{}},"comments":{{"route":"/a b*/","app":"it's"}}}}"#);
    let mut fake = Fake::default();
    run(&mut fake, &req).await;
    assert_eq!(fake.calls[0].sql(), Some("SELECT 1 /*app='it\\'s',route='%2Fa%20b*%2F'*/"));
}

#[tokio::test]
async fn every_arg_type_encodes() {
    let frags: Vec<String> = (0..13).map(|_| r#"{"type":"parameter"}"#.to_owned()).collect();
    let types = [
        ("string", "null", "\"s\""),
        ("int", "\"INTEGER\"", "42"),
        ("bigint", "null", "\"9007199254740993\""),
        ("float", "null", "1.25"),
        ("decimal", "null", "\"12.50\""),
        ("boolean", "null", "false"),
        ("enum", "null", "\"ADMIN\""),
        ("uuid", "null", "\"f62036d5-831e-4716-a90e-efab435593bb\""),
        ("json", "\"JSONB\"", "\"{\\\"a\\\": [1]}\""),
        ("datetime", "\"TIMESTAMPTZ\"", "\"2024-03-10T12:34:56.789+02:00\""),
        ("bytes", "null", "\"aGVsbG8=\""),
        ("unknown", "null", "{\"k\":1}"),
        ("string", "null", "null"),
    ];
    let arg_types: Vec<String> = types.iter().map(|(t, db, _)| format!(r#"{{"arity":"scalar","scalarType":"{t}","dbType":{db}}}"#)).collect();
    let args: Vec<&str> = types.iter().map(|(_, _, v)| *v).collect();
    let plan = template(&format!("[{}]", frags.join(",")), &format!("[{}]", args.join(",")), &format!("[{}]", arg_types.join(",")), true);
    let (r, fake) = statements(&plan, "{}", &Limits { typed_params: true, ..Default::default() }).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = [
        Some("s"),
        Some("42"),
        Some("9007199254740993"),
        Some("1.25"),
        Some("12.50"),
        Some("false"),
        Some("ADMIN"),
        Some("f62036d5-831e-4716-a90e-efab435593bb"),
        Some("{\"a\": [1]}"),
        Some("2024-03-10 10:34:56.789"),
        Some("\\x68656c6c6f"),
        Some("{\"k\":1}"),
        None,
    ];
    assert_eq!(fake.calls[0].values(), expected.map(|s| s.map(str::to_owned)));
    let Call::Query { params, .. } = &fake.calls[0] else { panic!() };
    assert_eq!(params.iter().map(|p| p.type_oid).collect::<Vec<_>>(), [0, 23, 20, 701, 1700, 16, 0, 2950, 0, 1184, 17, 0, 0]);
}

#[tokio::test]
async fn list_arg_types_build_array_literals() {
    let plan = template(
        r#"[{"type":"parameter"},{"type":"parameter"},{"type":"parameter"}]"#,
        r#"[["a","b c",null],[{"prisma__type":"param","prisma__value":{"name":"%1","type":"Int"}}],["2024-01-01T00:00:00Z"]]"#,
        r#"[{"arity":"list","scalarType":"string"},{"arity":"list","scalarType":"int"},{"arity":"list","scalarType":"datetime","dbType":"DATE"}]"#,
        true,
    );
    let (_, fake) = statements(&plan, r#"{"%1":7}"#, &Limits::default()).await;
    assert_eq!(fake.calls[0].values(), [Some(r#"{"a","b c",NULL}"#.into()), Some(r#"{"7"}"#.into()), Some(r#"{"2024-01-01"}"#.into())]);
}

#[tokio::test]
async fn placeholders_and_missing_values() {
    let plan = template(r#"[{"type":"parameter"}]"#, r#"[{"prisma__type":"param","prisma__value":{"name":"%9","type":"String"}}]"#, "[]", true);
    let (r, _) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(r.body, r#"{"code":"P6000","error":"Missing value for query variable %9"}"#);
    assert_eq!(r.status, 400);
    // Compact `$p` placeholders are accepted too.
    let plan = template(r#"[{"type":"parameter"}]"#, r#"[{"$p":["%1","String"]}]"#, "[]", true);
    let (_, fake) = statements(&plan, r#"{"%1":"v"}"#, &Limits::default()).await;
    assert_eq!(fake.calls[0].values(), [Some("v".into())]);
}

#[tokio::test]
async fn generators_in_args_and_unknown_generator() {
    let gen = |name: &str, args: &str| {
        format!(r#"{{"prisma__type":"generatorCall","prisma__value":{{"name":"{name}","args":{args},"returnType":{{"type":"String"}}}}}}"#)
    };
    let args =
        format!("[{},{},{},{},{},{}]", gen("now", "[]"), gen("now", "[]"), gen("uuid", "[7]"), gen("cuid", "[2]"), gen("ulid", "[]"), gen("nanoid", "[8]"));
    let plan = template(&format!("[{}]", [r#"{"type":"parameter"}"#; 6].join(",")), &args, "[]", true);
    let (r, fake) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(r.status, 200);
    let v = fake.calls[0].values();
    assert_eq!(v[0], Some("2026-11-27T21:18:54.330Z".into()));
    assert_eq!(v[0], v[1], "now() is frozen per request");
    assert_eq!(v[2].as_ref().map(String::len), Some(36));
    assert_eq!(v[3].as_ref().map(String::len), Some(24));
    assert_eq!(v[4].as_ref().map(String::len), Some(26));
    assert_eq!(v[5].as_ref().map(String::len), Some(8));
    let plan = template(r#"[{"type":"parameter"}]"#, &format!("[{}]", gen("frob", "[]")), "[]", true);
    let (r, _) = statements(&plan, "{}", &Limits::default()).await;
    assert_eq!(r.body, r#"{"code":"P6000","error":"Encountered an unknown generator 'frob'"}"#);
}

#[tokio::test]
async fn data_map_decodes_every_column_type() {
    let fields = [
        ("i", "int", 23, "-5"),
        ("big", "bigint", 20, "9007199254740993"),
        ("f", "float", 701, "1.5"),
        ("dec", "decimal", 1700, "1.50"),
        ("b", "boolean", 16, "t"),
        ("s", "string", 1043, "héllo"),
        ("u", "string", 2950, "f62036d5-831e-4716-a90e-efab435593bb"),
        ("j", "json", 3802, "{\"a\": 1, \"b\": [true]}"),
        ("ts", "datetime", 1114, "2024-03-10 12:34:56.789123"),
        ("tz", "datetime", 1184, "2024-03-10 12:34:56+00"),
        ("d", "datetime", 1082, "2024-02-29"),
        ("t", "datetime", 1083, "12:34:56"),
        ("by", "bytes", 17, "\\x68656c6c6f"),
    ];
    let structure: Vec<String> = fields
        .iter()
        .map(|(n, t, _, _)| {
            let ft = if *t == "bytes" {
                r#"{"arity":"required","type":"bytes","encoding":"array"}"#.to_owned()
            } else {
                format!(r#"{{"arity":"required","type":"{t}"}}"#)
            };
            format!(r#""{n}":{{"type":"field","dbName":"{n}","fieldType":{ft}}}"#)
        })
        .collect();
    let plan = format!(
        r#"{{"type":"dataMap","args":{{"expr":{{"type":"unique","args":{}}},"structure":{{"type":"object","serializedName":null,"fields":{{{}}},"skipNulls":false}},"enums":{{}}}}}}"#,
        template(&format!("[{}]", chunk("SELECT")), "[]", "[]", true),
        structure.join(",")
    );
    let cols: Vec<(&str, u32)> = fields.iter().map(|(n, _, o, _)| (*n, *o)).collect();
    let cells: Vec<Option<&str>> = fields.iter().map(|(_, _, _, v)| Some(*v)).collect();
    let mut fake = Fake::with_rows(vec![rows(&cols, &[&cells])]);
    let r = run(&mut fake, &body(&plan, "{}")).await;
    assert_eq!(
        r.body,
        concat!(
            r#"{"data":{"i":-5,"big":{"$type":"BigInt","value":"9007199254740993"},"f":1.5,"dec":{"$type":"Decimal","value":"1.5"},"b":true,"s":"héllo","#,
            r#""u":"f62036d5-831e-4716-a90e-efab435593bb","j":{"$type":"Json","value":"{\"a\":1,\"b\":[true]}"},"#,
            r#""ts":{"$type":"DateTime","value":"2024-03-10T12:34:56.789Z"},"tz":{"$type":"DateTime","value":"2024-03-10T12:34:56.000Z"},"#,
            r#""d":{"$type":"DateTime","value":"2024-02-29T00:00:00.000Z"},"t":{"$type":"DateTime","value":"1970-01-01T12:34:56.000Z"},"#,
            r#""by":{"$type":"Bytes","value":"aGVsbG8="}}}"#
        )
    );
}

#[tokio::test]
async fn data_map_enums_lists_nulls_skip_nulls_and_serialized_names() {
    let plan = r#"{"type":"dataMap","args":{"expr":{"type":"value","args":[{"role":"adm","tags":null,"n":null,"rel":"[{\"x\":1},null]","_c":3},null]},
      "structure":{"type":"object","serializedName":null,"skipNulls":true,"fields":{
        "role":{"type":"field","dbName":"role","fieldType":{"arity":"required","type":"enum","name":"Role"}},
        "tags":{"type":"field","dbName":"tags","fieldType":{"arity":"list","type":"string"}},
        "n":{"type":"field","dbName":"n","fieldType":{"arity":"required","type":"int"}},
        "rel":{"type":"object","serializedName":"rel","skipNulls":true,"fields":{"x":{"type":"field","dbName":"x","fieldType":{"arity":"required","type":"int"}}}},
        "_count":{"type":"object","serializedName":null,"skipNulls":false,"fields":{"all":{"type":"field","dbName":"_c","fieldType":{"arity":"required","type":"int"}}}}}},
      "enums":{"Role":{"adm":"ADMIN"}}}}"#;
    let mut fake = Fake::default();
    let r = run(&mut fake, &body(plan, "{}")).await;
    assert_eq!(r.body, r#"{"data":[{"role":"ADMIN","tags":[],"n":null,"rel":[{"x":1}],"_count":{"all":3}}]}"#);
    let bad_enum = plan.replace(r#""adm":"ADMIN""#, r#""zz":"Z""#);
    let r = run(&mut Fake::default(), &body(&bad_enum, "{}")).await;
    assert_eq!(r.body, r#"{"code":"P2023","error":"Value 'adm' not found in enum 'Role'","meta":{}}"#);
    let missing = plan.replace(r#""dbName":"n""#, r#""dbName":"nope""#);
    let r = run(&mut Fake::default(), &body(&missing, "{}")).await;
    assert!(r.body.starts_with(r#"{"code":"P2023","error":"Missing data field (Value): 'nope'"#), "{}", r.body);
    let affected_rows = r#"{"type":"dataMap","args":{"expr":{"type":"value","args":3},"structure":{"type":"affectedRows"},"enums":{}}}"#;
    assert_eq!(run(&mut Fake::default(), &body(affected_rows, "{}")).await.body, r#"{"data":{"count":3}}"#);
    let too_big = plan.replace(r#""n":null"#, r#""n":"9007199254740993""#);
    let r = run(&mut Fake::default(), &body(&too_big, "{}")).await;
    assert!(r.body.contains("too large to represent as a JavaScript number"), "{}", r.body);
}

#[tokio::test]
async fn raw_query_result_types() {
    let raw = r#"{"type":"query","args":{"type":"rawSql","sql":"SELECT …","args":[1.5,"x",true,null],"argTypes":[{"arity":"scalar","scalarType":"decimal"},{"arity":"scalar","scalarType":"string"},{"arity":"scalar","scalarType":"unknown"},{"arity":"scalar","scalarType":"unknown"}]}}"#;
    let cols = [("i", 23), ("b", 20), ("n", 1700), ("j", 3802), ("by", 17), ("ts", 1184), ("arr", 1007), ("ja", 3807), ("e", 16385)];
    let cells = [
        Some("1"),
        Some("2"),
        Some("3.10"),
        Some("{\"k\": [1]}"),
        Some("\\x00ff"),
        Some("2024-01-01 00:00:00+00"),
        Some("{1,NULL}"),
        Some(r#"{"{\"a\":1}"}"#),
        Some("ADMIN"),
    ];
    let mut fake = Fake::with_rows(vec![rows(&cols, &[&cells])]);
    let r = run(&mut fake, &body(raw, "{}")).await;
    assert_eq!(
        r.body,
        concat!(
            r#"{"data":{"columns":["i","b","n","j","by","ts","arr","ja","e"],"types":["int","bigint","decimal","json","bytes","datetime","int-array","json-array","string"],"#,
            r#""rows":[[1,"2","3.10",{"k":[1]},"AP8=","2024-01-01T00:00:00+00:00",[1,null],[{"a":1}],"ADMIN"]]}}"#
        )
    );
    assert_eq!(fake.calls[0].values(), [Some("1.5".into()), Some("x".into()), Some("true".into()), None]);
    // Built-in types Prisma cannot read: P2010.
    let mut fake = Fake::with_rows(vec![rows(&[("iv", 1186)], &[&[Some("1 day")]])]);
    let r = run(&mut fake, &body(raw, "{}")).await;
    assert!(
        r.body.starts_with(r#"{"code":"P2010","error":"Raw query failed. Code: `N/A`. Message: `Failed to deserialize column of type 'interval'."#),
        "{}",
        r.body
    );
}
