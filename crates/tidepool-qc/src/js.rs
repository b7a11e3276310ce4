//! The JavaScript values the query compiler's wasm-bindgen imports operate on, kept in an arena.
//!
//! Each `externref` the WASM holds wraps a slot number of [`Arena`]. The WASM keeps some values
//! across calls (serde-wasm-bindgen caches field-name strings), so after every top-level call
//! [`Arena::collect`] frees the slots not reachable from the externref table; freed slots (and
//! their `externref` handles) are reused, so a long-lived instance does not grow per call.

use serde_json::{Map as JsonMap, Number, Value};

/// Slots 0-3 hold the constants `init_externref_table` installs.
pub(crate) const UNDEFINED: u32 = 0;
pub(crate) const NULL: u32 = 1;
pub(crate) const TRUE: u32 = 2;
pub(crate) const FALSE: u32 = 3;
const FIXED: usize = 4;

/// Deepest value converted to JSON (plans nest a few dozen levels at most).
const MAX_DEPTH: usize = 512;

#[derive(Debug, Clone)]
pub(crate) enum JsVal {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    BigInt(i128),
    Str(String),
    Array(Vec<u32>),
    Object(Vec<(String, u32)>),
    Map(Vec<(u32, u32)>),
    Date(f64),
    Bytes(Vec<u8>),
    Error(String),
    /// A slot on the free list.
    Free,
}

/// All JS values alive during one call, addressed by slot.
#[derive(Debug)]
pub(crate) struct Arena {
    vals: Vec<JsVal>,
    free: Vec<u32>,
    /// Upper bound on slots in one call: a runaway request fails instead of eating memory.
    max_vals: usize,
}

impl Arena {
    pub(crate) fn new(max_vals: usize) -> Self {
        let vals = vec![JsVal::Undefined, JsVal::Null, JsVal::Bool(true), JsVal::Bool(false)];
        Self { vals, free: Vec::new(), max_vals }
    }

    /// Frees every slot not reachable from `roots` (the externref table's entries).
    pub(crate) fn collect(&mut self, roots: impl IntoIterator<Item = u32>) {
        let mut marked = vec![false; self.vals.len()];
        marked[..FIXED].iter_mut().for_each(|m| *m = true);
        let mut stack: Vec<u32> = roots.into_iter().collect();
        while let Some(s) = stack.pop() {
            let Some(m) = marked.get_mut(s as usize) else { continue };
            if *m {
                continue;
            }
            *m = true;
            match &self.vals[s as usize] {
                JsVal::Array(items) => stack.extend(items.iter().copied()),
                JsVal::Object(fields) => stack.extend(fields.iter().map(|(_, v)| *v)),
                JsVal::Map(entries) => stack.extend(entries.iter().flat_map(|(k, v)| [*k, *v])),
                _ => {}
            }
        }
        for (i, m) in marked.iter().enumerate() {
            if !*m && !matches!(self.vals[i], JsVal::Free) {
                self.vals[i] = JsVal::Free;
                self.free.push(i as u32);
            }
        }
    }

