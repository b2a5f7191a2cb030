//! Supply (A.1): providers register data resources and publish, query and revoke them; trusted
//! data spaces publish controlled data under the fixed owner and registration id.

use serde::{Deserialize, Serialize};

use super::matching::Terms;
use super::money::{minor_to_price, price_to_minor};
use super::timefmt::{parse_datetime, to_rfc3339};
use super::{
    CONTROLLED_OWNER, CONTROLLED_REGISTRATION_ID, Caller, DomainError, PublicationStatus, Role,
    new_id,
};
use crate::store::resources::{OWNER_DATA_TAKEN, REGISTRATION_DATA_TAKEN};
use crate::store::{Store, now_millis};

/// Controlled data carries no `data_type` in A.1.3; it is a dataset, which is what it matches.
pub const CONTROLLED_DATA_TYPE: &str = "dataset";

/// A registered data resource (or published controlled data) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: String,
    pub registration_id: String,
    pub data_id: String,
    pub owner_account_id: String,
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
    pub price_minor: i64,
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
            price: r.terms.map(|t| minor_to_price(t.price_minor)),
        }
    }
}

/// `free: true` means price 0 (a given price must then be 0); `free: false` needs price > 0.
pub fn price_terms(free: bool, price: Option<f64>) -> Result<PriceTerms, DomainError> {
    let price_minor = price.map(|p| price_to_minor("/price", p)).transpose()?;
    match (free, price_minor) {
        (true, None | Some(0)) => Ok(PriceTerms {
            free: true,
            price_minor: 0,
        }),
        (true, Some(_)) => Err(DomainError::invalid(
            "/price",
            "must be omitted or 0 when free is true",
        )),
        (false, Some(p)) if p > 0 => Ok(PriceTerms {
            free: false,
            price_minor: p,
        }),
        (false, _) => Err(DomainError::invalid(
            "/price",
            "is required and must be greater than 0 when free is false",
        )),
    }
}

fn conflict_from_store(e: crate::store::StoreError, data_id: &str) -> DomainError {
    if e.is_unique(OWNER_DATA_TAKEN) || e.is_unique(REGISTRATION_DATA_TAKEN) {
        DomainError::Conflict(format!(
            "dataID '{data_id}' is already registered by this owner"
        ))
    } else {
        e.into()
    }
}

#[derive(Clone)]
pub struct Supply {
    store: Store,
}

impl Supply {
    pub fn new(store: Store) -> Self {
        Supply { store }
    }

