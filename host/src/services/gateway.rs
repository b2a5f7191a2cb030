//! The platform side of the identifier gateway (compute-provider-access §3): the published
//! identifier fields, the parsing of codes, the enterprises' gateway keys, the ingestion of
//! signed batches, and the query, statistics and management of identifiers.

use std::collections::HashSet;

use serde_json::Value;

use super::{ServiceError, page_number};
use crate::crypto::batch;
use crate::domain::gateway::{
    ActivationView, BatchOutcome, Capacity, FIELDS, FieldsDocument, GatewayKeyRequest,
    GatewayKeyView, GroupBy, Identifier, IdentifierFilter, IdentifiersPage, IdentifiersQuery,
    MAX_BATCH, Observation, RejectReason, Rejected, StateFilter, Statistics,
};
use crate::domain::identifiers::{ParsedCode, parse};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role};
use crate::schema::Schemas;
use crate::store::Store;
use crate::store::gateway::{Activation, KeyRegistration};

/// The schema file of an identifier.
pub const IDENTIFIER_SCHEMA: &str = "gateway.identifier.json";
/// The schema file of a batch's envelope (its items are checked one by one against
/// `IDENTIFIER_SCHEMA`, so one bad item does not refuse the others).
pub const BATCH_SCHEMA: &str = "gateway.batch.json";

/// A batch as it arrived: the exact body bytes and the signature headers.
pub struct SignedBatch<'a> {
    pub key_id: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Clone)]
pub struct Gateway {
    store: Store,
    schemas: Schemas,
    /// The identifier schema as published (`schemas/gateway.identifier.json`).
    schema: serde_json::Value,
}

fn unauthenticated(message: impl Into<String>) -> ServiceError {
    DomainError::Unauthenticated(message.into()).into()
}

impl Gateway {
    pub fn new(store: Store, schemas: Schemas) -> Result<Self, ServiceError> {
        let schema = schemas
            .documents()
            .iter()
            .find(|(file, _)| *file == IDENTIFIER_SCHEMA)
            .map(|(_, doc)| doc.clone())
            .ok_or_else(|| {
                ServiceError::Internal(format!("{IDENTIFIER_SCHEMA} is not embedded"))
            })?;
        Ok(Gateway {
            store,
            schemas,
            schema,
        })
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

    async fn enterprise_of(&self, caller: &Caller) -> Result<String, ServiceError> {
        self.store
            .enterprise_id_of(&caller.account_id)
            .await?
            .ok_or_else(|| {
                DomainError::InvalidState(
                    "only a certified enterprise has gateway identifiers: submit \
                     POST /v1/provider/certification and wait for its approval"
                        .to_owned(),
                )
                .into()
            })
    }

    /// `PUT /v1/provider/gateway-key`: a certified enterprise registers the Ed25519 key its
    /// gateway signs batches with; the key it had before is retired.
    pub async fn register_key(
        &self,
        caller: &Caller,
        request: GatewayKeyRequest,
    ) -> Result<GatewayKeyView, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        let enterprise_id = self.enterprise_of(caller).await?;
        let key = batch::parse_public_key(&request.public_key)
            .map_err(|e| ServiceError::invalid("/publicKey", e.to_string()))?;
        let key_id = batch::key_id(&key);
        let public_key = batch::encode_public_key(&key);
        match self
            .store
            .register_gateway_key(
                &caller.account_id,
                &enterprise_id,
                &key_id,
                &public_key,
                now_millis(),
            )
            .await?
        {
            KeyRegistration::Registered {
                created_at,
                retired,
            } => Ok(GatewayKeyView {
                key_id,
                enterprise_id,
                public_key,
                created_at: to_rfc3339(from_millis(created_at)),
                retired_key_id: retired,
            }),
            KeyRegistration::TakenByAnother => Err(ServiceError::conflict(format!(
                "key {key_id} is registered to another enterprise"
            ))),
        }
    }

