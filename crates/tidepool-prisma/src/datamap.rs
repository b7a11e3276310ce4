//! `dataMap`: shaping rows into the client's result with `$type`-tagged values.
//!
//! Follows Prisma's data mapper and then the reference executor's output normalisation in one
//! step: `DateTime` values are printed as `toISOString()` (milliseconds, `Z`), `Decimal` as
//! decimal.js prints it, `BigInt` as a string, `Bytes` as base64, `Json` re-serialised compactly.
//! Mapping failures are P2023 errors with Prisma's messages.

use base64::Engine as _;

use crate::datetime::{format_iso_millis, normalize_datetime_text, parse_js_date};
use crate::decimal::canonical_decimal;
use crate::error::{Error, Result};
use crate::json::{self, format_number, object, Map, Value};
use crate::plan::{BytesEncoding, Enums, FieldKind, FieldType, ResultNode};

pub(crate) struct DataMapper<'a> {
    pub enums: &'a Enums,
    pub json_depth: usize,
}

fn tagged(ty: &str, value: String) -> Value {
    object([("$type", Value::from(ty)), ("value", Value::String(value))])
}

/// JavaScript `Number(string)`.
pub(crate) fn js_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'-' => (-1.0, &t[1..]),
        b'+' => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix).map_or(f64::NAN, |v| v as f64);
        }
    }
    let valid = body.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !valid || body.starts_with(['e', 'E']) {
        return f64::NAN;
    }
    body.parse::<f64>().map_or(f64::NAN, |v| sign * v)
}

fn shown(v: &Value) -> String {
    match v {
        Value::Object(_) => "[object Object]".into(),
        Value::List(items) => items.iter().map(|i| if i.is_null_or_undefined() { String::new() } else { shown(i) }).collect::<Vec<_>>().join(","),
        other => other.to_js_string(),
    }
}

fn mismatch(what: &str, col: &str, v: &Value) -> Error {
    Error::data_mapper(format!("Expected {what} in column '{col}', got {}: {}", v.type_name(), shown(v)))
}

