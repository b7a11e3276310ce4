//! The SQL lexer: turns bytes into tokens the way PostgreSQL's `scan.l` draws their boundaries.
//!
//! It owns everything about *where* tokens begin and end: whitespace, `--` and nested `/* */`
//! comments (a depth counter, no recursion), `'…'` (with `''`), `E'…'` (backslash escapes),
//! `N'…'`, `U&'…'`, `B'…'`/`X'…'`, string continuation across a newline, `"…"` and `U&"…"`
//! identifiers, `$tag$…$tag$` dollar quotes versus `$1` parameters, numbers, and single-byte
//! punctuation. It works on bytes (bytes ≥ 0x80 are identifier characters, as in PostgreSQL), so
//! invalid UTF-8 is lexed, never rejected, and nothing here can panic or allocate.
//!
//! It does not know keywords or statements: that is `statement.rs`.

/// What a token is. Keywords are plain [`TokenKind::Ident`]s; comparing them is the classifier's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword (`[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*`).
    Ident,
    /// A `"quoted identifier"`; the token spans the quotes.
    QuotedIdent,
    /// A `U&"…"` identifier; the token spans from `U` to the closing quote.
    UnicodeIdent,
    /// Any string constant: `'…'`, `E'…'`, `N'…'`, `U&'…'`, `B'…'`, `X'…'`, or a dollar-quoted body.
    String,
    /// A numeric literal (digits, `_`, one `.`, an exponent).
    Number,
    /// A `$n` parameter.
    Param,
    /// `;`
    Semicolon,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `.`
    Dot,
    /// `,`
    Comma,
    /// Any other single byte (operator characters, `:`, `[`, a lone `$`, control bytes…).
    Punct(u8),
}

/// One token: its kind and its byte range in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// Input the lexer cannot draw token boundaries for with confidence. PostgreSQL rejects the first
/// four (so nothing in the query string runs); the last one depends on the client encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated /* comment at byte {start}")]
    UnterminatedComment { start: usize },
    #[error("unterminated string constant at byte {start}")]
    UnterminatedString { start: usize },
    #[error("unterminated quoted identifier at byte {start}")]
    UnterminatedQuotedIdent { start: usize },
    #[error("unterminated dollar-quoted string at byte {start}")]
    UnterminatedDollarQuote { start: usize },
    /// A backslash escape right after a byte >= 0x80 inside an escape string: in SJIS, BIG5, GBK,
    /// GB18030 or UHC that backslash is the second byte of a character, not an escape.
    #[error("backslash after a non-ASCII byte in an escape string at byte {at}")]
    AmbiguousBackslash { at: usize },
}

/// How the lexer treats backslashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LexMode {
    /// `standard_conforming_strings`: when false, plain `'…'` strings take backslash escapes too.
    pub standard_conforming_strings: bool,
    /// True when the client encoding never uses an ASCII byte inside a multibyte character (UTF8,
    /// LATIN*, EUC_*, …). When false, a backslash escape right after a byte ≥ 0x80 is an error.
    pub backslash_safe_encoding: bool,
}

/// How a quoted string's body is scanned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `''` is a quote; backslash is an ordinary byte (`'…'` with scs on, `U&'…'`).
    Standard,
    /// `''` is a quote and backslash escapes the next byte (`E'…'`, `'…'` with scs off).
    Escape,
    /// Ends at the first quote (`B'…'`, `X'…'`).
    Bits,
}

/// A streaming lexer; yields tokens, then `None`. After an error it yields nothing more.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: LexMode,
    done: bool,
    /// Set when a plain `'…'` string contained a backslash: its extent then depends on
    /// `standard_conforming_strings`.
    pub saw_plain_backslash: bool,
}

pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// `[A-Za-z0-9_$\x80-\xff]`, by table: the lexer spends most of its time in identifiers.
const IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        i += 1;
    }
    t
};

