//! The policy chain: the operator's policy plugins (`[[plugins.policy]]`, in order),
//! each of which may allow a call or refuse it. The gateway runs it in its policy phase
//! and the unauthenticated identity routes use it as their guard. They run after authentication and before any payment
//! requirement exists, so a refused call is never charged and its seller never called.
//!
//! A plugin that fails (trap, timeout, memory or output limit, a counter store that
//! cannot be reached, or a refusal with a 5xx status) follows its `failure` setting:
//! `closed` refuses the call with 503 `PLUGIN_UNAVAILABLE`, `open` lets it through. Each
//! failure is logged with the plugin's name.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CallContext, CallKind, Decision, Denial, PluginHost, PolicyPlugin, bundled};
use crate::config::{FailureMode, PolicyPluginConfig};

/// Why a policy stopped a call.
#[derive(Debug, thiserror::Error)]
pub enum PolicyRefusal {
    /// The plugin refused it (429 rate limit, 422 validation, ...).
    #[error("{}", .denial.message)]
    Denied { plugin: String, denial: Denial },
    /// The plugin failed and is configured fail-closed.
    #[error("the {plugin} policy plugin failed, so the call was refused; retry later")]
    Unavailable { plugin: String },
}

/// The loaded policy plugins, in the order they run.
#[derive(Clone, Default)]
pub struct PolicyChain(Arc<Vec<(PolicyPlugin, FailureMode)>>);

impl PolicyChain {
    /// Loads (and compiles, or takes from the compile cache) every configured plugin.
    /// `bundled:<name>` names a plugin built into the host; anything else is a path.
    pub async fn load(host: &PluginHost, configs: &[PolicyPluginConfig]) -> anyhow::Result<Self> {
        let mut plugins = Vec::with_capacity(configs.len());
        for c in configs {
            let wasm = component_bytes(&c.source)?;
            let (host, name, config) = (host.clone(), c.name.clone(), c.config.to_string());
            let plugin = tokio::task::spawn_blocking(move || host.policy(&name, &wasm, config))
                .await?
                .map_err(|e| anyhow::anyhow!("policy plugin `{}` ({}): {e}", c.name, c.source))?;
            plugins.push((plugin, c.failure));
        }
        Ok(Self(Arc::new(plugins)))
    }

    /// Whether any plugin is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs every plugin on `ctx`; `listing_config` gives a listing's per-plugin settings
    /// (plugin name → its JSON configuration).
    pub async fn check(
        &self,
        ctx: &mut CallContext,
        listing_config: Option<&HashMap<String, String>>,
    ) -> Result<(), PolicyRefusal> {
        for (plugin, failure) in self.0.iter() {
            ctx.listing_config = listing_config.and_then(|c| c.get(plugin.name())).cloned();
            let failed = match plugin.check(ctx).await {
                Ok(Decision::Allow) => continue,
                Ok(Decision::Deny(denial)) if (400..500).contains(&denial.status) => {
                    return Err(PolicyRefusal::Denied {
                        plugin: plugin.name().to_owned(),
                        denial,
                    });
                }
                Ok(Decision::Deny(denial)) => format!("{}: {}", denial.code, denial.message),
                Err(e) => e.to_string(),
            };
            tracing::warn!(plugin = plugin.name(), error = %failed, ?failure, "policy plugin failed");
            if *failure == FailureMode::Closed {
                return Err(PolicyRefusal::Unavailable {
                    plugin: plugin.name().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// The bytes of a plugin named in configuration.
pub fn component_bytes(source: &str) -> anyhow::Result<Vec<u8>> {
    match source.strip_prefix("bundled:") {
        Some(name) => bundled::by_name(name).map(<[u8]>::to_vec).ok_or_else(|| {
            anyhow::anyhow!(
                "no bundled plugin is named `{name}` (one of: {})",
                bundled::NAMES.join(", ")
            )
        }),
        None => std::fs::read(source)
            .map_err(|e| anyhow::anyhow!("cannot read plugin component `{source}`: {e}")),
    }
}

/// An empty context of the given kind, to be filled by the caller.
pub fn context(kind: CallKind, route: &str, client_ip: String) -> CallContext {
    CallContext {
        kind,
        route: route.to_owned(),
        client_ip,
        buyer_id: None,
        seller_id: None,
        listing_id: None,
        price_cents: 0,
        currency: "USD".into(),
        origin_currency: None,
        origin_chain_id: None,
        origin_wallet_id: None,
        body_size: 0,
        body_sha256: String::new(),
        body_json: "null".into(),
        buyer_score: None,
        seller_score: None,
        listing_config: None,
    }
}
