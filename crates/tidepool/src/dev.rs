//! `tidepool dev`: the embedded default. Creates (first run) and starts a local PostgreSQL cluster
//! from the installed binaries under `./.tidepool/`, on a free port, puts tidepool in front of it
//! with a generated dev user, prints ready-to-paste connection strings, and stops both on
//! Ctrl-C / SIGTERM. The next run reuses the data. `--upstream` uses an existing server instead.

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
        std::fs::create_dir_all(&tls)?;
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names)?;
        std::fs::write(&cert, generated.cert.pem())?;
        std::fs::write(&key, generated.key_pair.serialize_pem())?;
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
    fn start(dir: &Path) -> anyhow::Result<(LocalCluster, u16)> {
        let (Some(initdb), Some(pg_ctl)) = (find_pg_bin("initdb"), find_pg_bin("pg_ctl")) else {
            bail!(
                "no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH and in /usr/lib/postgresql/*/bin).\n\
                 Install them, e.g. `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS),\n\
                 or use an existing server: tidepool dev --upstream postgres://user:pass@host:5432/db"
            )
        };
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let data = dir.join("pgdata");
        if is_root() {
            run_ok(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            )?;
        }
        if !data.join("PG_VERSION").exists() {
            eprintln!("tidepool dev: creating a local PostgreSQL cluster in {}", data.display());
            run_ok(pg_command(&initdb, &["-D", path_str(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]), "initdb")?;
        }
        let cluster = LocalCluster { pg_ctl, data };
        // A previous run that was killed may have left the server running.
        let _ = pg_command(&cluster.pg_ctl, &["-D", path_str(&cluster.data)?, "-m", "fast", "stop"]).output();
        let port = free_port()?;
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", path_str(&cluster.data)?);
        let log = dir.join("postgres.log");
        run_ok(pg_command(&cluster.pg_ctl, &["-D", path_str(&cluster.data)?, "-o", &opts, "-l", path_str(&log)?, "-w", "start"]), "pg_ctl start")?;
        Ok((cluster, port))
    }

    fn stop(&self) {
        if let Ok(d) = path_str(&self.data) {
            let _ = pg_command(&self.pg_ctl, &["-D", d, "-m", "fast", "-w", "stop"]).output();
        }
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("path is not UTF-8")
}

/// Reads the dev password from `dir`, creating it on first run.
fn dev_password(dir: &Path) -> anyhow::Result<String> {
    let f = dir.join("dev-password");
    if let Ok(p) = std::fs::read_to_string(&f) {
        if !p.trim().is_empty() {
            return Ok(p.trim().to_owned());
        }
    }
    let p: String = rand::thread_rng().sample_iter(Alphanumeric).take(20).map(char::from).collect();
    std::fs::write(&f, &p)?;
    Ok(p)
}

/// The dev API key, created on first run and kept in `dir` (dev only; production keys are hashed).
fn dev_api_key(dir: &Path) -> anyhow::Result<String> {
    let f = dir.join("dev-api-key");
    if let Ok(k) = std::fs::read_to_string(&f) {
        if !k.trim().is_empty() {
            return Ok(k.trim().to_owned());
        }
    }
    let k = format!("tp_dev_{}", rand::thread_rng().sample_iter(Alphanumeric).take(32).map(char::from).collect::<String>());
    std::fs::write(&f, &k)?;
    Ok(k)
}

async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let url = UpstreamUrl::parse(admin_url).map_err(anyhow::Error::msg)?;
    let target = crate::upstream::UpstreamTarget::new(url, crate::config::UpstreamTls::Disable, std::time::Duration::from_secs(5));
    let mut conn = crate::upstream::connect(&target).await?;
    match conn.simple(&format!("CREATE DATABASE {}", crate::upstream::quote_ident(name))).await {
        Ok(()) | Err(crate::upstream::UpstreamError::Db(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let (cluster, upstream) = match &args.upstream {
        Some(u) => (None, u.clone()),
        None => {
            let (c, port) = LocalCluster::start(&args.dir)?;
            ensure_database(&format!("postgres://postgres@127.0.0.1:{port}/postgres"), "app").await?;
            (Some(c), format!("postgres://postgres@127.0.0.1:{port}/app"))
        }
    };
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
    if let Some(c) = cluster {
        c.stop();
    }
    result
}
