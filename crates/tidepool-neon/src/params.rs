//! JSON query parameters → text-format parameter values.
//!
//! The JS driver already sends every parameter as a string or `null`. Other clients (curl, Python,
//! Neon's own tests) send raw JSON values, which Neon's proxy turns into text like this:
//!
//! | JSON | text |
//! |---|---|
//! | `null` | SQL NULL |
//! | string | the string itself |
//! | `true` / `false` | `true` / `false` |
//! | number | the number as written (no rounding: `9007199254740993` stays exact) |
//! | object | compact JSON text |
//! | array | a PostgreSQL array literal: strings and objects double-quoted with `"` and `\`
//! |  | backslash-escaped, `null` → `NULL`, nested arrays recursed |
//!
//! Numbers and objects keep their original text (only insignificant whitespace is removed), so
//! key order and number precision survive. Neon re-serialises through `serde_json::Value`, which
//! sorts keys; PostgreSQL's `jsonb` does not care, `json` keeps whatever it is given.

use serde::de::Error as _;
use serde_json::value::RawValue;

/// Deepest array parameter accepted. PostgreSQL arrays have at most 6 dimensions
/// (`MAXDIM`); the margin only keeps clearly broken input from doing work. Deeper arrays are
/// refused (HTTP 400) before anything is allocated for them.
pub const MAX_PARAM_ARRAY_DEPTH: usize = 16;

/// Converts one JSON parameter to its text form (`None` = SQL NULL).
pub fn json_param_to_text(raw: &RawValue) -> Result<Option<String>, serde_json::Error> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => Some(serde_json::from_str::<String>(text)?),
        Some(b'{') => Some(minify_json(text)),
        Some(b'[') => Some(array_literal(text)?),
        // true, false, numbers: their JSON text is already the PostgreSQL text.
        _ => Some(text.to_owned()),
    })
}

/// Writes a JSON array (valid JSON text, as a `RawValue` holds it) as a PostgreSQL array
/// literal in one pass, without recursion: nesting only moves a depth counter, capped at
/// [`MAX_PARAM_ARRAY_DEPTH`].
fn array_literal(json: &str) -> Result<String, serde_json::Error> {
    let b = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b'[' => {
                depth += 1;
                if depth > MAX_PARAM_ARRAY_DEPTH {
                    return Err(serde_json::Error::custom(format!("array parameter nested deeper than {MAX_PARAM_ARRAY_DEPTH} levels")));
                }
                out.push('{');
                i += 1;
            }
            b']' => {
                depth = depth.saturating_sub(1);
                out.push('}');
                i += 1;
            }
            b',' => {
                out.push(',');
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(b, i)?;
                push_quoted(&mut out, &serde_json::from_str::<String>(&json[i..end])?);
                i = end;
            }
            b'{' => {
                let end = object_end(b, i)?;
                push_quoted(&mut out, &minify_json(&json[i..end]));
                i = end;
            }
            b'n' => {
                out.push_str("NULL");
                i += 4;
            }
            _ => {
                // true, false or a number: copied as written.
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                out.push_str(&json[start..i]);
            }
        }
    }
    if depth != 0 {
        return Err(serde_json::Error::custom("unbalanced array parameter"));
    }
    Ok(out)
}

/// The index just past the string literal starting at `b[start] == b'"'`.
fn string_end(b: &[u8], start: usize) -> Result<usize, serde_json::Error> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(serde_json::Error::custom("unterminated string in array parameter"))
}

/// The index just past the object starting at `b[start] == b'{'` (any nesting, no recursion).
fn object_end(b: &[u8], start: usize) -> Result<usize, serde_json::Error> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = string_end(b, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(serde_json::Error::custom("unterminated object in array parameter"))
}

