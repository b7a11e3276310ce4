//! `tidepool_neon::ResponseEncoder` on arbitrary upstream results: column names, type OIDs, cell
//! text (including array literals parsed in JSON mode) and command tags as PostgreSQL might send
//! them. Not a request parser, but it parses upstream bytes (array literals, JSON, numbers) and
//! its output goes to the client, so a mistake here corrupts responses.
//!
//! Invariants:
//! * no panic;
//! * a finished body is valid JSON, no larger than the limit, with one entry per field and per
//!   accepted row;
//! * raw-text mode: every non-NULL value is the cell's exact text; NULL is `null`;
//! * JSON mode: text columns are the exact text, `int4` columns the parsed number, `bool` the
//!   `t`/other mapping.
//!
//! Input: [`tidepool_fuzz::format::Results`]; a batch (flag bit 0) repeats the statement twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tidepool_fuzz::format::Results;
use tidepool_neon::{oid, EncodeError, Field, OutputOptions, ResponseEncoder, DEFAULT_MAX_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Results::decode(data) else { return };
    let batch = input.flags & 1 != 0;
    let options = OutputOptions { raw_text: input.flags & 2 != 0, array_mode: input.flags & 4 != 0 };
    let max = if input.max_bytes == 0 { DEFAULT_MAX_BYTES } else { input.max_bytes };
    let fields: Vec<Field> = input.fields.iter().map(|(oid, name)| Field::new(String::from_utf8_lossy(name), *oid)).collect();
    let tag = input.command_tag.map(String::from_utf8_lossy);

    let mut response = if batch { ResponseEncoder::batch(max) } else { ResponseEncoder::single(max) };
    let statements = if batch { 2 } else { 1 };
    let mut accepted = Vec::new();
    for _ in 0..statements {
        let mut st = match response.statement(&fields, options) {
            Ok(st) => st,
            Err(EncodeError::ResponseTooLarge { .. }) => return,
            Err(e) => panic!("statement(): {e}"),
        };
        for row in &input.rows {
            match st.push_row(row) {
                Ok(()) => accepted.push(row),
                Err(EncodeError::Misuse(m)) => panic!("misuse: {m}"),
                // The host answers with an error and drops the encoder.
                Err(_) => return,
            }
        }
        if st.finish(tag.as_deref()).is_err() {
            return;
        }
    }
    let body = match response.finish() {
        Ok(b) => b,
        Err(EncodeError::ResponseTooLarge { .. }) => return,
        Err(e) => panic!("finish(): {e}"),
    };
    assert!(body.len() <= max, "body of {} bytes passed the limit {max}", body.len());
    let json: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(&body)));

    let results: Vec<&Value> = if batch { json["results"].as_array().expect("results").iter().collect() } else { vec![&json] };
    assert_eq!(results.len(), statements);
    let per_statement = accepted.len() / statements;
    for result in results {
        assert_eq!(result["fields"].as_array().expect("fields").len(), fields.len());
        let rows = result["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), per_statement);
        assert_eq!(result["rowAsArray"], Value::Bool(options.array_mode));
        for (row, cells) in rows.iter().zip(&input.rows) {
            for (i, (field, cell)) in fields.iter().zip(cells.iter()).enumerate() {
                let got = if options.array_mode {
                    &row[i]
                } else {
                    // A repeated name keeps the last value; only check unique names.
                    if fields.iter().filter(|f| f.name == field.name).count() > 1 {
                        continue;
                    }
                    &row[field.name.as_str()]
                };
                let Some(cell) = cell else {
                    assert_eq!(got, &Value::Null);
                    continue;
                };
                let text = std::str::from_utf8(cell).expect("accepted cells are UTF-8");
                if options.raw_text || [oid::TEXT, oid::VARCHAR, oid::INT8, oid::NUMERIC, oid::UUID].contains(&field.type_oid) {
                    assert_eq!(got.as_str(), Some(text), "column {i} ({}): {text:?} became {got}", field.type_oid);
                } else if field.type_oid == oid::INT4 {
                    assert_eq!(got.as_i64(), Some(text.parse::<i32>().unwrap().into()));
                } else if field.type_oid == oid::BOOL {
                    assert_eq!(got.as_bool(), Some(text == "t"));
                }
            }
        }
    }
});
