use super::*;

fn body(e: &NeonError) -> String {
    String::from_utf8(e.body()).unwrap()
}

/// The ErrorResponse PostgreSQL 15 sends for a unique violation (captured).
fn unique_violation() -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "23505"),
        (b'M', "duplicate key value violates unique constraint \"t_neon_name_key\""),
        (b'D', "Key (name)=(b!) already exists."),
        (b's', "public"),
        (b't', "t_neon"),
        (b'n', "t_neon_name_key"),
        (b'F', "nbtinsert.c"),
        (b'L', "664"),
        (b'R', "_bt_check_unique"),
    ] {
        b.push(k);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    b
}

#[test]
fn postgres_error_matches_neon_byte_for_byte() {
    let fields = PgErrorFields::parse(&unique_violation()).unwrap();
    let e = NeonError::from(fields);
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert_eq!(e.sqlstate(), Some("23505"));
    assert_eq!(
        body(&e),
        r#"{"message":"duplicate key value violates unique constraint \"t_neon_name_key\"","code":"23505","detail":"Key (name)=(b!) already exists.","hint":null,"position":null,"internalPosition":null,"internalQuery":null,"severity":"ERROR","where":null,"table":"t_neon","column":null,"schema":"public","dataType":null,"constraint":"t_neon_name_key","file":"nbtinsert.c","line":"664","routine":"_bt_check_unique"}"#
    );
}

#[test]
fn position_is_a_string() {
    let e = NeonError::from(PgErrorFields::from_fields([
        (b'S', "ERROR"),
        (b'C', "42P01"),
        (b'M', "relation \"nope\" does not exist"),
        (b'P', "15"),
        (b'F', "parse_relation.c"),
        (b'L', "1392"),
        (b'R', "parserOpenTable"),
    ]));
    assert_eq!(
        body(&e),
        r#"{"message":"relation \"nope\" does not exist","code":"42P01","detail":null,"hint":null,"position":"15","internalPosition":null,"internalQuery":null,"severity":"ERROR","where":null,"table":null,"column":null,"schema":null,"dataType":null,"constraint":null,"file":"parse_relation.c","line":"1392","routine":"parserOpenTable"}"#
    );
}

