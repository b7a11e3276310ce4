//! JSON → [`crate::plan`] conversion with shape checks and a nesting limit.
//!
//! Every error is an [`Error::InvalidRequest`] naming the offending node or field, e.g.
//! `Invalid query plan: unknown node type 'frobnicate'`.

use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::json::{Map, Value};
use crate::plan::*;

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("Invalid query plan: {msg}"))
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map> {
    v.as_object().ok_or_else(|| bad(format!("{what} must be an object")))
}

fn member<'a>(m: &'a Map, key: &str, what: &str) -> Result<&'a Value> {
    match m.get(key) {
        Some(v) if !matches!(v, Value::Undefined) => Ok(v),
        _ => Err(bad(format!("{what} is missing '{key}'"))),
    }
}

fn string(m: &Map, key: &str, what: &str) -> Result<String> {
    member(m, key, what)?.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what}.{key} must be a string")))
}

fn opt_string(m: &Map, key: &str, what: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{what}.{key} must be a string or null"))),
    }
}

fn opt_bool(m: &Map, key: &str, what: &str) -> Result<bool> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("{what}.{key} must be a boolean"))),
    }
}

fn list<'a>(v: &'a Value, what: &str) -> Result<&'a [Value]> {
    v.as_list().ok_or_else(|| bad(format!("{what} must be an array")))
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    list(v, what)?.iter().map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what} must contain strings")))).collect()
}

fn opt_strings(m: &Map, key: &str, what: &str) -> Result<Option<Vec<String>>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => strings(v, &format!("{what}.{key}")).map(Some),
    }
}

fn opt_number(m: &Map, key: &str, what: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(*n)),
        Some(_) => Err(bad(format!("{what}.{key} must be a number or null"))),
    }
}

/// Converts plan JSON into typed nodes, tracking nesting depth.
pub(crate) struct PlanParser {
    pub max_depth: usize,
}

impl PlanParser {
    /// Parse one node. Kept small: each node kind is parsed by its own non-inlined function so
    /// the recursive stack frame stays small even in debug builds.
    pub fn node(&self, v: &Value, depth: usize) -> Result<Node> {
        if depth > self.max_depth {
            return Err(Error::InvalidRequest(format!("Query plan nesting exceeds the limit of {} levels", self.max_depth)));
        }
        let d = depth + 1;
        let m = obj(v, "plan node")?;
        let Some(Value::String(ty)) = m.get("type") else { return Err(bad("plan node is missing 'type'")) };
        let args = m.get("args").unwrap_or(&Value::Undefined);
        match ty.as_str() {
            "value" => self.pvalue(args, d).map(Node::Value),
            "seq" => self.nodes(args, "seq args", d).map(Node::Seq),
            "concat" => self.nodes(args, "concat args", d).map(Node::Concat),
            "sum" => self.nodes(args, "sum args", d).map(Node::Sum),
            "get" => self.get_node(args),
            "getFirstNonEmpty" => self.first_non_empty(args),
            "let" => self.let_node(args, d),
            "reverse" => self.boxed(args, d).map(Node::Reverse),
            "unique" => self.boxed(args, d).map(Node::Unique),
            "required" => self.boxed(args, d).map(Node::Required),
            "transaction" => self.boxed(args, d).map(Node::Transaction),
            "unit" => Ok(Node::Unit),
            "query" => self.db_query(args, d).map(Node::Query),
            "execute" => self.db_query(args, d).map(Node::Execute),
            "mapField" => self.map_field(args, d),
            "join" => self.join(args, d),
            "dataMap" => self.data_map(args, d),
            "validate" => self.validate(args, d),
            "if" => self.if_node(args, d),
            "diff" => self.diff(args, d),
            "initializeRecord" => self.initialize_record(args, d),
            "mapRecord" => self.map_record(args, d),
            "process" => self.process(args, d),
            other => Err(bad(format!("unknown node type '{other}'"))),
        }
    }

    #[inline(never)]
    fn boxed(&self, v: &Value, d: usize) -> Result<Box<Node>> {
        self.node(v, d).map(Box::new)
    }

    #[inline(never)]
    fn get_node(&self, args: &Value) -> Result<Node> {
        Ok(Node::Get(string(obj(args, "get args")?, "name", "get args")?))
    }

