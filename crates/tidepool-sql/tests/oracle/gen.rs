//! Proptest strategy for query texts: statements picked from templates (session-state and
//! ordinary ones, strings and dollar quotes holding keywords), their tokens joined by random
//! separators (spaces, newlines, tabs, `--` and nested `/* */` comments, sometimes nothing),
//! keywords in random case, 1–4 statements joined by `;`.

use proptest::prelude::*;

/// Templates as tokens separated by single spaces; `·` stands for a space inside a token.
const TEMPLATES: &[&str] = &[
    // leaves session state
    "SET search_path TO leaked",
    "SET SESSION statement_timeout = 5",
    "set \"search_path\" = public , x",
    "SET myapp . user_id = '42'",
    "SET TIME ZONE 'UTC'",
    "SET ROLE bob",
    "SET SESSION AUTHORIZATION bob",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET work_mem FROM CURRENT",
    "SET search_path TO DEFAULT",
    "RESET ALL",
    "RESET search_path",
    "RESET TIME ZONE",
    "LISTEN chan",
    "PREPARE p AS SELECT 1",
    "PREPARE p ( int ) AS SELECT $1",
    "DEALLOCATE ALL",
    "DEALLOCATE PREPARE p",
    "DISCARD ALL",
    "DISCARD TEMP",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t",
    "CREATE TEMP TABLE t ( a int )",
    "CREATE TEMPORARY TABLE IF NOT EXISTS t AS SELECT 1",
    "CREATE GLOBAL TEMPORARY TABLE t ( a int )",
    "CREATE LOCAL TEMP TABLE t ( a int )",
    "CREATE TEMP SEQUENCE s",
    "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
    "CREATE TEMP RECURSIVE VIEW v ( n ) AS SELECT 1",
    "SELECT 1 AS a INTO TEMP t",
    "SELECT * INTO TEMPORARY TABLE t FROM x",
    "WITH q AS ( SELECT 1 ) SELECT * INTO LOCAL TEMP t FROM q",
    "LOAD 'auto_explain'",
    "DO $$BEGIN·PERFORM·1;·END$$",
    "DO LANGUAGE plpgsql $x$·BEGIN·SET·x·=·1;·END·$x$",
    "CALL proc ( 1 )",
    "SELECT set_config ( 'search_path' , 'x' , false )",
    "SELECT pg_catalog . set_config ( 'a.b' , 'c' , false )",
    "SELECT \"set_config\" ( 'a.b' , 'c' , false )",
    "SELECT * FROM t WHERE pg_advisory_lock ( 1 ) IS NOT NULL",
    "SELECT pg_try_advisory_lock_shared ( 1 , 2 )",
    "SELECT pg_advisory_unlock_all ( )",
    "SELECT dblink_connect ( 'c' , 'dbname=x' )",
    "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
    "EXPLAIN ( ANALYZE ) SELECT 1 INTO TEMP t",
    "SELECT ( SELECT set_config ( 'a' , 'b' , false ) )",
    "INSERT INTO t SELECT pg_advisory_lock ( 1 )",
    "UPDATE t SET a = set_config ( 'x.y' , 'z' , false )",
    "SELECT E'\\\\' , 1",
    // ordinary
    "SELECT 1",
    "select a , b from t where c = 'set·x·=·1'",
    "UPDATE t SET a = 1 WHERE b = 2",
    "INSERT INTO settings VALUES ( 'set·x' , 'reset·all' )",
    "INSERT INTO temp_t SELECT 1",
    "DELETE FROM t",
    "SET LOCAL search_path = x",
    "SET LOCAL statement_timeout TO 5",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET SESSION TRANSACTION READ ONLY",
    "SET CONSTRAINTS ALL DEFERRED",
    "SHOW search_path",
    "SELECT pg_advisory_xact_lock ( 1 )",
    "SELECT temp FROM readings",
    "SELECT $$·;·SET·x·=·1·;·$$",
    "SELECT $q$·$$·;·RESET·ALL·;·$q$",
    "SELECT E'\\';·SET·x·=·1;·--'",
    "SELECT 'a'';SET·x=1;--'",
    "SELECT 'a'\n'b;·set·x=1'",
    "SELECT U&'\\0041' , U&\"a\"",
    "SELECT B'101' , X'ff' , N'set'",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SAVEPOINT s",
    "RELEASE s",
    "END",
    "NOTIFY chan , 'SET·x·=·1'",
    "UNLISTEN *",
    "EXECUTE p ( 1 )",
    "CLOSE c",
    "DECLARE c CURSOR FOR SELECT 1",
    "CREATE TABLE t ( a int )",
    "CREATE FUNCTION f ( ) RETURNS int LANGUAGE sql SET search_path = x AS 'select·1'",
    "ALTER ROLE bob SET search_path = x",
    "VALUES ( 1 ) , ( 2 )",
    "TABLE t",
    "( SELECT 1 )",
    "SELECT 1 INTO t",
    "SELECT a$$b FROM t",
    "SELECT $1 , $2",
    "PREPARE TRANSACTION 'gid'",
];

