//! The operator's cryptography: signed documents anyone can check (Ed25519 over RFC 8785
//! canonical JSON), the operator's key files, and the age encryption of delivery keys.
//!
//! - `jcs`: RFC 8785 (JSON Canonicalization Scheme) bytes of a JSON value.
//! - `keyring`: the signing keys and escrow identities, on disk and in memory; signs and verifies
//!   documents.
//! - `sealing`: age recipients and identities: checking a provider's public key, opening a
//!   delivery key deposited sealed to the escrow recipient, re-encrypting it to a buyer.
//! - `batch`: the Ed25519 signatures of identifier gateway batches (an enterprise's key, not
//!   the operator's): signing on the gateway, verifying on the platform.

pub mod batch;
pub mod jcs;
pub mod keyring;
pub mod sealing;

pub use keyring::{KeyRing, KeyRingError, SignatureError};
