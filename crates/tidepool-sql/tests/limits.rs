//! Hostile sizes: 100,000-deep nesting and 1 MiB inputs must not overflow the stack and must
//! take time linear in their length. No timing is asserted: linearity is checked by counting
//! (a quadratic scan of 1 MiB would take minutes and time the test out), and the common-path
//! cost is printed for a human (`cargo test -p tidepool-sql --release --test limits -- --nocapture`).

use std::time::Instant;
use tidepool_sql::{classify, classify_bytes, leaves_session_state, Kind};

const DEPTH: usize = 100_000;
const MIB: usize = 1 << 20;

#[test]
fn deeply_nested_comments() {
    let closed = format!("{}x{} SELECT 1", "/*".repeat(DEPTH), "*/".repeat(DEPTH));
    let s = classify(&closed);
    assert!(!s.leaves_session_state && s.error.is_none());
    assert_eq!(s.statements.len(), 1);
    // One `*/` short: still inside the comment at the end.
    let open = format!("{}x{} SET x = 1", "/*".repeat(DEPTH), "*/".repeat(DEPTH - 1));
    let s = classify(&open);
    assert!(s.leaves_session_state && s.error.is_some());
    // One `*/` too many: the SET after it is real (and a stray `*/` is an operator).
    let extra = format!("{}x{}; SET x = 1", "/*".repeat(DEPTH), "*/".repeat(DEPTH + 1));
    assert!(classify(&extra).leaves_session_state);
}

#[test]
fn deeply_nested_parentheses() {
    let sql = format!("SELECT {}1{}", "(".repeat(DEPTH), ")".repeat(DEPTH));
    assert!(!leaves_session_state(&sql));
    let sql = format!("{}SELECT 1{}", "(".repeat(DEPTH), ")".repeat(DEPTH));
    assert_eq!(classify(&sql).statements[0].kind, Kind::Query);
    let sql = format!("SELECT {}set_config('a','b',false){}", "(".repeat(DEPTH), ")".repeat(DEPTH));
    assert!(leaves_session_state(&sql));
}

#[test]
fn one_mebibyte_inputs() {
    let filler = "x".repeat(MIB);
    let inputs: Vec<(String, bool)> = vec![
        (format!("SELECT '{filler}'"), false),
        (format!("SELECT $${filler}$$"), false),
        (format!("SELECT \"{}\" FROM t", "a".repeat(MIB)), false),
        (format!("SELECT 1 -- {filler}"), false),
        (format!("SELECT {}", "a, ".repeat(MIB / 3) + "b"), false),
        (";".repeat(MIB), false),
        ("SELECT 1;".repeat(MIB / 9), false),
        (format!("{}SET x = 1", "SELECT 1;".repeat(MIB / 9)), true),
        // Many `$` that each almost open a dollar quote, and many short closing-tag candidates.
        (format!("SELECT $a$ {} $a$", "$a ".repeat(MIB / 3)), false),
        ("$".repeat(MIB), true),
        (format!("SELECT E'{}'", "\\\\".repeat(MIB / 2)), false),
        (format!("SELECT '{}'", "''".repeat(MIB / 2)), false),
        ("'".repeat(MIB), true),
        ("/*".repeat(MIB / 2), true),
        ("-".repeat(MIB), false),
        (format!("SELECT 'a'{}", "\n'b'".repeat(MIB / 4)), false),
    ];
    for (sql, stateful) in inputs {
        let start = Instant::now();
        let s = classify(&sql);
        assert_eq!(s.leaves_session_state, stateful, "{}…", &sql[..40.min(sql.len())]);
        eprintln!("{:>8} bytes {:>10.2?}  {}…", sql.len(), start.elapsed(), sql.chars().take(24).collect::<String>().escape_debug());
    }
    // Invalid UTF-8 of the same size.
    let bytes: Vec<u8> = (0..MIB).map(|i| (i * 131 % 256) as u8).collect();
    let _ = classify_bytes(&bytes);
}

/// Prints the per-call cost of the common case; asserts nothing about time.
#[test]
fn common_case_cost() {
    let queries = [
        "SELECT \"id\", \"email\" FROM \"public\".\"User\" WHERE \"email\" = $1 LIMIT $2 OFFSET $3",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        "INSERT INTO \"Post\" (\"title\",\"authorId\") VALUES ($1,$2) RETURNING \"id\"",
    ];
    let rounds = 20_000;
    let start = Instant::now();
    let mut flagged = 0;
    for _ in 0..rounds {
        for q in queries {
            flagged += usize::from(leaves_session_state(std::hint::black_box(q)));
        }
    }
    assert_eq!(flagged, 0);
    let per = start.elapsed() / (rounds * queries.len() as u32);
    eprintln!("leaves_session_state on a typical ORM query: {per:?} per call");
}
