//! The plan evaluator.
//!
//! Evaluation is sequential (one statement at a time on the host's executor), which is what a
//! single pinned connection requires and is semantically equivalent to the reference
//! interpreter's concurrent evaluation of `concat`/`sum`/`join` operands. Scopes are a stack of
//! bindings over the request's `params`; a `let` pushes its bindings and pops them afterwards.

use std::future::Future;
use std::pin::Pin;

use crate::datamap::{js_number, DataMapper};
use crate::datetime::parse_js_date;
use crate::db::{DbError, Executor, Rows};
use crate::db_error::map_db_error;
use crate::decode::{raw_result, rows_to_objects};
use crate::error::{Error, Result};
use crate::generators::Generators;
use crate::json::{Map, Value};
use crate::plan::{DataRule, DbQuery, FieldInitializer, FieldOp, InMemoryOps, Node, PValue};
use crate::process::{attach_children, diff, process_records, Ops};
use crate::render::render;
use crate::Limits;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

/// Evaluation state for one request.
pub(crate) struct Interpreter<'a, E: Executor> {
    pub exec: &'a mut E,
    pub limits: &'a Limits,
    pub params: &'a Map,
    pub scope: Vec<(String, Value)>,
    pub generators: Generators,
    pub in_transaction: bool,
    pub comment: String,
    pub fetched_bytes: usize,
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::List(items) => items.is_empty(),
        other => other.is_null_or_undefined(),
    }
}

fn as_number(v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => Ok(*n),
        Value::String(s) => Ok(js_number(s)),
        other => Err(Error::plan(format!("Expected number, got {}", other.type_name()))),
    }
}

fn map_field(v: Value, field: &str) -> Value {
    match v {
        Value::List(items) => Value::List(
            items
                .into_iter()
                .map(|item| match item {
                    Value::List(_) => map_field(item, field),
                    Value::Object(mut m) => m.swap_remove(field).filter(|x| !x.is_null_or_undefined()).unwrap_or(Value::Null),
                    other => other,
                })
                .collect(),
        ),
        Value::Object(mut m) => m.swap_remove(field).filter(|x| !x.is_null_or_undefined()).unwrap_or(Value::Null),
        other => other,
    }
}

fn reverse(v: Value) -> Value {
    match v {
        Value::List(mut items) => {
            items.reverse();
            Value::List(items)
        }
        other => other,
    }
}

fn unique(v: Value) -> Result<Value> {
    match v {
        Value::List(items) if items.len() > 1 => Err(Error::internal(format!("Expected zero or one element, got {}", items.len()))),
        Value::List(items) => Ok(items.into_iter().next().unwrap_or(Value::Null)),
        other => Ok(other),
    }
}

fn required(v: Value) -> Result<Value> {
    if is_empty(&v) {
        return Err(Error::internal("Required value is empty"));
    }
    Ok(v)
}

pub(crate) fn satisfies(v: &Value, rule: &DataRule) -> bool {
    let rows = |v: &Value| match v {
        Value::List(items) => items.len() as f64,
        Value::Null => 0.0,
        _ => 1.0,
    };
    match rule {
        DataRule::RowCountEq(n) => rows(v) == *n,
        DataRule::RowCountNeq(n) => rows(v) != *n,
        DataRule::AffectedRowCountEq(n) => v.as_f64() == Some(*n),
        DataRule::Never => false,
    }
}