    #[inline(never)]
    fn first_non_empty(&self, args: &Value) -> Result<Node> {
        let m = obj(args, "getFirstNonEmpty args")?;
        Ok(Node::GetFirstNonEmpty(strings(member(m, "names", "getFirstNonEmpty args")?, "names")?))
    }

    #[inline(never)]
    fn let_node(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "let args")?;
        let mut bindings = Vec::new();
        for b in list(member(m, "bindings", "let args")?, "let bindings")? {
            let (name, expr) = match b {
                Value::List(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                _ => {
                    let bm = obj(b, "let binding")?;
                    (member(bm, "name", "let binding")?, member(bm, "expr", "let binding")?)
                }
            };
            let Value::String(name) = name else { return Err(bad("let binding name must be a string")) };
            bindings.push((name.clone(), self.node(expr, d)?));
        }
        Ok(Node::Let { bindings, expr: self.boxed(member(m, "expr", "let args")?, d)? })
    }

    #[inline(never)]
    fn map_field(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "mapField args")?;
        Ok(Node::MapField { field: string(m, "field", "mapField args")?, records: self.boxed(member(m, "records", "mapField args")?, d)? })
    }

    #[inline(never)]
    fn data_map(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "dataMap args")?;
        let enums = match m.get("enums") {
            None | Some(Value::Null) => Enums::new(),
            Some(e) => parse_enums(e)?,
        };
        Ok(Node::DataMap {
            expr: self.boxed(member(m, "expr", "dataMap args")?, d)?,
            structure: self.result_node(member(m, "structure", "dataMap args")?, d)?,
            enums,
        })
    }

    #[inline(never)]
    fn validate(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "validate args")?;
        let rules = list(member(m, "rules", "validate args")?, "validate rules")?.iter().map(data_rule).collect::<Result<_>>()?;
        Ok(Node::Validate {
            expr: self.boxed(member(m, "expr", "validate args")?, d)?,
            rules,
            error_identifier: string(m, "errorIdentifier", "validate args")?,
            context: m.get("context").cloned().unwrap_or(Value::Object(Map::new())),
        })
    }

    #[inline(never)]
    fn if_node(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "if args")?;
        Ok(Node::If {
            value: self.boxed(member(m, "value", "if args")?, d)?,
            rule: data_rule(member(m, "rule", "if args")?)?,
            then: self.boxed(member(m, "then", "if args")?, d)?,
            otherwise: self.boxed(member(m, "else", "if args")?, d)?,
        })
    }

    #[inline(never)]
    fn diff(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "diff args")?;
        Ok(Node::Diff {
            from: self.boxed(member(m, "from", "diff args")?, d)?,
            to: self.boxed(member(m, "to", "diff args")?, d)?,
            fields: strings(member(m, "fields", "diff args")?, "diff fields")?,
        })
    }

    #[inline(never)]
    fn initialize_record(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "initializeRecord args")?;
        let mut fields = IndexMap::new();
        for (k, f) in obj(member(m, "fields", "initializeRecord args")?, "initializeRecord fields")? {
            let fm = obj(f, "field initializer")?;
            let init = match string(fm, "type", "field initializer")?.as_str() {
                "value" => FieldInitializer::Value(self.pvalue(fm.get("value").unwrap_or(&Value::Null), d)?),
                "lastInsertId" => FieldInitializer::LastInsertId,
                other => return Err(bad(format!("unknown field initializer '{other}'"))),
            };
            fields.insert(k.clone(), init);
        }
        Ok(Node::InitializeRecord { expr: self.boxed(member(m, "expr", "initializeRecord args")?, d)?, fields })
    }

    #[inline(never)]
    fn map_record(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "mapRecord args")?;
        let mut fields = IndexMap::new();
        for (k, f) in obj(member(m, "fields", "mapRecord args")?, "mapRecord fields")? {
            let fm = obj(f, "field operation")?;
            let op = match string(fm, "type", "field operation")?.as_str() {
                "set" => FieldOp::Set,
                "add" => FieldOp::Add,
                "subtract" => FieldOp::Subtract,
                "multiply" => FieldOp::Multiply,
                "divide" => FieldOp::Divide,
                other => return Err(bad(format!("unknown field operation '{other}'"))),
            };
            let value = self.pvalue(fm.get("value").unwrap_or(&Value::Null), d)?;
            fields.insert(k.clone(), FieldOperation { op, value });
        }
        Ok(Node::MapRecord { expr: self.boxed(member(m, "expr", "mapRecord args")?, d)?, fields })
    }

    #[inline(never)]
    fn process(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "process args")?;
        Ok(Node::Process {
            expr: self.boxed(member(m, "expr", "process args")?, d)?,
            operations: self.in_memory_ops(member(m, "operations", "process args")?, d)?,
        })
    }

    fn nodes(&self, v: &Value, what: &str, d: usize) -> Result<Vec<Node>> {
        list(v, what)?.iter().map(|n| self.node(n, d)).collect()
    }

    #[inline(never)]
    fn join(&self, args: &Value, d: usize) -> Result<Node> {
        let m = obj(args, "join args")?;
        let mut children = Vec::new();
        for c in list(member(m, "children", "join args")?, "join children")? {
            let cm = obj(c, "join child")?;
            let mut on = Vec::new();
            for pair in list(member(cm, "on", "join child")?, "join on")? {
                match pair.as_list() {
                    Some([Value::String(l), Value::String(r)]) => on.push((l.clone(), r.clone())),
                    _ => return Err(bad("join 'on' entries must be [parentField, childField]")),
                }
            }
            children.push(JoinExpr {
                child: self.node(member(cm, "child", "join child")?, d)?,
                on,
                parent_field: string(cm, "parentField", "join child")?,
                is_relation_unique: opt_bool(cm, "isRelationUnique", "join child")?,
            });
        }
        Ok(Node::Join {
            parent: Box::new(self.node(member(m, "parent", "join args")?, d)?),
            children,
            can_assume_strict_equality: opt_bool(m, "canAssumeStrictEquality", "join args")?,
        })
    }

    /// Parse a `PrismaValue`, recognising placeholders and generator calls (verbose
    /// `prisma__type` form and compact `$p`/`$g` form).
    #[inline(never)]
    pub fn pvalue(&self, v: &Value, depth: usize) -> Result<PValue> {
        if depth > self.max_depth {
            return Err(Error::InvalidRequest(format!("Query plan nesting exceeds the limit of {} levels", self.max_depth)));
        }
        match v {
            Value::Object(m) => {
                if let Some(Value::String(kind)) = m.get("prisma__type") {
                    let pv = obj(member(m, "prisma__value", "prisma value")?, "prisma__value")?;
                    return match kind.as_str() {
                        "param" => {
                            Ok(PValue::Placeholder { name: string(pv, "name", "placeholder")?, ty: opt_string(pv, "type", "placeholder")?.unwrap_or_default() })
                        }
                        "generatorCall" => {
                            let args = match pv.get("args") {
                                None | Some(Value::Null) => Vec::new(),
                                Some(a) => list(a, "generator args")?.iter().map(|x| self.pvalue(x, depth + 1)).collect::<Result<_>>()?,
                            };
                            Ok(PValue::Generator { name: string(pv, "name", "generator call")?, args })
                        }
                        other => Err(bad(format!("unknown prisma__type '{other}'"))),
                    };
                }
                if let (1, Some(Value::List(p))) = (m.len(), m.get("$p")) {
                    if let [Value::String(name), Value::String(ty)] = p.as_slice() {
                        return Ok(PValue::Placeholder { name: name.clone(), ty: ty.clone() });
                    }
                }
                if let (1, Some(Value::List(g))) = (m.len(), m.get("$g")) {
                    if let [Value::String(name), Value::List(args)] = g.as_slice() {
                        let args = args.iter().map(|x| self.pvalue(x, depth + 1)).collect::<Result<_>>()?;
                        return Ok(PValue::Generator { name: name.clone(), args });
                    }
                }
                Ok(PValue::Literal(v.clone()))
            }
            Value::List(items) => {
                let parsed: Vec<PValue> = items.iter().map(|x| self.pvalue(x, depth + 1)).collect::<Result<_>>()?;
                if parsed.iter().all(|p| matches!(p, PValue::Literal(_))) {
                    Ok(PValue::Literal(v.clone()))
                } else {
                    Ok(PValue::List(parsed))
                }
            }
            _ => Ok(PValue::Literal(v.clone())),
        }
    }

    #[inline(never)]
    fn db_query(&self, v: &Value, d: usize) -> Result<DbQuery> {
        let m = obj(v, "database query")?;
        let args = match m.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(a) => list(a, "query args")?.iter().map(|x| self.pvalue(x, d)).collect::<Result<_>>()?,
        };
        let raw_types = match m.get("argTypes") {
            None | Some(Value::Null) => &[][..],
            Some(t) => list(t, "argTypes")?,
        };
        match string(m, "type", "database query")?.as_str() {
            "rawSql" => Ok(DbQuery::Raw { sql: string(m, "sql", "rawSql")?, args, arg_types: raw_types.iter().map(arg_type).collect::<Result<_>>()? }),
            "templateSql" => {
                let fragments = list(member(m, "fragments", "templateSql")?, "fragments")?.iter().map(fragment).collect::<Result<_>>()?;
                let placeholder = match m.get("placeholderFormat") {
                    Some(Value::Object(p)) => PlaceholderFormat {
                        prefix: string(p, "prefix", "placeholderFormat")?,
                        has_numbering: opt_bool(p, "hasNumbering", "placeholderFormat")?,
                    },
                    None | Some(Value::Null) => PlaceholderFormat { prefix: "$".into(), has_numbering: true },
                    Some(_) => return Err(bad("placeholderFormat must be an object")),
                };
                let arg_types = raw_types.iter().map(dyn_arg_type).collect::<Result<_>>()?;
                Ok(DbQuery::Template(Template { fragments, placeholder, args, arg_types, chunkable: opt_bool(m, "chunkable", "templateSql")? }))
            }
            other => Err(bad(format!("unknown database query type '{other}'"))),
        }
    }

    fn result_node(&self, v: &Value, d: usize) -> Result<ResultNode> {
        if d > self.max_depth {
            return Err(Error::InvalidRequest(format!("Query plan nesting exceeds the limit of {} levels", self.max_depth)));
        }
        let m = obj(v, "result node")?;
        match string(m, "type", "result node")?.as_str() {
            "affectedRows" => Ok(ResultNode::AffectedRows),
            "object" => {
                let mut fields = IndexMap::new();
                for (k, f) in obj(member(m, "fields", "result object")?, "result fields")? {
                    fields.insert(k.clone(), self.result_node(f, d + 1)?);
                }
                Ok(ResultNode::Object {
                    fields,
                    serialized_name: opt_string(m, "serializedName", "result object")?,
                    skip_nulls: opt_bool(m, "skipNulls", "result object")?,
                })
            }
            "field" => {
                Ok(ResultNode::Field { db_name: string(m, "dbName", "result field")?, field_type: field_type(member(m, "fieldType", "result field")?)? })
            }
            other => Err(bad(format!("unknown result node type '{other}'"))),
        }
    }

    fn in_memory_ops(&self, v: &Value, d: usize) -> Result<InMemoryOps> {
        if d > self.max_depth {
            return Err(Error::InvalidRequest(format!("Query plan nesting exceeds the limit of {} levels", self.max_depth)));
        }
        let m = obj(v, "process operations")?;
        let pagination = match m.get("pagination") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let pm = obj(p, "pagination")?;
                let cursor = match pm.get("cursor") {
                    None | Some(Value::Null) => None,
                    Some(c) => {
                        let mut cur = IndexMap::new();
                        for (k, x) in obj(c, "cursor")? {
                            cur.insert(k.clone(), self.pvalue(x, d + 1)?);
                        }
                        Some(cur)
                    }
                };
                Some(Pagination { cursor, take: opt_number(pm, "take", "pagination")?, skip: opt_number(pm, "skip", "pagination")? })
            }
        };
        let mut nested = IndexMap::new();
        if let Some(n) = m.get("nested").filter(|n| !n.is_null_or_undefined()) {
            for (k, ops) in obj(n, "nested operations")? {
                nested.insert(k.clone(), self.in_memory_ops(ops, d + 1)?);
            }
        }
        Ok(InMemoryOps {
            pagination,
            distinct: opt_strings(m, "distinct", "process operations")?,
            reverse: opt_bool(m, "reverse", "process operations")?,
            linking_fields: opt_strings(m, "linkingFields", "process operations")?,
            nested,
        })
    }
}

