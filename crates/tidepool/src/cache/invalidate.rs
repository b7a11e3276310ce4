//! Invalidation: dropping a database's entries by tag, all of them, or those that read given
//! tables — locally, and on every other node through the shared tier. Also the rules a tag must
//! follow (`[A-Za-z0-9_]{1,64}`, at most `max_tags`, as Accelerate documents) and the per-database
//! rate limit of `POST /invalidate` (beyond it: 429 P6003).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

use super::Cache;

/// An invalidation to apply on every node. Serialises (serde, externally tagged:
/// `{"Tags":{"database":…,"tags":[…]}}`) for the shared tier's broadcast.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Invalidation {
    Tags { database: String, tags: Vec<String> },
    All { database: String },
    Tables { database: String, tables: Vec<String> },
}

impl Invalidation {
    pub fn database(&self) -> &str {
        match self {
            Invalidation::Tags { database, .. } | Invalidation::All { database } | Invalidation::Tables { database, .. } => database,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Invalidation::Tags { .. } => "tags",
            Invalidation::All { .. } => "all",
            Invalidation::Tables { .. } => "tables",
        }
    }
}

/// A tag list that breaks the rules; the message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("at most {max} tags are allowed")]
    TooMany { max: usize },
    #[error("tags must be 1 to 64 characters of A-Z, a-z, 0-9 and _")]
    Malformed,
}

/// Checks one tag.
pub fn valid_tag(t: &str) -> bool {
    (1..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits a comma-separated tag header (`accelerate-cache-tags`, `Tidepool-Cache-Tags`) and
/// validates it, without ever holding more than `max + 1` tags. Duplicates are dropped.
pub fn parse_tags(header: &str, max: usize) -> Result<Vec<String>, TagError> {
    let mut out: Vec<String> = Vec::new();
    for t in header.split(',').map(str::trim) {
        if !valid_tag(t) {
            return Err(TagError::Malformed);
        }
        if !out.iter().any(|o| o == t) {
            if out.len() == max {
                return Err(TagError::TooMany { max });
            }
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// Fixed one-minute windows per database.
pub(super) struct Limiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub(super) fn new(per_minute: u32) -> Limiter {
        Limiter { per_minute, windows: Mutex::default() }
    }

    fn allow(&self, database: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let now = Instant::now();
        let mut w = self.windows.lock();
        let slot = w.entry(database.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= Duration::from_secs(60) {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_minute {
            return false;
        }
        slot.1 += 1;
        true
    }
}

impl Cache {
    /// Counts one `POST /invalidate` of `database` against the rate limit; false when over it.
    pub fn allow_invalidation(&self, database: &str) -> bool {
        self.inner.limiter.allow(database)
    }

    /// Applies `inv` here and publishes it to the other nodes.
    pub fn invalidate(&self, inv: Invalidation) {
        self.apply_local(&inv);
        if let Some(shared) = self.inner.shared.clone() {
            self.inner.tracker.spawn(async move { shared.publish(inv).await });
        }
    }

    /// Applies an invalidation received from another node (not re-published).
    pub fn apply_remote(&self, inv: &Invalidation) {
        self.inner.metrics.invalidation("remote");
        self.apply_local(inv);
    }

    /// Drops every local entry (after a shared-tier reconnect: invalidations may have been missed).
    pub fn clear_local(&self) {
        self.bump(None);
        self.inner.local.invalidate_all();
        self.inner.metrics.invalidation("clear");
    }

    /// Drops the local entries of a write's database that read any of `tables` (for
    /// `invalidate_on_write`; a no-op when it is off or nothing was written).
    pub fn written(&self, database: &str, tables: Vec<String>) {
        if tables.is_empty() || !self.inner.cfg.invalidate_on_write {
            return;
        }
        self.invalidate(Invalidation::Tables { database: database.to_owned(), tables });
    }

    fn apply_local(&self, inv: &Invalidation) {
        self.bump(Some(inv.database()));
        self.inner.metrics.invalidation(inv.kind());
        if let Invalidation::Tables { database, tables } = inv {
            // Frequent writes to tables no cached entry read cost no predicate (moka checks every
            // pending predicate on reads until its housekeeping has applied them).
            if self.inner.cfg.invalidate_on_write && !self.take_tables(database, tables) {
                return;
            }
        }
        let db: Arc<str> = inv.database().into();
        let r = match inv.clone() {
            Invalidation::All { .. } => self.inner.local.invalidate_entries_if(move |_, e| e.database == db),
            Invalidation::Tags { tags, .. } => self.inner.local.invalidate_entries_if(move |_, e| e.database == db && e.tags.iter().any(|t| tags.contains(t))),
            Invalidation::Tables { tables, .. } => {
                self.inner.local.invalidate_entries_if(move |_, e| e.database == db && e.tables.iter().any(|t| tables.contains(t)))
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "cache invalidation failed; dropping every entry");
            self.inner.local.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_rules() {
        assert_eq!(parse_tags("users, posts_1,users", 5).unwrap(), vec!["users", "posts_1"]);
        assert_eq!(parse_tags("a,b,c,d,e,f", 5), Err(TagError::TooMany { max: 5 }));
        assert_eq!(parse_tags(&"a,".repeat(10_000), 5), Err(TagError::Malformed));
        assert_eq!(parse_tags(&(0..10_000).map(|i| format!("t{i}")).collect::<Vec<_>>().join(","), 5), Err(TagError::TooMany { max: 5 }));
        for bad in ["", "a b", "é", "a-b", &"x".repeat(65), "a,,b"] {
            assert_eq!(parse_tags(bad, 5), Err(TagError::Malformed), "{bad:?}");
        }
        assert!(valid_tag(&"x".repeat(64)));
    }

    #[test]
    fn invalidations_round_trip_as_json() {
        for inv in [
            Invalidation::Tags { database: "app".into(), tags: vec!["a".into()] },
            Invalidation::All { database: "app".into() },
            Invalidation::Tables { database: "app".into(), tables: vec!["User".into()] },
        ] {
            let text = serde_json::to_string(&inv).unwrap();
            assert_eq!(serde_json::from_str::<Invalidation>(&text).unwrap(), inv);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_n_per_minute_per_database() {
        let l = Limiter::new(2);
        assert!(l.allow("a") && l.allow("a"));
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(l.allow("a"));
    }
}
