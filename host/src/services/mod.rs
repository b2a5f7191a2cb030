//! The services: one per capability. Each takes a request from the API, applies the rules of
//! `crate::domain`, and loads and stores through `crate::store` (and data files through
//! `crate::files`, signatures through `crate::crypto`, plugins through `plugins`).
//!
//! Services import downward only (domain, store, files, crypto, the plugin runtime) and each
//! other where one capability builds on another (trading on supply, delivery on trading); the
//! API imports services, never the other way round.

pub mod accounts;
pub mod compute;
pub mod delivery;
pub mod demand;
pub mod gateway;
pub mod gateway_agent;
pub mod identifiers;
pub mod keys;
pub mod ledger;
pub mod licensing;
pub mod matching;
pub mod notifications;
pub mod ops;
pub mod plugins;
pub mod policies;
pub mod provider;
pub mod subscriptions;
pub mod supply;
pub mod trading;

use crate::domain::DomainError;
use crate::store::StoreError;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The rules refuse the request; the message says why, and nothing changed.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// Something outside liutong it depends on (a provider's resource_url, an upstream) failed;
    /// retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A plugin this request needed failed (trap, timeout, fuel, memory, a malformed or
    /// inconsistent answer); the message names the plugin and what happened, and nothing was
    /// changed.
    #[error("{0}")]
    PluginFailed(String),
    /// The upstream of a subscribed model or application failed (`timed_out`: it did not
    /// answer in time); the message carries its status. Nothing was charged.
    #[error("{message}")]
    Upstream { timed_out: bool, message: String },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that cannot happen did (a task panicked, a stored document is malformed).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        DomainError::invalid(field, message).into()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        DomainError::NotFound(message.into()).into()
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        DomainError::Forbidden(message.into()).into()
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        DomainError::Conflict(message.into()).into()
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        DomainError::InvalidState(message.into()).into()
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Every service of a running server, built once by `App::build`.
#[derive(Clone)]
pub struct Services {
    pub accounts: accounts::Accounts,
    pub supply: supply::Supply,
    pub demands: demand::Demands,
    pub matching: matching::Matcher,
    pub trading: trading::Trading,
    pub delivery: delivery::Delivery,
    pub ledger: ledger::Ledger,
    pub plugins: plugins::PluginHost,
    pub keys: keys::Keys,
    pub ops: ops::Ops,
    pub policies: policies::Policies,
    pub provider: provider::Provider,
    pub identifiers: identifiers::Identifiers,
    pub notifications: notifications::Notifications,
    pub gateway: gateway::Gateway,
    pub subscriptions: subscriptions::Subscriptions,
    pub compute: compute::Compute,
}

/// A page parameter of a listing: a whole number in `min..=max`, or `default` when not given.
pub(crate) fn page_number(
    field: &str,
    value: Option<&str>,
    default: i64,
    (min, max): (i64, i64),
) -> Result<i64, ServiceError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let n: i64 = text
        .parse()
        .map_err(|_| ServiceError::invalid(&format!("/{field}"), "must be a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(ServiceError::invalid(
            &format!("/{field}"),
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(n)
}
