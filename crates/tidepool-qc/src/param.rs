//! Request parameterization: replaces the literal values of a JSON-protocol request (Prisma 5/6
//! `/graphql` body) by `{"$type":"Param"}` placeholders where the schema's [`ParamGraph`] allows,
//! as Prisma 7's client does before it compiles, so one compiled plan serves every request of the
//! same shape. The placeholders' values come back as the `params` map the plan interpreter takes.
//!
//! Where a value's kind does not match what the position accepts (or the rule needs JavaScript
//! conversions this host does not model, e.g. a `Json` position given an object), the literal is
//! left in place: the plan is still right, only less widely shared. Recursion follows the request,
//! whose depth [`crate::ordered`] bounds while parsing; [`MAX_DEPTH`] bounds it again here.

use crate::graph::{flag, scalar, InputEdge, OutputEdge, ParamGraph};
use crate::ordered::J;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Nesting beyond which values are left literal.
pub const MAX_DEPTH: usize = 160;

/// A parameterized request: the text to compile (and cache by) and its placeholder values.
#[derive(Debug)]
pub struct Parameterized {
    pub request: String,
    pub params: Map<String, Value>,
}

/// Parameterizes a single query (`{"modelName","action","query"}`) or a `{"batch":[…]}`.
/// `None`: the request is not a JSON object (the compiler will say what is wrong with it).
pub fn parameterize(graph: &ParamGraph, request: &J) -> Option<Parameterized> {
    let J::Obj(top) = request else { return None };
    let mut p = Params { graph, values: Map::new(), names: HashMap::new() };
    let out = match request.get("batch") {
        Some(J::Arr(items)) => {
            let batch = J::Arr(items.iter().map(|q| p.operation(q)).collect());
            replaced(top, "batch", batch)
        }
        _ => p.operation(request),
    };
    Some(Parameterized { request: out.to_json_string(), params: p.values })
}

/// A copy of object `m` whose `key` (unique: parsing keeps one of each) holds `value`.
fn replaced(m: &[(String, J)], key: &str, value: J) -> J {
    let mut value = Some(value);
    J::Obj(m.iter().map(|(k, v)| (k.clone(), if k == key { value.take().unwrap_or_else(|| v.clone()) } else { v.clone() })).collect())
}

struct Params<'g> {
    graph: &'g ParamGraph,
    values: Map<String, Value>,
    /// `"<type>:<value JSON>"` → placeholder name: equal values share one placeholder.
    names: HashMap<String, String>,
}

