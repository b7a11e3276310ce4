//! The oracle's reading of a text through libpg_query: whether its parse tree holds a statement
//! that leaves session state, and its scanner's tokens.
//!
//! The tree is walked as JSON (pg_query's protobuf types derive `Serialize`), so no node type is
//! skipped. Statement-level checks apply to top-level statements and to `EXPLAIN`'s statement
//! (a `VariableSetStmt` inside `CREATE FUNCTION … SET` or `ALTER ROLE … SET` is not a session
//! `SET`); function calls and temp `relpersistence` count anywhere.

use serde_json::Value;

/// `None` if PostgreSQL does not parse `sql` (then nothing in it would run).
pub fn leaves_session_state(sql: &str) -> Option<bool> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let tree = serde_json::to_value(&parsed.protobuf).ok()?;
    let stmts = tree.get("stmts")?.as_array()?;
    Some(stmts.iter().any(|raw| raw.get("stmt").is_some_and(statement_is_stateful)) || any_node(&tree))
}

/// `node` is a serialized `Node` (`{"node": {"TypeName": {...}}}`).
fn statement_is_stateful(node: &Value) -> bool {
    let Some((ty, body)) = node.get("node").and_then(Value::as_object).and_then(|o| o.iter().next()) else { return false };
    match ty.as_str() {
        "VariableSetStmt" => {
            let local = body.get("is_local").and_then(Value::as_bool).unwrap_or(false);
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            !local && name != "TRANSACTION" && name != "TRANSACTION SNAPSHOT"
        }
        "ListenStmt" | "PrepareStmt" | "DeallocateStmt" | "DiscardStmt" | "LoadStmt" | "DoStmt" | "CallStmt" => true,
        // CURSOR_OPT_HOLD
        "DeclareCursorStmt" => body.get("options").and_then(Value::as_i64).unwrap_or(0) & 0x20 != 0,
        "ExplainStmt" => body.get("query").is_some_and(statement_is_stateful),
        _ => false,
    }
}

/// Anywhere in the tree: a temp relation being declared, or a call of a session-state function.
fn any_node(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            if o.get("relpersistence").and_then(Value::as_str) == Some("t") {
                return true;
            }
            if let Some(call) = o.get("FuncCall") {
                if call.get("funcname").and_then(Value::as_array).and_then(|n| n.last()).and_then(sval).is_some_and(|n| stateful_function(&n)) {
                    return true;
                }
            }
            o.values().any(any_node)
        }
        Value::Array(a) => a.iter().any(any_node),
        _ => false,
    }
}

fn sval(node: &Value) -> Option<String> {
    node.get("node")?.get("String")?.get("sval")?.as_str().map(str::to_ascii_lowercase)
}

fn stateful_function(name: &str) -> bool {
    name == "set_config"
        || name.starts_with("pg_advisory_lock")
        || name.starts_with("pg_try_advisory_lock")
        || name.starts_with("pg_advisory_unlock")
        || name.starts_with("dblink_connect")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// An identifier or keyword (plain or `"quoted"`).
    Word,
    UnicodeIdent,
    String,
    Comment,
    Other,
}

#[derive(Debug)]
pub struct ScanToken {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// PostgreSQL's scanner tokens, or `None` if it rejects the text.
pub fn scan(sql: &str) -> Option<Vec<ScanToken>> {
    use pg_query::protobuf::{KeywordKind, Token};
    // `scan`, not `scan_tokens`: the latter builds a slice from a null pointer when there are no tokens.
    let tokens = pg_query::scan(sql).ok()?.tokens;
    Some(
        tokens
            .into_iter()
            .map(|t| {
                let token = Token::try_from(t.token).ok();
                let class = match token {
                    Some(Token::Ident) => Class::Word,
                    Some(Token::Uident) => Class::UnicodeIdent,
                    Some(Token::Sconst | Token::Usconst | Token::Bconst | Token::Xconst) => Class::String,
                    Some(Token::SqlComment | Token::CComment) => Class::Comment,
                    _ if t.keyword_kind != KeywordKind::NoKeyword as i32 => Class::Word,
                    _ => Class::Other,
                };
                ScanToken { start: t.start as usize, end: t.end as usize, class }
            })
            .collect(),
    )
}
