//! Session state in transaction mode: what one client message's SQL does to the session of the
//! server it runs on, and so what tidepool must do to keep the client's session semantics while
//! still pooling (docs/protocols.md "Session state in transaction mode"):
//! - plain session `SET`/`RESET`/`RESET ALL` are **replayed**: the names are noted here, their
//!   values read back from the server once the transaction is over (so a rolled-back `SET` is
//!   never kept) and applied with bound `set_config` parameters to every later server;
//! - temp tables, SQL `PREPARE`, session advisory locks, `WITH HOLD` cursors and dblink **pin** the
//!   server to the client until the server says the state is gone;
//! - `LISTEN`/`UNLISTEN` go to the database's shared listener (`crate::listen`);
//! - anything else that leaves state marks the server **dirty** (reset at check-in, as before).
//!
//! Only messages the allocation-free `leaves_session_state` test flags are classified in full,
//! unless the client is pinned or listening (then every message is, to see releases).

use tidepool_sql::{Hazards, Kind, LexMode, Lexer, Options, TokenKind, TransactionKind};

/// What one message's statements do to session state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// State that can be neither replayed nor pinned: the server is reset at check-in.
    pub dirty: bool,
    /// Settings changed by plain `SET`/`RESET` (name, bytes of the value as written).
    pub settings: Vec<(String, usize)>,
    /// `RESET ALL`.
    pub reset_all: bool,
    /// Creates state that pins the server (temp objects, `PREPARE`, advisory locks, held cursors).
    pub pin: bool,
    /// A dblink connection: pinned until the client leaves, then the server is closed.
    pub sticky: bool,
    /// May release pinned state (`DROP`, `DISCARD`, `DEALLOCATE`, `CLOSE`, unlock, rollback…).
    pub may_release: bool,
    /// `DISCARD ALL`: the server's settings and prepared statements are gone.
    pub discard_all: bool,
    /// `DEALLOCATE ALL`: the server's prepared statements (tidepool's too) are gone.
    pub deallocate_all: bool,
    pub listen: Vec<ListenOp>,
}

/// A `LISTEN`/`UNLISTEN` the shared listener must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenOp {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
}

impl Effects {
    /// True if nothing needs doing beyond forwarding.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        *self == Effects::default()
    }
}

