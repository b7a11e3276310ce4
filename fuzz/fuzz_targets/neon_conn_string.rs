//! `tidepool_neon::ConnectionString::parse` on arbitrary text (the `Neon-Connection-String`
//! header).
//!
//! Invariants:
//! * no panic;
//! * an accepted string has a non-empty user and database, neither containing NUL, and a
//!   password that is `None` or non-empty;
//! * `Debug` never shows the password (checked when the password is distinctive enough not to
//!   appear by chance in the other fields);
//! * percent-encoding the parsed user, password and database into a fresh connection string
//!   parses back to the same values (the decoder and a standard encoder agree);
//! * `startup_params` only yields forwarded parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool_neon::{ConnectionString, FORWARDED_PARAMS};

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(c) = ConnectionString::parse(&text) else { return };
    assert!(!c.user.is_empty() && !c.user.contains('\0'));
    assert!(!c.database.is_empty() && !c.database.contains('\0'));
    if let Some(p) = &c.password {
        assert!(!p.as_bytes().is_empty());
        let shown = format!("{c:?}");
        let secret = String::from_utf8_lossy(p.as_bytes());
        // Only a password that does not show up anyway (in the user, host, port…) can be checked.
        let without = ConnectionString { password: None, ..c.clone() };
        let elsewhere = format!("{without:?} Password(<redacted>)");
        if secret.len() >= 4 && !elsewhere.contains(&*secret) {
            assert!(!shown.contains(&*secret), "Debug output leaks the password");
        }
    }
    for (k, _) in c.startup_params() {
        assert!(FORWARDED_PARAMS.contains(&k));
    }

    let password = c.password.as_ref().map(|p| format!(":{}", encode(p.as_bytes()))).unwrap_or_default();
    let rebuilt = format!("postgresql://{}{password}@host/{}", encode(c.user.as_bytes()), encode(c.database.as_bytes()));
    let again = ConnectionString::parse(&rebuilt).unwrap_or_else(|e| panic!("{rebuilt:?} does not parse: {e}"));
    assert_eq!(again.user, c.user);
    assert_eq!(again.password, c.password);
    assert_eq!(again.database, c.database);
});
