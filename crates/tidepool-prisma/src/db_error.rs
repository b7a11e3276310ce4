//! Database errors → Prisma user-facing errors.
//!
//! Reproduces both steps Prisma takes: `@prisma/adapter-pg` maps a PostgreSQL ErrorResponse to a
//! driver-adapter error *kind* (with kind-specific fields), then the runtime maps the kind to a
//! P-code and message. The `meta` is `{"driverAdapterError":{"name":"DriverAdapterError",
//! "cause":{originalCode, originalMessage, kind, …}}}`, plus a top-level `table` for unique
//! violations. Errors raised by raw SQL (`$queryRaw`/`$executeRaw`) all become P2010.

use crate::db::{DbError, ServerError};
use crate::error::Error;
use crate::json::{object, Value};

/// A mapped driver error: P-code (if the kind has one), message and the `cause` object.
struct Mapped {
    code: &'static str,
    message: String,
    cause: Value,
    original: Option<(String, String)>,
    table: Option<String>,
}

fn constraint_text(constraint: &Value) -> String {
    if let Some(fields) = constraint.get("fields").as_list() {
        let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.to_js_string())).collect();
        format!("fields: ({})", names.join(", "))
    } else if let Some(index) = constraint.get("index").as_str() {
        format!("constraint: `{index}`")
    } else {
        "(not available)".into()
    }
}

/// `Key (a, b)=(…)` in a unique-violation detail → `["a", "b"]`.
fn fields_from_detail(detail: Option<&str>) -> Option<Vec<String>> {
    let d = detail?;
    let start = d.find("Key (")? + 5;
    let end = start + d[start..].find(')')?;
    Some(d[start..end].split(", ").map(str::to_owned).collect())
}

fn fields_value(fields: Vec<String>) -> Value {
    object([("fields", Value::List(fields.into_iter().map(Value::String).collect()))])
}

/// `word[1]` of the message, then the text between the first pair of double quotes.
fn quoted_word(message: &str, word: usize) -> Option<String> {
    let w = message.split(' ').nth(word)?;
    w.split('"').nth(1).map(str::to_owned)
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Undefined, Value::from)
}

