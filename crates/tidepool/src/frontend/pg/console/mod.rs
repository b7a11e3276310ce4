//! The PgBouncer-compatible admin console: a login to the virtual database `pgbouncer` (alias
//! `tidepool`) by a user named in `[server] admin_users` or `stats_users` gets this session
//! instead of a pooled one. It speaks only the simple query protocol (as PgBouncer's does),
//! answers from tidepool's own state ([`show`]) and never touches an upstream server.
//!
//! Control commands: `KILL_CLIENT id` (the `id` column of `SHOW CLIENTS`), `SHUTDOWN` (the same
//! drain as SIGTERM), and the pool verbs of [`control`] (`RELOAD`, `PAUSE`, `RESUME`,
//! `RECONNECT`, `KILL`, `WAIT_CLOSE`, `DISABLE`, `ENABLE`); `SUSPEND` and `SET` answer 0A000.
//!
//! Errors follow PgBouncer: an unknown command or a stats user running an admin command is an
//! ErrorResponse with SQLSTATE 08P01, after which the session goes on.

mod control;
mod peers;
mod show;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tidepool_proto::framing::{try_frame, write_msg};
use tidepool_proto::{backend, sqlstate, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::LoginError;
use crate::app::App;
use crate::clients::{NewClient, Registered};
use crate::net::Duplex;

/// The control commands tidepool runs (admin users only). The dispatch in `Console::command`
/// matches on this enum, and `SHOW HELP` lists [`Verb::ALL`]: a new verb cannot be accepted
/// without being listed, nor listed without being handled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verb {
    Pause,
    Resume,
    Reconnect,
    Kill,
    WaitClose,
    Disable,
    Enable,
    Reload,
    KillClient,
    Shutdown,
}

impl Verb {
    /// Every verb, in `SHOW HELP` order (verbs taking the same arguments next to each other).
    const ALL: [Verb; 10] =
        [Verb::Pause, Verb::Resume, Verb::Reconnect, Verb::Kill, Verb::WaitClose, Verb::Disable, Verb::Enable, Verb::Reload, Verb::KillClient, Verb::Shutdown];

    fn name(self) -> &'static str {
        match self {
            Verb::Pause => "PAUSE",
            Verb::Resume => "RESUME",
            Verb::Reconnect => "RECONNECT",
            Verb::Kill => "KILL",
            Verb::WaitClose => "WAIT_CLOSE",
            Verb::Disable => "DISABLE",
            Verb::Enable => "ENABLE",
            Verb::Reload => "RELOAD",
            Verb::KillClient => "KILL_CLIENT",
            Verb::Shutdown => "SHUTDOWN",
        }
    }

    /// The arguments the verb takes, as `SHOW HELP` prints them.
    fn usage(self) -> &'static str {
        match self {
            Verb::Pause | Verb::Resume | Verb::Reconnect | Verb::Kill | Verb::WaitClose => "[<db>]",
            Verb::Disable | Verb::Enable => "<db>",
            Verb::KillClient => "<id>",
            Verb::Reload | Verb::Shutdown => "",
        }
    }

    fn parse(word: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.name() == word)
    }
}

/// PgBouncer control commands tidepool does not run: they answer 0A000 (and are not in HELP).
const UNSUPPORTED_VERBS: [&str; 2] = ["SUSPEND", "SET"];

/// The `SHOW HELP` text: every `SHOW` subject of [`show::SUBJECTS`] and every [`Verb`].
pub fn help_text() -> String {
    let mut text = String::from("\n");
    for chunk in show::SUBJECTS.chunks(8) {
        let names: Vec<&str> = chunk.iter().map(|(name, _)| *name).collect();
        text.push_str(&format!("\tSHOW {}\n", names.join("|")));
    }
    let mut lines: Vec<(Vec<&str>, &str)> = Vec::new();
    for v in Verb::ALL {
        match lines.last_mut() {
            Some((names, usage)) if *usage == v.usage() => names.push(v.name()),
            _ => lines.push((vec![v.name()], v.usage())),
        }
    }
    for (names, usage) in lines {
        let line = format!("\t{} {usage}", names.join("|"));
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.truncate(text.trim_end().len());
    text
}

/// The database name a console session is listed under.
pub const CONSOLE_DB: &str = "pgbouncer";
/// Largest message a console client may send (a command is a short line).
const MAX_CONSOLE_MESSAGE: usize = 64 * 1024;
/// Longest part of a rejected command echoed back in the error.
const ECHO_MAX: usize = 120;

/// A user admitted to the console.
pub struct Operator {
    pub user: String,
    /// In `admin_users` (every command); otherwise a `stats_users` member (SHOW only).
    pub admin: bool,
    pub application_name: Option<String>,
}

/// Whether a login to `dbname` is a console login: the virtual names, unless a configured
/// database has that name, and only when some user may use the console.
pub fn is_console_db(app: &App, dbname: &str) -> bool {
    let cfg = &app.config().server;
    matches!(dbname, "pgbouncer" | "tidepool") && app.database(dbname).is_none() && !(cfg.admin_users.is_empty() && cfg.stats_users.is_empty())
}

/// Admits an authenticated user to the console, or refuses it (28000).
pub fn admit(app: &App, user: &str, application_name: Option<String>) -> Result<Operator, LoginError> {
    let cfg = &app.config().server;
    let admin = cfg.admin_users.iter().any(|u| u == user);
    if !admin && !cfg.stats_users.iter().any(|u| u == user) {
        return Err(LoginError::Fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("user \"{user}\" may not use the admin console (not in admin_users or stats_users)"),
        ));
    }
    Ok(Operator { user: user.to_owned(), admin, application_name })
}

