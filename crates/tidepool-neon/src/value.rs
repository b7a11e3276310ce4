//! Text-format PostgreSQL values → JSON, the way Neon's proxy writes them in JSON mode.
//!
//! * `bool`: `t` → `true`, anything else → `false`.
//! * `int2`, `int4`: parsed as `i32`, written as numbers.
//! * `float4`, `float8`: parsed as `f64`; finite values are numbers (shortest round-trip form),
//!   `NaN`, `Infinity`, `-Infinity` stay strings because JSON has no such numbers.
//! * `json`, `jsonb`: spliced in as JSON (validated first, so a bad value cannot corrupt the body).
//! * arrays: the `{…}` literal is parsed into nested JSON arrays; unquoted `NULL` is `null`, quoted
//!   items are unescaped, a leading `[lo:hi]=` bounds decoration is dropped, each element follows
//!   the rules above for the element type.
//! * everything else (`int8`, `numeric`, dates, times, `bytea`, `uuid`, text, …): a JSON string.

use serde_json::value::RawValue;

use crate::types::{Conversion, Scalar};

/// Nesting allowed in an array literal. PostgreSQL allows 6 dimensions; the margin only guards
/// the recursion against garbage.
const MAX_ARRAY_DEPTH: usize = 32;

/// Why a value could not be converted. The text goes to logs, never to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// An `int2`/`int4` value that is not an `i32`.
    #[error("invalid integer {0:?}")]
    Int(String),
    /// A `float4`/`float8` value that is not a float.
    #[error("invalid float {0:?}")]
    Float(String),
    /// A `json`/`jsonb` value that is not JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// An array literal with unbalanced braces or stray text.
    #[error("unbalanced array")]
    UnbalancedArray,
    /// A quoted array item without its closing quote.
    #[error("unbalanced quoted string")]
    UnbalancedString,
    /// An array nested deeper than any PostgreSQL array can be.
    #[error("array nested too deeply")]
    TooDeep,
    /// A value that is not UTF-8.
    #[error("value is not valid UTF-8")]
    NotUtf8,
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends one non-NULL value in raw text mode: always a JSON string.
pub(crate) fn write_raw(out: &mut Vec<u8>, value: &[u8]) -> Result<(), ValueError> {
    let text = std::str::from_utf8(value).map_err(|_| ValueError::NotUtf8)?;
    write_json_str(out, text);
    Ok(())
}

/// Appends one non-NULL value in JSON mode.
pub(crate) fn write_converted(out: &mut Vec<u8>, value: &[u8], conversion: Conversion) -> Result<(), ValueError> {
    let text = std::str::from_utf8(value).map_err(|_| ValueError::NotUtf8)?;
    match conversion {
        Conversion::Scalar(scalar) => write_scalar(out, text, scalar),
        Conversion::Array { element, delimiter } => write_array(out, text, element, delimiter),
    }
}

fn write_scalar(out: &mut Vec<u8>, text: &str, scalar: Scalar) -> Result<(), ValueError> {
    match scalar {
        Scalar::Bool => out.extend_from_slice(if text == "t" { b"true" } else { b"false" }),
        Scalar::Int => {
            let n: i32 = text.parse().map_err(|_| ValueError::Int(text.to_owned()))?;
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Scalar::Float => {
            let f: f64 = text.parse().map_err(|_| ValueError::Float(text.to_owned()))?;
            if f.is_finite() {
                // Shortest round-trip form, as Neon writes it: `1.5`, `1e30`, `100.0`.
                out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
            } else {
                write_json_str(out, text);
            }
        }
        Scalar::Json => {
            let raw: &RawValue = serde_json::from_str(text).map_err(|e| ValueError::Json(e.to_string()))?;
            out.extend_from_slice(raw.get().as_bytes());
        }
        Scalar::Text => write_json_str(out, text),
    }
    Ok(())
}

/// Parses a PostgreSQL array literal and appends it as a JSON array.
fn write_array(out: &mut Vec<u8>, text: &str, element: Scalar, delimiter: char) -> Result<(), ValueError> {
    let mut rest = text;
    // `[1:2][3:4]={…}`: bounds cannot be represented in JSON and are dropped.
    if rest.starts_with('[') {
        let (_bounds, array) = rest.split_once('=').ok_or(ValueError::UnbalancedArray)?;
        rest = array;
    }
    let mut parser = ArrayParser { out, element, delimiter, scratch: String::new() };
    let rest = parser.level(trim_start(rest), 0)?;
    if !rest.is_empty() {
        return Err(ValueError::UnbalancedArray);
    }
    Ok(())
}

struct ArrayParser<'o> {
    out: &'o mut Vec<u8>,
    element: Scalar,
    delimiter: char,
    /// Reused buffer for unescaped quoted items.
    scratch: String,
}

impl ArrayParser<'_> {
    /// Reads one `{…}` level from the start of `s`; returns what follows it.
    fn level<'s>(&mut self, s: &'s str, depth: usize) -> Result<&'s str, ValueError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(ValueError::TooDeep);
        }
        let mut s = trim_start(s.strip_prefix('{').ok_or(ValueError::UnbalancedArray)?);
        self.out.push(b'[');
        // PostgreSQL prints every empty array as `{}`.
        if let Some(after) = s.strip_prefix('}') {
            self.out.push(b']');
            return Ok(trim_start(after));
        }
        let mut first = true;
        loop {
            if !first {
                self.out.push(b',');
            }
            first = false;
            s = self.item(trim_start(s), depth)?;
            match s.strip_prefix(self.delimiter) {
                Some(after) => s = after,
                None => break,
            }
        }
        let after = s.strip_prefix('}').ok_or(ValueError::UnbalancedArray)?;
        self.out.push(b']');
        Ok(trim_start(after))
    }

    /// Reads one item (nested array, quoted or bare value); returns what follows it.
    fn item<'s>(&mut self, s: &'s str, depth: usize) -> Result<&'s str, ValueError> {
        if s.starts_with('{') {
            return self.level(s, depth + 1);
        }
        if let Some(quoted) = s.strip_prefix('"') {
            let after = unquote(quoted, &mut self.scratch)?;
            write_scalar(self.out, &self.scratch, self.element)?;
            return Ok(trim_start(after));
        }
        let end = s.find([self.delimiter, '}']).ok_or(ValueError::UnbalancedArray)?;
        let (bare, after) = s.split_at(end);
        let bare = bare.trim_end_matches(is_pg_space);
        if bare == "NULL" {
            self.out.extend_from_slice(b"null");
        } else {
            write_scalar(self.out, bare, self.element)?;
        }
        Ok(after)
    }
}

/// PostgreSQL's `array_isspace`: the only characters its array I/O treats as blanks. Anything
/// else (a no-break space, say) is data and is printed unquoted.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
}

fn trim_start(s: &str) -> &str {
    s.trim_start_matches(is_pg_space)
}

/// Unescapes a quoted array item into `into`; `s` starts just after the opening quote.
/// Returns the text after the closing quote.
fn unquote<'s>(s: &'s str, into: &mut String) -> Result<&'s str, ValueError> {
    into.clear();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(&s[i + 1..]),
            '\\' => {
                let (_, escaped) = chars.next().ok_or(ValueError::UnbalancedString)?;
                into.push(escaped);
            }
            _ => into.push(c),
        }
    }
    Err(ValueError::UnbalancedString)
}

#[cfg(test)]
mod tests;
