//! Client credentials: each configured user's authentication method, with plaintext passwords
//! turned into SCRAM verifiers once at load time, and what an unknown user is shown instead so
//! that it goes through the same exchange as a real one and fails the same way.
//!
//! Unknown users (no user enumeration before authentication):
//! - They are asked for the method most configured password users have (SCRAM-SHA-256 on a tie or
//!   with no password users; md5 if md5 users are the majority), like PostgreSQL asks by its
//!   `password_encryption`. Users of the other method are then told apart from unknown users by
//!   their first authentication request: that residual is inherent while md5 users exist (an md5
//!   client may not speak SCRAM); configure every user with SCRAM to remove it.
//! - The SCRAM salt of an unknown user is HMAC-SHA256(secret, user name), so it is fixed per name
//!   and differs between names, like real users' salts, and its iteration count is the one most
//!   SCRAM users have. The secret is `[server] auth_secret`, or random per process.
//! - md5 salts are random per attempt for every user, so an md5 challenge reveals nothing.
//! - Plaintext checks (`/sql`, pipelined WebSocket logins) run PBKDF2 for every user that is not
//!   trust, known or not, md5 or SCRAM, so they take the same time.
//! - Every password check goes through the failed-login throttle ([`crate::auth_throttle`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tidepool_proto::auth::ScramVerifier;

use crate::auth_throttle::{AuthThrottle, ThrottleSettings};
use crate::config::{ClientAuth, Config};

#[derive(Clone)]
pub enum Credential {
    Scram(ScramVerifier),
    /// `verifier` (derived from the password at load time) checks plaintext passwords, so that
    /// costs the same PBKDF2 time as for SCRAM and unknown users.
    Md5 {
        password: String,
        verifier: ScramVerifier,
    },
    Trust,
}

#[derive(Clone)]
pub struct User {
    pub credential: Credential,
    /// Databases this user may use; empty = all.
    pub databases: Vec<String>,
}

impl User {
    pub fn may_use(&self, db: &str) -> bool {
        self.databases.is_empty() || self.databases.iter().any(|d| d == db)
    }
}

