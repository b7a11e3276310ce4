//! What the shared tier stores in Redis and under which names.
//!
//! - Entry: `tidepool:v1:<hex of the cache key>` (keys over 128 bytes: `tidepool:v1:h<sha256>`),
//!   value = an envelope (below) followed by the cache core's own bytes, Redis TTL = the entry's
//!   lifetime (ttl + swr) capped by `redis_max_ttl`.
//! - Generation: `tidepool:v1:gen:…`, a random number replaced by every invalidation that names
//!   it, living `redis_max_ttl` (so it outlives any entry that recorded an older value: when it
//!   expires, every entry written before its last change has expired too). Absent = empty.
//!   - `gen:any`: every invalidation replaces it; entries stored without a scope depend on it;
//!   - `gen:db:<hex db>`: the database's "invalidate all"; every scoped entry depends on it;
//!   - `gen:tag:<hex db>:<hex tag>`, `gen:tbl:<hex db>:<hex table>`.
//!
//! Envelope: `TPE1`, a dependency count (u8), then per dependency `u16` name length, name, `u8`
//! generation length, generation; then the value. Everything read back is treated as hostile: a
//! malformed envelope is a miss, never a panic.

use sha2::{Digest, Sha256};

use crate::cache::{EntryScope, Invalidation};

const PREFIX: &str = "tidepool:v1:";
const MAGIC: &[u8; 4] = b"TPE1";
/// Most dependencies an entry records (1 database + tags + tables); a scope with more is stored
/// as unscoped (it then depends on every invalidation).
pub(crate) const MAX_DEPS: usize = 64;
/// Longest generation key name (longer database/tag/table names are hashed).
const MAX_NAME: usize = 256;
/// Longest generation value accepted (ours are decimal u64: 20 bytes).
const MAX_GEN: usize = 32;
/// Largest envelope header.
pub(crate) const MAX_HEADER: usize = MAGIC.len() + 1 + MAX_DEPS * (2 + MAX_NAME + 1 + MAX_GEN);

/// The Redis key of a cache entry.
pub(crate) fn entry_key(key: &[u8]) -> String {
    if key.len() <= 128 {
        format!("{PREFIX}{}", hex::encode(key))
    } else {
        format!("{PREFIX}h{}", hex::encode(Sha256::digest(key)))
    }
}

fn gen_key(kind: &str, database: &str, name: Option<&str>) -> String {
    let (db, name) = (hex::encode(database), name.map(hex::encode));
    let plain = match &name {
        Some(n) => format!("{PREFIX}gen:{kind}:{db}:{n}"),
        None => format!("{PREFIX}gen:{kind}:{db}"),
    };
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let mut h = Sha256::new();
    for part in [kind, database, name.as_deref().unwrap_or("")] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    format!("{PREFIX}gen:h:{}", hex::encode(h.finalize()))
}

fn any_key() -> String {
    format!("{PREFIX}gen:any")
}

/// The generation keys an entry with this scope depends on.
pub(crate) fn dependencies(scope: Option<&EntryScope>) -> Vec<String> {
    let Some(s) = scope.filter(|s| 1 + s.tags.len() + s.tables.len() <= MAX_DEPS) else {
        return vec![any_key()];
    };
    let mut deps = vec![gen_key("db", &s.database, None)];
    deps.extend(s.tags.iter().map(|t| gen_key("tag", &s.database, Some(t))));
    deps.extend(s.tables.iter().map(|t| gen_key("tbl", &s.database, Some(t))));
    deps.sort();
    deps.dedup();
    deps
}

/// The generation keys an invalidation replaces.
pub(crate) fn invalidated(event: &Invalidation) -> Vec<String> {
    let mut keys = vec![any_key()];
    match event {
        Invalidation::All { database } => keys.push(gen_key("db", database, None)),
        Invalidation::Tags { database, tags } => keys.extend(tags.iter().map(|t| gen_key("tag", database, Some(t)))),
        Invalidation::Tables { database, tables } => keys.extend(tables.iter().map(|t| gen_key("tbl", database, Some(t)))),
    }
    keys
}

/// A fresh generation value (never empty, so it differs from an absent key).
pub(crate) fn new_generation() -> String {
    rand::random::<u64>().to_string()
}

/// Builds the stored bytes: envelope + value. `None` if a generation read back is unusable.
pub(crate) fn encode(deps: &[String], gens: &[Vec<u8>], value: &[u8]) -> Option<Vec<u8>> {
    if deps.len() != gens.len() || deps.len() > MAX_DEPS {
        return None;
    }
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + deps.len() * 64 + value.len());
    out.extend_from_slice(MAGIC);
    out.push(u8::try_from(deps.len()).ok()?);
    for (name, gen) in deps.iter().zip(gens) {
        if name.len() > MAX_NAME || gen.len() > MAX_GEN {
            return None;
        }
        out.extend_from_slice(&u16::try_from(name.len()).ok()?.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(gen.len()).ok()?);
        out.extend_from_slice(gen);
    }
    out.extend_from_slice(value);
    Some(out)
}

