//! Demand (A.2): users register purchase demands and publish, query and revoke them.

use super::ServiceError;
use crate::domain::demand::{Demand, DemandAction, DemandRef, RegisterDemand};
use crate::domain::timefmt::now_millis;
use crate::domain::{Caller, DomainError, PublicationStatus, new_id};
use crate::store::Store;

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
    ) -> Result<String, ServiceError> {
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
    ) -> Result<PublicationStatus, ServiceError> {
        let demand = self.owned(caller, req).await?;
        let status = demand.status.publish();
        self.store
            .publish_demand(&demand.id, &demand.data_type, &demand.index_terms())
            .await?;
        Ok(status)
    }

    /// A.2.3: any authenticated account may look a demand up.
    pub async fn query(&self, r: &DemandRef) -> Result<Demand, ServiceError> {
        self.find(&r.demand_id).await
    }

    /// A.2.4: the demander revokes its published demand.
    pub async fn revoke(
        &self,
        caller: &Caller,
        req: &DemandAction,
    ) -> Result<PublicationStatus, ServiceError> {
        let demand = self.owned(caller, req).await?;
        let status = demand.status.revoke("this demand")?;
        if !self
            .store
            .revoke_demand(&demand.id, PublicationStatus::Published)
            .await?
        {
            return Err(DomainError::InvalidState(
                "this demand was revoked concurrently".to_owned(),
            )
            .into());
        }
        Ok(status)
    }

    pub async fn find(&self, demand_id: &str) -> Result<Demand, ServiceError> {
        self.store.demand(demand_id).await?.ok_or_else(|| {
            ServiceError::not_found(format!("no demand with demandID '{demand_id}'"))
        })
    }

    async fn owned(&self, caller: &Caller, req: &DemandAction) -> Result<Demand, ServiceError> {
        caller.must_be("demander", &req.demander)?;
        let demand = self.find(&req.demand_id).await?;
        if demand.demander_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "demandID '{}' belongs to another demander",
                req.demand_id
            ))
            .into());
        }
        Ok(demand)
    }
}
