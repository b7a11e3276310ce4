//! Client credentials: each configured user's authentication method, with plaintext passwords
//! turned into SCRAM verifiers once at load time, plus a decoy verifier so unknown users go
//! through the same exchange as known ones and fail the same way.

use std::collections::HashMap;

use tidepool_proto::auth::ScramVerifier;

use crate::config::{ClientAuth, Config};

#[derive(Clone)]
pub enum Credential {
    Scram(ScramVerifier),
    Md5 { password: String },
    Trust,
}

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

pub struct UserStore {
    users: HashMap<String, User>,
    pub decoy: ScramVerifier,
    /// Keyed digests of (user, password) pairs already verified, so HTTP requests that carry a
    /// password do not run PBKDF2 every time. Only successes are cached; bounded.
    verified: parking_lot::Mutex<std::collections::HashSet<[u8; 32]>>,
    cache_key: [u8; 32],
}

const VERIFIED_CACHE_MAX: usize = 10_000;

impl UserStore {
    pub fn from_config(config: &Config) -> Self {
        let iterations = config.server.scram_iterations;
        let users = config
            .users
            .iter()
            .map(|u| {
                let credential = match (u.auth, &u.password, &u.scram_verifier) {
                    (ClientAuth::Trust, _, _) => Credential::Trust,
                    (ClientAuth::Md5, Some(p), _) => Credential::Md5 { password: p.clone() },
                    (_, _, Some(v)) => Credential::Scram(ScramVerifier::parse(v).unwrap_or_else(|| ScramVerifier::from_password("", 1))),
                    (_, Some(p), None) => Credential::Scram(ScramVerifier::from_password(p, iterations)),
                    (_, None, None) => Credential::Trust,
                };
                (u.name.clone(), User { credential, databases: u.databases.clone() })
            })
            .collect();
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut cache_key);
        UserStore { users, decoy: ScramVerifier::from_password(&rand_password(), iterations), verified: Default::default(), cache_key }
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    fn cache_token(&self, name: &str, password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks a plaintext password without blocking the runtime: a pair verified before is
    /// answered from the cache; otherwise PBKDF2 runs on a blocking thread.
    pub async fn verify_password(&self, name: &str, password: &str) -> bool {
        let token = self.cache_token(name, password);
        if self.verified.lock().contains(&token) {
            return true;
        }
        let credential = self.users.get(name).map(|u| u.credential.clone());
        let decoy = self.decoy.clone();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || check_credential(credential.as_ref(), &decoy, &password)).await.unwrap_or(false);
        if ok {
            let mut v = self.verified.lock();
            if v.len() >= VERIFIED_CACHE_MAX {
                v.clear();
            }
            v.insert(token);
        }
        ok
    }

    /// Checks a plaintext password against the user's credential (runs PBKDF2 for SCRAM users).
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        check_credential(self.users.get(name).map(|u| &u.credential), &self.decoy, password)
    }
}

fn check_credential(credential: Option<&Credential>, decoy: &ScramVerifier, password: &str) -> bool {
    match credential {
        Some(Credential::Trust) => true,
        Some(Credential::Md5 { password: p }) => tidepool_proto::auth::ct_eq(p.as_bytes(), password.as_bytes()),
        Some(Credential::Scram(v)) => {
            let candidate = ScramVerifier::with_salt(password, v.salt.clone(), v.iterations);
            tidepool_proto::auth::ct_eq(&candidate.stored_key, &v.stored_key)
        }
        None => {
            let _ = ScramVerifier::with_salt(password, decoy.salt.clone(), decoy.iterations);
            false
        }
    }
}

fn rand_password() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}
