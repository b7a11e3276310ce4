//! Test support for tidepool's integration tests.
//!
//! The centre piece is [`TestCluster`]: a throwaway PostgreSQL cluster created
//! with `initdb` in a temporary directory, listening on a free `127.0.0.1` port
//! (and a unix socket inside that directory), tuned for speed (`fsync=off`,
//! ...), with one login role per password authentication method:
//!
//! | role          | `pg_hba.conf` method | password            | stored as            |
//! |---------------|----------------------|---------------------|----------------------|
//! | `scram_user`  | `scram-sha-256`      | [`SCRAM_PASSWORD`]  | SCRAM-SHA-256 verifier |
//! | `md5_user`    | `md5`                | [`MD5_PASSWORD`]    | md5 hash             |
//! | `pass_user`   | `password` (cleartext) | [`PASS_PASSWORD`] | SCRAM-SHA-256 verifier |
//! | `trust_user`  | `trust`              | [`TRUST_PASSWORD`] (ignored) | SCRAM verifier |
//! | `postgres`    | `trust` (superuser)  | none                | -                    |
//!
//! Any other role (created by a test) matches a final `md5` row, which means
//! "md5 if the role has an md5 hash, SCRAM if it has a SCRAM verifier".
//!
//! # Sharing
//!
//! Starting a cluster costs about one second (initdb + start), so the default
//! is **one cluster per test binary**: [`TestCluster::shared`] lazily starts it
//! on first use and every test creates its own database in it
//! ([`TestCluster::create_database`] / [`TestCluster::unique_database`]).
//! The shared cluster is never stopped or restarted by tests; it is killed
//! (and its directory removed) by a watchdog process when the test binary
//! exits, however it exits.
//!
//! Tests that stop, restart or reconfigure Postgres must own a cluster:
//! [`TestCluster::start`] (or [`TestCluster::builder`]) gives one whose `Drop`
//! stops it (`pg_ctl stop -m immediate`) and deletes its directory.
//!
//! Nothing runtime-bound is stored in a cluster (all process management uses
//! `std::process` on blocking threads), so a cluster started inside one
//! `#[tokio::test]` runtime can be used from any other.
//!
//! # Running as root
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run as root. When the test
//! process is root, the server commands are run as an unprivileged OS user
//! (see [`os_user`]): `$TIDEPOOL_TEST_PG_OS_USER` if set, else `postgres` if it
//! exists, else a system user `tidepool-pg` created with `useradd`, else
//! `nobody`. The privilege drop uses `std::os::unix::process::CommandExt::{uid,gid}`
//! (no `su`/`runuser` needed), and the temporary directory is `chown`ed to
//! that user.
//!
//! # Redis
//!
//! [`TestRedis`] starts a throwaway `redis-server` on a free port (for the shared cache tier's
//! tests); killed on drop, with kill/restart for failure tests.
//!
//! # Binaries
//!
//! `$TIDEPOOL_PG_BIN_DIR` if set; else the directory of `initdb` found on
//! `PATH` (symlinks resolved); else the highest `/usr/lib/postgresql/*/bin`
//! (then `/usr/local/pgsql/bin`). See [`pg_bin_dir`].

mod bins;
mod cluster;
mod os_user;
mod redis;
mod tls;
mod util;

pub use bins::{pg_bin, pg_bin_dir};
pub use cluster::{BackendFilter, ClusterBuilder, StopMode, TestCluster, TESTKIT_APP_NAME};
pub use os_user::{os_user, OsUser};
pub use redis::TestRedis;
pub use tls::{self_signed_cert, test_pki, TestPki};
pub use util::{free_port, run_pgbench, run_psql, CmdOutput};

/// Superuser role (trust authentication, no password).
pub const SUPERUSER: &str = "postgres";

/// Role authenticated with `scram-sha-256`.
pub const SCRAM_USER: &str = "scram_user";
/// Password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "scram_secret";

/// Role authenticated with `md5` (its password is stored as an md5 hash).
pub const MD5_USER: &str = "md5_user";
/// Password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5_secret";

/// Role authenticated with `password` (cleartext password on the wire).
pub const PASS_USER: &str = "pass_user";
/// Password of [`PASS_USER`].
pub const PASS_PASSWORD: &str = "pass_secret";

/// Role authenticated with `trust` (any or no password is accepted).
pub const TRUST_USER: &str = "trust_user";
/// Password set on [`TRUST_USER`] (irrelevant to `trust`, but useful when a
/// proxy in front wants to check one).
pub const TRUST_PASSWORD: &str = "trust_secret";

/// The known password of one of the predefined roles (`None` for the
/// superuser and for unknown roles).
pub fn known_password(user: &str) -> Option<&'static str> {
    match user {
        SCRAM_USER => Some(SCRAM_PASSWORD),
        MD5_USER => Some(MD5_PASSWORD),
        PASS_USER => Some(PASS_PASSWORD),
        TRUST_USER => Some(TRUST_PASSWORD),
        _ => None,
    }
}

/// All predefined non-superuser roles with their password and `pg_hba.conf`
/// method: `(user, password, method)`.
pub const AUTH_ROLES: [(&str, &str, &str); 4] = [
    (SCRAM_USER, SCRAM_PASSWORD, "scram-sha-256"),
    (MD5_USER, MD5_PASSWORD, "md5"),
    (PASS_USER, PASS_PASSWORD, "password"),
    (TRUST_USER, TRUST_PASSWORD, "trust"),
];
