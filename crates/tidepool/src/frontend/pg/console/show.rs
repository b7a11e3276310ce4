//! The console's `SHOW` commands. Each answers with at least PgBouncer's columns, in PgBouncer's
//! order (1.18's list, then columns later PgBouncer versions added), built from tidepool's live
//! state: pools and their counters, the client registry, the configuration. Where tidepool keeps
//! no such figure the column is 0 (counters) or NULL, never an invented value.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tidepool_proto::backend;

use super::{invalid, CommandError, CONSOLE_DB};
use crate::app::{App, Upstream};
use crate::config::{ServerConfig, UpstreamUrl};
use crate::pool::Pool;
use crate::stats::period::{Averages, DbTotals};

const TEXT: u32 = 25;
const INT8: u32 = 20;

type Row = Vec<Option<String>>;

fn t(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}
fn n(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// Writes RowDescription, the rows and CommandComplete `SHOW`.
fn emit(out: &mut BytesMut, columns: &[(&str, u32)], rows: &[Row]) {
    backend::row_description(out, columns);
    for r in rows {
        let values: Vec<Option<&str>> = r.iter().map(Option::as_deref).collect();
        backend::data_row(out, &values);
    }
    backend::command_complete(out, "SHOW");
}

/// How one `SHOW` subject writes its answer.
type Handler = fn(&App, &mut BytesMut);

/// Every `SHOW` subject the console answers, in the order `SHOW HELP` lists them: the one list
/// both [`run`] and the help text read, so they cannot disagree.
pub const SUBJECTS: [(&str, Handler); 14] = [
    ("HELP", help),
    ("CONFIG", config),
    ("DATABASES", databases),
    ("POOLS", pools),
    ("CLIENTS", clients),
    ("SERVERS", servers),
    ("USERS", users),
    ("VERSION", version),
    ("PEERS", super::peers::show),
    ("LISTS", lists),
    ("MEM", mem),
    ("STATS", stats),
    ("STATS_TOTALS", stats_totals),
    ("STATS_AVERAGES", stats_averages),
];

/// Runs `SHOW <what>` (`what` upper-cased).
pub fn run(app: &App, what: &str, out: &mut BytesMut) -> Result<(), CommandError> {
    match SUBJECTS.iter().find(|(name, _)| *name == what) {
        Some((_, handler)) => {
            handler(app, out);
            Ok(())
        }
        None => Err(invalid(&format!("SHOW {what}"))),
    }
}

fn help(_: &App, out: &mut BytesMut) {
    backend::notice_response(out, "00000", "Console usage", &super::help_text());
    backend::command_complete(out, "SHOW");
}

fn mem(_: &App, out: &mut BytesMut) {
    emit(out, &[("name", TEXT), ("size", INT8), ("used", INT8), ("free", INT8), ("memtotal", INT8)], &[]);
}

fn version(_: &App, out: &mut BytesMut) {
    emit(out, &[("version", TEXT)], &[vec![t(format!("tidepool {}", env!("CARGO_PKG_VERSION")))]]);
}

/// Databases in name order.
fn databases_sorted(app: &App) -> Vec<std::sync::Arc<crate::app::Database>> {
    let mut dbs = app.databases();
    dbs.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    dbs
}

fn pool_mode(db: &crate::app::Database) -> &'static str {
    match db.config.pool_mode {
        crate::config::PoolMode::Transaction => "transaction",
        crate::config::PoolMode::Session => "session",
    }
}

fn pools(app: &App, out: &mut BytesMut) {
    let columns = [
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT8),
        ("cl_waiting", INT8),
        ("cl_active_cancel_req", INT8),
        ("cl_waiting_cancel_req", INT8),
        ("sv_active", INT8),
        ("sv_active_cancel", INT8),
        ("sv_being_canceled", INT8),
        ("sv_idle", INT8),
        ("sv_used", INT8),
        ("sv_tested", INT8),
        ("sv_login", INT8),
        ("maxwait", INT8),
        ("maxwait_us", INT8),
        ("pool_mode", TEXT),
        ("load_balance_hosts", TEXT),
        // tidepool's own (after PgBouncer's columns): clients keeping a server for session state.
        ("tp_pinned", INT8),
    ];
    let row = |db: &str, user: &str, clients: usize, pool: Option<&Pool<Upstream>>, mode: &str| -> Row {
        let (waiting, active, idle) = pool.map_or((0, 0, 0), |p| (p.stats().waiting.get().max(0), p.active(), p.idle_count()));
        let mut r = vec![t(db), t(user), n(clients), n(waiting)];
        r.extend([n(0), n(0), n(active), n(0), n(0), n(idle), n(0), n(0), n(0), n(0), n(0), t(mode), None, n(0)]);
        r
    };
    let mut rows = vec![row(CONSOLE_DB, CONSOLE_DB, app.clients.count_for(CONSOLE_DB), None, "statement")];
    for db in databases_sorted(app) {
        let name = db.config.name.as_str();
        let mut own = row(name, &db.upstream_user, app.clients.count_for(name), Some(&db.pool), pool_mode(&db));
        if let Some(last) = own.last_mut() {
            *last = n(db.pins.held());
        }
        rows.push(own);
        let mut roles: Vec<_> = db.roles.values().collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        for role in roles {
            rows.push(row(name, &role.user, 0, Some(&role.pool), pool_mode(&db)));
        }
    }
    emit(out, &columns, &rows);
}

