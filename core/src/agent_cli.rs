//! `crochet agent …`: an agent's command line, built on the `crochet-client` crate.
//!
//! A profile file (`--profile PATH`, default `$XDG_CONFIG_HOME/crochet/agent.toml` or
//! `~/.config/crochet/agent.toml`) keeps the host URL, the API key and the wallet file
//! once `register` wrote them. It holds a credential, so it is written at mode 0600 and
//! refused when others can read it, like the wallet file.
//!
//! Output: readable lines for people, or with `--json` one JSON document on stdout for
//! scripts. Progress (a call waiting for its payment) goes to stderr.
//!
//! Exit codes: 0 success; 1 the marketplace refused (the error's code, message and
//! recovery go to stderr) or a receipt did not verify; 2 bad usage or local files; 3 the
//! payment was still pending at the deadline (call again with the printed idempotency
//! key); 4 a Relay payment's steps are yours to carry out (printed; then call again with
//! `--paid REQUEST_ID --idempotency-key KEY`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use crochet_client::{
    CallOptions, Client, ClientError, EndpointUpdate, KeyLimits, ListingQuery, ListingUpdate,
    MockPayer, NewListing, PageQuery, Payer, RelayPayer, Retry, Wallet, X402Payer, receipts,
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
        /// The wallet file, or `env:NAME` for a variable holding its JSON.
        #[arg(long)]
        wallet: PathBuf,
        #[arg(long, default_value = "both", value_parser = ["buyer", "seller", "both"])]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// A fresh API key for a registered wallet's agent (every key lost); saved in the
    /// profile.
    Recover {
        #[arg(long)]
        wallet: PathBuf,
    },
    /// The profile this key belongs to, its wallets and the key itself.
    Me,
    /// API keys: list, create (shown once), revoke.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Wallets linked to the profile.
    #[command(subcommand)]
    Wallets(WalletsCmd),
    /// Find and read listings.
    #[command(subcommand)]
    Listings(ListingsCmd),
    /// A seller's listings: create, update, endpoint, secret, test, adapter.
    #[command(subcommand)]
    Sell(SellCmd),
    /// Call a listing: pays when asked (mock provider or x402) and waits for a pending
    /// payment.
    Call {
        /// Listing id or slug.
        listing: String,
        /// The JSON body, or @FILE.
        #[arg(long)]
        data: String,
        /// How to pay: `mock` (a 402 through the mock provider), `x402` (the profile's
        /// EVM wallet), `relay` (print Relay's steps to carry out, exit 4) or `balance`
        /// (from the marketplace balance, in one request).
        #[arg(long, default_value = "mock", value_parser = ["mock", "x402", "relay", "balance"])]
        pay: String,
        /// The call's idempotency key; repeat it to resume a call.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Resume a call whose payment was made (a Relay request id).
        #[arg(long)]
        paid: Option<String>,
        /// Seconds to wait for a pending payment.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// The marketplace balance: show it, or top it up.
    Balance {
        #[command(subcommand)]
        cmd: Option<BalanceCmd>,
    },
    /// Receipts of paid calls: list, and verify against the host's published keys.
    #[command(subcommand)]
    Receipts(ReceiptsCmd),
    /// Review a listing you called (rating 1 to 5).
    Review {
        listing: String,
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=5))]
        rating: i64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// An agent's public Crochet Score (yours when no id is given).
    Score { agent: Option<String> },
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
enum KeysCmd {
    /// The profile's keys (never the keys themselves).
    List,
    /// Issue another key, with limits if any are given (a sub-agent's key); it is
    /// printed once.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Write the new key to a profile file at PATH (mode 0600, with this host) for
        /// the agent that will use it, instead of printing it.
        #[arg(long)]
        profile_out: Option<PathBuf>,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

/// Spend limits of a new key (each optional).
#[derive(clap::Args)]
struct LimitArgs {
    /// The highest listing price per call, in cents.
    #[arg(long)]
    max_price_cents: Option<i64>,
    /// Spend per UTC day, in cents.
    #[arg(long)]
    daily_cents: Option<i64>,
    /// Spend per 30 days, in cents.
    #[arg(long)]
    monthly_cents: Option<i64>,
    /// A listing (id or slug) the key may call; repeat for more.
    #[arg(long = "listing")]
    listing_ids: Vec<String>,
    /// A category the key may call; repeat for more.
    #[arg(long = "category")]
    categories: Vec<String>,
    /// A seller the key may buy from; repeat for more.
    #[arg(long = "seller")]
    seller_ids: Vec<String>,
    /// When the key stops working (RFC 3339).
    #[arg(long)]
    expires_at: Option<String>,
}

impl LimitArgs {
    fn limits(&self) -> Option<KeyLimits> {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let limits = KeyLimits {
            max_price_cents: self.max_price_cents,
            daily_cents: self.daily_cents,
            monthly_cents: self.monthly_cents,
            listing_ids: list(&self.listing_ids),
            categories: list(&self.categories),
            seller_ids: list(&self.seller_ids),
            expires_at: self.expires_at.clone(),
        };
        (limits != KeyLimits::default()).then_some(limits)
    }
}

#[derive(Subcommand)]
enum BalanceCmd {
    /// Add cents to the balance, paid through the mock provider (`--pay mock`) or
    /// Relay (`--pay relay`: print the steps, then confirm with `--paid`).
    Deposit {
        amount_cents: i64,
        #[arg(long, default_value = "mock", value_parser = ["mock", "relay"])]
        pay: String,
        /// Confirm a deposit already paid (its relay request id).
        #[arg(long)]
        paid: Option<String>,
        /// Seconds to wait for a pending payment.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum WalletsCmd {
    /// The linked wallets.
    List,
    /// Link another wallet: the profile's wallet and the new one both sign.
    Link {
        /// The new wallet's file.
        #[arg(long)]
        wallet: PathBuf,
        #[arg(long)]
        label: Option<String>,
        /// Make it the wallet payments come from.
        #[arg(long)]
        default_payment: bool,
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

#[derive(Subcommand)]
enum SellCmd {
    /// Publish a pay-per-call listing (solves its proof-of-work).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: String,
        /// USD per call; 0 makes it free.
        #[arg(long)]
        price: f64,
        /// The private endpoint the gateway forwards to.
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        category: Option<String>,
        /// Keep it as a draft (not callable).
        #[arg(long)]
        draft: bool,
        /// Write the signing secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        secret_out: Option<PathBuf>,
    },
    /// Change a listing.
    Update {
        listing: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// USD per call.
        #[arg(long)]
        price: Option<f64>,
        #[arg(long, value_parser = ["draft", "active", "suspended"])]
        status: Option<String>,
        #[arg(long)]
        category: Option<String>,
    },
    /// Show the private endpoint's settings, or change them.
    Endpoint {
        listing: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        timeout_ms: Option<i64>,
        #[arg(long, value_parser = ["active", "paused"])]
        status: Option<String>,
    },
    /// A new signing secret (the old one stops at once).
    RotateSecret {
        listing: String,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        secret_out: Option<PathBuf>,
    },
    /// Send a signed test request to the private endpoint.
    Test { listing: String },
    /// Attach a seller adapter: an uploaded component or a bundled one.
    Adapter {
        listing: String,
        /// A `.wasm` seller-adapter component to upload.
        #[arg(long, conflicts_with = "bundled")]
        wasm: Option<PathBuf>,
        /// A bundled adapter by name (`chat-adapter`).
        #[arg(long)]
        bundled: Option<String>,
        /// The adapter's configuration (JSON or @FILE).
        #[arg(long)]
        config: Option<String>,
    },
}

#[derive(Subcommand)]
enum ReceiptsCmd {
    /// Your receipts, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Verify receipts offline against the host's published keys (exit 1 if one fails).
    Verify {
        /// Receipt ids; all on the first page when none is given.
        ids: Vec<String>,
    },
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
            ClientError::PaymentPending {
                idempotency_key, ..
            } => Failure {
                code: 3,
                message: format!("{e}; call again with --idempotency-key {idempotency_key}"),
            },
            ClientError::PaymentSteps {
                relay_request_id,
                steps,
                idempotency_key,
            } => Failure {
                code: 4,
                message: format!(
                    "{e}:\n{}\nthen: --paid {relay_request_id} --idempotency-key {idempotency_key}",
                    serde_json::to_string_pretty(steps).unwrap_or_default()
                ),
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
    write_private(path, &text)
}

/// Prints `value` as JSON, or `human` for a person.
fn print(json_out: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

/// A wallet from its file, or from an environment variable named `env:NAME` (which
/// holds the wallet file's JSON).
fn load_wallet(path: &Path) -> Result<Wallet, Failure> {
    match path.to_str().and_then(|p| p.strip_prefix("env:")) {
        Some(name) => Ok(Wallet::from_env(name)?),
        None => Ok(Wallet::load(path)?),
    }
}

/// Reads `--data`-style input: JSON text, or `@FILE`.
fn json_arg(flag: &str, text: &str) -> Result<Value, Failure> {
    let text = match text.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {file}: {e}")))?
        }
        None => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| usage(format!("{flag} is not JSON: {e}")))
}

/// Writes `text` (a credential) to `path` at mode 0600, whatever mode the file had.
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    crochet_client::write_private(path, text.as_bytes())
        .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))
}

