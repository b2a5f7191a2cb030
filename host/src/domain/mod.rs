//! The marketplace's rules: who may do what, lifecycle state machines and invariants.
//! No HTTP and no SQL here; persistence goes through `crate::store`.

pub mod accounts;
pub mod billing;
pub mod delivery;
pub mod demand;
pub mod ledger;
pub mod license;
pub mod match_index;
pub mod matching;
pub mod money;
pub mod supply;
pub mod timefmt;
pub mod trading;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The fixed owner name of controlled data published by a trusted data space (A.1.3).
pub const CONTROLLED_OWNER: &str = "trusted-data-space";
/// The fixed registration id shared by all controlled data (A.1.3).
pub const CONTROLLED_REGISTRATION_ID: &str = "TDS-CONTROLLED";

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
    /// Something outside liutong it depends on (a provider's resource_url) failed; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A plugin this request needed failed (trap, timeout, fuel, memory, a malformed or
    /// inconsistent answer); the message names the plugin and what happened, and nothing was
    /// changed.
    #[error("{0}")]
    PluginFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
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
    pub account_id: String,
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

/// A fresh identifier: a readable prefix and a time-ordered UUID (v7), so ids sort by creation.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
