//! Identity verifiers beside the primitives they wrap, in one run:
//!
//! - `pow/verify` (our proof-of-work check) vs `pow/sha256` (one SHA-256 of the same bytes);
//! - `evm/verify` (hex decode, EIP-191 digest, recovery, address compare) vs
//!   `evm/k256_recover` (`VerifyingKey::recover_from_prehash` alone);
//! - `solana/verify` (signature decode + verify) vs `solana/ed25519_verify`
//!   (`VerifyingKey::verify_strict` alone).
//!
//! Target: each verifier costs at most 1.1x its primitive. Figures: README.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use crochet::identity::crypto::{WalletAddress, eip191_hash, verify_pow};
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};

/// A challenge message of the size the host issues.
const MESSAGE: &str = "Crochet wallet verification\n\nDomain: gateway.example.com\n\
Wallet: 0x2c7536e3605d9c16a7a3d7b1898e529396a65c23\nPurpose: register\n\
Nonce: 6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e\nIssued At: 2026-11-23T08:00:00.000Z\n\
Expires At: 2026-11-23T08:05:00.000Z";

fn pow(c: &mut Criterion) {
    let challenge = "848bc49ccd764c2639fb164ad9d86b7eea28c4ebf1e76327018783826386f43b";
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|n| verify_pow(challenge, n, 4))
        .unwrap();
    let joined = format!("{challenge}{nonce}").into_bytes();
    let mut g = c.benchmark_group("pow");
    g.bench_function("sha256", |b| b.iter(|| Sha256::digest(black_box(&joined))));
    g.bench_function("verify", |b| {
        b.iter(|| verify_pow(black_box(challenge), black_box(&nonce), black_box(4)))
    });
    g.finish();
}

fn evm(c: &mut Criterion) {
    let key = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let prehash = eip191_hash(MESSAGE.as_bytes());
    let (sig, recid) = key.sign_prehash_recoverable(&prehash).unwrap();
    let mut wire = sig.to_bytes().to_vec();
    wire.push(27 + recid.to_byte());
    let wire = format!("0x{}", hex::encode(wire));
    let address = {
        let point = key.verifying_key().to_encoded_point(false);
        let hash = <sha3::Keccak256 as sha3::Digest>::digest(&point.as_bytes()[1..]);
        WalletAddress::parse(&format!("0x{}", hex::encode(&hash[12..]))).unwrap()
    };
    address.verify(MESSAGE.as_bytes(), &wire).unwrap();
    let mut g = c.benchmark_group("evm");
    g.bench_function("k256_recover", |b| {
        b.iter(|| {
            k256::ecdsa::VerifyingKey::recover_from_prehash(
                black_box(&prehash),
                black_box(&sig),
                recid,
            )
            .unwrap()
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            address
                .verify(black_box(MESSAGE.as_bytes()), black_box(&wire))
                .unwrap()
        })
    });
    g.finish();
}

fn solana(c: &mut Criterion) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
    let sig = key.sign(MESSAGE.as_bytes());
    let wire = bs58::encode(sig.to_bytes()).into_string();
    let public = key.verifying_key();
    let address = WalletAddress::parse(&bs58::encode(public.as_bytes()).into_string()).unwrap();
    let mut g = c.benchmark_group("solana");
    g.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            public
                .verify_strict(black_box(MESSAGE.as_bytes()), black_box(&sig))
                .unwrap()
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            address
                .verify(black_box(MESSAGE.as_bytes()), black_box(&wire))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, pow, evm, solana);
criterion_main!(benches);
