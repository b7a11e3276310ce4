//! Sans-IO PostgreSQL v3 wire protocol for tidepool.
//!
//! This crate owns everything about bytes on the wire and nothing about sockets: framing with
//! declared-length limits checked *before* any allocation ([`framing`]), the startup-phase packets
//! ([`startup`]), client messages ([`frontend`]), server messages ([`backend`]), and the
//! authentication math (server-side SCRAM-SHA-256 and md5, [`auth`]). No tokio, no I/O: callers feed
//! bytes in and get typed messages out, so every parser here can be property-tested and fuzzed.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod auth;
pub mod backend;
pub mod error;
pub mod framing;
pub mod frontend;
mod read;
pub mod startup;
pub mod websocket;

pub use error::ProtoError;
pub use framing::{Frame, Limits};

/// SQLSTATE codes tidepool itself emits.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CONNECTION_EXCEPTION: &str = "08000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
}
