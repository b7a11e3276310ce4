//! In-memory record operations: `process` (distinct, pagination with cursors, reverse,
//! per-parent grouping, nested ops), `join` stitching, `diff`, and the record-key and
//! cursor-equality rules they share (JavaScript semantics).

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use indexmap::IndexMap;

use crate::datamap::js_number;
use crate::datetime::parse_js_date;
use crate::error::{Error, Result};
use crate::json::{self, Map, Value};
use crate::plan::{InMemoryOps, JoinExpr};

/// `process` operations with cursor values already evaluated.
pub(crate) struct Ops<'a> {
    pub plan: &'a InMemoryOps,
    pub cursor: Option<Map>,
    pub nested: Vec<(&'a str, Ops<'a>)>,
}

/// `JSON.stringify(fields.map(f => record[f]))`.
pub(crate) fn record_key(record: &Value, fields: &[String]) -> String {
    Value::List(fields.iter().map(|f| record.get(f).clone()).collect()).to_json()
}

fn is_object_like(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bytes(_) | Value::Date(_) | Value::List(_) | Value::Object(_))
}

fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).ok(),
        _ => None,
    }
}

fn as_date(v: &Value) -> Option<i64> {
    match v {
        Value::Date(ms) => Some(*ms),
        Value::String(s) => parse_js_date(s),
        Value::Number(n) if n.is_finite() => Some(*n as i64),
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::String(s) => Some(js_number(s)),
        _ => None,
    }
}

/// Cross-type equality used for cursors.
pub(crate) fn key_values_match(a: &Value, b: &Value) -> bool {
    let same_primitive = std::mem::discriminant(a) == std::mem::discriminant(b) && !is_object_like(a);
    if same_primitive {
        return a == b && !matches!(a, Value::Number(n) if n.is_nan());
    }
    if matches!(a, Value::Bytes(_)) || matches!(b, Value::Bytes(_)) {
        return matches!((as_bytes(a), as_bytes(b)), (Some(x), Some(y)) if x == y);
    }
    if matches!(a, Value::Date(_)) || matches!(b, Value::Date(_)) {
        return as_date(a) == as_date(b);
    }
    if matches!(a, Value::Number(_)) || matches!(b, Value::Number(_)) {
        return matches!((as_number(a), as_number(b)), (Some(x), Some(y)) if x == y);
    }
    a == b
}

/// Keys of the smaller object must match in both.
pub(crate) fn keys_match(record: &Value, cursor: &Map) -> bool {
    let empty = Map::new();
    let rec = record.as_object().unwrap_or(&empty);
    let keys: Vec<&String> = if rec.len() < cursor.len() { rec.keys().collect() } else { cursor.keys().collect() };
    keys.into_iter().all(|k| key_values_match(record.get(k), cursor.get(k).unwrap_or(&Value::Undefined)))
}

/// `Array.prototype.slice(start, end)` bounds.
fn js_slice(len: usize, start: f64, end: f64) -> (usize, usize) {
    let clamp = |x: f64| {
        let x = if x.is_nan() { 0.0 } else { x.trunc() };
        if x < 0.0 {
            (len as f64 + x).max(0.0) as usize
        } else {
            x.min(len as f64) as usize
        }
    };
    let (s, e) = (clamp(start), clamp(end));
    (s, e.max(s))
}

fn paginate_one(list: Vec<Value>, ops: &Ops<'_>) -> Vec<Value> {
    let p = ops.plan.pagination.as_ref().expect("caller checks pagination");
    let index = match &ops.cursor {
        Some(c) => match list.iter().position(|r| keys_match(r, c)) {
            Some(i) => i,
            None => return Vec::new(),
        },
        None => 0,
    };
    let start = index as f64 + p.skip.unwrap_or(0.0);
    let end = p.take.map_or(list.len() as f64, |t| start + t);
    let (s, e) = js_slice(list.len(), start, end);
    list.into_iter().skip(s).take(e - s).collect()
}

/// Apply `process` operations to a value (list, single record, JSON text, or null).
pub(crate) fn process_records(value: Value, ops: &Ops<'_>, json_depth: usize) -> Result<Value> {
    match value {
        Value::Null | Value::Undefined => Ok(value),
        Value::String(s) => {
            let parsed = json::parse(s.as_bytes(), json_depth).map_err(|e| Error::internal(format!("Invalid JSON in process input: {e}")))?;
            process_records(parsed, ops, json_depth)
        }
        Value::List(records) => process_many(records, ops, json_depth),
        record => process_one(record, ops, json_depth),
    }
}

fn process_one(record: Value, ops: &Ops<'_>, json_depth: usize) -> Result<Value> {
    if let Some(p) = &ops.plan.pagination {
        if p.skip.is_some_and(|s| s > 0.0) || p.take == Some(0.0) {
            return Ok(Value::Null);
        }
        if ops.cursor.as_ref().is_some_and(|c| !keys_match(&record, c)) {
            return Ok(Value::Null);
        }
    }
    process_nested(record, ops, json_depth)
}

