//! The policy chain: the operator's policy plugins (`[[plugins.policy]]`, in order),
//! each of which may allow a call or refuse it. The gateway runs it in its policy phase
//! and the unauthenticated identity routes use it as their guard. They run after
//! authentication and before any payment requirement exists, so a refused call is never
//! charged and its seller never called.
//!
//! A plugin that fails (trap, timeout, memory or output limit, a counter store that
//! cannot be reached, or a refusal with a 5xx status) follows its `failure` setting:
//! `closed` refuses the call with 503 `PLUGIN_UNAVAILABLE`, `open` lets it through. Each
//! failure is logged with the plugin's name.
//!
//! A 1.1 policy also sees the request headers the operator forwards
//! (`plugins.forward_headers`): never a credential, a cookie, a payment proof or one of
//! the gateway's own `x-crochet-*` headers ([`NEVER_FORWARDED`]), which a configuration
//! naming one is refused for.
//!
//! The chain is replaced as a whole by a reload ([`PolicyChain::install`]): policies
//! are compiled and tried on sample calls first ([`PreparedChain::try_out`]), and a
//! chain that fails either step never serves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use super::inventory::{PluginInfo, sample_contexts};
use super::{
    Attempt, CallContext, CallKind, Decision, Denial, LoadError, PaymentFlow, PluginHost,
    PolicyPlugin, bundled,
};
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

/// One policy in a chain.
#[derive(Clone)]
struct Entry {
    plugin: PolicyPlugin,
    failure: FailureMode,
    info: PluginInfo,
}

/// Request headers never shown to a policy, whatever the configuration says: the
/// buyer's credential, cookies and payment proofs. Names starting `x-crochet-` (the
/// gateway's own headers) are refused too.
pub const NEVER_FORWARDED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "payment-signature",
    "x-payment",
];

/// The policies of a chain and the request headers they are shown.
#[derive(Default)]
struct Chain {
    entries: Vec<Entry>,
    forward_headers: Vec<HeaderName>,
}

/// Policies compiled and linked, not yet serving: [`PolicyChain::install`] puts them in
/// service.
pub struct PreparedChain(Chain);

