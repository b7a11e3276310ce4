//! Message handling inside a session: what each client message does to the attached server
//! (forward, rewrite a prepared-statement name, create a statement the server lacks, count the
//! answers owed) and what each server message does to the session (ReadyForQuery bookkeeping,
//! swallowing answers to tidepool's own messages, parameter tracking).

use bytes::Buf;
use tidepool_proto::backend::{self, parse_parameter_status, parse_ready, ErrorFields};
use tidepool_proto::framing::{peek_frame, reserve_partial, MAX_MESSAGE_CEILING};
use tidepool_proto::frontend::{self, FrontendMsg};
use tidepool_proto::{sqlstate, Frame};

use super::prepared::{Pending, Statement};
use super::session::{Attached, End, Session};
use super::state::{effects, Effects};
use crate::config::PoolMode;
use crate::net::Duplex;
use crate::stats::Outcome;

/// Server statement name that never exists: closing it yields CloseComplete and nothing else.
const NO_STATEMENT: &str = "tp_closed";

/// Parameters PostgreSQL reports with ParameterStatus that a client may change with SET.
const TRACKED: [&str; 6] = ["application_name", "client_encoding", "datestyle", "intervalstyle", "timezone", "standard_conforming_strings"];

impl<S: Duplex> Session<S> {
    /// Whether the client's `client_encoding` is UTF-8 (kept in `Session::utf8`, recomputed by
    /// [`utf8_params`] whenever the parameters change: no map lookup per message).
    pub(super) fn utf8_client(&self) -> bool {
        self.utf8
    }