/// Each database's running totals and its last period's averages, in name order.
fn totals(app: &App) -> Vec<(String, DbTotals, Averages)> {
    databases_sorted(app)
        .into_iter()
        .map(|db| {
            let name = db.config.name.clone();
            let avg = app.stats_period.averages(&name);
            (name, DbTotals::of(&db), avg)
        })
        .collect()
}

fn stats(app: &App, out: &mut BytesMut) {
    let names = [
        "total_xact_count",
        "total_query_count",
        "total_received",
        "total_sent",
        "total_xact_time",
        "total_query_time",
        "total_wait_time",
        "avg_xact_count",
        "avg_query_count",
        "avg_recv",
        "avg_sent",
        "avg_xact_time",
        "avg_query_time",
        "avg_wait_time",
        "total_server_assignment_count",
        "total_client_parse_count",
        "total_server_parse_count",
        "total_bind_count",
        "avg_server_assignment_count",
        "avg_client_parse_count",
        "avg_server_parse_count",
        "avg_bind_count",
    ];
    let mut columns = vec![("database", TEXT)];
    columns.extend(names.iter().map(|c| (*c, INT8)));
    let rows: Vec<Row> = totals(app)
        .into_iter()
        .map(|(name, d, a)| {
            let mut r = vec![t(name), n(d.xacts), n(0), n(d.received), n(d.sent), n(d.xact_time), n(0), n(d.wait)];
            // Averages of the last stats period; queries are not counted (0).
            r.extend([n(a.xact_count), n(0), n(a.recv), n(a.sent), n(a.xact_time), n(0), n(a.wait_time)]);
            r.extend([n(d.assigned), n(0), n(0), n(0)]);
            r.extend([n(a.server_assignment_count), n(0), n(0), n(0)]);
            r
        })
        .collect();
    emit(out, &columns, &rows);
}

const TOTALS_COLUMNS: [(&str, u32); 13] = [
    ("database", TEXT),
    ("xact_count", INT8),
    ("query_count", INT8),
    ("bytes_received", INT8),
    ("bytes_sent", INT8),
    ("xact_time", INT8),
    ("query_time", INT8),
    ("wait_time", INT8),
    ("server_assignment_count", INT8),
    ("client_parse_count", INT8),
    ("server_parse_count", INT8),
    ("bind_count", INT8),
    ("client_login_count", INT8),
];

fn stats_totals(app: &App, out: &mut BytesMut) {
    let rows: Vec<Row> = totals(app)
        .into_iter()
        .map(|(name, d, _)| vec![t(name), n(d.xacts), n(0), n(d.received), n(d.sent), n(d.xact_time), n(0), n(d.wait), n(d.assigned), n(0), n(0), n(0), n(0)])
        .collect();
    emit(out, &TOTALS_COLUMNS, &rows);
}

/// The last stats period's averages (PgBouncer's STATS_AVERAGES: the `avg_` figures of STATS).
fn stats_averages(app: &App, out: &mut BytesMut) {
    let rows: Vec<Row> = totals(app)
        .into_iter()
        .map(|(name, _, a)| {
            vec![
                t(name),
                n(a.xact_count),
                n(0),
                n(a.recv),
                n(a.sent),
                n(a.xact_time),
                n(0),
                n(a.wait_time),
                n(a.server_assignment_count),
                n(0),
                n(0),
                n(0),
                n(0),
            ]
        })
        .collect();
    emit(out, &TOTALS_COLUMNS, &rows);
}

fn databases(app: &App, out: &mut BytesMut) {
    let columns = [
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT8),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT8),
        ("min_pool_size", INT8),
        ("reserve_pool", INT8),
        ("pool_mode", TEXT),
        ("max_connections", INT8),
        ("current_connections", INT8),
        ("paused", INT8),
        ("disabled", INT8),
        ("server_lifetime", INT8),
        ("load_balance_hosts", TEXT),
        ("max_client_connections", INT8),
        ("current_client_connections", INT8),
    ];
    let rows: Vec<Row> = databases_sorted(app)
        .into_iter()
        .map(|db| {
            let c = &db.config;
            let url = UpstreamUrl::parse(&c.url).ok();
            let current: usize = db.pools().map(|p| p.active() + p.idle_count()).sum();
            vec![
                t(c.name.clone()),
                url.as_ref().map(|u| u.host.clone()),
                url.as_ref().map(|u| u.port.to_string()),
                url.as_ref().map(|u| u.database.clone()),
                t(db.upstream_user.clone()),
                n(c.pool_size),
                n(c.min_idle),
                n(0),
                t(pool_mode(&db)),
                n(c.pool_size),
                n(current),
                n(usize::from(db.pool.is_paused())),
                n(usize::from(db.disabled.load(std::sync::atomic::Ordering::Relaxed))),
                n(c.max_lifetime.as_secs()),
                None,
                n(c.max_client_conn),
                n(db.clients.load(Ordering::Relaxed)),
            ]
        })
        .collect();
    emit(out, &columns, &rows);
}

