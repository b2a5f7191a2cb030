//! Supply (A.1): providers register data resources and publish, query and revoke them; trusted
//! data spaces publish controlled data under the fixed owner and registration id.

use serde::{Deserialize, Serialize};

use super::matching::Terms;
use super::money::Money;
use super::{AccountId, DomainError, PublicationStatus};

/// Controlled data carries no `data_type` in A.1.3; it is a dataset, which is what it matches.
pub const CONTROLLED_DATA_TYPE: &str = "dataset";

/// A registered data resource (or published controlled data) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: String,
    pub registration_id: String,
    pub data_id: String,
    pub owner_account_id: AccountId,
    pub owner_name: String,
    pub controlled: bool,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub data_format: Option<String>,
    pub data_size: Option<f64>,
    pub data_category: Vec<String>,
    pub collection_time: Option<String>,
    pub country: Option<String>,
    pub provider_url: Option<String>,
    pub resource_url: Option<String>,
    pub ownership_confirm: Option<String>,
    pub public_key: Option<String>,
    pub subscribe_confirm: Option<String>,
    pub protocol: Option<String>,
    pub is_open: Option<i64>,
    pub source: Option<String>,
    pub status: PublicationStatus,
    /// Terms of the latest publication; `None` until first published.
    pub terms: Option<PriceTerms>,
    /// Usage restrictions published with the terms (JSON); `None` means liutong's default.
    pub usage_restrictions: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceTerms {
    pub free: bool,
    pub price: Money,
}

impl Resource {
    pub fn index_terms(&self) -> Terms {
        Terms::of(
            &self.key_words,
            &self.data_category,
            self.description.as_deref(),
        )
    }
}

/// A.1.1 request.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterData {
    pub owner: String,
    pub key_words: Vec<String>,
    #[serde(rename = "dataID")]
    pub data_id: String,
    pub description: String,
    pub data_type: String,
    pub data_format: String,
    pub data_size: f64,
    pub data_category: Vec<String>,
    pub collection_time: String,
    pub country: String,
    pub provider_url: Option<String>,
    pub resource_url: String,
    pub ownership_confirm: String,
    pub public_key: String,
    pub subscribe_confirm: Option<String>,
}

/// A.1.2 request.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishData {
    pub owner: String,
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    pub free: bool,
    pub price: Option<f64>,
    /// liutong's extension: what licensees may not do (`{"prohibited": [...], "notes"}`).
    pub usage_restrictions: Option<serde_json::Value>,
}

/// A.1.3 request.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishDatasets {
    pub owner: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    pub description: Option<String>,
    pub protocol: String,
    #[serde(rename = "isOpen")]
    pub is_open: Option<i64>,
    pub source: Option<String>,
    pub key_words: Vec<String>,
    pub free: bool,
    pub price: Option<f64>,
    /// liutong's extension, as in `PublishData`.
    pub usage_restrictions: Option<serde_json::Value>,
}

/// A.1.4 and A.1.5 requests: the registration id, plus the data id for controlled data.
#[derive(Debug, Clone, Deserialize)]
pub struct ResourceRef {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: Option<String>,
}

/// A.1.4 response data.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedDataView {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
    pub owner: String,
    pub publish_status: &'static str,
    /// The annex types `free` as a string: "true" or "false"; null before the first publication.
    pub free: Option<&'static str>,
    pub price: Option<f64>,
}

impl From<&Resource> for PublishedDataView {
    fn from(r: &Resource) -> Self {
        PublishedDataView {
            registration_id: r.registration_id.clone(),
            data_id: r.data_id.clone(),
            owner: r.owner_name.clone(),
            publish_status: r.status.yes_no(),
            free: r.terms.map(|t| if t.free { "true" } else { "false" }),
            price: r.terms.map(|t| t.price.to_price()),
        }
    }
}

/// `free: true` means price 0 (a given price must then be 0); `free: false` needs price > 0.
pub fn price_terms(free: bool, price: Option<f64>) -> Result<PriceTerms, DomainError> {
    let price = price.map(|p| Money::from_price("/price", p)).transpose()?;
    match (free, price) {
        (true, None) => Ok(PriceTerms {
            free: true,
            price: Money::ZERO,
        }),
        (true, Some(p)) if p.is_zero() => Ok(PriceTerms {
            free: true,
            price: Money::ZERO,
        }),
        (true, Some(_)) => Err(DomainError::invalid(
            "/price",
            "must be omitted or 0 when free is true",
        )),
        (false, Some(p)) if p > Money::ZERO => Ok(PriceTerms {
            free: false,
            price: p,
        }),
        (false, _) => Err(DomainError::invalid(
            "/price",
            "is required and must be greater than 0 when free is false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_rules() {
        assert_eq!(
            price_terms(true, None).ok(),
            Some(PriceTerms {
                free: true,
                price: Money::ZERO
            })
        );
        assert!(price_terms(true, Some(0.0)).is_ok());
        assert!(price_terms(true, Some(1.0)).is_err());
        assert!(price_terms(false, None).is_err());
        assert!(price_terms(false, Some(0.0)).is_err());
        assert_eq!(
            price_terms(false, Some(12.5)).ok(),
            Some(PriceTerms {
                free: false,
                price: Money::from_minor(1250)
            })
        );
    }
}
