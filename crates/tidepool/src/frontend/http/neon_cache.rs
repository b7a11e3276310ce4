//! Neon `/sql`'s use of the query cache, opted into per request with tidepool's own headers:
//! `Tidepool-Cache-Ttl: <seconds>` and/or `Tidepool-Cache-Swr: <seconds>`, optionally
//! `Tidepool-Cache-Tags: a,b` (same rules as Accelerate tags). The answer carries
//! `Tidepool-Cache-Status` (`ttl`, `swr`, `miss`, `none`) and, for cached results,
//! `Last-Modified`. Same rules as the Prisma API: every statement of the request must be a read
//! that calls only immutable functions; batches run in their own transaction and are cached as a
//! whole; the key holds the database, the upstream role, the output options and each
//! statement's text and parameters. Malformed values are 400 (`invalid header: …`).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use tidepool_neon::{NeonError, SqlRequest};

use super::prisma::cache::{pinned_settings, seconds};
use crate::cache::{parse_tags, sql, Bypass, Key, KeyBuilder, Status, Strategy};
use crate::config::CacheConfig;
use crate::target::Target;

pub const TTL: &str = "tidepool-cache-ttl";
pub const SWR: &str = "tidepool-cache-swr";
pub const TAGS: &str = "tidepool-cache-tags";
pub const STATUS: &str = "tidepool-cache-status";

/// The request's strategy; `None` without `Tidepool-Cache-Ttl`/`-Swr`.
pub fn strategy(cfg: &CacheConfig, headers: &HeaderMap) -> Result<Option<Strategy>, NeonError> {
    let get = |name: &'static str| -> Result<Option<&str>, NeonError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| NeonError::InvalidHeader(name)),
        }
    };
    let ttl = get(TTL)?.map(|v| seconds(v, TTL).map_err(|_| NeonError::InvalidHeader(TTL))).transpose()?;
    let swr = get(SWR)?.map(|v| seconds(v, SWR).map_err(|_| NeonError::InvalidHeader(SWR))).transpose()?;
    let tags = match get(TAGS)? {
        Some(t) => parse_tags(t, cfg.max_tags).map_err(|_| NeonError::InvalidHeader(TAGS))?,
        None => Vec::new(),
    };
    if ttl.is_none() && swr.is_none() {
        return Ok(None);
    }
    Ok(Some(Strategy { ttl: Duration::from_secs(ttl.unwrap_or(0)).min(cfg.max_ttl), swr: Duration::from_secs(swr.unwrap_or(0)).min(cfg.max_swr), tags }))
}

/// Whether every statement is a cacheable read; the tables they read.
pub fn analyze(request: &SqlRequest) -> Result<Vec<String>, Bypass> {
    let mut tables = Vec::new();
    for s in request.statements() {
        sql::collect_reads(&s.query, &mut tables)?;
    }
    Ok(tables)
}

/// The key: database, role of `user`, pinned settings, tags, output and batch options, and
/// every statement's text, parameters (NULL distinct from any text) and array mode.
pub fn key(target: &Target, tags: &[String], request: &SqlRequest) -> Key {
    let mut k = KeyBuilder::new("neon", &target.db.config.name, target.upstream_role(), pinned_settings());
    k.tags(tags);
    let o = &request.options;
    k.part(format!("raw={} array={} batch={} {:?}", o.raw_text_output, o.array_mode, request.is_batch(), o.batch).as_bytes());
    for s in request.statements() {
        k.part(s.query.as_bytes()).part(format!("{:?}", s.array_mode).as_bytes());
        k.part(&(s.params.len() as u64).to_be_bytes());
        for p in &s.params {
            match p {
                None => k.part(b"\0null"),
                Some(v) => k.part(format!("v{v}").as_bytes()),
            };
        }
    }
    k.finish()
}

/// Adds `Tidepool-Cache-Status` (and `Last-Modified`) to a response.
pub fn mark(headers: &mut HeaderMap, status: Status, last_modified: Option<&HeaderValue>) {
    headers.insert(STATUS, HeaderValue::from_static(status.as_str()));
    // Browsers may read it (Last-Modified is readable by default).
    headers.insert(axum::http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Tidepool-Cache-Status"));
    if let Some(lm) = last_modified {
        headers.insert(axum::http::header::LAST_MODIFIED, lm.clone());
    }
}
