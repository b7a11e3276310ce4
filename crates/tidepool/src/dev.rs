//! `tidepool dev`: the embedded default. Creates (first run) and starts a local PostgreSQL cluster
//! from the installed binaries under `./.tidepool/`, on a free port, puts tidepool in front of it
//! with a generated dev user, prints ready-to-paste connection strings, and stops both on
//! Ctrl-C / SIGTERM. The next run reuses the data. `--upstream` uses an existing server instead.
//!
//! Nothing in `./.tidepool/` is readable by other local users: the directory is 0700 and the
//! secrets (dev user password, dev API key, the cluster's superuser password, the TLS key) are
//! created 0600. The local cluster asks every role for its password (SCRAM-SHA-256), the
//! `postgres` superuser included, on TCP and on its Unix socket; tidepool connects upstream with
//! the generated superuser password (`postgres-password`). A cluster made by an older version
//! (trust authentication) is converted on its next start.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::config::{Config, UpstreamUrl};

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Use this Postgres instead of starting a local one.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Where the local cluster and dev credentials live.
    #[arg(long, default_value = ".tidepool")]
    pub dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub pg_listen: String,
    #[arg(long, default_value = "127.0.0.1:4466")]
    pub http_listen: String,
    #[arg(long, default_value = "127.0.0.1:9930")]
    pub admin_listen: String,
    /// Serve HTTPS (and Postgres TLS) with a generated self-signed certificate for localhost,
    /// so Prisma can use a `prisma://` URL.
    #[arg(long)]
    pub tls: bool,
}

/// Creates (once) a self-signed certificate for localhost under `dir/tls`.
fn dev_cert(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tls = dir.join("tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    if !cert.exists() || !key.exists() {
        private_dir(&tls)?;
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names)?;
        let _ = std::fs::remove_file(&key);
        write_secret(&key, &generated.key_pair.serialize_pem())?;
        std::fs::write(&cert, generated.cert.pem())?;
    } else {
        restrict(&key, 0o600)?;
    }
    Ok((cert.canonicalize()?, key.canonicalize()?))
}

/// Locates a PostgreSQL server binary: PATH first, then the newest /usr/lib/postgresql/*/bin.
pub fn find_pg_bin(name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, p)| p.is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a Postgres binary, as the `postgres` OS user when we are root (initdb refuses root).
fn pg_command(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

fn run_ok(mut c: Command, what: &str) -> anyhow::Result<()> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct LocalCluster {
    pg_ctl: PathBuf,
    data: PathBuf,
}

impl LocalCluster {
    /// Creates (first run) and starts the cluster; `superuser_password` is the `postgres` role's.
    fn start(dir: &Path, superuser_password: &str) -> anyhow::Result<(LocalCluster, u16)> {
        let (Some(initdb), Some(pg_ctl)) = (find_pg_bin("initdb"), find_pg_bin("pg_ctl")) else {
            bail!(
                "no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH and in /usr/lib/postgresql/*/bin).\n\
                 Install them, e.g. `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS),\n\
                 or use an existing server: tidepool dev --upstream postgres://user:pass@host:5432/db"
            )
        };
        private_dir(dir)?;
        let dir = dir.canonicalize()?;
        let data = dir.join("pgdata");
        chown_to_postgres(&dir)?;
        if !data.join("PG_VERSION").exists() {
            eprintln!("tidepool dev: creating a local PostgreSQL cluster in {}", data.display());
            // initdb reads the password from a file the postgres OS user can read: a 0600 file of
            // its own, removed afterwards.
            let pwfile = dir.join(".initdb-pwfile");
            let _ = std::fs::remove_file(&pwfile);
            write_secret(&pwfile, &format!("{superuser_password}\n"))?;
            let r = chown_to_postgres(&pwfile).and_then(|()| {
                let pwarg = format!("--pwfile={}", path_str(&pwfile)?);
                run_ok(pg_command(&initdb, &["-D", path_str(&data)?, "-U", "postgres", "--auth=scram-sha-256", &pwarg, "-E", "UTF8", "--no-locale"]), "initdb")
            });
            let _ = std::fs::remove_file(&pwfile);
            r?;
        }
        let legacy = hba_trusts(&data.join("pg_hba.conf"))?;
        let cluster = LocalCluster { pg_ctl, data };
        // A previous run that was killed may have left the server running.
        let _ = pg_command(&cluster.pg_ctl, &["-D", path_str(&cluster.data)?, "-m", "fast", "stop"]).output();
        let port = free_port()?;
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", path_str(&cluster.data)?);
        let log = dir.join("postgres.log");
        run_ok(pg_command(&cluster.pg_ctl, &["-D", path_str(&cluster.data)?, "-o", &opts, "-l", path_str(&log)?, "-w", "start"]), "pg_ctl start")?;
        if legacy {
            if let Err(e) = cluster.require_passwords(port, superuser_password) {
                cluster.stop();
                return Err(e);
            }
        }
        Ok((cluster, port))
    }

    /// Converts a cluster made by an older `tidepool dev` (trust for every local connection):
    /// gives `postgres` a password (sent as a SCRAM verifier), then replaces pg_hba.conf with
    /// password rules only and reloads.
    fn require_passwords(&self, port: u16, superuser_password: &str) -> anyhow::Result<()> {
        eprintln!("tidepool dev: this cluster trusted every local connection; switching it to password authentication");
        let verifier = tidepool_proto::auth::ScramVerifier::from_password(superuser_password, 4096).to_string();
        // A verifier is base64, digits and `$:` only; doubled quotes keep the literal safe anyway.
        let sql = format!("ALTER ROLE postgres PASSWORD '{}'", verifier.replace('\'', "''"));
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(async {
                    let mut conn = connect_upstream(&url).await?;
                    conn.simple(&sql).await.map_err(anyhow::Error::from)
                })
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("setting the superuser password panicked")))
        })?;
        std::fs::write(self.data.join("pg_hba.conf"), HBA)?;
        run_ok(pg_command(&self.pg_ctl, &["-D", path_str(&self.data)?, "reload"]), "pg_ctl reload")?;
        Ok(())
    }

    fn stop(&self) {
        if let Ok(d) = path_str(&self.data) {
            let _ = pg_command(&self.pg_ctl, &["-D", d, "-m", "fast", "-w", "stop"]).output();
        }
    }
}

