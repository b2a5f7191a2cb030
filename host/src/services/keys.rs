//! The operator's public keys: what anyone needs to verify liutong's signed documents and to
//! seal a delivery key for it.

use std::sync::Arc;

use serde::Serialize;

use crate::crypto::KeyRing;
use crate::crypto::keyring::PublicSigningKey;

/// `GET /v1/keys` response data.
#[derive(Debug, Clone, Serialize)]
pub struct PublicKeys {
    #[serde(rename = "signingKeys")]
    pub signing_keys: Vec<PublicSigningKey>,
    #[serde(rename = "escrowRecipient")]
    pub escrow_recipient: String,
}

#[derive(Clone)]
pub struct Keys {
    keys: Arc<KeyRing>,
}

impl Keys {
    pub fn new(keys: Arc<KeyRing>) -> Self {
        Keys { keys }
    }

    /// Every signing key, current and retired (old signatures still verify), and the escrow
    /// recipient deposits are sealed to.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            signing_keys: self.keys.public_signing_keys(),
            escrow_recipient: self.keys.escrow_recipient().to_owned(),
        }
    }
}
