//! Demand (A.2): users register purchase demands and publish, query and revoke them.

use serde::{Deserialize, Serialize};

use super::matching::Terms;
use super::{Caller, DomainError, PublicationStatus, new_id};
use crate::store::{Store, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub id: String,
    pub demander_account_id: String,
    pub demander_name: String,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
    pub status: PublicationStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Demand {
    pub fn index_terms(&self) -> Terms {
        Terms::of(
            &self.key_words,
            &self.data_category,
            self.description.as_deref(),
        )
    }
}

/// A.2.1 request.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterDemand {
    pub demander: String,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
}

/// A.2.2 and A.2.4 requests.
#[derive(Debug, Clone, Deserialize)]
pub struct DemandAction {
    pub demander: String,
    #[serde(rename = "demandID")]
    pub demand_id: String,
}

/// A.2.3 request.
#[derive(Debug, Clone, Deserialize)]
pub struct DemandRef {
    #[serde(rename = "demandID")]
    pub demand_id: String,
}

/// A.2.3 response data.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedDemandView {
    #[serde(rename = "demandID")]
    pub demand_id: String,
    pub demander: String,
    pub publish_status: &'static str,
    pub data_category: Vec<String>,
    pub key_words: Vec<String>,
    pub description: Option<String>,
    pub data_type: String,
    pub subscribe_confirm: Option<String>,
}

impl From<&Demand> for PublishedDemandView {
    fn from(d: &Demand) -> Self {
        PublishedDemandView {
            demand_id: d.id.clone(),
            demander: d.demander_name.clone(),
            publish_status: d.status.yes_no(),
            data_category: d.data_category.clone(),
            key_words: d.key_words.clone(),
            description: d.description.clone(),
            data_type: d.data_type.clone(),
            subscribe_confirm: d.subscribe_confirm.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Demands {
    store: Store,
}

impl Demands {
    pub fn new(store: Store) -> Self {
        Demands { store }
    }

    /// A.2.1: registers a demand of the caller; returns its demand id.
    pub async fn register(
        &self,
        caller: &Caller,
        req: RegisterDemand,
    ) -> Result<String, DomainError> {
        caller.must_be("demander", &req.demander)?;
        let now = now_millis();
        let demand = Demand {
            id: new_id("dem_"),
            demander_account_id: caller.account_id.clone(),
            demander_name: caller.username.clone(),
            data_category: req.data_category,
            key_words: req.key_words,
            description: req.description,
            data_type: req.data_type,
            subscribe_confirm: req.subscribe_confirm,
            status: PublicationStatus::Registered,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_demand(&demand).await?;
        Ok(demand.id)
    }

    /// A.2.2: publishes the caller's demand (again, after a revocation).
    pub async fn publish(
        &self,
        caller: &Caller,
        req: &DemandAction,
    ) -> Result<PublicationStatus, DomainError> {
        let demand = self.owned(caller, req).await?;
        let status = demand.status.publish();
        self.store
            .publish_demand(&demand.id, &demand.data_type, &demand.index_terms())
            .await?;
        Ok(status)
    }

    /// A.2.3: any authenticated account may look a demand up.
    pub async fn query(&self, r: &DemandRef) -> Result<Demand, DomainError> {
        self.find(&r.demand_id).await
    }

    /// A.2.4: the demander revokes its published demand.
    pub async fn revoke(
        &self,
        caller: &Caller,
        req: &DemandAction,
    ) -> Result<PublicationStatus, DomainError> {
        let demand = self.owned(caller, req).await?;
        let status = demand.status.revoke("this demand")?;
        if !self
            .store
            .revoke_demand(&demand.id, PublicationStatus::Published)
            .await?
        {
            return Err(DomainError::InvalidState(
                "this demand was revoked concurrently".to_owned(),
            ));
        }
        Ok(status)
    }

    pub async fn find(&self, demand_id: &str) -> Result<Demand, DomainError> {
        self.store
            .demand(demand_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no demand with demandID '{demand_id}'")))
    }

    async fn owned(&self, caller: &Caller, req: &DemandAction) -> Result<Demand, DomainError> {
        caller.must_be("demander", &req.demander)?;
        let demand = self.find(&req.demand_id).await?;
        if demand.demander_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "demandID '{}' belongs to another demander",
                req.demand_id
            )));
        }
        Ok(demand)
    }
}
