//! The Prisma 7 routes called in-process by the DataProxy front end (Prisma 5/6 clients): each
//! handler is run directly with the extractors an HTTP request would give it, without a router.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::metered::query;
use super::{commit, itx_query, rollback, start, Guard};
use crate::app::App;

/// A Prisma 7 route called in-process (by the DataProxy front end) without going through a router.
pub(crate) enum Internal {
    Query,
    Start,
    ItxQuery(String),
    Commit(String),
    Rollback(String),
}

impl Internal {
    /// `/query`, `/transaction/start`, `/transaction/{id}/query|commit|rollback`.
    pub(crate) fn from_path(path: &str) -> Option<Internal> {
        match path {
            "/query" => return Some(Internal::Query),
            "/transaction/start" => return Some(Internal::Start),
            _ => {}
        }
        let rest = path.strip_prefix("/transaction/")?;
        let (id, op) = rest.split_once('/')?;
        let id = id.to_owned();
        match op {
            "query" => Some(Internal::ItxQuery(id)),
            "commit" => Some(Internal::Commit(id)),
            "rollback" => Some(Internal::Rollback(id)),
            _ => None,
        }
    }

    /// Runs the route's handler with these credentials and body; the same path as an HTTP request.
    pub(crate) async fn call(self, app: Arc<App>, guard: Guard, headers: HeaderMap, body: Body) -> Response {
        let uri = |id: &str, op: &str| format!("/transaction/{id}/{op}").parse::<axum::http::Uri>().unwrap_or_default();
        match self {
            Internal::Query => query(State(app), guard, headers, body).await,
            Internal::Start => start(State(app), guard, headers, body).await,
            Internal::ItxQuery(id) => itx_query(State(app), guard, uri(&id, "query"), headers, Path(id), body).await,
            Internal::Commit(id) => commit(State(app), guard, uri(&id, "commit"), headers, Path(id), body).await,
            Internal::Rollback(id) => rollback(State(app), guard, uri(&id, "rollback"), headers, Path(id), body).await,
        }
    }
}