fn validation_error(data: &Value, identifier: &str, context: &Value) -> Error {
    let c = |k: &str| context.get(k).to_js_string();
    let found = match data {
        Value::List(items) => items.len().to_string(),
        other => other.to_js_string(),
    };
    const MISSING: &str = "An operation failed because it depends on one or more records that were required but not found.";
    let (code, message) = match identifier {
        "RELATION_VIOLATION" => (
            "P2014",
            format!("The change you are trying to make would violate the required relation '{}' between the `{}` and `{}` models.", c("relation"), c("modelA"), c("modelB")),
        ),
        "MISSING_RECORD" => ("P2025", format!("{MISSING} No record was found for {}.", c("operation"))),
        "MISSING_RELATED_RECORD" => {
            let hint = match context.get("neededFor") {
                Value::String(s) if !s.is_empty() => format!(" (needed to {s})"),
                _ => String::new(),
            };
            ("P2025", format!("{MISSING} No '{}' record{hint} was found for {} on {} relation '{}'.", c("model"), c("operation"), c("relationType"), c("relation")))
        }
        "INCOMPLETE_CONNECT_INPUT" => ("P2025", format!("{MISSING} Expected {} records to be connected, found only {found}.", c("expectedRows"))),
        "INCOMPLETE_CONNECT_OUTPUT" => (
            "P2018",
            format!(
                "The required connected records were not found. Expected {} records to be connected after connect operation on {} relation '{}', found {found}.",
                c("expectedRows"),
                c("relationType"),
                c("relation")
            ),
        ),
        "RECORDS_NOT_CONNECTED" => (
            "P2017",
            format!("The records for relation `{}` between the `{}` and `{}` models are not connected.", c("relation"), c("parent"), c("child")),
        ),
        other => return Error::plan(format!("Unknown error identifier: {other}")),
    };
    Error::known(code, message, context.clone())
}

fn rows_size(rows: &Rows) -> usize {
    let cells: usize = rows.rows.iter().flatten().map(|c| c.as_ref().map_or(4, String::len) + 1).sum();
    cells + rows.columns.iter().map(|c| c.name.len()).sum::<usize>()
}

