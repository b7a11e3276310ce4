//! Client credentials: each configured user's authentication method, with plaintext passwords
//! turned into SCRAM verifiers once at load time, plus a decoy verifier so unknown users go
//! through the same exchange as known ones and fail the same way.

use std::collections::HashMap;

use tidepool_proto::auth::ScramVerifier;

use crate::config::{ClientAuth, Config};

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
}

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
        UserStore { users, decoy: ScramVerifier::from_password(&rand_password(), iterations) }
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Checks a plaintext password (HTTP front ends) against the user's credential.
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        match self.users.get(name).map(|u| &u.credential) {
            Some(Credential::Trust) => true,
            Some(Credential::Md5 { password: p }) => tidepool_proto::auth::ct_eq(p.as_bytes(), password.as_bytes()),
            Some(Credential::Scram(v)) => {
                let candidate = ScramVerifier::with_salt(password, v.salt.clone(), v.iterations);
                tidepool_proto::auth::ct_eq(&candidate.stored_key, &v.stored_key)
            }
            None => {
                let _ = ScramVerifier::with_salt(password, self.decoy.salt.clone(), self.decoy.iterations);
                false
            }
        }
    }
}

fn rand_password() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}
