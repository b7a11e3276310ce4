//! Which PostgreSQL type OIDs change how a value is written in JSON mode.
//!
//! Neon's proxy converts only a handful of types (`bool`, `int2`, `int4`, `float4`, `float8`,
//! `json`, `jsonb`) and arrays of any type; every other value is sent as its text. This module maps
//! an OID to that decision. Array OIDs are the built-in ones from `pg_catalog.pg_type`
//! (`typcategory = 'A'`), checked against PostgreSQL 15.

/// Type OIDs this crate refers to by name.
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int2vector` (space-separated text, not an array literal)
    pub const INT2VECTOR: u32 = 22;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oidvector` (space-separated text, not an array literal)
    pub const OIDVECTOR: u32 = 30;
    /// `json`
    pub const JSON: u32 = 114;
    /// `box` (its arrays use `;` as the delimiter)
    pub const BOX: u32 = 603;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time`
    pub const TIME: u32 = 1083;
    /// `timestamp`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
    /// `int4[]`
    pub const INT4_ARRAY: u32 = 1007;
    /// `text[]`
    pub const TEXT_ARRAY: u32 = 1009;
}

/// How one scalar value is written in JSON mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// `t` → `true`, anything else → `false`.
    Bool,
    /// Parsed as `i32`, written as a JSON number.
    Int,
    /// Parsed as `f64`; finite → number, otherwise the text as a string.
    Float,
    /// The text is JSON already and is spliced in.
    Json,
    /// The text as a JSON string.
    Text,
}

/// How one column is written in JSON mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conversion {
    Scalar(Scalar),
    /// An array literal whose elements use `element`, separated by `delimiter`.
    Array {
        element: Scalar,
        delimiter: char,
    },
}

pub(crate) fn scalar_for(type_oid: u32) -> Scalar {
    match type_oid {
        oid::BOOL => Scalar::Bool,
        oid::INT2 | oid::INT4 => Scalar::Int,
        oid::FLOAT4 | oid::FLOAT8 => Scalar::Float,
        oid::JSON | oid::JSONB => Scalar::Json,
        _ => Scalar::Text,
    }
}

pub(crate) fn conversion_for(type_oid: u32) -> Conversion {
    match array_element(type_oid) {
        Some(element) => Conversion::Array { element: scalar_for(element), delimiter: if element == oid::BOX { ';' } else { ',' } },
        None => Conversion::Scalar(scalar_for(type_oid)),
    }
}

/// The element type of a built-in array type, `None` for anything else.
///
/// `int2vector` and `oidvector` are left out on purpose: PostgreSQL prints them space-separated,
/// not as `{…}` literals, so they are sent as text.
pub fn array_element(type_oid: u32) -> Option<u32> {
    let element = match type_oid {
        143 => 142,   // xml
        199 => 114,   // json
        271 => 5069,  // xid8
        629 => 628,   // line
        651 => 650,   // cidr
        719 => 718,   // circle
        775 => 774,   // macaddr8
        791 => 790,   // money
        1000 => 16,   // bool
        1001 => 17,   // bytea
        1002 => 18,   // char
        1003 => 19,   // name
        1005 => 21,   // int2
        1006 => 22,   // int2vector
        1007 => 23,   // int4
        1008 => 24,   // regproc
        1009 => 25,   // text
        1010 => 27,   // tid
        1011 => 28,   // xid
        1012 => 29,   // cid
        1013 => 30,   // oidvector
        1014 => 1042, // bpchar
        1015 => 1043, // varchar
        1016 => 20,   // int8
        1017 => 600,  // point
        1018 => 601,  // lseg
        1019 => 602,  // path
        1020 => 603,  // box
        1021 => 700,  // float4
        1022 => 701,  // float8
        1027 => 604,  // polygon
        1028 => 26,   // oid
        1034 => 1033, // aclitem
        1040 => 829,  // macaddr
        1041 => 869,  // inet
        1115 => 1114, // timestamp
        1182 => 1082, // date
        1183 => 1083, // time
        1185 => 1184, // timestamptz
        1187 => 1186, // interval
        1231 => 1700, // numeric
        1263 => 2275, // cstring
        1270 => 1266, // timetz
        1561 => 1560, // bit
        1563 => 1562, // varbit
        2201 => 1790, // refcursor
        2207 => 2202, // regprocedure
        2208 => 2203, // regoper
        2209 => 2204, // regoperator
        2210 => 2205, // regclass
        2211 => 2206, // regtype
        2287 => 2249, // record
        2949 => 2970, // txid_snapshot
        2951 => 2950, // uuid
        3221 => 3220, // pg_lsn
        3643 => 3614, // tsvector
        3644 => 3642, // gtsvector
        3645 => 3615, // tsquery
        3735 => 3734, // regconfig
        3770 => 3769, // regdictionary
        3807 => 3802, // jsonb
        3905 => 3904, // int4range
        3907 => 3906, // numrange
        3909 => 3908, // tsrange
        3911 => 3910, // tstzrange
        3913 => 3912, // daterange
        3927 => 3926, // int8range
        4073 => 4072, // jsonpath
        4090 => 4089, // regnamespace
        4097 => 4096, // regrole
        4192 => 4191, // regcollation
        5039 => 5038, // pg_snapshot
        6150 => 4451, // int4multirange
        6151 => 4532, // nummultirange
        6152 => 4533, // tsmultirange
        6153 => 4534, // tstzmultirange
        6155 => 4535, // datemultirange
        6157 => 4536, // int8multirange
        _ => return None,
    };
    Some(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(conversion_for(oid::BOOL), Conversion::Scalar(Scalar::Bool));
        assert_eq!(conversion_for(oid::INT2), Conversion::Scalar(Scalar::Int));
        assert_eq!(conversion_for(oid::INT4), Conversion::Scalar(Scalar::Int));
        assert_eq!(conversion_for(oid::INT8), Conversion::Scalar(Scalar::Text));
        assert_eq!(conversion_for(oid::NUMERIC), Conversion::Scalar(Scalar::Text));
        assert_eq!(conversion_for(oid::FLOAT4), Conversion::Scalar(Scalar::Float));
        assert_eq!(conversion_for(oid::JSONB), Conversion::Scalar(Scalar::Json));
        assert_eq!(conversion_for(999_999), Conversion::Scalar(Scalar::Text));
        assert_eq!(conversion_for(oid::INT2VECTOR), Conversion::Scalar(Scalar::Text));
        assert_eq!(conversion_for(oid::OIDVECTOR), Conversion::Scalar(Scalar::Text));
    }

    #[test]
    fn arrays() {
        assert_eq!(conversion_for(oid::INT4_ARRAY), Conversion::Array { element: Scalar::Int, delimiter: ',' });
        assert_eq!(conversion_for(3807), Conversion::Array { element: Scalar::Json, delimiter: ',' });
        assert_eq!(conversion_for(1016), Conversion::Array { element: Scalar::Text, delimiter: ',' });
        assert_eq!(conversion_for(1020), Conversion::Array { element: Scalar::Text, delimiter: ';' });
        // int2vector[] is a real array of (space-separated) int2vector values.
        assert_eq!(array_element(1006), Some(oid::INT2VECTOR));
    }
}