fn parse_enums(v: &Value) -> Result<Enums> {
    let mut out = Enums::new();
    for (name, values) in obj(v, "enums")? {
        let mut map = IndexMap::new();
        for (db, prisma) in obj(values, "enum values")? {
            let Value::String(p) = prisma else { return Err(bad("enum values must be strings")) };
            map.insert(db.clone(), p.clone());
        }
        out.insert(name.clone(), map);
    }
    Ok(out)
}

fn data_rule(v: &Value) -> Result<DataRule> {
    let m = obj(v, "data rule")?;
    let n = || match m.get("args") {
        Some(Value::Number(n)) => Ok(*n),
        _ => Err(bad("data rule args must be a number")),
    };
    Ok(match string(m, "type", "data rule")?.as_str() {
        "rowCountEq" => DataRule::RowCountEq(n()?),
        "rowCountNeq" => DataRule::RowCountNeq(n()?),
        "affectedRowCountEq" => DataRule::AffectedRowCountEq(n()?),
        "never" => DataRule::Never,
        other => return Err(bad(format!("unknown data rule '{other}'"))),
    })
}

fn fragment(v: &Value) -> Result<Fragment> {
    let m = obj(v, "fragment")?;
    let s = |k: &str| opt_string(m, k, "fragment").map(Option::unwrap_or_default);
    Ok(match string(m, "type", "fragment")?.as_str() {
        "stringChunk" => Fragment::StringChunk(string(m, "chunk", "stringChunk")?),
        "parameter" => Fragment::Parameter,
        "parameterTuple" => Fragment::ParameterTuple { item_prefix: s("itemPrefix")?, item_separator: s("itemSeparator")?, item_suffix: s("itemSuffix")? },
        "parameterTupleList" => Fragment::ParameterTupleList {
            item_prefix: s("itemPrefix")?,
            item_separator: s("itemSeparator")?,
            item_suffix: s("itemSuffix")?,
            group_separator: s("groupSeparator")?,
        },
        other => return Err(bad(format!("unknown fragment type '{other}'"))),
    })
}