/// The placeholder's type: `{"type":"Int"}` or `{"type":"List","inner":{…}}`.
#[derive(Clone)]
enum PType {
    Named(&'static str),
    List(Box<PType>),
}

impl PType {
    fn label(&self) -> String {
        match self {
            PType::Named(n) => (*n).to_owned(),
            PType::List(inner) => format!("List<{}>", inner.label()),
        }
    }
    fn fields(&self, out: &mut Vec<(String, J)>) {
        match self {
            PType::Named(n) => out.push(("type".into(), J::Str((*n).into()))),
            PType::List(inner) => {
                out.push(("type".into(), J::Str("List".into())));
                let mut i = Vec::new();
                inner.fields(&mut i);
                out.push(("inner".into(), J::Obj(i)));
            }
        }
    }
}

const TAGGED: &[&str] = &["DateTime", "Decimal", "BigInt", "Bytes", "Json", "Raw"];

enum Kind<'a> {
    Null,
    Primitive(&'a J),
    Tagged(&'a str, &'a J),
    Structural,
    Array(&'a [J]),
    Object,
}

fn kind(v: &J) -> Kind<'_> {
    match v {
        J::Null => Kind::Null,
        J::Bool(_) | J::Num(_) | J::Str(_) => Kind::Primitive(v),
        J::Arr(a) => Kind::Array(a),
        J::Obj(_) => match v.get("$type") {
            Some(J::Str(t)) if TAGGED.contains(&t.as_str()) => Kind::Tagged(t, v.get("value").unwrap_or(&J::Null)),
            Some(J::Str(_)) => Kind::Structural,
            _ => Kind::Object,
        },
    }
}

/// The placeholder type of a primitive (JavaScript's view of numbers).
fn primitive_type(v: &J) -> Option<PType> {
    Some(PType::Named(match v {
        J::Bool(_) => "Boolean",
        J::Str(_) => "String",
        J::Num(n) => {
            let f = n.as_f64()?;
            if f.is_finite() && f.fract() == 0.0 {
                if (-(2f64.powi(31))..=2f64.powi(31) - 1.0).contains(&f) {
                    "Int"
                } else {
                    "BigInt"
                }
            } else {
                "Float"
            }
        }
        _ => return None,
    }))
}

fn primitive_accepted(t: &PType, mask: u16) -> bool {
    match t {
        PType::Named("Boolean") => mask & scalar::BOOLEAN != 0,
        PType::Named("Int") => mask & (scalar::INT | scalar::BIG_INT | scalar::FLOAT) != 0,
        PType::Named("BigInt") => mask & scalar::BIG_INT != 0,
        PType::Named("Float") => mask & scalar::FLOAT != 0,
        PType::Named("String") => mask & scalar::STRING != 0,
        _ => false,
    }
}

fn tag_accepted(tag: &str, mask: u16) -> bool {
    let bit = match tag {
        "DateTime" => scalar::DATE_TIME,
        "Decimal" => scalar::DECIMAL,
        "BigInt" => scalar::BIG_INT,
        "Bytes" => scalar::BYTES,
        "Json" => scalar::JSON,
        _ => 0,
    };
    mask & bit != 0
}

fn tag_type(tag: &str) -> Option<PType> {
    Some(PType::Named(match tag {
        "BigInt" => "BigInt",
        "Bytes" => "Bytes",
        "DateTime" => "DateTime",
        "Json" => "Json",
        "Decimal" => "Float",
        _ => return None,
    }))
}

/// The common type of a list's items (numbers widen Int → BigInt → Float; mixed kinds → Any).
fn list_inner(items: &[J]) -> PType {
    let mut acc: Option<&'static str> = None;
    for it in items {
        let t = match kind(it) {
            Kind::Primitive(p) => primitive_type(p),
            Kind::Tagged(tag, _) => tag_type(tag),
            _ => None,
        };
        let Some(PType::Named(t)) = t else { return PType::Named("Any") };
        acc = Some(match acc {
            None => t,
            Some(a) if a == t => a,
            Some(a) => {
                let rank = |x: &str| match x {
                    "Int" => Some(0),
                    "BigInt" => Some(1),
                    "Float" => Some(2),
                    _ => None,
                };
                match (rank(a), rank(t)) {
                    (Some(x), Some(y)) => {
                        if x >= y {
                            a
                        } else {
                            t
                        }
                    }
                    _ => return PType::Named("Any"),
                }
            }
        });
    }
    PType::Named(acc.unwrap_or("Any"))
}

impl Params<'_> {
    fn operation(&mut self, op: &J) -> J {
        let (Some(action), Some(query)) = (op.get("action").and_then(J::as_str), op.get("query")) else { return op.clone() };
        let key = match op.get("modelName").and_then(J::as_str) {
            Some(m) => format!("{m}.{action}"),
            None => action.to_owned(),
        };
        let root = self.graph.roots.get(&key).copied().unwrap_or_default();
        let q = self.field_selection(query, root, 0);
        let J::Obj(m) = op else { return op.clone() };
        replaced(m, "query", q)
    }

