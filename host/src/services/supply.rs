//! Supply (A.1): providers register data resources and publish, query and revoke them; trusted
//! data spaces publish controlled data under the fixed owner and registration id.

use super::ServiceError;
use crate::domain::supply::{
    CONTROLLED_DATA_TYPE, PublishData, PublishDatasets, RegisterData, Resource, ResourceRef,
    price_terms,
};
use crate::domain::timefmt::{now_millis, parse_datetime, to_rfc3339};
use crate::domain::{
    CONTROLLED_OWNER, CONTROLLED_REGISTRATION_ID, Caller, DomainError, PublicationStatus, Role,
    new_id,
};
use crate::store::Store;
use crate::store::resources::ResourceInsert;

fn data_id_taken(data_id: &str) -> ServiceError {
    ServiceError::conflict(format!(
        "dataID '{data_id}' is already registered by this owner"
    ))
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
    ) -> Result<String, ServiceError> {
        caller.must_be("owner", &req.owner)?;
        // Deliveries are encrypted to this key: refuse anything age cannot encrypt to now,
        // rather than at the first sale.
        crate::crypto::sealing::parse_recipient(&req.public_key)
            .map_err(|e| ServiceError::invalid("/public_key", e.to_string()))?;
        let collected = parse_datetime("/collection_time", &req.collection_time)?;
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
        match self.store.insert_resource(&resource, None).await? {
            ResourceInsert::Created => Ok(registration_id),
            ResourceInsert::DataIdTaken => Err(data_id_taken(&req.data_id)),
        }
    }

    /// A.1.2: publishes (or re-publishes with new terms) the caller's registered resource.
    pub async fn publish(
        &self,
        caller: &Caller,
        req: PublishData,
    ) -> Result<PublicationStatus, ServiceError> {
        caller.must_be("owner", &req.owner)?;
        if req.registration_id == CONTROLLED_REGISTRATION_ID {
            return Err(DomainError::invalid(
                "/registrationID",
                "controlled data is published through /publishDatasets",
            )
            .into());
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
    ) -> Result<PublicationStatus, ServiceError> {
        caller.require_role(Role::DataSpace)?;
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
            ))
            .into());
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
        if existing.is_some() {
            self.store.update_controlled(&resource, &terms).await?;
        } else if self.store.insert_resource(&resource, Some(&terms)).await?
            == ResourceInsert::DataIdTaken
        {
            return Err(data_id_taken(&req.data_id));
        }
        Ok(PublicationStatus::Published)
    }

    /// A.1.4: any authenticated account may look a resource up.
    pub async fn query(&self, r: &ResourceRef) -> Result<Resource, ServiceError> {
        self.find(r).await
    }

    /// A.1.5: only the account that owns the resource may revoke it.
    pub async fn revoke(
        &self,
        caller: &Caller,
        r: &ResourceRef,
    ) -> Result<PublicationStatus, ServiceError> {
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
            )
            .into());
        }
        Ok(status)
    }

    /// Looks a resource up by the annex's reference rules: controlled data needs its dataID;
    /// for other data a given dataID must agree with the registration.
    pub async fn find(&self, r: &ResourceRef) -> Result<Resource, ServiceError> {
        let controlled = r.registration_id == CONTROLLED_REGISTRATION_ID;
        if controlled && r.data_id.is_none() {
            return Err(DomainError::invalid("/dataID", "is required for controlled data").into());
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
    ) -> Result<Resource, ServiceError> {
        let resource = self
            .find(&ResourceRef {
                registration_id: registration_id.to_owned(),
                data_id: data_id.map(str::to_owned),
            })
            .await?;
        if resource.owner_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "registrationID '{registration_id}' belongs to another owner"
            ))
            .into());
        }
        Ok(resource)
    }
}
