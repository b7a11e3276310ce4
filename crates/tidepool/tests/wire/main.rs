//! Integration tests of tidepool's Postgres wire front end against a real PostgreSQL (the
//! testkit's throwaway clusters): tidepool runs in-process, each test with its own config and its
//! own database.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod raw;

mod auth;
mod bad_input;
mod console;
mod copy;
mod failures;
mod hardening;
mod isolation;
mod lifecycle;
mod load;
mod ops;
mod prepared;
mod protocol;
mod tls;
mod tools;
mod upstream_tls;