    fn field_selection(&mut self, q: &J, edge: OutputEdge, depth: usize) -> J {
        let J::Obj(m) = q else { return q.clone() };
        if depth > MAX_DEPTH {
            return q.clone();
        }
        let raw = matches!(q.get("arguments").and_then(|a| a.get("$type")), Some(J::Str(t)) if t == "Raw");
        J::Obj(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "arguments" if !raw => self.object(v, edge.args, depth + 1),
                        "selection" => self.selection(v, edge.output, depth + 1),
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    fn selection(&mut self, sel: &J, node: Option<usize>, depth: usize) -> J {
        let (J::Obj(m), Some(node)) = (sel, node) else { return sel.clone() };
        if depth > MAX_DEPTH {
            return sel.clone();
        }
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            if k == "$scalars" || k == "$composites" || matches!(v, J::Bool(_)) {
                out.push((k.clone(), v.clone()));
                continue;
            }
            let Some(edge) = self.graph.outputs.get(node).and_then(|n| n.get(k)).copied() else {
                out.push((k.clone(), v.clone()));
                continue;
            };
            // The nested selection's own keys stay as sent (anything unknown is the compiler's to refuse).
            let J::Obj(fields) = v else {
                out.push((k.clone(), v.clone()));
                continue;
            };
            let f: Vec<(String, J)> = fields
                .iter()
                .map(|(fk, fv)| {
                    let fv = match fk.as_str() {
                        "selection" => self.selection(fv, edge.output, depth + 1),
                        "arguments" => self.object(fv, edge.args, depth + 1),
                        _ => fv.clone(),
                    };
                    (fk.clone(), fv)
                })
                .collect();
            out.push((k.clone(), J::Obj(f)));
        }
        J::Obj(out)
    }

    /// An argument object whose fields are looked up in input node `node`.
    fn object(&mut self, v: &J, node: Option<usize>, depth: usize) -> J {
        let (J::Obj(m), Some(node)) = (v, node) else { return v.clone() };
        if depth > MAX_DEPTH {
            return v.clone();
        }
        let mut out = Vec::with_capacity(m.len());
        for (k, x) in m {
            let e = self.graph.inputs.get(node).and_then(|n| n.get(k)).cloned();
            let y = match e {
                Some(e) => self.value(x, &e, depth + 1),
                None => x.clone(),
            };
            out.push((k.clone(), y));
        }
        J::Obj(out)
    }

    fn value(&mut self, v: &J, e: &InputEdge, depth: usize) -> J {
        match kind(v) {
            Kind::Null | Kind::Structural => v.clone(),
            Kind::Primitive(p) => self.primitive(p, e),
            Kind::Tagged(tag, value) => {
                if e.flags & flag::PARAM_SCALAR == 0 || !tag_accepted(tag, e.scalar_mask) {
                    return v.clone();
                }
                match tag_type(tag) {
                    Some(t) => self.placeholder(value.to_value(), t),
                    None => v.clone(),
                }
            }
            Kind::Array(items) => self.list(items, v, e, depth),
            Kind::Object => {
                if e.flags & flag::OBJECT != 0 && e.child.is_some() {
                    return self.object(v, e.child, depth);
                }
                v.clone()
            }
        }
    }

    fn enum_db_name(&self, e: &InputEdge, name: &str) -> Option<&str> {
        e.enum_id.and_then(|i| self.graph.enums.get(i)).and_then(|m| m.get(name)).map(String::as_str)
    }

    fn primitive(&mut self, p: &J, e: &InputEdge) -> J {
        if e.flags & flag::PARAM_ENUM != 0 {
            if let Some(db) = p.as_str().and_then(|s| self.enum_db_name(e, s)) {
                let db = db.to_owned();
                return self.placeholder(Value::String(db), PType::Named("Enum"));
            }
        }
        if e.flags & flag::PARAM_SCALAR == 0 || e.scalar_mask == 0 {
            return p.clone();
        }
        match primitive_type(p) {
            Some(t) if primitive_accepted(&t, e.scalar_mask) => {
                let value = if e.scalar_mask & scalar::JSON != 0 { Value::String(p.to_json_string()) } else { p.to_value() };
                self.placeholder(value, t)
            }
            _ => p.clone(),
        }
    }

    fn list(&mut self, items: &[J], original: &J, e: &InputEdge, depth: usize) -> J {
        if e.flags & flag::PARAM_SCALAR != 0 && e.scalar_mask & scalar::JSON != 0 {
            // Prisma serializes the list as one JSON value here; left literal (see the module note).
            return original.clone();
        }
        if e.flags & flag::PARAM_ENUM != 0 && e.enum_id.is_some() && items.iter().all(|i| i.as_str().is_some_and(|s| self.enum_db_name(e, s).is_some())) {
            return self.placeholder(original.to_value(), PType::List(Box::new(PType::Named("Enum"))));
        }
        let mask = e.scalar_mask;
        let scalar_item = |i: &J| match kind(i) {
            Kind::Primitive(p) => mask != 0 && primitive_type(p).is_some_and(|t| primitive_accepted(&t, mask)),
            Kind::Tagged(tag, _) => mask != 0 && tag_accepted(tag, mask),
            _ => false,
        };
        if e.flags & flag::PARAM_LIST_SCALAR != 0 && !items.is_empty() && items.iter().all(scalar_item) {
            let values = items
                .iter()
                .map(|i| match kind(i) {
                    Kind::Tagged(_, v) => v.to_value(),
                    _ => i.to_value(),
                })
                .collect();
            return self.placeholder(Value::Array(values), PType::List(Box::new(list_inner(items))));
        }
        if e.flags & flag::LIST_OBJECT != 0 && e.child.is_some() {
            return J::Arr(
                items.iter().map(|i| if matches!(i, J::Obj(_)) && i.get("$type").is_none() { self.object(i, e.child, depth + 1) } else { i.clone() }).collect(),
            );
        }
        original.clone()
    }

    fn placeholder(&mut self, value: Value, t: PType) -> J {
        let key = format!("{}:{}", t.label(), value);
        let name = match self.names.get(&key) {
            Some(n) => n.clone(),
            None => {
                let n = format!("%{}", self.names.len() + 1);
                self.names.insert(key, n.clone());
                self.values.insert(n.clone(), value);
                n
            }
        };
        let mut fields = vec![("name".to_owned(), J::Str(name))];
        t.fields(&mut fields);
        J::Obj(vec![("$type".into(), J::Str("Param".into())), ("value".into(), J::Obj(fields))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph() -> ParamGraph {
        ParamGraph::from_dmmf(include_str!("testdata/mini_dmmf.json")).expect("mini DMMF")
    }

    /// `req` as text: placeholders are numbered in the request's own key order.
    fn run(req: &str) -> (Value, Value) {
        let j: J = serde_json::from_str(req).unwrap();
        let out = parameterize(&graph(), &j).unwrap();
        (serde_json::from_str(&out.request).unwrap(), Value::Object(out.params))
    }

    fn ph(name: &str, ty: &str) -> Value {
        json!({"$type":"Param","value":{"name":name,"type":ty}})
    }

    #[test]
    fn scalars_enums_and_tagged_values_become_placeholders_per_the_graph() {
        let (out, params) = run(r#"{"modelName":"Thing","action":"findMany","query":{"arguments":{
            "where":{"id":5,"name":{"contains":"x","mode":"insensitive"},"kind":"B","kinds":["A","B"],"data":3,
                     "big":{"$type":"BigInt","value":"9"},"AND":[{"id":7}],"ref":{"$type":"FieldRef","value":{"_ref":"id"}}},
            "orderBy":[{"id":"desc"}],"take":3},"selection":{"$scalars":true}}}"#);
        let w = &out["query"]["arguments"]["where"];
        assert_eq!(w["id"], ph("%1", "Int"));
        assert_eq!(w["name"], json!({"contains":ph("%2","String"),"mode":"insensitive"}));
        assert_eq!(w["kind"], ph("%3", "Enum"));
        assert_eq!(w["kinds"], json!(["A", "B"]), "a list-of-enum field without ParamEnum stays literal");
        assert_eq!(w["data"], json!(3), "an Int is not accepted where only Json is");
        assert_eq!(w["big"], ph("%4", "BigInt"));
        assert_eq!(w["AND"], json!([{"id":ph("%5","Int")}]));
        assert_eq!(w["ref"], json!({"$type":"FieldRef","value":{"_ref":"id"}}), "structural values are kept");
        assert_eq!(out["query"]["arguments"]["orderBy"], json!([{"id":"desc"}]));
        assert_eq!(out["query"]["arguments"]["take"], json!(3));
        assert_eq!(params, json!({"%1":5,"%2":"x","%3":"b","%4":"9","%5":7}));
    }

    #[test]
    fn lists_unions_and_nested_selections() {
        let (out, params) = run(r#"{"modelName":"Thing","action":"createOne","query":{
            "arguments":{"data":{"id":1,"tags":["a","b"],"parts":[{"label":"q","id":4}]}},
            "selection":{"id":true}}}"#);
        let d = &out["query"]["arguments"]["data"];
        assert_eq!(d["id"], ph("%1", "Int"));
        assert_eq!(d["tags"], json!({"$type":"Param","value":{"name":"%2","type":"List","inner":{"type":"String"}}}));
        // The union of both part inputs: `id` is a parameter position in one of them.
        assert_eq!(d["parts"], json!([{"label":ph("%3","String"),"id":ph("%4","Int")}]));
        assert_eq!(params, json!({"%1":1,"%2":["a","b"],"%3":"q","%4":4}));

        let (out, params) = run(r#"{"modelName":"Thing","action":"findMany","query":{"arguments":{},
            "selection":{"$scalars":true,"parts":{"arguments":{"where":{"id":9}},"selection":{"id":true},"junk":1}}}}"#);
        assert_eq!(out["query"]["selection"]["parts"], json!({"selection":{"id":true},"arguments":{"where":{"id":ph("%1","Int")}},"junk":1}));
        assert_eq!(params, json!({"%1":9}));
    }