    /// Forwards one client message to the attached server, rewriting it as needed. `fx`: what
    /// the message's SQL does to session state (from [`Session::screen`]).
    pub(super) fn on_client_frame(&mut self, frame: Frame, fx: Option<Effects>) -> Result<(), End> {
        let transaction = self.mode == PoolMode::Transaction;
        let utf8 = self.utf8_client();
        let max_prepared = self.db.config.max_prepared_statements;
        let msg = FrontendMsg::parse(&frame).map_err(|e| End::Fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
        if self.app.cache.config().invalidate_on_write {
            let sql = match &msg {
                FrontendMsg::Query { sql } => Some(*sql),
                FrontendMsg::Parse { query, .. } => Some(*query),
                FrontendMsg::Bind { statement, .. } if !statement.is_empty() => self.stmts.get(statement).map(|s| s.query.as_str()),
                _ => None,
            };
            if let Some(sql) = sql {
                let tables = crate::cache::sql::written_tables(sql.as_bytes());
                if !tables.is_empty() {
                    self.app.cache.written(&self.db.config.name, tables.clone());
                    self.pending_writes.extend(tables);
                }
            }
        }
        let Some(a) = self.server.as_mut() else { return Ok(()) };
        a.keep = false;
        if let Some(fx) = &fx {
            Self::note_effects(a, self.extra.as_deref(), fx);
        }
        match msg {
            FrontendMsg::Query { .. } => {
                a.pending += 1;
                a.queue.push_back(Pending::Query);
            }
            FrontendMsg::Parse { name, query, param_types } => {
                a.unsynced = true;
                if transaction && !name.is_empty() {
                    if self.stmts.get(name).is_none() && self.stmts.len() >= max_prepared {
                        return Err(End::Fatal(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            format!("more than {max_prepared} prepared statements (max_prepared_statements)"),
                        ));
                    }
                    let stmt = Statement::new(query, &param_types, utf8);
                    if a.lease.prepared.contains(&stmt.server_name) {
                        // The server has it already. The client still expects a ParseComplete, in
                        // order: a Close of a statement that does not exist yields exactly one
                        // answer and changes nothing (an unnamed Parse would replace the client's
                        // own unnamed statement).
                        frontend::close(&mut a.to_server, b'S', NO_STATEMENT);
                        a.queue.push_back(Pending::ParseStandIn { client_name: name.to_owned() });
                    } else {
                        frontend::parse(&mut a.to_server, &stmt.server_name, query, &param_types).map_err(protocol_violation)?;
                        a.lease.prepared.insert(stmt.server_name.clone());
                        a.queue.push_back(Pending::Parse { server_name: Some(stmt.server_name.clone()), client_name: Some(name.to_owned()), injected: false });
                    }
                    self.stmts.insert(name, stmt);
                    return Ok(());
                }
                a.queue.push_back(Pending::Parse { server_name: None, client_name: None, injected: false });
            }
            FrontendMsg::Bind { statement, .. } if transaction && !statement.is_empty() => {
                a.unsynced = true;
                if let Some(stmt) = self.stmts.get(statement) {
                    // Each execution may leave state on this server, whatever the Parse did. A
                    // pin takes a slot if one is free; otherwise the state goes with the
                    // transaction.
                    if let Some(fx) = stmt.stateful.then(|| effects(stmt.query.as_bytes(), utf8, true)).flatten() {
                        if fx.pin {
                            let x = self.extra.get_or_insert_with(Box::default);
                            if x.pin.is_none() {
                                x.pin = self.db.pins.try_pin();
                            }
                            x.sticky |= fx.sticky;
                        }
                        Self::note_effects(a, self.extra.as_deref(), &fx);
                    }
                    ensure_prepared(a, stmt);
                    let rewritten = frontend::rewrite_bind(&frame, &stmt.server_name).map_err(|e| End::Fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
                    a.to_server.extend_from_slice(&rewritten);
                    return Ok(());
                }
            }
            FrontendMsg::Describe { kind: b'S', name } if transaction && !name.is_empty() => {
                a.unsynced = true;
                if let Some(stmt) = self.stmts.get(name) {
                    ensure_prepared(a, stmt);
                    frontend::describe(&mut a.to_server, b'S', &stmt.server_name);
                    return Ok(());
                }
            }
            FrontendMsg::Close { kind: b'S', name } if transaction && !name.is_empty() => {
                a.unsynced = true;
                // Statements stay cached on servers (shared by name hash); the client's name goes.
                self.stmts.remove(name);
                frontend::close(&mut a.to_server, b'S', NO_STATEMENT);
                a.queue.push_back(Pending::Close);
                return Ok(());
            }
            // During COPY FROM STDIN the server ignores Sync: nothing will answer it.
            FrontendMsg::Sync if a.copy_in.is_some() => {}
            FrontendMsg::Sync => {
                a.unsynced = false;
                a.pending += 1;
                a.queue.push_back(Pending::Sync);
            }
            FrontendMsg::FunctionCall => {
                a.pending += 1;
                a.queue.push_back(Pending::Query);
            }
            FrontendMsg::CopyDone | FrontendMsg::CopyFail => match a.copy_in.take() {
                // After an extended-protocol COPY the server answers only once a Sync follows.
                Some(simple) => a.unsynced |= !simple,
                None => a.queue.push_back(Pending::CopyEnd),
            },
            FrontendMsg::Close { .. } => {
                a.unsynced = true;
                a.queue.push_back(Pending::Close);
            }
            FrontendMsg::Bind { .. } | FrontendMsg::Describe { .. } | FrontendMsg::Execute { .. } => {
                a.unsynced = true;
            }
            FrontendMsg::Flush | FrontendMsg::CopyData => {}
            FrontendMsg::Terminate => return Err(End::Terminate),
            FrontendMsg::Password(_) => {
                return Err(End::Fatal(sqlstate::PROTOCOL_VIOLATION, "unexpected password message".into()));
            }
        }
        a.to_server.extend_from_slice(&frame.raw);
        Ok(())
    }

    /// Handles whatever complete messages the server sent.
    pub(super) fn on_server_data(&mut self) -> Result<(), End> {
        let Some(a) = self.server.as_mut() else { return Ok(()) };
        // Taken out while its messages are handled in place (the connection's other fields
        // change meanwhile), then put back without them.
        let mut buf = std::mem::take(&mut a.lease.rbuf);
        let (used, r) = self.relay(&buf);
        buf.advance(used);
        if r.is_ok() {
            reserve_partial(&mut buf, MAX_MESSAGE_CEILING);
        }
        if let Some(a) = self.server.as_mut() {
            a.lease.rbuf = buf;
        }
        r
    }

    /// Handles the complete server messages at the start of `buf` where they lie: each run of
    /// messages the client gets as they are is copied to it at once (no message is split off).
    /// Returns how many bytes were handled.
    fn relay(&mut self, buf: &[u8]) -> (usize, Result<(), End>) {
        let Some(a) = self.server.as_mut() else { return (0, Ok(())) };
        // `pos`: end of the messages handled; `run`: start of those not copied to the client yet.
        let mut pos = 0;
        let mut run = 0;
        let r = loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let (tag, len) = match peek_frame(rest, MAX_MESSAGE_CEILING) {
                Ok(Some(h)) => h,
                Ok(None) => break Ok(()),
                Err(e) => {
                    a.lease.broken = true;
                    break Err(End::Fatal(sqlstate::CONNECTION_FAILURE, format!("upstream protocol error: {e}")));
                }
            };
            let start = pos;
            pos += len;
            let body = buf.get(start + 5..pos).unwrap_or_default();
            // Not relayed as it is: what came before it goes now; `extra` is sent in its place.
            let held = |to_client: &mut bytes::BytesMut, run: &mut usize, extra: Option<fn(&mut bytes::BytesMut)>| {
                to_client.extend_from_slice(buf.get(*run..start).unwrap_or_default());
                if let Some(write) = extra {
                    write(to_client);
                }
                *run = pos;
            };
            let mut error = None;
            match tag {
                b'Z' => {
                    a.status = parse_ready(body).unwrap_or(b'E');
                    if a.status == b'I' {
                        // Counted with this ReadyForQuery's bytes below; the transaction ends after.
                        self.tx.server_message(len, None);
                        self.tx.ready(&self.db.traffic, self.front, self.last_activity);
                    }
                    if a.status == b'I' && !self.pending_writes.is_empty() {
                        let mut tables = std::mem::take(&mut self.pending_writes);
                        tables.sort();
                        tables.dedup();
                        self.app.cache.written(&self.db.config.name, tables);
                    }
                    a.pending = a.pending.saturating_sub(1);
                    while let Some(p) = a.queue.pop_front() {
                        if matches!(p, Pending::Sync | Pending::Query) {
                            break;
                        }
                    }
                }
                b'1' => {
                    if matches!(a.queue.front(), Some(Pending::Parse { .. })) {
                        if let Some(Pending::Parse { injected: true, .. }) = a.queue.pop_front() {
                            held(&mut self.to_client, &mut run, None);
                            continue;
                        }
                    }
                }
                b'3' => match a.queue.front() {
                    Some(Pending::ParseStandIn { .. }) => {
                        a.queue.pop_front();
                        held(&mut self.to_client, &mut run, Some(backend::parse_complete));
                        continue;
                    }
                    Some(Pending::Close) => {
                        a.queue.pop_front();
                    }
                    _ => {}
                },
                b'G' => copy_in_started(a),
                // The shared listener delivers this client's notifications (`crate::listen`);
                // a pooled server's copy would be a duplicate.
                b'A' if self.mode == PoolMode::Transaction => {
                    held(&mut self.to_client, &mut run, None);
                    continue;
                }
                b'E' => {
                    // An error ends COPY FROM STDIN on the server side: Syncs count again.
                    a.copy_in = None;
                    // Messages up to the next Sync are skipped by the server: their Parses never happen.
                    while matches!(a.queue.front(), Some(Pending::Parse { .. } | Pending::ParseStandIn { .. } | Pending::Close)) {
                        match a.queue.pop_front() {
                            Some(Pending::Parse { server_name, client_name, .. }) => {
                                if let Some(n) = server_name {
                                    a.lease.prepared.remove(&n);
                                }
                                if let Some(c) = client_name {
                                    self.stmts.remove(&c);
                                }
                            }
                            Some(Pending::ParseStandIn { client_name }) => self.stmts.remove(&client_name),
                            _ => {}
                        }
                    }
                    if let Ok(e) = ErrorFields::parse(body) {
                        if e.severity() == "FATAL" || e.severity() == "PANIC" {
                            a.lease.broken = true;
                        }
                        error = Some(Outcome::from_sqlstate(e.code()));
                        self.db.traffic.note_error(self.front, e.message());
                    }
                }
                b'S' => {
                    if let Ok((k, v)) = parse_parameter_status(body) {
                        let k = k.to_ascii_lowercase();
                        if TRACKED.contains(&k.as_str()) {
                            std::sync::Arc::make_mut(&mut self.params).insert(k.clone(), v.to_owned());
                            self.utf8 = utf8_params(&self.params);
                            a.lease.applied.insert(k, v.to_owned());
                        }
                    }
                    a.lease.note_parameter_status(body);
                }
                _ => {}
            }
            if !(tag == b'Z' && a.status == b'I') {
                self.tx.server_message(len, error);
            }
        };
        self.to_client.extend_from_slice(buf.get(run..pos).unwrap_or_default());
        (pos, r)
    }
}

/// The server entered COPY FROM STDIN (CopyInResponse). It ignores every Sync that reaches it
/// before the client's CopyDone/CopyFail, and clients do send some (libpq and tokio-postgres send
/// Execute+Sync before they know the statement is a COPY): forget the ones already counted, and
/// count none until the client ends the COPY.
fn copy_in_started(a: &mut Attached) {
    // A simple Query that started the COPY is still owed its ReadyForQuery; every earlier boundary
    // has been answered already.
    let simple = matches!(a.queue.front(), Some(Pending::Query));
    let mut i = usize::from(simple);
    let mut ended = false;
    while i < a.queue.len() {
        match a.queue[i] {
            Pending::Sync => {
                a.queue.remove(i);
                a.pending = a.pending.saturating_sub(1);
            }
            Pending::CopyEnd => {
                a.queue.remove(i);
                ended = true;
                break;
            }
            _ => i += 1,
        }
    }
    if !ended {
        a.copy_in = Some(simple);
    } else if !simple && !a.queue.iter().skip(i).any(|p| matches!(p, Pending::Sync)) {
        // Ended already, but the Sync that makes the server answer has not come yet.
        a.unsynced = true;
    }
}

/// Whether session parameters `params` (lower-case names) say the client encoding is UTF-8.
pub(super) fn utf8_params(params: &std::collections::HashMap<String, String>) -> bool {
    params.get("client_encoding").is_some_and(|e| is_utf8(e))
}

/// `client_encoding` values meaning UTF-8 (PostgreSQL ignores case, `-` and `_`).
fn is_utf8(encoding: &str) -> bool {
    let is = |word: &str| {
        let mut e = encoding.bytes().filter(u8::is_ascii_alphanumeric);
        word.bytes().all(|w| e.next().is_some_and(|b| b.eq_ignore_ascii_case(&w))) && e.next().is_none()
    };
    is("utf8") || is("unicode")
}

fn protocol_violation(e: tidepool_proto::ProtoError) -> End {
    End::Fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
}

/// Makes sure the server has `stmt`, queueing a Parse whose answer the client never sees.
fn ensure_prepared(a: &mut Attached, stmt: &Statement) {
    if a.lease.prepared.contains(&stmt.server_name) {
        return;
    }
    // The types came from the client's own Parse, which held at most 65535 of them.
    if frontend::parse(&mut a.to_server, &stmt.server_name, &stmt.query, &stmt.param_types).is_err() {
        return;
    }
    a.lease.prepared.insert(stmt.server_name.clone());
    a.queue.push_back(Pending::Parse { server_name: Some(stmt.server_name.clone()), client_name: None, injected: true });
}

#[cfg(test)]
mod tests {
    use super::is_utf8;

    #[test]
    fn utf8_encoding_names() {
        for yes in ["UTF8", "utf-8", "Utf_8", "unicode", "UNI-CODE"] {
            assert!(is_utf8(yes), "{yes}");
        }
        for no in ["", "utf", "utf88", "latin1", "SQL_ASCII", "unicodes", "8utf"] {
            assert!(!is_utf8(no), "{no}");
        }
    }
}