fn map_server(e: &ServerError) -> Mapped {
    let mut fields: Vec<(&str, Value)> = Vec::new();
    let mut table = None;
    let (code, kind, message) = match e.code.as_str() {
        "22001" => {
            fields.push(("column", opt(e.column.as_deref())));
            let col = e.column.clone().unwrap_or_else(|| "(not available)".into());
            ("P2000", "LengthMismatch", format!("The provided value for the column is too long for the column's type. Column: {col}"))
        }
        "22003" => {
            fields.push(("cause", e.message.as_str().into()));
            ("P2020", "ValueOutOfRange", format!("Value out of range for the type: {}", e.message))
        }
        "22P02" => {
            fields.push(("message", e.message.as_str().into()));
            ("P2007", "InvalidInputValue", format!("Invalid input value: {}", e.message))
        }
        "23505" => {
            let constraint = match (&e.constraint, fields_from_detail(e.detail.as_deref())) {
                (Some(c), _) => object([("index", Value::from(c.as_str()))]),
                (None, Some(f)) => fields_value(f),
                (None, None) => Value::Undefined,
            };
            let msg = format!("Unique constraint failed on the {}", constraint_text(&constraint));
            fields.push(("constraint", constraint));
            fields.push(("table", opt(e.table.as_deref())));
            table = e.table.clone();
            ("P2002", "UniqueConstraintViolation", msg)
        }
        "23502" => {
            // Like Prisma's own executor: fields only from a `Key (…)` detail (the column field
            // of the error is not used), so a plain NOT NULL violation carries no constraint.
            let constraint = match fields_from_detail(e.detail.as_deref()) {
                Some(f) => fields_value(f),
                None => Value::Undefined,
            };
            let msg = format!("Null constraint violation on the {}", constraint_text(&constraint));
            fields.push(("constraint", constraint));
            ("P2011", "NullConstraintViolation", msg)
        }
        "23503" | "23001" => {
            let constraint = match (&e.column, &e.constraint) {
                (Some(c), _) => fields_value(vec![c.clone()]),
                (None, Some(c)) => object([("index", Value::from(c.as_str()))]),
                (None, None) => Value::Undefined,
            };
            let msg = format!("Foreign key constraint violated on the {}", constraint_text(&constraint));
            fields.push(("constraint", constraint));
            let kind = if e.code == "23503" { "ForeignKeyConstraintViolation" } else { "RestrictViolation" };
            ("P2003", kind, msg)
        }
        "3D000" => {
            let db = quoted_word(&e.message, 1);
            fields.push(("db", opt(db.as_deref())));
            let db = db.unwrap_or_else(|| "(not available)".into());
            ("P1003", "DatabaseDoesNotExist", format!("Database `{db}` does not exist on the database server"))
        }
        "28000" => {
            let db = e.message.split(',').find(|s| s.starts_with(" database")).and_then(|s| s.split('"').nth(1)).map(str::to_owned);
            fields.push(("db", opt(db.as_deref())));
            let db = db.unwrap_or_else(|| "(not available)".into());
            ("P1010", "DatabaseAccessDenied", format!("User was denied access on the database `{db}`"))
        }
        "28P01" => {
            let user = e.message.split(' ').next_back().and_then(|w| w.split('"').nth(1)).map(str::to_owned);
            fields.push(("user", opt(user.as_deref())));
            let user = user.unwrap_or_else(|| "(not available)".into());
            (
                "P1000",
                "AuthenticationFailed",
                format!("Authentication failed against the database server, the provided database credentials for `{user}` are not valid"),
            )
        }
        "40001" | "40P01" => {
            ("P2034", "TransactionWriteConflict", "Transaction failed due to a write conflict or a deadlock. Please retry your transaction".to_owned())
        }
        "42P01" => {
            let t = quoted_word(&e.message, 1);
            fields.push(("table", opt(t.as_deref())));
            let t = t.unwrap_or_else(|| "(not available)".into());
            ("P2021", "TableDoesNotExist", format!("The table `{t}` does not exist in the current database."))
        }
        "42703" => {
            let col = e.message.strip_prefix("column ").and_then(|r| r.strip_suffix(" does not exist")).map(unquote_identifiers);
            fields.push(("column", opt(col.as_deref())));
            let col = col.unwrap_or_else(|| "(not available)".into());
            ("P2022", "ColumnNotFound", format!("The column `{col}` does not exist in the current database."))
        }
        "42P04" => {
            let db = quoted_word(&e.message, 1);
            fields.push(("db", opt(db.as_deref())));
            let db = db.unwrap_or_else(|| "(not available)".into());
            ("P1009", "DatabaseAlreadyExists", format!("Database `{db}` already exists on the database server"))
        }
        "53300" => {
            fields.push(("cause", e.message.as_str().into()));
            ("P2037", "TooManyConnections", format!("Too many database connections opened: {}", e.message))
        }
        other => {
            fields.push(("code", other.into()));
            fields.push(("severity", e.severity.as_deref().unwrap_or("N/A").into()));
            fields.push(("message", e.message.as_str().into()));
            fields.push(("detail", opt(e.detail.as_deref())));
            fields.push(("column", opt(e.column.as_deref())));
            fields.push(("hint", opt(e.hint.as_deref())));
            ("P2039", "postgres", format!("Database error. Code: `{other}`. Message: `{}`", e.message))
        }
    };
    let mut cause = vec![("originalCode", Value::from(e.code.as_str())), ("originalMessage", Value::from(e.message.as_str())), ("kind", Value::from(kind))];
    cause.extend(fields);
    Mapped { code, message, cause: object(cause), original: Some((e.code.clone(), e.message.clone())), table }
}

/// `"a""b".c` → `a"b.c` (identifier quoting removed, as the adapter does).
fn unquote_identifiers(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            ('"', true) => quoted = false,
            (c, _) => out.push(c),
        }
    }
    out
}

