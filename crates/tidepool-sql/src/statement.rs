//! Splitting a token stream into statements and scanning each one: the public per-statement
//! types ([`Statement`], [`Kind`], [`Setting`]) and the [`Statements`] iterator.
//!
//! Each statement is one pass over its tokens: the first [`HEAD`] tokens are kept in a fixed
//! array for `head.rs` to classify, and every token is checked on the fly for hazardous names
//! (`hazards.rs`), `INTO TEMP` and `WITH HOLD`. Nothing is allocated except a [`Setting`]'s name.

use crate::hazards::{eq_word, name_hazard, Hazards};
use crate::head;
use crate::lexer::{LexError, LexMode, Lexer, Token, TokenKind};

/// How many leading tokens of a statement are kept for classifying it.
pub(crate) const HEAD: usize = 24;

/// What a statement is, as far as the pooler cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `SELECT`, `WITH`, `VALUES`, `TABLE`, or one of them in parentheses.
    Query,
    /// `SELECT … INTO [LOCAL|GLOBAL] TEMP[ORARY] t` (also after `WITH`): creates a temp table.
    SelectIntoTemp,
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`.
    Dml,
    /// `COPY`.
    Copy,
    /// A session `SET` of a setting (`SET [SESSION] name {TO|=} …`, `SET TIME ZONE`, `SET SCHEMA`,
    /// `SET NAMES`, `SET … FROM CURRENT`, …).
    Set,
    /// `SET LOCAL …`: lasts until the end of the transaction.
    SetLocal,
    /// `SET [SESSION] TRANSACTION …`: this transaction only.
    SetTransaction,
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION …`.
    SetSessionCharacteristics,
    /// `SET CONSTRAINTS …`: this transaction only.
    SetConstraints,
    /// `SET [SESSION] ROLE …`.
    SetRole,
    /// `SET [SESSION] SESSION AUTHORIZATION …`.
    SetSessionAuthorization,
    /// `RESET name` (and `RESET TIME ZONE`, `RESET SESSION AUTHORIZATION`, …).
    Reset,
    /// `RESET ALL`.
    ResetAll,
    Show,
    Listen,
    Unlisten,
    Notify,
    /// SQL-level `PREPARE name AS …`.
    Prepare,
    Execute,
    Deallocate,
    Discard,
    Declare {
        with_hold: bool,
    },
    Close,
    /// `FETCH`, `MOVE`.
    Fetch,
    /// `CREATE [OR REPLACE] [LOCAL|GLOBAL] TEMP[ORARY] …` (tables, `TABLE … AS`, views, sequences).
    CreateTemp,
    /// Any other `CREATE`.
    Create,
    Load,
    /// `DO`: runs arbitrary code, `SET` included.
    Do,
    /// `CALL`: runs a procedure, which can do anything.
    Call,
    Transaction(TransactionKind),
    /// A known command that leaves no session state (`ALTER`, `DROP`, `GRANT`, `VACUUM`, …).
    Other,
    /// Not recognised (or a syntax error): treated as state-changing.
    Unknown,
}

/// Transaction control statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionKind {
    Begin,
    Start,
    Commit,
    End,
    Rollback,
    Abort,
    Savepoint,
    Release,
    PrepareTransaction,
    CommitPrepared,
    RollbackPrepared,
}

impl Kind {
    /// True if a statement of this kind leaves state that outlives its transaction.
    pub fn leaves_session_state(self) -> bool {
        match self {
            Kind::SelectIntoTemp
            | Kind::Set
            | Kind::SetSessionCharacteristics
            | Kind::SetRole
            | Kind::SetSessionAuthorization
            | Kind::Reset
            | Kind::ResetAll
            | Kind::Listen
            | Kind::Prepare
            | Kind::Deallocate
            | Kind::Discard
            | Kind::CreateTemp
            | Kind::Load
            | Kind::Do
            | Kind::Call
            | Kind::Unknown => true,
            Kind::Declare { with_hold } => with_hold,
            Kind::Query
            | Kind::Dml
            | Kind::Copy
            | Kind::SetLocal
            | Kind::SetTransaction
            | Kind::SetConstraints
            | Kind::Show
            | Kind::Unlisten
            | Kind::Notify
            | Kind::Execute
            | Kind::Close
            | Kind::Fetch
            | Kind::Create
            | Kind::Transaction(_)
            | Kind::Other => false,
        }
    }
}

