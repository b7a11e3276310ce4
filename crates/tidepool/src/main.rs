//! The `tidepool` command: `serve`, `dev`, `check-config`, `hash-password`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Print a SCRAM-SHA-256 verifier for a password (read from stdin when not given).
    HashPassword {
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
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
        Command::CheckConfig { file } => Config::load(&file, std::env::vars()).map(|c| {
            println!("{}: ok ({} databases, {} users)", file.display(), c.databases.len(), c.users.len());
        }).map_err(anyhow::Error::from),
        Command::HashPassword { password, iterations } => hash_password(password, iterations),
        Command::Serve { config } => match Config::load(&config, std::env::vars()) {
            Ok(c) => {
                init_logging(c.server.log_format, &c.server.log_level);
                runtime().and_then(|rt| rt.block_on(tidepool::run::serve(c)))
            }
            Err(e) => Err(e.into()),
        },
        Command::Dev(args) => {
            init_logging(LogFormat::Human, "info");
            runtime().and_then(|rt| rt.block_on(tidepool::dev::run(args)))
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
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
