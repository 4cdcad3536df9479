//! The scorer in service: the `scorer` plugin that computes the Crochet Score, loaded
//! from `plugins.scorer` and replaced as a whole by a reload.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::inventory::{PluginInfo, sample_stats};
use super::policy::{check_digest, component_bytes};
use super::{LoadError, PluginHost, ScorerPlugin};

/// A scorer with its description.
pub struct Scorer {
    pub plugin: ScorerPlugin,
    pub info: PluginInfo,
}

impl Scorer {
    /// Reads, compiles (on the blocking pool) and links the scorer at `source`
    /// (`bundled:scoring` or a path), refusing it when `sha256` is set and is not its
    /// digest.
    pub async fn prepare(
        host: &PluginHost,
        source: &str,
        sha256: Option<&str>,
    ) -> Result<Self, LoadError> {
        let name = "scorer";
        let wasm = component_bytes(source).map_err(|e| LoadError::Source {
            plugin: name.into(),
            reason: e.to_string(),
        })?;
        check_digest(name, source, &wasm, sha256)?;
        let info = PluginInfo::new(name, "scorer", source, &wasm, None);
        let host = host.clone();
        let plugin = tokio::task::spawn_blocking(move || host.scorer(name, &wasm, "{}".into()))
            .await
            .map_err(|e| LoadError::Source {
                plugin: name.into(),
                reason: format!("compilation was interrupted: {e}"),
            })?
            .map_err(|error| LoadError::Refused {
                world: "scorer",
                plugin: name.into(),
                origin: source.to_owned(),
                error,
            })?;
        Ok(Self { plugin, info })
    }

    /// Scores a sample agent: the scorer must answer without failing.
    pub async fn try_out(&self) -> Result<(), LoadError> {
        self.plugin
            .score(&sample_stats())
            .await
            .map(drop)
            .map_err(|e| LoadError::Trial {
                plugin: self.info.name.clone(),
                reason: e.to_string(),
            })
    }
}

/// The scorer in service. Clones share it; [`install`](Self::install) replaces it for
/// all of them, and a computation already running finishes with the one it started with.
#[derive(Clone)]
pub struct ScorerSlot(Arc<ArcSwap<Scorer>>);

impl ScorerSlot {
    /// A slot serving `scorer`.
    pub fn new(scorer: Scorer) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(scorer)))
    }

    /// The scorer in service now.
    pub fn current(&self) -> Arc<Scorer> {
        self.0.load_full()
    }

    /// Puts `scorer` in service.
    pub fn install(&self, scorer: Scorer) {
        self.0.store(Arc::new(scorer));
    }
}
