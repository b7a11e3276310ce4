//! The `tidepool` command: `serve`, `dev`, `check-config`, `hash-password`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc: less fragmentation than the system allocator for many small, long-lived sessions
/// interleaved with short-lived login state (measured in docs/benchmarks.md, idle clients).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tidepool::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "tidepool", version, about = "PostgreSQL connection pooler and data proxy for serverless apps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run with a configuration file.
    Serve {
        #[arg(long, short, env = "TIDEPOOL_CONFIG")]
        config: PathBuf,
    },
    /// Run an embedded local Postgres (from the installed binaries) with tidepool in front of it.
    Dev(tidepool::dev::DevArgs),
    /// Validate a configuration file and exit.
    CheckConfig { file: PathBuf },
    /// Manage API keys for the HTTP APIs (stored hashed in [http] api_key_file).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print a SCRAM-SHA-256 verifier for a password (read from stdin when not given).
    HashPassword {
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key for a database; the key is printed once and only its SHA-256 is stored.
    Create {
        #[arg(long, short, env = "TIDEPOOL_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        database: String,
        /// Upstream role (a `[[databases.roles]]` name) the key's requests run as; default: the
        /// database's own upstream user.
        #[arg(long)]
        role: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List stored keys (hash prefix, database, role, label).
    List {
        #[arg(long, short, env = "TIDEPOOL_CONFIG")]
        config: PathBuf,
    },
    /// Revoke keys by label or by hash prefix (8+ hex characters).
    Revoke {
        #[arg(long, short, env = "TIDEPOOL_CONFIG")]
        config: PathBuf,
        key: String,
    },
}

fn key_file(config: &std::path::Path) -> anyhow::Result<(Config, PathBuf)> {
    let c = Config::load(config, std::env::vars())?;
    let f = c.http.api_key_file.clone().ok_or_else(|| anyhow::anyhow!("set [http] api_key_file in {} first", config.display()))?;
    Ok((c, f))
}

fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Create { config, database, role, label } => {
            let (c, f) = key_file(&config)?;
            let db = c.database(&database).ok_or_else(|| anyhow::anyhow!("unknown database {database:?}"))?;
            if let Some(r) = role.as_deref() {
                anyhow::ensure!(db.role(r).is_some(), "database {database:?} has no role {r:?} (add it under [[databases.roles]])");
            }
            let key = tidepool::keys::create(&f, &database, role.as_deref(), &label)?;
            println!("{key}");
            eprintln!("Store this key now: it is not shown again (only its SHA-256 is kept in {}).", f.display());
        }
        KeysAction::List { config } => {
            let (_, f) = key_file(&config)?;
            for k in tidepool::keys::list(&f)? {
                println!("{}  {}  {}  {}", &k.sha256[..12], k.database, k.role.as_deref().unwrap_or("-"), k.label);
            }
        }
        KeysAction::Revoke { config, key } => {
            let (_, f) = key_file(&config)?;
            let n = tidepool::keys::revoke(&f, &key)?;
            println!("revoked {n} key(s)");
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { file } => Config::load(&file, std::env::vars())
            .map(|c| {
                println!("{}: ok ({} databases, {} users)", file.display(), c.databases.len(), c.users.len());
            })
            .map_err(anyhow::Error::from),
        Command::HashPassword { password, iterations } => hash_password(password, iterations),
        Command::Keys { action } => keys(action),
        Command::Serve { config } => match Config::load(&config, std::env::vars()) {
            Ok(c) => {
                init_logging(c.server.log_format, &c.server.log_level);
                runtime(c.server.effective_worker_threads()).and_then(|rt| rt.block_on(tidepool::run::serve(c, Some(config))))
            }
            Err(e) => Err(e.into()),
        },
        Command::Dev(args) => {
            init_logging(LogFormat::Human, "info");
            let threads = tidepool::config::ServerConfig::default().effective_worker_threads();
            runtime(threads).and_then(|rt| rt.block_on(tidepool::dev::run(args)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidepool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(worker_threads).enable_all().build()?)
}

fn hash_password(password: Option<String>, iterations: u32) -> anyhow::Result<()> {
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    println!("{}", tidepool_proto::auth::ScramVerifier::from_password(&password, iterations));
    Ok(())
}
