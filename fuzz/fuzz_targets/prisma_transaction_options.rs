//! `tidepool_prisma::TransactionOptions::parse` (body of `/transaction/start`) and
//! `TransactionOptions::isolation`.
//!
//! Invariants: no panic; whitespace-only bodies give the defaults; an isolation level is either
//! one of the four PostgreSQL levels or a P2028 error whose body is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_prisma::{json, TransactionOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(options) = TransactionOptions::parse(data) else { return };
    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(options, TransactionOptions::default());
    }
    match options.isolation() {
        Ok(Some(level)) => assert!(["READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"].contains(&level.as_sql())),
        Ok(None) => assert!(options.isolation_level.is_none()),
        Err(e) => {
            assert_eq!(e.code(), "P2028");
            json::parse(e.body_json().as_bytes(), 1000).expect("error body is JSON");
        }
    }
});