    /// A.1.1: registers a resource owned by the caller; returns its registration id.
    pub async fn register(
        &self,
        caller: &Caller,
        req: RegisterData,
    ) -> Result<String, DomainError> {
        caller.must_be("owner", &req.owner)?;
        // Deliveries are encrypted to this key: refuse anything age cannot encrypt to now,
        // rather than at the first sale.
        crate::crypto::sealing::parse_recipient(&req.public_key)
            .map_err(|e| DomainError::invalid("/public_key", e.to_string()))?;
        let collected = parse_datetime("/collection_time", &req.collection_time)?;
        if !req.data_size.is_finite() || req.data_size < 0.0 {
            return Err(DomainError::invalid(
                "/data_size",
                "must be a finite number ≥ 0",
            ));
        }
        let now = now_millis();
        let registration_id = new_id("reg_");
        let resource = Resource {
            id: registration_id.clone(),
            registration_id: registration_id.clone(),
            data_id: req.data_id.clone(),
            owner_account_id: caller.account_id.clone(),
            owner_name: caller.username.clone(),
            controlled: false,
            key_words: req.key_words,
            description: Some(req.description),
            data_type: req.data_type,
            data_format: Some(req.data_format),
            data_size: Some(req.data_size),
            data_category: req.data_category,
            collection_time: Some(to_rfc3339(collected)),
            country: Some(req.country),
            provider_url: req.provider_url,
            resource_url: Some(req.resource_url),
            ownership_confirm: Some(req.ownership_confirm),
            public_key: Some(req.public_key),
            subscribe_confirm: req.subscribe_confirm,
            protocol: None,
            is_open: None,
            source: None,
            status: PublicationStatus::Registered,
            terms: None,
            usage_restrictions: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_resource(&resource, None)
            .await
            .map_err(|e| conflict_from_store(e, &req.data_id))?;
        Ok(registration_id)
    }

    /// A.1.2: publishes (or re-publishes with new terms) the caller's registered resource.
    pub async fn publish(
        &self,
        caller: &Caller,
        req: PublishData,
    ) -> Result<PublicationStatus, DomainError> {
        caller.must_be("owner", &req.owner)?;
        if req.registration_id == CONTROLLED_REGISTRATION_ID {
            return Err(DomainError::invalid(
                "/registrationID",
                "controlled data is published through /publishDatasets",
            ));
        }
        let terms = price_terms(req.free, req.price)?;
        let resource = self.owned(caller, &req.registration_id, None).await?;
        let status = resource.status.publish();
        self.store
            .set_resource_publication(
                &resource.id,
                status,
                Some(terms),
                req.usage_restrictions.as_ref(),
                Some((&resource.data_type, &resource.index_terms())),
            )
            .await?;
        Ok(status)
    }

    /// A.1.3: publishes controlled data of a trusted data space. The first call for a dataID
    /// creates it; later calls by the same data space update and re-publish it.
    pub async fn publish_controlled(
        &self,
        caller: &Caller,
        req: PublishDatasets,
    ) -> Result<PublicationStatus, DomainError> {
        caller.require_role(Role::DataSpace)?;
        if req.owner != CONTROLLED_OWNER {
            return Err(DomainError::invalid(
                "/owner",
                format!("must be the fixed value '{CONTROLLED_OWNER}'"),
            ));
        }
        if req.registration_id != CONTROLLED_REGISTRATION_ID {
            return Err(DomainError::invalid(
                "/registrationID",
                format!("must be the fixed value '{CONTROLLED_REGISTRATION_ID}'"),
            ));
        }
        let terms = price_terms(req.free, req.price)?;
        let now = now_millis();
        let existing = self
            .store
            .resource_by_ref(CONTROLLED_REGISTRATION_ID, Some(&req.data_id))
            .await?;
        if let Some(existing) = &existing
            && existing.owner_account_id != caller.account_id
        {
            return Err(DomainError::Forbidden(format!(
                "controlled dataID '{}' was published by another data space",
                req.data_id
            )));
        }
        let resource = Resource {
            id: existing
                .as_ref()
                .map(|r| r.id.clone())
                .unwrap_or_else(|| new_id("tds_")),
            registration_id: CONTROLLED_REGISTRATION_ID.to_owned(),
            data_id: req.data_id.clone(),
            owner_account_id: caller.account_id.clone(),
            owner_name: CONTROLLED_OWNER.to_owned(),
            controlled: true,
            key_words: req.key_words,
            description: req.description,
            data_type: CONTROLLED_DATA_TYPE.to_owned(),
            data_format: None,
            data_size: None,
            data_category: Vec::new(),
            collection_time: None,
            country: None,
            provider_url: None,
            resource_url: None,
            ownership_confirm: None,
            public_key: None,
            subscribe_confirm: None,
            protocol: Some(req.protocol),
            is_open: req.is_open,
            source: req.source,
            status: PublicationStatus::Published,
            terms: Some(terms),
            usage_restrictions: req.usage_restrictions,
            created_at: existing.as_ref().map(|r| r.created_at).unwrap_or(now),
            updated_at: now,
        };
        let terms = resource.index_terms();
        let result = if existing.is_some() {
            self.store.update_controlled(&resource, &terms).await
        } else {
            self.store.insert_resource(&resource, Some(&terms)).await
        };
        result.map_err(|e| conflict_from_store(e, &req.data_id))?;
        Ok(PublicationStatus::Published)
    }

    /// A.1.4: any authenticated account may look a resource up.
    pub async fn query(&self, r: &ResourceRef) -> Result<Resource, DomainError> {
        self.find(r).await
    }

    /// A.1.5: only the account that owns the resource may revoke it.
    pub async fn revoke(
        &self,
        caller: &Caller,
        r: &ResourceRef,
    ) -> Result<PublicationStatus, DomainError> {
        let resource = self
            .owned(caller, &r.registration_id, r.data_id.as_deref())
            .await?;
        let status = resource.status.revoke("this resource")?;
        let changed = self
            .store
            .revoke_resource(&resource.id, PublicationStatus::Published)
            .await?;
        if !changed {
            return Err(DomainError::InvalidState(
                "this resource was revoked concurrently".to_owned(),
            ));
        }
        Ok(status)
    }

    /// Looks a resource up by the annex's reference rules: controlled data needs its dataID;
    /// for other data a given dataID must agree with the registration.
    pub async fn find(&self, r: &ResourceRef) -> Result<Resource, DomainError> {
        let controlled = r.registration_id == CONTROLLED_REGISTRATION_ID;
        if controlled && r.data_id.is_none() {
            return Err(DomainError::invalid(
                "/dataID",
                "is required for controlled data",
            ));
        }
        let data_id = if controlled {
            r.data_id.as_deref()
        } else {
            None
        };
        let resource = self
            .store
            .resource_by_ref(&r.registration_id, data_id)
            .await?
            .filter(|res| r.data_id.as_deref().is_none_or(|d| d == res.data_id))
            .ok_or_else(|| {
                DomainError::NotFound(match &r.data_id {
                    Some(d) => format!(
                        "no data resource with registrationID '{}' and dataID '{d}'",
                        r.registration_id
                    ),
                    None => format!(
                        "no data resource with registrationID '{}'",
                        r.registration_id
                    ),
                })
            })?;
        Ok(resource)
    }

    async fn owned(
        &self,
        caller: &Caller,
        registration_id: &str,
        data_id: Option<&str>,
    ) -> Result<Resource, DomainError> {
        let resource = self
            .find(&ResourceRef {
                registration_id: registration_id.to_owned(),
                data_id: data_id.map(str::to_owned),
            })
            .await?;
        if resource.owner_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "registrationID '{registration_id}' belongs to another owner"
            )));
        }
        Ok(resource)
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
                price_minor: 0
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
                price_minor: 1250
            })
        );
    }
}