/// A parsed envelope: the recorded (generation key, generation) pairs and where the value starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub deps: Vec<(String, Vec<u8>)>,
    pub value_start: usize,
}

/// Parses what a Redis entry holds; `None` for anything that is not one of our envelopes.
pub(crate) fn decode(raw: &[u8]) -> Option<Envelope> {
    let rest = raw.strip_prefix(MAGIC.as_slice())?;
    let (&n, mut rest) = rest.split_first()?;
    if n == 0 || usize::from(n) > MAX_DEPS {
        return None;
    }
    let mut deps = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (len, r) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len > MAX_NAME || r.len() < len {
            return None;
        }
        let (name, r) = r.split_at(len);
        let name = std::str::from_utf8(name).ok()?;
        if !name.starts_with(PREFIX) || !name[PREFIX.len()..].starts_with("gen:") {
            return None;
        }
        let (&glen, r) = r.split_first()?;
        let glen = usize::from(glen);
        if glen > MAX_GEN || r.len() < glen {
            return None;
        }
        let (gen, r) = r.split_at(glen);
        deps.push((name.to_owned(), gen.to_vec()));
        rest = r;
    }
    Some(Envelope { deps, value_start: raw.len() - rest.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(db: &str, tags: &[&str], tables: &[&str]) -> EntryScope {
        EntryScope { database: db.into(), tags: tags.iter().map(|s| (*s).into()).collect(), tables: tables.iter().map(|s| (*s).into()).collect() }
    }

    #[test]
    fn every_invalidation_reaches_the_entries_that_depend_on_it() {
        let s = scope("app", &["users", "posts"], &["public.users"]);
        let deps = dependencies(Some(&s));
        let hits = |ev: Invalidation| invalidated(&ev).iter().any(|k| deps.contains(k));
        assert!(hits(Invalidation::All { database: "app".into() }));
        assert!(hits(Invalidation::Tags { database: "app".into(), tags: vec!["posts".into()] }));
        assert!(hits(Invalidation::Tables { database: "app".into(), tables: vec!["public.users".into()] }));
        // Other databases, other tags, other tables, a tag named like a table: untouched.
        assert!(!hits(Invalidation::All { database: "other".into() }));
        assert!(!hits(Invalidation::Tags { database: "other".into(), tags: vec!["users".into()] }));
        assert!(!hits(Invalidation::Tags { database: "app".into(), tags: vec!["comments".into()] }));
        assert!(!hits(Invalidation::Tags { database: "app".into(), tags: vec!["public.users".into()] }));
        assert!(!hits(Invalidation::Tables { database: "app".into(), tables: vec!["users".into()] }));
        // Unscoped entries (and scopes too large to record) depend on every invalidation.
        let unscoped = dependencies(None);
        assert!(invalidated(&Invalidation::All { database: "x".into() }).iter().any(|k| unscoped.contains(k)));
        let huge = scope("app", &[], &(0..100).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect::<Vec<_>>());
        assert_eq!(dependencies(Some(&huge)), unscoped);
    }

    #[test]
    fn long_names_are_hashed_and_still_distinct() {
        let long = "d".repeat(1000);
        let a = gen_key("tag", &long, Some("x"));
        let b = gen_key("tag", &long, Some("y"));
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME && a != b);
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(gen_key("tag", &format!("{long}ab"), Some("c")), gen_key("tag", &format!("{long}a"), Some("bc")));
        assert!(entry_key(&[7u8; 129]).len() < 80);
        assert_ne!(entry_key(b"a"), entry_key(b"b"));
    }

    #[test]
    fn envelope_round_trip() {
        let deps = dependencies(Some(&scope("app", &["t1"], &[])));
        let gens = vec![b"123".to_vec(), Vec::new()];
        let raw = encode(&deps, &gens, b"value bytes").unwrap();
        let env = decode(&raw).unwrap();
        assert_eq!(&raw[env.value_start..], b"value bytes");
        assert_eq!(env.deps, deps.into_iter().zip(gens).collect::<Vec<_>>());
        // Truncations and foreign values are not envelopes.
        for cut in 0..env.value_start {
            assert_eq!(decode(&raw[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(b"plain value"), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&raw);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&raw);
            if let Some(env) = decode(&with_magic) {
                prop_assert!(env.value_start <= with_magic.len());
            }
        }
    }
}
