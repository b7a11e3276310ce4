//! Protocol-level prepared statements in transaction mode: each client's named statements are
//! virtualised. A client name maps to a server name derived from a hash of the query text and
//! parameter types (`tp_<hash>`), so identical statements are shared across clients, and a
//! statement is (re)created on whichever server connection the client gets, right before it is
//! needed.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A statement a client prepared.
#[derive(Debug, Clone)]
pub struct Statement {
    pub server_name: String,
    pub query: String,
    pub param_types: Vec<u32>,
    /// Executing it may leave session state behind (see [`crate::checkin::leaves_session_state`]).
    pub stateful: bool,
}

impl Statement {
    pub fn new(query: &str, param_types: &[u32], utf8_client: bool) -> Self {
        let mut h = Sha256::new();
        h.update(query.as_bytes());
        for t in param_types {
            h.update(t.to_be_bytes());
        }
        let digest = h.finalize();
        Statement {
            server_name: format!("tp_{}", hex::encode(&digest[..16])),
            query: query.to_owned(),
            param_types: param_types.to_vec(),
            stateful: crate::checkin::leaves_session_state(query.as_bytes(), utf8_client),
        }
    }
}

/// The statements one client has prepared, by the client's own names.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<String, Statement>,
}

impl ClientStatements {
    pub fn get(&self, name: &str) -> Option<&Statement> {
        self.by_name.get(name)
    }
    pub fn insert(&mut self, name: &str, stmt: Statement) {
        self.by_name.insert(name.to_owned(), stmt);
    }
    pub fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// One expected ParseComplete (or a ReadyForQuery boundary) in the order the server will answer.
#[derive(Debug)]
pub enum Pending {
    Parse {
        /// Server statement created by this Parse (to forget if it never completes).
        server_name: Option<String>,
        /// Client statement to forget if this Parse fails.
        client_name: Option<String>,
        /// tidepool injected this Parse: its ParseComplete is not the client's.
        injected: bool,
    },
    /// A client Parse of a statement the server already has: tidepool sent a Close of a statement
    /// that does not exist instead, and turns its CloseComplete into the client's ParseComplete
    /// (an unnamed Parse would have replaced the client's own unnamed statement).
    ParseStandIn { client_name: String },
    /// A client Close: answered by CloseComplete.
    Close,
    /// A Sync message: answered by ReadyForQuery, unless it reaches the server during
    /// COPY FROM STDIN (ignored there).
    Sync,
    /// A Query or FunctionCall: answered by ReadyForQuery.
    Query,
    /// The client ended a COPY FROM STDIN (CopyDone/CopyFail) before the server's CopyInResponse
    /// was seen: Syncs queued before this marker were sent during the COPY.
    CopyEnd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_query_same_name_and_types_matter() {
        let a = Statement::new("select $1", &[23], true);
        let b = Statement::new("select $1", &[23], true);
        let c = Statement::new("select $1", &[25], true);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert!(a.server_name.len() < 64);
    }
}
