//! Prisma 5/6 engine response shapes: results wrapped as `{"data":{"<action><Model>":…}}`,
//! query errors as HTTP 200 `{"errors":[{user_facing_error:{…}}]}` with the `meta` fields the
//! 5.x query engine sent (`target` on P2002, `field_name` on P2003), DataProxy service errors
//! (`EngineNotStarted`, `InvalidRequestError`, …) as non-2xx bodies, and the compacted-batch split.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

pub fn json(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"data":{"<key>":<data>}}` with `data` spliced in as the JSON text it already is.
pub fn data(key: &str, data: &[u8]) -> Response {
    json_bytes(StatusCode::OK, data_text(key, data))
}

/// The text of `{"data":{"<key>":<data>}}`.
pub fn data_text(key: &str, data: &[u8]) -> Vec<u8> {
    let key = Value::from(key).to_string();
    let mut body = Vec::with_capacity(data.len() + key.len() + 12);
    body.extend_from_slice(b"{\"data\":{");
    body.extend_from_slice(key.as_bytes());
    body.push(b':');
    body.extend_from_slice(data);
    body.extend_from_slice(b"}}");
    body
}

/// A JSON reply whose body is already encoded.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The reply that makes a client upload its schema (`PUT …/schema`) and retry.
pub fn schema_missing() -> Response {
    json(StatusCode::NOT_FOUND, &json!({"EngineNotStarted": {"reason": "SchemaMissing"}}))
}

/// A request the DataProxy refuses (client: P5011 "Invalid request").
pub fn invalid_request(status: StatusCode, reason: impl Into<String>) -> Response {
    json(status, &json!({"InvalidRequestError": {"reason": reason.into()}}))
}

/// The compiler cannot start (client: P5014 "engine startup error").
pub fn startup_error(msg: impl Into<String>) -> Response {
    json(StatusCode::SERVICE_UNAVAILABLE, &json!({"EngineStartupError": {"msg": msg.into(), "logs": []}}))
}

/// A service error with a code (non-2xx; the client keeps code and message, without meta).
pub fn service_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, &json!({"is_panic": false, "message": message, "error_code": code}))
}

/// The key a result is wrapped under: raw queries must be `queryRaw` / `executeRaw`.
pub fn data_key(action: &str, model: Option<&str>) -> String {
    match model {
        Some(m) if action != "queryRaw" && action != "executeRaw" => format!("{action}{m}"),
        _ => action.to_owned(),
    }
}

/// One `errors[]` entry in the 5.x engine's shape.
pub fn error_entry(code: Option<&str>, message: &str, meta: Value, model: Option<&str>, batch_idx: Option<usize>) -> Value {
    let mut user = Map::new();
    user.insert("is_panic".into(), Value::Bool(false));
    user.insert("message".into(), message.into());
    user.insert("meta".into(), engine_meta(code, meta, model));
    if let Some(c) = code {
        user.insert("error_code".into(), c.into());
    }
    if let Some(i) = batch_idx {
        user.insert("batch_request_idx".into(), i.into());
    }
    json!({"error": message, "user_facing_error": user})
}

/// The constraint object of a Prisma 7 driver-adapter error (`{index}` or `{fields}`).
fn constraint(meta: &Value) -> Option<&Value> {
    meta.pointer("/driverAdapterError/cause/constraint")
}

/// Field names of a unique/foreign-key constraint: the `fields` list, or the Prisma naming
/// convention `<Table>_<fields>_key|fkey` for an index name.
fn constraint_fields(meta: &Value) -> Vec<String> {
    let Some(c) = constraint(meta) else { return Vec::new() };
    if let Some(fields) = c.get("fields").and_then(Value::as_array) {
        return fields.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    }
    let Some(index) = c.get("index").and_then(Value::as_str) else { return Vec::new() };
    let table = meta.get("table").and_then(Value::as_str).unwrap_or("");
    let middle = index.strip_prefix(table).and_then(|r| r.strip_prefix('_')).and_then(|r| r.strip_suffix("_key").or_else(|| r.strip_suffix("_fkey")));
    match middle {
        Some(m) if !m.is_empty() => m.split('_').map(str::to_owned).collect(),
        _ => vec![index.to_owned()],
    }
}

/// Prisma 7's driver-adapter `meta` rewritten as the 5.x query engine reported it.
fn engine_meta(code: Option<&str>, meta: Value, model: Option<&str>) -> Value {
    let model_name = || model.map(Value::from).unwrap_or(Value::Null);
    match code {
        Some("P2002") => json!({"modelName": model_name(), "target": constraint_fields(&meta)}),
        Some("P2003") => {
            let name = match constraint(&meta) {
                Some(c) => match c.get("index").and_then(Value::as_str) {
                    Some(i) => format!("{i} (index)"),
                    None => constraint_fields(&meta).join(", "),
                },
                None => "(not available)".to_owned(),
            };
            json!({"modelName": model_name(), "field_name": name})
        }
        Some("P2011") => {
            let fields = constraint_fields(&meta);
            json!({"modelName": model_name(), "constraint": fields})
        }
        _ => {
            let mut m = match meta {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(model) = model {
                m.entry("modelName").or_insert_with(|| model.into());
            }
            Value::Object(m)
        }
    }
}

/// Comparable text of a key value (`1`, `"1"` and `{"$type":"BigInt","value":"1"}` match).
/// `{"prisma__type":"param","prisma__value":{"name":"%1",…}}` (the compiler's encoding of a
/// placeholder) → the bound value. Compiler output: nesting bounded all the same.
fn bind(v: &Value, params: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Object(o) if o.get("prisma__type").and_then(Value::as_str) == Some("param") => {
            let name = o.get("prisma__value").and_then(|x| x.get("name")).and_then(Value::as_str).unwrap_or("");
            params.get(name).cloned().unwrap_or(Value::Null)
        }
        Value::Object(o) if depth < 32 => Value::Object(o.iter().map(|(k, x)| (k.clone(), bind(x, params, depth + 1))).collect()),
        Value::Array(a) if depth < 32 => Value::Array(a.iter().map(|x| bind(x, params, depth + 1)).collect()),
        other => other.clone(),
    }
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("$type") => o.get("value").map(key_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Splits the rows of a compacted batch (one `findUnique` per argument set) back into one result
/// per request: the row whose `keys` equal the arguments, else `null` (or P2025 when
/// `expectNonEmpty`). Fields outside `nestedSelection` (keys fetched only to match) are dropped.
/// `params` are the values of the placeholders a parameterized batch's arguments carry.
pub fn split_compacted(rows: &Value, compiled: &Value, params: &Map<String, Value>) -> Vec<Result<Value, (String, String)>> {
    let empty = Vec::new();
    let rows = rows.as_array().unwrap_or(&empty);
    let args: Vec<Value> = compiled.get("arguments").and_then(Value::as_array).unwrap_or(&empty).iter().map(|a| bind(a, params, 0)).collect();
    let keys: Vec<&str> = compiled.get("keys").and_then(Value::as_array).unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
    let selection: Vec<&str> = compiled.get("nestedSelection").and_then(Value::as_array).unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
    let expect = compiled.get("expectNonEmpty").and_then(Value::as_bool).unwrap_or(false);
    args.iter()
        .map(|arg| {
            let hit = rows.iter().find(|row| {
                keys.iter().all(|k| match (row.get(*k), arg.get(*k)) {
                    (Some(a), Some(b)) => key_text(a) == key_text(b),
                    _ => false,
                })
            });
            match hit {
                Some(Value::Object(row)) => {
                    let picked: Map<String, Value> = if selection.is_empty() {
                        row.clone()
                    } else {
                        row.iter().filter(|(k, _)| selection.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
                    };
                    Ok(Value::Object(picked))
                }
                Some(other) => Ok(other.clone()),
                None if expect => Err((
                    "P2025".to_owned(),
                    "An operation failed because it depends on one or more records that were required but not found. Expected a record, found none.".to_owned(),
                )),
                None => Ok(Value::Null),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2002_meta_names_the_fields() {
        let meta = json!({"driverAdapterError":{"cause":{"constraint":{"index":"User_email_key"}}},"table":"User"});
        let e = error_entry(Some("P2002"), "Unique constraint failed", meta, Some("User"), None);
        assert_eq!(e["user_facing_error"]["meta"], json!({"modelName":"User","target":["email"]}));
        assert_eq!(e["user_facing_error"]["error_code"], "P2002");
    }

    #[test]
    fn p2003_meta_has_field_name() {
        let meta = json!({"driverAdapterError":{"cause":{"constraint":{"index":"Post_authorId_fkey"}}}});
        let e = error_entry(Some("P2003"), "fk", meta, Some("Post"), Some(1));
        assert_eq!(e["user_facing_error"]["meta"]["field_name"], "Post_authorId_fkey (index)");
        assert_eq!(e["user_facing_error"]["batch_request_idx"], 1);
    }

    #[test]
    fn compacted_arguments_bind_their_placeholders() {
        let p = |n: &str| json!({"prisma__type":"param","prisma__value":{"name":n,"type":"Int"}});
        let compiled = json!({"arguments":[{"id":p("%1")},{"id":p("%2")}],"keys":["id"],"nestedSelection":[],"expectNonEmpty":true});
        let rows = json!([{"id":7,"name":"g"}]);
        let params: Map<String, Value> = [("%1".to_owned(), json!(7)), ("%2".to_owned(), json!(8))].into_iter().collect();
        let out = split_compacted(&rows, &compiled, &params);
        assert_eq!(out[0].as_ref().unwrap(), &json!({"id":7,"name":"g"}));
        assert_eq!(out[1].as_ref().unwrap_err().0, "P2025");
    }

    #[test]
    fn compacted_rows_split_by_keys() {
        let compiled = json!({"arguments":[{"id":1},{"id":3},{"id":9}],"keys":["id"],"nestedSelection":["id","name"],"expectNonEmpty":false});
        let rows = json!([{"id":3,"name":"c","extra":1},{"id":1,"name":"a","extra":2}]);
        let out = split_compacted(&rows, &compiled, &Map::new());
        assert_eq!(out[0].as_ref().unwrap(), &json!({"id":1,"name":"a"}));
        assert_eq!(out[1].as_ref().unwrap(), &json!({"id":3,"name":"c"}));
        assert_eq!(out[2].as_ref().unwrap(), &Value::Null);
        let strict = json!({"arguments":[{"id":9}],"keys":["id"],"nestedSelection":[],"expectNonEmpty":true});
        assert!(split_compacted(&rows, &strict, &Map::new())[0].is_err());
    }
}
