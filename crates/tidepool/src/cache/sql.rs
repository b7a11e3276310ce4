//! What the cache needs to know about SQL text, read through `tidepool-sql`'s lexer (so strings,
//! comments and quoted identifiers can neither hide nor fake a word): whether a statement only
//! reads and calls only functions known to be immutable or aggregates ([`read_facts`]), which tables it
//! reads (for invalidation on writes), and which tables a statement tidepool runs writes
//! ([`written_tables`]).
//!
//! Functions are checked against an allow-list, not a deny-list: a user-defined function may be
//! volatile (or write), and the lexer cannot see inside it, so any call to a function not listed
//! here makes the query uncacheable. Table tracking is lexical: a write reached through a view, a
//! trigger or a function is not seen (docs/cache.md says so).

use tidepool_sql::{Kind, LexMode, Lexer, Options, Token, TokenKind};

/// Why SQL text cannot be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCacheable {
    /// Not a plain read (`INSERT`/`UPDATE`/`DELETE`/`MERGE`, a data-modifying CTE, `FOR UPDATE`,
    /// anything but `SELECT`/`WITH`/`VALUES`/`TABLE`, or text that does not lex).
    Write,
    /// Calls a volatile or stable function (`now()`, `random()`, `current_user`, …) or one tidepool
    /// does not know to be immutable.
    Volatile,
}

/// What a cacheable read touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadFacts {
    /// Tables (and views) named after `FROM`/`JOIN`, without schema; unquoted names lowercased.
    pub tables: Vec<String>,
}

const MODE: LexMode = LexMode { standard_conforming_strings: true, backslash_safe_encoding: true };

/// Functions (and keyword-like calls) that are immutable or pure aggregates in PostgreSQL, and
/// keywords that may precede a parenthesis. Lowercase.
const ALLOWED_CALLS: &[&str] = &[
    // keywords followed by `(`
    "in",
    "exists",
    "any",
    "some",
    "all",
    "values",
    "as",
    "over",
    "filter",
    "lateral",
    "on",
    "and",
    "or",
    "not",
    "where",
    "from",
    "join",
    "select",
    "row",
    "cast",
    "using",
    "distinct",
    "with",
    "when",
    "then",
    "else",
    "between",
    "like",
    "ilike",
    "is",
    "array",
    "union",
    "intersect",
    "except",
    "limit",
    "offset",
    "having",
    "by",
    "within",
    "group",
    "materialized",
    "recursive",
    "case",
    "end",
    "returns",
    "null",
    "escape",
    "similar",
    "overlaps",
    "into",
    "asc",
    "desc",
    "first",
    "last",
    "nulls",
    "inner",
    "left",
    "right",
    "full",
    "outer",
    "cross",
    "natural",
    "ordinality",
    "partition",
    "order",
    // aggregates and window functions (deterministic over their input)
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "bit_and",
    "bit_or",
    // immutable scalar functions Prisma (and typical reads) use
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "abs",
    "round",
    "trunc",
    "ceil",
    "floor",
    "substring",
    "substr",
    "position",
    "strpos",
    "replace",
    "concat",
    "concat_ws",
    "btrim",
    "ltrim",
    "rtrim",
    "trim",
    "left",
    "right",
    "md5",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "to_jsonb",
    "to_json",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_typeof",
    "json_typeof",
    "jsonb_array_length",
    "json_array_length",
    "array_length",
    "array_position",
    "array_remove",
    "array_append",
    "array_prepend",
    "array_cat",
    "cardinality",
    "unnest",
    "array_to_json",
    "row_to_json",
    "encode",
    "decode",
    "sqrt",
    "power",
    "mod",
    "sign",
    "starts_with",
    "split_part",
    "repeat",
    "reverse",
    "lpad",
    "rpad",
    "ascii",
    "chr",
    "numeric",
    "int4",
    "int8",
    "float8",
    "text",
    "bool",
    "generate_series",
];

/// Special values PostgreSQL evaluates without parentheses; all are stable or volatile.
const VALUE_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_catalog",
    "current_schema",
    "system_user",
];

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn is_word(src: &[u8], t: &Token, w: &str) -> bool {
    t.kind == TokenKind::Ident && src.get(t.start..t.end).is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()))
}

/// A table name token, normalised: quoted names unquoted as is, unquoted ones lowercased.
fn name_of(src: &[u8], t: &Token) -> Option<String> {
    let b = src.get(t.start..t.end)?;
    match t.kind {
        TokenKind::Ident => Some(lower(b)),
        TokenKind::QuotedIdent if b.len() >= 2 => Some(String::from_utf8_lossy(&b[1..b.len() - 1]).replace("\"\"", "\"")),
        _ => None,
    }
}