fn arg_type(v: &Value) -> Result<ArgType> {
    let m = obj(v, "argType")?;
    let arity = match opt_string(m, "arity", "argType")?.as_deref() {
        Some("list") => Arity::List,
        Some("scalar") | None => Arity::Scalar,
        Some(other) => return Err(bad(format!("unknown arity '{other}'"))),
    };
    let scalar = ScalarType::parse(opt_string(m, "scalarType", "argType")?.as_deref().unwrap_or("unknown"));
    Ok(ArgType { arity, scalar, db_type: opt_string(m, "dbType", "argType")? })
}

fn dyn_arg_type(v: &Value) -> Result<DynArgType> {
    let m = obj(v, "argType")?;
    if m.get("arity").and_then(Value::as_str) == Some("tuple") {
        let elems = list(member(m, "elements", "tuple argType")?, "tuple elements")?.iter().map(arg_type).collect::<Result<_>>()?;
        return Ok(DynArgType::Tuple(elems));
    }
    arg_type(v).map(DynArgType::Single)
}

fn field_type(v: &Value) -> Result<FieldType> {
    let m = obj(v, "fieldType")?;
    let is_list = m.get("arity").and_then(Value::as_str) == Some("list");
    let kind = match string(m, "type", "fieldType")?.as_str() {
        "string" | "s" => FieldKind::String,
        "int" | "i" => FieldKind::Int,
        "bigint" | "I" => FieldKind::BigInt,
        "float" | "f" => FieldKind::Float,
        "boolean" | "b" => FieldKind::Boolean,
        "json" | "j" => FieldKind::Json,
        "object" | "o" => FieldKind::Object,
        "datetime" | "D" => FieldKind::DateTime,
        "decimal" | "d" => FieldKind::Decimal,
        "unsupported" | "x" => FieldKind::Unsupported,
        "enum" => FieldKind::Enum(string(m, "name", "enum fieldType")?),
        "bytes" => FieldKind::Bytes(match opt_string(m, "encoding", "bytes fieldType")?.as_deref() {
            Some("base64") => BytesEncoding::Base64,
            Some("hex") => BytesEncoding::Hex,
            Some("array") | None => BytesEncoding::Array,
            Some(other) => return Err(bad(format!("unknown bytes encoding '{other}'"))),
        }),
        other => return Err(bad(format!("unknown field type '{other}'"))),
    };
    Ok(FieldType { is_list, kind })
}
