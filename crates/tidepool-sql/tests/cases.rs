//! Hand-written cases: known bypasses of the old first-word detector, lexing corner cases, what
//! must not be flagged, statement kinds, and the replayable `Setting`s.

use tidepool_sql::{classify, classify_bytes, classify_with, leaves_session_state, Hazards, Kind, Options, TransactionKind};

fn kinds(sql: &str) -> Vec<Kind> {
    classify(sql).statements.iter().map(|s| s.kind).collect()
}

#[track_caller]
fn flagged(sql: &str) {
    let s = classify(sql);
    assert!(s.leaves_session_state, "not flagged: {sql:?} → {s:#?}");
    assert!(leaves_session_state(sql), "fast path disagrees: {sql:?}");
}

#[track_caller]
fn harmless(sql: &str) {
    let s = classify(sql);
    assert!(!s.leaves_session_state, "flagged: {sql:?} → {s:#?}");
    assert!(!leaves_session_state(sql), "fast path disagrees: {sql:?}");
}

#[test]
fn known_bypasses_are_caught() {
    for q in [
        "set/**/search_path to leaked_schema",
        "/* c */ SET x = 1",
        "/* a /* nested */ still comment */ SET x = 1",
        "-- c\nSET x = 1",
        "-- c\r\nSET x = 1",
        "SELECT 1; SET x = 1",
        "select 1;set x=1",
        "SELECT 1;\n-- hi\n  reset all",
        "select set_config('a','b',false)",
        "SELECT \"set_config\"('a','b',false)",
        "select pg_catalog.set_config('search_path', 'x', false)",
        "select \"pg_catalog\".\"set_config\"('search_path', 'x', false)",
        "select SET_CONFIG ('a', 'b', false)",
        "select set_config/**/('a','b',false)",
        "select * from set_config('a','b',false)",
        "(select set_config('a','b',false))",
        "select pg_advisory_lock(1)",
        "select pg_advisory_lock_shared(1)",
        "select pg_try_advisory_lock(1, 2)",
        "select pg_try_advisory_lock_shared(1)",
        "select pg_advisory_unlock_all()",
        "select dblink_connect('c', 'dbname=x')",
        "select dblink_connect_u('dbname=x')",
        "select query_to_xml($$select set_config('a','b',false)$$, true, true, '')",
        "select setseed(0.5)",
        "create table pg_temp.t (a int)",
        "create function pg_temp.f() returns int language sql as 'select 1'",
        "SELECT U&\"set\\005fconfig\"('a','b',false)",
        "SELECT U&\"set!005fconfig\" UESCAPE '!' ('a','b',false)",
        "SELECT U&\"set_config\"('a','b',false)",
        "SELECT 'a'; SET x = 'b'",
        "SELECT $$ ; $$; SET x = 1",
        "SELECT $a$ $$ ; $a$; SET x = 1",
        "SELECT $1; SET x = 1",
    ] {
        flagged(q);
    }
}

#[test]
fn backslash_strings_are_classified_under_both_settings() {
    // scs on: '\' is a complete string and SET runs; scs off: one long string.
    for q in [r"SELECT '\'; SET x = 1; --'", r"SELECT '\';SET x=1; select '", r"SELECT N'\'; SET x = 1; --'"] {
        flagged(q);
        let s = classify(q);
        assert!(s.depends_on_standard_conforming_strings);
        let on = classify_with(q.as_bytes(), Options { standard_conforming_strings: Some(true), ..Options::default() });
        assert!(on.leaves_session_state, "{q}");
    }
    // E'' always escapes: E'\\' is a backslash, then '; SET …' …
    flagged(r"SELECT E'\\'; SET x = 1");
    // … and E'\'' is a quote: the SET is inside the string under either setting.
    harmless(r"SELECT E'\'; SET x = 1; --'");
    // scs off only: the plain string swallows the SET under scs on, not under off.
    let q = r"SELECT 'a\'; SET x = 1; --'";
    flagged(q);
    let on = classify_with(q.as_bytes(), Options { standard_conforming_strings: Some(true), ..Options::default() });
    assert!(on.leaves_session_state);
    let q = r"SELECT 'a\''; SET x = 1; --'";
    let on = classify_with(q.as_bytes(), Options { standard_conforming_strings: Some(true), ..Options::default() });
    let off = classify_with(q.as_bytes(), Options { standard_conforming_strings: Some(false), ..Options::default() });
    assert!(!on.leaves_session_state && off.leaves_session_state);
    flagged(q);
}