const CLIENT_COLUMNS: [(&str, u32); 20] = [
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT8),
    ("local_addr", TEXT),
    ("local_port", INT8),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT8),
    ("wait_us", INT8),
    ("close_needed", INT8),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT8),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("id", INT8),
    ("frontend", TEXT),
];

fn clients(app: &App, out: &mut BytesMut) {
    let rows: Vec<Row> = app
        .clients
        .snapshot()
        .iter()
        .map(|c| {
            let mut r = vec![t("C"), t(c.user.clone()), t(c.database.clone()), t("active")];
            r.extend([c.addr.map(|a| a.ip().to_string()), c.addr.map(|a| a.port().to_string()), None, None]);
            r.extend([t(timestamp(c.connected)), None, n(0), n(0), n(0), t(format!("0x{:x}", c.id)), None, n(0), None]);
            r.extend([c.application_name.clone(), n(c.id), t(c.frontend)]);
            r
        })
        .collect();
    emit(out, &CLIENT_COLUMNS, &rows);
}

/// One row per open server connection of every pool: `active` while lent out, `idle` in the pool.
fn servers(app: &App, out: &mut BytesMut) {
    let mut rows: Vec<Row> = Vec::new();
    for db in databases_sorted(app) {
        let mut pools = vec![(db.upstream_user.clone(), db.pool.clone())];
        pools.extend(db.roles.values().map(|r| (r.user.clone(), r.pool.clone())));
        for (user, pool) in pools {
            let idle = pool.idle_keys(|c| c.info.as_ref().map(|i| i.id));
            for s in pool.manager().servers.snapshot() {
                let state = if idle.contains(&s.id) { "idle" } else { "active" };
                let mut r = vec![t("S"), t(user.clone()), t(db.config.name.clone()), t(state), t(s.addr.clone()), n(s.port)];
                r.extend([s.local_addr.map(|a| a.ip().to_string()), s.local_addr.map(|a| a.port().to_string())]);
                r.extend([t(timestamp(s.connected)), None, n(0), n(0), n(0), t(format!("0x{:x}", s.id)), None, n(s.remote_pid)]);
                r.extend([s.tls.then(|| "TLS".to_owned()), None, n(s.id), t("server")]);
                rows.push(r);
            }
        }
    }
    emit(out, &CLIENT_COLUMNS, &rows);
}

fn lists(app: &App, out: &mut BytesMut) {
    let pools: usize = app.databases().iter().map(|d| d.pools().count()).sum();
    let servers: usize = app.databases().iter().flat_map(|d| d.pools()).map(|p| p.active() + p.idle_count()).sum();
    let logging_in = app.config().server.max_preauth_connections.saturating_sub(app.preauth_pg.available_permits());
    let items: [(&str, usize); 12] = [
        ("databases", app.databases.read().len()),
        ("users", app.config().users.len()),
        ("pools", pools),
        ("free_clients", 0),
        ("used_clients", app.clients.snapshot().len()),
        ("login_clients", logging_in),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let rows: Vec<Row> = items.iter().map(|(k, v)| vec![t(*k), n(v)]).collect();
    emit(out, &[("list", TEXT), ("items", INT8)], &rows);
}

/// `[server]` settings (secrets hidden): key, value, default, changeable (no: no reload yet).
/// `[server]` keys whose values `SHOW CONFIG` never prints (stats users may run it).
const SECRET_KEYS: [&str; 2] = ["auth_secret", "dashboard_password"];

fn config(app: &App, out: &mut BytesMut) {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")),
        other => Some(other.to_string()),
    };
    let object = |c: &ServerConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (current, defaults) = (object(&app.config().server), object(&ServerConfig::default()));
    let rows: Vec<Row> = current
        .iter()
        .map(|(k, v)| {
            let secret = SECRET_KEYS.contains(&k.as_str());
            let shown = if secret { v.as_str().map(|_| "(set)".to_owned()) } else { value(v) };
            let default = if secret { None } else { defaults.get(k).and_then(value) };
            let changeable = if crate::reload::RESTART_ONLY_SERVER_KEYS.contains(&k.as_str()) { "no" } else { "yes" };
            vec![t(k.clone()), shown, default, t(changeable)]
        })
        .collect();
    emit(out, &[("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)], &rows);
}

fn users(app: &App, out: &mut BytesMut) {
    let config = app.config();
    let mut names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
    names.sort_unstable();
    let rows: Vec<Row> = names.into_iter().map(|u| vec![t(u), None]).collect();
    emit(out, &[("name", TEXT), ("pool_mode", TEXT)], &rows);
}

/// `YYYY-MM-DD HH:MM:SS UTC`, as PgBouncer prints times.
fn timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_format() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_525_296);
        assert_eq!(super::timestamp(at), "2026-12-06 02:48:16 UTC");
        assert_eq!(super::timestamp(std::time::UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
    }
}
