//! Maps the wasm-bindgen import names of one query-compiler build to their meaning.
//!
//! wasm-bindgen names imports `__wbg_<fn>_<hash>`; the hash changes with every build and five
//! different constructors are all called `__wbg_new_<hash>`. The `_bg.js` glue shipped next to the
//! `.wasm` holds each import's body, so the meaning is read from there rather than pinned by hash.

use std::collections::HashMap;

/// What one import does, in JavaScript terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Import {
    ErrorNew,
    NumberOf,
    StringOf,
    BooleanGet,
    DebugString,
    In,
    IsObject,
    IsString,
    IsUndefined,
    LooseEq,
    NumberGet,
    StringGet,
    Throw,
    Entries,
    GetTime,
    GetIndex,
    GetKey,
    InstanceofArrayBuffer,
    InstanceofUint8Array,
    IsSafeInteger,
    Length,
    NewDate,
    NewObject,
    NewUint8Array,
    NewMap,
    NewArray,
    CopyBytesOut,
    SetKey,
    MapSet,
    SetIndex,
    SetPanicMessage,
    CastString,
    CastU64,
    CastI64,
    CastF64,
    InitExternrefTable,
}

/// Body fragments that identify each import (checked in this order; first match wins).
const PATTERNS: &[(&str, Import)] = &[
    ("__wbindgen_init_externref_table", Import::InitExternrefTable),
    ("`Ref(String) -> Externref`", Import::CastString),
    ("`U64 -> Externref`", Import::CastU64),
    ("`I64 -> Externref`", Import::CastI64),
    ("`F64 -> Externref`", Import::CastF64),
    ("PRISMA_WASM_PANIC_REGISTRY.set_message", Import::SetPanicMessage),
    ("Uint8Array.prototype.set.call", Import::CopyBytesOut),
    ("throw new Error(getStringFromWasm0", Import::Throw),
    ("= Error(getStringFromWasm0", Import::ErrorNew),
    ("Number.isSafeInteger(arg0)", Import::IsSafeInteger),
    ("= Number(arg0)", Import::NumberOf),
    ("= String(arg1)", Import::StringOf),
    ("typeof(v) === 'boolean'", Import::BooleanGet),
    ("debugString(arg1)", Import::DebugString),
    ("arg0 in arg1", Import::In),
    ("typeof(val) === 'object'", Import::IsObject),
    ("typeof(arg0) === 'string'", Import::IsString),
    ("arg0 === undefined", Import::IsUndefined),
    ("arg0 == arg1", Import::LooseEq),
    ("typeof(obj) === 'number'", Import::NumberGet),
    ("typeof(obj) === 'string'", Import::StringGet),
    ("Object.entries(arg0)", Import::Entries),
    ("arg0.getTime()", Import::GetTime),
    ("arg0[arg1 >>> 0] = arg2", Import::SetIndex),
    ("arg0[arg1] = arg2", Import::SetKey),
    ("arg0.set(arg1, arg2)", Import::MapSet),
    ("= arg0[arg1 >>> 0]", Import::GetIndex),
    ("= arg0[arg1]", Import::GetKey),
    ("instanceof ArrayBuffer", Import::InstanceofArrayBuffer),
    ("instanceof Uint8Array", Import::InstanceofUint8Array),
    ("= arg0.length", Import::Length),
    ("new Date()", Import::NewDate),
    ("new Object()", Import::NewObject),
    ("new Uint8Array(arg0)", Import::NewUint8Array),
    ("new Map()", Import::NewMap),
    ("new Array()", Import::NewArray),
];

/// Reads `export function NAME(...) { body }` items out of the glue and classifies each.
/// Functions the table does not know are left out; the linker reports them if the WASM imports them.
pub(crate) fn classify(glue: &str) -> HashMap<String, Import> {
    let mut out = HashMap::new();
    // ES-module glue (`export function NAME(…) {…}`) and CommonJS glue
    // (`exports.NAME = function(…) {…};`, as in prisma-schema-wasm).
    for (intro, name_end, next) in [("export function ", "(", "\nexport "), ("exports.", " = function", "\nexports.")] {
        let mut rest = glue;
        while let Some(at) = rest.find(intro) {
            let after = &rest[at + intro.len()..];
            let Some(end) = after.find(name_end) else { break };
            let name = after[..end].trim().to_string();
            // The body runs to the next top-level export (the glue is flat: one function after another).
            let body_end = after.find(next).unwrap_or(after.len());
            let body = &after[..body_end];
            let probe = format!("{name} {body}");
            if !name.contains(char::is_whitespace) {
                if let Some((_, kind)) = PATTERNS.iter().find(|(p, _)| probe.contains(p)) {
                    out.entry(name).or_insert(*kind);
                }
            }
            rest = &after[body_end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_with_the_same_name_are_told_apart_by_body() {
        let glue = "export function __wbg_new_aa() {\n    const ret = new Map();\n    return ret;\n};\n\
                    export function __wbg_new_bb() {\n    const ret = new Object();\n    return ret;\n};\n\
                    export function __wbg_get_cc(arg0, arg1) {\n    const ret = arg0[arg1 >>> 0];\n    return ret;\n};\n\
                    export function __wbg_set_dd(arg0, arg1, arg2) {\n    arg0[arg1 >>> 0] = arg2;\n};\n";
        let m = classify(glue);
        assert_eq!(m["__wbg_new_aa"], Import::NewMap);
        assert_eq!(m["__wbg_new_bb"], Import::NewObject);
        assert_eq!(m["__wbg_get_cc"], Import::GetIndex);
        assert_eq!(m["__wbg_set_dd"], Import::SetIndex);
    }
}
