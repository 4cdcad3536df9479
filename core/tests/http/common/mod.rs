//! Test helpers shared by every HTTP-level test: a real host on an ephemeral port with
//! a temporary database (SQLite file, or a fresh PostgreSQL schema), an HTTP client, and
//! agents that hold real EVM and Solana keys.
//!
//! Split by what each part provides: [`app`] (hosts and databases), [`agents`] (client,
//! wallets, agents, proof-of-work), [`sellers`] (the test seller, publishing),
//! [`payments`] (gateway calls and the paid flow), [`raw`] (raw TCP connections),
//! [`process`] (the real binary as a process), [`metrics`] (reading `/metrics`) and
//! [`admin`] (the operator credential and admin requests), [`x402`] (a local x402
//! facilitator and buyers that sign x402 payments).
//! Everything is re-exported here: tests use `crate::common::X`.

pub mod admin;
pub mod agents;
pub mod app;
pub mod mcp;
pub mod metrics;
pub mod payments;
pub mod process;
pub mod raw;
pub mod sellers;
pub mod x402;

pub use admin::*;
pub use agents::*;
pub use app::*;
pub use mcp::*;
pub use metrics::*;
pub use payments::*;
pub use process::*;
pub use raw::*;
pub use sellers::*;
pub use x402::*;

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL
/// (PostgreSQL only when `CROCHET_TEST_POSTGRES_URL` is set; otherwise it says so).
///
/// `on_both_backends!(mod NAME, configure = FN; tests...)` does the same on hosts whose
/// configuration `FN(&mut Config)` adjusts, in a module of its own.
#[macro_export]
macro_rules! on_both_backends {
    (mod $module:ident, configure = $configure:path; $($name:ident),* $(,)?) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let app = $crate::common::TestApp::start($crate::common::Backend::Sqlite, $configure).await.unwrap();
                        super::super::$name(app).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Postgres, $configure).await else {
                            return;
                        };
                        super::super::$name(app).await;
                    }
                )*
            }
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::start($crate::common::Backend::Sqlite, |_| {}).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::common::TestApp::start($crate::common::Backend::Postgres, |_| {}).await else {
                        return;
                    };
                    super::$name(app).await;
                }
            )*
        }
    };
}
