//! The JSON Schemas (2020-12) in the repository's `schemas/` folder: compiled once at start,
//! used to validate every request, and published in the OpenAPI document.
//!
//! Schemas reference each other relative to their `$id`
//! (`https://schemas.liutong.invalid/<file>`); those references are answered from the embedded
//! files, never from the network.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

pub const BASE_URI: &str = "https://schemas.liutong.invalid/";

/// liutong's own string format: an age X25519 recipient whose Bech32 checksum holds, so that a
/// key the server could not encrypt to is refused by the schema, like any other shape error.
pub const AGE_RECIPIENT_FORMAT: &str = "age-recipient";

fn is_age_recipient(text: &str) -> bool {
    text.parse::<age::x25519::Recipient>().is_ok()
}

/// A string format checked by a rule of the domain (`name`, check), handed in by the wiring
/// (`App::build`) so that this module stays a leaf.
pub type Format = (&'static str, fn(&str) -> bool);

macro_rules! embed {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../schemas/", $file)))),*]
    };
}

/// Every schema file, embedded so the binary is self-contained.
pub const FILES: &[(&str, &str)] = embed![
    "common.json",
    "account.register.json",
    "account.token.json",
    "registerData.json",
    "publishData.json",
    "publishDatasets.json",
    "queryPublishedData.json",
    "revokePublishedData.json",
    "registerDemand.json",
    "publishDemand.json",
    "queryPublishedDemand.json",
    "revokeDemand.json",
    "queryMatchResults.json",
    "confirmDemand.json",
    "queryDemandForSettlement.json",
    "settlement.json",
    "querySettlement.json",
    "deliver.json",
    "queryDeliverResult.json",
    "updateLicenses.json",
    "admin.credit.json",
    "account.deliveryKey.json",
    "data.deliveryKey.json",
    "data.ref.json",
    "admin.plugins.ref.json",
    "admin.plugins.activate.json",
    "admin.plugins.default.json",
    "admin.plugins.call.json",
    "admin.billingRule.json",
    "admin.pluginCalls.json",
    "admin.policyRule.json",
    "deliverDatasets.json",
    "policies.access.json",
    "policies.list.json",
    "policies.decisions.json",
    "provider.certification.json",
    "admin.certifications.json",
    "admin.review.reject.json",
    "provider.identifiers.json",
    "admin.identifierApplications.json",
    "admin.notifications.json",
    "gateway.identifier.json",
    "gateway.batch.json",
    "gateway.identifiers.query.json",
    "gateway.statistics.query.json",
    "provider.gatewayKey.json",
    "subscriptions.common.json",
    "model.publish.json",
    "model.subscribe.json",
    "model.delivery.json",
    "model.userSettlement.json",
    "model.providerSettlement.json",
    "application.publish.json",
    "application.subscribe.json",
    "application.delivery.json",
    "application.userSettlement.json",
    "application.providerSettlement.json",
    "orders.usage.json",
    "publications.list.json",
    "account.apiKeys.json",
    "compute.offering.json",
    "compute.offerings.json",
    "compute.order.json",
    "compute.orders.json",
    "compute.action.json",
    "admin.computeBillSync.json",
    "admin.computeReconciliation.json",
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {file} is not valid JSON: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("schema {file} does not compile: {message}")]
    Compile { file: &'static str, message: String },
}

/// One rule an input broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer to the offending value ("" is the whole document).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

#[derive(Clone)]
struct Embedded(Arc<HashMap<String, Value>>);

impl Retrieve for Embedded {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .get(uri.as_str())
            .cloned()
            .ok_or_else(|| format!("no embedded schema at {}", uri.as_str()).into())
    }
}

#[derive(Clone)]
pub struct Schemas {
    validators: Arc<HashMap<&'static str, Validator>>,
    documents: Arc<Vec<(&'static str, Value)>>,
}

impl Schemas {
    /// Compiles every schema; `formats` are the string formats of the domain's own.
    pub fn load(formats: &[Format]) -> Result<Schemas, SchemaError> {
        let mut documents = Vec::with_capacity(FILES.len());
        for (file, text) in FILES {
            let doc: Value =
                serde_json::from_str(text).map_err(|source| SchemaError::Json { file, source })?;
            documents.push((*file, doc));
        }
        let by_uri: HashMap<String, Value> = documents
            .iter()
            .map(|(file, doc)| (format!("{BASE_URI}{file}"), doc.clone()))
            .collect();
        let retriever = Embedded(Arc::new(by_uri));
        let mut validators = HashMap::new();
        for (file, doc) in &documents {
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_retriever(retriever.clone())
                .should_validate_formats(true)
                .should_ignore_unknown_formats(false)
                .with_format(AGE_RECIPIENT_FORMAT, is_age_recipient);
            let validator = formats
                .iter()
                .fold(validator, |v, (name, check)| v.with_format(*name, *check))
                .build(doc)
                .map_err(|e| SchemaError::Compile {
                    file,
                    message: e.to_string(),
                })?;
            validators.insert(*file, validator);
        }
        Ok(Schemas {
            validators: Arc::new(validators),
            documents: Arc::new(documents),
        })
    }

    /// Every rule `instance` breaks, ordered by path. A name that is not a schema file is a
    /// programming error caught by the tests, reported here as a violation at the root.
    pub fn validate(&self, file: &str, instance: &Value) -> Vec<Violation> {
        let Some(validator) = self.validators.get(file) else {
            return vec![Violation {
                path: String::new(),
                message: format!("no schema named {file}"),
            }];
        };
        let mut violations: Vec<Violation> = validator
            .iter_errors(instance)
            .map(|e| {
                let mut path = e.instance_path().to_string();
                // A missing property is named by its own pointer, not its parent's.
                if let jsonschema::error::ValidationErrorKind::Required {
                    property: Value::String(name),
                } = e.kind()
                {
                    path = format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
                }
                Violation {
                    path,
                    message: e.masked().to_string(),
                }
            })
            .collect();
        violations.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
        violations.dedup();
        violations
    }

    /// The raw schema documents, for the OpenAPI document.
    pub fn documents(&self) -> &[(&'static str, Value)] {
        &self.documents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_embedded_and_compiles() {
        let schemas = Schemas::load(&[("credit-code", |_| true)]).unwrap_or_else(|e| panic!("{e}"));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        for name in &on_disk {
            assert!(
                FILES.iter().any(|(f, _)| f == name),
                "schemas/{name} is not listed in schema::FILES"
            );
        }
        for (file, doc) in schemas.documents() {
            assert_eq!(
                doc["$id"].as_str(),
                Some(format!("{BASE_URI}{file}").as_str()),
                "{file} has a wrong $id"
            );
        }
    }
}
