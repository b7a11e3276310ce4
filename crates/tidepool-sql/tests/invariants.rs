//! The fuzz target's invariants (`fuzz/fuzz_targets/sql_lexer.rs`) as a property test over
//! lexically hostile byte soup, so they run with `cargo test` too: options only ever add flags,
//! errors flag, the fast path agrees, trailing trivia and a harmless prefix never hide state,
//! and statements are classified independently.

use proptest::prelude::*;
use tidepool_sql::{classify_with, leaves_session_state_with, Options};

const ATOMS: &[&[u8]] = &[
    b"'",
    b"''",
    b"E'",
    b"N'",
    b"B'",
    b"U&'",
    b"U&\"",
    b"\"",
    b"\\",
    b"\\'",
    b"$$",
    b"$a$",
    b"$1",
    b"$",
    b"/*",
    b"*/",
    b"--",
    b"\n",
    b" ",
    b" ",
    b";",
    b";",
    b"SET x = 1",
    b"set local y to 2",
    b"RESET ALL",
    b"SELECT 1",
    b"LISTEN c",
    b"set_config(",
    b"pg_advisory_lock(",
    b"(",
    b")",
    b"=",
    b"x",
    b"UESCAPE",
    b"\x83",
    b"\xc3\xa9",
    b"\xff",
    b"\0",
    b"INTO TEMP",
    b"WITH HOLD",
    b"EXPLAIN",
    b"CREATE TEMP TABLE t",
    b"DECLARE c CURSOR",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..ATOMS.len(), 0..32).prop_map(|v| v.into_iter().filter_map(|i| ATOMS.get(i)).flat_map(|a| a.iter().copied()).collect())
}

fn leaves(sql: &[u8]) -> bool {
    let s = classify_with(sql, Options::default());
    assert_eq!(leaves_session_state_with(sql, Options::default()), s.leaves_session_state);
    s.leaves_session_state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn options_only_add_flags(sql in soup()) {
        for safe in [false, true] {
            let unknown = classify_with(&sql, Options { standard_conforming_strings: None, backslash_safe_encoding: safe });
            prop_assert!(unknown.error.is_none() || unknown.leaves_session_state);
            for scs in [true, false] {
                let o = Options { standard_conforming_strings: Some(scs), backslash_safe_encoding: safe };
                let known = classify_with(&sql, o);
                prop_assert_eq!(leaves_session_state_with(&sql, o), known.leaves_session_state);
                prop_assert!(!known.leaves_session_state || unknown.leaves_session_state);
                if !safe {
                    let safe_flags = classify_with(&sql, Options { backslash_safe_encoding: true, ..o }).leaves_session_state;
                    prop_assert!(!safe_flags || known.leaves_session_state);
                }
            }
        }
    }

    #[test]
    fn trivia_never_hides_state(sql in soup()) {
        if leaves(&sql) {
            for suffix in [&b";"[..], b"\n", b" /* c */", b"\n; -- c"] {
                prop_assert!(leaves(&[&sql[..], suffix].concat()));
            }
            for prefix in [&b"/* c */ "[..], b"-- c\n", b"SELECT 1;"] {
                prop_assert!(leaves(&[prefix, &sql[..]].concat()));
            }
        }
    }

    #[test]
    fn statements_are_independent(a in soup(), b in soup()) {
        let (ca, cb) = (classify_with(&a, Options::default()), classify_with(&b, Options::default()));
        if ca.error.is_none() && cb.error.is_none() {
            prop_assert_eq!(leaves(&[&a[..], b"\n;", &b[..]].concat()), ca.leaves_session_state || cb.leaves_session_state);
        }
    }
}
