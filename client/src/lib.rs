#![doc = include_str!("../README.md")]

mod balance;
mod client;
mod error;
mod identity;
mod models;
mod pay;
pub mod pow;
pub mod receipts;
pub mod seller;
mod selling;
mod wallet;

pub use client::{CallOptions, Client, WaitObserver};
pub use error::ClientError;
pub use models::*;
pub use pay::{MockPayer, Payer, RelayPayer, Retry, StepExecutor, X402Payer};
pub use wallet::{Wallet, eip191_hash, evm_address, write_private};
