//! Property tests: nothing a client or a misbehaving upstream sends may panic, and the
//! conversions round-trip.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::{json, Value};
use tidepool_neon::*;

const HEADER_NAMES: [&str; 9] = [
    "neon-connection-string",
    "neon-raw-text-output",
    "neon-array-mode",
    "neon-batch-isolation-level",
    "neon-batch-read-only",
    "neon-batch-deferrable",
    "authorization",
    "content-length",
    "content-type",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"true".to_vec()),
        Just(b"Serializable".to_vec()),
        Just(b"postgres://u:p@h/db".to_vec()),
        Just(b"Bearer t".to_vec()),
        "postgres(ql)?://[a-z%:@/?&=.\\[\\]0-9+]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..HEADER_NAMES.len(), header_value()), 0..8).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.append(HeaderName::from_static(HEADER_NAMES[name]), value);
            }
        }
        map
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z\"\\\\ ]{0,6}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        ".{0,200}".prop_map(String::into_bytes),
        (".{0,20}", proptest::collection::vec(json_value(), 0..5), any::<Option<bool>>())
            .prop_map(|(query, params, array_mode)| { json!({"query": query, "params": params, "arrayMode": array_mode}).to_string().into_bytes() }),
        proptest::collection::vec(json_value(), 0..4).prop_map(|queries| json!({ "queries": queries }).to_string().into_bytes()),
    ]
}

