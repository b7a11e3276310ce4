use super::*;

const DRIVER: &str = "postgresql://clearuser:clearpass@db.localtest.me:5432/app?application_name=pkg%3Anpm%2F%2540neondatabase%2Fserverless%401.2.0";

#[test]
fn parses_what_the_driver_sends() {
    let c = ConnectionString::parse(DRIVER).expect("valid");
    assert_eq!(c.user, "clearuser");
    assert_eq!(c.password, Some(Password::new("clearpass")));
    assert_eq!(c.database, "app");
    assert_eq!(c.host, "db.localtest.me");
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.application_name(), Some("pkg:npm/%40neondatabase/serverless@1.2.0"));
    assert_eq!(c.startup_params(), vec![("application_name", "pkg:npm/%40neondatabase/serverless@1.2.0")]);
}

#[test]
fn host_forms_are_accepted_and_ignored() {
    for (url, host, port) in [
        ("postgres://u:p@127.0.0.1:54329/db", "127.0.0.1", Some(54329)),
        ("postgres://u:p@db.localtest.me/db", "db.localtest.me", None),
        ("postgres://u:p@[::1]:5432/db", "[::1]", Some(5432)),
        ("postgres://u:p@[::1]/db", "[::1]", None),
        ("postgres://u:p@/db", "", None),
        ("postgres://u:p@host:/db", "host", None),
        ("POSTGRESQL://u:p@h/db", "h", None),
    ] {
        let c = ConnectionString::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!((c.host.as_str(), c.port), (host, port), "{url}");
        assert_eq!((c.user.as_str(), c.database.as_str()), ("u", "db"));
    }
}

#[test]
fn percent_decoding() {
    let c = ConnectionString::parse("postgres://us%40er%3A1:p%40ss%3Aw%2Fd%25@h/my%20db%2Fx/ignored?options=-c%20search_path%3Dx&a=b+c").expect("valid");
    assert_eq!(c.user, "us@er:1");
    assert_eq!(c.password.as_ref().and_then(Password::as_str), Some("p@ss:w/d%"));
    assert_eq!(c.database, "my db/x");
    assert_eq!(c.param("options"), Some("-c search_path=x"));
    assert_eq!(c.param("a"), Some("b c"));
    assert_eq!(c.startup_params(), vec![("options", "-c search_path=x")]);
}

#[test]
fn password_may_contain_raw_at_and_colon() {
    // The last `@` ends the user info; the first `:` splits user from password.
    let c = ConnectionString::parse("postgres://u:p@ss:w@h/db").expect("valid");
    assert_eq!(c.user, "u");
    assert_eq!(c.password.as_ref().map(Password::as_bytes), Some(&b"p@ss:w"[..]));
}

#[test]
fn password_bytes_need_not_be_utf8() {
    let c = ConnectionString::parse("postgres://u:%ff%00@h/db").expect("valid");
    assert_eq!(c.password.as_ref().map(Password::as_bytes), Some(&[0xff, 0][..]));
    assert_eq!(c.password.as_ref().and_then(Password::as_str), None);
}

#[test]
fn missing_or_empty_password_is_none() {
    assert_eq!(ConnectionString::parse("postgres://u@h/db").expect("valid").password, None);
    assert_eq!(ConnectionString::parse("postgres://u:@h/db").expect("valid").password, None);
}

#[test]
fn invalid_percent_sequences_are_kept() {
    let c = ConnectionString::parse("postgres://u%zz%4:p%@h/d%").expect("valid");
    assert_eq!(c.user, "u%zz%4");
    assert_eq!(c.database, "d%");
}

#[test]
fn errors() {
    use ConnStringError::*;
    for (url, err) in [
        ("", Malformed("expected postgres://user:password@host/database")),
        ("not a url", Malformed("expected postgres://user:password@host/database")),
        ("mysql://u:p@h/db", IncorrectScheme),
        ("http://u:p@h/db", IncorrectScheme),
        ("postgres://u:p@h", MissingDatabase),
        ("postgres://u:p@h/", MissingDatabase),
        ("postgres://u:p@h/?x=1", MissingDatabase),
        ("postgres://:p@h/db", MissingUser),
        ("postgres://h/db", MissingUser),
        ("postgres://%ff:p@h/db", InvalidUser("invalid utf-8 sequence")),
        ("postgres://a%00b:p@h/db", InvalidUser("contains a NUL byte")),
        ("postgres://u:p@h/%ff", InvalidDatabase),
        ("postgres://u:p@h/a%00", InvalidDatabase),
        ("postgres://u:p@h:99999/db", Malformed("invalid port number")),
        ("postgres://u:p@h:12ab/db", Malformed("invalid port number")),
        ("postgres://u:p@[::1/db", Malformed("unterminated IPv6 address")),
        ("postgres://u:p@[::1]x/db", Malformed("invalid IPv6 address")),
    ] {
        assert_eq!(ConnectionString::parse(url), Err(err), "{url}");
    }
}

#[test]
fn error_texts_follow_neon() {
    assert_eq!(ConnStringError::IncorrectScheme.to_string(), "incorrect scheme");
    assert_eq!(ConnStringError::MissingDatabase.to_string(), "missing database name");
    assert_eq!(ConnStringError::MissingUser.to_string(), "missing username");
    assert_eq!(ConnStringError::Malformed("invalid port number").to_string(), "invalid connection string: invalid port number");
}

#[test]
fn debug_redacts_the_password() {
    let c = ConnectionString::parse("postgres://u:supersecret@h/db").expect("valid");
    let shown = format!("{c:?}");
    assert!(!shown.contains("supersecret"), "{shown}");
    assert!(shown.contains("redacted"));
}