const SEPARATORS: &[&str] = &[
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    "/**/",
    " /* c */ ",
    "/* a /* n */ b */",
    "-- c\n",
    " -- ; set x = 1\n",
    "/* ; SET x = 1 */",
    "/*/ ; reset all */",
    "",
];

fn recase(word: &str, choice: u8) -> String {
    if !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return word.to_string();
    }
    match choice % 3 {
        0 => word.to_ascii_lowercase(),
        1 => word.to_ascii_uppercase(),
        _ => word.chars().enumerate().map(|(i, c)| if (i + choice as usize) & 1 == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect(),
    }
}

fn separator(choice: u8) -> String {
    let i = choice as usize % (SEPARATORS.len() + 1);
    match SEPARATORS.get(i) {
        Some(s) => (*s).to_string(),
        // deeper nesting
        None => format!(" {}x{} ", "/*".repeat(1 + choice as usize % 5), "*/".repeat(1 + choice as usize % 5)),
    }
}

fn render(template: usize, choices: &[u8]) -> String {
    let template = TEMPLATES.get(template % TEMPLATES.len()).copied().unwrap_or("SELECT 1");
    let mut pick = choices.iter().copied().cycle().chain(std::iter::repeat(0));
    let mut out = String::new();
    for (i, tok) in template.split(' ').enumerate() {
        if i > 0 {
            out.push_str(&separator(pick.next().unwrap_or(0)));
        }
        out.push_str(&recase(&tok.replace('·', " "), pick.next().unwrap_or(0)));
    }
    out
}

fn statement() -> impl Strategy<Value = String> {
    (0..TEMPLATES.len(), prop::collection::vec(any::<u8>(), 1..24)).prop_map(|(t, c)| render(t, &c))
}

/// A whole query text.
pub fn query_text() -> impl Strategy<Value = String> {
    (prop::collection::vec((statement(), any::<u8>(), any::<u8>()), 1..5), any::<u8>(), any::<bool>()).prop_map(|(stmts, lead, trailing_semi)| {
        let mut out = separator(lead);
        for (i, (s, before, after)) in stmts.iter().enumerate() {
            if i > 0 {
                out.push_str(&separator(*before));
                out.push(';');
                out.push_str(&separator(*after));
            }
            out.push_str(s);
        }
        if trailing_semi {
            out.push(';');
        }
        out
    })
}

const ATOMS: &[&str] = &[
    "'",
    "''",
    "E'",
    "e'",
    "N'",
    "B'",
    "X'",
    "U&'",
    "U&\"",
    "\"",
    "\"\"",
    "\\",
    "\\'",
    "$$",
    "$a$",
    "$b$",
    "$1",
    "$",
    "a$",
    "/*",
    "*/",
    "/*/",
    "--",
    "\n",
    "\r",
    " ",
    " ",
    " ",
    "\t",
    ";",
    ";",
    "SET x.y = 1",
    "set x.y to 2",
    "RESET ALL",
    "SELECT 1",
    "select",
    "LISTEN c",
    "set_config('a.b','c',false)",
    "pg_advisory_lock(1)",
    "(",
    ")",
    ",",
    ".",
    "=",
    "x",
    "UESCAPE",
    "-",
    "*",
    "/",
    "1",
    "1.5e3",
    "\u{e9}",
    "\u{30bd}",
];

/// Random sequences of [`ATOMS`].
pub fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(0..ATOMS.len(), 0..40).prop_map(|v| v.into_iter().filter_map(|i| ATOMS.get(i).copied()).collect())
}
