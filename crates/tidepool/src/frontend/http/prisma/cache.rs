//! The Prisma API's use of the query cache: reading a request's strategy from `cache-control` and
//! `accelerate-cache-tags`, deciding whether its plan is cacheable (only reads: no `execute`,
//! `transaction` or raw query node, no value generator, every statement a read calling only
//! immutable functions, a read operation), building its key, and the response headers
//! `withAccelerateInfo()` reads: `accelerate-cache-status`, `last-modified` and `cf-ray` (the
//! request id, `<id>-<region>`).
//!
//! Bad input: a `max-age`/`stale-while-revalidate` that is not a non-negative integer, or tags that
//! break Accelerate's rules (more than `max_tags`, not `[A-Za-z0-9_]{1,64}`), are the caller's bug
//! and get 400 P6005 (InvalidParameters) instead of silently not caching. Unknown `cache-control`
//! directives are ignored, as HTTP caches do; `no-cache`/`no-store` mean no strategy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tidepool_prisma::plan::{DbQuery, Fragment, Node, PValue};
use tidepool_prisma::QueryRequest;

use crate::app::App;
use crate::cache::{parse_tags, sql, Bypass, Entry, Key, KeyBuilder, Status, Strategy};
use crate::config::CacheConfig;
use crate::target::Target;

pub const STATUS_HEADER: &str = "accelerate-cache-status";

/// Operations Accelerate caches (`count` is sent as `aggregate`).
const READ_OPERATIONS: &[&str] = &["findUnique", "findUniqueOrThrow", "findFirst", "findFirstOrThrow", "findMany", "aggregate", "groupBy", "count"];

/// A client error in the cache headers (400 P6005).
#[derive(Debug)]
pub struct BadStrategy(pub String);

/// Parses one `cache-control` delta-seconds value (digits only, as HTTP defines it).
pub(crate) fn seconds(v: &str, name: &str) -> Result<u64, BadStrategy> {
    let v = v.trim().trim_matches('"');
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadStrategy(format!("Invalid cacheStrategy: {name} must be a non-negative whole number of seconds.")));
    }
    v.parse().map_err(|_| BadStrategy(format!("Invalid cacheStrategy: {name} is out of range.")))
}

/// The strategy of a request: `None` without `max-age`/`stale-while-revalidate` or with
/// `no-cache`/`no-store`. ttl and swr are clamped to `max_ttl`/`max_swr`.
pub fn strategy(cfg: &CacheConfig, cache_control: Option<&str>, tags: Option<&str>) -> Result<Option<Strategy>, BadStrategy> {
    let Some(cc) = cache_control else { return Ok(None) };
    let (mut ttl, mut swr, mut no_cache) = (None, None, false);
    for d in cc.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (name, value) = match d.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (d, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            no_cache = true;
        } else if name.eq_ignore_ascii_case("max-age") {
            ttl = Some(seconds(value.unwrap_or(""), "ttl (max-age)")?);
        } else if name.eq_ignore_ascii_case("stale-while-revalidate") {
            swr = Some(seconds(value.unwrap_or(""), "swr (stale-while-revalidate)")?);
        }
    }
    let tags = match tags {
        Some(t) => parse_tags(t, cfg.max_tags).map_err(|e| BadStrategy(format!("Invalid cacheStrategy tags: {e}.")))?,
        None => Vec::new(),
    };
    if no_cache || (ttl.is_none() && swr.is_none()) {
        return Ok(None);
    }
    let ttl = Duration::from_secs(ttl.unwrap_or(0)).min(cfg.max_ttl);
    let swr = Duration::from_secs(swr.unwrap_or(0)).min(cfg.max_swr);
    Ok(Some(Strategy { ttl, swr, tags }))
}

