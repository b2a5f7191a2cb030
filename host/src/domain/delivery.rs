//! Delivery (A.3.5, A.3.6) and what it needs from providers and buyers: delivery keys and data
//! files.
//!
//! - A provider encrypts its data to the age recipient it registered (`public_key`) and uploads
//!   the result (`PUT /v1/data/file`), or serves it at an http(s) `resource_url` that liutong
//!   fetches at delivery time when no file was uploaded.
//! - It deposits the matching age identity sealed to the operator's escrow recipient
//!   (`PUT /v1/data/deliveryKey`); liutong checks that it opens and matches `public_key`, and
//!   stores it only sealed.
//! - A buyer sets its own recipient (`PUT /v1/account/deliveryKey`); at settlement the identity
//!   is re-encrypted to it (`private_key`).
//! - `POST /deliver` checks the license and hands over the encrypted bytes with a signed
//!   delivery proof. liutong never holds plaintext data or an unsealed identity at rest.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `PUT /v1/account/deliveryKey` request.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountDeliveryKey {
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// `PUT /v1/data/deliveryKey` body.
#[derive(Debug, Clone, Deserialize)]
pub struct DepositDeliveryKey {
    #[serde(rename = "sealedIdentity")]
    pub sealed_identity: String,
}

/// The `registrationID` query of the provider's upload endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct DataRef {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
}

/// A.3.5 request.
#[derive(Debug, Clone, Deserialize)]
pub struct Deliver {
    pub licenses: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UploadView {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DepositView {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    /// The recipient of the deposited identity: the registered `public_key`.
    pub recipient: String,
}

/// How the buyer wants the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Base64 inside the JSON envelope, up to `max_json_delivery` bytes.
    Json,
    /// The raw bytes as the response body, any size.
    Stream,
}
