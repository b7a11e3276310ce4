//! Parameter binding: evaluated argument values → text-format [`Param`]s.
//!
//! Mirrors `@prisma/adapter-pg`: `null` is SQL NULL; strings, enums and uuids pass through;
//! numbers print like JavaScript; booleans print `true`/`false`; `json` values are JSON text;
//! `datetime` values become naive UTC text shaped by `dbType`; `bytes` (base64 on the wire)
//! become `\x…` hex; `list` arity builds an array literal with every non-null element quoted.
//!
//! By default every parameter is sent with type OID 0 so PostgreSQL infers the type from the SQL
//! context, exactly as the reference executor does. [`crate::Limits::typed_params`] switches to
//! OIDs derived from `scalarType`/`dbType` for types where that is safe.

use base64::Engine as _;

use crate::datetime::{format_db_datetime, parse_js_date};
use crate::db::Param;
use crate::error::{Error, Result};
use crate::json::{format_number, Value};
use crate::plan::{ArgType, Arity, ScalarType};

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn datetime_text(v: &Value, db_type: Option<&str>) -> Result<String> {
    let ms = match v {
        Value::Date(ms) => Some(*ms),
        Value::String(s) => parse_js_date(s),
        Value::Number(n) if n.is_finite() => Some(*n as i64),
        _ => None,
    };
    ms.and_then(|ms| format_db_datetime(ms, db_type)).ok_or_else(|| Error::plan(format!("Invalid date value for a datetime parameter: {}", v.to_js_string())))
}

fn bytes_text(v: &Value) -> Result<String> {
    match v {
        Value::Bytes(b) => Ok(hex(b)),
        Value::String(s) => {
            base64::engine::general_purpose::STANDARD.decode(s).map(|b| hex(&b)).map_err(|_| Error::plan("Invalid base64 value for a bytes parameter"))
        }
        Value::List(items) => {
            let bytes: Option<Vec<u8>> = items.iter().map(|i| i.as_f64().filter(|n| (0.0..=255.0).contains(n)).map(|n| n as u8)).collect();
            bytes.map(|b| hex(&b)).ok_or_else(|| Error::plan("Invalid byte array for a bytes parameter"))
        }
        other => Ok(other.to_js_string()),
    }
}

/// Text for one non-list value; `None` is NULL.
fn scalar_text(v: &Value, scalar: ScalarType, db_type: Option<&str>) -> Result<Option<String>> {
    if v.is_null_or_undefined() {
        return Ok(None);
    }
    Ok(Some(match scalar {
        ScalarType::DateTime => datetime_text(v, db_type)?,
        ScalarType::Bytes => bytes_text(v)?,
        ScalarType::Json => match v {
            Value::String(s) => s.clone(),
            other => other.to_json(),
        },
        _ => match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => format_number(*n),
            Value::Bool(b) => b.to_string(),
            Value::Bytes(b) => hex(b),
            Value::Date(ms) => crate::datetime::format_iso_millis(*ms),
            other => other.to_json(),
        },
    }))
}

fn array_literal(items: &[Value], scalar: ScalarType, db_type: Option<&str>, out: &mut String) -> Result<()> {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::List(inner) => array_literal(inner, scalar, db_type, out)?,
            other => match scalar_text(other, scalar, db_type)? {
                None => out.push_str("NULL"),
                Some(text) => {
                    out.push('"');
                    for c in text.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            },
        }
    }
    out.push('}');
    Ok(())
}

