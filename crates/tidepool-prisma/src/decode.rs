//! Text-format result decoding by type OID, as `@prisma/adapter-pg` hands values to Prisma.
//!
//! Two consumers: plan `query` nodes get rows as objects whose values follow the adapter's
//! conversions (int8 and numeric as strings, timestamps as `…T…+00:00`, JSON as unparsed text,
//! bytea as bytes); raw queries (`$queryRaw`) get `{columns, types, rows}` where JSON is parsed
//! and bytes print as base64. Arrays (`{…}` text, quoting, `NULL`, nesting) decode element-wise.

use crate::db::{Column, Rows};
use crate::error::{Error, Result};
use crate::json::{self, Map, Value};

/// Scalar categories the adapter distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    BigInt,
    Float,
    Double,
    Numeric,
    Money,
    Bool,
    Text,
    Uuid,
    Char,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Json,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    Scalar(Kind),
    Array(Kind),
}

/// First OID of user-defined types as the adapter treats them (enums, domains, extensions).
const FIRST_CUSTOM_OID: u32 = 10_000;

fn classify(oid: u32) -> std::result::Result<ColType, &'static str> {
    use ColType::{Array as A, Scalar as S};
    use Kind::*;
    Ok(match oid {
        0 => S(Text),
        21 | 23 => S(Int),
        20 | 26 => S(BigInt),
        700 => S(Float),
        701 => S(Double),
        1700 => S(Numeric),
        790 => S(Money),
        16 => S(Bool),
        25 | 1043 | 1042 | 19 | 869 | 650 | 1560 | 1562 | 142 => S(Text),
        2950 => S(Uuid),
        1082 => S(Date),
        1083 => S(Time),
        1266 => S(TimeTz),
        1114 => S(Timestamp),
        1184 => S(TimestampTz),
        114 | 3802 => S(Json),
        17 => S(Bytes),
        1005 | 1007 => A(Int),
        1016 | 1028 => A(BigInt),
        1021 => A(Float),
        1022 => A(Double),
        1231 => A(Numeric),
        791 => A(Money),
        1000 => A(Bool),
        1002 => A(Char),
        1009 | 1015 | 1014 | 1003 | 1041 | 651 | 1561 | 1563 | 143 => A(Text),
        2951 => A(Uuid),
        1182 => A(Date),
        1183 => A(Time),
        1270 => A(TimeTz),
        1115 => A(Timestamp),
        1185 => A(TimestampTz),
        199 | 3807 => A(Json),
        1001 => A(Bytes),
        o if o >= FIRST_CUSTOM_OID => S(Text),
        o => return Err(builtin_type_name(o)),
    })
}

/// Names of built-in types Prisma cannot deserialize (for the P2010 message).
fn builtin_type_name(oid: u32) -> &'static str {
    match oid {
        18 => "char",
        22 => "int2vector",
        24 => "regproc",
        27 => "tid",
        28 => "xid",
        29 => "cid",
        30 => "oidvector",
        194 => "pg_node_tree",
        600 => "point",
        601 => "lseg",
        602 => "path",
        603 => "box",
        604 => "polygon",
        628 => "line",
        705 => "unknown",
        718 => "circle",
        774 => "macaddr8",
        829 => "macaddr",
        1033 => "aclitem",
        1186 => "interval",
        1790 => "refcursor",
        2205 => "regclass",
        2206 => "regtype",
        2249 => "record",
        2278 => "void",
        3220 => "pg_lsn",
        3614 => "tsvector",
        3615 => "tsquery",
        3904 => "int4range",
        3906 => "numrange",
        3908 => "tsrange",
        3910 => "tstzrange",
        3912 => "daterange",
        3926 => "int8range",
        4072 => "jsonpath",
        5069 => "xid8",
        _ => "Unknown",
    }
}

fn raw_type_name(t: ColType) -> &'static str {
    use Kind::*;
    match t {
        ColType::Scalar(k) => match k {
            Int => "int",
            BigInt => "bigint",
            Float => "float",
            Double => "double",
            Numeric | Money => "decimal",
            Bool => "bool",
            Text => "string",
            Uuid => "uuid",
            Char => "char",
            Date => "date",
            Time | TimeTz => "time",
            Timestamp | TimestampTz => "datetime",
            Json => "json",
            Bytes => "bytes",
        },
        ColType::Array(k) => match k {
            Int => "int-array",
            BigInt => "bigint-array",
            Float => "float-array",
            Double => "double-array",
            Numeric | Money => "decimal-array",
            Bool => "bool-array",
            Text => "string-array",
            Uuid => "uuid-array",
            Char => "char-array",
            Date => "date-array",
            Time | TimeTz => "time-array",
            Timestamp | TimestampTz => "datetime-array",
            Json => "json-array",
            Bytes => "bytes-array",
        },
    }
}

