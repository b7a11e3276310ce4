//! Names that change session state wherever they appear in a statement (outside strings and
//! comments): the [`Hazards`] bit set and the function-name table behind it.
//!
//! Matching is ASCII case-insensitive for quoted names too (a false positive only costs a reset),
//! and by prefix for families (`pg_advisory_lock_shared`, `dblink_connect_u`, `pg_temp_3`).

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Things found in a statement that make it leave (or possibly leave) session state behind,
/// independent of what kind of statement it is, plus two kind modifiers.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Hazards(u16);

impl Hazards {
    pub const NONE: Self = Self(0);
    /// `set_config(…)` (any schema, any quoting).
    pub const SET_CONFIG: Self = Self(1);
    /// A session-level advisory lock function: `pg_advisory_lock*`, `pg_try_advisory_lock*`,
    /// `pg_advisory_unlock*` (not the `_xact_` ones, which end with the transaction).
    pub const ADVISORY_LOCK: Self = Self(1 << 1);
    /// `dblink_connect*`: a named remote connection that outlives the transaction.
    pub const DBLINK_CONNECT: Self = Self(1 << 2);
    /// A function that runs SQL given as a string (`query_to_xml*`, `ts_stat`, `ts_rewrite`,
    /// `crosstab*`, `connectby`): the string could hold anything.
    pub const DYNAMIC_SQL: Self = Self(1 << 3);
    /// Another function with session effects: `setseed`, replication slots/origins.
    pub const SESSION_FUNCTION: Self = Self(1 << 4);
    /// A `pg_temp*` name: an object created or moved into the temporary schema.
    pub const TEMP_SCHEMA: Self = Self(1 << 5);
    /// A `U&"…"` identifier with escapes, or a `UESCAPE` clause: a name the lexer cannot read.
    pub const OPAQUE_IDENTIFIER: Self = Self(1 << 6);
    /// `INTO [LOCAL|GLOBAL] TEMP[ORARY]` (only kept on query statements: `SELECT … INTO TEMP t`).
    pub const INTO_TEMP: Self = Self(1 << 7);
    /// `WITH HOLD` before `FOR` (only kept on `DECLARE`).
    pub const WITH_HOLD: Self = Self(1 << 8);

    /// The bits that make any statement state-changing.
    pub const STATEFUL: Self = Self(0x7f);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitOr for Hazards {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Hazards {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Hazards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Hazards, &str); 9] = [
            (Hazards::SET_CONFIG, "SET_CONFIG"),
            (Hazards::ADVISORY_LOCK, "ADVISORY_LOCK"),
            (Hazards::DBLINK_CONNECT, "DBLINK_CONNECT"),
            (Hazards::DYNAMIC_SQL, "DYNAMIC_SQL"),
            (Hazards::SESSION_FUNCTION, "SESSION_FUNCTION"),
            (Hazards::TEMP_SCHEMA, "TEMP_SCHEMA"),
            (Hazards::OPAQUE_IDENTIFIER, "OPAQUE_IDENTIFIER"),
            (Hazards::INTO_TEMP, "INTO_TEMP"),
            (Hazards::WITH_HOLD, "WITH_HOLD"),
        ];
        let mut list = f.debug_set();
        for (bit, name) in NAMES {
            if self.contains(bit) {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

/// ASCII case-insensitive equality of a name with a lowercase word.
pub(crate) fn eq_word(name: &[u8], word: &str) -> bool {
    name.eq_ignore_ascii_case(word.as_bytes())
}

fn starts_word(name: &[u8], prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The hazard a name (an identifier's text, quotes removed) stands for, if any.
pub(crate) fn name_hazard(name: &[u8]) -> Hazards {
    // Cheap filter: every name below is at least 7 bytes and starts with one of these letters.
    let Some(first) = name.first() else { return Hazards::NONE };
    if name.len() < 7 || !matches!(first.to_ascii_lowercase(), b'c' | b'd' | b'p' | b'q' | b's' | b't') {
        return Hazards::NONE;
    }
    if eq_word(name, "set_config") {
        Hazards::SET_CONFIG
    } else if starts_word(name, "pg_advisory_lock") || starts_word(name, "pg_try_advisory_lock") || starts_word(name, "pg_advisory_unlock") {
        Hazards::ADVISORY_LOCK
    } else if starts_word(name, "dblink_connect") {
        Hazards::DBLINK_CONNECT
    } else if starts_word(name, "query_to_xml")
        || eq_word(name, "ts_stat")
        || eq_word(name, "ts_rewrite")
        || starts_word(name, "crosstab")
        || eq_word(name, "connectby")
    {
        Hazards::DYNAMIC_SQL
    } else if eq_word(name, "setseed")
        || starts_word(name, "pg_replication_origin_session_")
        || eq_word(name, "pg_create_logical_replication_slot")
        || eq_word(name, "pg_create_physical_replication_slot")
    {
        Hazards::SESSION_FUNCTION
    } else if starts_word(name, "pg_temp") {
        Hazards::TEMP_SCHEMA
    } else {
        Hazards::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(name_hazard(b"SET_CONFIG"), Hazards::SET_CONFIG);
        assert_eq!(name_hazard(b"pg_advisory_lock_shared"), Hazards::ADVISORY_LOCK);
        assert_eq!(name_hazard(b"pg_try_advisory_lock"), Hazards::ADVISORY_LOCK);
        assert_eq!(name_hazard(b"pg_advisory_unlock_all"), Hazards::ADVISORY_LOCK);
        assert_eq!(name_hazard(b"pg_advisory_xact_lock"), Hazards::NONE);
        assert_eq!(name_hazard(b"pg_try_advisory_xact_lock_shared"), Hazards::NONE);
        assert_eq!(name_hazard(b"dblink_connect_u"), Hazards::DBLINK_CONNECT);
        assert_eq!(name_hazard(b"pg_temp_3"), Hazards::TEMP_SCHEMA);
        assert_eq!(name_hazard(b"settings"), Hazards::NONE);
        assert_eq!(format!("{:?}", Hazards::SET_CONFIG | Hazards::WITH_HOLD), "{SET_CONFIG, WITH_HOLD}");
    }
}