#[test]
fn string_continuation_keeps_escape_mode() {
    // E'a' newline '\'' continues the E string: `\'` is a quote, the next `'` ends it, SET is real.
    flagged("SELECT E'a'\n'\\'' ; SET x = 1; --'");
    flagged("SELECT E'a' -- c\n  -- d\n'\\'' ; SET x = 1; --'");
    // Without a newline it is a new (standard) string.
    let q = "SELECT E'a' '\\'' ; SET x = 1; --'";
    let on = classify_with(q.as_bytes(), Options { standard_conforming_strings: Some(true), backslash_safe_encoding: true });
    assert!(!on.leaves_session_state);
}

#[test]
fn unlexable_input_is_state_changing() {
    for q in ["SELECT 'abc", "SELECT 1 /* unterminated", "SELECT $x$ abc", "SELECT \"abc", "SELECT E'abc\\'", "/* /* */ SELECT 1"] {
        let s = classify(q);
        assert!(s.leaves_session_state && s.error.is_some(), "{q}");
    }
    // A backslash that may be the second byte of an SJIS character (0x83 0x5C is 'ソ').
    let sjis = b"SELECT E'\x83\\'; SET x = 1; --'";
    assert!(classify_bytes(sjis).leaves_session_state);
    let utf8_client = classify_with(b"SELECT E'\xc3\xa9\\n'", Options { backslash_safe_encoding: true, ..Options::default() });
    assert!(!utf8_client.leaves_session_state);
    // Invalid UTF-8 elsewhere is lexed bytewise.
    assert!(!classify_bytes(b"SELECT '\xff\xfe' AS x").leaves_session_state);
    assert!(classify_bytes(b"SELECT '\xff'; SET x = 1").leaves_session_state);
}

#[test]
fn ordinary_statements_are_not_flagged() {
    for q in [
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
        "update t set a = 1",
        "SELECT 1",
        "(select 1)",
        "((select 1) union (select 2))",
        "SET LOCAL statement_timeout = 5",
        "set local search_path to x",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET SESSION TRANSACTION READ ONLY",
        "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; COMMIT",
        "SET CONSTRAINTS ALL DEFERRED",
        "SHOW search_path",
        "select pg_advisory_xact_lock(1)",
        "select pg_try_advisory_xact_lock_shared(1)",
        "insert into settings(a) values ('set x')",
        "insert into settings values ('set x'); select 1",
        "select temp from readings",
        "select * from t where name = 'into'",
        "insert into temp_readings select 1",
        "select 'set_config(1)' , $$ set x = 1; $$, $t$ reset all $t$",
        "select 1 -- ; set x = 1",
        "select /* ; set x = 1 */ 1",
        "select \"set x\" from t",
        "SELECT E'\\'; SET x = 1; --'",
        "select a into t from b",
        "select a into unlogged t from b",
        "NOTIFY chan, 'payload'",
        "UNLISTEN *",
        "EXECUTE p(1)",
        "CLOSE c",
        "DECLARE c CURSOR FOR SELECT 1",
        "declare c cursor without hold for select * from t",
        "FETCH 10 FROM c",
        "CREATE TABLE t (a int)",
        "create unlogged table t (a int)",
        "create table tmp as select 1",
        "PREPARE TRANSACTION 'gid'",
        "COMMIT PREPARED 'gid'",
        "START TRANSACTION; SAVEPOINT s; RELEASE s; ROLLBACK TO SAVEPOINT s; END",
        "copy t from stdin",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1), (2)",
        "TABLE t",
        "ALTER TABLE t ADD COLUMN c int",
        "VACUUM t",
        "EXPLAIN SELECT 1",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "select a$$b from t",
        "",
        "  ;; -- nothing\n",
        "/* only a comment */",
    ] {
        harmless(q);
    }
}

