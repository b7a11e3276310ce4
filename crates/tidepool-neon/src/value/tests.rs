use super::*;
use crate::types::conversion_for;

fn json(text: &str, type_oid: u32) -> String {
    let mut out = Vec::new();
    write_converted(&mut out, text.as_bytes(), conversion_for(type_oid)).unwrap_or_else(|e| panic!("{text:?} as {type_oid}: {e}"));
    String::from_utf8(out).unwrap()
}

fn fails(text: &str, type_oid: u32) -> ValueError {
    let mut out = Vec::new();
    write_converted(&mut out, text.as_bytes(), conversion_for(type_oid)).expect_err(text)
}

#[test]
fn json_strings_are_escaped() {
    let mut out = Vec::new();
    write_json_str(&mut out, "a\"b\\c\nd\re\tf\u{8}\u{c}\u{0}\u{1f}é€😀/");
    assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\re\tf\b\f\u0000\u001fé€😀/""#);
}

#[test]
fn escaping_agrees_with_serde_json() {
    let samples = ["", "plain", "\u{7f}", "\u{0}\u{1}\u{2}\u{b}", "\"\\", "line\nbreak"];
    for s in samples {
        let mut out = Vec::new();
        write_json_str(&mut out, s);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
    }
}

#[test]
fn integers() {
    assert_eq!(json("1", 21), "1");
    assert_eq!(json("-32768", 21), "-32768");
    assert_eq!(json("2147483647", 23), "2147483647");
    assert_eq!(json("-2147483648", 23), "-2147483648");
    // int8 and numeric keep their precision as strings.
    assert_eq!(json("9223372036854775807", 20), r#""9223372036854775807""#);
    assert_eq!(json("12345.678901234567890", 1700), r#""12345.678901234567890""#);
    assert_eq!(json("NaN", 1700), r#""NaN""#);
    assert!(matches!(fails("x", 23), ValueError::Int(_)));
    assert!(matches!(fails("2147483648", 23), ValueError::Int(_)));
}

#[test]
fn floats() {
    assert_eq!(json("1.5", 700), "1.5");
    assert_eq!(json("0.1", 700), "0.1");
    assert_eq!(json("42.42", 700), "42.42");
    assert_eq!(json("100", 701), "100.0");
    assert_eq!(json("1e+30", 701), "1e30");
    assert_eq!(json("1e-07", 701), "1e-7");
    assert_eq!(json("-0", 701), "-0.0");
    assert_eq!(json("3.4028235e+38", 700), "3.4028235e38");
    assert_eq!(json("NaN", 701), r#""NaN""#);
    assert_eq!(json("Infinity", 701), r#""Infinity""#);
    assert_eq!(json("-Infinity", 700), r#""-Infinity""#);
    assert!(matches!(fails("1.5.5", 701), ValueError::Float(_)));
}

#[test]
fn bools() {
    assert_eq!(json("t", 16), "true");
    assert_eq!(json("f", 16), "false");
    assert_eq!(json("anything", 16), "false");
}

#[test]
fn json_and_jsonb_are_spliced() {
    assert_eq!(json(r#"{"k":[1,2]}"#, 114), r#"{"k":[1,2]}"#);
    assert_eq!(json(r#"{"k": [1, 2]}"#, 3802), r#"{"k": [1, 2]}"#);
    // `json` keeps its input text; surrounding whitespace is dropped, inner kept.
    assert_eq!(json(r#" {"a" : 1e400 } "#, 114), r#"{"a" : 1e400 }"#);
    assert_eq!(json("12345678901234567890123", 3802), "12345678901234567890123");
    assert_eq!(json("null", 3802), "null");
    assert_eq!(json(r#""s""#, 3802), r#""s""#);
    assert!(matches!(fails("{bad", 3802), ValueError::Json(_)));
    assert!(matches!(fails("1 2", 114), ValueError::Json(_)));
}

#[test]
fn text_like_types_are_strings() {
    for (text, oid) in [
        ("x", 25),
        ("2024-01-02", 1082),
        ("2024-01-02 03:04:05.678", 1114),
        ("2024-01-02 01:04:05.678+00", 1184),
        ("03:04:05", 1083),
        ("1 day 02:00:00", 1186),
        ("\\x0102ff", 17),
        ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 2950),
        ("192.168.0.1", 869),
        ("$12.34", 790),
        ("1 2 3", 22),
    ] {
        assert_eq!(json(text, oid), serde_json::to_string(text).unwrap(), "{oid}");
    }
}

#[test]
fn arrays_of_numbers() {
    assert_eq!(json("{1,NULL,3}", 1007), "[1,null,3]");
    assert_eq!(json("{1,2,3}", 1005), "[1,2,3]");
    assert_eq!(json("{1,2,3}", 1016), r#"["1","2","3"]"#);
    assert_eq!(json("{1,2,3}", 1021), "[1.0,2.0,3.0]");
    assert_eq!(json("{1.1,2.2,3.3}", 1022), "[1.1,2.2,3.3]");
    assert_eq!(json("{NaN,Infinity,-Infinity}", 1021), r#"["NaN","Infinity","-Infinity"]"#);
    assert_eq!(json("{1.5,NaN,-Infinity}", 1022), r#"[1.5,"NaN","-Infinity"]"#);
    assert_eq!(json("{1.10}", 1231), r#"["1.10"]"#);
}

#[test]
fn arrays_nested_and_decorated() {
    assert_eq!(json("{{1,2},{3,NULL}}", 1007), "[[1,2],[3,null]]");
    assert_eq!(json("[0:1]={5,6}", 1007), "[5,6]");
    assert_eq!(json("[1:1][-2:-1][3:5]={{{1,2,3},{4,5,6}}}", 1005), "[[[1,2,3],[4,5,6]]]");
    assert_eq!(json("{}", 1007), "[]");
    assert_eq!(json("{}", 1009), "[]");
    assert_eq!(json("{{t,NULL},{NULL,f}}", 1000), "[[true,null],[null,false]]");
    assert_eq!(json(r#"{{{{"foo",NULL,"bop",bup}}}}"#, 1009), r#"[[[["foo",null,"bop","bup"]]]]"#);
}

#[test]
fn arrays_of_text_with_quoting() {
    assert_eq!(json(r#"{a,"b c","\"q\"",NULL,"","NULL","back\\slash","{x}"}"#, 1009), r#"["a","b c","\"q\"",null,"","NULL","back\\slash","{x}"]"#);
    assert_eq!(json(r#"{"aa\"\\\,a",cha,"bbbb"}"#, 1009), r#"["aa\"\\,a","cha","bbbb"]"#);
    assert_eq!(json(r#"{"2024-01-02 03:04:05+00"}"#, 1185), r#"["2024-01-02 03:04:05+00"]"#);
    assert_eq!(json(r#"{"\\x01"}"#, 1001), r#"["\\x01"]"#);
    assert_eq!(json("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", 2951), r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#);
    assert_eq!(json("{\"multi\nline\"}", 1009), r#"["multi\nline"]"#);
    // Quoted items are converted by element type too.
    assert_eq!(json(r#"{"1",2}"#, 1007), "[1,2]");
}

#[test]
fn arrays_of_json() {
    assert_eq!(json(r#"{"{\"x\": 1}","null","\"s\""}"#, 3807), r#"[{"x": 1},null,"s"]"#);
    assert_eq!(json(r#"{"{}"}"#, 3807), "[{}]");
    assert_eq!(json(r#"{"{\"foo\": 1}", "{\"bar\": 2}"}"#, 3807), r#"[{"foo": 1},{"bar": 2}]"#);
    assert_eq!(json(r#"{"{\"a\" : 1}"}"#, 199), r#"[{"a" : 1}]"#);
}

#[test]
fn box_arrays_split_on_semicolons() {
    assert_eq!(json("{(1,1),(0,0);(2,2),(1,1)}", 1020), r#"["(1,1),(0,0)","(2,2),(1,1)"]"#);
}

#[test]
fn malformed_arrays_fail_cleanly() {
    for bad in ["", "1,2", "{1,2", "{1,2}}", "{1,2}x", "[1:2]{1,2}", "{\"abc}", "{\"a\\", "{{1}"] {
        let err = fails(bad, 1009);
        assert!(matches!(err, ValueError::UnbalancedArray | ValueError::UnbalancedString), "{bad:?}: {err:?}");
    }
    for depth in [100, 100_000] {
        let deep = format!("{}{}", "{".repeat(depth), "}".repeat(depth));
        assert_eq!(fails(&deep, 1007), ValueError::TooDeep);
    }
    // json/jsonb values are validated without recursion (serde_json skips into a RawValue).
    let deep_json = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut out = Vec::new();
    write_converted(&mut out, deep_json.as_bytes(), conversion_for(3802)).expect("any depth is copied as it is");
    assert_eq!(out.len(), deep_json.len());
}

#[test]
fn raw_mode_keeps_text() {
    let mut out = Vec::new();
    write_raw(&mut out, br#"{1,"a b"}"#).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#""{1,\"a b\"}""#);
    assert_eq!(write_raw(&mut Vec::new(), &[0xff]), Err(ValueError::NotUtf8));
    assert_eq!(write_converted(&mut Vec::new(), &[0xff], conversion_for(25)), Err(ValueError::NotUtf8));
}

#[test]
fn only_postgres_blanks_are_trimmed_around_items() {
    // PostgreSQL quotes items with ASCII blanks but prints a no-break space unquoted.
    let got: serde_json::Value = serde_json::from_str(&json("{\u{a0}nbsp,\u{2003}em}", 1009)).unwrap();
    assert_eq!(got, serde_json::json!(["\u{a0}nbsp", "\u{2003}em"]));
    assert_eq!(json("{ 1 , 2 }", 1007), "[1,2]");
    assert_eq!(json("{\"a\" , b }", 1009), r#"["a","b"]"#);
}
