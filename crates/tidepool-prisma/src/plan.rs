//! Typed query plans (the `plan` of a `/query` request), as compiled by Prisma 7.
//!
//! The wire format is the verbose one Prisma 7.10 sends: every node is `{"type": …, "args": …}`
//! (see the node catalogue in the crate docs). The private `plan_parse` module turns the JSON into these
//! types, rejecting unknown node types and malformed arguments up front, so evaluation never
//! meets a shape it does not understand.

use indexmap::IndexMap;

use crate::json::Value;

/// A plan node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Value(PValue),
    Seq(Vec<Node>),
    Get(String),
    Let { bindings: Vec<(String, Node)>, expr: Box<Node> },
    GetFirstNonEmpty(Vec<String>),
    Concat(Vec<Node>),
    Sum(Vec<Node>),
    Reverse(Box<Node>),
    Unique(Box<Node>),
    Required(Box<Node>),
    MapField { field: String, records: Box<Node> },
    Join { parent: Box<Node>, children: Vec<JoinExpr>, can_assume_strict_equality: bool },
    DataMap { expr: Box<Node>, structure: ResultNode, enums: Enums },
    Validate { expr: Box<Node>, rules: Vec<DataRule>, error_identifier: String, context: Value },
    If { value: Box<Node>, rule: DataRule, then: Box<Node>, otherwise: Box<Node> },
    Unit,
    Diff { from: Box<Node>, to: Box<Node>, fields: Vec<String> },
    InitializeRecord { expr: Box<Node>, fields: IndexMap<String, FieldInitializer> },
    MapRecord { expr: Box<Node>, fields: IndexMap<String, FieldOperation> },
    Process { expr: Box<Node>, operations: InMemoryOps },
    Query(DbQuery),
    Execute(DbQuery),
    Transaction(Box<Node>),
}

/// `enums` of a `dataMap`: enum name → database value → Prisma value.
pub type Enums = IndexMap<String, IndexMap<String, String>>;

/// A value that may contain placeholders or generator calls.
#[derive(Debug, Clone, PartialEq)]
pub enum PValue {
    /// A literal (contains no placeholder or generator at any array level).
    Literal(Value),
    /// `{"prisma__type":"param","prisma__value":{"name","type"}}`.
    Placeholder { name: String, ty: String },
    /// `{"prisma__type":"generatorCall","prisma__value":{"name","args"}}`.
    Generator { name: String, args: Vec<PValue> },
    /// An array with at least one element that needs evaluation.
    List(Vec<PValue>),
}

/// One child of a `join`.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinExpr {
    pub child: Node,
    /// `[parentField, childField]` pairs.
    pub on: Vec<(String, String)>,
    pub parent_field: String,
    pub is_relation_unique: bool,
}

/// A database statement.
#[derive(Debug, Clone, PartialEq)]
pub enum DbQuery {
    Raw { sql: String, args: Vec<PValue>, arg_types: Vec<ArgType> },
    Template(Template),
}

impl DbQuery {
    pub fn is_raw(&self) -> bool {
        matches!(self, DbQuery::Raw { .. })
    }
}

/// A `templateSql` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub fragments: Vec<Fragment>,
    pub placeholder: PlaceholderFormat,
    pub args: Vec<PValue>,
    pub arg_types: Vec<DynArgType>,
    pub chunkable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderFormat {
    pub prefix: String,
    pub has_numbering: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    StringChunk(String),
    Parameter,
    ParameterTuple { item_prefix: String, item_separator: String, item_suffix: String },
    ParameterTupleList { item_prefix: String, item_separator: String, item_suffix: String, group_separator: String },
}

/// `argTypes` entry of a template: one type, or the element types of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynArgType {
    Single(ArgType),
    Tuple(Vec<ArgType>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgType {
    pub arity: Arity,
    pub scalar: ScalarType,
    pub db_type: Option<String>,
}

impl ArgType {
    pub fn unknown() -> Self {
        ArgType { arity: Arity::Scalar, scalar: ScalarType::Unknown, db_type: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Scalar,
    List,
}

/// `scalarType` of an argument; unrecognised names are treated as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    String,
    Int,
    BigInt,
    Float,
    Decimal,
    Boolean,
    Enum,
    Uuid,
    Json,
    DateTime,
    Bytes,
    Unknown,
}

impl ScalarType {
    pub fn parse(s: &str) -> Self {
        match s {
            "string" | "s" => ScalarType::String,
            "int" | "i" => ScalarType::Int,
            "bigint" | "I" => ScalarType::BigInt,
            "float" | "f" => ScalarType::Float,
            "decimal" | "d" => ScalarType::Decimal,
            "boolean" | "b" => ScalarType::Boolean,
            "enum" | "e" => ScalarType::Enum,
            "uuid" | "u" => ScalarType::Uuid,
            "json" | "j" => ScalarType::Json,
            "datetime" | "D" => ScalarType::DateTime,
            "bytes" | "B" => ScalarType::Bytes,
            _ => ScalarType::Unknown,
        }
    }
}

/// Shape of a `dataMap` result.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultNode {
    AffectedRows,
    Object { fields: IndexMap<String, ResultNode>, serialized_name: Option<String>, skip_nulls: bool },
    Field { db_name: String, field_type: FieldType },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    pub is_list: bool,
    pub kind: FieldKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Int,
    BigInt,
    Float,
    Boolean,
    Json,
    Object,
    DateTime,
    Decimal,
    Unsupported,
    Enum(String),
    Bytes(BytesEncoding),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesEncoding {
    Array,
    Base64,
    Hex,
}

/// A rule tested by `validate` and `if`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataRule {
    RowCountEq(f64),
    RowCountNeq(f64),
    AffectedRowCountEq(f64),
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldInitializer {
    Value(PValue),
    LastInsertId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Set,
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldOperation {
    pub op: FieldOp,
    pub value: PValue,
}

/// `process` operations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InMemoryOps {
    pub pagination: Option<Pagination>,
    pub distinct: Option<Vec<String>>,
    pub reverse: bool,
    pub linking_fields: Option<Vec<String>>,
    pub nested: IndexMap<String, InMemoryOps>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pagination {
    /// Cursor values may be placeholders; evaluated before processing.
    pub cursor: Option<IndexMap<String, PValue>>,
    pub take: Option<f64>,
    pub skip: Option<f64>,
}