impl PreparedChain {
    /// Asks every policy that exports `validate-config` about its configuration
    /// ([`LoadError::ConfigRejected`] when one refuses it), then tries every policy on
    /// sample calls ([`sample_contexts`]) with scratch counters. A refusal with a 5xx
    /// status is how a plugin without `validate-config` reports a configuration it
    /// cannot use ([`LoadError::Misconfigured`]); a trap, a timeout or exhausted memory
    /// fails the trial too ([`LoadError::Trial`]). Refusing a sample call with a 4xx
    /// status is a policy doing its job.
    pub async fn try_out(&self) -> Result<(), LoadError> {
        for entry in &self.0.entries {
            let plugin = || entry.info.name.clone();
            match entry.plugin.validate_config().await {
                Ok(None | Some(Ok(()))) => {}
                Ok(Some(Err(message))) => {
                    return Err(LoadError::ConfigRejected {
                        plugin: plugin(),
                        message,
                    });
                }
                Err(e) => {
                    return Err(LoadError::Trial {
                        plugin: plugin(),
                        reason: format!("validate-config failed: {e}"),
                    });
                }
            }
            for ctx in sample_contexts() {
                let plugin = entry.info.name.clone();
                match entry.plugin.dry_run(&ctx).await {
                    Ok(Decision::Allow) => {}
                    Ok(Decision::Deny(d)) if (400..500).contains(&d.status) => {}
                    Ok(Decision::Deny(d)) => {
                        return Err(LoadError::Misconfigured {
                            plugin,
                            code: d.code,
                            message: d.message,
                        });
                    }
                    Err(e) => {
                        return Err(LoadError::Trial {
                            plugin,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The policy plugins in service, in the order they run. Clones share one chain, which
/// [`install`](Self::install) replaces as a whole: a call already running finishes on
/// the chain it started with, the next call sees the new one.
#[derive(Clone)]
pub struct PolicyChain(Arc<ArcSwap<Chain>>);

impl Default for PolicyChain {
    /// No policies.
    fn default() -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Chain::default())))
    }
}

impl PolicyChain {
    /// Reads, compiles (or takes from the compile cache) and links every configured
    /// policy. `bundled:<name>` names a plugin built into the host; anything else is a
    /// path. Compilation runs on the blocking pool, off the request path.
    /// `forward_headers` names the request headers the policies are shown.
    pub async fn prepare(
        host: &PluginHost,
        configs: &[PolicyPluginConfig],
        forward_headers: &[String],
    ) -> Result<PreparedChain, LoadError> {
        let mut forward = Vec::with_capacity(forward_headers.len());
        for name in forward_headers {
            forward.push(forwardable(name)?);
        }
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(configs.len());
        for c in configs {
            if !names.insert(c.name.as_str()) {
                return Err(LoadError::DuplicateName(c.name.clone()));
            }
            let wasm = component_bytes(&c.source).map_err(|e| LoadError::Source {
                plugin: c.name.clone(),
                reason: e.to_string(),
            })?;
            check_digest(&c.name, &c.source, &wasm, c.sha256.as_deref())?;
            let mut info = PluginInfo::new(&c.name, "policy", &c.source, &wasm, Some(c.failure));
            let (host, name, config) = (host.clone(), c.name.clone(), c.config.to_string());
            let isolation = c.isolation;
            let plugin = tokio::task::spawn_blocking(move || {
                host.policy_with(&name, &wasm, config, isolation)
            })
            .await
            .map_err(|e| LoadError::Source {
                plugin: c.name.clone(),
                reason: format!("compilation was interrupted: {e}"),
            })?
            .map_err(|error| LoadError::Refused {
                world: "policy",
                plugin: c.name.clone(),
                origin: c.source.clone(),
                error,
            })?;
            info.wit_version = Some(plugin.version().as_str());
            info.isolation = Some(plugin.isolation().as_str());
            entries.push(Entry {
                plugin,
                failure: c.failure,
                info,
            });
        }
        Ok(PreparedChain(Chain {
            entries,
            forward_headers: forward,
        }))
    }

    /// A chain serving `prepared`.
    pub fn new(prepared: PreparedChain) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(prepared.0)))
    }

    /// Puts `prepared` in service in place of the current policies, for every clone.
    pub fn install(&self, prepared: PreparedChain) {
        self.0.store(Arc::new(prepared.0));
    }

    /// The policies in service, in order.
    pub fn describe(&self) -> Vec<PluginInfo> {
        self.0
            .load()
            .entries
            .iter()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Whether any plugin is in service.
    pub fn is_empty(&self) -> bool {
        self.0.load().entries.is_empty()
    }

    /// The headers of a request that the policies are shown, in the order of
    /// `forward_headers`, each value as sent (values that are not visible ASCII are
    /// left out). Allocates nothing when no header is forwarded.
    pub fn forwarded_headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        let chain = self.0.load();
        let mut shown = Vec::new();
        for name in &chain.forward_headers {
            for value in headers.get_all(name) {
                if let Ok(value) = value.to_str() {
                    shown.push((name.as_str().to_owned(), value.to_owned()));
                }
            }
        }
        shown
    }

    /// Runs every plugin on `ctx`; `listing_config` gives a listing's per-plugin settings
    /// (plugin name → its JSON configuration).
    pub async fn check(
        &self,
        ctx: &mut CallContext,
        listing_config: Option<&HashMap<String, String>>,
    ) -> Result<(), PolicyRefusal> {
        // The chain this call started with, even if a reload installs another meanwhile.
        let chain = self.0.load_full();
        for Entry {
            plugin, failure, ..
        } in &chain.entries
        {
            let failure = *failure;
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
            if failure == FailureMode::Closed {
                return Err(PolicyRefusal::Unavailable {
                    plugin: plugin.name().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A `forward_headers` name as a header name, refused when it is not one or when it
/// names a header policies must never see.
#[allow(clippy::result_large_err)] // the load steps' one error type; never on a call's path
fn forwardable(name: &str) -> Result<HeaderName, LoadError> {
    let refuse = |why: &str| {
        LoadError::Config(format!(
            "plugins.forward_headers: `{name}` {why}; name the request headers policies \
             may read, such as `x-agent-team`"
        ))
    };
    let header = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| refuse("is not a header name"))?;
    if NEVER_FORWARDED.contains(&header.as_str()) || header.as_str().starts_with("x-crochet-") {
        return Err(refuse(
            "is never shown to plugins (credentials, cookies, payment proofs and the \
             gateway's own x-crochet-* headers stay private)",
        ));
    }
    Ok(header)
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

/// Refuses `wasm` when `pinned` (a hex SHA-256 from the configuration) is set and is not
/// its digest.
#[allow(clippy::result_large_err)] // the load steps' one error type; never on a call's path
pub fn check_digest(
    plugin: &str,
    origin: &str,
    wasm: &[u8],
    pinned: Option<&str>,
) -> Result<(), LoadError> {
    let Some(pinned) = pinned else {
        return Ok(());
    };
    let expected = pinned.trim().to_ascii_lowercase();
    let actual = hex::encode(Sha256::digest(wasm));
    if expected == actual {
        return Ok(());
    }
    Err(LoadError::DigestMismatch {
        plugin: plugin.to_owned(),
        origin: origin.to_owned(),
        expected,
        actual,
    })
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
        headers: Vec::new(),
        attempt: Attempt::First,
        payment: PaymentFlow::Free,
    }
}