/// PostgreSQL's array output quoting for one element.
fn pg_quote(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\' | ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}'));
    if !needs_quotes {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn encode_one(type_oid: u32, value: Option<&[u8]>, options: OutputOptions) -> Result<Value, EncodeError> {
    let mut response = ResponseEncoder::single(DEFAULT_MAX_BYTES);
    let mut statement = response.statement(&[Field::new("v", type_oid)], options)?;
    statement.push_row(&[value])?;
    statement.finish(Some("SELECT 1"))?;
    let body = response.finish()?;
    let parsed: Value = serde_json::from_slice(&body).expect("encoder output is JSON");
    Ok(parsed["rows"][0][0].clone())
}

const OIDS: [u32; 22] = [16, 17, 20, 21, 23, 25, 114, 700, 701, 1082, 1184, 1186, 1700, 2950, 3802, 1000, 1007, 1009, 1020, 1022, 3807, 424_242];

const JSON_ARRAYS: OutputOptions = OutputOptions { raw_text: false, array_mode: true };
const RAW_ARRAYS: OutputOptions = OutputOptions { raw_text: true, array_mode: true };

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_never_panic(headers in headers(), body in body(), max in 0usize..400) {
        let limits = Limits { max_request_bytes: max, ..Limits::default() };
        let _ = check_content_length(&headers, &limits);
        if let Ok(request) = parse_request(&headers, &body, &limits) {
            prop_assert!(!request.connection.user.is_empty());
            prop_assert!(!request.connection.database.is_empty());
            for statement in request.statements() {
                let _ = request.output_for(statement);
            }
            let _ = request.options.batch.begin_sql();
        }
        let _ = parse_payload(&body, &Limits::default());
    }

    #[test]
    fn every_error_body_is_json(message in ".{0,30}", fields in proptest::collection::vec(any::<u8>(), 0..120)) {
        let errors = [
            NeonError::InvalidBody(message.clone()),
            NeonError::Internal(message.clone()),
            NeonError::AuthenticationFailed { user: message.clone() },
            NeonError::from(PgErrorFields::parse(&fields).unwrap_or_default()),
        ];
        for e in errors {
            let v: Value = serde_json::from_slice(&e.body()).expect("JSON");
            prop_assert_eq!(v.as_object().map(|o| o.len()), Some(17));
            prop_assert!(v["message"].is_string() && v["code"].is_string() && v["severity"].is_string());
            let response = error_response(&e);
            prop_assert_eq!(response.status(), e.status());
        }
    }

    #[test]
    fn connection_strings_never_panic(s in ".{0,80}") {
        let _ = ConnectionString::parse(&s);
        let _ = ConnectionString::parse(&format!("postgres://{s}"));
    }

    #[test]
    fn connection_strings_round_trip(
        user in ".{1,12}", password in ".{1,12}", database in ".{1,12}", app in ".{0,12}",
    ) {
        prop_assume!(!user.contains('\0') && !database.contains('\0'));
        let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let url = format!(
            "postgresql://{}:{}@db.example:5432/{}?application_name={}&sslmode=require",
            enc(&user), enc(&password), enc(&database), enc(&app)
        );
        let c = ConnectionString::parse(&url).expect("valid");
        prop_assert_eq!(&c.user, &user);
        prop_assert_eq!(c.password.as_ref().map(Password::as_bytes), Some(password.as_bytes()));
        prop_assert_eq!(&c.database, &database);
        prop_assert_eq!(c.application_name(), Some(app.as_str()));
        prop_assert_eq!(c.startup_params(), vec![("application_name", app.as_str())]);
    }

    #[test]
    fn encoding_never_panics_and_is_json(
        oid in proptest::sample::select(&OIDS[..]),
        value in proptest::option::of(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "[{}\",\\\\ NULLa-z0-9.\\-]{0,40}".prop_map(String::into_bytes),
        ]),
        raw in any::<bool>(),
        array_mode in any::<bool>(),
    ) {
        let options = OutputOptions { raw_text: raw, array_mode };
        let mut response = ResponseEncoder::single(DEFAULT_MAX_BYTES);
        let mut statement = response.statement(&[Field::new("v", oid), Field::new("w", 25)], options).expect("fields");
        if statement.push_row(&[value.as_deref(), Some(&b"w"[..])]).is_ok() {
            statement.finish(Some("SELECT 1")).expect("finish");
            let body = response.finish().expect("body");
            let parsed: Value = serde_json::from_slice(&body).expect("encoder output is JSON");
            prop_assert_eq!(parsed["rowAsArray"].as_bool(), Some(array_mode));
        }
    }

    #[test]
    fn raw_mode_is_the_text(oid in proptest::sample::select(&OIDS[..]), text in ".{0,40}") {
        prop_assert_eq!(encode_one(oid, Some(text.as_bytes()), RAW_ARRAYS).expect("raw"), json!(text));
    }

    #[test]
    fn text_arrays_round_trip(items in proptest::collection::vec(proptest::option::of(".{0,10}"), 0..8)) {
        let literal = format!(
            "{{{}}}",
            items.iter().map(|i| i.as_deref().map_or_else(|| "NULL".to_owned(), pg_quote)).collect::<Vec<_>>().join(",")
        );
        let got = encode_one(1009, Some(literal.as_bytes()), JSON_ARRAYS).expect("text[]");
        prop_assert_eq!(got, json!(items));
    }

    #[test]
    fn int_arrays_round_trip(rows in proptest::collection::vec(proptest::collection::vec(proptest::option::of(any::<i32>()), 1..4), 1..4)) {
        // Rectangular 2-D array, as PostgreSQL requires.
        let width = rows[0].len();
        let rows: Vec<Vec<Option<i32>>> = rows.into_iter().map(|mut r| { r.resize(width, None); r }).collect();
        let literal = format!(
            "{{{}}}",
            rows.iter().map(|r| format!(
                "{{{}}}",
                r.iter().map(|v| v.map_or_else(|| "NULL".to_owned(), |n| n.to_string())).collect::<Vec<_>>().join(",")
            )).collect::<Vec<_>>().join(",")
        );
        prop_assert_eq!(encode_one(1007, Some(literal.as_bytes()), JSON_ARRAYS).expect("int4[]"), json!(rows));
    }

    #[test]
    fn array_params_parse_back_as_the_same_strings(items in proptest::collection::vec(proptest::option::of(".{0,10}"), 0..8)) {
        // JSON array parameter → PostgreSQL literal → (as text[] output) → the same JSON array.
        let raw = serde_json::value::to_raw_value(&items).expect("raw");
        let literal = json_param_to_text(&raw).expect("converts").expect("not null");
        prop_assert_eq!(encode_one(1009, Some(literal.as_bytes()), JSON_ARRAYS).expect("parses"), json!(items));
    }

    #[test]
    fn object_params_keep_their_value(value in json_value()) {
        let raw = serde_json::value::to_raw_value(&value).expect("raw");
        let text = json_param_to_text(&raw).expect("converts");
        match &value {
            Value::Null => prop_assert_eq!(text, None),
            Value::String(s) => prop_assert_eq!(text.as_deref(), Some(s.as_str())),
            Value::Array(_) => {
                let is_literal = text.is_some_and(|t| t.starts_with('{') && t.ends_with('}'));
                prop_assert!(is_literal, "array parameter is not an array literal");
            }
            // Numbers, booleans and objects keep their exact JSON text (serialised compactly).
            _ => prop_assert_eq!(text.as_deref(), Some(raw.get())),
        }
    }

    #[test]
    fn floats_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = f.to_string();
        // Read the number text itself: serde_json's default float parser is not exact.
        let mut response = ResponseEncoder::single(DEFAULT_MAX_BYTES);
        let mut statement = response.statement(&[Field::new("v", 701)], JSON_ARRAYS).expect("fields");
        statement.push_row(&[Some(text.as_str())]).expect("row");
        statement.finish(Some("SELECT 1")).expect("finish");
        let body = String::from_utf8(response.finish().expect("body")).expect("utf-8");
        let number = body.split("\"rows\":[[").nth(1).and_then(|r| r.split(']').next()).expect("one cell");
        prop_assert_eq!(number.parse::<f64>().ok(), Some(f));
    }
}
