//! Front ends: each translates one client protocol onto the shared pools, nothing more.

pub mod http;
pub mod pg;