#[test]
fn every_field_lands_in_its_key() {
    let fields = PgErrorFields::from_fields([
        (b'S', "ERREUR"),
        (b'V', "ERROR"),
        (b'C', "23514"),
        (b'M', "m"),
        (b'D', "d"),
        (b'H', "h"),
        (b'p', "7"),
        (b'q', "SELECT 1/0"),
        (b'W', "PL/pgSQL function f() line 3"),
        (b's', "public"),
        (b't', "t"),
        (b'c', "col"),
        (b'd', "dom"),
        (b'n', "chk"),
        (b'F', "f.c"),
        (b'L', "1"),
        (b'R', "r"),
        (b'Z', "unknown fields are ignored"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&NeonError::from(fields).body()).unwrap();
    let expect = serde_json::json!({
        "message": "m", "code": "23514", "detail": "d", "hint": "h", "position": null,
        "internalPosition": "7", "internalQuery": "SELECT 1/0", "severity": "ERREUR",
        "where": "PL/pgSQL function f() line 3", "table": "t", "column": "col", "schema": "public",
        "dataType": "dom", "constraint": "chk", "file": "f.c", "line": "1", "routine": "r"
    });
    assert_eq!(v, expect);
}

#[test]
fn original_position_hides_internal_position() {
    let fields = PgErrorFields::from_fields([(b'P', "3"), (b'p', "7"), (b'q', "q")]);
    let v: serde_json::Value = serde_json::from_slice(&NeonError::from(fields).body()).unwrap();
    assert_eq!(v["position"], "3");
    assert!(v["internalPosition"].is_null() && v["internalQuery"].is_null());
}

#[test]
fn severity_falls_back_to_nonlocalized() {
    let fields = PgErrorFields::from_fields([(b'V', "FATAL"), (b'C', "28000"), (b'M', "m")]);
    let v: serde_json::Value = serde_json::from_slice(&NeonError::from(fields).body()).unwrap();
    assert_eq!(v["severity"], "FATAL");
}

#[test]
fn parse_rejects_malformed_bodies() {
    assert!(PgErrorFields::parse(b"").is_err());
    assert!(PgErrorFields::parse(b"Mno terminator").is_err());
    assert!(PgErrorFields::parse(b"Mmsg\0").is_err());
    assert_eq!(PgErrorFields::parse(b"\0").unwrap(), PgErrorFields::default());
    // Non-UTF-8 is decoded lossily rather than rejected.
    let e = PgErrorFields::parse(b"M\xffx\0\0").unwrap();
    assert_eq!(e.message.as_deref(), Some("\u{fffd}x"));
}

#[test]
fn non_postgres_errors_have_empty_code_and_severity() {
    let e = NeonError::InvalidIsolationLevel;
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert_eq!(e.sqlstate(), None);
    assert_eq!(
        body(&e),
        r#"{"message":"invalid isolation level","code":"","detail":null,"hint":null,"position":null,"internalPosition":null,"internalQuery":null,"severity":"","where":null,"table":null,"column":null,"schema":null,"dataType":null,"constraint":null,"file":null,"line":null,"routine":null}"#
    );
}

#[test]
fn statuses_and_messages() {
    let cases: Vec<(NeonError, u16, &str)> = vec![
        (NeonError::InvalidHeader("neon-connection-string"), 400, "invalid header: neon-connection-string"),
        (ConnStringError::IncorrectScheme.into(), 400, "incorrect scheme"),
        (NeonError::MissingCredentials(RequiredCredential::Password), 400, "missing authentication credentials: required password"),
        (
            NeonError::MissingCredentials(RequiredCredential::BearerToken),
            400,
            "missing authentication credentials: required authorization bearer token in JWT format",
        ),
        (NeonError::InvalidBody("expected value at line 1 column 1".into()), 400, "could not parse the HTTP request body: expected value at line 1 column 1"),
        (NeonError::RequestTooLarge { limit: 10_485_760 }, 413, "request is too large (max is 10485760 bytes)"),
        (NeonError::ResponseTooLarge { limit: 10_485_760 }, 507, "response is too large (max is 10485760 bytes)"),
        (NeonError::InvalidResult { detail: "column 0: invalid integer".into() }, 500, "could not parse postgres response"),
        (NeonError::Internal("upstream connection failed".into()), 500, "upstream connection failed"),
        (NeonError::Unavailable("shutting down".into()), 503, "shutting down"),
        (NeonError::UnsupportedRoute, 400, "query is not supported"),
        (NeonError::Cancelled, 400, "Query cancelled, connection was terminated"),
    ];
    for (e, status, message) in cases {
        assert_eq!(e.status().as_u16(), status, "{e:?}");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["message"], message, "{e:?}");
    }
}

#[test]
fn cancelled_has_only_message_and_code() {
    assert_eq!(body(&NeonError::Cancelled), r#"{"message":"Query cancelled, connection was terminated","code":"08P01"}"#);
    assert_eq!(NeonError::Cancelled.sqlstate(), Some("08P01"));
}

#[test]
fn authentication_failure_looks_like_postgres() {
    let e = NeonError::AuthenticationFailed { user: "alice".into() };
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(v["message"], "password authentication failed for user \"alice\"");
    assert_eq!(v["code"], "28P01");
    assert_eq!(v["severity"], "FATAL");
    assert_eq!(v.as_object().unwrap().len(), 17);
}

#[test]
fn multiple_statements_error() {
    let e = NeonError::from(PgErrorFields::multiple_statements());
    assert_eq!(e.sqlstate(), Some("42601"));
    assert_eq!(e.to_string(), "cannot insert multiple commands into a prepared statement");
}

#[test]
fn encode_errors_map_to_statuses() {
    assert_eq!(NeonError::from(EncodeError::ResponseTooLarge { limit: 5 }).status(), StatusCode::INSUFFICIENT_STORAGE);
    let e = NeonError::from(EncodeError::ColumnCountMismatch { expected: 2, got: 1 });
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e.to_string(), "could not parse postgres response");
}