/// Words after which an identifier is not a table name.
const NOT_TABLES: &[&str] = &["lateral", "only", "select", "unnest", "generate_series", "rows", "table"];

/// Reads `[schema.]name` at `i`; returns the name and the index after it.
fn qualified_name(src: &[u8], toks: &[Token], mut i: usize) -> Option<(String, usize)> {
    while toks.get(i).is_some_and(|t| is_word(src, t, "only")) {
        i += 1;
    }
    let t = toks.get(i)?;
    if t.kind == TokenKind::Ident && NOT_TABLES.iter().any(|w| is_word(src, t, w)) {
        return None;
    }
    let mut name = name_of(src, t)?;
    i += 1;
    while toks.get(i).is_some_and(|t| t.kind == TokenKind::Dot) {
        match toks.get(i + 1).and_then(|t| name_of(src, t)) {
            Some(n) => name = n,
            None => break,
        }
        i += 2;
    }
    Some((name, i))
}

fn tokens(sql: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    for t in Lexer::new(sql, MODE) {
        out.push(t.ok()?);
    }
    Some(out)
}

/// Adds the tables `sql` reads to `tables` (each once), or says why the text is not cacheable:
/// the one check both HTTP front ends run on every statement of a cacheable request.
pub fn collect_reads(sql: &str, tables: &mut Vec<String>) -> Result<(), super::Bypass> {
    let facts = read_facts(sql).map_err(|e| match e {
        NotCacheable::Write => super::Bypass::Write,
        NotCacheable::Volatile => super::Bypass::Volatile,
    })?;
    for t in facts.tables {
        if !tables.contains(&t) {
            tables.push(t);
        }
    }
    Ok(())
}