#[test]
fn statement_kinds() {
    use Kind::*;
    let cases: &[(&str, &[Kind])] = &[
        ("SET x = 1", &[Set]),
        ("SET SESSION x TO 1", &[Set]),
        ("SET TIME ZONE 'UTC'", &[Set]),
        ("SET x FROM CURRENT", &[Set]),
        ("SET local = 1", &[Set]),
        ("SET transaction = 1", &[Set]),
        ("SET LOCAL x = 1", &[SetLocal]),
        ("SET LOCAL ROLE bob", &[SetLocal]),
        ("SET TRANSACTION READ ONLY", &[SetTransaction]),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", &[SetSessionCharacteristics]),
        ("SET CONSTRAINTS ALL IMMEDIATE", &[SetConstraints]),
        ("SET ROLE bob", &[SetRole]),
        ("SET SESSION ROLE bob", &[SetRole]),
        ("SET SESSION AUTHORIZATION bob", &[SetSessionAuthorization]),
        ("RESET x", &[Reset]),
        ("RESET ALL", &[ResetAll]),
        ("SHOW ALL", &[Show]),
        ("LISTEN c; UNLISTEN c; NOTIFY c", &[Listen, Unlisten, Notify]),
        ("PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p", &[Prepare, Execute, Deallocate]),
        ("PREPARE transaction AS SELECT 1", &[Prepare]),
        ("DISCARD ALL", &[Discard]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", &[Declare { with_hold: true }]),
        ("DECLARE c NO SCROLL CURSOR FOR SELECT 1", &[Declare { with_hold: false }]),
        ("CREATE TEMP TABLE t (a int)", &[CreateTemp]),
        ("CREATE TEMPORARY TABLE t AS SELECT 1", &[CreateTemp]),
        ("CREATE GLOBAL TEMPORARY TABLE t (a int)", &[CreateTemp]),
        ("CREATE LOCAL TEMP TABLE t (a int)", &[CreateTemp]),
        ("CREATE TEMP SEQUENCE s", &[CreateTemp]),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", &[CreateTemp]),
        ("CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", &[CreateTemp]),
        ("SELECT 1 INTO TEMP t", &[SelectIntoTemp]),
        ("select * into temporary table t from x", &[SelectIntoTemp]),
        ("SELECT * INTO LOCAL TEMP t FROM x", &[SelectIntoTemp]),
        ("with q as (select 1) select * into global temp t from q", &[SelectIntoTemp]),
        ("LOAD 'auto_explain'", &[Load]),
        ("DO $$ BEGIN PERFORM 1; END $$", &[Do]),
        ("CALL p()", &[Call]),
        (
            "BEGIN; COMMIT; ROLLBACK; ABORT; END",
            &[
                Transaction(TransactionKind::Begin),
                Transaction(TransactionKind::Commit),
                Transaction(TransactionKind::Rollback),
                Transaction(TransactionKind::Abort),
                Transaction(TransactionKind::End),
            ],
        ),
        ("PREPARE TRANSACTION 'x'", &[Transaction(TransactionKind::PrepareTransaction)]),
        ("INSERT INTO t VALUES (1); UPDATE t SET a = 1; DELETE FROM t", &[Dml, Dml, Dml]),
        ("frobnicate the database", &[Unknown]),
        ("'a string'", &[Unknown]),
    ];
    for (sql, want) in cases {
        assert_eq!(kinds(sql), *want, "{sql}");
        let stateful = want.iter().any(|k| k.leaves_session_state());
        assert_eq!(classify(sql).leaves_session_state, stateful, "{sql}");
    }
}

#[test]
fn explain_takes_the_explained_statement_kind() {
    let s = classify("EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1");
    assert!(s.leaves_session_state);
    assert_eq!(s.statements[0].kind, Kind::CreateTemp);
    assert!(s.statements[0].explain);
    flagged("EXPLAIN (ANALYZE true, FORMAT json) SELECT 1 INTO TEMP t");
    flagged("explain analyze select set_config('a','b',false)");
}

#[test]
fn hazards_are_reported() {
    let s = classify("select pg_catalog.set_config('a','b',false), pg_advisory_lock(1)");
    assert!(s.statements[0].hazards.contains(Hazards::SET_CONFIG | Hazards::ADVISORY_LOCK));
    assert_eq!(s.statements[0].kind, Kind::Query);
}

#[test]
fn plain_settings_are_extracted_for_replay() {
    let s = classify("SET search_path TO a, \"B\" /* c */ ; set SESSION Statement_Timeout = '5s'; SET \"My\".\"Var\" = 1; RESET TimeZone");
    let got: Vec<(String, Option<&[u8]>)> = s.settings().map(|x| (x.name.clone(), x.value)).collect();
    assert_eq!(
        got,
        vec![
            ("search_path".into(), Some(&b"a, \"B\""[..])),
            ("statement_timeout".into(), Some(&b"'5s'"[..])),
            ("my.var".into(), Some(&b"1"[..])),
            ("timezone".into(), None),
        ]
    );
    assert!(s.only_plain_settings());
    let d = classify("SET x TO DEFAULT");
    assert_eq!(d.statements[0].setting.as_ref().map(|x| x.value), Some(None));
    // A zero-length quoted name is no setting (found by fuzz/sql_lexer): not replayed.
    for q in ["SET TIME ZONE 'UTC'", "SET x FROM CURRENT", "SET ROLE bob", "RESET ALL", "SET SCHEMA 'x'", "SET \"\" = 1", "SET a.\"\" = 1", "RESET \"\""] {
        let s = classify(q);
        assert!(s.leaves_session_state && !s.only_plain_settings(), "{q}");
    }
    assert!(!classify("SET x = 1; LISTEN c").only_plain_settings());
}

#[test]
fn statement_text_excludes_comments_and_semicolons() {
    let s = classify("  /* a */ SELECT 1 /* b */ ; -- c\n SET x = 2 ;");
    let texts: Vec<&str> = s.statements.iter().map(|s| s.text_str().unwrap()).collect();
    assert_eq!(texts, vec!["SELECT 1", "SET x = 2"]);
}
