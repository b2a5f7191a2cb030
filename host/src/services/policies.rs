//! Controlled data (A.3.7): the trusted data space presents a buyer's license and sets up a
//! usage policy (`/deliverDatasets`); from then on it asks liutong, for every use of the data,
//! whether the use is allowed (`/v1/policies/{policyId}/access`). liutong decides through the
//! publication's policy plugin and counts uses exactly: the decision and the counters it
//! consumes are committed in one transaction, once per request id. The rules and types are in
//! `domain::policy`.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::licensing;
use super::plugins::PluginHost;
use super::plugins::policy::Evaluation;
use super::{ServiceError, ServiceResult, page_number};
use crate::crypto::{KeyRing, jcs};
use crate::domain::policy::{
    AccessRequest, AccessView, DecisionRecord, DecisionView, DecisionsPage, DecisionsQuery,
    DeliverDatasets, PoliciesPage, PoliciesQuery, Policy, PolicyCreated, PolicyView, terms,
};
use crate::domain::timefmt::now_millis;
use crate::domain::trading::ConfirmationStatus;
use crate::domain::{CONTROLLED_REGISTRATION_ID, Caller, DomainError, PolicyId, Role, new_id};
use crate::store::Store;
use crate::store::policies::{DecisionWrite, PolicyInsert};

/// Pages of policies and decisions: at most this many, 100 when not asked.
const MAX_PAGE: i64 = 1000;
const DEFAULT_PAGE: i64 = 100;

#[derive(Clone)]
pub struct Policies {
    store: Store,
    keys: Arc<KeyRing>,
    plugins: PluginHost,
}