/// Where a one-time secret goes: a file when asked (the JSON then names the file), or
/// the output.
fn secret_field(secret: &str, out: Option<&PathBuf>) -> Result<Value, Failure> {
    match out {
        Some(path) => {
            write_private(path, secret)?;
            Ok(json!({"signing_secret_file": path}))
        }
        None => Ok(json!({"signing_secret": secret})),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The profile's key, or a usage failure naming the fix.
fn need_key(client: &Client) -> Result<(), Failure> {
    if client.has_key() {
        Ok(())
    } else {
        Err(usage(
            "no API key: run `crochet agent register` (or `recover`) first",
        ))
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
    let out = |value: Value, human: String| print(args.json, &value, || human);
    match &args.command {
        AgentCommand::Wallet(WalletCmd::New { chain, out: file }) => {
            let wallet = match chain.as_str() {
                "solana" => Wallet::generate_solana(),
                _ => Wallet::generate_evm(),
            };
            wallet.save(file)?;
            out(
                json!({"chain": chain, "address": wallet.address(), "file": file}),
                format!(
                    "{chain} wallet {} saved to {}",
                    wallet.address(),
                    file.display()
                ),
            );
        }
        AgentCommand::Register { wallet, role, name } => {
            let w = load_wallet(wallet)?;
            let issued = client.register(&w, role, name.as_deref()).await?;
            profile.host = Some(host.clone());
            profile.api_key = Some(issued.api_key.clone());
            profile.wallet = Some(wallet.clone());
            save_profile(&path, &profile)?;
            out(
                json!({"profile_id": issued.profile.id, "profile": path}),
                format!(
                    "registered {} as {role}; API key saved in {} (mode 0600)",
                    issued.profile.id,
                    path.display()
                ),
            );
        }
        AgentCommand::Recover { wallet } => {
            let w = load_wallet(wallet)?;
            let issued = client.recover(&w).await?;
            profile.host = Some(host.clone());
            profile.api_key = Some(issued.api_key.clone());
            profile.wallet = Some(wallet.clone());
            save_profile(&path, &profile)?;
            out(
                json!({"profile_id": issued.profile.id, "key_id": issued.api_key_info.id, "profile": path}),
                format!(
                    "recovered {}: a new API key is saved in {} (earlier keys stay valid until revoked)",
                    issued.profile.id,
                    path.display()
                ),
            );
        }
        AgentCommand::Me => {
            need_key(&client)?;
            let me = client.me().await?;
            let wallets: Vec<String> = me
                .wallets
                .iter()
                .map(|w| format!("  {} {} ({})", w.chain, w.wallet_address, w.status))
                .collect();
            out(
                to_json(&me),
                format!(
                    "{} {} ({}), score {}\nkey {} ({})\nwallets:\n{}",
                    me.profile.id,
                    me.profile.display_name.as_deref().unwrap_or("-"),
                    me.profile.role,
                    me.profile
                        .crochet_score
                        .as_ref()
                        .map_or("-".into(), |s| s.score.to_string()),
                    me.api_key.key_prefix,
                    me.api_key.id,
                    wallets.join("\n")
                ),
            );
        }
        AgentCommand::Keys(cmd) => {
            need_key(&client)?;
            match cmd {
                KeysCmd::List => {
                    let keys = client.api_keys().await?;
                    let lines: Vec<String> = keys
                        .iter()
                        .map(|k| {
                            format!(
                                "{}  {}…  {}  {}",
                                k.id,
                                k.key_prefix,
                                k.status,
                                k.name.as_deref().unwrap_or("")
                            )
                        })
                        .collect();
                    out(to_json(&keys), lines.join("\n"));
                }
                KeysCmd::Create {
                    name,
                    limits,
                    profile_out,
                } => {
                    let issued = match limits.limits() {
                        Some(l) => client.create_limited_key(name.as_deref(), &l).await?,
                        None => client.create_api_key(name.as_deref()).await?,
                    };
                    if let Some(out_path) = profile_out {
                        let handed = Profile {
                            host: Some(host.clone()),
                            api_key: Some(issued.api_key.clone()),
                            wallet: None,
                        };
                        save_profile(out_path, &handed)?;
                        out(
                            json!({"id": issued.api_key_info.id, "profile": out_path}),
                            format!(
                                "{}: key written to the profile {}",
                                issued.api_key_info.id,
                                out_path.display()
                            ),
                        );
                        return Ok(());
                    }
                    out(
                        json!({"id": issued.api_key_info.id, "api_key": issued.api_key}),
                        format!(
                            "{}\n{} (shown once: store it now)",
                            issued.api_key_info.id, issued.api_key
                        ),
                    );
                }
                KeysCmd::Revoke { id } => {
                    let key = client.revoke_api_key(id).await?;
                    out(to_json(&key), format!("revoked {}", key.id));
                }
            }
        }
        AgentCommand::Balance { cmd } => {
            need_key(&client)?;
            match cmd {
                None => {
                    let b = client.balance().await?;
                    out(
                        to_json(&b),
                        format!("{} cents {}", b.available_cents, b.currency),
                    );
                }
                Some(BalanceCmd::Deposit {
                    amount_cents,
                    pay,
                    paid,
                    wait,
                }) => {
                    let deadline = Duration::from_secs(*wait);
                    let confirmed = match paid {
                        Some(id) => client.confirm_deposit(id, deadline).await?,
                        None => {
                            let payer: Box<dyn Payer> = match pay.as_str() {
                                "relay" => Box::new(RelayPayer::steps_only()),
                                _ => Box::new(MockPayer::default()),
                            };
                            client
                                .deposit(*amount_cents, payer.as_ref(), deadline)
                                .await?
                        }
                    };
                    out(
                        to_json(&confirmed),
                        format!(
                            "deposit {} {}: balance {} cents {}",
                            confirmed.deposit.id,
                            confirmed.deposit.status,
                            confirmed.balance_cents,
                            confirmed.deposit.currency
                        ),
                    );
                }
            }
        }
        AgentCommand::Wallets(cmd) => {
            need_key(&client)?;
            match cmd {
                WalletsCmd::List => {
                    let wallets = client.wallets().await?;
                    let lines: Vec<String> = wallets
                        .iter()
                        .map(|w| {
                            format!("{}  {} {}  {}", w.id, w.chain, w.wallet_address, w.status)
                        })
                        .collect();
                    out(to_json(&wallets), lines.join("\n"));
                }
                WalletsCmd::Link {
                    wallet,
                    label,
                    default_payment,
                } => {
                    let existing = profile.wallet.clone().ok_or_else(|| {
                        usage("linking needs the profile's wallet (register or recover first)")
                    })?;
                    let existing = load_wallet(&existing)?;
                    let new_wallet = load_wallet(wallet)?;
                    let me = client.me().await?;
                    let permissions = crochet_client::WalletPermissions {
                        label: label.clone(),
                        is_default_payment: *default_payment,
                        ..Default::default()
                    };
                    let linked = client
                        .link_wallet(&me.profile.id, &existing, &new_wallet, &permissions)
                        .await?;
                    out(
                        to_json(&linked),
                        format!(
                            "linked {} {} ({})",
                            linked.chain, linked.wallet_address, linked.id
                        ),
                    );
                }
            }
        }
        AgentCommand::Listings(ListingsCmd::Search { query }) => {
            let q = query.as_deref().map(ListingQuery::text).unwrap_or_default();
            let found = client.search_listings(&q).await?;
            let lines: Vec<String> = found
                .iter()
                .map(|l| {
                    format!(
                        "{}  {}  {} {}  {}",
                        l.id, l.slug, l.pricing_amount, l.pricing_currency, l.name
                    )
                })
                .collect();
            out(to_json(&found), lines.join("\n"));
        }
        AgentCommand::Listings(ListingsCmd::Show { listing }) => {
            let v = to_json(&client.get_listing(listing).await?);
            out(v.clone(), pretty(&v));
        }
        AgentCommand::Sell(cmd) => {
            need_key(&client)?;
            sell(&client, cmd, &out).await?;
        }
        AgentCommand::Call {
            listing,
            data,
            pay,
            idempotency_key,
            paid,
            wait,
        } => {
            let body = json_arg("--data", data)?;
            let payer: Box<dyn Payer> = match pay.as_str() {
                "x402" => {
                    let file = profile.wallet.clone().ok_or_else(|| {
                        usage("--pay x402 needs the profile's wallet (register first)")
                    })?;
                    Box::new(X402Payer {
                        wallet: load_wallet(&file)?,
                    })
                }
                "relay" => Box::new(RelayPayer::steps_only()),
                _ => Box::new(MockPayer::default()),
            };
            if !args.json {
                match pay.as_str() {
                    "balance" => eprintln!("calling {listing}… (paid from the balance)"),
                    _ => eprintln!(
                        "calling {listing}… (a payment, if asked, is made with --pay {pay})"
                    ),
                }
            }
            let on_wait: crochet_client::WaitObserver =
                std::sync::Arc::new(|state: &str, secs: u64| {
                    eprintln!("  payment {state}: trying again in {secs} s…");
                });
            let options = CallOptions {
                idempotency_key: idempotency_key.clone(),
                deadline: Duration::from_secs(*wait),
                paid: paid
                    .clone()
                    .map(|relay_request_id| Retry::Relay { relay_request_id }),
                on_wait: Some(on_wait),
                pay_from_balance: pay == "balance",
                ..CallOptions::default()
            };
            let result = client.call(listing, &body, payer.as_ref(), options).await?;
            out(
                json!({
                    "request_id": result.request_id,
                    "charged_cents": result.charged_cents,
                    "payment": result.payment,
                    "seller_response": result.seller_response,
                }),
                format!(
                    "{} (charged {} cents)\n{}",
                    result.request_id,
                    result.charged_cents,
                    pretty(&result.seller_response)
                ),
            );
        }
        AgentCommand::Receipts(cmd) => {
            need_key(&client)?;
            receipts(&client, cmd, &out).await?;
        }
        AgentCommand::Review {
            listing,
            rating,
            comment,
        } => {
            need_key(&client)?;
            let review = client.review(listing, *rating, comment.as_deref()).await?;
            out(
                to_json(&review),
                format!(
                    "reviewed {} with {}/5 ({})",
                    review.listing_id, review.rating, review.id
                ),
            );
        }
        AgentCommand::Score { agent } => {
            let id = match agent {
                Some(id) => id.clone(),
                None => {
                    need_key(&client)?;
                    client.me().await?.profile.id
                }
            };
            let score = client.score(&id).await?;
            let parts: Vec<String> = score
                .components
                .iter()
                .map(|c| format!("  {:+} {}: {}", c.points, c.name, c.detail))
                .collect();
            out(
                to_json(&score),
                format!(
                    "{} scores {} ({}{})\n{}",
                    score.agent_id,
                    score.score,
                    score.tier,
                    if score.verified { ", verified" } else { "" },
                    parts.join("\n")
                ),
            );
        }
    }
    Ok(())
}

async fn sell(client: &Client, cmd: &SellCmd, out: &impl Fn(Value, String)) -> Result<(), Failure> {
    match cmd {
        SellCmd::Create {
            name,
            description,
            price,
            endpoint,
            category,
            draft,
            secret_out,
        } => {
            let mut listing = NewListing::per_call(name, description, *price, endpoint);
            if *price == 0.0 {
                listing.pricing_model = "free".into();
                listing.pricing_amount = None;
            }
            listing.category = category.clone();
            if *draft {
                listing.status = Some("draft".into());
            }
            let created = client.create_listing(&listing).await?;
            let mut v = json!({"id": created.id, "slug": created.listing.slug, "gateway_url": created.listing.gateway_url});
            let secret = secret_field(&created.signing_secret, secret_out.as_ref())?;
            merge(&mut v, secret);
            let secret_line = match secret_out {
                Some(p) => format!("signing secret written to {} (mode 0600)", p.display()),
                None => format!(
                    "signing secret (shown once: store it now): {}",
                    created.signing_secret
                ),
            };
            out(
                v,
                format!(
                    "listed {} ({}) at {}\n{secret_line}",
                    created.id,
                    created.listing.slug,
                    created.listing.gateway_url.as_deref().unwrap_or("-")
                ),
            );
        }
        SellCmd::Update {
            listing,
            name,
            description,
            price,
            status,
            category,
        } => {
            let update = ListingUpdate {
                name: name.clone(),
                description: description.clone(),
                pricing_amount: *price,
                status: status.clone(),
                category: category.clone(),
                ..ListingUpdate::default()
            };
            let l = client.update_listing(listing, &update).await?;
            out(
                to_json(&l),
                format!(
                    "updated {}: {} at {} {} ({})",
                    l.id, l.name, l.pricing_amount, l.pricing_currency, l.status
                ),
            );
        }
        SellCmd::Endpoint {
            listing,
            url,
            timeout_ms,
            status,
        } => {
            let info = if url.is_none() && timeout_ms.is_none() && status.is_none() {
                client.endpoint(listing).await?
            } else {
                let update = EndpointUpdate {
                    private_endpoint_url: url.clone(),
                    timeout_ms: *timeout_ms,
                    status: status.clone(),
                    ..EndpointUpdate::default()
                };
                client.update_endpoint(listing, &update).await?
            };
            let v = to_json(&info);
            out(v.clone(), pretty(&v));
        }
        SellCmd::RotateSecret {
            listing,
            secret_out,
        } => {
            let rotated = client.rotate_secret(listing).await?;
            let mut v = json!({"rotated_at": rotated.rotated_at});
            merge(
                &mut v,
                secret_field(&rotated.signing_secret, secret_out.as_ref())?,
            );
            let human = match secret_out {
                Some(p) => format!("new signing secret written to {} (mode 0600)", p.display()),
                None => format!(
                    "new signing secret (shown once): {}",
                    rotated.signing_secret
                ),
            };
            out(v, human);
        }
        SellCmd::Test { listing } => {
            let t = client.test_endpoint(listing).await?;
            let human = format!(
                "{}: status {}, {} ms{}",
                if t.ok { "ok" } else { "failed" },
                t.status_code.map_or("-".into(), |c| c.to_string()),
                t.latency_ms,
                t.error
                    .as_deref()
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default()
            );
            let ok = t.ok;
            out(to_json(&t), human);
            if !ok {
                return Err(Failure {
                    code: 1,
                    message: "the endpoint did not answer 2xx JSON".into(),
                });
            }
        }
        SellCmd::Adapter {
            listing,
            wasm,
            bundled,
            config,
        } => {
            let config = config
                .as_deref()
                .map(|c| json_arg("--config", c))
                .transpose()?;
            let mut info = None;
            if let Some(file) = wasm {
                let bytes = std::fs::read(file)
                    .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
                info = Some(client.upload_adapter(listing, bytes).await?);
            }
            if bundled.is_some() || config.is_some() {
                info = Some(
                    client
                        .set_adapter(listing, bundled.as_deref(), config.as_ref())
                        .await?,
                );
            }
            let info = match info {
                Some(i) => i,
                None => client.adapter(listing).await?,
            };
            out(
                to_json(&info),
                format!(
                    "{}: adapter {} ({} bytes, sha256 {})",
                    info.listing_id, info.source, info.component_bytes, info.component_sha256
                ),
            );
        }
    }
    Ok(())
}

async fn receipts(
    client: &Client,
    cmd: &ReceiptsCmd,
    out: &impl Fn(Value, String),
) -> Result<(), Failure> {
    match cmd {
        ReceiptsCmd::List { limit } => {
            let page = PageQuery {
                page: None,
                limit: Some(*limit),
            };
            let list = client.receipts(page).await?;
            let lines: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "{}  {}  {} cents  {}",
                        r.id, r.created_at, r.content["charged_amount_cents"], r.status
                    )
                })
                .collect();
            out(to_json(&list), lines.join("\n"));
        }
        ReceiptsCmd::Verify { ids } => {
            let list = if ids.is_empty() {
                client.receipts(PageQuery::default()).await?
            } else {
                let mut list = Vec::new();
                for id in ids {
                    list.push(client.receipt(id).await?);
                }
                list
            };
            // One fetch of the published keys; every check after it is offline.
            let keys = client.receipt_keys().await?;
            let results: Vec<(String, Result<(), receipts::ReceiptError>)> = list
                .iter()
                .map(|r| (r.id.clone(), receipts::verify_receipt(r, &keys)))
                .collect();
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            let v: Vec<Value> = results
                .iter()
                .map(|(id, r)| json!({"id": id, "valid": r.is_ok(), "error": r.as_ref().err().map(|e| e.to_string())}))
                .collect();
            let lines: Vec<String> = results
                .iter()
                .map(|(id, r)| match r {
                    Ok(()) => format!("{id}: valid"),
                    Err(e) => format!("{id}: INVALID ({e})"),
                })
                .collect();
            out(Value::Array(v), lines.join("\n"));
            if failed > 0 {
                return Err(Failure {
                    code: 1,
                    message: format!("{failed} receipt(s) did not verify"),
                });
            }
        }
    }
    Ok(())
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
