//! Sans-IO classification of SQL text for a transaction-mode pooler: which statements of a
//! query string leave state on the server connection that outlives the transaction (session
//! `SET`/`RESET`, `SET ROLE`, `LISTEN`, SQL `PREPARE`/`DEALLOCATE`, `DISCARD`, `DECLARE … WITH
//! HOLD`, temp tables, `LOAD`, `DO`, `CALL`, `set_config`, session advisory locks,
//! `dblink_connect`, …), so the pooler resets that connection (`DISCARD ALL`) before reuse.
//!
//! This file owns the public entry points and the policy that combines interpretations:
//! - a real lexer (`lexer.rs`) draws token boundaries the way PostgreSQL does, so comments,
//!   strings, quoted identifiers and dollar quotes cannot hide or fake a statement;
//! - since a pooler cannot be sure of `standard_conforming_strings`, text whose meaning depends on
//!   it (a backslash in a plain `'…'` string) is classified under both settings and the results
//!   OR-ed;
//! - anything that cannot be lexed with confidence (unterminated string, comment or dollar quote,
//!   a backslash that may be the second byte of an SJIS/BIG5/GBK character) counts as
//!   state-changing. False positives only cost one `DISCARD ALL`; false negatives leak state.
//!
//! No I/O, no allocation on the common path (`leaves_session_state`), no recursion, no panics.
//! Lexical analysis cannot see inside functions: a user-defined function that runs `SET` is not
//! detected (nor is state created through server-side code the query merely calls).

#![forbid(unsafe_code)]

mod hazards;
mod head;
mod lexer;
mod statement;

pub use hazards::Hazards;
pub use lexer::{LexError, LexMode, Lexer, Token, TokenKind};
pub use statement::{Kind, Setting, Statement, Statements, TransactionKind};

/// What the pooler knows about the connection the text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Options {
    /// The connection's `standard_conforming_strings`, if known for sure; `None` classifies under
    /// both settings.
    pub standard_conforming_strings: Option<bool>,
    /// True when the client encoding never puts an ASCII byte inside a multibyte character (UTF8,
    /// SQL_ASCII, LATIN*, WIN*, EUC_*, KOI8*, …): every server-side encoding. False (the default)
    /// when it may be SJIS, BIG5, GBK, GB18030, UHC or JOHAB, or is unknown.
    pub backslash_safe_encoding: bool,
}

/// The classification of a whole query string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary<'a> {
    /// True if any statement (under any `standard_conforming_strings` setting considered) leaves
    /// session state, or if the text could not be lexed with confidence.
    pub leaves_session_state: bool,
    /// The statements, lexed with `standard_conforming_strings` on (or as given in [`Options`]).
    /// Up to a lexing error, if there was one.
    pub statements: Vec<Statement<'a>>,
    /// The first lexing error, under either setting.
    pub error: Option<LexError>,
    /// The text has a backslash in a plain string, so its statements differ between
    /// `standard_conforming_strings` on and off; `leaves_session_state` covers both.
    pub depends_on_standard_conforming_strings: bool,
}

impl Summary<'_> {
    /// The plain settings this text changes, in order (`SET name = value`, `RESET name`), for a
    /// pooler that replays them per client. Only meaningful when every stateful statement has a
    /// setting; check [`Summary::only_plain_settings`].
    pub fn settings(&self) -> impl Iterator<Item = &Setting<'_>> {
        self.statements.iter().filter_map(|s| s.setting.as_ref())
    }

    /// True if the only session state this text leaves is plain settings (each stateful statement
    /// is a `SET`/`RESET` with a [`Setting`], no hazards, no error, no ambiguity).
    pub fn only_plain_settings(&self) -> bool {
        self.error.is_none()
            && !self.depends_on_standard_conforming_strings
            && self.statements.iter().all(|s| !s.leaves_session_state || (s.setting.is_some() && s.hazards.is_empty()))
    }
}

fn modes(opts: Options) -> (LexMode, Option<LexMode>) {
    let on = |scs| LexMode { standard_conforming_strings: scs, backslash_safe_encoding: opts.backslash_safe_encoding };
    match opts.standard_conforming_strings {
        Some(scs) => (on(scs), None),
        None => (on(true), Some(on(false))),
    }
}

/// Classifies `sql` with conservative defaults (both `standard_conforming_strings` settings,
/// encoding unknown).
pub fn classify(sql: &str) -> Summary<'_> {
    classify_with(sql.as_bytes(), Options::default())
}

/// Classifies wire bytes, which may be invalid UTF-8 (lexed bytewise, as PostgreSQL's lexer does).
pub fn classify_bytes(sql: &[u8]) -> Summary<'_> {
    classify_with(sql, Options::default())
}

/// Classifies `sql` with what the pooler knows about the connection.
pub fn classify_with(sql: &[u8], opts: Options) -> Summary<'_> {
    let (first, second) = modes(opts);
    let mut it = Statements::new(sql, first);
    let mut statements = Vec::new();
    let mut error = None;
    for s in it.by_ref() {
        match s {
            Ok(s) => statements.push(s),
            Err(e) => error = Some(e),
        }
    }
    let ambiguous = it.saw_plain_backslash() && second.is_some();
    let mut leaves = error.is_some() || statements.iter().any(|s| s.leaves_session_state);
    if let (true, Some(mode)) = (ambiguous, second) {
        let (l, e) = scan(sql, mode);
        leaves |= l;
        error = error.or(e);
    }
    Summary { leaves_session_state: leaves, statements, error, depends_on_standard_conforming_strings: ambiguous }
}

/// Whether one pass leaves state (stopping at the first stateful statement), and its error.
fn scan(sql: &[u8], mode: LexMode) -> (bool, Option<LexError>) {
    for s in Statements::new(sql, mode) {
        match s {
            Ok(s) if s.leaves_session_state => return (true, None),
            Ok(_) => {}
            Err(e) => return (true, Some(e)),
        }
    }
    (false, None)
}

/// True if `sql` may leave session state behind (conservative defaults). Allocation-free unless
/// the text contains a `SET`/`RESET` (whose setting name is copied).
pub fn leaves_session_state(sql: &str) -> bool {
    leaves_session_state_with(sql.as_bytes(), Options::default())
}

/// [`leaves_session_state`] for wire bytes and known connection facts.
pub fn leaves_session_state_with(sql: &[u8], opts: Options) -> bool {
    let (first, second) = modes(opts);
    let mut it = Statements::new(sql, first);
    for s in it.by_ref() {
        match s {
            Ok(s) if !s.leaves_session_state => {}
            _ => return true,
        }
    }
    match second {
        Some(mode) if it.saw_plain_backslash() => scan(sql, mode).0,
        _ => false,
    }
}