impl DataMapper<'_> {
    pub fn apply(&self, data: Value, structure: &ResultNode) -> Result<Value> {
        match structure {
            ResultNode::AffectedRows => match data {
                Value::Number(n) => Ok(object([("count", Value::Number(n))])),
                other => Err(Error::data_mapper(format!("Expected an affected rows count, got: {} ({})", other.type_name(), shown(&other)))),
            },
            ResultNode::Object { fields, skip_nulls, .. } => self.array_or_object(data, fields, *skip_nulls),
            ResultNode::Field { field_type, .. } => self.value(data, "<result>", field_type),
        }
    }

    fn array_or_object(&self, data: Value, fields: &indexmap::IndexMap<String, ResultNode>, skip_nulls: bool) -> Result<Value> {
        match data {
            Value::Null => Ok(Value::Null),
            Value::List(rows) => {
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    if skip_nulls && row.is_null_or_undefined() {
                        continue;
                    }
                    out.push(self.object(&row, fields)?);
                }
                Ok(Value::List(out))
            }
            Value::Object(_) => self.object(&data, fields),
            Value::String(s) => {
                let decoded = json::parse(s.as_bytes(), self.json_depth)
                    .map_err(|_| Error::data_mapper("Expected an array or object, got a string that is not valid JSON"))?;
                self.array_or_object(decoded, fields, skip_nulls)
            }
            other => Err(Error::data_mapper(format!("Expected an array or an object, got: {}", other.type_name()))),
        }
    }

    fn object(&self, row: &Value, fields: &indexmap::IndexMap<String, ResultNode>) -> Result<Value> {
        let Value::Object(data) = row else {
            return Err(Error::data_mapper(format!("Expected an object, but got '{}'", row.type_name())));
        };
        let mut out = Map::with_capacity(fields.len());
        for (name, node) in fields {
            let v = match node {
                ResultNode::AffectedRows => {
                    return Err(Error::data_mapper(format!("Unexpected 'AffectedRows' node in data mapping for field '{name}'")));
                }
                ResultNode::Object { fields: inner, serialized_name, skip_nulls } => {
                    let target = match serialized_name {
                        Some(s) => data.get(s).cloned().ok_or_else(|| {
                            Error::data_mapper(format!(
                                "Missing data field (Object): '{name}'; node: {{\"type\":\"object\",\"serializedName\":\"{s}\"}}; data: {}",
                                row.to_json()
                            ))
                        })?,
                        None => row.clone(),
                    };
                    self.array_or_object(target, inner, *skip_nulls)?
                }
                ResultNode::Field { db_name, field_type } => {
                    let v = data.get(db_name).ok_or_else(|| {
                        Error::data_mapper(format!(
                            "Missing data field (Value): '{db_name}'; node: {{\"type\":\"field\",\"dbName\":\"{db_name}\"}}; data: {}",
                            row.to_json()
                        ))
                    })?;
                    self.field(v.clone(), db_name, field_type)?
                }
            };
            out.insert(name.clone(), v);
        }
        Ok(Value::Object(out))
    }

    fn field(&self, v: Value, col: &str, ft: &FieldType) -> Result<Value> {
        if v.is_null_or_undefined() {
            return Ok(if ft.is_list { Value::List(Vec::new()) } else { Value::Null });
        }
        if ft.is_list {
            let Value::List(items) = v else { return Err(mismatch("a list", col, &v)) };
            return items.into_iter().enumerate().map(|(i, x)| self.value(x, &format!("{col}[{i}]"), ft)).collect::<Result<_>>().map(Value::List);
        }
        self.value(v, col, ft)
    }

    fn value(&self, v: Value, col: &str, ft: &FieldType) -> Result<Value> {
        Ok(match &ft.kind {
            FieldKind::Unsupported => v,
            FieldKind::String => match v {
                Value::String(_) => v,
                other => return Err(mismatch("a string", col, &other)),
            },
            FieldKind::Int => match &v {
                Value::Number(n) => Value::Number(n.trunc()),
                Value::String(s) => {
                    let n = js_number(s).trunc();
                    if !n.is_finite() {
                        return Err(Error::data_mapper(format!("Expected an integer in column '{col}', got string: {s}")));
                    }
                    if n.abs() > 9_007_199_254_740_991.0 {
                        return Err(Error::data_mapper(format!(
                            "Integer value in column '{col}' is too large to represent as a JavaScript number without loss of precision, got: {s}. Consider using BigInt type."
                        )));
                    }
                    Value::Number(n)
                }
                other => return Err(mismatch("an integer", col, other)),
            },
            FieldKind::BigInt => match &v {
                Value::Number(n) => tagged("BigInt", format_number(*n)),
                Value::String(s) => tagged("BigInt", s.clone()),
                other => return Err(mismatch("a bigint", col, other)),
            },
            FieldKind::Float => match &v {
                Value::Number(_) => v,
                Value::String(s) => {
                    let n = js_number(s);
                    let lower = s.to_ascii_lowercase();
                    if n.is_nan() && !matches!(lower.trim_start_matches(['+', '-']), "nan") {
                        return Err(Error::data_mapper(format!("Expected a float in column '{col}', got string: {s}")));
                    }
                    Value::Number(n)
                }
                other => return Err(mismatch("a float", col, other)),
            },
            FieldKind::Boolean => match &v {
                Value::Bool(_) => v,
                Value::Number(n) => Value::Bool(*n == 1.0),
                Value::String(s) => match s.as_str() {
                    "true" | "TRUE" | "1" => Value::Bool(true),
                    "false" | "FALSE" | "0" => Value::Bool(false),
                    _ => return Err(mismatch("a boolean", col, &v)),
                },
                Value::Bytes(b) => Value::Bool(b.iter().any(|x| *x != 0)),
                Value::List(items) => Value::Bool(items.iter().any(|x| x.as_f64().is_some_and(|n| n != 0.0))),
                other => return Err(mismatch("a boolean", col, other)),
            },
            FieldKind::Decimal => {
                let text = match &v {
                    Value::Number(n) => format_number(*n),
                    Value::String(s) => s.clone(),
                    other => return Err(mismatch("a decimal", col, other)),
                };
                let canon = canonical_decimal(&text).ok_or_else(|| Error::internal(format!("[DecimalError] Invalid argument: {text}")))?;
                tagged("Decimal", canon)
            }
            FieldKind::DateTime => {
                let ms = match &v {
                    Value::String(s) => parse_js_date(&normalize_datetime_text(s)),
                    Value::Number(n) if n.is_finite() => Some(*n as i64),
                    Value::Date(ms) => Some(*ms),
                    other => return Err(mismatch("a date", col, other)),
                };
                let ms = ms.ok_or_else(|| Error::internal("Invalid time value"))?;
                tagged("DateTime", format_iso_millis(ms))
            }
            FieldKind::Object => tagged("Json", v.to_json()),
            FieldKind::Json => {
                let text = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_js_string(),
                };
                let parsed =
                    json::parse(text.as_bytes(), self.json_depth).map_err(|e| Error::internal(format!("Invalid JSON value in column '{col}': {e}")))?;
                tagged("Json", parsed.to_json())
            }
            FieldKind::Bytes(encoding) => {
                let bytes = match &v {
                    Value::Bytes(b) => b.clone(),
                    Value::String(s) if s.starts_with("\\x") || *encoding == BytesEncoding::Hex => {
                        crate::decode::decode_hex_bytea(s).filter(|_| s.starts_with("\\x")).ok_or_else(|| mismatch("a hex-encoded byte array", col, &v))?
                    }
                    Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| mismatch("a base64-encoded byte array", col, &v))?,
                    Value::List(items) => {
                        items.iter().map(|x| x.as_f64().map(|n| n as u8)).collect::<Option<Vec<u8>>>().ok_or_else(|| mismatch("a byte array", col, &v))?
                    }
                    other => return Err(mismatch("a byte array", col, other)),
                };
                tagged("Bytes", base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            FieldKind::Enum(name) => {
                let def = self.enums.get(name).ok_or_else(|| Error::data_mapper(format!("Unknown enum '{name}'")))?;
                let key = shown(&v);
                let mapped = def.get(&key).ok_or_else(|| Error::data_mapper(format!("Value '{key}' not found in enum '{name}'")))?;
                Value::String(mapped.clone())
            }
        })
    }
}