fn bad_value(what: &str, text: &str) -> Error {
    let shown: String = text.chars().take(64).collect();
    Error::internal(format!("Cannot decode {what} value from the database: {shown:?}"))
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Remove a trailing `+HH[:MM[:SS]]` / `-HH…` zone from a time or timestamp.
fn strip_zone(text: &str) -> &str {
    if !text.is_ascii() {
        return text;
    }
    let time_start = text.rfind(':').map_or(0, |i| i.saturating_sub(5));
    match text[time_start..].rfind(['+', '-']) {
        Some(i) if time_start + i > 0 => &text[..time_start + i],
        _ => text,
    }
}

fn timestamp_text(text: &str, zoned: bool) -> String {
    if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return text.to_owned(); // infinity / -infinity
    }
    let base = if zoned { strip_zone(text) } else { text };
    format!("{}+00:00", base.replacen(' ', "T", 1))
}

pub(crate) fn decode_hex_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        return (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    }
    // Legacy escape format.
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
                out.push(u8::from_str_radix(oct, 8).ok()?);
                i += 4;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn scalar(kind: Kind, text: &str, raw: bool, json_depth: usize) -> Result<Value> {
    use Kind::*;
    Ok(match kind {
        Int | Float | Double => Value::Number(parse_float(text).ok_or_else(|| bad_value("numeric", text))?),
        BigInt | Numeric | Text | Uuid | Char | Date | Time => Value::String(text.to_owned()),
        Money => Value::String(text.chars().skip(1).collect()),
        Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(bad_value("boolean", text)),
        },
        TimeTz => Value::String(strip_zone(text).to_owned()),
        Timestamp => Value::String(timestamp_text(text, false)),
        TimestampTz => Value::String(timestamp_text(text, true)),
        Json if raw => json::parse(text.as_bytes(), json_depth).map_err(|_| bad_value("json", text))?,
        Json => Value::String(text.to_owned()),
        Bytes => Value::Bytes(decode_hex_bytea(text).ok_or_else(|| bad_value("bytea", text))?),
    })
}

/// Parse PostgreSQL array text (`{a,"b c",NULL,{…}}`, optional `[1:2]=` prefix).
fn parse_array(text: &str, depth_limit: usize, elem: &mut dyn FnMut(&str) -> Result<Value>) -> Result<Value> {
    let body = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let b = body.as_bytes();
    let mut i = 0;
    let v = array_level(b, &mut i, 0, depth_limit, elem)?;
    if i != b.len() {
        return Err(bad_value("array", text));
    }
    Ok(v)
}

fn array_level(b: &[u8], i: &mut usize, depth: usize, limit: usize, elem: &mut dyn FnMut(&str) -> Result<Value>) -> Result<Value> {
    let err = || bad_value("array", &String::from_utf8_lossy(b));
    if depth >= limit || b.get(*i) != Some(&b'{') {
        return Err(err());
    }
    *i += 1;
    let mut items = Vec::new();
    if b.get(*i) == Some(&b'}') {
        *i += 1;
        return Ok(Value::List(items));
    }
    loop {
        while b.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
        match b.get(*i) {
            Some(b'{') => items.push(array_level(b, i, depth + 1, limit, elem)?),
            Some(b'"') => {
                *i += 1;
                let mut s = Vec::new();
                loop {
                    match b.get(*i) {
                        None => return Err(err()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            s.push(*b.get(*i + 1).ok_or_else(err)?);
                            *i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            *i += 1;
                        }
                    }
                }
                *i += 1;
                items.push(elem(&String::from_utf8_lossy(&s))?);
            }
            Some(_) => {
                let start = *i;
                while !matches!(b.get(*i), None | Some(b',' | b'}')) {
                    *i += 1;
                }
                let t = String::from_utf8_lossy(&b[start..*i]);
                let t = t.trim();
                items.push(if t.eq_ignore_ascii_case("NULL") { Value::Null } else { elem(t)? });
            }
            None => return Err(err()),
        }
        while b.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
        match b.get(*i) {
            Some(b',') => *i += 1,
            Some(b'}') => {
                *i += 1;
                return Ok(Value::List(items));
            }
            _ => return Err(err()),
        }
    }
}

