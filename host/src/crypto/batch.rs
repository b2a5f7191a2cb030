//! Signatures of identifier gateway batches (compute-provider-access §3).
//!
//! The gateway signs the exact bytes of the request body it sends to
//! `POST /v1/gateway/identifiers`, prefixed with a context string so that a signature made for
//! a batch can never be passed off as one over anything else:
//!
//! ```text
//! signature = Ed25519(key, "liutong-gateway-batch-v1\n" || body)
//! ```
//!
//! sent base64 (standard alphabet, padded) in `X-Gateway-Signature`, with the key's id (the
//! first 16 hex digits of the SHA-256 of the 32 public key bytes) in `X-Gateway-Key-Id`.

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

pub const SIGNING_CONTEXT: &[u8] = b"liutong-gateway-batch-v1\n";
pub const KEY_ID_HEADER: &str = "x-gateway-key-id";
pub const SIGNATURE_HEADER: &str = "x-gateway-signature";

#[derive(Debug, thiserror::Error)]
pub enum BatchKeyError {
    #[error("the public key is not base64 of 32 bytes of an Ed25519 key")]
    PublicKey,
    #[error("the signature is not base64 of 64 bytes")]
    SignatureEncoding,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the private key is not a PKCS#8 PEM Ed25519 key: {0}")]
    PrivateKey(String),
    #[error("no randomness: {0}")]
    Rng(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The key id of a public key: the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_owned()
}

/// A public key from its base64 text (32 bytes).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, BatchKeyError> {
    let bytes = b64()
        .decode(text.trim())
        .map_err(|_| BatchKeyError::PublicKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| BatchKeyError::PublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| BatchKeyError::PublicKey)
}

pub fn encode_public_key(key: &VerifyingKey) -> String {
    b64().encode(key.as_bytes())
}

fn message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(body);
    m
}

/// The base64 signature of a batch body.
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    b64().encode(key.sign(&message(body)).to_bytes())
}

/// Checks a base64 signature over a batch body.
pub fn verify(key: &VerifyingKey, body: &[u8], signature: &str) -> Result<(), BatchKeyError> {
    let bytes = b64()
        .decode(signature.trim())
        .map_err(|_| BatchKeyError::SignatureEncoding)?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| BatchKeyError::SignatureEncoding)?;
    key.verify(&message(body), &Signature::from_bytes(&bytes))
        .map_err(|_| BatchKeyError::BadSignature)
}

/// A new random key.
pub fn generate() -> Result<SigningKey, BatchKeyError> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut()).map_err(|e| BatchKeyError::Rng(e.to_string()))?;
    Ok(SigningKey::from_bytes(&secret))
}

/// The PKCS#8 PEM text of a private key (what `openssl genpkey -algorithm ed25519` writes).
pub fn to_pem(key: &SigningKey) -> Result<zeroize::Zeroizing<String>, BatchKeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| BatchKeyError::PrivateKey(e.to_string()))
}

pub fn from_pem(text: &str) -> Result<SigningKey, BatchKeyError> {
    SigningKey::from_pkcs8_pem(text).map_err(|e| BatchKeyError::PrivateKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_over_its_body_and_key() {
        let key = generate().expect("key");
        let other = generate().expect("key");
        let body = br#"{"identifiers":[]}"#;
        let sig = sign(&key, body);
        verify(&key.verifying_key(), body, &sig).expect("verifies");
        assert!(verify(&key.verifying_key(), b"{\"identifiers\":[ ]}", &sig).is_err());
        assert!(verify(&other.verifying_key(), body, &sig).is_err());
        assert!(verify(&key.verifying_key(), body, "not base64!").is_err());
        let pem = to_pem(&key).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = from_pem(&pem).expect("parses");
        assert_eq!(back.verifying_key(), key.verifying_key());
        let text = encode_public_key(&key.verifying_key());
        assert_eq!(
            parse_public_key(&text).expect("public"),
            key.verifying_key()
        );
        assert_eq!(key_id(&key.verifying_key()).len(), 16);
    }
}