impl<E: Executor> Interpreter<'_, E> {
    fn lookup(&self, name: &str) -> Value {
        if let Some((_, v)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return v.clone();
        }
        self.params.get(name).cloned().unwrap_or_default()
    }

    fn eval_pvalue(&mut self, pv: &PValue) -> Result<Value> {
        match pv {
            PValue::Literal(v) => Ok(v.clone()),
            PValue::Placeholder { name, ty } => match self.lookup(name) {
                Value::Undefined => Err(Error::plan(format!("Missing value for query variable {name}"))),
                Value::String(s) if ty == "DateTime" => {
                    parse_js_date(&s).map(Value::Date).ok_or_else(|| Error::plan(format!("Invalid DateTime value for query variable {name}")))
                }
                v => Ok(v),
            },
            PValue::Generator { name, args } => {
                let args = args.iter().map(|a| self.eval_pvalue(a)).collect::<Result<Vec<_>>>()?;
                self.generators.call(name, &args)
            }
            PValue::List(items) => items.iter().map(|a| self.eval_pvalue(a)).collect::<Result<_>>().map(Value::List),
        }
    }

    fn eval_ops<'o>(&mut self, ops: &'o InMemoryOps) -> Result<Ops<'o>> {
        let cursor = match ops.pagination.as_ref().and_then(|p| p.cursor.as_ref()) {
            Some(c) => Some(c.iter().map(|(k, v)| Ok((k.clone(), self.eval_pvalue(v)?))).collect::<Result<Map>>()?),
            None => None,
        };
        let nested = ops.nested.iter().map(|(k, o)| Ok((k.as_str(), self.eval_ops(o)?))).collect::<Result<_>>()?;
        Ok(Ops { plan: ops, cursor, nested })
    }

    async fn with_transaction<'n>(&'n mut self, node: &'n Node) -> Result<Value> {
        if self.in_transaction {
            return self.eval(node).await;
        }
        self.exec.begin(None).await.map_err(|e| map_db_error(&e, false))?;
        self.in_transaction = true;
        let result = self.eval(node).await;
        self.in_transaction = false;
        match result {
            Ok(v) => {
                self.exec.commit().await.map_err(|e| map_db_error(&e, false))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.exec.rollback().await;
                Err(e)
            }
        }
    }

    async fn run_db(&mut self, q: &DbQuery, execute: bool) -> Result<Value> {
        let args = match q {
            DbQuery::Raw { args, .. } => args,
            DbQuery::Template(t) => &t.args,
        };
        let args = args.iter().map(|a| self.eval_pvalue(a)).collect::<Result<Vec<_>>>()?;
        let statements = render(q, args, self.limits.max_bind_values, self.limits.typed_params, &self.comment)?;
        let raw = q.is_raw();
        let wrap = statements.len() > 1 && !self.in_transaction;
        if wrap {
            self.exec.begin(None).await.map_err(|e| map_db_error(&e, false))?;
            self.in_transaction = true;
        }
        let result = self.run_statements(&statements, execute, raw).await;
        if wrap {
            self.in_transaction = false;
            match &result {
                Ok(_) => self.exec.commit().await.map_err(|e| map_db_error(&e, false))?,
                Err(_) => {
                    let _ = self.exec.rollback().await;
                }
            }
        }
        result
    }

    async fn run_statements(&mut self, statements: &[crate::render::Statement], execute: bool, raw: bool) -> Result<Value> {
        let map_err = |e: DbError| map_db_error(&e, raw);
        if execute {
            let mut sum = 0u64;
            for s in statements {
                sum = sum.saturating_add(self.exec.execute(&s.sql, &s.params).await.map_err(map_err)?);
            }
            return Ok(Value::Number(sum as f64));
        }
        let mut rows_out = Vec::new();
        for s in statements {
            let rows = self.exec.query(&s.sql, &s.params).await.map_err(map_err)?;
            self.fetched_bytes = self.fetched_bytes.saturating_add(rows_size(&rows));
            if self.fetched_bytes > self.limits.max_response_bytes {
                return Err(Error::ResponseTooLarge { limit: self.limits.max_response_bytes });
            }
            if raw {
                return raw_result(&rows, self.limits.max_json_depth);
            }
            rows_out.extend(rows_to_objects(&rows, self.limits.max_json_depth)?);
        }
        Ok(Value::List(rows_out))
    }

    /// Evaluate a node. Each node kind gets its own small boxed future so the recursive poll
    /// frames stay small (deep plans must not exhaust a worker thread's stack).
    pub fn eval<'n>(&'n mut self, node: &'n Node) -> BoxFuture<'n, Result<Value>> {
        match node {
            Node::Value(pv) => ready(self.eval_pvalue(pv)),
            Node::Get(name) => ready(Ok(self.lookup(name))),
            Node::GetFirstNonEmpty(names) => ready(Ok(names.iter().map(|n| self.lookup(n)).find(|v| !is_empty(v)).unwrap_or(Value::List(Vec::new())))),
            Node::Unit => ready(Ok(Value::Undefined)),
            Node::Seq(nodes) => Box::pin(self.seq(nodes)),
            Node::Let { bindings, expr } => Box::pin(self.let_node(bindings, expr)),
            Node::Concat(nodes) => Box::pin(self.concat(nodes)),
            Node::Sum(nodes) => Box::pin(self.sum(nodes)),
            Node::Reverse(inner) => Box::pin(async move { self.eval(inner).await.map(reverse) }),
            Node::Unique(inner) => Box::pin(async move { self.eval(inner).await.and_then(unique) }),
            Node::Required(inner) => Box::pin(async move { self.eval(inner).await.and_then(required) }),
            Node::MapField { field, records } => Box::pin(async move { Ok(map_field(self.eval(records).await?, field)) }),
            Node::Join { parent, children, can_assume_strict_equality } => Box::pin(self.join(parent, children, *can_assume_strict_equality)),
            Node::DataMap { expr, structure, enums } => Box::pin(async move {
                let v = self.eval(expr).await?;
                DataMapper { enums, json_depth: self.limits.max_json_depth }.apply(v, structure)
            }),
            Node::Validate { expr, rules, error_identifier, context } => Box::pin(async move {
                let v = self.eval(expr).await?;
                match rules.iter().all(|r| satisfies(&v, r)) {
                    true => Ok(v),
                    false => Err(validation_error(&v, error_identifier, context)),
                }
            }),
            Node::If { value, rule, then, otherwise } => Box::pin(async move {
                let v = self.eval(value).await?;
                self.eval(if satisfies(&v, rule) { then } else { otherwise }).await
            }),
            Node::Diff { from, to, fields } => Box::pin(async move {
                let from = self.eval(from).await?;
                let to = self.eval(to).await?;
                Ok(diff(from, &to, fields))
            }),
            Node::InitializeRecord { expr, fields } => Box::pin(self.initialize_record(expr, fields)),
            Node::MapRecord { expr, fields } => Box::pin(self.map_record(expr, fields)),
            Node::Process { expr, operations } => Box::pin(async move {
                let v = self.eval(expr).await?;
                let ops = self.eval_ops(operations)?;
                process_records(v, &ops, self.limits.max_json_depth)
            }),
            Node::Query(q) => Box::pin(self.run_db(q, false)),
            Node::Execute(q) => Box::pin(self.run_db(q, true)),
            Node::Transaction(inner) => Box::pin(self.with_transaction(inner)),
        }
    }

    async fn seq(&mut self, nodes: &[Node]) -> Result<Value> {
        let mut last = Value::Undefined;
        for n in nodes {
            last = self.eval(n).await?;
        }
        Ok(last)
    }

    async fn let_node(&mut self, bindings: &[(String, Node)], expr: &Node) -> Result<Value> {
        let mark = self.scope.len();
        let mut result = Ok(Value::Undefined);
        for (name, b) in bindings {
            match self.eval(b).await {
                Ok(v) => self.scope.push((name.clone(), v)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.eval(expr).await;
        }
        self.scope.truncate(mark);
        result
    }

    async fn concat(&mut self, nodes: &[Node]) -> Result<Value> {
        let mut out = Vec::new();
        for n in nodes {
            match self.eval(n).await? {
                Value::List(items) => out.extend(items),
                other => out.push(other),
            }
        }
        Ok(Value::List(out))
    }

    async fn sum(&mut self, nodes: &[Node]) -> Result<Value> {
        let mut acc: Option<Value> = None;
        for n in nodes {
            let v = self.eval(n).await?;
            acc = Some(match acc {
                None => v,
                Some(a) => Value::Number(as_number(&a)? + as_number(&v)?),
            });
        }
        Ok(acc.unwrap_or(Value::Number(0.0)))
    }

    async fn join(&mut self, parent: &Node, children: &[crate::plan::JoinExpr], strict: bool) -> Result<Value> {
        let parent = self.eval(parent).await?;
        if matches!(parent, Value::Null) {
            return Ok(Value::Null);
        }
        let mut evaluated = Vec::with_capacity(children.len());
        for c in children {
            evaluated.push((c, self.eval(&c.child).await?));
        }
        attach_children(parent, evaluated, strict)
    }

    async fn initialize_record(&mut self, expr: &Node, fields: &indexmap::IndexMap<String, FieldInitializer>) -> Result<Value> {
        self.eval(expr).await?;
        let mut record = Map::new();
        for (k, init) in fields {
            let v = match init {
                FieldInitializer::Value(pv) => self.eval_pvalue(pv)?,
                FieldInitializer::LastInsertId => Value::Undefined,
            };
            record.insert(k.clone(), v);
        }
        Ok(Value::Object(record))
    }

    async fn map_record(&mut self, expr: &Node, fields: &indexmap::IndexMap<String, crate::plan::FieldOperation>) -> Result<Value> {
        let mut record = match self.eval(expr).await? {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            other => return Err(Error::plan(format!("Expected object, got {}", other.type_name()))),
        };
        for (k, op) in fields {
            let operand = self.eval_pvalue(&op.value)?;
            let current = record.get(k).cloned().unwrap_or_default();
            let v = match op.op {
                FieldOp::Set => operand,
                FieldOp::Add => Value::Number(as_number(&current)? + as_number(&operand)?),
                FieldOp::Subtract => Value::Number(as_number(&current)? - as_number(&operand)?),
                FieldOp::Multiply => Value::Number(as_number(&current)? * as_number(&operand)?),
                FieldOp::Divide => {
                    let (l, r) = (as_number(&current)?, as_number(&operand)?);
                    if r == 0.0 {
                        Value::Null
                    } else {
                        Value::Number(l / r)
                    }
                }
            };
            record.insert(k.clone(), v);
        }
        Ok(Value::Object(record))
    }
}