/// pg_hba.conf of the dev cluster: a password for every role, every database, every transport.
const HBA: &str = "# tidepool dev: password (SCRAM-SHA-256) authentication for every role, the superuser included.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
";

/// Whether any rule of this pg_hba.conf is `trust` (a cluster made by an older `tidepool dev`).
fn hba_trusts(path: &Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(|l| l.split('#').next().unwrap_or("")).any(|l| l.split_whitespace().any(|w| w == "trust")))
}

/// When running as root (Postgres binaries then run as the `postgres` OS user): gives `path` to it.
fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut c = Command::new("chown");
    c.args(["postgres:postgres"]).arg(path);
    run_ok(c, "chown")
}

/// Creates `dir` (and missing parents) as 0700, or narrows an existing one to 0700.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Removes group/other permissions from an existing file or directory (one made by an older version).
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// Creates a new file readable by its owner only (created with that mode, never wider).
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Reads the secret kept in `dir/name`, creating it (0600) on first run with `generate`.
fn secret(dir: &Path, name: &str, generate: impl FnOnce() -> String) -> anyhow::Result<String> {
    let f = dir.join(name);
    if let Ok(p) = std::fs::read_to_string(&f) {
        if !p.trim().is_empty() {
            restrict(&f, 0o600)?;
            return Ok(p.trim().to_owned());
        }
        std::fs::remove_file(&f)?;
    }
    let p = generate();
    write_secret(&f, &p)?;
    Ok(p)
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng().sample_iter(Alphanumeric).take(n).map(char::from).collect()
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("path is not UTF-8")
}

/// The dev user's password, created on first run.
fn dev_password(dir: &Path) -> anyhow::Result<String> {
    secret(dir, "dev-password", || random_alnum(20))
}

/// The dev API key, created on first run and kept in `dir` (dev only; production keys are hashed).
fn dev_api_key(dir: &Path) -> anyhow::Result<String> {
    secret(dir, "dev-api-key", || format!("tp_dev_{}", random_alnum(32)))
}

/// The local cluster's `postgres` superuser password, created on first run.
fn superuser_password(dir: &Path) -> anyhow::Result<String> {
    secret(dir, "postgres-password", || random_alnum(32))
}

async fn connect_upstream(url: &str) -> anyhow::Result<crate::upstream::ServerConn> {
    let url = UpstreamUrl::parse(url).map_err(anyhow::Error::msg)?;
    let target = crate::upstream::UpstreamTarget::new(url, crate::config::UpstreamTls::Disable, std::time::Duration::from_secs(5));
    Ok(crate::upstream::connect(&target).await?)
}

