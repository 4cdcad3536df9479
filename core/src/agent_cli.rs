//! `crochet agent …`: an agent's command line, built on the `crochet-client` crate.
//!
//! A profile file (`--profile PATH`, default `$XDG_CONFIG_HOME/crochet/agent.toml` or
//! `~/.config/crochet/agent.toml`) keeps the host URL, the API key and the wallet file
//! once `register` wrote them. It holds a credential, so it is written at mode 0600 and
//! refused when others can read it, like the wallet file.
//!
//! Exit codes: 0 success; 1 the marketplace refused (the error's code, message and
//! recovery go to stderr); 2 bad usage or local files; 3 the payment was still pending
//! at the deadline (retry with the same idempotency key, printed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use crochet_client::{
    CallOptions, Client, ClientError, ListingQuery, MockPayer, Payer, Wallet, X402Payer,
};
use figment::providers::Format as _;
use serde_json::{Value, json};

/// Options every `crochet agent` command takes.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// The profile file (host, API key, wallet).
    #[arg(long, global = true, env = "CROCHET_AGENT_PROFILE")]
    profile: Option<PathBuf>,
    /// The host's API base, e.g. http://127.0.0.1:8080/api/v1 (overrides the profile's).
    #[arg(long, global = true)]
    host: Option<String>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Wallet files (mode 0600; the key is never printed).
    #[command(subcommand)]
    Wallet(WalletCmd),
    /// Register an agent with a wallet; saves host, API key and wallet in the profile.
    Register {
        #[arg(long)]
        wallet: PathBuf,
        #[arg(long, default_value = "both", value_parser = ["buyer", "seller", "both"])]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Find and read listings.
    #[command(subcommand)]
    Listings(ListingsCmd),
    /// Call a listing: pays when asked (mock provider or x402) and waits for a pending
    /// payment.
    Call {
        /// Listing id or slug.
        listing: String,
        /// The JSON body, or @FILE.
        #[arg(long)]
        data: String,
        /// How to pay a 402: `mock` (the mock provider) or `x402` (the profile's EVM wallet).
        #[arg(long, default_value = "mock", value_parser = ["mock", "x402"])]
        pay: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Seconds to wait for a pending payment.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum WalletCmd {
    /// Create a wallet file.
    New {
        #[arg(long, default_value = "evm", value_parser = ["evm", "solana"])]
        chain: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ListingsCmd {
    /// Search active listings.
    Search {
        /// Words to find.
        query: Option<String>,
    },
    /// One listing by id or slug.
    Show { listing: String },
}

/// A failure, with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { .. } => Failure {
                code: 1,
                message: api_message(&e),
            },
            ClientError::PaymentPending { .. } => Failure {
                code: 3,
                message: e.to_string(),
            },
            ClientError::Wallet(_) | ClientError::WalletPermissions { .. } => Failure {
                code: 2,
                message: e.to_string(),
            },
            _ => Failure {
                code: 1,
                message: e.to_string(),
            },
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

/// The refusal as a person reads it: code, message and what to do next.
fn api_message(e: &ClientError) -> String {
    let mut out = format!("{} ({})", e, e.code().unwrap_or("error"));
    if let ClientError::Api {
        recovery: Some(r), ..
    } = e
        && let Some(summary) = r.get("summary").and_then(Value::as_str)
    {
        out.push_str("\nwhat to do: ");
        out.push_str(summary);
    }
    out
}

/// Runs one `crochet agent` command.
pub async fn run(args: AgentArgs) -> ExitCode {
    match dispatch(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("crochet agent: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The profile's contents.
#[derive(Default, serde::Deserialize)]
struct Profile {
    host: Option<String>,
    api_key: Option<String>,
    wallet: Option<PathBuf>,
}

fn profile_path(args: &AgentArgs) -> Result<PathBuf, Failure> {
    if let Some(p) = &args.profile {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| usage("no --profile given and no home folder to keep one in"))?;
    Ok(base.join("crochet").join("agent.toml"))
}

fn load_profile(path: &Path) -> Result<Profile, Failure> {
    if !path.exists() {
        return Ok(Profile::default());
    }
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the profile {}: {e}", path.display())))?;
    figment::Figment::from(figment::providers::Toml::string(&text))
        .extract()
        .map_err(|e| usage(format!("the profile {} is not valid: {e}", path.display())))
}

/// Refuses a file that others may read (it holds a credential).
fn check_private(path: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(usage(format!(
                "{} can be read by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// Writes the profile at mode 0600. Strings are written as JSON string literals, which
/// are valid TOML basic strings.
fn save_profile(path: &Path, p: &Profile) -> Result<(), Failure> {
    let mut text = String::new();
    let mut line = |k: &str, v: &str| {
        text.push_str(&format!("{k} = {}\n", Value::String(v.to_owned())));
    };
    if let Some(h) = &p.host {
        line("host", h);
    }
    if let Some(k) = &p.api_key {
        line("api_key", k);
    }
    if let Some(w) = &p.wallet {
        line("wallet", &w.to_string_lossy());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |options: &std::fs::OpenOptions| -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = options.open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(text.as_bytes())
    };
    write(&options).map_err(|e| usage(format!("cannot write {}: {e}", path.display())))
}

/// Prints `value` as JSON, or `human` for a person.
fn print(json_out: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

async fn dispatch(args: &AgentArgs) -> Result<(), Failure> {
    let path = profile_path(args)?;
    let mut profile = load_profile(&path)?;
    let host = args
        .host
        .clone()
        .or_else(|| profile.host.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/api/v1".into());
    let client = match &profile.api_key {
        Some(key) => Client::new(&host).with_key(key),
        None => Client::new(&host),
    };
    match &args.command {
        AgentCommand::Wallet(WalletCmd::New { chain, out }) => {
            let wallet = match chain.as_str() {
                "solana" => Wallet::generate_solana(),
                _ => Wallet::generate_evm(),
            };
            wallet.save(out)?;
            let v = json!({"chain": chain, "address": wallet.address(), "file": out});
            print(args.json, &v, || {
                format!(
                    "{chain} wallet {} saved to {}",
                    wallet.address(),
                    out.display()
                )
            });
        }
        AgentCommand::Register { wallet, role, name } => {
            let w = Wallet::load(wallet)?;
            let registered = client.register(&w, role, name.as_deref()).await?;
            profile.host = Some(host.clone());
            profile.api_key = Some(registered.api_key.clone());
            profile.wallet = Some(wallet.clone());
            save_profile(&path, &profile)?;
            let v = json!({"profile_id": registered.profile_id, "profile": path});
            print(args.json, &v, || {
                format!(
                    "registered {} as {role}; API key saved in {} (mode 0600)",
                    registered.profile_id,
                    path.display()
                )
            });
        }
        AgentCommand::Listings(ListingsCmd::Search { query }) => {
            let q = query.as_deref().map(ListingQuery::text).unwrap_or_default();
            let found = client.search_listings(&q).await?;
            let v = serde_json::to_value(&found).unwrap_or(Value::Null);
            print(args.json, &v, || {
                found
                    .iter()
                    .map(|l| {
                        format!(
                            "{}  {}  {} {}  {}",
                            l.id, l.slug, l.pricing_amount, l.pricing_currency, l.name
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        AgentCommand::Listings(ListingsCmd::Show { listing }) => {
            let l = client.get_listing(listing).await?;
            let v = serde_json::to_value(&l).unwrap_or(Value::Null);
            print(args.json, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            });
        }
        AgentCommand::Call {
            listing,
            data,
            pay,
            idempotency_key,
            wait,
        } => {
            let text = match data.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| usage(format!("cannot read {file}: {e}")))?,
                None => data.clone(),
            };
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("--data is not JSON: {e}")))?;
            let payer: Box<dyn Payer> = match pay.as_str() {
                "x402" => {
                    let file = profile.wallet.clone().ok_or_else(|| {
                        usage("--pay x402 needs the profile's wallet (register first)")
                    })?;
                    Box::new(X402Payer {
                        wallet: Wallet::load(&file)?,
                    })
                }
                _ => Box::new(MockPayer::default()),
            };
            if !args.json {
                eprintln!("calling {listing}… (a payment, if asked, is made with --pay {pay})");
            }
            let options = CallOptions {
                idempotency_key: idempotency_key.clone(),
                deadline: Duration::from_secs(*wait),
                ..CallOptions::default()
            };
            let result = client.call(listing, &body, payer.as_ref(), options).await?;
            let v = json!({
                "request_id": result.request_id,
                "charged_cents": result.charged_cents,
                "seller_response": result.seller_response,
            });
            print(args.json, &v, || {
                format!(
                    "{} (charged {} cents)\n{}",
                    result.request_id,
                    result.charged_cents,
                    serde_json::to_string_pretty(&result.seller_response).unwrap_or_default()
                )
            });
        }
    }
    Ok(())
}