/// Classifies `sql`. `full`: classify even when the cheap test finds no session state (the
/// client is pinned or listening, so releases and `UNLISTEN` matter). `None`: no effects.
pub fn effects(sql: &[u8], utf8_client: bool, full: bool) -> Option<Effects> {
    if !full && !crate::checkin::leaves_session_state(sql, utf8_client) {
        return None;
    }
    let summary = tidepool_sql::classify_with(sql, Options { standard_conforming_strings: None, backslash_safe_encoding: utf8_client });
    let mut fx = Effects { dirty: summary.error.is_some() || summary.depends_on_standard_conforming_strings, ..Effects::default() };
    let mode = LexMode { standard_conforming_strings: true, backslash_safe_encoding: utf8_client };
    for s in &summary.statements {
        let h = s.hazards;
        if h.contains(Hazards::ADVISORY_LOCK) {
            // Session-level locks pin; an unlock may release.
            fx.pin |= contains_word(s.text, b"advisory_lock");
            fx.may_release |= contains_word(s.text, b"advisory_unlock");
        }
        if h.contains(Hazards::DBLINK_CONNECT) {
            fx.pin = true;
            fx.sticky = true;
        }
        if h.intersects(Hazards::TEMP_SCHEMA | Hazards::INTO_TEMP | Hazards::WITH_HOLD) {
            fx.pin = true;
            fx.may_release = true;
        }
        if h.intersects(Hazards::SET_CONFIG | Hazards::DYNAMIC_SQL | Hazards::SESSION_FUNCTION | Hazards::OPAQUE_IDENTIFIER) {
            fx.dirty = true;
        }
        match s.kind {
            Kind::Set | Kind::Reset => match &s.setting {
                Some(set) if h.is_empty() => fx.settings.push((set.name.clone(), set.value.map_or(0, <[u8]>::len))),
                _ => fx.dirty = true,
            },
            Kind::ResetAll => fx.reset_all = true,
            Kind::CreateTemp | Kind::SelectIntoTemp | Kind::Prepare | Kind::Declare { with_hold: true } => fx.pin = true,
            Kind::Deallocate => {
                fx.may_release = true;
                fx.deallocate_all |= second_word_is(s.text, mode, "all") || third_word_is(s.text, mode, "all");
            }
            Kind::Discard => {
                fx.may_release = true;
                fx.discard_all |= second_word_is(s.text, mode, "all");
            }
            Kind::Close | Kind::Other | Kind::Transaction(TransactionKind::Rollback | TransactionKind::Abort) => fx.may_release = true,
            // The pooled server listens too (and is reset at check-in); the shared listener
            // delivers the notifications.
            Kind::Listen => {
                fx.dirty = true;
                if let Some(Some(c)) = channel(s.text, mode) {
                    fx.listen.push(ListenOp::Listen(c));
                }
            }
            Kind::Unlisten => match channel(s.text, mode) {
                Some(Some(c)) => fx.listen.push(ListenOp::Unlisten(c)),
                Some(None) => fx.listen.push(ListenOp::UnlistenAll),
                None => fx.dirty = true,
            },
            Kind::SetRole | Kind::SetSessionAuthorization | Kind::SetSessionCharacteristics | Kind::Load | Kind::Do | Kind::Call | Kind::Unknown => {
                fx.dirty = true
            }
            _ => {}
        }
    }
    Some(fx)
}

/// Case-insensitive substring test (ASCII).
fn contains_word(text: &[u8], word: &[u8]) -> bool {
    text.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

fn nth_token(text: &[u8], mode: LexMode, n: usize) -> Option<(TokenKind, &[u8])> {
    let t = Lexer::new(text, mode).nth(n)?.ok()?;
    Some((t.kind, text.get(t.start..t.end)?))
}

fn second_word_is(text: &[u8], mode: LexMode, word: &str) -> bool {
    matches!(nth_token(text, mode, 1), Some((TokenKind::Ident, w)) if w.eq_ignore_ascii_case(word.as_bytes()))
}

fn third_word_is(text: &[u8], mode: LexMode, word: &str) -> bool {
    second_word_is(text, mode, "prepare") && matches!(nth_token(text, mode, 2), Some((TokenKind::Ident, w)) if w.eq_ignore_ascii_case(word.as_bytes()))
}

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are truncated.
const MAX_IDENT: usize = 63;

/// The channel of `LISTEN c` / `UNLISTEN c` as PostgreSQL names it: `Some(None)` for
/// `UNLISTEN *`, `None` when the statement is not one plain or double-quoted identifier.
pub fn channel(text: &[u8], mode: LexMode) -> Option<Option<String>> {
    let mut toks = Lexer::new(text, mode);
    toks.next()?.ok()?;
    let t = toks.next()?.ok()?;
    if toks.next().is_some() {
        return None;
    }
    let raw = text.get(t.start..t.end)?;
    let name = match t.kind {
        TokenKind::Punct(b'*') => return Some(None),
        // PostgreSQL downcases ASCII letters only (multibyte characters stay as they are).
        TokenKind::Ident => String::from_utf8(raw.to_ascii_lowercase()).ok()?,
        TokenKind::QuotedIdent => std::str::from_utf8(raw.get(1..raw.len().saturating_sub(1))?).ok()?.replace("\"\"", "\""),
        _ => return None,
    };
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    Some(Some(truncate(name)))
}

fn truncate(mut name: String) -> String {
    if name.len() > MAX_IDENT {
        let mut end = MAX_IDENT;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests;