fn process_nested(mut record: Value, ops: &Ops<'_>, json_depth: usize) -> Result<Value> {
    if let Value::Object(m) = &mut record {
        for (field, nested) in &ops.nested {
            let v = m.get_mut(*field).map(std::mem::take).unwrap_or_default();
            let processed = process_records(v, nested, json_depth)?;
            m.insert((*field).to_owned(), processed);
        }
    }
    Ok(record)
}

fn process_many(mut records: Vec<Value>, ops: &Ops<'_>, json_depth: usize) -> Result<Value> {
    let plan = ops.plan;
    if let Some(distinct) = &plan.distinct {
        let mut fields = distinct.clone();
        fields.extend(plan.linking_fields.iter().flatten().cloned());
        let mut seen = HashSet::new();
        records.retain(|r| seen.insert(record_key(r, &fields)));
    }
    if plan.pagination.is_some() {
        records = match &plan.linking_fields {
            None => paginate_one(records, ops),
            Some(linking) => {
                let mut groups: IndexMap<String, Vec<Value>> = IndexMap::new();
                for r in records {
                    groups.entry(record_key(&r, linking)).or_default().push(r);
                }
                groups.sort_keys();
                groups.into_values().flat_map(|g| paginate_one(g, ops)).collect()
            }
        };
    }
    if plan.reverse {
        records.reverse();
    }
    if ops.nested.is_empty() {
        return Ok(Value::List(records));
    }
    records.into_iter().map(|r| process_nested(r, ops, json_depth)).collect::<Result<_>>().map(Value::List)
}

#[derive(Clone, Copy)]
enum Cast {
    Number,
    String,
    Boolean,
}

fn apply_cast(c: Option<Cast>, v: &Value) -> Value {
    match c {
        None => v.clone(),
        Some(Cast::Number) => Value::Number(match v {
            Value::Number(n) => *n,
            Value::String(s) => js_number(s),
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Null => 0.0,
            Value::Date(ms) => *ms as f64,
            _ => f64::NAN,
        }),
        Some(Cast::String) => Value::String(match v {
            Value::Object(_) => "[object Object]".into(),
            other => other.to_js_string(),
        }),
        Some(Cast::Boolean) => Value::Bool(match v {
            Value::Undefined | Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        }),
    }
}

fn infer_casts(parents: &[&mut Map], keys: &[String]) -> Vec<Option<Cast>> {
    keys.iter()
        .map(|k| {
            parents.iter().find_map(|p| match p.get(k) {
                Some(Value::Number(_)) => Some(Cast::Number),
                Some(Value::String(_)) => Some(Cast::String),
                Some(Value::Bool(_)) => Some(Cast::Boolean),
                _ => None,
            })
        })
        .collect()
}

fn expect_object(v: &mut Value) -> Result<&mut Map> {
    let name = v.type_name();
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::internal(format!("Expected object, got {name}"))),
    }
}

/// Attach child records to their parents under each join's `parentField`.
pub(crate) fn attach_children(mut parent: Value, children: Vec<(&JoinExpr, Value)>, strict: bool) -> Result<Value> {
    for (join, child_records) in children {
        let mut parents: Vec<&mut Map> = match &mut parent {
            Value::List(items) => items.iter_mut().map(expect_object).collect::<Result<_>>()?,
            other => vec![expect_object(other)?],
        };
        let parent_keys: Vec<String> = join.on.iter().map(|(l, _)| l.clone()).collect();
        let child_keys: Vec<String> = join.on.iter().map(|(_, r)| r.clone()).collect();
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in parents.iter_mut().enumerate() {
            let key = Value::List(parent_keys.iter().map(|k| p.get(k).cloned().unwrap_or_default()).collect()).to_json();
            index.entry(key).or_default().push(i);
            let init = if join.is_relation_unique { Value::Null } else { Value::List(Vec::new()) };
            p.insert(join.parent_field.clone(), init);
        }
        let casts = if strict { vec![None; parent_keys.len()] } else { infer_casts(&parents, &parent_keys) };
        let child_list = match child_records {
            Value::List(items) => items,
            other => vec![other],
        };
        for child in child_list {
            if matches!(child, Value::Null) {
                continue;
            }
            let Value::Object(cm) = &child else {
                return Err(Error::internal(format!("Expected object, got {}", child.type_name())));
            };
            let key_values = child_keys.iter().zip(&casts).map(|(k, c)| apply_cast(*c, cm.get(k).unwrap_or(&Value::Undefined))).collect();
            let Some(matching) = index.get(&Value::List(key_values).to_json()) else { continue };
            for &i in matching {
                let slot = parents[i].entry(join.parent_field.clone()).or_default();
                match slot {
                    Value::List(items) if !join.is_relation_unique => items.push(child.clone()),
                    _ => *slot = child.clone(),
                }
            }
        }
    }
    Ok(parent)
}

/// Elements of `from` whose key (values of `fields`) does not occur in `to`.
pub(crate) fn diff(from: Value, to: &Value, fields: &[String]) -> Value {
    let as_list = |v: Value| match v {
        Value::List(items) => items,
        other => vec![other],
    };
    let key = |v: &Value| (!matches!(v, Value::Null)).then(|| record_key(v, fields));
    let to_keys: HashSet<Option<String>> = as_list(to.clone()).iter().map(key).collect();
    Value::List(as_list(from).into_iter().filter(|item| !to_keys.contains(&key(item))).collect())
}
