//! The `crochet` binary: `crochet serve` runs the host, `crochet migrate` applies the
//! database migrations and exits, `crochet example-seller` runs a local seller endpoint
//! for the quick starts, `crochet plugin new|check|run` helps write plugins, and
//! `crochet agent …` is an agent's client (register, find listings, call them).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use crochet::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

mod agent_cli;
mod example_seller;
mod plugin_cli;

/// mimalloc instead of glibc's malloc: the gateway path allocates and frees small
/// buffers across worker threads, and glibc's arenas cost about a tenth of its CPU there
/// (benches/README.md, "Load run").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "crochet",
    version,
    about = "Crochet Gateway: agent-to-agent marketplace host"
)]
struct Cli {
    /// Configuration file (default: ./crochet.toml when present). For `crochet plugin
    /// check|run`: the plugin's configuration, a JSON file (CROCHET_CONFIG does not
    /// apply there).
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
    /// Re-encrypt every secret at rest under the current CROCHET_ENCRYPTION_KEY
    /// (after moving the old key to previous_encryption_keys).
    RotateSecrets,
    /// Development wallet for the curl quick start (keys are plain files: never for real funds).
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// A local seller endpoint that verifies the gateway's signature and answers JSON
    /// (for trying the marketplace; reads the signing secret from a file on every request).
    ExampleSeller {
        /// File holding the listing's signing secret (may appear after start-up).
        #[arg(long)]
        secret_file: PathBuf,
        /// Listen address; port 0 picks a free port (the chosen one is printed).
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
        /// Write each verified request (headers and exact body, as JSON) to this file.
        #[arg(long)]
        capture: Option<PathBuf>,
    },
    /// Write, check and try WebAssembly plugins (see plugins/README.md).
    #[command(subcommand)]
    Plugin(plugin_cli::PluginCommand),
    /// An agent's client: wallets, registration, listings, paid calls.
    Agent(agent_cli::AgentArgs),
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Print a new wallet as JSON: `crochet wallet new --chain solana > wallet.json`.
    New {
        #[arg(long, default_value = "evm", value_parser = ["evm", "solana"])]
        chain: String,
    },
    /// Read a challenge response on stdin; print `{wallet_address, nonce, signature, pow_nonce}`.
    Prove {
        #[arg(long)]
        wallet: PathBuf,
    },
}

fn wallet_command(cmd: WalletCommand) -> anyhow::Result<()> {
    use crochet::devwallet::DevWallet;
    use crochet::identity::crypto::Chain;
    match cmd {
        WalletCommand::New { chain } => {
            let chain = Chain::parse(&chain).unwrap_or(Chain::Evm);
            println!(
                "{}",
                serde_json::to_string_pretty(&DevWallet::generate(chain))?
            );
        }
        WalletCommand::Prove { wallet } => {
            let wallet: DevWallet = serde_json::from_str(&std::fs::read_to_string(&wallet)?)?;
            let challenge: serde_json::Value = serde_json::from_reader(std::io::stdin())?;
            println!("{}", wallet.prove(&challenge)?);
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    // The plugin compiler's internals, and the MCP SDK (three info lines per stateless
    // request: its service starts and stops each time), stay quiet unless named
    // explicitly, even at debug; the gateway logs each MCP call itself.
    let quiet = [
        "rmcp",
        "cranelift_codegen",
        "wasmtime",
        "wasmtime_internal_cranelift",
        "wasmtime_internal_jit_debug",
        "cranelift_frontend",
    ];
    let level =
        std::env::var("CROCHET_LOG").unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let mut directives = level.clone();
    for target in quiet.iter().filter(|t| !level.contains(*t)) {
        directives.push_str(&format!(",{target}=warn"));
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never in files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let command = match cli.command {
        Command::Plugin(cmd) => {
            // Only a `--config` on the command line names a plugin's configuration.
            let config = cli
                .config
                .filter(|_| matches.value_source("config") == Some(ValueSource::CommandLine));
            return plugin_cli::run(cmd, config).await;
        }
        Command::Agent(args) => return agent_cli::run(args).await,
        Command::Wallet(cmd) => {
            return match wallet_command(cmd) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crochet wallet: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Command::ExampleSeller {
            secret_file,
            bind,
            capture,
        } => {
            let settings = example_seller::Settings {
                secret_file,
                bind,
                capture,
            };
            return match example_seller::run(settings).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crochet example-seller: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        other => other,
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crochet: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = match command {
        Command::Wallet(_)
        | Command::ExampleSeller { .. }
        | Command::Plugin(_)
        | Command::Agent(_) => {
            unreachable!("handled before configuration is loaded")
        }
        Command::Serve => crochet::app::serve(config).await,
        Command::RotateSecrets => crochet::app::rotate_secrets(config).await.map(|n| {
            println!("re-encrypted the secrets of {n} endpoint(s) under the current key");
        }),
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