fn map_other(e: &DbError) -> Option<Mapped> {
    let (code, message, cause) = match e {
        DbError::Server(s) => return Some(map_server(s)),
        DbError::ConnectionClosed => ("P1017", "Server has closed the connection.".to_owned(), object([("kind", "ConnectionClosed".into())])),
        DbError::Timeout => ("P1008", "Operation has timed out".to_owned(), object([("kind", "SocketTimeout".into())])),
        DbError::Unreachable { host, port } => {
            let address = match (host, port) {
                (Some(h), Some(p)) => Some(format!("{h}:{p}")),
                (Some(h), None) => Some(h.clone()),
                _ => None,
            };
            let msg = match &address {
                Some(a) => format!("Can't reach database server at {a}"),
                None => "Can't reach database server".to_owned(),
            };
            let cause = object([
                ("kind", "DatabaseNotReachable".into()),
                ("host", opt(host.as_deref())),
                ("port", port.map_or(Value::Undefined, |p| Value::Number(f64::from(p)))),
            ]);
            ("P1001", msg, cause)
        }
        DbError::Tls { reason } => {
            ("P1011", format!("Error opening a TLS connection: {reason}"), object([("kind", "TlsConnectionError".into()), ("reason", reason.as_str().into())]))
        }
        DbError::ParameterLimit | DbError::Other(_) => return None,
    };
    Some(Mapped { code, message, cause, original: None, table: None })
}

fn meta_for(cause: Value, table: Option<String>) -> Value {
    let dae = object([("name", Value::from("DriverAdapterError")), ("cause", cause)]);
    let mut pairs = vec![("driverAdapterError", dae)];
    if let Some(t) = table {
        pairs.push(("table", Value::String(t)));
    }
    object(pairs)
}

fn finish(m: Mapped, raw: bool) -> Error {
    if raw {
        let (code, msg) = m.original.unwrap_or_else(|| ("N/A".into(), m.message.clone()));
        let message = format!("Raw query failed. Code: `{code}`. Message: `{msg}`");
        return Error::known("P2010", message, meta_for(m.cause, None));
    }
    Error::known(m.code, m.message, meta_for(m.cause, m.table))
}

/// Map an executor error to the error Prisma reports. `raw` is true for `rawSql` statements.
pub(crate) fn map_db_error(e: &DbError, raw: bool) -> Error {
    if matches!(e, DbError::ParameterLimit) {
        // Raw queries included: the statement never reached the database, so there is no
        // database error for P2010 to wrap.
        return Error::parameter_limit();
    }
    match map_other(e) {
        Some(m) => finish(m, raw),
        None => Error::internal(e.to_string()),
    }
}

/// A result column of a built-in type Prisma cannot deserialize (`point`, `interval`, …).
pub(crate) fn unsupported_type(type_name: &str, raw: bool) -> Error {
    let message = format!(
        "Failed to deserialize column of type '{type_name}'. If you're using $queryRaw and this column is explicitly marked as `Unsupported` in your Prisma schema, try casting this column to any supported Prisma type such as `String`."
    );
    let cause = object([("kind", "UnsupportedNativeDataType".into()), ("type", type_name.into())]);
    finish(Mapped { code: "P2010", message, cause, original: None, table: None }, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_matches_capture() {
        let mut e = ServerError::new("23505", "duplicate key value violates unique constraint \"User_email_key\"");
        e.constraint = Some("User_email_key".into());
        e.table = Some("User".into());
        let err = map_db_error(&DbError::Server(Box::new(e)), false);
        assert_eq!(
            err.body_json(),
            r#"{"code":"P2002","error":"Unique constraint failed on the constraint: `User_email_key`","meta":{"driverAdapterError":{"name":"DriverAdapterError","cause":{"originalCode":"23505","originalMessage":"duplicate key value violates unique constraint \"User_email_key\"","kind":"UniqueConstraintViolation","constraint":{"index":"User_email_key"},"table":"User"}},"table":"User"}}"#
        );
    }

    #[test]
    fn parameter_limit_is_p2029_for_raw_and_model_queries() {
        for raw in [true, false] {
            let err = map_db_error(&DbError::ParameterLimit, raw);
            assert_eq!(err.code(), "P2029");
            assert_eq!(err.http_status(), 400);
        }
    }

    #[test]
    fn column_unquoting() {
        assert_eq!(unquote_identifiers("\"User\".\"na\"\"me\""), "User.na\"me");
    }
}