    /// `POST /v1/gateway/identifiers`: a signed batch. The signature is checked before anything
    /// of the body is read; then each identifier is checked on its own, and the good ones are
    /// stored once each by (code, observedAt).
    pub async fn ingest(&self, signed: SignedBatch<'_>) -> Result<BatchOutcome, ServiceError> {
        let (Some(key_id), Some(signature)) = (signed.key_id, signed.signature) else {
            return Err(unauthenticated(format!(
                "a batch needs the headers {} and {} (see docs/provider-access.md)",
                batch::KEY_ID_HEADER,
                batch::SIGNATURE_HEADER
            )));
        };
        let key = self
            .store
            .active_gateway_key(key_id.trim())
            .await?
            .ok_or_else(|| {
                unauthenticated(format!(
                    "no active gateway key '{key_id}': register it with PUT /v1/provider/gateway-key"
                ))
            })?;
        let public = batch::parse_public_key(&key.public_key)
            .map_err(|e| ServiceError::Internal(format!("stored gateway key {key_id}: {e}")))?;
        batch::verify(&public, signed.body, signature).map_err(|e| {
            unauthenticated(format!(
                "{}: {e} with key {key_id} over the body as sent",
                batch::SIGNATURE_HEADER
            ))
        })?;
        let value: Value = serde_json::from_slice(signed.body)
            .map_err(|e| ServiceError::invalid("/", format!("malformed JSON: {e}")))?;
        let violations = self.schemas.validate(BATCH_SCHEMA, &value);
        if !violations.is_empty() {
            let detail: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(DomainError::InvalidArgument {
                field: violations[0].path.clone(),
                message: format!("request does not match its schema: {}", detail.join("; ")),
            }
            .into());
        }
        // Taken out, not cloned: a batch is up to 500 objects.
        let items = match value {
            Value::Object(mut map) => match map.remove("identifiers") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if items.len() > MAX_BATCH {
            return Err(DomainError::TooLarge(format!(
                "a batch carries at most {MAX_BATCH} identifiers"
            ))
            .into());
        }
        let mut rejected = Vec::new();
        let mut indices: Vec<usize> = Vec::with_capacity(items.len());
        let mut observations: Vec<Observation> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let at = |path: &str| format!("/identifiers/{index}{path}");
            let violations = self.schemas.validate(IDENTIFIER_SCHEMA, &item);
            if let Some(first) = violations.first() {
                let detail: Vec<String> = violations.iter().map(ToString::to_string).collect();
                rejected.push(Rejected {
                    index,
                    path: at(&first.path),
                    reason: RejectReason::Schema,
                    message: detail.join("; "),
                });
                continue;
            }
            let identifier: Identifier = match serde_json::from_value(item) {
                Ok(i) => i,
                Err(e) => {
                    rejected.push(Rejected {
                        index,
                        path: at(""),
                        reason: RejectReason::Schema,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            match identifier.check(&key.enterprise_id) {
                Ok(o) => {
                    indices.push(index);
                    observations.push(o);
                }
                Err((field, reason, message)) => rejected.push(Rejected {
                    index,
                    path: at(field),
                    reason,
                    message,
                }),
            }
        }
        let stored = self
            .store
            .ingest_observations(&observations, key_id.trim(), now_millis())
            .await?;
        let mut accepted = 0;
        let mut duplicates = 0;
        let mut counted = HashSet::new();
        for (index, o) in indices.into_iter().zip(observations) {
            let path = format!("/identifiers/{index}/code");
            if stored.unknown.contains(&o.code) {
                rejected.push(Rejected {
                    index,
                    path,
                    reason: RejectReason::UnknownCode,
                    message: format!("code '{}' was never issued", o.code),
                });
            } else if stored.deactivated.contains(&o.code) {
                rejected.push(Rejected {
                    index,
                    path,
                    reason: RejectReason::Deactivated,
                    message: format!(
                        "identifier '{}' is deactivated by an operator; its reports are refused",
                        o.code
                    ),
                });
            } else {
                let id = (o.code, o.observed_at);
                // The first of a pair within the batch is the stored one; a repeat is a duplicate.
                if stored.inserted.contains(&id) && counted.insert(id) {
                    accepted += 1;
                } else {
                    duplicates += 1;
                }
            }
        }
        rejected.sort_by_key(|r| r.index);
        Ok(BatchOutcome {
            accepted,
            duplicates,
            rejected,
        })
    }

    /// The filter a caller may use: operators any, an enterprise only its own identifiers.
    async fn scoped(
        &self,
        caller: &Caller,
        query: &IdentifiersQuery,
        default_state: StateFilter,
    ) -> Result<IdentifierFilter, ServiceError> {
        let mut filter = query.filter(default_state)?;
        match caller.role {
            Role::Operator => {}
            Role::Enterprise => {
                let own = self.enterprise_of(caller).await?;
                if filter.enterprise.as_ref().is_some_and(|e| *e != own) {
                    return Err(ServiceError::forbidden(format!(
                        "an enterprise sees only its own identifiers (enterprise {own})"
                    )));
                }
                filter.enterprise = Some(own);
            }
            Role::DataSpace => {
                return Err(ServiceError::forbidden(
                    "identifiers are seen by operators and their own enterprise",
                ));
            }
        }
        Ok(filter)
    }

    /// `GET /v1/gateway/identifiers`: current identifiers, newest observation first.
    pub async fn identifiers(
        &self,
        caller: &Caller,
        query: &IdentifiersQuery,
    ) -> Result<IdentifiersPage, ServiceError> {
        let filter = self.scoped(caller, query, StateFilter::All).await?;
        let limit = page_number("limit", query.limit.as_deref(), 100, (1, 1000))?;
        let offset = page_number("offset", query.offset.as_deref(), 0, (0, i64::MAX))?;
        let page = self
            .store
            .gateway_identifiers_page(&filter, limit, offset)
            .await?;
        Ok(IdentifiersPage {
            identifiers: page.into_iter().map(Into::into).collect(),
            limit,
            offset,
        })
    }

    /// `GET /v1/gateway/statistics`: counts and capacity by one dimension; active identifiers
    /// unless `state` says otherwise.
    pub async fn statistics(
        &self,
        caller: &Caller,
        query: &IdentifiersQuery,
    ) -> Result<Statistics, ServiceError> {
        let group_by = match query.group_by.as_deref() {
            None => GroupBy::Province,
            Some(g) => GroupBy::parse(g).ok_or_else(|| {
                ServiceError::invalid("/groupBy", "must be province, city, type, class or status")
            })?,
        };
        let filter = self.scoped(caller, query, StateFilter::Active).await?;
        let groups = self.store.gateway_statistics(&filter, group_by).await?;
        let mut total = Capacity {
            count: 0,
            cpu_cores: 0,
            gpu_count: 0,
            memory_gib: 0.0,
            storage_gib: 0.0,
        };
        for g in &groups {
            total.count += g.capacity.count;
            total.cpu_cores += g.capacity.cpu_cores;
            total.gpu_count += g.capacity.gpu_count;
            total.memory_gib += g.capacity.memory_gib;
            total.storage_gib += g.capacity.storage_gib;
        }
        Ok(Statistics {
            group_by,
            groups,
            total,
        })
    }

    /// `POST /v1/admin/gateway/identifiers/{code}/deactivate` (`deactivate`) and `/reactivate`.
    pub async fn set_active(
        &self,
        caller: &Caller,
        code: &str,
        deactivate: bool,
    ) -> Result<ActivationView, ServiceError> {
        caller.require_role(Role::Operator)?;
        match self
            .store
            .set_identifier_active(code, deactivate, &caller.account_id, now_millis())
            .await?
        {
            Activation::Changed(at) => Ok(ActivationView {
                code: code.to_owned(),
                active: at.is_none(),
                deactivated_at: at.map(|t| to_rfc3339(from_millis(t))),
            }),
            Activation::NotFound => Err(ServiceError::not_found(format!(
                "no identifier '{code}' has been reported through the gateway"
            ))),
            Activation::Unchanged => Err(ServiceError::invalid_state(format!(
                "identifier '{code}' is {} already",
                if deactivate { "deactivated" } else { "active" }
            ))),
        }
    }
}
