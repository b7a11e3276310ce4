//! The session side of session state in transaction mode (see `state.rs` for the classification
//! and docs/protocols.md for the rules): per client, the settings it changed (replayed on every
//! server through `params`), its pin slot and its `LISTEN` subscription; per lease, what the
//! transaction touched. Work happens at statement boundaries only: when a message with session
//! state is forwarded, and once when a transaction that touched state ends.

use std::collections::HashSet;

use bytes::BytesMut;
use tidepool_proto::framing::try_frame;
use tidepool_proto::{frontend, sqlstate, Frame};

use super::session::{Attached, Session};
use super::state::{effects, Effects, ListenOp};
use crate::config::PoolMode;
use crate::net::Duplex;
use crate::pins::PinSlot;

/// Per-client state, allocated the first time a client uses any of it.
#[derive(Default)]
pub(super) struct Extra {
    /// Settings this client changed (their values are in `Session::params`).
    pub sets: HashSet<String>,
    pub pin: Option<PinSlot>,
    /// A dblink connection was opened: the server stays until the client leaves, then closes.
    pub sticky: bool,
    pub sub: Option<crate::listen::Subscription>,
}

/// Per-lease notes of what the transaction did to session state.
#[derive(Default)]
pub(super) struct Touched {
    pub settings: Vec<String>,
    pub reset_all: bool,
    /// Pinned state may have been created or released: ask the server at the end.
    pub probe: bool,
    pub discard_all: bool,
    pub deallocate_all: bool,
}

impl Touched {
    pub(super) fn any(&self) -> bool {
        !self.settings.is_empty() || self.reset_all || self.probe || self.discard_all || self.deallocate_all
    }
}

/// Most settings read back after one transaction (beyond it the lease is reset instead).
const MAX_READBACK: usize = 1000;

/// Temp objects, SQL prepared statements, session advisory locks, held cursors.
const PINNED_STATE: &str = "(EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable))::text";

/// A fixed statement that fails with `code` and `message` (tidepool's own text, never the
/// client's), sent in place of a rejected one so the error arrives in order and the
/// transaction state is what any failed statement leaves.
fn raise_sql(code: &str, message: &str) -> String {
    let message = message.replace('\'', "''").replace('$', "");
    format!("DO $tp$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = '{message}'; END$tp$")
}

fn frame_of(buf: BytesMut) -> Option<Frame> {
    let mut buf = buf;
    try_frame(&mut buf, usize::MAX).ok().flatten()
}

/// The SQL text of a Query or Parse frame.
fn sql_of(frame: &Frame) -> Option<&[u8]> {
    // `CStr` finds the NUL with the standard library's word-at-a-time search.
    let cstr = |b: &[u8]| std::ffi::CStr::from_bytes_until_nul(b).ok().map(|c| c.to_bytes().len());
    let body = frame.body();
    let body = match frame.tag {
        b'Q' => body,
        b'P' => body.get(cstr(body)? + 1..)?,
        _ => return None,
    };
    body.get(..cstr(body)?)
}

impl<S: Duplex> Session<S> {
    fn full_classification(&self) -> bool {
        self.extra.as_ref().is_some_and(|x| x.pin.is_some() || x.sub.as_ref().is_some_and(|s| !s.is_empty()))
    }

    /// Before a Query or Parse is forwarded in transaction mode: classifies it, checks its
    /// bounds, takes a pin slot, and returns the frame to send (a rejected one is replaced by a
    /// statement raising the error) with its effects. `LISTEN`s are carried by the caller
    /// ([`Session::carry_listens`]) when the effects have any.
    pub(super) fn screen(&mut self, frame: Frame) -> (Frame, Option<Effects>) {
        if self.mode != PoolMode::Transaction {
            return (frame, None);
        }
        let utf8 = self.utf8_client();
        let Some(mut fx) = sql_of(&frame).and_then(|sql| effects(sql, utf8, self.full_classification())) else { return (frame, None) };
        if fx.discard_all {
            fx.listen.push(ListenOp::UnlistenAll);
        }
        if let Err((code, msg)) = self.admit(&fx) {
            return (self.rejected(&frame, code, &msg), None);
        }
        if fx.pin {
            let x = self.extra.get_or_insert_with(Box::default);
            if x.pin.is_none() {
                x.pin = self.db.pins.try_pin();
            }
            x.sticky |= fx.sticky;
        }
        (frame, Some(fx))
    }

