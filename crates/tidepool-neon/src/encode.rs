//! Statement results → the response body, with the response size cap enforced row by row.
//!
//! One statement's object, in Neon's key order:
//!
//! ```json
//! {"fields":[{"name":"n","dataTypeID":20,"tableID":0,"columnID":0,"dataTypeSize":8,"dataTypeModifier":-1,"format":"text"}],
//!  "rows":[["2"]],"command":"SELECT","rowCount":1,"rowAsArray":true}
//! ```
//!
//! A batch is `{"results":[<object>, …]}`. In object mode a row is `{"name": value, …}`; a repeated
//! column name is written twice, so a JSON parser keeps the later value, as with Neon.

use crate::error::EncodeError;
use crate::options::OutputOptions;
use crate::types::{conversion_for, Conversion};
use crate::value::{write_converted, write_json_str, write_raw};

/// One column of a `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// OID of the source table, 0 if none (`tableID`).
    pub table_oid: u32,
    /// Attribute number in the source table, 0 if none (`columnID`).
    pub column_id: i16,
    /// Type OID (`dataTypeID`); decides the JSON-mode conversion.
    pub type_oid: u32,
    /// `pg_type.typlen`, negative for variable width (`dataTypeSize`).
    pub type_size: i16,
    /// Type modifier, -1 if none (`dataTypeModifier`).
    pub type_modifier: i32,
}

impl Field {
    /// A computed column (no source table) of the given type, with size and modifier -1.
    pub fn new(name: impl Into<String>, type_oid: u32) -> Self {
        Self { name: name.into(), table_oid: 0, column_id: 0, type_oid, type_size: -1, type_modifier: -1 }
    }
}

/// Splits a `CommandComplete` tag into `command` and `rowCount` as Neon does: the first word, and
/// the last number of `INSERT oid rows` or the second word of anything else, when it is an integer.
///
/// `CREATE TABLE` → (`CREATE`, None); `INSERT 0 2` → (`INSERT`, Some(2)); `SELECT 1` →
/// (`SELECT`, Some(1)); `BEGIN` → (`BEGIN`, None).
pub fn parse_command_tag(tag: &str) -> (&str, Option<i64>) {
    match tag.split_once(' ') {
        None => (tag, None),
        Some(("INSERT", rest)) => ("INSERT", rest.split_once(' ').and_then(|(_oid, rows)| rows.parse().ok())),
        Some((command, rest)) => (command, rest.parse().ok()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Batch,
}

/// Builds a response body: one statement ([`ResponseEncoder::single`]) or a batch
/// ([`ResponseEncoder::batch`]).
///
/// ```
/// use tidepool_neon::{Field, OutputOptions, ResponseEncoder};
///
/// let mut response = ResponseEncoder::single(10 << 20);
/// let options = OutputOptions { raw_text: true, array_mode: true };
/// let mut statement = response.statement(&[Field::new("n", 20)], options)?;
/// statement.push_row(&[Some("2")])?;
/// statement.finish(Some("SELECT 1"))?;
/// assert_eq!(
///     String::from_utf8(response.finish()?).unwrap(),
///     r#"{"fields":[{"name":"n","dataTypeID":20,"tableID":0,"columnID":0,"dataTypeSize":-1,"dataTypeModifier":-1,"format":"text"}],"rows":[["2"]],"command":"SELECT","rowCount":1,"rowAsArray":true}"#
/// );
/// # Ok::<(), tidepool_neon::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct ResponseEncoder {
    buf: Vec<u8>,
    max_bytes: usize,
    shape: Shape,
    finished_statements: usize,
    open_statement: bool,
}

impl ResponseEncoder {
    /// A response for a single-statement request.
    pub fn single(max_bytes: usize) -> Self {
        Self::new(Shape::Single, max_bytes)
    }

    /// A `{"results":[…]}` response for a batch request.
    pub fn batch(max_bytes: usize) -> Self {
        let mut encoder = Self::new(Shape::Batch, max_bytes);
        encoder.buf.extend_from_slice(b"{\"results\":[");
        encoder
    }

    fn new(shape: Shape, max_bytes: usize) -> Self {
        Self { buf: Vec::new(), max_bytes, shape, finished_statements: 0, open_statement: false }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Starts the next statement's object and writes its `fields`.
    pub fn statement(&mut self, fields: &[Field], options: OutputOptions) -> Result<StatementEncoder<'_>, EncodeError> {
        if self.open_statement {
            return Err(EncodeError::Misuse("previous statement not finished"));
        }
        if self.shape == Shape::Single && self.finished_statements > 0 {
            return Err(EncodeError::Misuse("a single-statement response holds one statement"));
        }
        if self.finished_statements > 0 {
            self.buf.push(b',');
        }
        self.open_statement = true;

        self.buf.extend_from_slice(b"{\"fields\":[");
        let mut columns = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write_field(&mut self.buf, field);
            let mut key = Vec::with_capacity(field.name.len() + 3);
            write_json_str(&mut key, &field.name);
            key.push(b':');
            columns.push(Column { key, conversion: conversion_for(field.type_oid) });
        }
        self.buf.extend_from_slice(b"],\"rows\":[");
        let statement = StatementEncoder { response: self, columns, options, rows: 0 };
        statement.response.check_size()?;
        Ok(statement)
    }

    /// Completes the body.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        if self.open_statement {
            return Err(EncodeError::Misuse("statement not finished"));
        }
        match self.shape {
            Shape::Single if self.finished_statements != 1 => Err(EncodeError::Misuse("a single-statement response needs one statement")),
            Shape::Single => Ok(self.buf),
            Shape::Batch => {
                self.buf.extend_from_slice(b"]}");
                self.check_size()?;
                Ok(self.buf)
            }
        }
    }

    fn check_size(&self) -> Result<(), EncodeError> {
        if self.buf.len() > self.max_bytes {
            Err(EncodeError::ResponseTooLarge { limit: self.max_bytes })
        } else {
            Ok(())
        }
    }
}

