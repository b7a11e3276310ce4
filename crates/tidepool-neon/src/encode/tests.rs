use serde_json::{json, Value};

use super::*;
use crate::value::ValueError;

const RAW_ARRAYS: OutputOptions = OutputOptions { raw_text: true, array_mode: true };
const JSON_ARRAYS: OutputOptions = OutputOptions { raw_text: false, array_mode: true };
const JSON_OBJECTS: OutputOptions = OutputOptions { raw_text: false, array_mode: false };
const RAW_OBJECTS: OutputOptions = OutputOptions { raw_text: true, array_mode: false };

fn field(name: &str, type_oid: u32, type_size: i16) -> Field {
    Field { type_size, ..Field::new(name, type_oid) }
}

fn encode(fields: &[Field], rows: &[Vec<Option<&str>>], tag: Option<&str>, options: OutputOptions) -> Result<String, EncodeError> {
    let mut response = ResponseEncoder::single(crate::DEFAULT_MAX_BYTES);
    let mut statement = response.statement(fields, options)?;
    for row in rows {
        statement.push_row(row)?;
    }
    statement.finish(tag)?;
    Ok(String::from_utf8(response.finish()?).unwrap())
}

/// Encodes one value of one type and returns the JSON value of the single cell.
fn cell(type_oid: u32, text: Option<&str>, options: OutputOptions) -> Value {
    let body = encode(&[Field::new("v", type_oid)], &[vec![text]], Some("SELECT 1"), options).unwrap_or_else(|e| panic!("{type_oid} {text:?}: {e}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    if options.array_mode {
        v["rows"][0][0].clone()
    } else {
        v["rows"][0]["v"].clone()
    }
}

/// The text PostgreSQL 15 prints for one value of each type, and the JSON-mode result.
fn type_table() -> Vec<(&'static str, u32, &'static str, Value)> {
    vec![
        ("int2", 21, "-32768", json!(-32768)),
        ("int4", 23, "2147483647", json!(2147483647)),
        ("int8", 20, "9007199254740993", json!("9007199254740993")),
        ("numeric", 1700, "12345.678901234567890", json!("12345.678901234567890")),
        ("numeric NaN", 1700, "NaN", json!("NaN")),
        ("float4", 700, "1.5", json!(1.5)),
        ("float8", 701, "0.1", json!(0.1)),
        ("float8 exp", 701, "1e+30", json!(1e30)),
        ("float8 NaN", 701, "NaN", json!("NaN")),
        ("float8 +inf", 701, "Infinity", json!("Infinity")),
        ("float4 -inf", 700, "-Infinity", json!("-Infinity")),
        ("bool t", 16, "t", json!(true)),
        ("bool f", 16, "f", json!(false)),
        ("text", 25, "x \"quoted\" \\ é", json!("x \"quoted\" \\ é")),
        ("varchar", 1043, "", json!("")),
        ("uuid", 2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("json", 114, "{\"k\":[1,2]}", json!({"k": [1, 2]})),
        ("jsonb", 3802, "{\"k\": [1, 2]}", json!({"k": [1, 2]})),
        ("jsonb scalar", 3802, "\"s\"", json!("s")),
        ("int4[]", 1007, "{1,NULL,3}", json!([1, null, 3])),
        ("int4[][]", 1007, "{{1,2},{3,NULL}}", json!([[1, 2], [3, null]])),
        ("int4[] bounds", 1007, "[0:1]={5,6}", json!([5, 6])),
        ("int4[] empty", 1007, "{}", json!([])),
        ("text[]", 1009, "{a,\"b c\",\"\\\"q\\\"\",NULL,\"\",\"NULL\"}", json!(["a", "b c", "\"q\"", null, "", "NULL"])),
        ("int8[]", 1016, "{1,2}", json!(["1", "2"])),
        ("bool[]", 1000, "{t,f,NULL}", json!([true, false, null])),
        ("float8[]", 1022, "{1.5,NaN,-Infinity}", json!([1.5, "NaN", "-Infinity"])),
        ("jsonb[]", 3807, "{\"{\\\"x\\\": 1}\"}", json!([{"x": 1}])),
        ("timestamp", 1114, "2024-01-02 03:04:05.678", json!("2024-01-02 03:04:05.678")),
        ("timestamptz", 1184, "2024-01-02 01:04:05.678+00", json!("2024-01-02 01:04:05.678+00")),
        ("timestamptz[]", 1185, "{\"2024-01-02 03:04:05+00\"}", json!(["2024-01-02 03:04:05+00"])),
        ("date", 1082, "2024-01-02", json!("2024-01-02")),
        ("date BC", 1082, "2024-01-02 BC", json!("2024-01-02 BC")),
        ("time", 1083, "03:04:05.123456", json!("03:04:05.123456")),
        ("timetz", 1266, "03:04:05+05:30", json!("03:04:05+05:30")),
        ("interval", 1186, "1 day 02:00:00", json!("1 day 02:00:00")),
        ("interval neg", 1186, "-1 years -2 mons +3 days -04:05:06.5", json!("-1 years -2 mons +3 days -04:05:06.5")),
        ("bytea", 17, "\\x0102ff", json!("\\x0102ff")),
        ("bytea[]", 1001, "{\"\\\\x01\"}", json!(["\\x01"])),
        ("inet", 869, "192.168.0.1", json!("192.168.0.1")),
        ("money", 790, "$12.34", json!("$12.34")),
        ("unknown oid", 123_456, "{1,2}", json!("{1,2}")),
    ]
}

#[test]
fn every_type_in_json_mode() {
    for (name, oid, text, expected) in type_table() {
        assert_eq!(cell(oid, Some(text), JSON_ARRAYS), expected, "{name} (array mode)");
        assert_eq!(cell(oid, Some(text), JSON_OBJECTS), expected, "{name} (object mode)");
    }
}

#[test]
fn every_type_in_raw_mode_is_its_text() {
    for (name, oid, text, _) in type_table() {
        assert_eq!(cell(oid, Some(text), RAW_ARRAYS), json!(text), "{name} (array mode)");
        assert_eq!(cell(oid, Some(text), RAW_OBJECTS), json!(text), "{name} (object mode)");
    }
}

#[test]
fn null_is_null_everywhere() {
    for (name, oid, _, _) in type_table() {
        for options in [RAW_ARRAYS, RAW_OBJECTS, JSON_ARRAYS, JSON_OBJECTS] {
            assert_eq!(cell(oid, None, options), Value::Null, "{name} {options:?}");
        }
    }
}

#[test]
fn exact_number_text_in_json_mode() {
    // Byte-level checks where a JSON parser would hide differences.
    let body = encode(
        &[Field::new("a", 23), Field::new("b", 701), Field::new("c", 701), Field::new("d", 20)],
        &[vec![Some("-7"), Some("100"), Some("1e-07"), Some("9223372036854775807")]],
        Some("SELECT 1"),
        JSON_ARRAYS,
    )
    .unwrap();
    assert!(body.contains(r#""rows":[[-7,100.0,1e-7,"9223372036854775807"]]"#), "{body}");
}

#[test]
fn captured_b2_row_raw_array_mode() {
    // Reference B.2: one row of many types, raw text + array mode, byte for byte.
    let fields = vec![
        field("a_int2", 21, 2),
        field("a_int4", 23, 4),
        field("a_int8", 20, 8),
        field("a_f4", 700, 4),
        field("a_nan", 701, 8),
        field("a_num", 1700, -1),
        field("a_bool", 16, 1),
        field("a_text", 25, -1),
        field("a_date", 1082, 4),
        field("a_ts", 1114, 8),
        field("a_tstz", 1184, 8),
        field("a_time", 1083, 8),
        field("a_interval", 1186, 16),
        field("a_json", 114, -1),
        field("a_jsonb", 3802, -1),
        field("a_bytea", 17, -1),
        field("a_uuid", 2950, 16),
        field("a_int4arr", 1007, -1),
        field("a_textarr", 1009, -1),
        field("a_int8arr", 1016, -1),
        field("a_jsonbarr", 3807, -1),
        field("a_inet", 869, -1),
        field("a_money", 790, 8),
        field("a_null", 23, 4),
    ];
    let row: Vec<Option<&str>> = vec![
        Some("1"),
        Some("2"),
        Some("9007199254740993"),
        Some("1.5"),
        Some("NaN"),
        Some("12345.678901234567890"),
        Some("t"),
        Some("x"),
        Some("2024-01-02"),
        Some("2024-01-02 03:04:05.678"),
        Some("2024-01-02 01:04:05.678+00"),
        Some("03:04:05"),
        Some("1 day 02:00:00"),
        Some(r#"{"k":[1,2]}"#),
        Some(r#"{"k": [1, 2]}"#),
        Some(r"\x0102ff"),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Some("{1,NULL,3}"),
        Some(r#"{a,"b c","\"q\"",NULL}"#),
        Some("{1,2}"),
        Some(r#"{"{\"x\": 1}"}"#),
        Some("192.168.0.1"),
        Some("$12.34"),
        None,
    ];
    let body = encode(&fields, &[row], Some("SELECT 1"), RAW_ARRAYS).unwrap();
    let expected = r#"{"fields":[{"name":"a_int2","dataTypeID":21,"tableID":0,"columnID":0,"dataTypeSize":2,"dataTypeModifier":-1,"format":"text"},{"name":"a_int4","dataTypeID":23,"tableID":0,"columnID":0,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"},{"name":"a_int8","dataTypeID":20,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_f4","dataTypeID":700,"tableID":0,"columnID":0,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"},{"name":"a_nan","dataTypeID":701,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_num","dataTypeID":1700,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_bool","dataTypeID":16,"tableID":0,"columnID":0,"dataTypeSize":1,"dataTypeModifier":-1,"format":"text"},{"name":"a_text","dataTypeID":25,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_date","dataTypeID":1082,"tableID":0,"columnID":0,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"},{"name":"a_ts","dataTypeID":1114,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_tstz","dataTypeID":1184,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_time","dataTypeID":1083,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_interval","dataTypeID":1186,"tableID":0,"columnID":0,"dataTypeSize":16,"dataTypeModifier":-1,"format":"text"},{"name":"a_json","dataTypeID":114,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_jsonb","dataTypeID":3802,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_bytea","dataTypeID":17,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_uuid","dataTypeID":2950,"tableID":0,"columnID":0,"dataTypeSize":16,"dataTypeModifier":-1,"format":"text"},{"name":"a_int4arr","dataTypeID":1007,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_textarr","dataTypeID":1009,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_int8arr","dataTypeID":1016,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_jsonbarr","dataTypeID":3807,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_inet","dataTypeID":869,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"},{"name":"a_money","dataTypeID":790,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"},{"name":"a_null","dataTypeID":23,"tableID":0,"columnID":0,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"}],"rows":[["1","2","9007199254740993","1.5","NaN","12345.678901234567890","t","x","2024-01-02","2024-01-02 03:04:05.678","2024-01-02 01:04:05.678+00","03:04:05","1 day 02:00:00","{\"k\":[1,2]}","{\"k\": [1, 2]}","\\x0102ff","a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","{1,NULL,3}","{a,\"b c\",\"\\\"q\\\"\",NULL}","{1,2}","{\"{\\\"x\\\": 1}\"}","192.168.0.1","$12.34",null]],"command":"SELECT","rowCount":1,"rowAsArray":true}"#;
    assert_eq!(body, expected);
}

#[test]
fn neon_test_select_json_object_vs_raw_array() {
    // Neon's regression test: `select 1 as n, 'a' as s, '{1,2,3}'::int4[] as arr`.
    let fields = [Field::new("n", 23), Field::new("s", 25), Field::new("arr", 1007)];
    let row = vec![Some("1"), Some("a"), Some("{1,2,3}")];
    let object = encode(&fields, std::slice::from_ref(&row), Some("SELECT 1"), JSON_OBJECTS).unwrap();
    let v: Value = serde_json::from_str(&object).unwrap();
    assert_eq!(v["rows"], json!([{"arr": [1, 2, 3], "n": 1, "s": "a"}]));
    assert_eq!(v["rowAsArray"], json!(false));
    assert!(object.contains(r#""rows":[{"n":1,"s":"a","arr":[1,2,3]}]"#), "{object}");
    let raw = encode(&fields, &[row], Some("SELECT 1"), RAW_ARRAYS).unwrap();
    assert!(raw.contains(r#""rows":[["1","a","{1,2,3}"]]"#), "{raw}");
}

#[test]
fn object_mode_repeats_duplicate_names_so_the_last_wins() {
    let fields = [Field::new("x", 23), Field::new("x", 23)];
    let body = encode(&fields, &[vec![Some("1"), Some("2")]], Some("SELECT 1"), JSON_OBJECTS).unwrap();
    assert!(body.contains(r#""rows":[{"x":1,"x":2}]"#), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"][0]["x"], json!(2));
}

#[test]
fn column_names_are_escaped() {
    let fields = [Field::new("we\"ird\\name\n", 25)];
    let body = encode(&fields, &[vec![Some("v")]], Some("SELECT 1"), JSON_OBJECTS).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["fields"][0]["name"], json!("we\"ird\\name\n"));
    assert_eq!(v["rows"][0]["we\"ird\\name\n"], json!("v"));
}

#[test]
fn ddl_has_no_fields_rows_or_count() {
    // Reference B.3.
    let body = encode(&[], &[], Some("DROP TABLE"), RAW_ARRAYS).unwrap();
    assert_eq!(body, r#"{"fields":[],"rows":[],"command":"DROP","rowCount":null,"rowAsArray":true}"#);
}

#[test]
fn insert_returning_keeps_table_and_column_ids() {
    // Reference B.4.
    let fields =
        [Field { table_oid: 16391, column_id: 1, type_size: 4, ..Field::new("id", 23) }, Field { table_oid: 16391, column_id: 2, ..Field::new("name", 25) }];
    let body = encode(&fields, &[vec![Some("1"), Some("a")], vec![Some("2"), Some("b")]], Some("INSERT 0 2"), RAW_ARRAYS).unwrap();
    assert_eq!(
        body,
        r#"{"fields":[{"name":"id","dataTypeID":23,"tableID":16391,"columnID":1,"dataTypeSize":4,"dataTypeModifier":-1,"format":"text"},{"name":"name","dataTypeID":25,"tableID":16391,"columnID":2,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"}],"rows":[["1","a"],["2","b"]],"command":"INSERT","rowCount":2,"rowAsArray":true}"#
    );
}

#[test]
fn type_modifier_and_large_oids() {
    let fields = [Field { type_modifier: 786_440, table_oid: u32::MAX, ..Field::new("score", 1700) }];
    let body = encode(&fields, &[], Some("SELECT 0"), RAW_ARRAYS).unwrap();
    assert!(body.contains(r#""tableID":4294967295"#) && body.contains(r#""dataTypeModifier":786440"#));
    assert!(body.ends_with(r#""rows":[],"command":"SELECT","rowCount":0,"rowAsArray":true}"#), "{body}");
}

#[test]
fn command_tags() {
    for (tag, command, count) in [
        ("SELECT 1", "SELECT", Some(1)),
        ("SELECT 0", "SELECT", Some(0)),
        ("INSERT 0 2", "INSERT", Some(2)),
        ("INSERT 16385 1", "INSERT", Some(1)),
        ("UPDATE 7", "UPDATE", Some(7)),
        ("DELETE 0", "DELETE", Some(0)),
        ("MERGE 3", "MERGE", Some(3)),
        ("COPY 5", "COPY", Some(5)),
        ("FETCH 2", "FETCH", Some(2)),
        ("MOVE 4", "MOVE", Some(4)),
        ("CREATE TABLE", "CREATE", None),
        ("DROP TABLE", "DROP", None),
        ("ALTER TABLE", "ALTER", None),
        ("CREATE TABLE AS", "CREATE", None),
        ("SELECT 18446744073709551616", "SELECT", None),
        ("BEGIN", "BEGIN", None),
        ("COMMIT", "COMMIT", None),
        ("SET", "SET", None),
        ("INSERT", "INSERT", None),
        ("INSERT 0", "INSERT", None),
        ("", "", None),
    ] {
        assert_eq!(parse_command_tag(tag), (command, count), "{tag:?}");
    }
    let body = encode(&[], &[], None, RAW_ARRAYS).unwrap();
    assert!(body.ends_with(r#""command":"","rowCount":null,"rowAsArray":true}"#), "{body}");
}

#[test]
fn batch_response() {
    // Reference B.5.
    let mut response = ResponseEncoder::batch(crate::DEFAULT_MAX_BYTES);
    let mut s = response.statement(&[field("n", 20, 8)], RAW_ARRAYS).unwrap();
    s.push_row(&[Some("2")]).unwrap();
    assert_eq!(s.rows(), 1);
    s.finish(Some("SELECT 1")).unwrap();
    response.statement(&[], RAW_ARRAYS).unwrap().finish(Some("UPDATE 1")).unwrap();
    let body = String::from_utf8(response.finish().unwrap()).unwrap();
    assert_eq!(
        body,
        r#"{"results":[{"fields":[{"name":"n","dataTypeID":20,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"}],"rows":[["2"]],"command":"SELECT","rowCount":1,"rowAsArray":true},{"fields":[],"rows":[],"command":"UPDATE","rowCount":1,"rowAsArray":true}]}"#
    );
    let empty = ResponseEncoder::batch(100).finish().unwrap();
    assert_eq!(empty, br#"{"results":[]}"#);
}

#[test]
fn per_statement_modes_in_a_batch() {
    let mut response = ResponseEncoder::batch(crate::DEFAULT_MAX_BYTES);
    let mut s = response.statement(&[Field::new("a", 23)], JSON_OBJECTS).unwrap();
    s.push_row(&[Some("1")]).unwrap();
    s.finish(Some("SELECT 1")).unwrap();
    let mut s = response.statement(&[Field::new("a", 23)], RAW_ARRAYS).unwrap();
    s.push_row(&[Some("1")]).unwrap();
    s.finish(Some("SELECT 1")).unwrap();
    let v: Value = serde_json::from_slice(&response.finish().unwrap()).unwrap();
    assert_eq!(v["results"][0]["rows"], json!([{"a": 1}]));
    assert_eq!(v["results"][0]["rowAsArray"], json!(false));
    assert_eq!(v["results"][1]["rows"], json!([["1"]]));
}

#[test]
fn response_limit_is_enforced_while_encoding() {
    let fields = [Field::new("t", 25)];
    let big = "x".repeat(1000);
    let mut response = ResponseEncoder::single(4096);
    let mut s = response.statement(&fields, RAW_ARRAYS).unwrap();
    let mut pushed = 0;
    let err = loop {
        match s.push_row(&[Some(big.as_str())]) {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 10, "limit never hit");
    };
    assert_eq!(err, EncodeError::ResponseTooLarge { limit: 4096 });
    assert_eq!(err.to_string(), "response is too large (max is 4096 bytes)");
    assert_eq!(pushed, 3);

    // The limit covers the whole batch, not each statement.
    let one = encode(&fields, &[vec![Some(big.as_str())]], Some("SELECT 1"), RAW_ARRAYS).unwrap();
    let limit = 2 * one.len() + 100;
    let mut response = ResponseEncoder::batch(limit);
    for _ in 0..2 {
        let mut s = response.statement(&fields, RAW_ARRAYS).unwrap();
        s.push_row(&[Some(big.as_str())]).unwrap();
        s.finish(Some("SELECT 1")).unwrap();
    }
    let third = response.statement(&fields, RAW_ARRAYS).and_then(|mut s| s.push_row(&[Some(big.as_str())]));
    assert_eq!(third, Err(EncodeError::ResponseTooLarge { limit }));

    // A body exactly at the limit is fine.
    let exact = encode(&fields, &[vec![Some("x")]], Some("SELECT 1"), RAW_ARRAYS).unwrap();
    let mut response = ResponseEncoder::single(exact.len());
    let mut s = response.statement(&fields, RAW_ARRAYS).unwrap();
    s.push_row(&[Some("x")]).unwrap();
    s.finish(Some("SELECT 1")).unwrap();
    assert_eq!(response.finish().unwrap().len(), exact.len());
}

#[test]
fn bad_values_and_rows_are_errors_not_panics() {
    let err = encode(&[Field::new("i", 23)], &[vec![Some("abc")]], Some("SELECT 1"), JSON_ARRAYS).unwrap_err();
    assert_eq!(err, EncodeError::InvalidValue { column: 0, source: ValueError::Int("abc".into()) });
    // Raw mode does not look at the value.
    assert!(encode(&[Field::new("i", 23)], &[vec![Some("abc")]], Some("SELECT 1"), RAW_ARRAYS).is_ok());

    let fields = [Field::new("a", 25), Field::new("b", 25)];
    assert_eq!(encode(&fields, &[vec![Some("1")]], None, RAW_ARRAYS).unwrap_err(), EncodeError::ColumnCountMismatch { expected: 2, got: 1 });
    assert_eq!(encode(&fields, &[vec![Some("1"), None, Some("3")]], None, RAW_ARRAYS).unwrap_err(), EncodeError::ColumnCountMismatch { expected: 2, got: 3 });

    let mut response = ResponseEncoder::single(1000);
    let mut s = response.statement(&[Field::new("b", 17)], RAW_ARRAYS).unwrap();
    let not_utf8: &[u8] = &[0xff, 0xfe];
    assert!(matches!(s.push_row(&[Some(not_utf8)]), Err(EncodeError::InvalidValue { source: ValueError::NotUtf8, .. })));
}

#[test]
fn push_row_accepts_owned_and_borrowed_values() {
    let fields = [Field::new("a", 25), Field::new("b", 25)];
    let mut response = ResponseEncoder::single(1000);
    let mut s = response.statement(&fields, RAW_ARRAYS).unwrap();
    s.push_row(&[Some(b"x".to_vec()), None]).unwrap();
    s.push_row(&[Some(String::from("y")), Some(String::from("z"))]).unwrap();
    s.push_row_iter([Some(&b"p"[..]), Some(&b"q"[..])]).unwrap();
    s.finish(Some("SELECT 3")).unwrap();
    let v: Value = serde_json::from_slice(&response.finish().unwrap()).unwrap();
    assert_eq!(v["rows"], json!([["x", null], ["y", "z"], ["p", "q"]]));
}

#[test]
fn encoder_misuse_is_reported() {
    assert!(matches!(ResponseEncoder::single(100).finish(), Err(EncodeError::Misuse(_))));

    let mut response = ResponseEncoder::single(1000);
    response.statement(&[], RAW_ARRAYS).unwrap().finish(Some("SELECT 0")).unwrap();
    assert!(matches!(response.statement(&[], RAW_ARRAYS), Err(EncodeError::Misuse(_))));

    let mut response = ResponseEncoder::batch(1000);
    drop(response.statement(&[], RAW_ARRAYS).unwrap());
    assert!(matches!(response.statement(&[], RAW_ARRAYS), Err(EncodeError::Misuse(_))));
    assert!(matches!(response.finish(), Err(EncodeError::Misuse(_))));
}

#[test]
fn encode_results_follows_the_request() {
    let headers = {
        let mut h = http::HeaderMap::new();
        h.insert(crate::CONNECTION_STRING, "postgres://u:p@h/db".parse().unwrap());
        h.insert(crate::RAW_TEXT_OUTPUT, "true".parse().unwrap());
        h
    };
    let body = br#"{"queries":[{"query":"a"},{"query":"b","arrayMode":true}]}"#;
    let request = crate::parse_request(&headers, body, &crate::Limits::default()).unwrap();
    let result = StatementResult { fields: vec![Field::new("n", 23)], rows: vec![vec![Some(b"1".to_vec())]], command_tag: Some("SELECT 1".into()) };
    let out = encode_results(&request, &[result.clone(), result.clone()], 10_000).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["results"][0]["rows"], json!([{"n": "1"}]));
    assert_eq!(v["results"][1]["rows"], json!([["1"]]));
    assert!(matches!(encode_results(&request, &[result], 10_000), Err(EncodeError::Misuse(_))));
}