    /// Checks the bounds a message's effects would cross, without side effects.
    fn admit(&self, fx: &Effects) -> Result<(), (&'static str, String)> {
        let cfg = &self.db.config;
        if !fx.settings.is_empty() {
            let sets = self.extra.as_ref().map(|x| &x.sets);
            // Names set earlier in this transaction count too (not read back yet).
            let pending = self.server.as_ref().map_or(&[][..], |a| &a.touched.settings[..]);
            let known = |n: &String| sets.is_some_and(|s| s.contains(n)) || pending.contains(n);
            let mut count = sets.map_or(0, HashSet::len) + pending.iter().filter(|n| !sets.is_some_and(|s| s.contains(*n))).count();
            let mut bytes: usize = sets.into_iter().flatten().chain(pending).map(|n| n.len() + self.params.get(n).map_or(0, String::len)).sum();
            for (name, len) in &fx.settings {
                if !known(name) {
                    count += 1;
                }
                bytes += name.len() + len;
            }
            if count > cfg.max_session_settings || bytes > cfg.max_session_settings_bytes {
                return Err((
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "tidepool keeps at most {} session settings of {} bytes per client (max_session_settings, max_session_settings_bytes)",
                        cfg.max_session_settings, cfg.max_session_settings_bytes
                    ),
                ));
            }
        }
        if fx.pin && self.extra.as_ref().is_none_or(|x| x.pin.is_none()) && self.db.pins.held() >= self.db.pins.max() {
            return Err((
                sqlstate::TOO_MANY_CONNECTIONS,
                format!(
                    "tidepool: {} clients already keep a server for session state (max_pinned = {}); temp tables, PREPARE, session advisory locks, WITH HOLD cursors and dblink need one",
                    self.db.pins.held(),
                    self.db.pins.max()
                ),
            ));
        }
        Ok(())
    }

    pub(super) async fn carry_listens(&mut self, fx: &Effects) -> Result<(), (&'static str, String)> {
        if fx.listen.is_empty() {
            return Ok(());
        }
        let max = self.db.config.max_listen_channels;
        let listener = self.db.listener.clone();
        let x = self.extra.get_or_insert_with(Box::default);
        for op in &fx.listen {
            match op {
                ListenOp::Listen(c) => {
                    let sub = x.sub.get_or_insert_with(|| listener.subscribe());
                    if let Err(e) = sub.listen(c, max).await {
                        let code = match e {
                            crate::listen::ListenError::TooMany(_) => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            crate::listen::ListenError::Unavailable(_) => sqlstate::TOO_MANY_CONNECTIONS,
                        };
                        return Err((code, format!("tidepool: {e}")));
                    }
                }
                ListenOp::Unlisten(c) => {
                    if let Some(s) = x.sub.as_mut() {
                        s.unlisten(c);
                    }
                }
                ListenOp::UnlistenAll => {
                    if let Some(s) = x.sub.as_mut() {
                        s.unlisten_all();
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn rejected(&mut self, frame: &Frame, code: &str, msg: &str) -> Frame {
        tracing::info!(code, msg, "statement rejected");
        let sql = raise_sql(code, msg);
        let mut out = BytesMut::new();
        if frame.tag == b'P' {
            let name = frame.body().split(|&b| b == 0).next().unwrap_or_default();
            let _ = frontend::parse(&mut out, std::str::from_utf8(name).unwrap_or_default(), &sql, &[]);
        } else {
            frontend::query(&mut out, &sql);
        }
        frame_of(out).unwrap_or_else(|| frame.clone())
    }

    /// Records a forwarded message's effects on the attached server.
    pub(super) fn note_effects(a: &mut Attached, extra: Option<&Extra>, fx: &Effects) {
        a.lease.dirty |= fx.dirty;
        // Distinct names only: a transaction repeating one SET stays small (new names are
        // bounded by `admit`).
        for (name, _) in &fx.settings {
            if !a.touched.settings.contains(name) {
                a.touched.settings.push(name.clone());
            }
        }
        a.touched.reset_all |= fx.reset_all;
        a.touched.discard_all |= fx.discard_all;
        a.touched.deallocate_all |= fx.deallocate_all;
        let pinned = extra.is_some_and(|x| x.pin.is_some());
        if pinned && (fx.pin || fx.may_release || fx.discard_all) {
            a.touched.probe = true;
        }
        if fx.pin && !pinned {
            // No slot (Bind of a statement prepared earlier, limit reached): the state goes
            // with the transaction, as it did before pinning existed.
            a.lease.dirty = true;
        }
    }

    /// At the end of a transaction that touched session state: reads back the settings it
    /// changed (a rolled-back SET reads back as it was) and asks whether pinned state remains.
    /// Returns true if the client keeps its server.
    pub(super) async fn after_transaction(&mut self) -> bool {
        let Some(a) = self.server.as_mut() else { return false };
        let sticky = self.extra.as_ref().is_some_and(|x| x.sticky);
        if !a.touched.any() {
            return self.extra.as_ref().is_some_and(|x| x.pin.is_some());
        }
        let t = std::mem::take(&mut a.touched);
        let x = self.extra.get_or_insert_with(Box::default);
        if t.discard_all {
            a.lease.prepared.clear();
            a.lease.applied.clear();
            for n in x.sets.drain() {
                std::sync::Arc::make_mut(&mut self.params).remove(&n);
            }
            self.utf8 = super::server_side::utf8_params(&self.params);
        }
        if t.deallocate_all {
            a.lease.prepared.clear();
        }
        let mut names: Vec<String> = t.settings;
        if t.reset_all {
            names.extend(a.lease.applied.keys().cloned());
            names.extend(x.sets.iter().cloned());
        }
        names.sort();
        names.dedup();
        let probe = t.probe && x.pin.is_some() && !sticky;
        if names.len() > MAX_READBACK {
            a.lease.dirty = true;
            names.clear();
        }
        if names.is_empty() && !probe {
            return x.pin.is_some();
        }
        let mut sql = format!("SELECT {}", if probe { PINNED_STATE } else { "NULL" });
        for i in 1..=names.len() {
            sql.push_str(&format!(", pg_catalog.current_setting(${i}, true), (SELECT s.source FROM pg_catalog.pg_settings s WHERE s.name = ${i})"));
        }
        let params: Vec<Option<String>> = names.iter().map(|n| Some(n.clone())).collect();
        let row = match a.lease.query_text(&sql, &[], &params, 1 << 24).await {
            Ok(mut r) if r.rows.len() == 1 => r.rows.pop().unwrap_or_default(),
            Ok(_) | Err(_) => {
                tracing::warn!("could not read session state back; the server is reset and the client's settings kept as they were");
                a.lease.dirty = true;
                if x.pin.is_some() {
                    a.lease.broken = true;
                    x.pin = None;
                }
                return false;
            }
        };
        let text = |i: usize| row.get(i).and_then(|v| v.as_ref()).and_then(|b| std::str::from_utf8(b).ok()).map(str::to_owned);
        for (i, name) in names.iter().enumerate() {
            let value = text(1 + 2 * i);
            let source = text(2 + 2 * i);
            // Set in this session (SET or tidepool's set_config), or a custom setting with a value.
            let kept = match (&value, source.as_deref()) {
                (Some(_), Some(src)) => src == "session",
                (Some(v), None) => !v.is_empty(),
                (None, _) => false,
            };
            match value.filter(|_| kept) {
                Some(v) => {
                    a.lease.applied.insert(name.clone(), v.clone());
                    std::sync::Arc::make_mut(&mut self.params).insert(name.clone(), v);
                    x.sets.insert(name.clone());
                }
                None => {
                    a.lease.applied.remove(name);
                    std::sync::Arc::make_mut(&mut self.params).remove(name);
                    x.sets.remove(name);
                }
            }
        }
        self.utf8 = super::server_side::utf8_params(&self.params);
        if probe && text(0).as_deref() != Some("true") {
            // Nothing pinned is left: the server goes back (reset, to be sure).
            x.pin = None;
            a.lease.dirty = true;
        }
        x.pin.is_some()
    }

    /// Notifications are delivered between transactions only (as PostgreSQL does).
    pub(super) fn poll_notifications(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let between = self.server.as_ref().is_none_or(|a| a.keep);
        let Some(sub) = self.extra.as_mut().and_then(|x| x.sub.as_mut()) else { return false };
        if !between {
            return false;
        }
        let mut got = false;
        for _ in 0..64 {
            match sub.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(n)) => {
                    if sub.listens(&n) {
                        self.to_client.extend_from_slice(&n);
                        got = true;
                    }
                }
                _ => break,
            }
        }
        got
    }

    /// The client leaves while holding a server: a pinned one is reset (DISCARD ALL), a dblink
    /// one closed.
    pub(super) fn leaving(&mut self, a: &mut Attached) {
        if let Some(x) = self.extra.as_mut() {
            if x.pin.is_some() || x.sticky {
                a.lease.dirty = true;
            }
            if x.sticky {
                a.lease.broken = true;
            }
            x.sub = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_errors_are_fixed_text() {
        let sql = raise_sql("53300", "it's $tp$ over");
        assert_eq!(sql, "DO $tp$BEGIN RAISE EXCEPTION USING ERRCODE = '53300', MESSAGE = 'it''s tp over'; END$tp$");
    }

    #[test]
    fn sql_is_found_in_query_and_parse_frames() {
        let mut b = BytesMut::new();
        frontend::query(&mut b, "SET a = 1");
        let q = frame_of(b).unwrap();
        assert_eq!(sql_of(&q), Some(&b"SET a = 1"[..]));
        let mut b = BytesMut::new();
        frontend::parse(&mut b, "s1", "PREPARE p AS SELECT 1", &[23]).unwrap();
        let p = frame_of(b).unwrap();
        assert_eq!(sql_of(&p), Some(&b"PREPARE p AS SELECT 1"[..]));
        let mut b = BytesMut::new();
        frontend::sync(&mut b);
        assert_eq!(sql_of(&frame_of(b).unwrap()), None);
    }

    #[test]
    fn touched_is_empty_by_default() {
        let mut t = Touched::default();
        assert!(!t.any());
        t.settings.push("search_path".into());
        assert!(t.any());
    }
}
