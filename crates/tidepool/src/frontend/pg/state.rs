//! Recognises statements that leave session state behind on a server connection (session `SET`,
//! `RESET`, temp tables, advisory locks, `LISTEN`, SQL `PREPARE`/`DEALLOCATE`, cursors `WITH HOLD`,
//! `LOAD`, `set_config`), so a transaction-mode connection is reset (`DISCARD ALL`) before its next client.
//!
//! The scan is conservative and cheap: it looks at the first keywords of each statement and for a
//! few function names anywhere; a false positive only costs one `DISCARD ALL`.

/// True if `sql` may create state that outlives its transaction.
pub fn leaves_session_state(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    if ["pg_advisory_lock", "pg_try_advisory_lock", "set_config", "dblink_connect"].iter().any(|f| lower.contains(f)) {
        return true;
    }
    lower.split(';').any(|stmt| statement_is_stateful(strip_comments(stmt).trim_start()))
}

fn strip_comments(s: &str) -> &str {
    let mut s = s.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return s;
        }
    }
}

fn statement_is_stateful(stmt: &str) -> bool {
    let mut words = stmt.split(|c: char| c.is_whitespace() || c == '(').filter(|w| !w.is_empty());
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    match first {
        "set" => second != "local" && second != "transaction" && second != "constraints",
        // DEALLOCATE also drops tidepool's own statements: the reset makes it forget them.
        // A DO block can run anything, SET included.
        "reset" | "listen" | "prepare" | "deallocate" | "load" | "discard" | "do" => true,
        "declare" => stmt.contains("with hold"),
        // `SELECT … INTO TEMP t` creates a temporary table.
        "select" | "with" => selects_into_temp(stmt),
        "create" => matches!(second, "temp" | "temporary") || (matches!(second, "global" | "local" | "unlogged") && stmt.contains("temp")),
        _ => false,
    }
}

fn selects_into_temp(stmt: &str) -> bool {
    if !stmt.contains("into") || !stmt.contains("temp") {
        return false; // the common case, without tokenising
    }
    let words: Vec<&str> = stmt.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',').filter(|w| !w.is_empty()).collect();
    let temp = |w: Option<&&str>| matches!(w.copied(), Some("temp" | "temporary"));
    words
        .iter()
        .enumerate()
        .any(|(i, w)| *w == "into" && (temp(words.get(i + 1)) || (matches!(words.get(i + 1).copied(), Some("local" | "global")) && temp(words.get(i + 2)))))
}

#[cfg(test)]
mod tests {
    use super::leaves_session_state as s;

    #[test]
    fn detects_session_state() {
        for q in [
            "SET search_path = x",
            "set statement_timeout to 5",
            "  /* hi */ SET TimeZone='UTC'",
            "select 1; reset all",
            "LISTEN chan",
            "CREATE TEMP TABLE t(a int)",
            "create temporary table t(a int)",
            "select pg_advisory_lock(1)",
            "SELECT set_config('a.b', 'c', false)",
            "PREPARE p AS select 1",
            "DEALLOCATE ALL",
            "deallocate prepare p",
            "declare c cursor with hold for select 1",
            "SELECT 1 AS x INTO TEMP TABLE t",
            "select a, b into temporary t from x",
            "SELECT * INTO LOCAL TEMP t FROM x",
            "with q as (select 1) select * into temp t from q",
        ] {
            assert!(s(q), "{q}");
        }
    }

    #[test]
    fn ordinary_statements_are_not_flagged() {
        for q in [
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
            "SELECT 1",
            "SET LOCAL statement_timeout = 5",
            "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; COMMIT",
            "select pg_advisory_xact_lock(1)",
            "insert into settings(a) values ('set x')",
            "select temp from readings",
            "select * from t where name = 'into'",
            "insert into temp_readings select 1",
        ] {
            assert!(!s(q), "{q}");
        }
    }
}
