//! Agent wallets: EVM (secp256k1, EIP-191 `personal_sign`) and Solana (ed25519) keys,
//! stored as small JSON files readable by their owner only.

use std::path::Path;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha3::{Digest as _, Keccak256};

use crate::ClientError;

/// A wallet with its private key. `Debug` shows the chain and address, never the key.
pub enum Wallet {
    Evm(k256::ecdsa::SigningKey),
    Solana(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("chain", &self.chain())
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// The wallet file: `{"chain": "evm"|"solana", "secret_key": "<hex>"}`.
#[derive(Serialize, Deserialize)]
struct WalletFile {
    chain: String,
    secret_key: String,
}

/// The EIP-191 `personal_sign` digest of `message`.
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    Keccak256::new()
        .chain_update(b"\x19Ethereum Signed Message:\n")
        .chain_update(message.len().to_string().as_bytes())
        .chain_update(message)
        .finalize()
        .into()
}

/// The lowercase `0x` address of an EVM public key.
pub fn evm_address(key: &k256::ecdsa::VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    format!("0x{}", hex::encode(&hash[12..]))
}

impl Wallet {
    /// A new random EVM wallet.
    pub fn generate_evm() -> Self {
        loop {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&secret) {
                return Wallet::Evm(key);
            }
        }
    }

    /// A new random Solana wallet.
    pub fn generate_solana() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Wallet::Solana(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    /// `"evm"` or `"solana"`.
    pub fn chain(&self) -> &'static str {
        match self {
            Wallet::Evm(_) => "evm",
            Wallet::Solana(_) => "solana",
        }
    }

    /// The address: lowercase `0x` hex (EVM) or base58 (Solana).
    pub fn address(&self) -> String {
        match self {
            Wallet::Evm(key) => evm_address(key.verifying_key()),
            Wallet::Solana(key) => bs58::encode(key.verifying_key().as_bytes()).into_string(),
        }
    }

    /// Signs `message` as the host verifies it: EIP-191 `personal_sign` as `0x` + r‖s‖v
    /// (v 27/28) for EVM, a base58 ed25519 signature for Solana.
    pub fn sign(&self, message: &str) -> String {
        match self {
            Wallet::Evm(key) => {
                let (sig, recid) = key
                    .sign_prehash_recoverable(&eip191_hash(message.as_bytes()))
                    .expect("signing a 32-byte digest cannot fail");
                let mut bytes = sig.to_bytes().to_vec();
                bytes.push(27 + recid.to_byte());
                format!("0x{}", hex::encode(bytes))
            }
            Wallet::Solana(key) => {
                use ed25519_dalek::Signer as _;
                bs58::encode(key.sign(message.as_bytes()).to_bytes()).into_string()
            }
        }
    }

    fn secret_hex(&self) -> String {
        match self {
            Wallet::Evm(key) => hex::encode(key.to_bytes()),
            Wallet::Solana(key) => hex::encode(key.to_bytes()),
        }
    }

    /// Writes the wallet file (mode 0600 on Unix; an existing file is replaced).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ClientError> {
        let path = path.as_ref();
        let file = WalletFile {
            chain: self.chain().into(),
            secret_key: self.secret_hex(),
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| ClientError::Wallet(e.to_string()))?;
        write_private(path, &json)
            .map_err(|e| ClientError::Wallet(format!("{}: {e}", path.display())))
    }

    /// Reads a wallet file. On Unix a file that group or others may read is refused
    /// ([`ClientError::WalletPermissions`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| ClientError::Wallet(format!("{}: {e}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ClientError::WalletPermissions {
                    path: path.display().to_string(),
                    mode,
                });
            }
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Reads a wallet from the environment variable `name`, which holds the wallet file's
    /// JSON (for containers and CI secrets, where a file is awkward).
    pub fn from_env(name: &str) -> Result<Self, ClientError> {
        let text = std::env::var(name)
            .map_err(|_| ClientError::Wallet(format!("environment variable {name} is not set")))?;
        Self::from_json(text.as_bytes(), &format!("${name}"))
    }

    /// Parses a wallet file's JSON; `origin` names where it came from in errors (never
    /// the key).
    fn from_json(bytes: &[u8], origin: &str) -> Result<Self, ClientError> {
        let file: WalletFile = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Wallet(format!("{origin}: not a wallet file: {e}")))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(file.secret_key.trim(), &mut secret).map_err(|_| {
            ClientError::Wallet(format!("{origin}: secret_key is not 64 hex digits"))
        })?;
        match file.chain.as_str() {
            "evm" => k256::ecdsa::SigningKey::from_slice(&secret)
                .map(Wallet::Evm)
                .map_err(|_| {
                    ClientError::Wallet(format!(
                        "{origin}: secret_key is not a valid secp256k1 key"
                    ))
                }),
            "solana" => Ok(Wallet::Solana(ed25519_dalek::SigningKey::from_bytes(
                &secret,
            ))),
            other => Err(ClientError::Wallet(format!(
                "{origin}: unknown chain `{other}`"
            ))),
        }
    }

    /// The wallet file's JSON, with the private key: what [`Wallet::from_env`] reads.
    /// Keep it as secret as the key itself.
    pub fn to_json(&self) -> String {
        serde_json::json!({"chain": self.chain(), "secret_key": self.secret_hex()}).to_string()
    }
}

