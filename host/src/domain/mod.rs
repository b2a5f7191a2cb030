//! The marketplace's rules: its types, who may do what, lifecycle state machines and
//! invariants. Pure: no HTTP, no SQL, no files or network. The services (`crate::services`)
//! load and store these types through `crate::store` and call the rules here.

pub mod accounts;
pub mod billing;
pub mod compute;
pub mod compute_billing;
pub mod delivery;
pub mod demand;
pub mod gateway;
pub mod gateway_mapping;
pub mod identifiers;
pub mod ids;
pub mod ledger;
pub mod license;
pub mod match_index;
pub mod matching;
pub mod money;
pub mod notifications;
pub mod plugins;
pub mod policy;
pub mod provider;
pub mod subscriptions;
pub mod supply;
pub mod timefmt;
pub mod trading;

use serde::{Deserialize, Serialize};

pub use ids::{AccountId, PolicyId, new_id};

/// The fixed owner name of controlled data published by a trusted data space (A.1.3).
pub const CONTROLLED_OWNER: &str = "trusted-data-space";
/// The fixed registration id shared by all controlled data (A.1.3).
pub const CONTROLLED_REGISTRATION_ID: &str = "TDS-CONTROLLED";

/// Why the rules refuse a request.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// `field` is a JSON pointer to the offending input, e.g. `/price`.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// The payer's balance does not cover the charge; nothing was changed.
    #[error("{0}")]
    InsufficientFunds(String),
    /// Something must be paid first (a subscription's term); nothing was changed.
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    NotFound(String),
    /// The thing being created exists already.
    #[error("{0}")]
    Conflict(String),
    /// The lifecycle does not allow this transition now.
    #[error("{0}")]
    InvalidState(String),
    /// What was asked for is larger than the configured limit of this way of asking.
    #[error("{0}")]
    TooLarge(String),
    /// An invariant of liutong's own making does not hold (a bug, or corrupt stored data): the
    /// request is refused and the cause logged.
    #[error("invariant violated: {0}")]
    Invariant(String),
}

impl DomainError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        DomainError::InvalidArgument {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Enterprise,
    Operator,
    DataSpace,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enterprise => "enterprise",
            Role::Operator => "operator",
            Role::DataSpace => "data_space",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "enterprise" => Some(Role::Enterprise),
            "operator" => Some(Role::Operator),
            "data_space" => Some(Role::DataSpace),
            _ => None,
        }
    }
}

/// The authenticated account behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: AccountId,
    pub username: String,
    pub role: Role,
}

impl Caller {
    /// The names a request carries for its sender (`owner`, `demander`, …) must be the
    /// caller's own username.
    pub fn must_be(&self, field: &str, claimed: &str) -> Result<(), DomainError> {
        if claimed == self.username {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "{field} '{claimed}' is not the authenticated account '{}'",
                self.username
            )))
        }
    }

    pub fn require_role(&self, role: Role) -> Result<(), DomainError> {
        if self.role == role {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "this operation needs role '{}', the caller has '{}'",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

/// Lifecycle of resources and demands: registered → published ⇄ revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationStatus {
    Registered,
    Published,
    Revoked,
}

impl PublicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicationStatus::Registered => "registered",
            PublicationStatus::Published => "published",
            PublicationStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "registered" => Some(PublicationStatus::Registered),
            "published" => Some(PublicationStatus::Published),
            "revoked" => Some(PublicationStatus::Revoked),
            _ => None,
        }
    }

    /// The annex's `publish_status`: "YES" once published, "NO" otherwise.
    pub fn yes_no(self) -> &'static str {
        match self {
            PublicationStatus::Published => "YES",
            _ => "NO",
        }
    }

    /// Publishing is allowed from every state: the first publication, a re-publication after a
    /// revocation, or a re-publication of a live item to change its terms.
    pub fn publish(self) -> PublicationStatus {
        PublicationStatus::Published
    }

    /// Only a published item can be revoked.
    pub fn revoke(self, what: &str) -> Result<PublicationStatus, DomainError> {
        match self {
            PublicationStatus::Published => Ok(PublicationStatus::Revoked),
            PublicationStatus::Registered => Err(DomainError::InvalidState(format!(
                "{what} was never published, so it cannot be revoked"
            ))),
            PublicationStatus::Revoked => Err(DomainError::InvalidState(format!(
                "{what} is already revoked"
            ))),
        }
    }
}
