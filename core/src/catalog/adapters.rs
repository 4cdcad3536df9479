//! A listing's seller adapter: a bundled or uploaded component that reshapes each
//! call's body before it is signed and the seller's reply after, and its configuration.

use sha2::{Digest as _, Sha256};

use super::model::{AdapterInfo, PutAdapterRequest};
use super::store;
use super::validation::bounded_json;
use super::{Catalog, CatalogError, Result};
use crate::identity::Principal;
use crate::storage::now_ms;

impl Catalog {
    /// Attaches a bundled adapter, or changes the configuration of the current one.
    pub async fn put_adapter(
        &self,
        who: &Principal,
        id: &str,
        req: PutAdapterRequest,
    ) -> Result<AdapterInfo> {
        let listing = self.owned_for_change(who, id).await?.listing;
        let current = store::adapter(self.db.pool(), &listing.id, true).await?;
        let (source, component, sha, bytes) = match (req.bundled.as_deref(), current) {
            (Some(name), _) => {
                // The one bundled component of the seller-adapter world.
                let wasm = (name == "chat-adapter")
                    .then(|| crate::plugins::bundled::by_name(name))
                    .flatten()
                    .ok_or_else(|| {
                        CatalogError::invalid(
                            "bundled",
                            "must name a bundled seller adapter (chat-adapter)",
                        )
                    })?;
                (
                    format!("bundled:{name}"),
                    None,
                    hex::encode(Sha256::digest(wasm)),
                    wasm.len() as i64,
                )
            }
            (None, Some(cur)) => (
                cur.source,
                cur.component,
                cur.component_sha256,
                cur.component_bytes,
            ),
            (None, None) => {
                return Err(CatalogError::invalid(
                    "bundled",
                    "is required: this listing has no adapter yet (or upload one to PUT /listings/{id}/adapter/component)",
                ));
            }
        };
        self.save_adapter(store::AdapterRow {
            listing_id: listing.id,
            source,
            component,
            component_sha256: sha,
            component_bytes: bytes,
            config: adapter_config(req.config)?,
            updated_at: now_ms(),
        })
        .await
    }

    /// Attaches an uploaded component, checked to be a seller adapter under the size cap.
    /// The configuration already set is kept.
    pub async fn upload_adapter(
        &self,
        who: &Principal,
        id: &str,
        wasm: Vec<u8>,
    ) -> Result<AdapterInfo> {
        let listing = self.owned_for_change(who, id).await?.listing;
        let host = self.plugins.clone();
        let checked =
            tokio::task::spawn_blocking(move || host.validate_adapter(&wasm).map(|()| wasm))
                .await
                .map_err(|e| CatalogError::Internal(e.to_string()))?;
        let wasm = checked.map_err(|e| CatalogError::InvalidAdapter(e.to_string()))?;
        let config = store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .map_or_else(|| "{}".to_owned(), |a| a.config);
        self.save_adapter(store::AdapterRow {
            listing_id: listing.id,
            source: "upload".into(),
            component_sha256: hex::encode(Sha256::digest(&wasm)),
            component_bytes: wasm.len() as i64,
            component: Some(wasm),
            config,
            updated_at: now_ms(),
        })
        .await
    }

    async fn save_adapter(&self, row: store::AdapterRow) -> Result<AdapterInfo> {
        let mut conn = self.db.pool().acquire().await?;
        store::put_adapter(&mut conn, &row).await?;
        drop(conn);
        self.changed(&row.listing_id).await;
        Ok(row.info())
    }

    /// The listing's adapter (owner only).
    pub async fn adapter_info(&self, who: &Principal, id: &str) -> Result<AdapterInfo> {
        let listing = self.owned(who, id).await?.listing;
        store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .map(|a| a.info())
            .ok_or(CatalogError::AdapterNotFound)
    }

    /// Detaches the listing's adapter (returned); calls are forwarded unchanged again.
    pub async fn delete_adapter(&self, who: &Principal, id: &str) -> Result<AdapterInfo> {
        let listing = self.owned_for_change(who, id).await?.listing;
        let removed = store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .ok_or(CatalogError::AdapterNotFound)?;
        if !store::delete_adapter(self.db.pool(), &listing.id).await? {
            return Err(CatalogError::AdapterNotFound);
        }
        self.changed(&listing.id).await;
        Ok(removed.info())
    }

    /// The adapter's configuration and component bytes, for the gateway to compile.
    pub async fn adapter_component(&self, listing_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let Some(row) = store::adapter(self.db.pool(), listing_id, true).await? else {
            return Ok(None);
        };
        let wasm = match (row.source.as_str(), row.component) {
            (_, Some(bytes)) => bytes,
            (source, None) => match source
                .strip_prefix("bundled:")
                .and_then(crate::plugins::bundled::by_name)
            {
                Some(bytes) => bytes.to_vec(),
                None => return Ok(None),
            },
        };
        Ok(Some((row.config, wasm)))
    }
}

/// An adapter's configuration, stored as JSON text.
fn adapter_config(config: Option<serde_json::Map<String, serde_json::Value>>) -> Result<String> {
    bounded_json("config", config.unwrap_or_default())
}