/// Whether `sql` (UTF-8, `standard_conforming_strings` on, as on tidepool's HTTP leases) is a
/// cacheable read, and the tables it reads.
pub fn read_facts(sql: &str) -> Result<ReadFacts, NotCacheable> {
    let summary = tidepool_sql::classify_with(sql.as_bytes(), Options { standard_conforming_strings: Some(true), backslash_safe_encoding: true });
    if summary.error.is_some() || summary.leaves_session_state || summary.statements.is_empty() {
        return Err(NotCacheable::Write);
    }
    let mut facts = ReadFacts::default();
    for s in &summary.statements {
        if s.kind != Kind::Query || s.explain || !s.hazards.is_empty() {
            return Err(NotCacheable::Write);
        }
        let src = s.text;
        let toks = tokens(src).ok_or(NotCacheable::Write)?;
        let mut in_from = false;
        for (i, t) in toks.iter().enumerate() {
            let next_paren = toks.get(i + 1).is_some_and(|n| n.kind == TokenKind::LParen);
            match t.kind {
                TokenKind::Ident => {
                    let w = lower(src.get(t.start..t.end).unwrap_or_default());
                    if matches!(w.as_str(), "insert" | "update" | "delete" | "merge" | "share" | "nextval" | "setval") {
                        return Err(NotCacheable::Write);
                    }
                    if VALUE_FUNCTIONS.contains(&w.as_str()) {
                        return Err(NotCacheable::Volatile);
                    }
                    let after_dot = i > 0 && toks.get(i - 1).is_some_and(|p| p.kind == TokenKind::Dot);
                    if next_paren && !after_dot && !ALLOWED_CALLS.contains(&w.as_str()) {
                        return Err(NotCacheable::Volatile);
                    }
                    if next_paren && after_dot {
                        // `schema.func(…)`: only pg_catalog's allowed functions.
                        return Err(NotCacheable::Volatile);
                    }
                    match w.as_str() {
                        "from" | "join" => {
                            in_from = w == "from";
                            if let Some((name, _)) = qualified_name(src, &toks, i + 1) {
                                push_unique(&mut facts.tables, name);
                            }
                        }
                        "where" | "group" | "order" | "limit" | "offset" | "having" | "window" | "on" | "union" | "intersect" | "except" | "for" => {
                            in_from = false
                        }
                        _ => {}
                    }
                }
                TokenKind::QuotedIdent if next_paren => return Err(NotCacheable::Volatile),
                TokenKind::Comma if in_from => {
                    if let Some((name, _)) = qualified_name(src, &toks, i + 1) {
                        push_unique(&mut facts.tables, name);
                    }
                }
                TokenKind::LParen | TokenKind::RParen => in_from = false,
                _ => {}
            }
        }
    }
    Ok(facts)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// Tables a statement writes (`INSERT INTO t`, `UPDATE t`, `DELETE FROM t`, `MERGE INTO t`,
/// `TRUNCATE a, b`, `COPY t FROM`, `ALTER`/`DROP TABLE t`), also inside CTEs. Text that does not
/// lex yields what was found before the error. Used for `invalidate_on_write`.
pub fn written_tables(sql: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut toks = Vec::new();
    for t in Lexer::new(sql, LexMode { standard_conforming_strings: true, backslash_safe_encoding: false }) {
        match t {
            Ok(t) => toks.push(t),
            Err(_) => break,
        }
    }
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| is_word(sql, t, w));
    let mut i = 0;
    while i < toks.len() {
        let prev_for = i > 0 && (word(i - 1, "for") || word(i - 1, "key") || word(i - 1, "do"));
        let target = if (word(i, "insert") || word(i, "merge")) && word(i + 1, "into") {
            Some(i + 2)
        } else if word(i, "update") && !prev_for {
            Some(i + 1)
        } else if word(i, "delete") && word(i + 1, "from") {
            Some(i + 2)
        } else if word(i, "copy") && toks.iter().skip(i + 1).any(|t| is_word(sql, t, "from")) {
            Some(i + 1)
        } else if (word(i, "alter") || word(i, "drop")) && word(i + 1, "table") {
            let mut j = i + 2;
            if word(j, "if") {
                j += 2;
            }
            Some(j)
        } else if word(i, "truncate") {
            let mut j = i + 1;
            if word(j, "table") {
                j += 1;
            }
            // A comma-separated list.
            while let Some((name, next)) = qualified_name(sql, &toks, j) {
                push_unique(&mut out, name);
                if toks.get(next).is_some_and(|t| t.kind == TokenKind::Comma) {
                    j = next + 1;
                } else {
                    break;
                }
            }
            None
        } else {
            None
        };
        if let Some((name, _)) = target.and_then(|j| qualified_name(sql, &toks, j)) {
            push_unique(&mut out, name);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prisma_reads_are_cacheable_with_their_tables() {
        let f = read_facts(r#"SELECT "public"."User"."id" FROM "public"."User" WHERE "public"."User"."email" = $1 OFFSET $2"#).unwrap();
        assert_eq!(f.tables, vec!["User".to_owned()]);
        let f = read_facts(r#"SELECT COUNT(*) AS "_count$_all" FROM (SELECT "public"."User"."id" FROM "public"."User" WHERE 1=1 OFFSET $1) AS "sub""#).unwrap();
        assert_eq!(f.tables, vec!["User".to_owned()]);
        let f = read_facts("select * from a, b join c on a.x = c.x where a.id in (1, 2)").unwrap();
        assert_eq!(f.tables, vec!["a", "b", "c"]);
    }

    #[test]
    fn writes_and_volatile_functions_are_not_cacheable() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "SELECT * FROM t FOR UPDATE",
            "SET x = 1",
            "SELECT 1; SET y = 2",
            "SELECT nextval('s')",
            "SELECT pg_advisory_lock(1)",
            "SELECT 'unterminated",
        ] {
            assert_eq!(read_facts(sql), Err(NotCacheable::Write), "{sql}");
        }
        for sql in [
            "SELECT now()",
            "SELECT random()",
            "select current_user",
            "SELECT CURRENT_TIMESTAMP",
            "SELECT my_func(1)",
            "SELECT pg_catalog.now()",
            r#"SELECT "now"()"#,
        ] {
            assert_eq!(read_facts(sql), Err(NotCacheable::Volatile), "{sql}");
        }
        // Names inside strings and comments are not calls.
        assert!(read_facts("SELECT 'now()' /* random() */ FROM t").is_ok());
    }

    proptest::proptest! {
        /// Hostile text never panics, and whatever is judged cacheable is a read.
        #[test]
        fn any_text_is_classified_without_panicking(sql in "(?s).{0,200}", words in proptest::collection::vec("(select|from|join|insert|update|now|\\(|\\)|,|;|'|\"|--|/\\*|\\*/|\\$1|\\.|x|\"T\"| )", 0..40)) {
            let joined = words.concat();
            for text in [sql.as_str(), joined.as_str()] {
                let _ = written_tables(text.as_bytes());
                if read_facts(text).is_ok() {
                    proptest::prop_assert!(written_tables(text.as_bytes()).is_empty(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn written_tables_are_found() {
        assert_eq!(written_tables(br#"INSERT INTO "public"."User" ("name") VALUES ($1) ON CONFLICT DO UPDATE SET x = 1"#), vec!["User"]);
        assert_eq!(written_tables(b"update ONLY s.Items set x = 1"), vec!["items"]);
        assert_eq!(written_tables(b"delete from a; truncate table b, c"), vec!["a", "b", "c"]);
        assert_eq!(written_tables(b"WITH d AS (DELETE FROM x RETURNING 1) SELECT * FROM d"), vec!["x"]);
        assert!(written_tables(b"SELECT * FROM t FOR UPDATE").is_empty());
        assert!(written_tables(b"SELECT 'insert into x'").is_empty());
    }
}