/// A plain `SET [SESSION] name {TO|=} value` / `SET name TO DEFAULT` / `RESET name`, in a form a
/// pooler can replay per client (`SET name = value` or `RESET name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<'a> {
    /// The setting's name: ASCII-lowercased (setting names are case-insensitive), quotes removed,
    /// dotted parts joined with `.`.
    pub name: String,
    /// The value exactly as written (from its first token to the statement's last, comments in
    /// between kept); `None` for `RESET name` and `SET name TO DEFAULT`.
    pub value: Option<&'a [u8]>,
}

/// One statement of a query string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement<'a> {
    pub kind: Kind,
    /// The statement was `EXPLAIN …`; `kind` is that of the explained statement.
    pub explain: bool,
    pub hazards: Hazards,
    /// Present for a replayable session `SET`/`RESET` of one named setting.
    pub setting: Option<Setting<'a>>,
    /// From the first token to the last (no leading/trailing comments, no `;`).
    pub text: &'a [u8],
    /// `kind.leaves_session_state()` or a stateful hazard.
    pub leaves_session_state: bool,
}

impl Statement<'_> {
    /// The statement text as `&str`, when it is valid UTF-8.
    pub fn text_str(&self) -> Option<&str> {
        std::str::from_utf8(self.text).ok()
    }
}

/// The tokens of one statement as `head.rs` sees them (borrowed from the scan: no copy).
pub(crate) struct Head<'a, 't> {
    pub src: &'a [u8],
    pub toks: &'t [Token],
    /// End of the statement's last token.
    pub end: usize,
}

impl<'a> Head<'a, '_> {
    pub fn tok(&self, i: usize) -> Option<Token> {
        self.toks.get(i).copied()
    }

    pub fn bytes(&self, t: Token) -> &'a [u8] {
        self.src.get(t.start..t.end).unwrap_or_default()
    }

    /// The unquoted identifier at `i`, if that token is one.
    pub fn word(&self, i: usize) -> Option<&'a [u8]> {
        self.tok(i).filter(|t| t.kind == TokenKind::Ident).map(|t| self.bytes(t))
    }

    pub fn is(&self, i: usize, word: &str) -> bool {
        self.word(i).is_some_and(|w| eq_word(w, word))
    }
}

/// Per-statement scanning state.
struct Scan {
    toks: [Token; HEAD],
    len: usize,
    first: Option<usize>,
    end: usize,
    hazards: Hazards,
    /// 1 after `INTO`, 2 after `INTO LOCAL|GLOBAL`.
    into: u8,
    prev_with: bool,
    seen_for: bool,
}

const NO_TOKEN: Token = Token { kind: TokenKind::Semicolon, start: 0, end: 0 };

impl Scan {
    fn new() -> Self {
        Self { toks: [NO_TOKEN; HEAD], len: 0, first: None, end: 0, hazards: Hazards::NONE, into: 0, prev_with: false, seen_for: false }
    }

