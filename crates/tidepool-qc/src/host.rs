//! The wasm-bindgen imports of the query compiler, implemented over the [`Arena`] of JS values.
//!
//! Semantics follow the `_bg.js` glue of the pinned build (see [`crate::glue`]); only the JS
//! behaviour the compiler's serde bridge relies on is modelled. No import does I/O.

use crate::glue::Import;
use crate::js::{Arena, JsVal, UNDEFINED};
use wasmi::{AsContext, AsContextMut, Caller, Error, ExternRef, Linker, Memory, Nullable, StoreLimits, TypedFunc};

/// The store data of one compiler instance.
pub(crate) struct HostState {
    pub(crate) arena: Arena,
    /// `handles[i]` is the externref wrapping arena slot `i`; reused across calls.
    handles: Vec<ExternRef>,
    pub(crate) panic_message: Option<String>,
    pub(crate) limits: StoreLimits,
    pub(crate) memory: Option<Memory>,
    pub(crate) malloc: Option<TypedFunc<(i32, i32), i32>>,
    pub(crate) table: Option<wasmi::Table>,
}

impl HostState {
    pub(crate) fn new(limits: StoreLimits, max_vals: usize) -> Self {
        Self { arena: Arena::new(max_vals), handles: Vec::new(), panic_message: None, limits, memory: None, malloc: None, table: None }
    }
}

type Ref = Nullable<ExternRef>;
type Cx<'a> = Caller<'a, HostState>;

/// The arena slot an externref stands for (`null` reads as `undefined`).
pub(crate) fn slot_of(cx: impl AsContext<Data = HostState>, r: Ref) -> u32 {
    match r {
        Nullable::Null => UNDEFINED,
        Nullable::Val(e) => e.data(cx.as_context()).downcast_ref::<u32>().copied().unwrap_or(UNDEFINED),
    }
}

/// The externref for an arena slot, creating handles up to it on first use.
pub(crate) fn ref_of(mut cx: impl AsContextMut<Data = HostState>, slot: u32) -> Ref {
    let mut ctx = cx.as_context_mut();
    while ctx.data().handles.len() <= slot as usize {
        let next = ctx.data().handles.len() as u32;
        let handle = ExternRef::new(&mut ctx, next);
        ctx.data_mut().handles.push(handle);
    }
    Nullable::Val(ctx.data().handles[slot as usize])
}

fn alloc(cx: &mut Cx<'_>, v: JsVal) -> Result<Ref, Error> {
    let slot = cx.data_mut().arena.alloc(v).map_err(Error::new)?;
    Ok(ref_of(cx, slot))
}

fn memory(cx: &Cx<'_>) -> Result<Memory, Error> {
    cx.data().memory.ok_or_else(|| Error::new("query compiler: memory not bound"))
}

pub(crate) fn read_str(cx: impl AsContext<Data = HostState>, mem: Memory, ptr: i32, len: i32) -> Result<String, Error> {
    let mut buf = vec![0u8; len as u32 as usize];
    mem.read(&cx, ptr as u32 as usize, &mut buf).map_err(|_| Error::new("query compiler: string out of bounds"))?;
    String::from_utf8(buf).map_err(|_| Error::new("query compiler: string is not UTF-8"))
}

/// Copies `s` into WASM memory with the module's own allocator; returns (ptr, len).
pub(crate) fn write_str(mut cx: impl AsContextMut<Data = HostState>, s: &str) -> Result<(i32, i32), Error> {
    let (mem, malloc) = {
        let ctx = cx.as_context();
        (ctx.data().memory, ctx.data().malloc)
    };
    let (mem, malloc) = mem.zip(malloc).ok_or_else(|| Error::new("query compiler: allocator not bound"))?;
    let len = i32::try_from(s.len()).map_err(|_| Error::new("query compiler: string too long"))?;
    let ptr = malloc.call(&mut cx, (len, 1))?;
    mem.write(&mut cx, ptr as u32 as usize, s.as_bytes()).map_err(|_| Error::new("query compiler: allocation out of bounds"))?;
    Ok((ptr, len))
}

fn write_i32(cx: &mut Cx<'_>, at: i32, v: i32) -> Result<(), Error> {
    let mem = memory(cx)?;
    mem.write(cx, at as u32 as usize, &v.to_le_bytes()).map_err(|_| Error::new("query compiler: write out of bounds"))
}

/// Writes a string return slot: `[ptr, len]` at `retptr`.
fn ret_str(cx: &mut Cx<'_>, retptr: i32, s: Option<String>) -> Result<(), Error> {
    let (ptr, len) = match s {
        Some(s) => write_str(&mut *cx, &s)?,
        None => (0, 0),
    };
    write_i32(cx, retptr + 4, len)?;
    write_i32(cx, retptr, ptr)
}

