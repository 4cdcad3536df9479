//! Crochet Gateway host.
//!
//! One module per domain, each owning its types, its SQL and its error type, with thin
//! HTTP handlers beside it:
//!
//! - [`identity`]: wallet challenges, registration, API keys, linked wallets, claims;
//! - [`catalog`]: categories, listings, seller endpoints (secrets encrypted at rest);
//! - [`gateway`]: the pay-per-call pipeline and the recovery of interrupted paid calls;
//! - [`seller_client`]: how requests to sellers are signed and sent (the outbound client);
//! - [`ledger`]: the append-only money record and the fee rule;
//! - [`payments`]: the configured payment provider and the mock settle route;
//! - [`reputation`]: reviews, score events and the Crochet Score;
//! - [`plugins`]: the WebAssembly sandbox for policy, scorer and seller-adapter plugins;
//! - [`admin`]: the operator's credential, suspensions, marketplace statistics and the
//!   audit log;
//! - [`storage`]: the SQLite/PostgreSQL pool and migrations;
//! - [`config`]: layered configuration and production safety checks;
//! - [`secrets`]: the master key and derived keys;
//! - [`text`]: which characters network text may carry;
//! - [`metrics`]: every Prometheus metric's name and labels, the recorder, the helpers;
//! - [`http`]: router, middleware, envelope, the one error-to-response mapping, OpenAPI;
//! - [`app`]: state, start-up and graceful shutdown;
//! - [`devwallet`]: the `crochet wallet` development helper.

pub mod admin;
pub mod app;
pub mod catalog;
pub mod config;
pub mod devwallet;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod pagination;
pub mod payments;
pub mod plugins;
pub mod reputation;
pub mod secrets;
pub mod seller_client;
pub mod storage;
pub mod text;

#[cfg(test)]
mod architecture;