/// The strategy from a request's headers (non-UTF-8 values are malformed).
pub fn strategy_from(cfg: &CacheConfig, headers: &HeaderMap) -> Result<Option<Strategy>, BadStrategy> {
    let text = |name: &str| -> Result<Option<&str>, BadStrategy> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| BadStrategy(format!("Invalid cacheStrategy: the {name} header is not text."))),
        }
    };
    strategy(cfg, text("cache-control")?, text("accelerate-cache-tags")?)
}

/// The settings every HTTP lease pins, as key material (they change how results are rendered).
pub fn pinned_settings() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let mut p: Vec<_> = crate::frontend::http::lease::pinned_params().iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.sort();
        format!("http-lease-v1;{}", p.join(";"))
    })
}

#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow)]
    operation: &'a RawValue,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    plan: &'a RawValue,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// The key of a `/query` body: database, role, pinned settings, the request's tags (so an entry
/// is always dropped by invalidating any tag its request named) and the request. Without a
/// `"comments"` member (the usual case) that is the body exactly as sent, hashed without parsing;
/// with one, `operation`, `model`, `plan` and `params` as sent, leaving out the SQL-commenter
/// comments (which do not change results, and may carry a per-request trace id). `None` for such
/// a body that is not a well-formed request (it then runs uncached and fails as usual).
pub fn key(target: &Target, tags: &[String], body: &[u8]) -> Option<Key> {
    let mut k = KeyBuilder::new("prisma", &target.db.config.name, target.upstream_role(), pinned_settings());
    k.tags(tags);
    if memchr::memmem::find(body, b"\"comments\"").is_none() {
        k.part(b"body").part(body);
        return Some(k.finish());
    }
    let parts: Parts<'_> = serde_json::from_slice(body).ok()?;
    k.part(b"parts").part(parts.operation.get().as_bytes()).part(parts.model.map_or("", RawValue::get).as_bytes());
    k.part(parts.plan.get().as_bytes()).part(parts.params.map_or("{}", RawValue::get).as_bytes());
    Some(k.finish())
}

fn generator_free(v: &PValue) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            PValue::Generator { .. } => return false,
            PValue::List(items) => stack.extend(items),
            PValue::Literal(_) | PValue::Placeholder { .. } => {}
        }
    }
    true
}

/// Whether a parsed request may be cached; the tables its statements read. Walks the plan
/// without recursion.
pub fn analyze(req: &QueryRequest) -> Result<Vec<String>, Bypass> {
    if !READ_OPERATIONS.contains(&req.operation.as_str()) {
        return Err(Bypass::Write);
    }
    let mut tables = Vec::new();
    let mut stack: Vec<&Node> = vec![&req.plan];
    while let Some(n) = stack.pop() {
        match n {
            Node::Execute(_) | Node::Transaction(_) | Node::Query(DbQuery::Raw { .. }) => return Err(Bypass::Write),
            Node::InitializeRecord { .. } | Node::MapRecord { .. } => return Err(Bypass::Write),
            Node::Query(DbQuery::Template(t)) => {
                if !t.args.iter().all(generator_free) {
                    return Err(Bypass::Volatile);
                }
                let mut text = String::new();
                for (i, f) in t.fragments.iter().enumerate() {
                    match f {
                        Fragment::StringChunk(s) => text.push_str(s),
                        _ => text.push_str(&format!(" ${} ", i + 1)),
                    }
                }
                sql::collect_reads(&text, &mut tables)?;
            }
            Node::Value(v) if !generator_free(v) => return Err(Bypass::Volatile),
            Node::Value(_) | Node::Get(_) | Node::GetFirstNonEmpty(_) | Node::Unit => {}
            Node::Seq(v) | Node::Concat(v) | Node::Sum(v) => stack.extend(v),
            Node::Let { bindings, expr } => {
                stack.extend(bindings.iter().map(|(_, n)| n));
                stack.push(expr);
            }
            Node::Reverse(e) | Node::Unique(e) | Node::Required(e) => stack.push(e),
            Node::MapField { records, .. } => stack.push(records),
            Node::Join { parent, children, .. } => {
                stack.push(parent);
                stack.extend(children.iter().map(|c| &c.child));
            }
            Node::DataMap { expr, .. } | Node::Validate { expr, .. } => stack.push(expr),
            Node::Process { expr, operations } => {
                let cursors = operations.pagination.iter().flat_map(|p| p.cursor.iter().flat_map(|c| c.values()));
                if !cursors.into_iter().all(generator_free) {
                    return Err(Bypass::Volatile);
                }
                stack.push(expr);
            }
            Node::If { value, then, otherwise, .. } => stack.extend([&**value, &**then, &**otherwise]),
            Node::Diff { from, to, .. } => stack.extend([&**from, &**to]),
        }
    }
    Ok(tables)
}