/// ParameterStatus, BackendKeyData and ReadyForQuery for a console login.
pub fn greeting(out: &mut BytesMut, cancel: (i32, i32)) {
    let version = format!("{}/tidepool", env!("CARGO_PKG_VERSION"));
    for (k, v) in [
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("server_version", version.as_str()),
    ] {
        backend::parameter_status(out, k, v);
    }
    backend::backend_key_data(out, cancel.0, cancel.1);
    backend::ready_for_query(out, b'I');
}

/// Lists the console session and runs it on a task of its own.
pub fn start<S: Duplex>(app: &Arc<App>, client: S, rbuf: BytesMut, operator: Operator, frontend: &'static str, peer: Option<SocketAddr>) {
    let span = tracing::info_span!("console", frontend, peer = ?peer, user = %operator.user);
    tracing::info!(parent: &span, admin = operator.admin, "admin console login");
    let registered = app.clients.register(NewClient {
        user: operator.user.clone(),
        database: CONSOLE_DB.into(),
        frontend,
        addr: peer,
        application_name: operator.application_name.clone(),
    });
    let console = Console { app: app.clone(), client, rbuf, out: BytesMut::new(), operator, in_extended: false, _registered: registered };
    app.tracker.spawn(console.serve().instrument(span));
}

/// Why a console command failed: the ErrorResponse's SQLSTATE and message.
pub struct CommandError(pub &'static str, pub String);

struct Console<S> {
    app: Arc<App>,
    client: S,
    rbuf: BytesMut,
    out: BytesMut,
    operator: Operator,
    /// An extended-protocol message was refused: drop messages until Sync.
    in_extended: bool,
    _registered: Registered,
}

impl<S: Duplex> Console<S> {
    async fn serve(mut self) {
        loop {
            loop {
                match try_frame(&mut self.rbuf, MAX_CONSOLE_MESSAGE) {
                    Ok(Some(f)) => {
                        if !self.on_frame(&f).await {
                            let _ = self.flush().await;
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        backend::error_response(&mut self.out, "FATAL", sqlstate::PROTOCOL_VIOLATION, &e.to_string());
                        let _ = self.flush().await;
                        return;
                    }
                }
            }
            if self.flush().await.is_err() {
                return;
            }
            let read = tokio::select! {
                () = self._registered.info().kill.cancelled() => {
                    backend::error_response(&mut self.out, "FATAL", sqlstate::ADMIN_SHUTDOWN, "terminated by the administrator (KILL_CLIENT)");
                    let _ = self.flush().await;
                    return;
                }
                _ = self.app.shutdown.cancelled() => {
                    backend::error_response(&mut self.out, "FATAL", sqlstate::ADMIN_SHUTDOWN, "tidepool is shutting down");
                    let _ = self.flush().await;
                    return;
                }
                r = self.client.read_buf(&mut self.rbuf) => r,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.client.write_all(&self.out).await?;
            self.out.clear();
        }
        self.client.flush().await
    }

    /// Handles one client message; false ends the session.
    async fn on_frame(&mut self, f: &Frame) -> bool {
        match f.tag {
            b'Q' => {
                self.in_extended = false;
                match query_text(f.body()) {
                    Some(q) => self.command(q).await,
                    None => backend::error_response(&mut self.out, "ERROR", sqlstate::PROTOCOL_VIOLATION, "invalid Query message"),
                }
                backend::ready_for_query(&mut self.out, b'I');
                true
            }
            b'X' => false,
            b'S' => {
                self.in_extended = false;
                backend::ready_for_query(&mut self.out, b'I');
                true
            }
            b'H' => true,
            b'P' | b'B' | b'D' | b'E' | b'C' | b'F' => {
                if !self.in_extended {
                    self.in_extended = true;
                    let msg = "the admin console supports only the simple query protocol";
                    backend::error_response(&mut self.out, "ERROR", sqlstate::PROTOCOL_VIOLATION, msg);
                }
                true
            }
            other => {
                let msg = format!("unexpected message type {:?} on the admin console", char::from(other));
                backend::error_response(&mut self.out, "FATAL", sqlstate::PROTOCOL_VIOLATION, &msg);
                false
            }
        }
    }

    /// Runs one command line and writes its answer (without ReadyForQuery).
    async fn command(&mut self, text: &str) {
        let line = text.trim().trim_end_matches(';').trim();
        if line.is_empty() {
            write_msg(&mut self.out, b'I', |_| {});
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let verb = words[0].to_ascii_uppercase();
        let result = match verb.as_str() {
            "SHOW" if words.len() == 2 => show::run(&self.app, &words[1].to_ascii_uppercase(), &mut self.out),
            "SHOW" => Err(invalid(line)),
            // Everything but SHOW needs an admin user: checked once, before any control verb, so a
            // command added below is never open to stats users by omission.
            v if !self.operator.admin => Err(if Verb::parse(v).is_some() || UNSUPPORTED_VERBS.contains(&v) {
                CommandError(sqlstate::PROTOCOL_VIOLATION, "admin access needed".into())
            } else {
                invalid(line)
            }),
            v => match Verb::parse(v) {
                Some(verb) => self.control(verb, &words, line).await,
                None if UNSUPPORTED_VERBS.contains(&v) => {
                    Err(CommandError(sqlstate::FEATURE_NOT_SUPPORTED, format!("{line} is not supported by tidepool yet")))
                }
                None => Err(invalid(line)),
            },
        };
        if let Err(CommandError(code, msg)) = result {
            tracing::debug!(code, msg, "console command refused");
            backend::error_response(&mut self.out, "ERROR", code, &msg);
        }
    }
}

/// Runs a waiting command unless tidepool starts shutting down meanwhile.
async fn until_shutdown(app: &App, f: impl std::future::Future<Output = Result<&'static str, CommandError>>) -> Result<&'static str, CommandError> {
    tokio::select! {
        r = f => r,
        () = app.shutdown.cancelled() => Err(CommandError(sqlstate::ADMIN_SHUTDOWN, "tidepool is shutting down".into())),
    }
}

impl<S: Duplex> Console<S> {
    /// Runs one control command (the caller checked the user is an admin).
    async fn control(&mut self, verb: Verb, words: &[&str], line: &str) -> Result<(), CommandError> {
        if verb == Verb::KillClient {
            return self.kill_client(words, line);
        }
        if words.len() > 2 || (words.len() == 2 && verb.usage().is_empty()) {
            return Err(invalid(line));
        }
        tracing::info!(user = %self.operator.user, command = line, "admin console command");
        let app = self.app.clone();
        let arg = words.get(1).copied();
        let tag = match verb {
            Verb::Shutdown => {
                tracing::warn!(user = %self.operator.user, "SHUTDOWN from the admin console: draining");
                self.app.stop_requested.cancel();
                Ok("SHUTDOWN")
            }
            Verb::Reload => control::reload(&app).await,
            Verb::Pause => until_shutdown(&app, control::pause(&app, arg)).await,
            Verb::Resume => control::resume(&app, arg),
            Verb::Reconnect => control::reconnect(&app, arg),
            Verb::Kill => control::kill(&app, arg),
            Verb::WaitClose => until_shutdown(&app, control::wait_close(&app, arg)).await,
            Verb::Disable => control::set_enabled(&app, arg, false),
            Verb::Enable => control::set_enabled(&app, arg, true),
            Verb::KillClient => Err(invalid(line)),
        }?;
        backend::command_complete(&mut self.out, tag);
        Ok(())
    }
}

impl<S> Console<S> {
    /// `KILL_CLIENT id`: closes that client's session at once (its server, if any, is closed too).
    fn kill_client(&mut self, words: &[&str], line: &str) -> Result<(), CommandError> {
        let [_, id] = words else { return Err(invalid(line)) };
        let Ok(id) = id.parse::<u64>() else { return Err(invalid(line)) };
        if !self.app.clients.kill(id) {
            return Err(CommandError(sqlstate::PROTOCOL_VIOLATION, format!("client {id} not found")));
        }
        tracing::info!(user = %self.operator.user, id, "KILL_CLIENT from the admin console");
        backend::command_complete(&mut self.out, "KILL_CLIENT");
        Ok(())
    }
}

/// PgBouncer's answer to an unknown command (the command echoed, shortened).
pub fn invalid(line: &str) -> CommandError {
    let mut shown: String = line.chars().take(ECHO_MAX).collect();
    if shown.len() < line.len() {
        shown.push('…');
    }
    CommandError(sqlstate::PROTOCOL_VIOLATION, format!("invalid command '{shown}', use SHOW HELP;"))
}

/// The text of a Query message (NUL-terminated UTF-8).
fn query_text(body: &[u8]) -> Option<&str> {
    let (last, text) = body.split_last()?;
    if *last != 0 || text.contains(&0) {
        return None;
    }
    std::str::from_utf8(text).ok()
}
