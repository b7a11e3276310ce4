//! Classifying one statement from its leading tokens: the command keyword, the `SET`/`RESET`
//! grammar (scope, special forms, the name and value of a plain setting), `CREATE … TEMP`,
//! `PREPARE TRANSACTION` versus `PREPARE name`, and `EXPLAIN`'s options.
//!
//! Keywords are unquoted identifiers compared ASCII case-insensitively, as PostgreSQL does.
//! Where PostgreSQL's grammar lets a keyword also be a setting name (`SET local = 1`), the
//! reading that changes session state wins.

use crate::lexer::TokenKind;
use crate::statement::{Head, Kind, Setting, TransactionKind};

/// Returns the statement's kind, whether it was `EXPLAIN`, and its replayable setting if any.
pub(crate) fn classify<'a>(h: &Head<'a, '_>) -> (Kind, bool, Option<Setting<'a>>) {
    let mut i = 0;
    let mut explain = false;
    if h.is(0, "explain") {
        explain = true;
        i = 1;
        if h.tok(1).is_some_and(|t| t.kind == TokenKind::LParen) {
            i = match (2..h.toks.len()).find(|&j| h.tok(j).is_some_and(|t| t.kind == TokenKind::RParen)) {
                Some(close) => close + 1,
                None => return (Kind::Unknown, true, None),
            };
        } else {
            while h.is(i, "analyze") || h.is(i, "analyse") || h.is(i, "verbose") {
                i += 1;
            }
        }
    }
    let (kind, setting) = command(h, i);
    (kind, explain, setting)
}

fn command<'a>(h: &Head<'a, '_>, i: usize) -> (Kind, Option<Setting<'a>>) {
    let Some(first) = h.tok(i) else { return (Kind::Unknown, None) };
    if first.kind == TokenKind::LParen {
        return (Kind::Query, None);
    }
    let Some(w) = h.word(i) else { return (Kind::Unknown, None) };
    let w = w.to_ascii_lowercase_small();
    let kind = match w.as_str() {
        "select" | "with" | "values" | "table" => Kind::Query,
        "insert" | "update" | "delete" | "merge" => Kind::Dml,
        "copy" => Kind::Copy,
        "set" => return set(h, i + 1),
        "reset" => return reset(h, i + 1),
        "show" => Kind::Show,
        "listen" => Kind::Listen,
        "unlisten" => Kind::Unlisten,
        "notify" => Kind::Notify,
        "prepare" if h.is(i + 1, "transaction") && h.tok(i + 2).is_some_and(|t| t.kind == TokenKind::String) => {
            Kind::Transaction(TransactionKind::PrepareTransaction)
        }
        "prepare" => Kind::Prepare,
        "execute" => Kind::Execute,
        "deallocate" => Kind::Deallocate,
        "discard" => Kind::Discard,
        "declare" => Kind::Declare { with_hold: false },
        "close" => Kind::Close,
        "fetch" | "move" => Kind::Fetch,
        "create" => create(h, i + 1),
        "load" => Kind::Load,
        "do" => Kind::Do,
        "call" => Kind::Call,
        "begin" => Kind::Transaction(TransactionKind::Begin),
        "start" => Kind::Transaction(TransactionKind::Start),
        "commit" if h.is(i + 1, "prepared") => Kind::Transaction(TransactionKind::CommitPrepared),
        "commit" => Kind::Transaction(TransactionKind::Commit),
        "end" => Kind::Transaction(TransactionKind::End),
        "rollback" if h.is(i + 1, "prepared") => Kind::Transaction(TransactionKind::RollbackPrepared),
        "rollback" => Kind::Transaction(TransactionKind::Rollback),
        "abort" => Kind::Transaction(TransactionKind::Abort),
        "savepoint" => Kind::Transaction(TransactionKind::Savepoint),
        "release" => Kind::Transaction(TransactionKind::Release),
        "alter" | "analyze" | "analyse" | "checkpoint" | "cluster" | "comment" | "drop" | "grant" | "import" | "lock" | "reassign" | "refresh" | "reindex"
        | "revoke" | "security" | "truncate" | "vacuum" => Kind::Other,
        _ => Kind::Unknown,
    };
    (kind, None)
}

/// A keyword, lowercased into a small inline buffer (longer words cannot be keywords we know).
trait SmallLower {
    fn to_ascii_lowercase_small(&self) -> SmallWord;
}