/// A request id in Cloudflare's `cf-ray` form (`<16 hex>-<region>`), which the client splits
/// into `requestId` and `region`.
pub fn request_id() -> HeaderValue {
    static SEED: OnceLock<u64> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(rand::random);
    let n = N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    HeaderValue::from_str(&format!("{n:016x}-TIDEPOOL")).unwrap_or_else(|_| HeaderValue::from_static("unspecified"))
}

/// Adds the cache headers to a response.
pub fn with_status(mut r: Response, status: Status, last_modified: Option<&HeaderValue>) -> Response {
    let h = r.headers_mut();
    h.insert(STATUS_HEADER, HeaderValue::from_static(status.as_str()));
    if let Some(lm) = last_modified {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    h.insert("cf-ray", request_id());
    r
}

/// The response for a result from the cache (or just stored): the payload as it was stored.
pub fn respond(entry: &Entry, status: Status) -> Response {
    let mut r = Response::new(Body::from(entry.payload.clone()));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_status(r, status, Some(&entry.last_modified))
}

/// 400 P6005 for bad cache headers.
pub fn bad_strategy(b: BadStrategy) -> Response {
    super::error(400, "P6005", b.0, json!({}))
}

/// A boxed background refresh of `body`, built only when an entry turns out stale (a fresh hit
/// clones nothing).
pub fn refill<'a>(app: &'a Arc<App>, target: &'a Target, body: &'a Bytes) -> impl FnOnce() -> crate::cache::Refill + 'a {
    move || {
        let (app, target, body) = (app.clone(), target.clone(), body.clone());
        Box::new(move || Box::pin(async move { super::execute(app, target, body).await.ok() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CacheConfig {
        CacheConfig { max_ttl: Duration::from_secs(100), ..CacheConfig::default() }
    }

    #[test]
    fn cache_control_and_tags() {
        let s = |cc, tags| strategy(&cfg(), cc, tags);
        assert_eq!(s(None, None).unwrap(), None);
        assert_eq!(s(Some("no-cache"), None).unwrap(), None);
        assert_eq!(s(Some("max-age=60,no-store"), None).unwrap(), None);
        let got = s(Some("max-age=60,stale-while-revalidate=30"), Some("users,posts")).unwrap().unwrap();
        assert_eq!(got, Strategy { ttl: Duration::from_secs(60), swr: Duration::from_secs(30), tags: vec!["users".into(), "posts".into()] });
        assert_eq!(s(Some("stale-while-revalidate=5"), None).unwrap().unwrap().ttl, Duration::ZERO);
        assert_eq!(s(Some("max-age=1000"), None).unwrap().unwrap().ttl, Duration::from_secs(100), "clamped to max_ttl");
        assert_eq!(s(Some("public, max-age=1"), None).unwrap().unwrap().ttl, Duration::from_secs(1), "unknown directives ignored");
        for bad in ["max-age=-1", "max-age=1.5", "max-age=", "max-age", "max-age=abc", "stale-while-revalidate=1e3", "max-age=99999999999999999"] {
            assert!(s(Some(bad), None).is_err(), "{bad}");
        }
        assert!(s(Some("max-age=1"), Some("a,b,c,d,e,f")).is_err());
        assert!(s(Some("max-age=1"), Some("bad tag")).is_err());
    }
}
