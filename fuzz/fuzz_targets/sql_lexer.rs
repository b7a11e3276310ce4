//! `tidepool_sql` classification of arbitrary bytes (a Query or Parse message's SQL text).
//!
//! Invariants:
//! * no panic, under every combination of `Options`;
//! * `leaves_session_state_with` agrees with `classify_with(..).leaves_session_state`;
//! * not knowing `standard_conforming_strings` flags whenever either setting does, and an
//!   encoding that may hide a backslash in a multibyte character flags whenever a safe one does;
//! * a lexing error always means state-changing;
//! * whitespace and comments appended at the end, or a harmless statement and comment put in
//!   front, never turn a state-changing text harmless;
//! * for two texts that each lex cleanly, `a` newline `;` `b` is state-changing exactly when `a`
//!   or `b` is (statements are classified independently);
//! * a replayable `Setting` belongs to a `SET`/`RESET` statement and has a non-empty name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_sql::{classify_with, leaves_session_state_with, Kind, Options};

fn opts(scs: Option<bool>, safe: bool) -> Options {
    Options { standard_conforming_strings: scs, backslash_safe_encoding: safe }
}

fn leaves(sql: &[u8]) -> bool {
    let s = classify_with(sql, Options::default());
    assert_eq!(leaves_session_state_with(sql, Options::default()), s.leaves_session_state);
    s.leaves_session_state
}

fuzz_target!(|data: &[u8]| {
    let (split, sql) = match data.split_first() {
        Some((&b, rest)) => (b as usize, rest),
        None => (0, data),
    };
    for safe in [false, true] {
        let unknown = classify_with(sql, opts(None, safe));
        assert_eq!(leaves_session_state_with(sql, opts(None, safe)), unknown.leaves_session_state);
        if unknown.error.is_some() {
            assert!(unknown.leaves_session_state);
        }
        for scs in [true, false] {
            let known = classify_with(sql, opts(Some(scs), safe));
            assert_eq!(leaves_session_state_with(sql, opts(Some(scs), safe)), known.leaves_session_state);
            if known.leaves_session_state {
                assert!(unknown.leaves_session_state, "scs={scs} flags but unknown scs does not");
            }
            if !safe && classify_with(sql, opts(Some(scs), true)).leaves_session_state {
                assert!(known.leaves_session_state, "safe encoding flags but unsafe does not");
            }
        }
        for st in &unknown.statements {
            if let Some(setting) = &st.setting {
                assert!(matches!(st.kind, Kind::Set | Kind::Reset), "{st:?}");
                assert!(!setting.name.is_empty());
            }
        }
    }

    let base = leaves(sql);
    if base {
        for suffix in [&b";"[..], b"\n", b" /* c */", b"\n; -- c", b"\n;;\n"] {
            assert!(leaves(&[sql, suffix].concat()), "suffix {suffix:?} hid session state");
        }
        for prefix in [&b"/* c */ "[..], b"-- c\n", b"SELECT 1;", b"; "] {
            assert!(leaves(&[prefix, sql].concat()), "prefix {prefix:?} hid session state");
        }
    }

    let at = split * sql.len() / 256;
    if let (Some(a), Some(b)) = (sql.get(..at), sql.get(at..)) {
        let (ca, cb) = (classify_with(a, Options::default()), classify_with(b, Options::default()));
        if ca.error.is_none() && cb.error.is_none() {
            let joined = [a, b"\n;", b].concat();
            assert_eq!(leaves(&joined), ca.leaves_session_state || cb.leaves_session_state, "a={a:?} b={b:?}");
        }
    }
});
