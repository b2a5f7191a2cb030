//! The platform side of the identifier gateway (compute-provider-access §3): the published
//! identifier fields and the parsing of codes.

use super::ServiceError;
use crate::domain::gateway::{FIELDS, FieldsDocument};
use crate::domain::identifiers::{ParsedCode, parse};
use crate::domain::{Caller, DomainError};

/// The schema file of an identifier.
pub const IDENTIFIER_SCHEMA: &str = "gateway.identifier.json";

#[derive(Clone)]
pub struct Gateway {
    /// The identifier schema as published (`schemas/gateway.identifier.json`).
    schema: serde_json::Value,
}

impl Gateway {
    pub fn new() -> Result<Self, ServiceError> {
        let text = crate::schema::FILES
            .iter()
            .find(|(file, _)| *file == IDENTIFIER_SCHEMA)
            .map(|(_, text)| *text)
            .ok_or_else(|| {
                ServiceError::Internal(format!("{IDENTIFIER_SCHEMA} is not embedded"))
            })?;
        let schema = serde_json::from_str(text)
            .map_err(|e| ServiceError::Internal(format!("{IDENTIFIER_SCHEMA}: {e}")))?;
        Ok(Gateway { schema })
    }

    /// `GET /v1/gateway/fields`: any authenticated account.
    pub fn fields(&self, _caller: &Caller) -> FieldsDocument {
        FieldsDocument {
            fields: FIELDS,
            schema: self.schema.clone(),
        }
    }

    /// `GET /v1/gateway/codes/{code}`: a code taken apart, with whether its check digit holds.
    pub fn parse(&self, _caller: &Caller, code: &str) -> Result<ParsedCode, ServiceError> {
        parse(code).map_err(|e| match e {
            DomainError::InvalidArgument { message, .. } => {
                DomainError::invalid("/code", message).into()
            }
            other => other.into(),
        })
    }
}