fn type_oid(ty: &ArgType) -> u32 {
    let db = ty.db_type.as_deref().map(str::to_ascii_uppercase).unwrap_or_default();
    let (scalar_oid, array_oid) = match ty.scalar {
        ScalarType::Int => (23, 1007),
        ScalarType::BigInt => (20, 1016),
        ScalarType::Float => (701, 1022),
        ScalarType::Decimal => (1700, 1231),
        ScalarType::Boolean => (16, 1000),
        ScalarType::Uuid => (2950, 2951),
        ScalarType::Bytes => (17, 1001),
        ScalarType::DateTime if db.starts_with("DATE") => (1082, 1182),
        ScalarType::DateTime if db.starts_with("TIMETZ") => (1266, 1270),
        ScalarType::DateTime if db.starts_with("TIMESTAMPTZ") => (1184, 1185),
        ScalarType::DateTime if db.starts_with("TIME") && !db.starts_with("TIMESTAMP") => (1083, 1183),
        ScalarType::DateTime => (1114, 1115),
        ScalarType::String | ScalarType::Enum | ScalarType::Json | ScalarType::Unknown => (0, 0),
    };
    match ty.arity {
        Arity::Scalar => scalar_oid,
        Arity::List => array_oid,
    }
}

/// Encode one evaluated argument with its declared type.
pub(crate) fn encode_param(value: &Value, ty: &ArgType, typed: bool) -> Result<Param> {
    let db_type = ty.db_type.as_deref();
    // Like node-postgres, an array value becomes an array literal whatever the declared arity
    // (Prisma sends `hasEvery`/`hasSome` lists with a scalar `argType`).
    let text = match (ty.scalar, value) {
        (ScalarType::Json, _) | (ScalarType::Bytes, Value::Bytes(_)) => scalar_text(value, ty.scalar, db_type)?,
        (_, Value::List(items)) => {
            let mut s = String::new();
            array_literal(items, ty.scalar, db_type, &mut s)?;
            Some(s)
        }
        _ => scalar_text(value, ty.scalar, db_type)?,
    };
    Ok(Param { type_oid: if typed { type_oid(ty) } else { 0 }, value: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(arity: Arity, scalar: ScalarType, db: Option<&str>) -> ArgType {
        ArgType { arity, scalar, db_type: db.map(str::to_owned) }
    }

    fn enc(v: Value, scalar: ScalarType, db: Option<&str>) -> Option<String> {
        encode_param(&v, &at(Arity::Scalar, scalar, db), false).unwrap().value
    }

    #[test]
    fn scalar_encodings() {
        assert_eq!(enc(Value::Null, ScalarType::String, None), None);
        assert_eq!(enc("x".into(), ScalarType::String, None).unwrap(), "x");
        assert_eq!(enc(42.0.into(), ScalarType::Int, None).unwrap(), "42");
        assert_eq!(enc(1.5.into(), ScalarType::Float, None).unwrap(), "1.5");
        assert_eq!(enc("9007199254740993".into(), ScalarType::BigInt, None).unwrap(), "9007199254740993");
        assert_eq!(enc(true.into(), ScalarType::Boolean, None).unwrap(), "true");
        assert_eq!(enc("{\"a\":1}".into(), ScalarType::Json, None).unwrap(), "{\"a\":1}");
        assert_eq!(enc("2026-11-27T21:18:54.330Z".into(), ScalarType::DateTime, Some("TIMESTAMP")).unwrap(), "2026-11-27 21:18:54.330");
        assert_eq!(enc("2026-11-27T21:18:54.000Z".into(), ScalarType::DateTime, Some("DATE")).unwrap(), "2026-11-27");
        assert_eq!(enc("3q2+7w==".into(), ScalarType::Bytes, None).unwrap(), "\\xdeadbeef");
        assert!(encode_param(&"not-a-date".into(), &at(Arity::Scalar, ScalarType::DateTime, None), false).is_err());
    }

    #[test]
    fn list_encodings() {
        let v = Value::List(vec!["x".into(), "y z".into(), Value::Null, "q\"\\".into()]);
        let p = encode_param(&v, &at(Arity::List, ScalarType::String, None), false).unwrap();
        assert_eq!(p.value.unwrap(), r#"{"x","y z",NULL,"q\"\\"}"#);
        let v = Value::List(vec![Value::List(vec![1.0.into()]), Value::List(vec![2.0.into()])]);
        let p = encode_param(&v, &at(Arity::List, ScalarType::Int, None), true).unwrap();
        assert_eq!(p.value.unwrap(), r#"{{"1"},{"2"}}"#);
        assert_eq!(p.type_oid, 1007);
    }
}
