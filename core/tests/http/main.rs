//! HTTP-level tests: each starts the real router on an ephemeral port with a temporary
//! database and acts as agents would, with real keys.

mod admin;
mod agent;
mod balance;
mod catalog;
mod cli;
mod client;
mod common;
mod connections;
mod conventions;
mod gateway;
mod identity;
mod input;
mod instances;
mod limits;
mod mcp;
mod metrics;
mod payments;
mod plugins;
mod polyglot;
mod process;
mod reload;
mod reputation;
mod x402;