fn is_ident_cont(b: u8) -> bool {
    IDENT_CONT[b as usize]
}

fn is_dollar_tag_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8], mode: LexMode) -> Self {
        Self { src, pos: 0, mode, done: false, saw_plain_backslash: false }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn starts(&self, i: usize, pat: &[u8]) -> bool {
        self.src.get(i..).is_some_and(|s| s.starts_with(pat))
    }

    /// Skips whitespace and comments from `self.pos`.
    fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            match self.src.get(self.pos) {
                Some(&b) if is_space(b) => self.pos += 1,
                Some(b'-') if self.starts(self.pos, b"--") => self.pos = self.line_end(self.pos),
                Some(b'/') if self.starts(self.pos, b"/*") => self.pos = self.block_comment_end(self.pos)?,
                _ => return Ok(()),
            }
        }
    }

    /// Index of the first `\n`/`\r` at or after `i`, or the end.
    fn line_end(&self, i: usize) -> usize {
        let rest = self.src.get(i..).unwrap_or_default();
        i + rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len())
    }

    /// `start` is at `/*`; returns the index just past the matching `*/`.
    fn block_comment_end(&self, start: usize) -> Result<usize, LexError> {
        let mut depth: usize = 1;
        let mut i = start + 2;
        while i < self.src.len() {
            if self.starts(i, b"/*") {
                depth += 1;
                i += 2;
            } else if self.starts(i, b"*/") {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Ok(i);
                }
            } else {
                i += 1;
            }
        }
        Err(LexError::UnterminatedComment { start })
    }

    /// `open` is the index of the opening quote; returns the index just past the string,
    /// following PostgreSQL's continuation rule (`'a'` newline `'b'` is one string).
    fn quoted_string_end(&mut self, token_start: usize, open: usize, quoting: Quoting, plain: bool) -> Result<usize, LexError> {
        let mut i = open + 1;
        loop {
            let b = match self.src.get(i) {
                Some(&b) => b,
                None => return Err(LexError::UnterminatedString { start: token_start }),
            };
            match b {
                b'\'' if quoting != Quoting::Bits && self.at(i + 1) == b'\'' && i + 1 < self.src.len() => i += 2,
                b'\'' => match self.continuation(i + 1) {
                    Some(next_open) => i = next_open + 1,
                    None => return Ok(i + 1),
                },
                b'\\' if quoting == Quoting::Escape => {
                    if plain {
                        self.saw_plain_backslash = true;
                    }
                    if !self.mode.backslash_safe_encoding && i > 0 && self.at(i - 1) >= 0x80 {
                        return Err(LexError::AmbiguousBackslash { at: i });
                    }
                    i += 2;
                }
                b'\\' => {
                    if plain {
                        self.saw_plain_backslash = true;
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }

    /// After a closing quote at `i - 1`: if whitespace containing a newline (and `--` comments)
    /// leads to another `'`, returns that quote's index.
    fn continuation(&self, mut i: usize) -> Option<usize> {
        // horizontal whitespace and comments, then one newline
        loop {
            match self.at(i) {
                b' ' | b'\t' | 0x0c if i < self.src.len() => i += 1,
                b'-' if self.starts(i, b"--") => i = self.line_end(i),
                b'\n' | b'\r' if i < self.src.len() => break,
                _ => return None,
            }
        }
        // any whitespace, and comments ending in a newline, then a quote
        loop {
            match self.at(i) {
                b if i < self.src.len() && is_space(b) => i += 1,
                b'-' if self.starts(i, b"--") => {
                    i = self.line_end(i);
                    if i >= self.src.len() {
                        return None;
                    }
                }
                b'\'' if i < self.src.len() => return Some(i),
                _ => return None,
            }
        }
    }

    /// `open` is at `"`; returns the index just past the closing quote (`""` is a quote).
    fn quoted_ident_end(&self, token_start: usize, open: usize) -> Result<usize, LexError> {
        let mut i = open + 1;
        loop {
            match self.src.get(i) {
                None => return Err(LexError::UnterminatedQuotedIdent { start: token_start }),
                Some(b'"') if self.at(i + 1) == b'"' && i + 1 < self.src.len() => i += 2,
                Some(b'"') => return Ok(i + 1),
                Some(_) => i += 1,
            }
        }
    }

    /// `start` is at `$`. Returns `Some(end)` for a dollar quote (end past the closing delimiter),
    /// `None` if this `$` does not open one.
    fn dollar_quote_end(&self, start: usize) -> Result<Option<usize>, LexError> {
        let mut i = start + 1;
        if self.at(i) != b'$' {
            if !(i < self.src.len() && is_ident_start(self.at(i))) {
                return Ok(None);
            }
            while i < self.src.len() && is_dollar_tag_cont(self.at(i)) {
                i += 1;
            }
            if self.at(i) != b'$' || i >= self.src.len() {
                return Ok(None);
            }
        }
        let delim = self.src.get(start..=i).unwrap_or_default();
        let body = self.src.get(i + 1..).unwrap_or_default();
        match find(body, delim) {
            Some(off) => Ok(Some(i + 1 + off + delim.len())),
            None => Err(LexError::UnterminatedDollarQuote { start }),
        }
    }

    fn number_end(&self, mut i: usize) -> usize {
        let digits = |lx: &Self, mut j: usize| {
            while lx.at(j).is_ascii_digit() || (lx.at(j) == b'_' && j < lx.src.len()) {
                j += 1;
            }
            j
        };
        i = digits(self, i);
        if self.at(i) == b'.' && self.at(i + 1) != b'.' {
            i = digits(self, i + 1);
        }
        if matches!(self.at(i), b'e' | b'E') {
            let j = if matches!(self.at(i + 1), b'+' | b'-') { i + 2 } else { i + 1 };
            if self.at(j).is_ascii_digit() {
                i = digits(self, j);
            }
        }
        i
    }

    fn next_token(&mut self) -> Result<Option<Token>, LexError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(&b) = self.src.get(start) else { return Ok(None) };
        let next = self.at(start + 1);
        let has_next = start + 1 < self.src.len();
        let (kind, end) = match b {
            b'\'' => {
                let quoting = if self.mode.standard_conforming_strings { Quoting::Standard } else { Quoting::Escape };
                (TokenKind::String, self.quoted_string_end(start, start, quoting, true)?)
            }
            b'e' | b'E' if next == b'\'' && has_next => (TokenKind::String, self.quoted_string_end(start, start + 1, Quoting::Escape, false)?),
            b'b' | b'B' | b'x' | b'X' if next == b'\'' && has_next => (TokenKind::String, self.quoted_string_end(start, start + 1, Quoting::Bits, false)?),
            b'n' | b'N' if next == b'\'' && has_next => {
                let quoting = if self.mode.standard_conforming_strings { Quoting::Standard } else { Quoting::Escape };
                (TokenKind::String, self.quoted_string_end(start, start + 1, quoting, true)?)
            }
            b'u' | b'U' if next == b'&' && self.at(start + 2) == b'\'' && start + 2 < self.src.len() => {
                (TokenKind::String, self.quoted_string_end(start, start + 2, Quoting::Standard, false)?)
            }
            b'u' | b'U' if next == b'&' && self.at(start + 2) == b'"' && start + 2 < self.src.len() => {
                (TokenKind::UnicodeIdent, self.quoted_ident_end(start, start + 2)?)
            }
            b'"' => (TokenKind::QuotedIdent, self.quoted_ident_end(start, start)?),
            b'$' if next.is_ascii_digit() && has_next => {
                let mut i = start + 1;
                while self.at(i).is_ascii_digit() && i < self.src.len() {
                    i += 1;
                }
                (TokenKind::Param, i)
            }
            b'$' => match self.dollar_quote_end(start)? {
                Some(end) => (TokenKind::String, end),
                None => (TokenKind::Punct(b'$'), start + 1),
            },
            _ if is_ident_start(b) => {
                let rest = self.src.get(start + 1..).unwrap_or_default();
                (TokenKind::Ident, start + 1 + rest.iter().position(|&c| !is_ident_cont(c)).unwrap_or(rest.len()))
            }
            b'0'..=b'9' => (TokenKind::Number, self.number_end(start)),
            b';' => (TokenKind::Semicolon, start + 1),
            b'(' => (TokenKind::LParen, start + 1),
            b')' => (TokenKind::RParen, start + 1),
            b'.' => (TokenKind::Dot, start + 1),
            b',' => (TokenKind::Comma, start + 1),
            other => (TokenKind::Punct(other), start + 1),
        };
        self.pos = end;
        Ok(Some(Token { kind, start, end }))
    }
}

impl Iterator for Lexer<'_> {
    type Item = Result<Token, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_token() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// First index of `needle` in `hay` (naive but linear for the short delimiters used here:
/// the scan only restarts at bytes equal to `needle[0]`, and a `$…$` delimiter holds no inner `$`).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(off) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + off;
        if hay.get(at..).is_some_and(|s| s.starts_with(needle)) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str, scs: bool) -> Vec<(TokenKind, &str)> {
        let mode = LexMode { standard_conforming_strings: scs, backslash_safe_encoding: true };
        Lexer::new(s.as_bytes(), mode).map(|t| t.map(|t| (t.kind, &s[t.start..t.end]))).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn boundaries() {
        use TokenKind::*;
        assert_eq!(kinds("set/**/x", true), vec![(Ident, "set"), (Ident, "x")]);
        assert_eq!(kinds("a/* /* */ ; */b", true), vec![(Ident, "a"), (Ident, "b")]);
        assert_eq!(kinds("'a''b' x", true), vec![(String, "'a''b'"), (Ident, "x")]);
        assert_eq!(kinds(r"E'\'' x", true), vec![(String, r"E'\''"), (Ident, "x")]);
        assert_eq!(kinds(r"'\'; x", true), vec![(String, r"'\'"), (Semicolon, ";"), (Ident, "x")]);
        assert_eq!(kinds(r"'\';x'", false), vec![(String, r"'\';x'")]);
        assert_eq!(kinds("$$a;b$$ $1 $t$x$t$", true), vec![(String, "$$a;b$$"), (Param, "$1"), (String, "$t$x$t$")]);
        assert_eq!(kinds("a$$b", true), vec![(Ident, "a$$b")]);
        assert_eq!(kinds("U&\"x\" u&'y' B'1' X'f'", true), vec![(UnicodeIdent, "U&\"x\""), (String, "u&'y'"), (String, "B'1'"), (String, "X'f'")]);
        assert_eq!(kinds("'a'\n  'b'", true), vec![(String, "'a'\n  'b'")]);
        assert_eq!(kinds("'a' 'b'", true), vec![(String, "'a'"), (String, "'b'")]);
        assert_eq!(kinds("1.5e3x", true), vec![(Number, "1.5e3"), (Ident, "x")]);
    }

    #[test]
    fn ident_table_matches_the_rule() {
        for b in 0..=255u8 {
            assert_eq!(is_ident_cont(b), is_ident_start(b) || b.is_ascii_digit() || b == b'$', "{b}");
        }
    }

    #[test]
    fn errors() {
        let mode = LexMode { standard_conforming_strings: true, backslash_safe_encoding: false };
        for s in ["/* /* */", "'abc", "\"abc", "$q$ abc $q", "E'\\'"] {
            assert!(Lexer::new(s.as_bytes(), mode).any(|t| t.is_err()), "{s}");
        }
        assert!(Lexer::new(b"E'\x83\\'; SET x=1; --'", mode).any(|t| t.is_err()));
    }
}