fn is_safe_integer(v: &JsVal) -> bool {
    matches!(v, JsVal::Num(n) if n.is_finite() && n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0)
}

fn debug_string(a: &Arena, slot: u32) -> String {
    match a.get(slot) {
        JsVal::Str(s) => format!("\"{s}\""),
        JsVal::Object(_) | JsVal::Array(_) | JsVal::Map(_) => a.to_json(slot).map(|v| v.to_string()).unwrap_or_else(|_| "Object".into()),
        _ => a.to_js_string(slot),
    }
}

/// Registers `name` as `kind` on the linker.
pub(crate) fn define(linker: &mut Linker<HostState>, module: &str, name: &str, kind: Import) -> Result<(), Error> {
    macro_rules! wrap {
        ($f:expr) => {{
            linker.func_wrap(module, name, $f)?;
        }};
    }
    match kind {
        Import::ErrorNew => wrap!(|mut cx: Cx<'_>, p: i32, l: i32| -> Result<Ref, Error> {
            let msg = read_str(&cx, memory(&cx)?, p, l)?;
            alloc(&mut cx, JsVal::Error(msg))
        }),
        Import::NumberOf => wrap!(|cx: Cx<'_>, a: Ref| -> f64 {
            let s = slot_of(&cx, a);
            cx.data().arena.to_number(s)
        }),
        Import::StringOf => wrap!(|mut cx: Cx<'_>, ret: i32, a: Ref| -> Result<(), Error> {
            let s = slot_of(&cx, a);
            let text = cx.data().arena.to_js_string(s);
            ret_str(&mut cx, ret, Some(text))
        }),
        Import::BooleanGet => wrap!(|cx: Cx<'_>, a: Ref| -> i32 {
            match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Bool(b) => i32::from(*b),
                _ => 0xFF_FFFF,
            }
        }),
        Import::DebugString => wrap!(|mut cx: Cx<'_>, ret: i32, a: Ref| -> Result<(), Error> {
            let s = slot_of(&cx, a);
            let text = debug_string(&cx.data().arena, s);
            ret_str(&mut cx, ret, Some(text))
        }),
        Import::In => wrap!(|cx: Cx<'_>, k: Ref, o: Ref| -> i32 {
            let (k, o) = (slot_of(&cx, k), slot_of(&cx, o));
            let a = &cx.data().arena;
            let key = a.to_js_string(k);
            let found = match a.get(o) {
                JsVal::Object(f) => f.iter().any(|(name, _)| *name == key),
                JsVal::Array(items) => key.parse::<usize>().is_ok_and(|i| i < items.len()) || key == "length",
                _ => false,
            };
            i32::from(found)
        }),
        Import::IsObject => wrap!(|cx: Cx<'_>, a: Ref| -> i32 {
            let v = cx.data().arena.get(slot_of(&cx, a));
            i32::from(matches!(v, JsVal::Array(_) | JsVal::Object(_) | JsVal::Map(_) | JsVal::Date(_) | JsVal::Bytes(_) | JsVal::Error(_)))
        }),
        Import::IsString => wrap!(|cx: Cx<'_>, a: Ref| -> i32 { i32::from(matches!(cx.data().arena.get(slot_of(&cx, a)), JsVal::Str(_))) }),
        Import::IsUndefined => wrap!(|cx: Cx<'_>, a: Ref| -> i32 { i32::from(matches!(cx.data().arena.get(slot_of(&cx, a)), JsVal::Undefined | JsVal::Free)) }),
        Import::LooseEq => wrap!(|cx: Cx<'_>, a: Ref, b: Ref| -> i32 {
            let (a, b) = (slot_of(&cx, a), slot_of(&cx, b));
            i32::from(cx.data().arena.loose_eq(a, b))
        }),
        Import::NumberGet => wrap!(|mut cx: Cx<'_>, ret: i32, a: Ref| -> Result<(), Error> {
            let n = match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Num(n) => Some(*n),
                _ => None,
            };
            let mem = memory(&cx)?;
            mem.write(&mut cx, (ret + 8) as u32 as usize, &n.unwrap_or(0.0).to_le_bytes()).map_err(|_| Error::new("query compiler: write out of bounds"))?;
            write_i32(&mut cx, ret, i32::from(n.is_some()))
        }),
        Import::StringGet => wrap!(|mut cx: Cx<'_>, ret: i32, a: Ref| -> Result<(), Error> {
            let s = match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Str(s) => Some(s.clone()),
                _ => None,
            };
            ret_str(&mut cx, ret, s)
        }),
        Import::Throw => wrap!(|cx: Cx<'_>, p: i32, l: i32| -> Result<(), Error> {
            let msg = read_str(&cx, memory(&cx)?, p, l)?;
            Err(Error::new(format!("query compiler threw: {msg}")))
        }),
        Import::Entries => wrap!(|mut cx: Cx<'_>, o: Ref| -> Result<Ref, Error> {
            let o = slot_of(&cx, o);
            let fields = match cx.data().arena.get(o) {
                JsVal::Object(f) => f.clone(),
                _ => Vec::new(),
            };
            let mut pairs = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                let arena = &mut cx.data_mut().arena;
                let k = arena.alloc(JsVal::Str(k)).map_err(Error::new)?;
                pairs.push(arena.alloc(JsVal::Array(vec![k, v])).map_err(Error::new)?);
            }
            alloc(&mut cx, JsVal::Array(pairs))
        }),
        Import::GetTime => wrap!(|cx: Cx<'_>, a: Ref| -> f64 {
            match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Date(t) => *t,
                _ => f64::NAN,
            }
        }),
        Import::GetIndex => wrap!(|mut cx: Cx<'_>, a: Ref, i: i32| -> Result<Ref, Error> {
            let v = match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Array(items) => items.get(i as u32 as usize).copied().map(Ok),
                JsVal::Bytes(b) => b.get(i as u32 as usize).map(|x| Err(f64::from(*x))),
                _ => None,
            };
            match v {
                Some(Ok(slot)) => Ok(ref_of(&mut cx, slot)),
                Some(Err(n)) => alloc(&mut cx, JsVal::Num(n)),
                None => Ok(ref_of(&mut cx, UNDEFINED)),
            }
        }),
        Import::GetKey => wrap!(|mut cx: Cx<'_>, o: Ref, k: Ref| -> Result<Ref, Error> {
            let (o, k) = (slot_of(&cx, o), slot_of(&cx, k));
            let a = &cx.data().arena;
            let key = a.to_js_string(k);
            let slot = match a.get(o) {
                JsVal::Object(f) => f.iter().rev().find(|(name, _)| *name == key).map(|(_, s)| *s),
                JsVal::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i).copied()),
                _ => None,
            };
            Ok(ref_of(&mut cx, slot.unwrap_or(UNDEFINED)))
        }),
        Import::InstanceofArrayBuffer => wrap!(|_cx: Cx<'_>, _a: Ref| -> i32 { 0 }),
        Import::InstanceofUint8Array => wrap!(|cx: Cx<'_>, a: Ref| -> i32 { i32::from(matches!(cx.data().arena.get(slot_of(&cx, a)), JsVal::Bytes(_))) }),
        Import::IsSafeInteger => wrap!(|cx: Cx<'_>, a: Ref| -> i32 { i32::from(is_safe_integer(cx.data().arena.get(slot_of(&cx, a)))) }),
        Import::Length => wrap!(|cx: Cx<'_>, a: Ref| -> i32 {
            let n = match cx.data().arena.get(slot_of(&cx, a)) {
                JsVal::Array(items) => items.len(),
                JsVal::Bytes(b) => b.len(),
                JsVal::Str(s) => s.encode_utf16().count(),
                _ => 0,
            };
            n as i32
        }),
        Import::NewDate => wrap!(|mut cx: Cx<'_>| -> Result<Ref, Error> {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0);
            alloc(&mut cx, JsVal::Date(now))
        }),
        Import::NewObject => wrap!(|mut cx: Cx<'_>| -> Result<Ref, Error> { alloc(&mut cx, JsVal::Object(Vec::new())) }),
        Import::NewMap => wrap!(|mut cx: Cx<'_>| -> Result<Ref, Error> { alloc(&mut cx, JsVal::Map(Vec::new())) }),
        Import::NewArray => wrap!(|mut cx: Cx<'_>| -> Result<Ref, Error> { alloc(&mut cx, JsVal::Array(Vec::new())) }),
        Import::NewUint8Array => wrap!(|mut cx: Cx<'_>, a: Ref| -> Result<Ref, Error> {
            let a = slot_of(&cx, a);
            let arena = &cx.data().arena;
            let bytes = match arena.get(a) {
                JsVal::Bytes(b) => b.clone(),
                JsVal::Array(items) => items.iter().map(|s| arena.to_number(*s) as u8).collect(),
                JsVal::Num(n) if *n >= 0.0 && *n <= 64.0 * 1024.0 * 1024.0 => vec![0; *n as usize],
                _ => Vec::new(),
            };
            alloc(&mut cx, JsVal::Bytes(bytes))
        }),
        Import::CopyBytesOut => wrap!(|mut cx: Cx<'_>, p: i32, l: i32, src: Ref| -> Result<(), Error> {
            let bytes = match cx.data().arena.get(slot_of(&cx, src)) {
                JsVal::Bytes(b) => b.clone(),
                _ => Vec::new(),
            };
            let n = bytes.len().min(l as u32 as usize);
            let mem = memory(&cx)?;
            mem.write(&mut cx, p as u32 as usize, &bytes[..n]).map_err(|_| Error::new("query compiler: write out of bounds"))
        }),
        Import::SetKey => wrap!(|mut cx: Cx<'_>, o: Ref, k: Ref, v: Ref| {
            let (o, k, v) = (slot_of(&cx, o), slot_of(&cx, k), slot_of(&cx, v));
            let arena = &mut cx.data_mut().arena;
            let key = arena.to_js_string(k);
            match arena.get_mut(o) {
                Some(JsVal::Object(f)) => match f.iter_mut().find(|(name, _)| *name == key) {
                    Some(slot) => slot.1 = v,
                    None => f.push((key, v)),
                },
                Some(JsVal::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < items.len() {
                            items[i] = v;
                        } else if i == items.len() {
                            items.push(v);
                        }
                    }
                }
                _ => {}
            }
        }),
        Import::MapSet => wrap!(|mut cx: Cx<'_>, m: Ref, k: Ref, v: Ref| -> Ref {
            let (ms, k, v) = (slot_of(&cx, m), slot_of(&cx, k), slot_of(&cx, v));
            let arena = &mut cx.data_mut().arena;
            let same = |a: &Arena, x: u32| x == k || (matches!(a.get(k), JsVal::Str(_)) && a.to_js_string(x) == a.to_js_string(k));
            let existing = match arena.get(ms) {
                JsVal::Map(e) => e.iter().position(|(x, _)| same(arena, *x)),
                _ => None,
            };
            if let Some(JsVal::Map(e)) = arena.get_mut(ms) {
                match existing {
                    Some(i) => e[i].1 = v,
                    None => e.push((k, v)),
                }
            }
            m
        }),
        Import::SetIndex => wrap!(|mut cx: Cx<'_>, o: Ref, i: i32, v: Ref| {
            let (o, v) = (slot_of(&cx, o), slot_of(&cx, v));
            if let Some(JsVal::Array(items)) = cx.data_mut().arena.get_mut(o) {
                let i = i as u32 as usize;
                if i < items.len() {
                    items[i] = v;
                } else {
                    items.resize(i, UNDEFINED);
                    items.push(v);
                }
            }
        }),
        Import::SetPanicMessage => wrap!(|mut cx: Cx<'_>, p: i32, l: i32| -> Result<(), Error> {
            let msg = read_str(&cx, memory(&cx)?, p, l)?;
            cx.data_mut().panic_message = Some(msg);
            Ok(())
        }),
        Import::CastString => wrap!(|mut cx: Cx<'_>, p: i32, l: i32| -> Result<Ref, Error> {
            let s = read_str(&cx, memory(&cx)?, p, l)?;
            alloc(&mut cx, JsVal::Str(s))
        }),
        Import::CastU64 => wrap!(|mut cx: Cx<'_>, v: i64| -> Result<Ref, Error> { alloc(&mut cx, JsVal::BigInt(i128::from(v as u64))) }),
        Import::CastI64 => wrap!(|mut cx: Cx<'_>, v: i64| -> Result<Ref, Error> { alloc(&mut cx, JsVal::BigInt(i128::from(v))) }),
        Import::CastF64 => wrap!(|mut cx: Cx<'_>, v: f64| -> Result<Ref, Error> { alloc(&mut cx, JsVal::Num(v)) }),
        Import::InitExternrefTable => wrap!(|mut cx: Cx<'_>| -> Result<(), Error> {
            let table = cx.data().table.ok_or_else(|| Error::new("query compiler: no externref table"))?;
            let null: wasmi::Ref = Nullable::<ExternRef>::Null.into();
            let offset = table.grow(&mut cx, 4, null).map_err(|e| Error::new(e.to_string()))?;
            let undef: wasmi::Ref = ref_of(&mut cx, UNDEFINED).into();
            table.set(&mut cx, 0, undef).map_err(|e| Error::new(e.to_string()))?;
            for (i, slot) in [crate::js::UNDEFINED, crate::js::NULL, crate::js::TRUE, crate::js::FALSE].into_iter().enumerate() {
                let r: wasmi::Ref = ref_of(&mut cx, slot).into();
                table.set(&mut cx, offset + i as u64, r).map_err(|e| Error::new(e.to_string()))?;
            }
            Ok(())
        }),
    }
    Ok(())
}
