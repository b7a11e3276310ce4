//! The console's control verbs with PgBouncer's semantics: `RELOAD`, `PAUSE [db]`, `RESUME [db]`,
//! `RECONNECT [db]`, `KILL [db]`, `WAIT_CLOSE [db]`, `DISABLE db`, `ENABLE db`. Each answers its
//! own command tag, or an ErrorResponse (SQLSTATE 08P01 as PgBouncer's admin errors; F0000 for a
//! config file RELOAD rejected). They act through the pools every front end leases from, so a
//! pause holds wire, WebSocket, `/sql` and Prisma traffic alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tidepool_proto::sqlstate;

use super::{CommandError, CONSOLE_DB};
use crate::app::{App, Database};

/// SQLSTATE config_file_error: RELOAD found an invalid file.
const CONFIG_FILE_ERROR: &str = "F0000";

fn admin_error(msg: String) -> CommandError {
    CommandError(sqlstate::PROTOCOL_VIOLATION, msg)
}

/// The databases a verb names: the one given, or every one without an argument.
fn targets(app: &App, arg: Option<&str>) -> Result<Vec<Arc<Database>>, CommandError> {
    match arg {
        Some(db) if db == CONSOLE_DB || db == "tidepool" => Err(admin_error("cannot pause/alter the admin database".into())),
        Some(db) => app.database(db).map(|d| vec![d]).ok_or_else(|| admin_error(format!("no such database: {db}"))),
        None => Ok(app.databases()),
    }
}

/// `RELOAD`: re-reads the config file; an invalid one is refused whole and reported.
pub async fn reload(app: &App) -> Result<&'static str, CommandError> {
    match crate::reload::reload(app).await {
        Ok(_) => Ok("RELOAD"),
        Err(crate::reload::ReloadError::NoFile) => Err(admin_error("no config file to reload (tidepool was not started from one)".into())),
        Err(e) => Err(CommandError(CONFIG_FILE_ERROR, format!("config file rejected, the running configuration stays: {e}"))),
    }
}

/// `PAUSE [db]`: waits until every server connection of the database(s) is released, closes
/// them; new transactions queue until `RESUME`.
pub async fn pause(app: &App, arg: Option<&str>) -> Result<&'static str, CommandError> {
    let dbs = targets(app, arg)?;
    if let Some(name) = arg {
        if dbs.iter().all(|d| d.pools().all(|p| p.is_paused())) {
            return Err(admin_error(format!("database {name} is already paused")));
        }
    }
    let waits: Vec<_> = dbs.iter().flat_map(|d| d.pools().map(|p| p.pause()).collect::<Vec<_>>()).collect();
    tracing::info!(database = ?arg, "PAUSE: waiting for server connections to be released");
    futures_util::future::join_all(waits).await;
    tracing::info!(database = ?arg, "PAUSE: paused");
    Ok("PAUSE")
}

/// `RESUME [db]`: lifts a pause (or a KILL); queued transactions proceed in order.
pub fn resume(app: &App, arg: Option<&str>) -> Result<&'static str, CommandError> {
    let dbs = targets(app, arg)?;
    if !dbs.iter().any(|d| d.pools().any(|p| p.is_paused())) {
        return Err(admin_error(match arg {
            Some(name) => format!("database {name} is not paused"),
            None => "pooler is not paused/suspended".into(),
        }));
    }
    for d in &dbs {
        d.pools().for_each(|p| p.resume());
        std::mem::take(&mut *d.paused_predecessors.lock()).iter().for_each(|p| p.resume());
    }
    tracing::info!(database = ?arg, "RESUME");
    Ok("RESUME")
}

/// `RECONNECT [db]`: server connections are closed as they are released (idle ones now); new
/// ones are opened as needed.
pub fn reconnect(app: &App, arg: Option<&str>) -> Result<&'static str, CommandError> {
    for d in targets(app, arg)? {
        d.pools().for_each(|p| p.reconnect());
    }
    tracing::info!(database = ?arg, "RECONNECT");
    Ok("RECONNECT")
}

/// `KILL [db]`: drops the clients and server connections of the database(s) at once; they stay
/// paused until `RESUME`.
pub fn kill(app: &App, arg: Option<&str>) -> Result<&'static str, CommandError> {
    let dbs = targets(app, arg)?;
    let names: Vec<&str> = dbs.iter().map(|d| d.config.name.as_str()).collect();
    let mut killed = 0;
    for c in app.clients.snapshot() {
        if names.contains(&c.database.as_str()) {
            c.kill.cancel();
            killed += 1;
        }
    }
    for d in &dbs {
        for p in d.pools() {
            // Leases of killed sessions end with them (and are closed, not returned).
            drop(p.pause());
            p.reconnect();
        }
    }
    tracing::warn!(database = ?arg, clients = killed, "KILL: clients and server connections dropped; paused until RESUME");
    Ok("KILL")
}

/// `WAIT_CLOSE [db]`: waits until the server connections opened before the last RECONNECT (or
/// KILL) are closed.
pub async fn wait_close(app: &App, arg: Option<&str>) -> Result<&'static str, CommandError> {
    let waits: Vec<_> = targets(app, arg)?.iter().flat_map(|d| d.pools().map(|p| p.wait_close()).collect::<Vec<_>>()).collect();
    futures_util::future::join_all(waits).await;
    Ok("WAIT_CLOSE")
}

/// `DISABLE db` / `ENABLE db`: refuse (or admit again) new client connections to the database.
pub fn set_enabled(app: &App, arg: Option<&str>, enabled: bool) -> Result<&'static str, CommandError> {
    let Some(name) = arg else { return Err(admin_error(format!("{} needs a database name", if enabled { "ENABLE" } else { "DISABLE" }))) };
    for d in targets(app, Some(name))? {
        d.disabled.store(!enabled, Ordering::Relaxed);
    }
    tracing::info!(database = name, enabled, "client connections {}", if enabled { "enabled" } else { "disabled" });
    Ok(if enabled { "ENABLE" } else { "DISABLE" })
}