pub(crate) struct SmallWord {
    buf: [u8; 16],
    len: usize,
}

impl SmallWord {
    fn as_str(&self) -> &str {
        self.buf.get(..self.len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }
}

impl SmallLower for [u8] {
    fn to_ascii_lowercase_small(&self) -> SmallWord {
        let mut w = SmallWord { buf: [0; 16], len: 0 };
        if self.len() <= w.buf.len() && self.is_ascii() {
            for (d, s) in w.buf.iter_mut().zip(self) {
                *d = s.to_ascii_lowercase();
            }
            w.len = self.len();
        }
        w
    }
}

fn create(h: &Head<'_, '_>, mut i: usize) -> Kind {
    if h.is(i, "or") && h.is(i + 1, "replace") {
        i += 2;
    }
    if h.is(i, "global") || h.is(i, "local") {
        i += 1;
    }
    if h.is(i, "temp") || h.is(i, "temporary") {
        Kind::CreateTemp
    } else {
        Kind::Create
    }
}

/// `=` or `TO` at `i`: the token that makes a keyword position a plain setting name.
fn assigns(h: &Head<'_, '_>, i: usize) -> bool {
    h.is(i, "to") || h.tok(i).is_some_and(|t| t.kind == TokenKind::Punct(b'='))
}

/// `i` is just after `SET`.
fn set<'a>(h: &Head<'a, '_>, mut i: usize) -> (Kind, Option<Setting<'a>>) {
    let mut local = false;
    let session_form = |j: usize| h.is(j, "session") && (h.is(j + 1, "characteristics") || h.is(j + 1, "authorization"));
    if (h.is(i, "local") || h.is(i, "session")) && !assigns(h, i + 1) && !session_form(i) {
        local = h.is(i, "local");
        i += 1;
    }
    let kind = if h.is(i, "transaction") && !assigns(h, i + 1) {
        Kind::SetTransaction
    } else if h.is(i, "session") && h.is(i + 1, "characteristics") {
        Kind::SetSessionCharacteristics
    } else if h.is(i, "session") && h.is(i + 1, "authorization") {
        Kind::SetSessionAuthorization
    } else if h.is(i, "role") {
        Kind::SetRole
    } else if h.is(i, "constraints") && !assigns(h, i + 1) {
        Kind::SetConstraints
    } else {
        Kind::Set
    };
    if local {
        return (Kind::SetLocal, None);
    }
    let setting = if kind == Kind::Set { plain_setting(h, i, true) } else { None };
    (kind, setting)
}

/// `i` is just after `RESET`.
fn reset<'a>(h: &Head<'a, '_>, i: usize) -> (Kind, Option<Setting<'a>>) {
    if h.is(i, "all") && h.tok(i + 1).is_none() {
        return (Kind::ResetAll, None);
    }
    (Kind::Reset, plain_setting(h, i, false))
}

/// Reads `name[.name…]` at `i`; for `SET`, then `=`/`TO` and a value running to the end of the
/// statement. Returns `None` for anything else (special forms, `FROM CURRENT`, a cut-off head).
fn plain_setting<'a>(h: &Head<'a, '_>, mut i: usize, with_value: bool) -> Option<Setting<'a>> {
    let mut name = String::new();
    loop {
        let t = h.tok(i)?;
        let part = h.bytes(t);
        let part = match t.kind {
            TokenKind::Ident => part,
            // `""` is not a name (PostgreSQL refuses zero-length identifiers): not replayable.
            TokenKind::QuotedIdent => part.get(1..part.len().saturating_sub(1)).filter(|p| !p.is_empty())?,
            _ => return None,
        };
        let part = String::from_utf8_lossy(part).replace("\"\"", "\"");
        name.push_str(&part.to_ascii_lowercase());
        i += 1;
        if h.tok(i).is_some_and(|t| t.kind == TokenKind::Dot) {
            name.push('.');
            i += 1;
        } else {
            break;
        }
    }
    if !with_value {
        let last = h.tok(i.checked_sub(1)?)?;
        return (h.tok(i).is_none() && last.end == h.end).then_some(Setting { name, value: None });
    }
    if !assigns(h, i) {
        return None;
    }
    let first = h.tok(i + 1)?;
    if h.is(i + 1, "default") && h.tok(i + 2).is_none() && first.end == h.end {
        return Some(Setting { name, value: None });
    }
    let value = h.src.get(first.start..h.end)?;
    Some(Setting { name, value: Some(value) })
}
