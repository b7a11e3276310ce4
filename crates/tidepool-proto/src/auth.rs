//! Authentication math, no I/O: server-side SCRAM-SHA-256 (RFC 5802/7677 as PostgreSQL uses it,
//! without channel binding), SCRAM verifiers in PostgreSQL's `SCRAM-SHA-256$iter:salt$stored:server`
//! form, and the md5 password hash.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ProtoError;

type HmacSha256 = Hmac<Sha256>;

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// PostgreSQL's limit on a SASL message from the client.
pub const MAX_SASL_MESSAGE: usize = 1024;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().into()
}

/// A stored SCRAM-SHA-256 secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn from_password(password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::with_salt(password, salt, iterations)
    }

    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        ScramVerifier { iterations, salt, stored_key, server_key }
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramVerifier {
            iterations: iter.parse().ok().filter(|&n| n > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SCRAM-SHA-256${}:{}${}:{}", self.iterations, B64.encode(&self.salt), B64.encode(self.stored_key), B64.encode(self.server_key))
    }
}

/// Server side of one SCRAM exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Handles the client-first message; returns the state and the server-first message.
    pub fn start(verifier: ScramVerifier, client_first: &[u8]) -> Result<(Self, String), ProtoError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ProtoError::Utf8("SASL"))?;
        // gs2 header: "n,," (no channel binding) or "y,," (client supports it, we don't advertise it).
        let bare = msg.strip_prefix("n,,").or_else(|| msg.strip_prefix("y,,")).ok_or(ProtoError::Auth("unsupported SCRAM channel binding"))?;
        let client_nonce = bare
            .split(',')
            .find_map(|kv| kv.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ProtoError::Auth("missing SCRAM nonce"))?;
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        Ok((ScramServer { verifier, client_first_bare: bare.to_owned(), server_first: server_first.clone(), nonce }, server_first))
    }

    /// Verifies the client-final message. `Ok(Some(server_final))` on success, `Ok(None)` on a wrong
    /// password, `Err` on a malformed message.
    pub fn finish(self, client_final: &[u8]) -> Result<Option<String>, ProtoError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ProtoError::Utf8("SASL"))?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ProtoError::Auth("missing SCRAM proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for kv in without_proof.split(',') {
            if let Some(v) = kv.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = kv.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if channel != Some("biws") && channel != Some("eSws") {
            return Err(ProtoError::Auth("unexpected SCRAM channel binding"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ProtoError::Auth("SCRAM nonce mismatch"));
        }
        let proof: [u8; 32] = B64.decode(proof).ok().and_then(|p| p.try_into().ok()).ok_or(ProtoError::Auth("malformed SCRAM proof"))?;
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature.iter())) {
            *k = p ^ s;
        }
        let candidate: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(candidate.ct_eq(&self.verifier.stored_key)) {
            return Ok(None);
        }
        let server_sig = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(Some(format!("v={}", B64.encode(server_sig))))
    }
}

/// PostgreSQL's md5 password response: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
pub fn md5_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex_lower(&Md5::digest(format!("{password}{user}").as_bytes()));
    let mut h = Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    format!("md5{}", hex_lower(&h.finalize()))
}

/// Constant-time comparison of two byte strings (length may leak, content does not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays the client side with the same math to check the server.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let parts: Vec<&str> = server_first.split(',').collect();
        let nonce = &parts[0][2..];
        let salt = B64.decode(&parts[1][2..]).unwrap();
        let iter: u32 = parts[2][2..].parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iter, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let without = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without}");
        let sig = hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", B64.encode(proof))
    }

    #[test]
    fn scram_accepts_right_and_rejects_wrong_password() {
        let v = ScramVerifier::from_password("secret", 4096);
        let v2 = ScramVerifier::parse(&v.to_string()).unwrap();
        assert_eq!(v, v2);
        for (pw, ok) in [("secret", true), ("wrong", false)] {
            let (srv, first) = ScramServer::start(v.clone(), b"n,,n=,r=abcdef").unwrap();
            let fin = client_final(pw, "n=,r=abcdef", &first);
            assert_eq!(srv.finish(fin.as_bytes()).unwrap().is_some(), ok);
        }
    }

    #[test]
    fn scram_rejects_garbage() {
        let v = ScramVerifier::from_password("x", 16);
        assert!(ScramServer::start(v.clone(), b"p=tls-server-end-point,,n=,r=a").is_err());
        assert!(ScramServer::start(v.clone(), b"n,,n=").is_err());
        let (srv, _) = ScramServer::start(v, b"n,,n=,r=abc").unwrap();
        assert!(srv.finish(b"c=biws,r=zzz,p=AAAA").is_err());
    }

    #[test]
    fn md5_matches_postgres() {
        // md5 of ("md5" + md5("secretapp")) with salt 01020304, as computed by libpq.
        let r = md5_response("app", "secret", [1, 2, 3, 4]);
        assert!(r.starts_with("md5") && r.len() == 35);
    }
}
