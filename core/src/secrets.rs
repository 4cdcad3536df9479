//! The host's master key and the keys derived from it.
//!
//! `CROCHET_ENCRYPTION_KEY` (32 bytes, base64) is the root of every secret the host keeps:
//! the API-key hashing key and the at-rest encryption key ([`Cipher`]) are derived from
//! it. In `development` a key is generated once and kept in a file beside the database;
//! `production` refuses to start without one (see [`crate::config`]).
//!
//! # Rotating the master key without downtime
//!
//! 1. Set the new key as `CROCHET_ENCRYPTION_KEY` and list the old one in
//!    `previous_encryption_keys` (`CROCHET_PREVIOUS_ENCRYPTION_KEYS='["old…"]'`); restart
//!    instances one by one. Every instance now encrypts with the new key and still reads
//!    values (and API keys) made under the old one.
//! 2. Run `crochet rotate-secrets`: every encrypted value is rewritten under the new key.
//!    API keys cannot be re-hashed without the raw key, so each is moved to the new hash
//!    the first time it is used.
//! 3. Once old API keys have been used (or revoked), drop the old key from the list.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Errors loading or generating the master key.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "CROCHET_ENCRYPTION_KEY must be 32 bytes encoded as base64 (generate one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("stored secret cannot be decrypted: {0}")]
    Undecryptable(&'static str),
    #[error("cannot read or write the development key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// The 32-byte master key. Never logged: `Debug` prints nothing of it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(encoded: &str) -> Result<Self, SecretsError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| SecretsError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::BadKey)?;
        Ok(Self(key))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Reads the key kept at `path`, or generates one and writes it there (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let io_err = |source| SecretsError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io_err)?;
                }
                write_private(path, key.to_base64().as_bytes()).map_err(io_err)?;
                Ok(key)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Derives an independent 32-byte subkey for one purpose (HMAC-SHA256 keyed by the
    /// master key over the purpose label), so no two uses share key material.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"crochet/v1/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Label of the at-rest encryption subkey.
const AT_REST_LABEL: &str = "at-rest/aes-256-gcm";
/// Version tag of the stored form `v1:<key id>:<base64(nonce ‖ ciphertext)>`.
const FORMAT: &str = "v1";

struct KeyedAead {
    id: String,
    aead: Aes256Gcm,
}

impl KeyedAead {
    fn new(master: &MasterKey) -> Self {
        let key = master.derive(AT_REST_LABEL);
        Self {
            id: hex::encode(&master.derive("key-id")[..4]),
            aead: Aes256Gcm::new(&key.into()),
        }
    }
}

/// AES-256-GCM for secrets at rest (seller URLs, upstream auth headers, signing secrets).
///
/// Each value gets a fresh random 96-bit nonce and is bound to a context string (for
/// example `listing:<id>:url`) as associated data, so a ciphertext copied to another row
/// or column does not decrypt. The stored form names the key id, so values written under
/// a previous master key stay readable during a rotation.
pub struct Cipher {
    current: KeyedAead,
    previous: Vec<KeyedAead>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(key {})", self.current.id)
    }
}

impl Cipher {
    pub fn new(current: &MasterKey, previous: &[MasterKey]) -> Self {
        Self {
            current: KeyedAead::new(current),
            previous: previous.iter().map(KeyedAead::new).collect(),
        }
    }

    /// Encrypts `plaintext` bound to `context`.
    pub fn encrypt(&self, plaintext: &str, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .current
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Only fails for plaintexts beyond AES-GCM's 64 GiB limit.
            .expect("AES-GCM encryption of a bounded value");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!(
            "{FORMAT}:{}:{}",
            self.current.id,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(blob)
        )
    }

    /// Decrypts a value written by [`Cipher::encrypt`] under the current or a previous key.
    pub fn decrypt(&self, stored: &str, context: &str) -> Result<String, SecretsError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(FORMAT), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretsError::Undecryptable("unknown format"));
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or(SecretsError::Undecryptable(
                "written under a key that is not configured",
            ))?;
        let blob = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(data)
            .map_err(|_| SecretsError::Undecryptable("bad encoding"))?;
        if blob.len() < 12 {
            return Err(SecretsError::Undecryptable("truncated"));
        }
        let (nonce, sealed) = blob.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| SecretsError::Undecryptable("truncated"))?;
        let plain = key
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Undecryptable("authentication failed"))?;
        String::from_utf8(plain).map_err(|_| SecretsError::Undecryptable("not UTF-8"))
    }

    /// Whether a stored value was written under another key than the current one.
    pub fn is_stale(&self, stored: &str) -> bool {
        stored.split(':').nth(1) != Some(self.current.id.as_str())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// `N` random bytes from the operating system, hex-encoded: nonces, challenges, ids and
/// signing secrets.
pub fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/crochet.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.to_base64(), b.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let k = MasterKey::generate();
        assert_ne!(k.derive("api-keys"), k.derive("encryption"));
        assert_eq!(k.derive("api-keys"), k.derive("api-keys"));
    }

    #[test]
    fn cipher_round_trip_binds_context_and_survives_rotation() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let before = Cipher::new(&old, &[]);
        let stored = before.encrypt("https://seller.example/secret", "listing:1:url");
        assert!(!stored.contains("seller.example"));
        assert_ne!(
            stored,
            before.encrypt("https://seller.example/secret", "listing:1:url"),
            "fresh nonce"
        );
        assert_eq!(
            before.decrypt(&stored, "listing:1:url").unwrap(),
            "https://seller.example/secret"
        );
        assert!(
            before.decrypt(&stored, "listing:2:url").is_err(),
            "bound to its row"
        );

        let during = Cipher::new(&new, std::slice::from_ref(&old));
        assert!(during.is_stale(&stored));
        assert_eq!(
            during.decrypt(&stored, "listing:1:url").unwrap(),
            "https://seller.example/secret"
        );
        let rewritten = during.encrypt("https://seller.example/secret", "listing:1:url");
        assert!(!during.is_stale(&rewritten));
        let after = Cipher::new(&new, &[]);
        assert!(after.decrypt(&rewritten, "listing:1:url").is_ok());
        assert!(after.decrypt(&stored, "listing:1:url").is_err());
        let mut tampered = rewritten.clone();
        tampered.pop();
        tampered.push(if rewritten.ends_with('A') { 'B' } else { 'A' });
        assert!(after.decrypt(&tampered, "listing:1:url").is_err());
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(format!("{:?}", MasterKey::generate()).contains(".."));
    }
}
