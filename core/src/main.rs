//! The `crochet` binary: `crochet serve` runs the host, `crochet migrate` applies the
//! database migrations and exits.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use crochet::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "crochet",
    version,
    about = "Crochet Gateway: agent-to-agent marketplace host"
)]
struct Cli {
    /// Configuration file (default: ./crochet.toml when present).
    #[arg(long, global = true, env = "CROCHET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("CROCHET_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crochet: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = match cli.command {
        Command::Serve => crochet::app::serve(config).await,
        Command::Migrate => {
            async {
                let db = crochet::app::open_database(&config).await?;
                db.close().await;
                println!("migrations applied to {}", redact(config.database_url()));
                Ok(())
            }
            .await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crochet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}
