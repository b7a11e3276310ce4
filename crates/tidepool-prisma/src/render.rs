//! Rendering `rawSql`/`templateSql` into statements: placeholders, tuple expansion, chunking
//! above the bind-parameter limit, parameter encoding and SQL-commenter comments.
//!
//! Template semantics follow Prisma's `renderQuery`: one placeholder counter per statement
//! starting at 1; `parameterTuple` renders `(…)` (an empty list renders `(NULL)`);
//! `parameterTupleList` renders groups without outer parentheses and must be a non-empty list
//! of lists. With a bind limit, the first largest tuple fragment of a `chunkable` template is
//! split so each statement fits; every other parameter repeats in each chunk. A statement that
//! still exceeds the limit fails with P2029.

use indexmap::IndexMap;

use crate::db::Param;
use crate::encode::encode_param;
use crate::error::{Error, Result};
use crate::json::Value;
use crate::plan::{ArgType, DbQuery, DynArgType, Fragment, PlaceholderFormat, Template};

/// One statement ready for the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

/// A fragment paired with its (evaluated) argument.
#[derive(Clone)]
enum Bound<'a> {
    Chunk(&'a str),
    Param(Value, Option<&'a DynArgType>),
    Tuple(&'a Fragment, Vec<Value>, Option<&'a DynArgType>),
    TupleList(&'a Fragment, Vec<Vec<Value>>, Option<&'a DynArgType>),
}

impl Bound<'_> {
    fn count(&self) -> usize {
        match self {
            Bound::Chunk(_) => 0,
            Bound::Param(..) => 1,
            Bound::Tuple(_, v, _) => v.len(),
            Bound::TupleList(_, v, _) => v.iter().map(Vec::len).sum(),
        }
    }
}

fn malformed(detail: &str) -> Error {
    Error::plan(format!("Malformed query template. {detail}"))
}

fn pair<'a>(t: &'a Template, args: Vec<Value>) -> Result<Vec<Bound<'a>>> {
    let n = args.len();
    let mut args = args.into_iter();
    let mut index = 0;
    let mut out = Vec::with_capacity(t.fragments.len());
    for f in &t.fragments {
        if let Fragment::StringChunk(s) = f {
            out.push(Bound::Chunk(s));
            continue;
        }
        let value = args.next().ok_or_else(|| malformed(&format!("Fragments attempt to read over {n} parameters.")))?;
        let ty = t.arg_types.get(index);
        index += 1;
        out.push(match f {
            Fragment::Parameter => Bound::Param(value, ty),
            Fragment::ParameterTuple { .. } => match value {
                Value::List(items) => Bound::Tuple(f, items, ty),
                other => Bound::Tuple(f, vec![other], ty),
            },
            Fragment::ParameterTupleList { .. } => {
                let Value::List(groups) = value else { return Err(malformed("Tuple list expected.")) };
                if groups.is_empty() {
                    return Err(malformed("Tuple list cannot be empty."));
                }
                let groups = groups
                    .into_iter()
                    .map(|g| match g {
                        Value::List(items) => Ok(items),
                        _ => Err(malformed("Tuple expected.")),
                    })
                    .collect::<Result<_>>()?;
                Bound::TupleList(f, groups, ty)
            }
            Fragment::StringChunk(_) => unreachable!("handled above"),
        });
    }
    Ok(out)
}

/// Split the bound fragments into chunks that respect `max`.
fn chunk(bound: Vec<Bound<'_>>, max: Option<usize>, chunkable: bool) -> Vec<Vec<Bound<'_>>> {
    let Some(max) = max.filter(|_| chunkable) else { return vec![bound] };
    let total: usize = bound.iter().map(Bound::count).sum();
    let largest = bound.iter().map(Bound::count).max().unwrap_or(0);
    if total <= max {
        return vec![bound];
    }
    let split_at = bound.iter().position(|b| match b {
        Bound::Tuple(..) => b.count() == largest && total - largest < max,
        Bound::TupleList(..) => b.count() == largest,
        _ => false,
    });
    let Some(i) = split_at else { return vec![bound] };
    let others = total - largest;
    let pieces: Vec<Bound<'_>> = match &bound[i] {
        Bound::Tuple(f, items, ty) => items.chunks(max - others).map(|c| Bound::Tuple(f, c.to_vec(), *ty)).collect(),
        Bound::TupleList(f, groups, ty) => {
            let mut pieces = Vec::new();
            let mut current: Vec<Vec<Value>> = Vec::new();
            let mut count = 0;
            for g in groups {
                if !current.is_empty() && others + count + g.len() > max {
                    pieces.push(Bound::TupleList(f, std::mem::take(&mut current), *ty));
                    count = 0;
                }
                count += g.len();
                current.push(g.clone());
            }
            if !current.is_empty() {
                pieces.push(Bound::TupleList(f, current, *ty));
            }
            pieces
        }
        _ => unreachable!("only tuple fragments are split"),
    };
    pieces
        .into_iter()
        .map(|piece| {
            let mut c = bound.clone();
            c[i] = piece;
            c
        })
        .collect()
}

