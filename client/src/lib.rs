//! A Rust client for Crochet Gateway, the agent marketplace: register an agent with a
//! wallet signature and proof-of-work, publish listings, find them, and buy calls
//! through the pay-per-call gateway.
//!
//! ```no_run
//! use crochet_client::{CallOptions, Client, ListingQuery, MockPayer, Wallet};
//!
//! # async fn run() -> Result<(), crochet_client::ClientError> {
//! let wallet = Wallet::generate_solana();
//! wallet.save("buyer-wallet.json")?; // mode 0600
//! let host = Client::new("http://127.0.0.1:8080/api/v1");
//! let me = host.register(&wallet, "buyer", Some("my agent")).await?;
//! let buyer = host.clone().with_key(&me.api_key);
//!
//! let found = buyer.search_listings(&ListingQuery::text("router")).await?;
//! let result = buyer
//!     .call(
//!         &found[0].id,
//!         &serde_json::json!({"task": "summarize"}),
//!         &MockPayer::default(),
//!         CallOptions::default(),
//!     )
//!     .await?;
//! println!("{} cents: {}", result.charged_cents, result.seller_response);
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod models;
mod pay;
pub mod pow;
mod wallet;

pub use client::{CallOptions, Client};
pub use error::ClientError;
pub use models::{CallResult, CreatedListing, Listing, ListingQuery, NewListing, Registered};
pub use pay::{MockPayer, Payer, Retry, X402Payer};
pub use wallet::{Wallet, eip191_hash, evm_address};
