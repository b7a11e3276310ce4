//! The parameterization graph of one schema: which argument positions of a JSON-protocol request
//! may carry a placeholder instead of a literal, so that requests differing only in values share
//! one compiled plan. Built from the schema's DMMF (see [`crate::dmmf`]) by the same rules Prisma
//! 7's generator applies when it embeds `parameterizationSchema` in a client: a field is a scalar
//! position when the DMMF marks it `isParameterizable`, an enum position when it also takes an enum
//! of the datamodel, and an object position when it takes input objects (whose fields are then
//! followed). Built with work lists, not recursion: the schema is client-supplied.

use serde::Deserialize;
use std::collections::HashMap;

/// Edge flags (same meaning as the client runtime's).
pub(crate) mod flag {
    pub const PARAM_SCALAR: u8 = 1;
    pub const PARAM_ENUM: u8 = 2;
    pub const PARAM_LIST_SCALAR: u8 = 4;
    pub const PARAM_LIST_ENUM: u8 = 8;
    pub const LIST_OBJECT: u8 = 16;
    pub const OBJECT: u8 = 32;
}

/// Scalar kinds a position accepts.
pub(crate) mod scalar {
    pub const STRING: u16 = 1;
    pub const INT: u16 = 2;
    pub const BIG_INT: u16 = 4;
    pub const FLOAT: u16 = 8;
    pub const DECIMAL: u16 = 16;
    pub const BOOLEAN: u16 = 32;
    pub const DATE_TIME: u16 = 64;
    pub const JSON: u16 = 128;
    pub const BYTES: u16 = 256;
}