    #[test]
    fn equal_values_share_a_placeholder_and_models_without_scalars_have_no_root() {
        let (out, params) = run(r#"{"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"id":2,"AND":[{"id":2},{"id":2.5}]}}}}"#);
        assert_eq!(params, json!({"%1":2}));
        assert_eq!(out["query"]["arguments"]["where"]["AND"][1]["id"], json!(2.5), "a Float is not accepted where only Int is");
        let (out, params) = run(r#"{"modelName":"Link","action":"findMany","query":{"arguments":{"where":{"id":2}}}}"#);
        assert_eq!(out["query"]["arguments"]["where"]["id"], json!(2));
        assert_eq!(params, json!({}));
    }

    #[test]
    fn hostile_shapes_do_not_panic() {
        let g = graph();
        for text in [
            "[]",
            "1",
            "{}",
            r#"{"batch":7}"#,
            r#"{"batch":[1,{"action":3}]}"#,
            r#"{"action":"findMany","modelName":"Thing","query":5}"#,
            r#"{"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"id":{"$type":5}}},"selection":[1]}}"#,
        ] {
            let j: J = serde_json::from_str(text).unwrap();
            let _ = parameterize(&g, &j);
        }
        let deep =
            format!(r#"{{"modelName":"Thing","action":"findMany","query":{{"arguments":{{"where":{}{}}}}}}}"#, r#"{"AND":["#.repeat(60), r#"]}"#.repeat(60));
        let j: J = serde_json::from_str(&deep).unwrap();
        assert!(parameterize(&g, &j).is_some());
    }
}
