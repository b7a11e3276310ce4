//! Value generators called from plans (`@default(now())`, `uuid()`, `cuid()`, …).
//!
//! One [`Generators`] instance serves one request: `now` is frozen at its first call, so every
//! `now()` in a `/query` returns the same instant. Output formats match the JavaScript libraries
//! Prisma uses (`uuid`, `@bugsnag/cuid`, `@paralleldrive/cuid2`, `ulid`, `nanoid`).

use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use sha2::{Digest, Sha512};

use crate::datetime::{format_iso_millis, now_millis};
use crate::error::{Error, Result};
use crate::json::Value;

/// Largest `nanoid(n)` accepted (protects memory against hostile plans).
const MAX_NANOID_LEN: usize = 4096;

/// Per-request generator state.
#[derive(Debug)]
pub struct Generators {
    now: Option<i64>,
    fixed_now: Option<i64>,
    /// Element budget for `product` (shared with the response size limit).
    max_product_items: usize,
}

impl Generators {
    pub fn new(max_product_items: usize) -> Self {
        Generators { now: None, fixed_now: None, max_product_items }
    }

    /// Pin `now` (milliseconds since the epoch); for tests and deterministic replays.
    pub fn with_fixed_now(mut self, ms: i64) -> Self {
        self.fixed_now = Some(ms);
        self
    }

    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "now" => {
                let fixed = self.fixed_now;
                let ms = *self.now.get_or_insert_with(|| fixed.unwrap_or_else(now_millis));
                Ok(Value::String(format_iso_millis(ms)))
            }
            "uuid" => match args.first().and_then(Value::as_f64) {
                Some(4.0) => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
                Some(7.0) => Ok(Value::String(uuid::Uuid::now_v7().to_string())),
                _ => Err(Error::plan("Invalid UUID generator arguments")),
            },
            "cuid" => match args.first().and_then(Value::as_f64) {
                Some(1.0) => Ok(Value::String(cuid1())),
                Some(2.0) => Ok(Value::String(cuid2(24))),
                _ => Err(Error::plan("Invalid CUID generator arguments")),
            },
            "ulid" => Ok(Value::String(ulid())),
            "nanoid" => match args.first() {
                None | Some(Value::Undefined) => Ok(Value::String(nanoid(21))),
                Some(Value::Number(n)) if *n >= 0.0 && *n <= MAX_NANOID_LEN as f64 => Ok(Value::String(nanoid(*n as usize))),
                _ => Err(Error::plan("Invalid Nanoid generator arguments")),
            },
            "product" => self.product(args),
            other => Err(Error::plan(format!("Encountered an unknown generator '{other}'"))),
        }
    }

    fn product(&self, args: &[Value]) -> Result<Value> {
        let (Some(lhs), Some(rhs)) = (args.first(), args.get(1)) else {
            return Err(Error::plan("Invalid Product generator arguments"));
        };
        if matches!(lhs, Value::Undefined) || matches!(rhs, Value::Undefined) {
            return Err(Error::plan("Invalid Product generator arguments"));
        }
        let one = |v: &Value| match v {
            Value::List(items) => items.clone(),
            other => vec![other.clone()],
        };
        let (l, r) = (one(lhs), one(rhs));
        if l.len().saturating_mul(r.len()) > self.max_product_items {
            return Err(Error::plan("Product generator result is too large"));
        }
        let mut out = Vec::with_capacity(l.len() * r.len());
        for a in &l {
            for b in &r {
                out.push(Value::List(vec![a.clone(), b.clone()]));
            }
        }
        Ok(Value::List(out))
    }
}

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn base36(mut n: u128) -> String {
    if n == 0 {
        return "0".into();
    }
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(BASE36[(n % 36) as usize]);
        n /= 36;
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Last `len` characters of `s`, left-padded with `0`.
fn pad(s: &str, len: usize) -> String {
    let padded = format!("{s:0>len$}");
    padded[padded.len() - len..].to_owned()
}

static CUID_COUNTER: AtomicU32 = AtomicU32::new(0);

/// CUID v1: `c` + timestamp(8) + counter(4) + fingerprint(4) + random(8), base36.
fn cuid1() -> String {
    let mut rng = rand::thread_rng();
    let ts = base36(now_millis().max(0) as u128);
    let count = CUID_COUNTER.fetch_add(1, Ordering::Relaxed) % 1_679_616; // 36^4
    let pid = std::process::id() as u128;
    let fingerprint = format!("{}{}", pad(&base36(pid), 2), pad(&base36(u128::from(rng.gen::<u32>())), 2));
    let random = format!("{}{}", pad(&base36(u128::from(rng.gen_range(0..1_679_616u32))), 4), pad(&base36(u128::from(rng.gen_range(0..1_679_616u32))), 4));
    format!("c{}{}{}{}", pad(&ts, 8), pad(&base36(u128::from(count)), 4), fingerprint, random)
}

/// CUID2: a lowercase letter followed by hashed entropy in base36, `len` characters total.
fn cuid2(len: usize) -> String {
    let mut rng = rand::thread_rng();
    let first = (b'a' + rng.gen_range(0..26u8)) as char;
    let mut hasher = Sha512::new();
    hasher.update(now_millis().to_le_bytes());
    hasher.update(CUID_COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(rng.gen::<[u8; 32]>());
    let digest = hasher.finalize();
    let mut body = String::new();
    for chunk in digest.chunks(16) {
        let mut buf = [0u8; 16];
        buf[..chunk.len()].copy_from_slice(chunk);
        body.push_str(&pad(&base36(u128::from_le_bytes(buf)), 24));
    }
    let mut out = String::with_capacity(len);
    out.push(first);
    out.push_str(&body[..(len - 1).min(body.len())]);
    out
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// ULID: 48-bit millisecond time + 80 random bits, Crockford base32 (26 chars).
fn ulid() -> String {
    let time = (now_millis().max(0) as u128) & ((1 << 48) - 1);
    let random: u128 = rand::thread_rng().gen::<u128>() & ((1 << 80) - 1);
    let mut n = (time << 80) | random;
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(n & 31) as usize];
        n >>= 5;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const NANOID_ALPHABET: &[u8] = b"useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict";

fn nanoid(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| NANOID_ALPHABET[rng.gen_range(0..64)] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut g = Generators::new(1000).with_fixed_now(1_700_000_000_123);
        assert_eq!(g.call("now", &[]).unwrap(), Value::from("2023-11-14T22:13:20.123Z"));
        let u4 = g.call("uuid", &[4.0.into()]).unwrap();
        assert_eq!(uuid::Uuid::parse_str(u4.as_str().unwrap()).unwrap().get_version_num(), 4);
        let u7 = g.call("uuid", &[7.0.into()]).unwrap();
        assert_eq!(uuid::Uuid::parse_str(u7.as_str().unwrap()).unwrap().get_version_num(), 7);
        let c1 = g.call("cuid", &[1.0.into()]).unwrap();
        let c1 = c1.as_str().unwrap();
        assert_eq!(c1.len(), 25);
        assert!(c1.starts_with('c') && c1.bytes().all(|b| BASE36.contains(&b)));
        let c2 = g.call("cuid", &[2.0.into()]).unwrap();
        let c2 = c2.as_str().unwrap();
        assert_eq!(c2.len(), 24);
        assert!(c2.as_bytes()[0].is_ascii_lowercase() && c2.bytes().all(|b| BASE36.contains(&b)));
        let u = g.call("ulid", &[]).unwrap();
        assert_eq!(u.as_str().unwrap().len(), 26);
        assert_eq!(g.call("nanoid", &[]).unwrap().as_str().unwrap().len(), 21);
        assert_eq!(g.call("nanoid", &[10.0.into()]).unwrap().as_str().unwrap().len(), 10);
        assert!(g.call("uuid", &[5.0.into()]).is_err());
        assert!(g.call("cuid", &[]).is_err());
        assert!(g.call("nanoid", &["x".into()]).is_err());
        assert!(g.call("nope", &[]).is_err());
    }

    #[test]
    fn product_shapes() {
        let mut g = Generators::new(10);
        let l = Value::List(vec![1.0.into(), 2.0.into()]);
        assert_eq!(g.call("product", &[l.clone(), "a".into()]).unwrap().to_json(), r#"[[1,"a"],[2,"a"]]"#);
        assert_eq!(g.call("product", &["x".into(), "y".into()]).unwrap().to_json(), r#"[["x","y"]]"#);
        assert_eq!(g.call("product", &[l.clone(), l.clone()]).unwrap().as_list().unwrap().len(), 4);
        assert!(g.call("product", &[l]).is_err());
        let big = Value::List(vec![Value::Null; 5]);
        assert!(g.call("product", &[big.clone(), big]).is_err());
    }

    #[test]
    fn now_is_frozen() {
        let mut g = Generators::new(1);
        let a = g.call("now", &[]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert_eq!(a, g.call("now", &[]).unwrap());
    }
}