/// Appends `s` as a double-quoted array element, escaping `"` and `\`.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Removes insignificant whitespace from valid JSON text, leaving strings untouched.
fn minify_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(json: &str) -> Option<String> {
        let raw: Box<RawValue> = serde_json::from_str(json).expect("test input is JSON");
        json_param_to_text(&raw).expect("converts")
    }

    #[test]
    fn scalars() {
        assert_eq!(convert("null"), None);
        assert_eq!(convert("true"), Some("true".into()));
        assert_eq!(convert("false"), Some("false".into()));
        assert_eq!(convert("42"), Some("42".into()));
        assert_eq!(convert("-1.50"), Some("-1.50".into()));
        assert_eq!(convert("1e400"), Some("1e400".into()));
        assert_eq!(convert("9007199254740993"), Some("9007199254740993".into()));
        assert_eq!(convert("123456789012345678901234567890.000000000000000001"), Some("123456789012345678901234567890.000000000000000001".into()));
    }

    #[test]
    fn strings_are_unescaped_not_quoted() {
        assert_eq!(convert(r#""foo\"""#), Some("foo\"".into()));
        assert_eq!(convert(r#""a\nb\u00e9""#), Some("a\nbé".into()));
        assert_eq!(convert(r#""""#), Some(String::new()));
        assert_eq!(convert(r#""{\"1\",\"2\"}""#), Some(r#"{"1","2"}"#.into()));
    }

    #[test]
    fn objects_become_compact_json_text() {
        assert_eq!(convert(r#"{ "a" : 1 , "b": [true, null] }"#), Some(r#"{"a":1,"b":[true,null]}"#.into()));
        assert_eq!(convert(r#"{"z":1,"a":2}"#), Some(r#"{"z":1,"a":2}"#.into()));
        assert_eq!(convert(r#"{"s":"x \" y \\ z"}"#), Some(r#"{"s":"x \" y \\ z"}"#.into()));
        assert_eq!(convert(r#"{"n":1.0000000000000001}"#), Some(r#"{"n":1.0000000000000001}"#.into()));
    }

    #[test]
    fn arrays_become_postgres_literals() {
        assert_eq!(convert("[]"), Some("{}".into()));
        assert_eq!(convert("[1, 2, 3]"), Some("{1,2,3}".into()));
        assert_eq!(convert(r#"[true, false, null, "NULL", 42, "foo", "bar\"-\\"]"#), Some(r#"{true,false,NULL,"NULL",42,"foo","bar\"-\\"}"#.into()));
        assert_eq!(convert(r#"[[true, false], [null, 42], ["foo", "bar\"-\\"]]"#), Some(r#"{{true,false},{NULL,42},{"foo","bar\"-\\"}}"#.into()));
        assert_eq!(convert(r#"[{"foo": 1},{"bar": 2}]"#), Some(r#"{"{\"foo\":1}","{\"bar\":2}"}"#.into()));
        assert_eq!(convert(r#"["", "a b", "{x}"]"#), Some(r#"{"","a b","{x}"}"#.into()));
        // A newline inside an element stays a newline (PostgreSQL has no \n escape in arrays).
        assert_eq!(convert(r#"["a\nb"]"#), Some("{\"a\nb\"}".into()));
        assert_eq!(convert("[9007199254740993]"), Some("{9007199254740993}".into()));
    }

    #[test]
    fn deep_arrays_are_refused_without_recursion() {
        // 100,000 levels: once overflowed the worker's stack (a pre-auth crash of the process).
        for depth in [MAX_PARAM_ARRAY_DEPTH + 1, 100_000] {
            let json = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let raw: Box<RawValue> = serde_json::from_str(&json).expect("serde_json reads any depth into a RawValue");
            let e = json_param_to_text(&raw).expect_err("too deep");
            assert!(e.to_string().contains("nested deeper than"), "{e}");
        }
        let ok = format!("{}1{}", "[".repeat(MAX_PARAM_ARRAY_DEPTH), "]".repeat(MAX_PARAM_ARRAY_DEPTH));
        assert_eq!(convert(&ok), Some(format!("{}1{}", "{".repeat(MAX_PARAM_ARRAY_DEPTH), "}".repeat(MAX_PARAM_ARRAY_DEPTH))));
    }

    #[test]
    fn deep_objects_inside_arrays_stay_text() {
        // Objects are copied as JSON text, whatever their depth (no recursion either).
        let obj = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let raw: Box<RawValue> = serde_json::from_str(&format!("[{obj}]")).expect("json");
        let text = json_param_to_text(&raw).expect("converts").expect("not null");
        assert!(text.starts_with("{\"{\\\"a\\\":") && text.ends_with("}\"}"));
        let raw: Box<RawValue> = serde_json::from_str(&obj).expect("json");
        assert_eq!(json_param_to_text(&raw).expect("converts").map(|t| t.len()), Some(obj.len()));
    }

    #[test]
    fn strings_with_brackets_and_escapes_inside_arrays() {
        assert_eq!(convert(r#"[ "]" , "[" , "\\\"" , {"k":"]}"} ]"#), Some(r#"{"]","[","\\\"","{\"k\":\"]}\"}"}"#.into()));
        assert_eq!(convert("[ [ ] , [ null ] ]"), Some("{{},{NULL}}".into()));
        assert_eq!(convert("[-1.5e3,true]"), Some("{-1.5e3,true}".into()));
    }
}
