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

use serde_json::value::RawValue;

/// Converts one JSON parameter to its text form (`None` = SQL NULL).
pub fn json_param_to_text(raw: &RawValue) -> Result<Option<String>, serde_json::Error> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => Some(serde_json::from_str::<String>(text)?),
        Some(b'{') => Some(minify_json(text)),
        Some(b'[') => {
            let mut literal = String::with_capacity(text.len());
            write_array_literal(&mut literal, raw)?;
            Some(literal)
        }
        // true, false, numbers: their JSON text is already the PostgreSQL text.
        _ => Some(text.to_owned()),
    })
}

/// Writes a JSON array (given as raw JSON) as a PostgreSQL array literal.
fn write_array_literal(out: &mut String, raw: &RawValue) -> Result<(), serde_json::Error> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())?;
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = item.get();
        match text.as_bytes().first() {
            Some(b'n') => out.push_str("NULL"),
            Some(b'"') => push_quoted(out, &serde_json::from_str::<String>(text)?),
            Some(b'{') => push_quoted(out, &minify_json(text)),
            Some(b'[') => write_array_literal(out, item)?,
            _ => out.push_str(text),
        }
    }
    out.push('}');
    Ok(())
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
}