    fn push(&mut self, src: &[u8], t: Token) {
        if let Some(slot) = self.toks.get_mut(self.len) {
            *slot = t;
            self.len += 1;
        }
        self.first.get_or_insert(t.start);
        self.end = t.end;
        let text = src.get(t.start..t.end).unwrap_or_default();
        match t.kind {
            TokenKind::Ident => {
                self.hazards |= name_hazard(text);
                if eq_word(text, "uescape") {
                    self.hazards |= Hazards::OPAQUE_IDENTIFIER;
                }
                let temp = eq_word(text, "temp") || eq_word(text, "temporary");
                self.into = match self.into {
                    1 | 2 if temp => {
                        self.hazards |= Hazards::INTO_TEMP;
                        0
                    }
                    1 if eq_word(text, "local") || eq_word(text, "global") => 2,
                    _ if eq_word(text, "into") => 1,
                    _ => 0,
                };
                if !self.seen_for {
                    if self.prev_with && eq_word(text, "hold") {
                        self.hazards |= Hazards::WITH_HOLD;
                    }
                    self.seen_for = eq_word(text, "for");
                }
                self.prev_with = eq_word(text, "with");
                return;
            }
            TokenKind::QuotedIdent => {
                self.hazards |= name_hazard(text.get(1..text.len().saturating_sub(1)).unwrap_or_default());
            }
            TokenKind::UnicodeIdent => {
                let inner = text.get(3..text.len().saturating_sub(1)).unwrap_or_default();
                self.hazards |= name_hazard(inner);
                if inner.contains(&b'\\') {
                    self.hazards |= Hazards::OPAQUE_IDENTIFIER;
                }
            }
            _ => {}
        }
        self.into = 0;
        self.prev_with = false;
    }

    /// The statement scanned so far; `None` (and the scan left untouched, still empty) when it
    /// has no tokens.
    fn finish<'a>(&self, src: &'a [u8]) -> Option<Statement<'a>> {
        let first = self.first?;
        let h = Head { src, toks: self.toks.get(..self.len).unwrap_or_default(), end: self.end };
        let (mut kind, explain, setting) = head::classify(&h);
        let mut hazards = self.hazards;
        match kind {
            Kind::Query if hazards.contains(Hazards::INTO_TEMP) => kind = Kind::SelectIntoTemp,
            Kind::Query | Kind::SelectIntoTemp | Kind::Unknown => {}
            _ => hazards = hazards.without(Hazards::INTO_TEMP),
        }
        match kind {
            Kind::Declare { .. } => kind = Kind::Declare { with_hold: hazards.contains(Hazards::WITH_HOLD) },
            _ => hazards = hazards.without(Hazards::WITH_HOLD),
        }
        let leaves_session_state = kind.leaves_session_state() || hazards.intersects(Hazards::STATEFUL);
        Some(Statement { kind, explain, hazards, setting, text: src.get(first..self.end).unwrap_or_default(), leaves_session_state })
    }
}

/// Iterator over the statements of a query string, under one lexing mode. Empty statements
/// (`;;`) are skipped. A lexing error is yielded once, then iteration ends.
pub struct Statements<'a> {
    src: &'a [u8],
    lexer: Lexer<'a>,
    done: bool,
}

impl<'a> Statements<'a> {
    pub fn new(src: &'a [u8], mode: LexMode) -> Self {
        Self { src, lexer: Lexer::new(src, mode), done: false }
    }

    /// True once a plain `'…'` string with a backslash was lexed: the text then means something
    /// else under the other `standard_conforming_strings` setting.
    pub fn saw_plain_backslash(&self) -> bool {
        self.lexer.saw_plain_backslash
    }
}

impl<'a> Iterator for Statements<'a> {
    type Item = Result<Statement<'a>, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // The scan (a few hundred bytes) is set up once a statement has a token: not for the
        // end of the input, nor for empty statements (`;;`).
        let first = loop {
            match self.lexer.next() {
                Some(Ok(t)) if t.kind == TokenKind::Semicolon => {}
                Some(Ok(t)) => break t,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return None;
                }
            }
        };
        let mut scan = Scan::new();
        scan.push(self.src, first);
        loop {
            match self.lexer.next() {
                Some(Ok(t)) if t.kind == TokenKind::Semicolon => {
                    // An empty statement (`;;`) left the scan empty: it goes on as it is.
                    if let Some(s) = scan.finish(self.src) {
                        return Some(Ok(s));
                    }
                }
                Some(Ok(t)) => scan.push(self.src, t),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return scan.finish(self.src).map(Ok);
                }
            }
        }
    }
}