    /// Slots in use (not free).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.vals.len() - self.free.len()
    }

    pub(crate) fn alloc(&mut self, v: JsVal) -> Result<u32, &'static str> {
        match v {
            JsVal::Undefined => return Ok(UNDEFINED),
            JsVal::Null => return Ok(NULL),
            JsVal::Bool(true) => return Ok(TRUE),
            JsVal::Bool(false) => return Ok(FALSE),
            _ => {}
        }
        if let Some(slot) = self.free.pop() {
            self.vals[slot as usize] = v;
            return Ok(slot);
        }
        if self.vals.len() >= self.max_vals {
            return Err("query compiler: too many live values");
        }
        self.vals.push(v);
        Ok((self.vals.len() - 1) as u32)
    }

    pub(crate) fn get(&self, slot: u32) -> &JsVal {
        self.vals.get(slot as usize).unwrap_or(&JsVal::Undefined)
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut JsVal> {
        self.vals.get_mut(slot as usize)
    }

    /// JS `String(v)` for the cases the compiler asks about (keys, numbers, messages).
    pub(crate) fn to_js_string(&self, slot: u32) -> String {
        match self.get(slot) {
            JsVal::Undefined | JsVal::Free => "undefined".into(),
            JsVal::Null => "null".into(),
            JsVal::Bool(b) => b.to_string(),
            JsVal::Num(n) => js_number_string(*n),
            JsVal::BigInt(i) => i.to_string(),
            JsVal::Str(s) => s.clone(),
            JsVal::Array(items) => items.iter().map(|s| self.to_js_string(*s)).collect::<Vec<_>>().join(","),
            JsVal::Object(_) => "[object Object]".into(),
            JsVal::Map(_) => "[object Map]".into(),
            JsVal::Date(t) => js_number_string(*t),
            JsVal::Bytes(b) => b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
            JsVal::Error(m) => format!("Error: {m}"),
        }
    }

    /// JS `Number(v)`.
    pub(crate) fn to_number(&self, slot: u32) -> f64 {
        match self.get(slot) {
            JsVal::Undefined => f64::NAN,
            JsVal::Null => 0.0,
            JsVal::Bool(b) => f64::from(u8::from(*b)),
            JsVal::Num(n) | JsVal::Date(n) => *n,
            JsVal::BigInt(i) => *i as f64,
            JsVal::Str(s) => {
                let t = s.trim();
                if t.is_empty() {
                    0.0
                } else {
                    t.parse().unwrap_or(f64::NAN)
                }
            }
            _ => f64::NAN,
        }
    }

    /// JS `a == b`, for the primitive comparisons serde's wasm-bindgen bridge makes.
    pub(crate) fn loose_eq(&self, a: u32, b: u32) -> bool {
        use JsVal::*;
        match (self.get(a), self.get(b)) {
            (Undefined | Null, Undefined | Null) => true,
            (Undefined | Null, _) | (_, Undefined | Null) => false,
            (Str(x), Str(y)) => x == y,
            (BigInt(x), BigInt(y)) => x == y,
            (Bool(x), Bool(y)) => x == y,
            (Num(_) | BigInt(_) | Bool(_) | Str(_), Num(_) | BigInt(_) | Bool(_) | Str(_)) => self.to_number(a) == self.to_number(b),
            _ => a == b,
        }
    }

    pub(crate) fn alloc_json(&mut self, v: &Value) -> Result<u32, &'static str> {
        let js = match v {
            Value::Null => JsVal::Null,
            Value::Bool(b) => JsVal::Bool(*b),
            Value::Number(n) => JsVal::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => JsVal::Str(s.clone()),
            Value::Array(items) => {
                let mut slots = Vec::with_capacity(items.len());
                for item in items {
                    slots.push(self.alloc_json(item)?);
                }
                JsVal::Array(slots)
            }
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (k, item) in map {
                    fields.push((k.clone(), self.alloc_json(item)?));
                }
                JsVal::Object(fields)
            }
        };
        self.alloc(js)
    }

    /// Like [`Arena::to_json`], keeping the key order of objects (the order the compiler built
    /// them in, which orders the fields of results).
    pub(crate) fn to_ordered(&self, slot: u32) -> Result<crate::ordered::J, &'static str> {
        self.to_ordered_at(slot, 0)
    }

    fn to_ordered_at(&self, slot: u32, depth: usize) -> Result<crate::ordered::J, &'static str> {
        use crate::ordered::J;
        if depth > MAX_DEPTH {
            return Err("query compiler: result nested too deeply");
        }
        Ok(match self.get(slot) {
            JsVal::Str(s) => J::Str(s.clone()),
            JsVal::Array(items) => J::Arr(items.iter().map(|s| self.to_ordered_at(*s, depth + 1)).collect::<Result<_, _>>()?),
            JsVal::Object(fields) => {
                let mut m = Vec::with_capacity(fields.len());
                for (k, s) in fields {
                    if matches!(self.get(*s), JsVal::Undefined | JsVal::Free) {
                        continue;
                    }
                    let v = self.to_ordered_at(*s, depth + 1)?;
                    match m.iter_mut().find(|(x, _): &&mut (String, J)| x == k) {
                        Some(e) => e.1 = v,
                        None => m.push((k.clone(), v)),
                    }
                }
                J::Obj(m)
            }
            JsVal::Map(entries) => {
                let mut m: Vec<(String, J)> = Vec::with_capacity(entries.len());
                for (k, s) in entries {
                    let (k, v) = (self.to_js_string(*k), self.to_ordered_at(*s, depth + 1)?);
                    match m.iter_mut().find(|(x, _)| *x == k) {
                        Some(e) => e.1 = v,
                        None => m.push((k, v)),
                    }
                }
                J::Obj(m)
            }
            // Scalars convert as in `to_json`.
            _ => J::from_value(&self.to_json_at(slot, depth)?),
        })
    }

    pub(crate) fn to_json(&self, slot: u32) -> Result<Value, &'static str> {
        self.to_json_at(slot, 0)
    }

    fn to_json_at(&self, slot: u32, depth: usize) -> Result<Value, &'static str> {
        if depth > MAX_DEPTH {
            return Err("query compiler: result nested too deeply");
        }
        Ok(match self.get(slot) {
            JsVal::Undefined | JsVal::Null | JsVal::Free => Value::Null,
            JsVal::Bool(b) => Value::Bool(*b),
            JsVal::Num(n) => number_json(*n),
            JsVal::BigInt(i) => {
                i64::try_from(*i).map(Value::from).or_else(|_| u64::try_from(*i).map(Value::from)).unwrap_or_else(|_| Value::String(i.to_string()))
            }
            JsVal::Str(s) => Value::String(s.clone()),
            JsVal::Array(items) => Value::Array(items.iter().map(|s| self.to_json_at(*s, depth + 1)).collect::<Result<_, _>>()?),
            JsVal::Object(fields) => {
                let mut m = JsonMap::new();
                for (k, s) in fields {
                    // `undefined` members vanish, as in JSON.stringify.
                    if matches!(self.get(*s), JsVal::Undefined | JsVal::Free) {
                        continue;
                    }
                    m.insert(k.clone(), self.to_json_at(*s, depth + 1)?);
                }
                Value::Object(m)
            }
            JsVal::Map(entries) => {
                let mut m = JsonMap::new();
                for (k, s) in entries {
                    m.insert(self.to_js_string(*k), self.to_json_at(*s, depth + 1)?);
                }
                Value::Object(m)
            }
            JsVal::Date(t) => number_json(*t),
            JsVal::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
            JsVal::Error(m) => serde_json::json!({ "message": m }),
        })
    }
}

fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0 {
        Value::from(n as i64)
    } else {
        Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn js_number_string(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_order_and_drops_undefined() {
        let mut a = Arena::new(1000);
        let v: Value = serde_json::from_str(r#"{"b":1,"a":[true,null,"x",2.5]}"#).unwrap();
        let slot = a.alloc_json(&v).unwrap();
        if let Some(JsVal::Object(f)) = a.get_mut(slot) {
            f.push(("u".into(), UNDEFINED));
        }
        assert_eq!(a.to_json(slot).unwrap(), v);
        let live = a.live();
        a.collect([slot]);
        assert_eq!(a.live(), live, "everything reachable from the root stays");
        a.collect([]);
        assert_eq!(a.live(), 4, "only the constants stay");
        let again = a.alloc(JsVal::Num(1.0)).unwrap();
        assert!((again as usize) < live, "freed slots are reused");
    }

    #[test]
    fn arena_is_bounded() {
        let mut a = Arena::new(5);
        assert!(a.alloc(JsVal::Num(1.0)).is_ok());
        assert!(a.alloc(JsVal::Num(2.0)).is_err());
    }
}