fn decode(t: ColType, text: &str, raw: bool, json_depth: usize) -> Result<Value> {
    match t {
        ColType::Scalar(k) => scalar(k, text, raw, json_depth),
        ColType::Array(k) => parse_array(text, 8, &mut |e| scalar(k, e, raw, json_depth)),
    }
}

fn column_types(columns: &[Column], raw: bool) -> Result<Vec<ColType>> {
    columns.iter().map(|c| classify(c.type_oid).map_err(|name| crate::db_error::unsupported_type(name, raw))).collect()
}

/// Rows as objects keyed by column name (a later duplicate name overwrites an earlier one).
pub(crate) fn rows_to_objects(rows: &Rows, json_depth: usize) -> Result<Vec<Value>> {
    let types = column_types(&rows.columns, false)?;
    rows.rows
        .iter()
        .map(|row| {
            let mut obj = Map::with_capacity(rows.columns.len());
            for ((col, t), cell) in rows.columns.iter().zip(&types).zip(row) {
                let v = match cell {
                    None => Value::Null,
                    Some(text) => decode(*t, text, false, json_depth)?,
                };
                obj.insert(col.name.clone(), v);
            }
            Ok(Value::Object(obj))
        })
        .collect()
}

/// The raw-query result `{columns, types, rows}`.
pub(crate) fn raw_result(rows: &Rows, json_depth: usize) -> Result<Value> {
    let types = column_types(&rows.columns, true)?;
    let columns = rows.columns.iter().map(|c| Value::String(c.name.clone())).collect();
    let type_names = types.iter().map(|t| Value::from(raw_type_name(*t))).collect();
    let mut out_rows = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let mut cells = Vec::with_capacity(row.len());
        for (t, cell) in types.iter().zip(row) {
            cells.push(match cell {
                None => Value::Null,
                Some(text) => decode(*t, text, true, json_depth)?,
            });
        }
        out_rows.push(Value::List(cells));
    }
    Ok(json::object([("columns", Value::List(columns)), ("types", Value::List(type_names)), ("rows", Value::List(out_rows))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(oid: u32, text: &str) -> Value {
        decode(classify(oid).unwrap(), text, false, 64).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(23, "42"), Value::Number(42.0));
        assert_eq!(dec(20, "9007199254740993"), Value::from("9007199254740993"));
        assert_eq!(dec(1700, "1.50"), Value::from("1.50"));
        assert_eq!(dec(16, "t"), Value::Bool(true));
        assert_eq!(dec(701, "NaN").as_f64().map(f64::is_nan), Some(true));
        assert_eq!(dec(1114, "2026-11-27 21:18:54.33"), Value::from("2026-11-27T21:18:54.33+00:00"));
        assert_eq!(dec(1184, "2026-11-27 21:18:54.33+00"), Value::from("2026-11-27T21:18:54.33+00:00"));
        assert_eq!(dec(1184, "2026-11-27 21:18:54-05:30"), Value::from("2026-11-27T21:18:54+00:00"));
        assert_eq!(dec(1266, "10:00:00+02"), Value::from("10:00:00"));
        assert_eq!(dec(1082, "2024-01-02"), Value::from("2024-01-02"));
        assert_eq!(dec(17, "\\xdeadbeef"), Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(dec(790, "$12.50"), Value::from("12.50"));
        assert_eq!(dec(3802, "{\"a\": 1}"), Value::from("{\"a\": 1}"));
        assert_eq!(dec(40000, "ADMIN"), Value::from("ADMIN"));
    }

    #[test]
    fn arrays() {
        assert_eq!(dec(1007, "{1,2,NULL}").to_json(), "[1,2,null]");
        assert_eq!(dec(1009, r#"{a,"b c","d\"e","NULL",NULL}"#).to_json(), r#"["a","b c","d\"e","NULL",null]"#);
        assert_eq!(dec(1007, "{{1,2},{3,4}}").to_json(), "[[1,2],[3,4]]");
        assert_eq!(dec(1007, "[0:1]={5,6}").to_json(), "[5,6]");
        assert_eq!(dec(1009, "{}").to_json(), "[]");
        assert_eq!(dec(1001, r#"{"\\x01ff"}"#), Value::List(vec![Value::Bytes(vec![1, 255])]));
        assert!(decode(classify(1007).unwrap(), "{1,2", false, 64).is_err());
        assert!(decode(classify(1007).unwrap(), "{{{{{{{{{{1}}}}}}}}}}", false, 64).is_err());
    }

    #[test]
    fn unsupported_builtin() {
        assert_eq!(classify(1186), Err("interval"));
    }
}
