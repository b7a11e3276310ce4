//! Server-side SCRAM-SHA-256: `ScramServer::start` on the client-first message and `finish` on
//! the client-final message, plus `ScramVerifier::parse` on the same bytes.
//!
//! Invariants:
//! * no panic;
//! * the server-first message starts with `r=<client nonce>`, adds at least 24 characters of
//!   server nonce and carries the verifier's salt and iteration count;
//! * mode 1: a client that knows the password (proof computed here, independently of the crate)
//!   is accepted and gets the correct server signature, whatever the client-first held;
//! * mode 2: the same proof with one bit flipped is refused (`Ok(None)`), never accepted;
//! * mode 0: fuzzed client-final bytes are never accepted (the fuzzer cannot forge a proof);
//! * a parsed verifier prints and re-parses to itself.
//!
//! Input: [`tidepool_fuzz::format::Scram`].
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tidepool_fuzz::format::Scram;
use tidepool_proto::auth::{ScramServer, ScramVerifier};

const PASSWORD: &str = "pencil";
const ITERATIONS: u32 = 2;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn verifier() -> ScramVerifier {
    ScramVerifier::with_salt(PASSWORD, b"fuzz-salt-16byte".to_vec(), ITERATIONS)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(v) = ScramVerifier::parse(s) {
            assert_eq!(ScramVerifier::parse(&v.to_string()), Some(v));
        }
    }

    let Some(input) = Scram::decode(data) else { return };
    let v = verifier();
    let Ok((server, server_first)) = ScramServer::start(v.clone(), input.client_first) else { return };

    let first = std::str::from_utf8(input.client_first).unwrap();
    let bare = &first[3..];
    let client_nonce = bare.split(',').find_map(|kv| kv.strip_prefix("r=")).unwrap();
    let (nonce, rest) = server_first.strip_prefix("r=").unwrap().split_once(",s=").unwrap();
    assert!(nonce.starts_with(client_nonce) && nonce.len() >= client_nonce.len() + 24);
    assert_eq!(rest, format!("{},i={ITERATIONS}", B64.encode(&v.salt)));

    match input.mode {
        0 => {
            let r = server.finish(input.client_final);
            assert!(!matches!(r, Ok(Some(_))), "a fuzzed client-final was accepted");
        }
        mode => {
            // The client side of RFC 5802, written out here rather than borrowed from the crate.
            let mut salted = [0u8; 32];
            pbkdf2_hmac_sha256(PASSWORD.as_bytes(), &v.salt, ITERATIONS, &mut salted);
            let client_key = hmac(&salted, b"Client Key");
            let stored: [u8; 32] = Sha256::digest(client_key).into();
            let server_key = hmac(&salted, b"Server Key");
            let channel = if input.client_first.starts_with(b"y") { "eSws" } else { "biws" };
            let without_proof = format!("c={channel},r={nonce}");
            let auth = format!("{bare},{server_first},{without_proof}");
            let signature = hmac(&stored, auth.as_bytes());
            let mut proof: Vec<u8> = client_key.iter().zip(signature).map(|(a, b)| a ^ b).collect();
            if mode == 2 {
                let bit = input.client_final.first().copied().unwrap_or(0);
                proof[usize::from(bit >> 3) % 32] ^= 1 << (bit & 7);
            }
            let client_final = format!("{without_proof},p={}", B64.encode(&proof));
            let r = server.finish(client_final.as_bytes()).expect("a well-formed client-final is not an error");
            if mode == 1 {
                let expected = format!("v={}", B64.encode(hmac(&server_key, auth.as_bytes())));
                assert_eq!(r, Some(expected), "the right password was refused");
            } else {
                assert_eq!(r, None, "a wrong proof was accepted");
            }
        }
    }
});

/// PBKDF2-HMAC-SHA-256 with a 32-byte output (one block), independent of the crate's.
fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8; 32]) {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    *out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
}
