use http::HeaderValue;

use super::*;
use crate::options::{ARRAY_MODE, BATCH_ISOLATION_LEVEL, RAW_TEXT_OUTPUT};
use crate::ConnStringError;

const CONN: &str = "postgresql://clearuser:clearpass@db.localtest.me:5432/app?application_name=pkg%3Anpm%2F%2540neondatabase%2Fserverless%401.2.0";

fn driver_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONNECTION_STRING, HeaderValue::from_static(CONN));
    h.insert(RAW_TEXT_OUTPUT, HeaderValue::from_static("true"));
    h.insert(ARRAY_MODE, HeaderValue::from_static("true"));
    h.insert("content-type", HeaderValue::from_static("text/plain;charset=UTF-8"));
    h
}

fn parse(headers: &HeaderMap, body: &str) -> Result<SqlRequest, NeonError> {
    parse_request(headers, body.as_bytes(), &Limits::default())
}

#[test]
fn driver_single_statement() {
    // Captured request B.1 from the reference.
    let body = r#"{"query":"SELECT $1 AS n, $2 AS s, $3::text AS nul, $4 AS b,\n  $5::timestamptz AS ts, $6::int[] AS arr,\n  $7::jsonb AS j, $8::int8 AS big, $9::bytea AS bytes","params":["42","hello",null,"true","2024-01-02T03:04:05.678+00:00","{\"1\",\"2\",\"3\"}","{\"a\":1,\"b\":[true,null]}","123","\\x0102ff"]}"#;
    let r = parse(&driver_headers(), body).unwrap();
    assert!(!r.is_batch());
    assert_eq!(r.connection.user, "clearuser");
    assert_eq!(r.connection.database, "app");
    assert_eq!(r.credentials, Credentials::Password(Password::new("clearpass")));
    assert!(r.options.raw_text_output && r.options.array_mode);
    let s = &r.statements()[0];
    assert!(s.query.starts_with("SELECT $1 AS n"));
    assert_eq!(
        s.params,
        vec![
            Some("42".into()),
            Some("hello".into()),
            None,
            Some("true".into()),
            Some("2024-01-02T03:04:05.678+00:00".into()),
            Some(r#"{"1","2","3"}"#.into()),
            Some(r#"{"a":1,"b":[true,null]}"#.into()),
            Some("123".into()),
            Some("\\x0102ff".into()),
        ]
    );
    assert_eq!(s.array_mode, None);
    assert_eq!(r.output_for(s), OutputOptions { raw_text: true, array_mode: true });
}

#[test]
fn driver_batch() {
    let mut h = driver_headers();
    h.insert(BATCH_ISOLATION_LEVEL, HeaderValue::from_static("Serializable"));
    h.insert("neon-batch-read-only", HeaderValue::from_static("false"));
    h.insert("neon-batch-deferrable", HeaderValue::from_static("false"));
    let body = r#"{"queries":[{"query":"SELECT count(*) AS n FROM t_neon","params":[]},{"query":"UPDATE t_neon SET name = name || '!' WHERE id = $1","params":["1"],"arrayMode":false}]}"#;
    let r = parse(&h, body).unwrap();
    assert!(r.is_batch());
    assert_eq!(r.statements().len(), 2);
    assert_eq!(r.statements()[1].params, vec![Some("1".into())]);
    assert!(!r.output_for(&r.statements()[1]).array_mode);
    assert_eq!(r.options.batch.begin_sql(), "START TRANSACTION ISOLATION LEVEL SERIALIZABLE");
}

#[test]
fn raw_json_params_from_other_clients() {
    let body = r#"{"query":"q","params":[1, 9007199254740993, 1.50, true, null, "s", {"b":1,"a":[2]}, [1,[2,null],"x y"]]}"#;
    let r = parse(&driver_headers(), body).unwrap();
    assert_eq!(
        r.statements()[0].params,
        vec![
            Some("1".into()),
            Some("9007199254740993".into()),
            Some("1.50".into()),
            Some("true".into()),
            None,
            Some("s".into()),
            Some(r#"{"b":1,"a":[2]}"#.into()),
            Some(r#"{1,{2,NULL},"x y"}"#.into()),
        ]
    );
}

#[test]
fn params_default_to_empty_and_unknown_keys_are_ignored() {
    let r = parse(&driver_headers(), r#"{"query":"SELECT 1","extra":{"x":1}}"#).unwrap();
    assert_eq!(r.statements()[0].params, Vec::<Option<String>>::new());
    let r = parse(&driver_headers(), r#"{"query":"SELECT 1","arrayMode":null}"#).unwrap();
    assert_eq!(r.statements()[0].array_mode, None);
    let r = parse(&driver_headers(), r#"{"queries":[]}"#).unwrap();
    assert!(r.is_batch() && r.statements().is_empty());
}

#[test]
fn query_wins_over_queries() {
    let r = parse(&driver_headers(), r#"{"query":"a","queries":[{"query":"b"}]}"#).unwrap();
    assert_eq!(r.payload, Payload::Single(Statement { query: "a".into(), params: vec![], array_mode: None }));
}

#[test]
fn malformed_bodies() {
    for body in [
        "",
        "not json",
        "[]",
        "null",
        "{}",
        r#"{"query":1}"#,
        r#"{"query":"q","params":null}"#,
        r#"{"query":"q","params":"x"}"#,
        r#"{"query":"q","params":[1,]}"#,
        r#"{"query":"q","arrayMode":"yes"}"#,
        r#"{"queries":[{"params":[]}]}"#,
        r#"{"queries":{"query":"q"}}"#,
        r#"{"query":"q","query":"r"}"#,
        r#"{"query":"q"} trailing"#,
        "{\"query\":\"\u{0}\"}",
    ] {
        let err = parse(&driver_headers(), body).expect_err(body);
        assert!(matches!(err, NeonError::InvalidBody(_)), "{body:?}: {err:?}");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert!(err.to_string().starts_with("could not parse the HTTP request body: "));
    }
    let err = parse_request(&driver_headers(), b"{\"query\":\"\xff\"}", &Limits::default()).unwrap_err();
    assert!(matches!(err, NeonError::InvalidBody(_)));
}

#[test]
fn body_size_is_checked_before_parsing() {
    let limits = Limits { max_request_bytes: 16, ..Limits::default() };
    let body = br#"{"query":"SELECT 1"}"#; // 20 bytes, also valid JSON
    let err = parse_request(&driver_headers(), body, &limits).unwrap_err();
    assert!(matches!(err, NeonError::RequestTooLarge { limit: 16 }));
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    // Invalid JSON beyond the limit is still "too large", not "invalid".
    let err = parse_payload(&[b'x'; 17], &limits).unwrap_err();
    assert!(matches!(err, NeonError::RequestTooLarge { .. }));
    assert!(parse_payload(br#"{"query":"1"}"#, &limits).is_ok());
}

#[test]
fn content_length_precheck() {
    let limits = Limits { max_request_bytes: 100, ..Limits::default() };
    let mut h = HeaderMap::new();
    assert!(check_content_length(&h, &limits).is_ok());
    h.insert("content-length", HeaderValue::from_static("100"));
    assert!(check_content_length(&h, &limits).is_ok());
    h.insert("content-length", HeaderValue::from_static("101"));
    assert!(matches!(check_content_length(&h, &limits), Err(NeonError::RequestTooLarge { limit: 100 })));
    h.insert("content-length", HeaderValue::from_static("garbage"));
    assert!(check_content_length(&h, &limits).is_ok());
}

#[test]
fn connection_string_header_problems() {
    let body = r#"{"query":"SELECT 1"}"#;
    let mut h = driver_headers();
    h.remove(CONNECTION_STRING);
    let err = parse(&h, body).unwrap_err();
    assert_eq!(err.to_string(), "invalid header: neon-connection-string");
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);

    h.insert(CONNECTION_STRING, HeaderValue::from_bytes(b"postgres://u:p\xc3\xa9@h/db").unwrap());
    assert_eq!(parse(&h, body).unwrap_err().to_string(), "invalid header: neon-connection-string");

    h.insert(CONNECTION_STRING, HeaderValue::from_static("mysql://u:p@h/db"));
    assert!(matches!(parse(&h, body).unwrap_err(), NeonError::ConnectionString(ConnStringError::IncorrectScheme)));

    h.insert(CONNECTION_STRING, HeaderValue::from_static("postgres://u:p@h"));
    assert_eq!(parse(&h, body).unwrap_err().to_string(), "missing database name");
}

#[test]
fn credentials() {
    let body = r#"{"query":"SELECT 1"}"#;
    let mut h = driver_headers();
    h.insert(CONNECTION_STRING, HeaderValue::from_static("postgres://u@h/db"));
    assert!(matches!(parse(&h, body).unwrap_err(), NeonError::MissingCredentials(RequiredCredential::Password)));

    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer my.jwt.token"));
    let r = parse(&h, body).unwrap();
    match &r.credentials {
        Credentials::BearerToken(t) => assert_eq!(t.as_str(), "my.jwt.token"),
        other => panic!("{other:?}"),
    }
    assert!(!format!("{:?}", r.credentials).contains("my.jwt.token"));

    // A bearer token takes the place of the password even when both are present.
    let mut h = driver_headers();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
    assert!(matches!(parse(&h, body).unwrap().credentials, Credentials::BearerToken(_)));

    h.insert(AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
    assert!(matches!(parse(&h, body).unwrap_err(), NeonError::MissingCredentials(RequiredCredential::BearerToken)));
    h.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").unwrap());
    assert_eq!(parse(&h, body).unwrap_err().to_string(), "invalid header: authorization");
}

#[test]
fn invalid_isolation_level_is_reported_before_the_body() {
    let mut h = driver_headers();
    h.insert(BATCH_ISOLATION_LEVEL, HeaderValue::from_static("Chaos"));
    assert!(matches!(parse(&h, "not json").unwrap_err(), NeonError::InvalidIsolationLevel));
}

#[test]
fn hostile_nesting_anywhere_in_the_body_is_a_400_not_a_crash() {
    // 100,000 levels in every place a client controls: params (array literal path), ignored
    // keys (serde_json skips them iteratively), and where a string is expected.
    let deep = |open: &str, close: &str| format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
    let arrays = deep("[", "]");
    let objects = deep("{\"a\":", "}");
    let bodies = [
        format!(r#"{{"query":"SELECT $1","params":[{arrays}]}}"#),
        format!(r#"{{"queries":[{{"query":"SELECT $1","params":[{arrays}]}}]}}"#),
        format!(r#"{{"query":{arrays}}}"#),
    ];
    for body in &bodies {
        let e = parse(&driver_headers(), body).unwrap_err();
        assert!(matches!(e, NeonError::InvalidBody(_)), "{e:?}");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    }
    // Unused deep values and deep objects as parameters are fine (kept as text).
    for ignored in [&arrays, &objects] {
        let r = parse(&driver_headers(), &format!(r#"{{"query":"SELECT 1","ignored":{ignored}}}"#)).unwrap();
        assert!(r.statements()[0].params.is_empty());
    }
    let r = parse(&driver_headers(), &format!(r#"{{"query":"SELECT $1","params":[{objects}]}}"#)).unwrap();
    assert_eq!(r.statements()[0].params[0].as_ref().map(String::len), Some(objects.len()));
}
