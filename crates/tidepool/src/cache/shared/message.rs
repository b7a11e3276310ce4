//! The invalidation broadcast's wire format: one small JSON object per message on the channel
//! `tidepool:v1:invalidate`, carrying the sending node's id so a node ignores its own messages.
//!
//! `{"v":1,"node":"3f…","kind":"tags","db":"app","names":["users"]}` (`kind` = `tags`, `all` or
//! `tables`; `names` empty for `all`). Anything else on the channel, of any size, is ignored.

use serde::{Deserialize, Serialize};

use crate::cache::Invalidation;

/// The pub/sub channel.
pub(crate) const CHANNEL: &str = "tidepool:v1:invalidate";
/// Largest message decoded (a legitimate one names at most a few hundred tags or tables).
pub(crate) const MAX_MESSAGE: usize = 64 << 10;
/// Most names accepted in one message.
const MAX_NAMES: usize = 1024;
const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Tags,
    All,
    Tables,
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    v: u32,
    node: String,
    kind: Kind,
    db: String,
    #[serde(default)]
    names: Vec<String>,
}

/// The message announcing `event` from node `node`.
pub(crate) fn encode(node: &str, event: &Invalidation) -> Vec<u8> {
    let (kind, db, names) = match event {
        Invalidation::Tags { database, tags } => (Kind::Tags, database, tags.clone()),
        Invalidation::All { database } => (Kind::All, database, Vec::new()),
        Invalidation::Tables { database, tables } => (Kind::Tables, database, tables.clone()),
    };
    let wire = Wire { v: VERSION, node: node.to_owned(), kind, db: db.clone(), names };
    // Serialising plain strings cannot fail; an empty message would be ignored by receivers.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The sender and the event of a message, or `None` if it is not a valid message.
pub(crate) fn decode(bytes: &[u8]) -> Option<(String, Invalidation)> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    // serde_json bounds its own recursion (128 levels), so hostile nesting is an error, not a crash.
    let wire: Wire = serde_json::from_slice(bytes).ok()?;
    if wire.v != VERSION || wire.names.len() > MAX_NAMES {
        return None;
    }
    let event = match wire.kind {
        Kind::Tags => Invalidation::Tags { database: wire.db, tags: wire.names },
        Kind::All => Invalidation::All { database: wire.db },
        Kind::Tables => Invalidation::Tables { database: wire.db, tables: wire.names },
    };
    Some((wire.node, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Invalidation> {
        let names = proptest::collection::vec(".{0,20}", 0..8);
        prop_oneof![
            (".{0,30}", names.clone()).prop_map(|(database, tags)| Invalidation::Tags { database, tags }),
            ".{0,30}".prop_map(|database| Invalidation::All { database }),
            (".{0,30}", names).prop_map(|(database, tables)| Invalidation::Tables { database, tables }),
        ]
    }

    #[test]
    fn known_messages() {
        let ev = Invalidation::Tags { database: "app".into(), tags: vec!["users".into()] };
        let raw = encode("n1", &ev);
        assert_eq!(std::str::from_utf8(&raw).unwrap(), r#"{"v":1,"node":"n1","kind":"tags","db":"app","names":["users"]}"#);
        assert_eq!(decode(br#"{"v":1,"node":"n2","kind":"all","db":"app"}"#), Some(("n2".into(), Invalidation::All { database: "app".into() })));
        // Another version, an unknown kind, too many names, too large, not JSON: ignored.
        assert_eq!(decode(br#"{"v":2,"node":"n2","kind":"all","db":"app"}"#), None);
        assert_eq!(decode(br#"{"v":1,"node":"n2","kind":"some","db":"app"}"#), None);
        let many = format!(r#"{{"v":1,"node":"n","kind":"tags","db":"a","names":[{}]}}"#, vec!["\"t\""; MAX_NAMES + 1].join(","));
        assert_eq!(decode(many.as_bytes()), None);
        let big = format!(r#"{{"v":1,"node":"{}","kind":"all","db":"a"}}"#, "n".repeat(MAX_MESSAGE));
        assert_eq!(decode(big.as_bytes()), None);
        assert_eq!(decode(&[b'['; 10_000]), None);
        assert_eq!(decode(b"\xff\xfe"), None);
    }

    proptest! {
        #[test]
        fn round_trip(node in "[0-9a-f]{16}", ev in event()) {
            prop_assert_eq!(decode(&encode(&node, &ev)), Some((node, ev)));
        }

        #[test]
        fn decode_of_arbitrary_bytes_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode(&raw);
        }

        #[test]
        fn decode_of_json_like_text_never_panics(raw in r#"[{}\[\]":,0-9a-z ]{0,512}"#) {
            let _ = decode(raw.as_bytes());
        }
    }
}
