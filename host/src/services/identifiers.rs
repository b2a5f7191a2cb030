//! Compute resource identifier codes (compute-provider-access §2): certified enterprises apply
//! with province, city, availability zone and industry; operators review; approval issues a
//! 16-digit code (layout in `domain::identifiers`).

use super::notifications::Notifications;
use super::{ServiceError, page_number};
use crate::domain::identifiers::{
    ApplicationCreated, ApplicationDecision, ApplicationView, ApplicationsOfEnterprise,
    ApplicationsPage, ApplicationsQuery, Catalog, IdentifierApplication, IdentifierRequest,
    catalog,
};
use crate::domain::provider::ReviewStatus;
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role, new_id};
use crate::store::Store;
use crate::store::identifiers::ApplicationReview;

#[derive(Clone)]
pub struct Identifiers {
    store: Store,
    notifications: Notifications,
}

fn view(a: IdentifierApplication) -> ApplicationView {
    ApplicationView {
        application_id: a.id,
        username: a.username,
        enterprise_id: a.enterprise_id,
        province: a.request.province,
        city: a.request.city,
        zone: a.request.zone,
        industry: a.request.industry,
        status: a.status,
        reason: a.reason,
        code: a.code,
        submitted_at: to_rfc3339(from_millis(a.submitted_at)),
        reviewed_at: a.reviewed_at.map(|t| to_rfc3339(from_millis(t))),
    }
}

pub(crate) fn review_status(q: Option<&str>) -> Result<Option<ReviewStatus>, ServiceError> {
    match q {
        None => Ok(None),
        Some(s) => Ok(Some(ReviewStatus::parse(s).ok_or_else(|| {
            ServiceError::invalid("/status", "must be PENDING, APPROVED or REJECTED")
        })?)),
    }
}

impl Identifiers {
    pub fn new(store: Store, notifications: Notifications) -> Self {
        Identifiers {
            store,
            notifications,
        }
    }

    /// `GET /v1/provider/identifiers/catalog`: the divisions, industries and zones an
    /// application chooses from.
    pub fn catalog(&self, caller: &Caller) -> Result<&'static Catalog, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        Ok(catalog())
    }

    /// `POST /v1/provider/identifiers`: a certified enterprise applies for a code.
    pub async fn apply(
        &self,
        caller: &Caller,
        request: IdentifierRequest,
    ) -> Result<ApplicationCreated, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        let enterprise_id = self
            .store
            .enterprise_id_of(&caller.account_id)
            .await?
            .ok_or_else(|| {
                DomainError::InvalidState(
                    "only a certified enterprise applies for identifier codes: submit \
                     POST /v1/provider/certification and wait for its approval"
                        .to_owned(),
                )
            })?;
        request.check()?;
        let application = IdentifierApplication {
            id: new_id("ida_"),
            account_id: caller.account_id.clone(),
            username: caller.username.clone(),
            enterprise_id,
            request,
            status: ReviewStatus::Pending,
            reason: None,
            code: None,
            submitted_at: now_millis(),
            reviewed_at: None,
        };
        self.store
            .insert_identifier_application(&application)
            .await?;
        Ok(ApplicationCreated {
            application_id: application.id,
            status: ReviewStatus::Pending,
        })
    }

    /// `GET /v1/provider/identifiers`: the caller's applications and codes.
    pub async fn mine(&self, caller: &Caller) -> Result<ApplicationsOfEnterprise, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        let applications = self
            .store
            .identifier_applications_of(&caller.account_id)
            .await?;
        let codes = applications.iter().filter_map(|a| a.code.clone()).collect();
        Ok(ApplicationsOfEnterprise {
            applications: applications.into_iter().map(view).collect(),
            codes,
        })
    }

    /// `GET /v1/admin/identifier-applications`.
    pub async fn list(
        &self,
        caller: &Caller,
        q: &ApplicationsQuery,
    ) -> Result<ApplicationsPage, ServiceError> {
        caller.require_role(Role::Operator)?;
        let status = review_status(q.status.as_deref())?;
        let limit = page_number("limit", q.limit.as_deref(), 100, (1, 1000))?;
        let offset = page_number("offset", q.offset.as_deref(), 0, (0, i64::MAX))?;
        let page = self
            .store
            .identifier_applications_page(status, limit, offset)
            .await?;
        Ok(ApplicationsPage {
            applications: page.into_iter().map(view).collect(),
        })
    }

    /// Approves (issuing the code) or rejects a pending application (operators).
    pub async fn review(
        &self,
        caller: &Caller,
        id: &str,
        decision: ReviewStatus,
        reason: Option<&str>,
    ) -> Result<ApplicationDecision, ServiceError> {
        caller.require_role(Role::Operator)?;
        let what = format!("identifier application '{id}'");
        match self
            .store
            .review_identifier_application(
                id,
                decision,
                reason,
                &caller.account_id,
                now_millis(),
                self.notifications.channels(),
            )
            .await?
        {
            ApplicationReview::Decided(a) => {
                self.notifications.wake();
                Ok(ApplicationDecision {
                    application_id: a.id,
                    status: a.status,
                    reason: a.reason,
                    code: a.code,
                })
            }
            ApplicationReview::NotFound => Err(ServiceError::not_found(format!(
                "no identifier application '{id}'"
            ))),
            ApplicationReview::AlreadyReviewed(status) => {
                Err(status.decide(&what, decision).err().map_or_else(
                    || ServiceError::Internal("review outcome inconsistent".to_owned()),
                    Into::into,
                ))
            }
            ApplicationReview::SerialsExhausted => Err(DomainError::InvalidState(format!(
                "all 1000 serials of this enterprise, province, city, zone and industry are \
                 taken; {what} stays pending"
            ))
            .into()),
        }
    }
}
