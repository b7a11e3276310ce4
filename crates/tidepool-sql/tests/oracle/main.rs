//! PostgreSQL's own parser (libpg_query through the `pg_query` crate) as the oracle: whenever it
//! parses a text and finds a statement that leaves session state, `classify` must say so (the
//! other direction is allowed: a false positive only costs a `DISCARD ALL`). Its scanner is also
//! the oracle for the lexer's token boundaries.
//!
//! Inputs: a corpus file (`tests/corpus.sql`) and proptest-generated compositions of statement
//! templates with random separators, comments, case and quoted fragments (`gen.rs`).

mod gen;
mod pg;

use proptest::test_runner::{Config, TestRunner};
use tidepool_sql::{classify, LexMode, Lexer, TokenKind};

#[derive(Default, Debug)]
struct Stats {
    cases: usize,
    scanned: usize,
    parsed: usize,
    stateful: usize,
    false_positives: usize,
}

/// Checks one text against the oracle; `Err` describes a false negative.
fn check(sql: &str, stats: &mut Stats) -> Result<(), String> {
    stats.cases += 1;
    stats.scanned += usize::from(lexer_matches_scanner(sql)?);
    let ours = classify(sql);
    let Some(truth) = pg::leaves_session_state(sql) else { return Ok(()) };
    stats.parsed += 1;
    if truth {
        stats.stateful += 1;
        if !ours.leaves_session_state {
            return Err(format!("missed session state in {sql:?}\nclassifier said: {ours:#?}"));
        }
    } else if ours.leaves_session_state {
        stats.false_positives += 1;
    }
    Ok(())
}

/// Every identifier, keyword and string constant PostgreSQL's scanner finds is one of our tokens,
/// and none of our tokens starts inside one of its comments. `Ok(false)` if it does not scan.
fn lexer_matches_scanner(sql: &str) -> Result<bool, String> {
    let Some(pg_tokens) = pg::scan(sql) else { return Ok(false) };
    let mode = LexMode { standard_conforming_strings: true, backslash_safe_encoding: true };
    let ours: Vec<_> = match Lexer::new(sql.as_bytes(), mode).collect::<Result<_, _>>() {
        Ok(t) => t,
        Err(e) => return Err(format!("PostgreSQL scans {sql:?} but we fail: {e}")),
    };
    for t in pg_tokens {
        let found = match t.class {
            pg::Class::Comment => {
                if let Some(o) = ours.iter().find(|o| o.start >= t.start && o.start < t.end) {
                    return Err(format!("our token {o:?} starts inside comment {t:?} of {sql:?}"));
                }
                true
            }
            // `N'…'` scans as the keyword NATIONAL (the `N`) then a string; ours is one string.
            pg::Class::Word => ours.iter().any(|o| {
                (o.start == t.start && o.end == t.end && matches!(o.kind, TokenKind::Ident | TokenKind::QuotedIdent))
                    || (o.start == t.start && t.end == t.start + 1 && o.kind == TokenKind::String)
            }),
            pg::Class::UnicodeIdent => ours.iter().any(|o| o.start == t.start && o.end == t.end && o.kind == TokenKind::UnicodeIdent),
            pg::Class::String => ours.iter().any(|o| o.end == t.end && o.start <= t.start && o.start + 2 >= t.start && o.kind == TokenKind::String),
            pg::Class::Other => true,
        };
        if !found {
            return Err(format!("PostgreSQL token {t:?} ({:?}) not among ours in {sql:?}: {ours:?}", sql.get(t.start..t.end)));
        }
    }
    Ok(true)
}

#[test]
fn corpus_against_pg_query() {
    let corpus = include_str!("../corpus.sql");
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for case in corpus.split("\n-- case\n").map(str::trim).filter(|c| !c.is_empty()) {
        if let Err(e) = check(case, &mut stats) {
            failures.push(e);
        }
    }
    eprintln!("corpus: {stats:?}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    assert!(stats.parsed >= 100 && stats.stateful >= 50, "corpus too small: {stats:?}");
}

#[test]
fn generated_sql_against_pg_query() {
    let cases = std::env::var("TIDEPOOL_SQL_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16000);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let stats = std::cell::RefCell::new(Stats::default());
    let result = runner.run(&gen::query_text(), |sql| {
        check(&sql, &mut stats.borrow_mut()).map_err(proptest::test_runner::TestCaseError::fail)?;
        Ok(())
    });
    let stats = stats.into_inner();
    eprintln!("generated: {stats:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(stats.parsed * 4 >= stats.cases, "most generated texts should parse: {stats:?}");
    assert!(stats.stateful * 10 >= stats.parsed, "too few stateful cases: {stats:?}");
}

/// Lexically hostile soup (quotes, escapes, dollar tags, comment openers, semicolons, `SET`s):
/// few texts parse, but every one PostgreSQL scans checks the lexer's boundaries.
#[test]
fn lexical_soup_against_pg_query() {
    let cases = std::env::var("TIDEPOOL_SQL_ORACLE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16000);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let stats = std::cell::RefCell::new(Stats::default());
    let result = runner.run(&gen::soup(), |sql| {
        check(&sql, &mut stats.borrow_mut()).map_err(proptest::test_runner::TestCaseError::fail)?;
        Ok(())
    });
    let stats = stats.into_inner();
    eprintln!("soup: {stats:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
}