/// How a login is challenged. `known == false`: an unknown user shown a decoy; it always fails.
pub enum Challenge {
    Trust,
    Md5 { password: String, known: bool },
    Scram { verifier: ScramVerifier, known: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownMethod {
    Scram,
    Md5,
}

/// The part of the store a reload replaces.
struct Accounts {
    users: HashMap<String, User>,
    decoy_iterations: u32,
    unknown_method: UnknownMethod,
}

pub struct UserStore {
    /// Replaced whole by [`UserStore::reload`].
    accounts: parking_lot::RwLock<Arc<Accounts>>,
    /// Keys the decoy salts of unknown users.
    secret: Vec<u8>,
    decoy_password: String,
    /// Failed-login throttle for every password check.
    pub throttle: AuthThrottle,
    /// Keyed digests of (user, password) pairs already verified, so HTTP requests that carry a
    /// password do not run PBKDF2 every time. Only successes are cached; bounded.
    verified: parking_lot::Mutex<std::collections::HashSet<[u8; 32]>>,
    cache_key: [u8; 32],
}

const VERIFIED_CACHE_MAX: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl UserStore {
    pub fn from_config(config: &Config) -> Self {
        let iterations = config.server.scram_iterations;
        let users: HashMap<String, User> = config
            .users
            .iter()
            .map(|u| {
                let credential = match (u.auth, &u.password, &u.scram_verifier) {
                    (ClientAuth::Trust, _, _) => Credential::Trust,
                    (ClientAuth::Md5, Some(p), _) => Credential::Md5 { password: p.clone(), verifier: ScramVerifier::from_password(p, iterations) },
                    (_, _, Some(v)) => Credential::Scram(ScramVerifier::parse(v).unwrap_or_else(|| ScramVerifier::from_password(&rand_password(), 1))),
                    (_, Some(p), None) => Credential::Scram(ScramVerifier::from_password(p, iterations)),
                    (_, None, None) => Credential::Trust,
                };
                (u.name.clone(), User { credential, databases: u.databases.clone() })
            })
            .collect();
        // The iteration count most SCRAM users have (ties: the larger), else the configured one.
        let mut counts: HashMap<u32, usize> = HashMap::new();
        let (mut scram, mut md5) = (0, 0);
        for u in users.values() {
            match &u.credential {
                Credential::Scram(v) => {
                    scram += 1;
                    *counts.entry(v.iterations).or_default() += 1;
                }
                Credential::Md5 { .. } => md5 += 1,
                Credential::Trust => {}
            }
        }
        let decoy_iterations = counts.into_iter().max_by_key(|&(it, n)| (n, it)).map_or(iterations, |(it, _)| it);
        let unknown_method = if md5 > scram { UnknownMethod::Md5 } else { UnknownMethod::Scram };
        let secret = match &config.server.auth_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut k);
                k
            }
        };
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut cache_key);
        UserStore {
            accounts: parking_lot::RwLock::new(Arc::new(Accounts { users, decoy_iterations, unknown_method })),
            secret,
            decoy_password: rand_password(),
            throttle: AuthThrottle::new(ThrottleSettings::from_config(&config.server)),
            verified: Default::default(),
            cache_key,
        }
    }

    /// Registers this store's metrics (the throttle counter); returns the store.
    pub fn registered(self, registry: &mut prometheus_client::registry::Registry) -> Self {
        self.throttle.register(registry);
        self
    }

    /// Takes the users (names, credentials, databases) of a reloaded config; passwords verified
    /// before are forgotten, so a changed password is needed from the next login on.
    pub fn reload(&self, config: &Config) {
        let fresh = UserStore::from_config(config).accounts.into_inner();
        *self.accounts.write() = fresh;
        self.verified.lock().clear();
    }

    fn accounts(&self) -> Arc<Accounts> {
        self.accounts.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<User> {
        self.accounts().users.get(name).cloned()
    }

    /// The method unknown users are asked for.
    pub fn unknown_method(&self) -> UnknownMethod {
        self.accounts().unknown_method
    }

    /// The SCRAM verifier shown for an unknown user: a salt fixed per name (keyed by the server
    /// secret), the usual iteration count, and keys no password matches.
    pub fn decoy(&self, name: &str) -> ScramVerifier {
        let salt = hmac(&self.secret, &[b"decoy salt", name.as_bytes()])[..16].to_vec();
        let stored_key = hmac(&self.secret, &[b"decoy stored key", name.as_bytes()]);
        let server_key = hmac(&self.secret, &[b"decoy server key", name.as_bytes()]);
        ScramVerifier { iterations: self.accounts().decoy_iterations, salt, stored_key, server_key }
    }

    /// How to challenge a login by `name`.
    pub fn challenge(&self, name: &str) -> Challenge {
        let accounts = self.accounts();
        match accounts.users.get(name).map(|u| &u.credential) {
            Some(Credential::Trust) => Challenge::Trust,
            Some(Credential::Md5 { password, .. }) => Challenge::Md5 { password: password.clone(), known: true },
            Some(Credential::Scram(v)) => Challenge::Scram { verifier: v.clone(), known: true },
            None => match accounts.unknown_method {
                UnknownMethod::Scram => Challenge::Scram { verifier: self.decoy(name), known: false },
                UnknownMethod::Md5 => Challenge::Md5 { password: self.decoy_password.clone(), known: false },
            },
        }
    }

    fn cache_token(&self, name: &str, password: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks a plaintext password without blocking the runtime: a pair verified before is
    /// answered from the cache; otherwise the failed-login throttle for (`client`, `name`) is
    /// applied (possibly an async delay, or a refusal = `false`) and PBKDF2 runs on a blocking
    /// thread. `client` is the client's IP address when the transport knows it.
    pub async fn verify_password(&self, client: Option<IpAddr>, name: &str, password: &str) -> bool {
        let token = self.cache_token(name, password);
        if self.verified.lock().contains(&token) {
            return true;
        }
        let credential = self.get(name).map(|u| u.credential);
        if matches!(credential, Some(Credential::Trust)) {
            return true;
        }
        let Some(attempt) = self.throttle.admit(client, name).await else { return false };
        let decoy = self.decoy(name);
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || check_credential(credential.as_ref(), &decoy, &password)).await.unwrap_or(false);
        if ok {
            attempt.success();
            let mut v = self.verified.lock();
            if v.len() >= VERIFIED_CACHE_MAX {
                v.clear();
            }
            v.insert(token);
        } else {
            attempt.failure();
        }
        ok
    }

    /// Checks a plaintext password against the user's credential (runs PBKDF2; no throttle).
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        check_credential(self.get(name).map(|u| u.credential).as_ref(), &self.decoy(name), password)
    }
}