/// SHA-256 (hex) of the RFC 8785 canonical JSON of `value`.
fn digest<T: serde::Serialize>(value: &T) -> ServiceResult<String> {
    let bytes = jcs::canonical(value)
        .map_err(|e| ServiceError::Internal(format!("canonical JSON: {e}")))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

fn paging(limit: Option<&str>, offset: Option<&str>) -> ServiceResult<(i64, i64)> {
    Ok((
        page_number("limit", limit, DEFAULT_PAGE, (1, MAX_PAGE))?,
        page_number("offset", offset, 0, (0, i64::from(i32::MAX)))?,
    ))
}

impl Policies {
    pub fn new(store: Store, keys: Arc<KeyRing>, plugins: PluginHost) -> Self {
        Policies {
            store,
            keys,
            plugins,
        }
    }

    async fn find(&self, policy_id: &str) -> ServiceResult<Policy> {
        self.store
            .policy(policy_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no policy '{policy_id}'")))
    }

    async fn view(&self, policy: &Policy, now: i64) -> ServiceResult<PolicyView> {
        let license = self.store.current_license(&policy.confirm_id).await?;
        Ok(PolicyView::of(policy, license.map(|l| l.id), now))
    }

    /// A.3.7: the data space that published the controlled data sets up a usage policy for a
    /// buyer's current license. A repeated request (same purchase, `policyName` and terms)
    /// answers with the policy it created; other terms under a live name are a conflict.
    pub async fn deliver(
        &self,
        caller: &Caller,
        req: DeliverDatasets,
    ) -> ServiceResult<PolicyCreated> {
        caller.require_role(Role::DataSpace)?;
        let now = now_millis();
        let (license, record) =
            licensing::present(&self.store, &self.keys, &req.licenses, None, now).await?;
        let confirmation = self
            .store
            .confirmation(&record.confirm_id)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(format!("license {} has no confirmation", record.id))
            })?;
        if !confirmation.controlled {
            return Err(ServiceError::invalid(
                "/licenses/registrationID",
                format!(
                    "'{}' is not controlled data: its buyer fetches it with POST /deliver",
                    license.registration_id
                ),
            ));
        }
        if confirmation.status != ConfirmationStatus::Settled {
            return Err(ServiceError::forbidden(format!(
                "confirmation '{}' is not settled",
                confirmation.id
            )));
        }
        if license.data_id != req.data_id {
            return Err(ServiceError::invalid(
                "/dataID",
                format!(
                    "the license is for dataID '{}', not '{}'",
                    license.data_id, req.data_id
                ),
            ));
        }
        if confirmation.seller_account_id != caller.account_id {
            return Err(ServiceError::forbidden(format!(
                "controlled dataID '{}' was published by another data space",
                req.data_id
            )));
        }
        let t = terms(&req, record.starts_at, record.ends_at, now)?;
        let request_sha256 = digest(&serde_json::json!({
            "dataID": req.data_id,
            "policyName": req.policy_name,
            "relUsers": req.rel_users,
            "startDate": t.starts_at,
            "endDate": t.ends_at,
            "useScenes": req.use_scenes,
        }))?;
        let policy = Policy {
            id: PolicyId::generate(),
            name: req.policy_name.clone(),
            resource_id: confirmation.resource_id.clone(),
            data_id: confirmation.data_id.clone(),
            confirm_id: confirmation.id.clone(),
            licensee_account_id: confirmation.buyer_account_id.clone(),
            licensee_name: confirmation.buyer_name.clone(),
            data_space_account_id: caller.account_id.clone(),
            rel_users: req.rel_users,
            use_scenes: t.use_scenes,
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            request_sha256,
            created_at: now,
            revoked_at: None,
            revoked_by: None,
            counters: t.counters,
        };
        match self.store.insert_policy(&policy).await? {
            PolicyInsert::Created => Ok(PolicyCreated::of(&policy, now)),
            PolicyInsert::NameTaken => {
                let existing = self
                    .store
                    .live_policy_by_name(&policy.confirm_id, &policy.name)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::conflict(format!(
                            "policy '{}' of this license changed concurrently; retry",
                            policy.name
                        ))
                    })?;
                if existing.request_sha256 != policy.request_sha256 {
                    return Err(ServiceError::conflict(format!(
                        "this license already has a live policy named '{}' ({}) with other \
                         terms; choose another policyName, or revoke that policy first",
                        policy.name, existing.id
                    )));
                }
                Ok(PolicyCreated::of(&existing, now))
            }
        }
    }

    /// Decides one access under a policy (its data space only). Exactly once per request id:
    /// a repeated request id answers with the first decision and consumes nothing.
    pub async fn access(
        &self,
        caller: &Caller,
        policy_id: &str,
        req: AccessRequest,
    ) -> ServiceResult<AccessView> {
        let policy = self.find(policy_id).await?;
        policy.check_enforcer(caller)?;
        let request_sha256 = digest(&req)?;
        let at = now_millis();
        let decision = |plugin, allowed, reasons| DecisionRecord {
            id: new_id("dec_"),
            policy_id: policy.id.clone(),
            request_id: req.request_id.clone(),
            request_sha256: request_sha256.clone(),
            at,
            user_id: req.user_id.clone(),
            scene: req.use_sence.clone(),
            uses: i64::from(req.uses),
            plugin,
            allowed,
            reasons,
            counters_before: policy.remaining(),
            counters_after: policy.remaining(),
        };
        let (record, decrements) = match policy.closed_reason(at) {
            Some(reason) => (decision(None, false, vec![reason]), Vec::new()),
            None => match self
                .plugins
                .evaluate_policy(&policy, &req, at, &caller.username)
                .await
            {
                Evaluation::Verdict {
                    plugin,
                    allowed,
                    reasons,
                    decrements,
                } => (decision(Some(plugin), allowed, reasons), decrements),
                Evaluation::Failed { plugin, reason } => {
                    (decision(plugin, false, vec![reason]), Vec::new())
                }
            },
        };
        let denial = (!decrements.is_empty()).then(|| record.clone());
        let written = match self.store.record_decision(record, &decrements).await? {
            DecisionWrite::Exhausted { scene, left } => {
                // A concurrent access took the uses the plugin counted on: deny, and log it.
                let mut denied = denial.ok_or_else(|| {
                    ServiceError::Internal("a decision without decrements was exhausted".into())
                })?;
                denied.allowed = false;
                denied.reasons = vec![format!(
                    "exhausted: scene \"{scene}\" has {left} use(s) left, the access needs {} \
                     (a concurrent access took them)",
                    decrements
                        .iter()
                        .find(|(s, _)| *s == scene)
                        .map_or(0, |(_, n)| *n)
                )];
                denied.counters_after.insert(scene.clone(), left);
                denied.counters_before.insert(scene, left);
                self.store.record_decision(denied, &[]).await?
            }
            other => other,
        };
        match written {
            DecisionWrite::Recorded(d) => Ok(AccessView::from(d.as_ref())),
            DecisionWrite::Duplicate => {
                let first = self
                    .store
                    .decision(policy.id.as_str(), &req.request_id)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal("a duplicate decision vanished".to_owned())
                    })?;
                if first.request_sha256 != request_sha256 {
                    return Err(ServiceError::conflict(format!(
                        "requestId '{}' was already used for a different request on this \
                         policy (decision {}); use a new requestId",
                        req.request_id, first.id
                    )));
                }
                Ok(AccessView::from(&first))
            }
            DecisionWrite::Exhausted { .. } => Err(ServiceError::Internal(
                "a decision without decrements was exhausted".to_owned(),
            )),
        }
    }

    /// A policy with its status and counters: its data space, its licensee, operators.
    pub async fn get(&self, caller: &Caller, policy_id: &str) -> ServiceResult<PolicyView> {
        let policy = self.find(policy_id).await?;
        policy.check_reader(caller)?;
        self.view(&policy, now_millis()).await
    }

    /// The policies of a controlled dataID the caller may see: operators all, a data space
    /// those it set up, a buyer those of its licenses.
    pub async fn list(&self, caller: &Caller, q: PoliciesQuery) -> ServiceResult<PoliciesPage> {
        let (limit, offset) = paging(q.limit.as_deref(), q.offset.as_deref())?;
        let resource = self
            .store
            .resource_by_ref(CONTROLLED_REGISTRATION_ID, Some(&q.data_id))
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!("no controlled data with dataID '{}'", q.data_id))
            })?;
        let party = (caller.role != Role::Operator).then(|| caller.account_id.as_str());
        let (policies, total) = self
            .store
            .policies_of_resource(&resource.id, party, limit, offset)
            .await?;
        let now = now_millis();
        let mut views = Vec::with_capacity(policies.len());
        for p in &policies {
            views.push(self.view(p, now).await?);
        }
        Ok(PoliciesPage {
            total,
            limit,
            offset,
            policies: views,
        })
    }

    /// Ends a policy at once (its data space, or an operator): every later access is denied.
    pub async fn revoke(&self, caller: &Caller, policy_id: &str) -> ServiceResult<PolicyView> {
        let policy = self.find(policy_id).await?;
        if caller.role != Role::Operator {
            policy.check_enforcer(caller)?;
        }
        let now = now_millis();
        if !self
            .store
            .revoke_policy(policy.id.as_str(), &caller.username, now)
            .await?
        {
            return Err(DomainError::InvalidState(format!(
                "policy '{}' is already revoked",
                policy.id
            ))
            .into());
        }
        let revoked = self.find(policy_id).await?;
        self.view(&revoked, now).await
    }

    /// The decision log of a policy, newest first: its data space, its licensee, operators.
    pub async fn decisions(
        &self,
        caller: &Caller,
        policy_id: &str,
        q: DecisionsQuery,
    ) -> ServiceResult<DecisionsPage> {
        let policy = self.find(policy_id).await?;
        policy.check_reader(caller)?;
        let (limit, offset) = paging(q.limit.as_deref(), q.offset.as_deref())?;
        let (decisions, total) = self
            .store
            .decisions(policy.id.as_str(), limit, offset)
            .await?;
        Ok(DecisionsPage {
            total,
            limit,
            offset,
            decisions: decisions.into_iter().map(DecisionView::from).collect(),
        })
    }
}
