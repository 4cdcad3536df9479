//! The listing's seller adapter around the forward: the compiled-adapter cache, the
//! request adapter phase (before payment) and the response adapter phase (after the
//! seller answered). See [`super::pipeline`] for where they run.

use std::sync::Arc;

use super::Gateway;
use super::error::GatewayError;
use super::model::GatewayRequestStatus as Status;
use super::pipeline::{Answered, GatewayCall, Result, Target};
use crate::plugins::AdapterPlugin;

/// A listing's seller adapter with its configuration.
#[derive(Clone)]
pub(super) struct Adapter {
    plugin: AdapterPlugin,
    config: Arc<str>,
}

impl Gateway {
    /// The compiled adapter of a listing (compiled once per adapter version).
    async fn adapter(&self, listing_id: &str, key: &str) -> Result<Adapter, GatewayError> {
        if let Some(a) = self.adapters.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(a);
        }
        let row = self
            .catalog
            .adapter_component(listing_id)
            .await?
            .ok_or(GatewayError::AdapterUnavailable)?;
        let host = self.plugins.clone();
        let name = format!("adapter:{listing_id}");
        let plugin = tokio::task::spawn_blocking(move || host.adapter(&name, &row.1))
            .await
            .map_err(|_| GatewayError::AdapterUnavailable)?
            .map_err(|e| {
                tracing::warn!(listing_id, error = %e, "cannot load seller adapter");
                GatewayError::AdapterUnavailable
            })?;
        let adapter = Adapter {
            plugin,
            config: row.0.into(),
        };
        if let Ok(mut map) = self.adapters.lock() {
            // Old versions of this listing's adapter are never asked for again.
            map.retain(|k, _| !k.ends_with(&format!("@{listing_id}")));
            map.insert(key.to_owned(), adapter.clone());
        }
        Ok(adapter)
    }

    /// Request adapter phase, after the policy and before payment: the listing's seller
    /// adapter reshapes the body that will be signed and sent. Changes only the target's
    /// body; a body the adapter rejects is refused before anything is charged.
    pub(super) async fn adapt_request(
        &self,
        call: &GatewayCall,
        target: &mut Target,
    ) -> Result<()> {
        let Some(key) = target.listing().adapter.clone() else {
            return Ok(());
        };
        let adapter = self.adapter(&target.listing().id, &key).await?;
        let body = String::from_utf8_lossy(&call.body);
        let adapted = adapter
            .plugin
            .adapt_request(&adapter.config, &body)
            .await
            .map_err(|e| {
                tracing::warn!(plugin = adapter.plugin.name(), error = %e, "seller adapter failed");
                GatewayError::AdapterUnavailable
            })?
            .map_err(GatewayError::AdapterRejected)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&adapted).map_err(|_| {
            GatewayError::AdapterRejected("the adapter did not produce JSON".into())
        })?;
        target.adapted_body = Some(adapted.into());
        target.adapter = Some(adapter);
        Ok(())
    }

    /// Response adapter phase, after classify: the listing's adapter reshapes a
    /// successful answer into what the buyer receives. An answer it rejects, or that is
    /// not JSON afterwards, becomes a seller error (`SELLER_ADAPTER_FAILED`).
    pub(super) async fn adapt_response(&self, target: &Target, mut answered: Answered) -> Answered {
        let (Some(adapter), None, Some(r)) =
            (&target.adapter, answered.code, answered.response.as_mut())
        else {
            return answered;
        };
        let text = String::from_utf8_lossy(&r.body);
        let adapted = match adapter
            .plugin
            .adapt_response(&adapter.config, r.status, &text)
            .await
        {
            Ok(Ok(out)) => serde_json::from_str::<serde::de::IgnoredAny>(&out)
                .map(|_| out.into_bytes())
                .map_err(|_| "the seller adapter did not produce JSON".to_owned()),
            Ok(Err(reason)) => Err(format!("the seller adapter rejected the reply: {reason}")),
            Err(e) => Err(format!("the seller adapter failed: {e}")),
        };
        match adapted {
            Ok(body) => r.body = body,
            Err(why) => {
                answered.status = Status::SellerError;
                answered.code = Some("SELLER_ADAPTER_FAILED");
                answered.message = why;
            }
        }
        answered
    }
}
