//! Compiled components: kept in memory per process, and on disk across restarts.
//!
//! Compiling a component with cranelift takes a while, so every compiled artifact is
//! written to the cache directory as `{sha256(wasm)}-{engine tag}` (both lowercase hex;
//! the engine tag is the SHA-256 of wasmtime's precompile-compatibility hash, so a new
//! wasmtime version or different engine settings never read an old file). A file holds
//! a 32-byte HMAC-SHA256 tag under the host's cache key, then the artifact. The tag
//! covers the file name and the artifact, so a file is loaded back only if this host
//! (or one sharing its key) wrote it for these very wasm bytes. Any failure to load
//! (missing, truncated, wrong tag, incompatible) means compiling afresh and rewriting.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;

type HmacSha256 = Hmac<Sha256>;

/// How many compiled components stay in memory (oldest first out). Components in use by
/// loaded plugins stay alive regardless; this only bounds the reuse map.
const MEMORY_ENTRIES: usize = 64;

/// Counters of what the compile cache did, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled with cranelift.
    pub compiled: u64,
    /// Components loaded from a verified cache file.
    pub loaded_from_disk: u64,
    /// Components reused from memory (the same bytes loaded twice in this process).
    pub reused_in_memory: u64,
    /// Cache files present but refused (bad tag, truncated, incompatible), then rewritten.
    pub rejected_on_disk: u64,
}

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    key: [u8; 32],
    /// Hex SHA-256 of the engine's precompile-compatibility hash.
    engine_tag: String,
    memory: Mutex<Memory>,
    compiled: AtomicU64,
    loaded_from_disk: AtomicU64,
    reused_in_memory: AtomicU64,
    rejected_on_disk: AtomicU64,
}

#[derive(Default)]
struct Memory {
    map: HashMap<[u8; 32], Component>,
    order: VecDeque<[u8; 32]>,
}

impl ComponentCache {
    pub(crate) fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        key: [u8; 32],
    ) -> Result<Self, PluginError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| PluginError::Cache(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            key,
            engine_tag: hex::encode(hasher.0.finalize()),
            memory: Mutex::new(Memory::default()),
            compiled: AtomicU64::new(0),
            loaded_from_disk: AtomicU64::new(0),
            reused_in_memory: AtomicU64::new(0),
            rejected_on_disk: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded_from_disk: self.loaded_from_disk.load(Ordering::Relaxed),
            reused_in_memory: self.reused_in_memory.load(Ordering::Relaxed),
            rejected_on_disk: self.rejected_on_disk.load(Ordering::Relaxed),
        }
    }

    /// The compiled component for `wasm`: from memory, else from disk, else compiled.
    pub(crate) fn get(&self, engine: &Engine, wasm: &[u8]) -> Result<Component, PluginError> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(component) = self.lock().map.get(&digest) {
            self.reused_in_memory.fetch_add(1, Ordering::Relaxed);
            return Ok(component.clone());
        }
        let file = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}", hex::encode(digest), self.engine_tag)));
        let loaded = file.as_deref().and_then(|file| self.load(engine, file));
        let component = match loaded {
            Some(component) => component,
            None => {
                let component = Component::new(engine, wasm)
                    .map_err(|e| PluginError::Compile(one_line(&format!("{e:#}"))))?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                if let Some(file) = &file {
                    self.store(&component, file);
                }
                component
            }
        };
        let mut memory = self.lock();
        if memory.map.insert(digest, component.clone()).is_none() {
            memory.order.push_back(digest);
            while memory.order.len() > MEMORY_ENTRIES {
                if let Some(old) = memory.order.pop_front() {
                    memory.map.remove(&old);
                }
            }
        }
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mac(&self, file: &Path) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        let name = file
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        mac.update(name);
        mac.update(&[0]);
        mac
    }

    /// Loads a cache file, or `None` (missing or refused: compile instead).
    fn load(&self, engine: &Engine, file: &Path) -> Option<Component> {
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "plugin cache file unreadable");
                self.rejected_on_disk.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let refuse = |why: &str| {
            tracing::warn!(file = %file.display(), "plugin cache file refused: {why}");
            self.rejected_on_disk.fetch_add(1, Ordering::Relaxed);
            None
        };
        if bytes.len() < 32 {
            return refuse("truncated");
        }
        let (tag, artifact) = bytes.split_at(32);
        let mut mac = self.mac(file);
        mac.update(artifact);
        if mac.verify_slice(tag).is_err() {
            return refuse("bad authentication tag");
        }
        // SAFETY: `Component::deserialize` trusts its input to be an artifact wasmtime
        // produced. These bytes carry a valid HMAC under the host's secret cache key over
        // this file name and these bytes, and only `store` below computes such tags, over
        // the output of `Component::serialize` for the wasm bytes whose hash is in the
        // file name. So the bytes are exactly an artifact this host wrote; wasmtime itself
        // still refuses one from another version or configuration.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => {
                self.loaded_from_disk.fetch_add(1, Ordering::Relaxed);
                Some(component)
            }
            Err(e) => refuse(&format!("{e:#}")),
        }
    }

    /// Writes the artifact (temp file, then rename). Failure only costs a recompile later.
    fn store(&self, component: &Component, file: &Path) {
        let result = (|| -> Result<(), String> {
            let artifact = component.serialize().map_err(|e| format!("{e:#}"))?;
            let mut mac = self.mac(file);
            mac.update(&artifact);
            let tag = mac.finalize().into_bytes();
            let mut contents = Vec::with_capacity(32 + artifact.len());
            contents.extend_from_slice(&tag);
            contents.extend_from_slice(&artifact);
            let tmp = file.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
            std::fs::write(&tmp, &contents).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, file).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                e.to_string()
            })
        })();
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "cannot write plugin cache file");
        }
    }
}

/// Feeds a [`Hash`] implementation into SHA-256 (for wasmtime's engine hash).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

/// `text` on one line: wasmtime's reasons may spread over several (a byte array, a
/// backtrace of causes), which a log line or an error message should not.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
