//! The interpreter's database seam on a leased connection: text-format statements through the
//! upstream query runner, PostgreSQL errors handed over with their fields.

use tidepool_prisma::{Column, DbError, Executor, Param, Rows, ServerError};

use crate::frontend::http::lease::note_sql;
use crate::upstream::{ServerConn, UpstreamError};
use tidepool_proto::ProtoError;

pub struct PgExecutor<'a> {
    pub conn: &'a mut ServerConn,
    pub max_bytes: usize,
    /// A result exceeded `max_bytes` (the response must be P6009, whatever the plan made of it).
    pub too_large: bool,
    /// Collect the tables statements write (`[cache] invalidate_on_write`).
    pub track_writes: bool,
    /// Tables written so far, when tracked.
    pub writes: Vec<String>,
}

impl<'a> PgExecutor<'a> {
    pub fn new(conn: &'a mut ServerConn, max_bytes: usize) -> Self {
        PgExecutor { conn, max_bytes, too_large: false, track_writes: false, writes: Vec::new() }
    }
}

fn db_error(e: UpstreamError) -> DbError {
    match e {
        UpstreamError::Db(f) => DbError::Server(Box::new(ServerError {
            code: f.code().to_owned(),
            message: f.message().to_owned(),
            severity: f.get(b'S').map(str::to_owned),
            detail: f.get(b'D').map(str::to_owned),
            hint: f.get(b'H').map(str::to_owned),
            schema: f.get(b's').map(str::to_owned),
            table: f.get(b't').map(str::to_owned),
            column: f.get(b'c').map(str::to_owned),
            constraint: f.get(b'n').map(str::to_owned),
        })),
        UpstreamError::Io(_) | UpstreamError::Closed => DbError::ConnectionClosed,
        UpstreamError::ConnectTimeout => DbError::Timeout,
        UpstreamError::Tls(reason) => DbError::Tls { reason },
        // Refused before a byte was sent: the client's statement is too big for the protocol.
        UpstreamError::Protocol(ProtoError::TooManyParameters { .. } | ProtoError::ValueTooLarge { .. }) => DbError::ParameterLimit,
        other => DbError::Other(other.to_string()),
    }
}

impl PgExecutor<'_> {
    async fn run(&mut self, sql: &str, params: &[Param]) -> Result<crate::upstream::QueryResult, DbError> {
        note_sql(self.conn, sql);
        if self.track_writes {
            for t in crate::cache::sql::written_tables(sql.as_bytes()) {
                if !self.writes.contains(&t) {
                    self.writes.push(t);
                }
            }
        }
        let types: Vec<u32> = params.iter().map(|p| p.type_oid).collect();
        let values: Vec<Option<String>> = params.iter().map(|p| p.value.clone()).collect();
        match self.conn.query_text(sql, &types, &values, self.max_bytes).await {
            Err(UpstreamError::TooLarge(_)) => {
                self.too_large = true;
                Err(DbError::Other(format!("result exceeds {} bytes", self.max_bytes)))
            }
            r => r.map_err(db_error),
        }
    }
}

impl Executor for PgExecutor<'_> {
    async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Rows, DbError> {
        let r = self.run(sql, params).await?;
        let rows_affected = r.rows_affected();
        Ok(Rows {
            columns: r.fields.iter().map(|f| Column::new(f.name.clone(), f.type_oid)).collect(),
            rows: r.rows.into_iter().map(|row| row.into_iter().map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned())).collect()).collect(),
            rows_affected,
        })
    }

    async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        Ok(self.run(sql, params).await?.rows_affected())
    }
}