fn placeholder(fmt: &PlaceholderFormat, n: &mut usize) -> String {
    let s = if fmt.has_numbering { format!("{}{}", fmt.prefix, *n) } else { fmt.prefix.clone() };
    *n += 1;
    s
}

fn push_typed(params: &mut Vec<Param>, values: &[Value], ty: Option<&DynArgType>, typed: bool) -> Result<()> {
    let unknown = ArgType::unknown();
    match ty {
        Some(DynArgType::Tuple(elems)) => {
            if values.len().checked_rem(elems.len()) != Some(0) {
                return Err(malformed(&format!(
                    "Expected the number of parameters to match the tuple arity, but got {} parameters for a tuple of arity {}.",
                    values.len(),
                    elems.len()
                )));
            }
            for (v, t) in values.iter().zip(elems.iter().cycle()) {
                params.push(encode_param(v, t, typed)?);
            }
        }
        Some(DynArgType::Single(t)) => {
            for v in values {
                params.push(encode_param(v, t, typed)?);
            }
        }
        None => {
            for v in values {
                params.push(encode_param(v, &unknown, typed)?);
            }
        }
    }
    Ok(())
}

fn render_chunk(fmt: &PlaceholderFormat, bound: &[Bound<'_>], typed: bool) -> Result<Statement> {
    let mut sql = String::new();
    let mut params = Vec::new();
    let mut n = 1;
    for b in bound {
        match b {
            Bound::Chunk(s) => sql.push_str(s),
            Bound::Param(v, ty) => {
                sql.push_str(&placeholder(fmt, &mut n));
                push_typed(&mut params, std::slice::from_ref(v), *ty, typed)?;
            }
            Bound::Tuple(Fragment::ParameterTuple { item_prefix, item_separator, item_suffix }, items, ty) => {
                sql.push('(');
                if items.is_empty() {
                    sql.push_str("NULL");
                }
                for (i, _) in items.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(item_separator);
                    }
                    sql.push_str(item_prefix);
                    sql.push_str(&placeholder(fmt, &mut n));
                    sql.push_str(item_suffix);
                }
                sql.push(')');
                push_typed(&mut params, items, *ty, typed)?;
            }
            Bound::TupleList(Fragment::ParameterTupleList { item_prefix, item_separator, item_suffix, group_separator }, groups, ty) => {
                for (gi, g) in groups.iter().enumerate() {
                    if gi > 0 {
                        sql.push_str(group_separator);
                    }
                    sql.push_str(item_prefix);
                    for (i, _) in g.iter().enumerate() {
                        if i > 0 {
                            sql.push_str(item_separator);
                        }
                        sql.push_str(&placeholder(fmt, &mut n));
                    }
                    sql.push_str(item_suffix);
                }
                let flat: Vec<Value> = groups.iter().flatten().cloned().collect();
                push_typed(&mut params, &flat, *ty, typed)?;
            }
            Bound::Tuple(..) | Bound::TupleList(..) => unreachable!("bound with matching fragment"),
        }
    }
    Ok(Statement { sql, params })
}

/// Render a query with its evaluated arguments into one or more statements.
pub(crate) fn render(q: &DbQuery, args: Vec<Value>, max_bind: Option<usize>, typed: bool, comment: &str) -> Result<Vec<Statement>> {
    let mut statements = match q {
        DbQuery::Raw { sql, arg_types, .. } => {
            let unknown = ArgType::unknown();
            let params = args.iter().enumerate().map(|(i, v)| encode_param(v, arg_types.get(i).unwrap_or(&unknown), typed)).collect::<Result<_>>()?;
            vec![Statement { sql: sql.clone(), params }]
        }
        DbQuery::Template(t) => {
            let bound = pair(t, args)?;
            let mut out = Vec::new();
            for c in chunk(bound, max_bind, t.chunkable) {
                let st = render_chunk(&t.placeholder, &c, typed)?;
                if max_bind.is_some_and(|m| st.params.len() > m) {
                    return Err(Error::parameter_limit());
                }
                out.push(st);
            }
            out
        }
    };
    if !comment.is_empty() {
        for s in &mut statements {
            s.sql.push(' ');
            s.sql.push_str(comment);
        }
    }
    Ok(statements)
}

/// `encodeURIComponent`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SQL-commenter comment for a request's `comments`, or `""` when there are none.
pub fn sql_comment(comments: &IndexMap<String, String>) -> String {
    if comments.is_empty() {
        return String::new();
    }
    let mut keys: Vec<&String> = comments.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys.iter().map(|k| format!("{}='{}'", uri_encode(k), uri_encode(&comments[*k]).replace('\'', "\\'"))).collect();
    format!("/*{}*/", parts.join(","))
}
