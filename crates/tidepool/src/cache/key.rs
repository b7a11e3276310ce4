//! The cache key: a SHA-256 over everything that can change a result — the front end, the
//! database, the upstream role the request runs as, the session settings of the lease, and the
//! request itself (the plan or SQL text and its bound values). Two credentials that could see
//! different rows never share an entry (pgpool-II CVE-2024-45624 and readyset#1648 were keys
//! without the role). The same 32 bytes, hex-encoded, name the entry in the shared tier.

use sha2::{Digest, Sha256};

/// A cache key: SHA-256 of the key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The fixed-size name of the entry in the shared tier (`tidepool:c1:<64 hex>`); it includes
    /// the database and role because the hash does.
    pub fn shared_name(&self) -> Vec<u8> {
        format!("tidepool:c1:{}", hex::encode(self.0)).into_bytes()
    }
}

/// Builds a [`Key`]: each part is length-prefixed, so no two different part lists collide by
/// concatenation.
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// Starts a key for `front` (`"prisma"`, `"neon"`), `database` and `role`. `settings` names
    /// the session settings of the lease the result comes from (a version string for the pinned
    /// HTTP settings).
    pub fn new(front: &str, database: &str, role: &str, settings: &str) -> KeyBuilder {
        let mut b = KeyBuilder(Sha256::new());
        b.0.update(b"tidepool-cache-key-v1");
        b.part(front.as_bytes()).part(database.as_bytes()).part(role.as_bytes()).part(settings.as_bytes());
        b
    }

    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// The request's tags, order and duplicates ignored.
    pub fn tags(&mut self, tags: &[String]) -> &mut Self {
        let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.part(sorted.join(",").as_bytes())
    }

    pub fn finish(self) -> Key {
        Key(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(front: &str, db: &str, role: &str, parts: &[&[u8]]) -> Key {
        let mut b = KeyBuilder::new(front, db, role, "s1");
        for p in parts {
            b.part(p);
        }
        b.finish()
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = key("prisma", "app", "reader", &[b"plan", b"params"]);
        assert_eq!(base, key("prisma", "app", "reader", &[b"plan", b"params"]));
        assert_ne!(base, key("neon", "app", "reader", &[b"plan", b"params"]));
        assert_ne!(base, key("prisma", "app2", "reader", &[b"plan", b"params"]));
        assert_ne!(base, key("prisma", "app", "writer", &[b"plan", b"params"]));
        assert_ne!(base, key("prisma", "app", "reader", &[b"plan", b"params2"]));
        // Length prefixes: moving bytes between parts changes the key.
        assert_ne!(base, key("prisma", "app", "reader", &[b"planp", b"arams"]));
        assert_ne!(key("prisma", "ab", "c", &[]), key("prisma", "a", "bc", &[]));
    }

    #[test]
    fn shared_name_is_fixed_size_hex() {
        let n = key("prisma", "app", "r", &[b"x"]).shared_name();
        assert_eq!(n.len(), "tidepool:c1:".len() + 64);
        assert!(n["tidepool:c1:".len()..].iter().all(|b| b.is_ascii_hexdigit()));
    }
}