fn write_field(buf: &mut Vec<u8>, field: &Field) {
    buf.extend_from_slice(b"{\"name\":");
    write_json_str(buf, &field.name);
    let numbers = [
        ("dataTypeID", i64::from(field.type_oid)),
        ("tableID", i64::from(field.table_oid)),
        ("columnID", i64::from(field.column_id)),
        ("dataTypeSize", i64::from(field.type_size)),
        ("dataTypeModifier", i64::from(field.type_modifier)),
    ];
    for (key, value) in numbers {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b"\":");
        buf.extend_from_slice(value.to_string().as_bytes());
    }
    buf.extend_from_slice(b",\"format\":\"text\"}");
}

#[derive(Debug)]
struct Column {
    /// `"name":`, pre-escaped for object mode.
    key: Vec<u8>,
    conversion: Conversion,
}

/// Writes the rows of one statement. Obtained from [`ResponseEncoder::statement`]; must be
/// completed with [`StatementEncoder::finish`].
#[derive(Debug)]
pub struct StatementEncoder<'r> {
    response: &'r mut ResponseEncoder,
    columns: Vec<Column>,
    options: OutputOptions,
    rows: usize,
}

impl StatementEncoder<'_> {
    /// Appends one `DataRow`: text-format values, `None` for NULL. Fails when the body passes
    /// the size limit, a value cannot be converted, or the row has the wrong width.
    pub fn push_row<V: AsRef<[u8]>>(&mut self, row: &[Option<V>]) -> Result<(), EncodeError> {
        self.push_row_iter(row.iter().map(|v| v.as_ref().map(AsRef::as_ref)))
    }

    /// Like [`push_row`](Self::push_row), for values borrowed straight from a `DataRow` message.
    pub fn push_row_iter<'v>(&mut self, row: impl IntoIterator<Item = Option<&'v [u8]>>) -> Result<(), EncodeError> {
        let buf = &mut self.response.buf;
        if self.rows > 0 {
            buf.push(b',');
        }
        let (open, close) = if self.options.array_mode { (b'[', b']') } else { (b'{', b'}') };
        buf.push(open);
        let mut got = 0;
        for (i, value) in row.into_iter().enumerate() {
            got = i + 1;
            let Some(column) = self.columns.get(i) else {
                // Too many values: keep counting for the error below.
                continue;
            };
            if i > 0 {
                buf.push(b',');
            }
            if !self.options.array_mode {
                buf.extend_from_slice(&column.key);
            }
            let written = match value {
                None => {
                    buf.extend_from_slice(b"null");
                    Ok(())
                }
                Some(v) if self.options.raw_text => write_raw(buf, v),
                Some(v) => write_converted(buf, v, column.conversion),
            };
            written.map_err(|source| EncodeError::InvalidValue { column: i, source })?;
        }
        if got != self.columns.len() {
            return Err(EncodeError::ColumnCountMismatch { expected: self.columns.len(), got });
        }
        buf.push(close);
        self.rows += 1;
        self.response.check_size()
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Closes the statement with its `CommandComplete` tag (`None` for an empty query, which
    /// gives `"command":""`).
    pub fn finish(self, command_tag: Option<&str>) -> Result<(), EncodeError> {
        let (command, row_count) = parse_command_tag(command_tag.unwrap_or(""));
        let buf = &mut self.response.buf;
        buf.extend_from_slice(b"],\"command\":");
        write_json_str(buf, command);
        buf.extend_from_slice(b",\"rowCount\":");
        match row_count {
            Some(n) => buf.extend_from_slice(n.to_string().as_bytes()),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"rowAsArray\":");
        buf.extend_from_slice(if self.options.array_mode { b"true" } else { b"false" });
        buf.push(b'}');
        self.response.open_statement = false;
        self.response.finished_statements += 1;
        self.response.check_size()
    }
}

/// A complete statement result, for callers that collect rows before encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementResult {
    /// The `RowDescription` (empty for `NoData`).
    pub fields: Vec<Field>,
    /// Text-format rows, `None` for NULL.
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// The `CommandComplete` tag (`None` after `EmptyQueryResponse`).
    pub command_tag: Option<String>,
}

/// Encodes the results of a request's statements in one go (one result per statement, in order).
pub fn encode_results(request: &crate::SqlRequest, results: &[StatementResult], max_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    let statements = request.statements();
    if statements.len() != results.len() {
        return Err(EncodeError::Misuse("one result per statement is required"));
    }
    let mut response = if request.is_batch() { ResponseEncoder::batch(max_bytes) } else { ResponseEncoder::single(max_bytes) };
    for (statement, result) in statements.iter().zip(results) {
        let mut encoder = response.statement(&result.fields, request.output_for(statement))?;
        for row in &result.rows {
            encoder.push_row(row)?;
        }
        encoder.finish(result.command_tag.as_deref())?;
    }
    response.finish()
}

#[cfg(test)]
mod tests;
