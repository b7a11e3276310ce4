//! A minimal text-format query runner on a leased upstream connection: simple-protocol statements
//! for housekeeping, and one extended-protocol round trip (unnamed statement, text parameters and
//! results) for the HTTP front ends.

use bytes::{Bytes, BytesMut};
use tidepool_proto::backend::{self, ErrorFields, FieldDesc};
use tidepool_proto::frontend;

use super::{ServerConn, UpstreamError};

/// One statement's result in text format.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub fields: Vec<FieldDesc>,
    pub rows: Vec<Vec<Option<Bytes>>>,
    /// The CommandComplete tag, e.g. `INSERT 0 1`.
    pub tag: String,
}

impl QueryResult {
    /// Rows affected as reported by the command tag (last number), 0 if none.
    pub fn rows_affected(&self) -> u64 {
        self.tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

impl ServerConn {
    /// Runs statements with the simple protocol, discarding rows; the first error is returned
    /// after the server is ready again.
    pub async fn simple(&mut self, sql: &str) -> Result<(), UpstreamError> {
        let mut out = BytesMut::new();
        frontend::query(&mut out, sql);
        self.write_all(&out).await?;
        let mut err = None;
        loop {
            let f = self.read_frame().await?;
            match f.tag {
                b'Z' => {
                    self.tx_status = backend::parse_ready(f.body()).unwrap_or(b'E');
                    break;
                }
                b'E' if err.is_none() => err = Some(ErrorFields::parse(f.body())?),
                b'S' => self.note_parameter(&f),
                _ => {}
            }
        }
        err.map_or(Ok(()), |e| Err(UpstreamError::Db(e)))
    }

    /// Sets (value `Some`) or resets (`None`) session parameters with one
    /// `SELECT set_config($1, $2, false), …`: names and values are bound parameters, never SQL text.
    pub async fn set_config(&mut self, changes: &[(&str, Option<&str>)]) -> Result<(), UpstreamError> {
        let mut sql = String::from("SELECT ");
        let mut params = Vec::with_capacity(changes.len() * 2);
        for (i, (name, value)) in changes.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("pg_catalog.set_config(${}::text, ${}::text, false)", 2 * i + 1, 2 * i + 2));
            params.push(Some((*name).to_owned()));
            params.push(value.map(str::to_owned));
        }
        self.query_text(&sql, &[], &params, 1 << 20).await.map(drop)
    }

    /// Parses, binds and executes one statement with text parameters (`types` may be empty or
    /// hold a type OID per parameter; 0 = let the server infer). `max_bytes` bounds the rows kept.
    pub async fn query_text(&mut self, sql: &str, types: &[u32], params: &[Option<String>], max_bytes: usize) -> Result<QueryResult, UpstreamError> {
        let mut out = BytesMut::with_capacity(sql.len() + 64);
        frontend::parse(&mut out, "", sql, types)?;
        frontend::bind_text(&mut out, "", "", params)?;
        frontend::describe(&mut out, b'P', "");
        frontend::execute(&mut out, "", 0);
        frontend::sync(&mut out);
        self.write_all(&out).await?;
        let mut res = QueryResult::default();
        let mut err: Option<UpstreamError> = None;
        let mut size = 0usize;
        loop {
            let f = self.read_frame().await?;
            match f.tag {
                b'T' => res.fields = backend::parse_row_description(f.body())?,
                b'D' if err.is_none() => {
                    size += f.raw.len();
                    if size > max_bytes {
                        err = Some(UpstreamError::TooLarge(max_bytes));
                        res.rows.clear();
                    } else {
                        res.rows.push(backend::parse_data_row(&f)?);
                    }
                }
                b'C' => res.tag = backend::parse_command_complete(f.body())?.to_owned(),
                b'E' if err.is_none() => err = Some(UpstreamError::Db(ErrorFields::parse(f.body())?)),
                b'S' => self.note_parameter(&f),
                b'Z' => {
                    self.tx_status = backend::parse_ready(f.body()).unwrap_or(b'E');
                    break;
                }
                _ => {}
            }
        }
        err.map_or(Ok(res), Err)
    }
}