/// Writes `bytes` to `path`, readable and writable by its owner only (mode 0600 on
/// Unix, tightened too when the file already existed), and syncs it: for files that hold
/// a credential (a wallet, an API key, a signing secret).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    // An existing file keeps its mode on open: tighten it too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evm_signature_recovers_to_the_address() {
        let w = Wallet::generate_evm();
        let addr = w.address();
        assert!(addr.starts_with("0x") && addr.len() == 42 && addr == addr.to_lowercase());
        let sig = hex::decode(w.sign("hello").trim_start_matches("0x")).unwrap();
        assert_eq!(sig.len(), 65);
        assert!(sig[64] == 27 || sig[64] == 28);
        let signature = k256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
        let recid = k256::ecdsa::RecoveryId::from_byte(sig[64] - 27).unwrap();
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(
            &eip191_hash(b"hello"),
            &signature,
            recid,
        )
        .unwrap();
        assert_eq!(evm_address(&recovered), addr);
    }

    #[test]
    fn solana_signature_verifies() {
        let w = Wallet::generate_solana();
        let public: [u8; 32] = bs58::decode(w.address())
            .into_vec()
            .unwrap()
            .try_into()
            .unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        let sig: [u8; 64] = bs58::decode(w.sign("hello"))
            .into_vec()
            .unwrap()
            .try_into()
            .unwrap();
        key.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
    }

    #[test]
    fn wallets_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        for w in [Wallet::generate_evm(), Wallet::generate_solana()] {
            let path = dir.path().join(format!("{}.json", w.chain()));
            w.save(&path).unwrap();
            let back = Wallet::load(&path).unwrap();
            assert_eq!(back.address(), w.address());
            assert_eq!(back.chain(), w.chain());
            let debug = format!("{w:?}");
            assert!(debug.contains(&w.address()) && !debug.contains(&w.secret_hex()));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn loading_refuses_a_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        Wallet::generate_evm().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match Wallet::load(&path) {
            Err(ClientError::WalletPermissions { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("{other:?}"),
        }
        // Saving again tightens the mode.
        Wallet::generate_evm().save(&path).unwrap();
        Wallet::load(&path).unwrap();
    }

    #[test]
    fn a_wallet_round_trips_through_the_environment() {
        let w = Wallet::generate_solana();
        // SAFETY: this test is the only user of this variable name.
        unsafe { std::env::set_var("CROCHET_CLIENT_TEST_WALLET", w.to_json()) };
        let back = Wallet::from_env("CROCHET_CLIENT_TEST_WALLET").unwrap();
        assert_eq!(back.address(), w.address());
        let err = Wallet::from_env("CROCHET_CLIENT_TEST_NO_SUCH_VAR").unwrap_err();
        assert!(err.to_string().contains("is not set"), "{err}");
        unsafe {
            std::env::set_var(
                "CROCHET_CLIENT_TEST_WALLET",
                "{\"chain\":\"evm\",\"secret_key\":\"zz\"}",
            )
        };
        let err = Wallet::from_env("CROCHET_CLIENT_TEST_WALLET").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