fn check_credential(credential: Option<&Credential>, decoy: &ScramVerifier, password: &str) -> bool {
    let (verifier, known) = match credential {
        Some(Credential::Trust) => return true,
        Some(Credential::Md5 { verifier, .. }) | Some(Credential::Scram(verifier)) => (verifier, true),
        None => (decoy, false),
    };
    let candidate = ScramVerifier::with_salt(password, verifier.salt.clone(), verifier.iterations);
    tidepool_proto::auth::ct_eq(&candidate.stored_key, &verifier.stored_key) & known
}

fn rand_password() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(users: &str, server: &str) -> UserStore {
        let toml = format!("[server]\n{server}\n[[databases]]\nname = \"app\"\nurl = \"postgres://u@127.0.0.1:5432/app\"\n{users}");
        UserStore::from_config(&Config::from_toml(&toml, std::iter::empty::<(String, String)>()).unwrap())
    }

    const MIXED: &str = "[[users]]\nname = \"alice\"\npassword = \"a\"\n[[users]]\nname = \"bob\"\nauth = \"md5\"\npassword = \"b\"\n";

    #[test]
    fn unknown_users_get_a_stable_per_name_salt_with_the_usual_iterations() {
        let s = store(MIXED, "scram_iterations = 1000");
        let (a, b) = (s.decoy("mallory"), s.decoy("trudy"));
        assert_eq!(a, s.decoy("mallory"));
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.salt.len(), 16);
        assert_eq!(a.iterations, 1000);
        let Challenge::Scram { verifier, known: true } = s.challenge("alice") else { panic!("alice is SCRAM") };
        assert_eq!(verifier.iterations, a.iterations);
        assert_eq!(verifier.salt.len(), a.salt.len());
        assert!(matches!(s.challenge("mallory"), Challenge::Scram { known: false, .. }));
        // Another process: another salt, unless the secret is configured.
        assert_ne!(store(MIXED, "").decoy("mallory").salt, a.salt);
        let secret = "auth_secret = \"0123456789abcdef0123\"";
        assert_eq!(store(MIXED, secret).decoy("mallory").salt, store(MIXED, secret).decoy("mallory").salt);
    }

    #[test]
    fn unknown_users_get_the_majority_method() {
        assert_eq!(store(MIXED, "").unknown_method(), UnknownMethod::Scram);
        assert_eq!(store("", "").unknown_method(), UnknownMethod::Scram);
        let md5 = "[[users]]\nname = \"bob\"\nauth = \"md5\"\npassword = \"b\"\n";
        let s = store(md5, "");
        assert_eq!(s.unknown_method(), UnknownMethod::Md5);
        assert!(matches!(s.challenge("mallory"), Challenge::Md5 { known: false, .. }));
    }

    #[test]
    fn plaintext_checks_cover_every_method() {
        let s = store(MIXED, "scram_iterations = 64");
        assert!(s.check_password("alice", "a"));
        assert!(!s.check_password("alice", "b"));
        assert!(s.check_password("bob", "b"));
        assert!(!s.check_password("bob", "a"));
        assert!(!s.check_password("mallory", ""));
    }
}