fn scalar_bit(name: &str) -> u16 {
    match name {
        "String" | "UUID" => scalar::STRING,
        "Int" => scalar::INT,
        "BigInt" => scalar::BIG_INT,
        "Float" => scalar::FLOAT,
        "Decimal" => scalar::DECIMAL,
        "Boolean" => scalar::BOOLEAN,
        "DateTime" => scalar::DATE_TIME,
        "Json" => scalar::JSON,
        "Bytes" => scalar::BYTES,
        _ => 0,
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct InputEdge {
    pub flags: u8,
    pub scalar_mask: u16,
    pub child: Option<usize>,
    /// Index into [`ParamGraph::enums`].
    pub enum_id: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutputEdge {
    pub args: Option<usize>,
    pub output: Option<usize>,
}

/// See the module note. Immutable once built; shared by all requests of a schema.
#[derive(Debug, Default)]
pub struct ParamGraph {
    pub(crate) inputs: Vec<HashMap<String, InputEdge>>,
    pub(crate) outputs: Vec<HashMap<String, OutputEdge>>,
    /// `"User.findUnique"` → (args node, output node).
    pub(crate) roots: HashMap<String, OutputEdge>,
    /// Enum value name → database name, per enum of the datamodel.
    pub(crate) enums: Vec<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Dmmf {
    datamodel: Datamodel,
    schema: Schema,
    mappings: Mappings,
}

#[derive(Deserialize)]
struct Datamodel {
    #[serde(default)]
    models: Vec<Model>,
    #[serde(default)]
    enums: Vec<EnumDef>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
    #[serde(default)]
    fields: Vec<ModelField>,
}

#[derive(Deserialize)]
struct ModelField {
    kind: String,
}

#[derive(Deserialize)]
struct EnumDef {
    name: String,
    #[serde(default)]
    values: Vec<EnumValue>,
}

#[derive(Deserialize)]
struct EnumValue {
    name: String,
    #[serde(rename = "dbName")]
    db_name: Option<String>,
}

#[derive(Deserialize)]
struct Schema {
    #[serde(rename = "inputObjectTypes")]
    inputs: Namespaced<InputType>,
    #[serde(rename = "outputObjectTypes")]
    outputs: Namespaced<OutputType>,
}

#[derive(Deserialize)]
struct Namespaced<T> {
    #[serde(default = "Vec::new")]
    prisma: Vec<T>,
    #[serde(default = "Vec::new")]
    model: Vec<T>,
}

#[derive(Deserialize)]
struct InputType {
    name: String,
    #[serde(default)]
    fields: Vec<InputField>,
}

#[derive(Deserialize)]
struct InputField {
    name: String,
    #[serde(rename = "inputTypes", default)]
    input_types: Vec<TypeRef>,
    #[serde(rename = "isParameterizable", default)]
    parameterizable: bool,
}

#[derive(Deserialize, Clone)]
struct TypeRef {
    #[serde(rename = "type")]
    ty: String,
    namespace: Option<String>,
    location: String,
    #[serde(rename = "isList", default)]
    is_list: bool,
}

impl TypeRef {
    fn key(&self) -> String {
        qualified(&self.ty, self.namespace.as_deref())
    }
}

#[derive(Deserialize)]
struct OutputType {
    name: String,
    #[serde(default)]
    fields: Vec<OutputField>,
}

#[derive(Deserialize)]
struct OutputField {
    name: String,
    #[serde(default)]
    args: Vec<InputField>,
    #[serde(rename = "outputType")]
    output_type: TypeRef,
}

#[derive(Deserialize)]
struct Mappings {
    #[serde(rename = "modelOperations", default)]
    model_operations: Vec<HashMap<String, serde_json::Value>>,
}

fn qualified(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_owned(),
    }
}

/// Root operations: (client action, DMMF mapping keys tried in order, request action name).
const ACTIONS: &[(&[&str], &str)] = &[
    (&["findUnique", "findSingle"], "findUnique"),
    (&["findUniqueOrThrow"], "findUniqueOrThrow"),
    (&["findFirst"], "findFirst"),
    (&["findFirstOrThrow"], "findFirstOrThrow"),
    (&["findMany"], "findMany"),
    (&["createOne", "createSingle", "create"], "createOne"),
    (&["createMany"], "createMany"),
    (&["createManyAndReturn"], "createManyAndReturn"),
    (&["updateOne", "updateSingle", "update"], "updateOne"),
    (&["updateMany"], "updateMany"),
    (&["updateManyAndReturn"], "updateManyAndReturn"),
    (&["upsertOne", "upsertSingle", "upsert"], "upsertOne"),
    (&["deleteOne", "deleteSingle", "delete"], "deleteOne"),
    (&["deleteMany"], "deleteMany"),
    (&["groupBy"], "groupBy"),
    (&["aggregate"], "aggregate"),
    (&["findRaw"], "findRaw"),
    (&["aggregateRaw"], "aggregateRaw"),
];

struct Builder<'a> {
    inputs_by_name: HashMap<String, &'a InputType>,
    outputs_by_name: HashMap<String, &'a OutputType>,
    enum_ids: HashMap<&'a str, usize>,
    input_memo: HashMap<String, Option<usize>>,
    union_memo: HashMap<String, usize>,
    output_memo: HashMap<String, Option<usize>>,
    pending_inputs: Vec<(usize, &'a [InputField])>,
    pending_unions: Vec<(usize, Vec<String>)>,
    pending_outputs: Vec<(usize, &'a OutputType)>,
    graph: ParamGraph,
}

impl ParamGraph {
    /// Builds the graph from DMMF JSON text.
    pub fn from_dmmf(dmmf: &str) -> Result<ParamGraph, String> {
        let d: Dmmf = serde_json::from_str(dmmf).map_err(|e| format!("unexpected DMMF: {e}"))?;
        let mut b = Builder {
            inputs_by_name: HashMap::new(),
            outputs_by_name: HashMap::new(),
            enum_ids: HashMap::new(),
            input_memo: HashMap::new(),
            union_memo: HashMap::new(),
            output_memo: HashMap::new(),
            pending_inputs: Vec::new(),
            pending_unions: Vec::new(),
            pending_outputs: Vec::new(),
            graph: ParamGraph::default(),
        };
        for (ns, list) in [("prisma", &d.schema.inputs.prisma), ("model", &d.schema.inputs.model)] {
            for t in list {
                b.inputs_by_name.insert(qualified(&t.name, Some(ns)), t);
            }
        }
        for (ns, list) in [("prisma", &d.schema.outputs.prisma), ("model", &d.schema.outputs.model)] {
            for t in list {
                b.outputs_by_name.insert(qualified(&t.name, Some(ns)), t);
            }
        }
        for e in &d.datamodel.enums {
            b.enum_ids.insert(&e.name, b.graph.enums.len());
            b.graph.enums.push(e.values.iter().map(|v| (v.name.clone(), v.db_name.clone().unwrap_or_else(|| v.name.clone()))).collect());
        }
        let root_fields: Vec<&OutputField> =
            ["prisma.Query", "prisma.Mutation"].iter().filter_map(|n| b.outputs_by_name.get(*n)).flat_map(|t| t.fields.iter()).collect();
        for ops in &d.mappings.model_operations {
            let Some(model) = ops.get("model").and_then(|m| m.as_str()) else { continue };
            // Models made only of relations get no operations (as the generator does).
            if !d.datamodel.models.iter().any(|m| m.name == model && m.fields.iter().any(|f| f.kind != "object")) {
                continue;
            }
            for (keys, action) in ACTIONS {
                let Some(field_name) = keys.iter().find_map(|k| ops.get(*k).and_then(|v| v.as_str())) else { continue };
                let Some(field) = root_fields.iter().find(|f| f.name == field_name) else { continue };
                let args = b.args_node(&field.args);
                let output = if field.output_type.location == "outputObjectTypes" { b.output_node(&field.output_type.key()) } else { None };
                if args.is_some() || output.is_some() {
                    b.graph.roots.insert(format!("{model}.{action}"), OutputEdge { args, output });
                }
            }
        }
        b.drain();
        Ok(b.graph)
    }
}

impl<'a> Builder<'a> {
    fn drain(&mut self) {
        loop {
            if let Some((id, fields)) = self.pending_inputs.pop() {
                let edges = self.edges_of(fields.iter().map(|f| (f.name.as_str(), vec![f])));
                self.graph.inputs[id] = edges;
            } else if let Some((id, names)) = self.pending_unions.pop() {
                let mut by_name: Vec<(&'a str, Vec<&'a InputField>)> = Vec::new();
                for n in &names {
                    let Some(t) = self.inputs_by_name.get(n).copied() else { continue };
                    for f in &t.fields {
                        match by_name.iter_mut().find(|(k, _)| *k == f.name) {
                            Some((_, v)) => v.push(f),
                            None => by_name.push((&f.name, vec![f])),
                        }
                    }
                }
                let edges = self.edges_of(by_name.into_iter());
                self.graph.inputs[id] = edges;
            } else if let Some((id, t)) = self.pending_outputs.pop() {
                let mut edges = HashMap::new();
                for f in &t.fields {
                    let args = if f.args.is_empty() { None } else { self.args_node(&f.args) };
                    let output = if f.output_type.location == "outputObjectTypes" { self.output_node(&f.output_type.key()) } else { None };
                    if args.is_some() || output.is_some() {
                        edges.insert(f.name.clone(), OutputEdge { args, output });
                    }
                }
                self.graph.outputs[id] = edges;
            } else {
                return;
            }
        }
    }

    fn edges_of(&mut self, groups: impl Iterator<Item = (&'a str, Vec<&'a InputField>)>) -> HashMap<String, InputEdge> {
        let mut edges = HashMap::new();
        for (name, fields) in groups {
            if let Some(e) = self.edge(&fields) {
                edges.insert(name.to_owned(), e);
            }
        }
        edges
    }

    fn args_node(&mut self, args: &'a [InputField]) -> Option<usize> {
        let edges = self.edges_of(args.iter().map(|f| (f.name.as_str(), vec![f])));
        if edges.is_empty() {
            return None;
        }
        self.graph.inputs.push(edges);
        Some(self.graph.inputs.len() - 1)
    }

    fn input_node(&mut self, key: &str) -> Option<usize> {
        if let Some(n) = self.input_memo.get(key) {
            return *n;
        }
        let Some(t) = self.inputs_by_name.get(key).copied() else {
            self.input_memo.insert(key.to_owned(), None);
            return None;
        };
        self.graph.inputs.push(HashMap::new());
        let id = self.graph.inputs.len() - 1;
        self.input_memo.insert(key.to_owned(), Some(id));
        self.pending_inputs.push((id, &t.fields));
        Some(id)
    }

    fn union_node(&mut self, mut names: Vec<String>) -> usize {
        names.sort();
        let key = names.join("|");
        if let Some(n) = self.union_memo.get(&key) {
            return *n;
        }
        self.graph.inputs.push(HashMap::new());
        let id = self.graph.inputs.len() - 1;
        self.union_memo.insert(key, id);
        self.pending_unions.push((id, names));
        id
    }

    fn output_node(&mut self, key: &str) -> Option<usize> {
        if let Some(n) = self.output_memo.get(key) {
            return *n;
        }
        let Some(t) = self.outputs_by_name.get(key).copied() else {
            self.output_memo.insert(key.to_owned(), None);
            return None;
        };
        self.graph.outputs.push(HashMap::new());
        let id = self.graph.outputs.len() - 1;
        self.output_memo.insert(key.to_owned(), Some(id));
        self.pending_outputs.push((id, t));
        Some(id)
    }

    /// The edge for a field (or the same-named fields of a union), if it can carry anything.
    fn edge(&mut self, fields: &[&'a InputField]) -> Option<InputEdge> {
        let mut e = InputEdge::default();
        let mut objects: Vec<&TypeRef> = Vec::new();
        let mut enum_set = false;
        for f in fields {
            for t in &f.input_types {
                match t.location.as_str() {
                    "scalar" if f.parameterizable => {
                        e.scalar_mask |= scalar_bit(&t.ty);
                        e.flags |= if t.is_list { flag::PARAM_LIST_SCALAR } else { flag::PARAM_SCALAR };
                    }
                    "enumTypes" if f.parameterizable && !enum_set && t.namespace.as_deref() == Some("model") => {
                        enum_set = true;
                        e.enum_id = self.enum_ids.get(t.ty.as_str()).copied();
                        e.flags |= if t.is_list { flag::PARAM_LIST_ENUM } else { flag::PARAM_ENUM };
                    }
                    "inputObjectTypes" if !objects.iter().any(|o| o.ty == t.ty && o.namespace == t.namespace && o.is_list == t.is_list) => {
                        objects.push(t);
                    }
                    _ => {}
                }
            }
        }
        if !objects.is_empty() {
            if objects.iter().any(|o| o.is_list) {
                e.flags |= flag::LIST_OBJECT;
            }
            if objects.iter().any(|o| !o.is_list) {
                e.flags |= flag::OBJECT;
            }
            e.child = if objects.len() == 1 {
                let key = objects[0].key();
                self.input_node(&key)
            } else {
                Some(self.union_node(objects.iter().map(|o| o.key()).collect()))
            };
        }
        (e.flags != 0).then_some(e)
    }
}
