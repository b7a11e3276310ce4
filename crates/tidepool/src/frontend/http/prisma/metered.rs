//! Prisma requests measured for `crate::stats` (front end `prisma`): each route's handler body
//! runs with a [`RequestMeter`] that is attached to the database once the request is authorized
//! and records the outcome its status stands for (with the client-safe message of an error).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{end_run, itx_query_run, query_inner, start_run, Guard};
use crate::app::App;
use crate::stats::{ErrorNote, Front, RequestMeter};

pub(super) async fn query(State(app): State<Arc<App>>, guard: Guard, headers: HeaderMap, body: Body) -> Response {
    let mut meter = RequestMeter::start(Front::Prisma);
    let r = query_inner(app, guard, headers, body, &mut meter).await;
    metered(meter, r)
}

/// Records a finished Prisma request (with the client-safe message of an error response).
fn metered(meter: RequestMeter, r: Response) -> Response {
    let note = r.extensions().get::<ErrorNote>().map(|n| n.0.as_str());
    meter.finish(r.status().as_u16(), note);
    r
}

pub(super) async fn start_inner(app: Arc<App>, guard: Guard, headers: HeaderMap, body: Body, gone: Arc<std::sync::atomic::AtomicBool>) -> Response {
    let mut meter = RequestMeter::start(Front::Prisma);
    let r = start_run(app, guard, headers, body, gone, &mut meter).await;
    metered(meter, r)
}

pub(super) async fn itx_query_inner(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, body: Body) -> Response {
    let mut meter = RequestMeter::start(Front::Prisma);
    let r = itx_query_run(app, guard, headers, id, body, &mut meter).await;
    metered(meter, r)
}

pub(super) async fn end(app: Arc<App>, guard: Guard, headers: HeaderMap, id: String, commit: bool) -> Response {
    let mut meter = RequestMeter::start(Front::Prisma);
    let r = end_run(app, guard, headers, id, commit, &mut meter).await;
    metered(meter, r)
}