async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = connect_upstream(admin_url).await?;
    match conn.simple(&format!("CREATE DATABASE {}", crate::upstream::quote_ident(name))).await {
        Ok(()) | Err(crate::upstream::UpstreamError::Db(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What `tidepool dev` prepared: the upstream (a started local cluster, or `--upstream`) and the
/// dev credentials, all kept in `args.dir`.
pub struct DevEnv {
    cluster: Option<LocalCluster>,
    /// The local cluster's port (None with `--upstream`).
    pub port: Option<u16>,
    /// Upstream URL tidepool uses (with the superuser password for the local cluster).
    pub upstream: String,
    pub password: String,
    pub api_key: String,
    /// The dev certificate with `--tls`.
    pub cert: Option<PathBuf>,
    toml: String,
}

impl DevEnv {
    /// Stops the local cluster, if one was started.
    pub fn stop(self) {
        if let Some(c) = self.cluster {
            c.stop();
        }
    }
}

/// Creates or reuses `args.dir` (0700), its secrets (0600) and the local cluster (started), and
/// the configuration tidepool runs with.
pub async fn prepare(args: &DevArgs) -> anyhow::Result<DevEnv> {
    private_dir(&args.dir)?;
    let (cluster, port, upstream) = match &args.upstream {
        Some(u) => (None, None, u.clone()),
        None => {
            let pw = superuser_password(&args.dir)?;
            let (c, port) = tokio::task::block_in_place(|| LocalCluster::start(&args.dir, &pw))?;
            if let Err(e) = ensure_database(&format!("postgres://postgres:{pw}@127.0.0.1:{port}/postgres"), "app").await {
                c.stop();
                return Err(e);
            }
            (Some(c), Some(port), format!("postgres://postgres:{pw}@127.0.0.1:{port}/app"))
        }
    };
    let env = async {
        let password = dev_password(&args.dir)?;
        let api_key = dev_api_key(&args.dir)?;
        let mut tls_server = String::new();
        let mut tls_http = String::new();
        let cert = if args.tls {
            let (cert, key) = dev_cert(&args.dir)?;
            tls_server = format!("tls_cert = {:?}\ntls_key = {:?}\n", cert, key);
            tls_http = format!("[http]\n{tls_server}\n");
            Some(cert)
        } else {
            None
        };
        let toml = format!(
            "{tls_http}[server]\n{tls_server}pg_listen = {:?}\nhttp_listen = {:?}\nadmin_listen = {:?}\n\n[[databases]]\nname = \"app\"\nurl = {:?}\npool_size = 10\n\n[[users]]\nname = \"dev\"\npassword = {:?}\n\n[[api_keys]]\nsha256 = {:?}\ndatabase = \"app\"\nlabel = \"dev\"\n",
            args.pg_listen, args.http_listen, args.admin_listen, upstream, password, hex::encode(crate::keys::hash_key(&api_key))
        );
        Ok::<_, anyhow::Error>((password, api_key, cert, toml))
    }
    .await;
    match env {
        Ok((password, api_key, cert, toml)) => Ok(DevEnv { cluster, port, upstream, password, api_key, cert, toml }),
        Err(e) => {
            if let Some(c) = cluster {
                c.stop();
            }
            Err(e)
        }
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let env = prepare(&args).await?;
    let (upstream, password, api_key, cert) = (env.upstream.clone(), env.password.clone(), env.api_key.clone(), env.cert.clone());
    let toml = env.toml.clone();
    let result = async {
        let config = Config::from_toml(&toml, std::env::vars())?;
        let running = crate::run::start(config).await?;
        let b = &running.bound;
        let pg = b.pg.context("pg listener")?;
        println!("\ntidepool dev is running (upstream {:?}). Connection strings:\n", UpstreamUrl::parse(&upstream).map_err(anyhow::Error::msg)?);
        println!("  Postgres (psql, drivers):  postgres://dev:{password}@{pg}/app");
        if let Some(h) = b.http {
            match &cert {
                Some(cert) => {
                    println!("  Prisma (accelerateUrl):    prisma://localhost:{}/?api_key={api_key}", h.port());
                    println!("      trust the dev certificate: NODE_EXTRA_CA_CERTS={}", cert.display());
                }
                None => println!("  Prisma (accelerateUrl):    prisma+postgres://localhost:{}/?api_key={api_key}", h.port()),
            }
            let scheme = if cert.is_some() { "https" } else { "http" };
            println!("  Neon SQL over HTTP:        {scheme}://{h}/sql   (Neon-Connection-String: postgres://dev:{password}@{h}/app)");
            let ws = if cert.is_some() { "wss" } else { "ws" };
            println!("  WebSocket (Neon Pool):     {ws}://{h}/v2");
            println!("\n  neonConfig for @neondatabase/serverless:");
            println!("    neonConfig.fetchEndpoint = () => '{scheme}://{h}/sql';");
            println!("    neonConfig.wsProxy = () => '{h}/v2';");
            println!("    neonConfig.useSecureWebSocket = {};", cert.is_some());
            println!("    neonConfig.pipelineConnect = 'password';");
        }
        if let Some(a) = b.admin {
            println!("  Metrics / health:          http://{a}/metrics  http://{a}/healthz");
        }
        println!("\nPress Ctrl-C to stop.");
        crate::run::signal().await;
        eprintln!("tidepool dev: stopping");
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    env.stop();
    result
}
