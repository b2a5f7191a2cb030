//! The identifier gateway (compute-provider-access §3): the standard identifier fields the
//! platform publishes for enterprises to report, and the parsing of identifier codes.
//!
//! The fields are described twice on purpose: here for people (name, type, unit, whether
//! required) and in `schemas/gateway.identifier.json` for machines; a test keeps the two equal.

use serde::{Deserialize, Serialize};

use super::DomainError;
use super::identifiers::parse as parse_code;
use super::money::Money;
use super::timefmt::{from_millis, parse_datetime, to_rfc3339};

/// One standard identifier field.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Field {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `enum` or `date-time`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub unit: Option<&'static str>,
    pub required: bool,
    /// For `enum` fields, the allowed values.
    #[serde(rename = "enum", skip_serializing_if = "<[_]>::is_empty")]
    pub values: &'static [&'static str],
    pub description: &'static str,
}

const fn field(
    name: &'static str,
    kind: &'static str,
    unit: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Field {
    Field {
        name,
        kind,
        unit,
        required,
        values: &[],
        description,
    }
}

pub const RESOURCE_CLASSES: &[&str] = &["general", "ai", "supercomputing"];
pub const RESOURCE_TYPES: &[&str] = &[
    "cloud_host",
    "bare_metal",
    "file_service",
    "storage_service",
];
pub const STATUSES: &[&str] = &["running", "idle", "maintenance", "offline"];

/// The standard identifier fields, in the order they are published.
pub const FIELDS: &[Field] = &[
    field("code", "string", None, true, "the 16-digit identifier code"),
    Field {
        values: RESOURCE_CLASSES,
        ..field(
            "resourceClass",
            "enum",
            None,
            true,
            "general, AI or supercomputing",
        )
    },
    Field {
        values: RESOURCE_TYPES,
        ..field(
            "resourceType",
            "enum",
            None,
            true,
            "cloud host, bare metal, file service or storage service",
        )
    },
    field("province", "string", None, true, "GB/T 2260 province code"),
    field("city", "string", None, true, "GB/T 2260 city code"),
    field("zone", "string", None, true, "availability zone, one digit"),
    field("cpuCores", "integer", Some("cores"), false, "CPU cores"),
    field("cpuModel", "string", None, false, "CPU model"),
    field(
        "gpuModel",
        "string",
        None,
        false,
        "GPU or accelerator model",
    ),
    field(
        "gpuCount",
        "integer",
        Some("cards"),
        false,
        "GPUs or accelerators",
    ),
    field("memoryGiB", "number", Some("GiB"), false, "memory"),
    field(
        "storageGiB",
        "number",
        Some("GiB"),
        false,
        "storage capacity",
    ),
    field(
        "bandwidthMbps",
        "number",
        Some("Mbit/s"),
        false,
        "network bandwidth",
    ),
    Field {
        values: STATUSES,
        ..field("status", "enum", None, true, "operational status")
    },
    field(
        "unitPrice",
        "number",
        Some("CNY/hour"),
        false,
        "price per hour",
    ),
    field(
        "observedAt",
        "date-time",
        None,
        true,
        "when the values were observed (RFC 3339)",
    ),
];

/// `GET /v1/gateway/fields`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldsDocument {
    pub fields: &'static [Field],
    /// The JSON Schema every identifier is validated against.
    pub schema: serde_json::Value,
}

/// The most identifiers one batch may carry (`POST /v1/gateway/identifiers`; the schema
/// `gateway.batch.json` says the same).
pub const MAX_BATCH: usize = 500;

/// `PUT /v1/provider/gateway-key` body (schemas/provider.gatewayKey.json).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayKeyRequest {
    /// Base64 of the 32 bytes of an Ed25519 public key.
    pub public_key: String,
}

/// A registered gateway key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayKeyView {
    pub key_id: String,
    pub enterprise_id: String,
    pub public_key: String,
    pub created_at: String,
    /// The key it replaced, now retired (batches signed with it are refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_key_id: Option<String>,
}

/// One identifier as reported, after its schema check (`schemas/gateway.identifier.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    pub code: String,
    pub resource_class: String,
    pub resource_type: String,
    pub province: String,
    pub city: String,
    pub zone: String,
    pub cpu_cores: Option<i64>,
    pub cpu_model: Option<String>,
    pub gpu_model: Option<String>,
    pub gpu_count: Option<i64>,
    #[serde(rename = "memoryGiB")]
    pub memory_gib: Option<f64>,
    #[serde(rename = "storageGiB")]
    pub storage_gib: Option<f64>,
    pub bandwidth_mbps: Option<f64>,
    pub status: String,
    pub unit_price: Option<f64>,
    pub observed_at: String,
}

/// Why one identifier of a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectReason {
    /// It breaks the identifier schema (the path names the field).
    Schema,
    /// Its code is not the signing enterprise's (the first five digits differ).
    ForeignCode,
    /// Its check digit is wrong.
    CheckDigit,
    /// No approved application issued this code.
    UnknownCode,
    /// Its province, city or zone differ from those the code encodes.
    CodeMismatch,
    /// An operator deactivated this identifier; its reports are refused until reactivated.
    Deactivated,
}

/// One refused identifier of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its position in `identifiers`.
    pub index: usize,
    /// JSON pointer of the offending value, e.g. `/identifiers/3/memoryGiB`.
    pub path: String,
    pub reason: RejectReason,
    pub message: String,
}

/// `POST /v1/gateway/identifiers` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// Identifiers stored by this batch.
    pub accepted: usize,
    /// Identifiers already stored (same code and observedAt), by an earlier batch or earlier
    /// in this one: nothing was added for them.
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// An identifier ready to store: checked, its time in Unix milliseconds, its price in fen.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub code: String,
    pub observed_at: i64,
    pub enterprise_id: String,
    pub resource_class: String,
    pub resource_type: String,
    pub province: String,
    pub city: String,
    pub zone: String,
    pub cpu_cores: Option<i64>,
    pub cpu_model: Option<String>,
    pub gpu_model: Option<String>,
    pub gpu_count: Option<i64>,
    pub memory_gib: Option<f64>,
    pub storage_gib: Option<f64>,
    pub bandwidth_mbps: Option<f64>,
    pub status: String,
    pub unit_price: Option<Money>,
}

impl Identifier {
    /// The rules beyond the schema that need no database: the code is the signer's, its check
    /// digit holds, and the region it encodes is the one reported. On refusal: the field (below
    /// the item) and why.
    pub fn check(
        self,
        enterprise_id: &str,
    ) -> Result<Observation, (&'static str, RejectReason, String)> {
        let parsed =
            parse_code(&self.code).map_err(|e| ("/code", RejectReason::Schema, e.to_string()))?;
        if parsed.enterprise_id != enterprise_id {
            return Err((
                "/code",
                RejectReason::ForeignCode,
                format!(
                    "code '{}' belongs to enterprise {}, not to the signer {enterprise_id}",
                    self.code, parsed.enterprise_id
                ),
            ));
        }
        if !parsed.check_digit_valid {
            return Err((
                "/code",
                RejectReason::CheckDigit,
                format!("code '{}' has a wrong check digit", self.code),
            ));
        }
        for (field, reported, encoded) in [
            ("/province", &self.province, &parsed.province),
            ("/city", &self.city, &parsed.city),
            ("/zone", &self.zone, &parsed.zone),
        ] {
            if reported != encoded {
                return Err((
                    field,
                    RejectReason::CodeMismatch,
                    format!(
                        "'{reported}' differs from '{encoded}', which code '{}' encodes",
                        self.code
                    ),
                ));
            }
        }
        let observed_at = parse_datetime("/observedAt", &self.observed_at)
            .map_err(|e| ("/observedAt", RejectReason::Schema, e.to_string()))?;
        let observed_at =
            i64::try_from(observed_at.unix_timestamp_nanos() / 1_000_000).map_err(|_| {
                (
                    "/observedAt",
                    RejectReason::Schema,
                    "out of range".to_owned(),
                )
            })?;
        let unit_price = self
            .unit_price
            .map(|p| Money::from_price("/unitPrice", p))
            .transpose()
            .map_err(|e| ("/unitPrice", RejectReason::Schema, e.to_string()))?;
        Ok(Observation {
            code: self.code,
            observed_at,
            enterprise_id: enterprise_id.to_owned(),
            resource_class: self.resource_class,
            resource_type: self.resource_type,
            province: self.province,
            city: self.city,
            zone: self.zone,
            cpu_cores: self.cpu_cores,
            cpu_model: self.cpu_model,
            gpu_model: self.gpu_model,
            gpu_count: self.gpu_count,
            memory_gib: self.memory_gib,
            storage_gib: self.storage_gib,
            bandwidth_mbps: self.bandwidth_mbps,
            status: self.status,
            unit_price,
        })
    }
}

/// The current state of an identifier as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentifierState {
    pub observation: Observation,
    pub received_at: i64,
    pub deactivated_at: Option<i64>,
}

/// An identifier in listings (`GET /v1/gateway/identifiers`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifierView {
    pub code: String,
    pub enterprise_id: String,
    pub resource_class: String,
    pub resource_type: String,
    pub province: String,
    pub city: String,
    pub zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<i64>,
    #[serde(rename = "memoryGiB", skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<f64>,
    #[serde(rename = "storageGiB", skip_serializing_if = "Option::is_none")]
    pub storage_gib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<f64>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<f64>,
    pub observed_at: String,
    pub received_at: String,
    /// False once an operator deactivated it.
    pub active: bool,
    pub deactivated_at: Option<String>,
}

impl From<IdentifierState> for IdentifierView {
    fn from(s: IdentifierState) -> Self {
        let o = s.observation;
        IdentifierView {
            code: o.code,
            enterprise_id: o.enterprise_id,
            resource_class: o.resource_class,
            resource_type: o.resource_type,
            province: o.province,
            city: o.city,
            zone: o.zone,
            cpu_cores: o.cpu_cores,
            cpu_model: o.cpu_model,
            gpu_model: o.gpu_model,
            gpu_count: o.gpu_count,
            memory_gib: o.memory_gib,
            storage_gib: o.storage_gib,
            bandwidth_mbps: o.bandwidth_mbps,
            status: o.status,
            unit_price: o.unit_price.map(Money::to_price),
            observed_at: to_rfc3339(from_millis(o.observed_at)),
            received_at: to_rfc3339(from_millis(s.received_at)),
            active: s.deactivated_at.is_none(),
            deactivated_at: s.deactivated_at.map(|t| to_rfc3339(from_millis(t))),
        }
    }
}

/// `GET /v1/gateway/identifiers` query (schemas/gateway.identifiers.query.json), and the
/// filters of `GET /v1/gateway/statistics` ([`StatisticsQuery`]); every value arrives as a
/// string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifiersQuery {
    pub enterprise: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    #[serde(rename = "class")]
    pub resource_class: Option<String>,
    pub status: Option<String>,
    /// `active`, `deactivated` or `all`.
    pub state: Option<String>,
    /// observedAt ≥ from (RFC 3339).
    pub from: Option<String>,
    /// observedAt < to (RFC 3339).
    pub to: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    /// Statistics only: `province`, `city`, `type`, `class` or `status`.
    pub group_by: Option<String>,
}

/// `GET /v1/gateway/statistics` query (schemas/gateway.statistics.query.json): the listing's
/// filters and `groupBy`, no paging (its schema has no `limit` or `offset`, the listing's no
/// `groupBy`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct StatisticsQuery(pub IdentifiersQuery);

/// Whether listings include deactivated identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    All,
    Active,
    Deactivated,
}

impl StateFilter {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "all" => Some(StateFilter::All),
            "active" => Some(StateFilter::Active),
            "deactivated" => Some(StateFilter::Deactivated),
            _ => None,
        }
    }
}

/// The filters of a listing or statistics, checked, times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierFilter {
    pub enterprise: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub resource_type: Option<String>,
    pub resource_class: Option<String>,
    pub status: Option<String>,
    pub state: StateFilter,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

fn millis_of(field: &str, text: Option<&str>) -> Result<Option<i64>, DomainError> {
    text.map(|t| {
        let at = parse_datetime(field, t)?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| DomainError::invalid(field, "out of range"))
    })
    .transpose()
}

impl IdentifiersQuery {
    /// The filters; `state` is `default_state` when not given.
    pub fn filter(&self, default_state: StateFilter) -> Result<IdentifierFilter, DomainError> {
        let state = match self.state.as_deref() {
            None => default_state,
            Some(s) => StateFilter::parse(s).ok_or_else(|| {
                DomainError::invalid("/state", "must be active, deactivated or all")
            })?,
        };
        Ok(IdentifierFilter {
            enterprise: self.enterprise.clone(),
            province: self.province.clone(),
            city: self.city.clone(),
            resource_type: self.resource_type.clone(),
            resource_class: self.resource_class.clone(),
            status: self.status.clone(),
            state,
            from: millis_of("/from", self.from.as_deref())?,
            to: millis_of("/to", self.to.as_deref())?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentifiersPage {
    pub identifiers: Vec<IdentifierView>,
    pub limit: i64,
    pub offset: i64,
}

/// What statistics group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Province,
    City,
    Type,
    Class,
    Status,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "province" => Some(GroupBy::Province),
            "city" => Some(GroupBy::City),
            "type" => Some(GroupBy::Type),
            "class" => Some(GroupBy::Class),
            "status" => Some(GroupBy::Status),
            _ => None,
        }
    }

    /// The stored column.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Province => "province",
            GroupBy::City => "city",
            GroupBy::Type => "resource_type",
            GroupBy::Class => "resource_class",
            GroupBy::Status => "status",
        }
    }
}

/// Counts and capacity sums of a group of identifiers (absent values count as 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub count: i64,
    pub cpu_cores: i64,
    pub gpu_count: i64,
    #[serde(rename = "memoryGiB")]
    pub memory_gib: f64,
    #[serde(rename = "storageGiB")]
    pub storage_gib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub capacity: Capacity,
}

/// `GET /v1/gateway/statistics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub group_by: GroupBy,
    pub groups: Vec<Group>,
    pub total: Capacity,
}

/// `POST /v1/admin/gateway/identifiers/{code}/deactivate` and `/reactivate` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationView {
    pub code: String,
    pub active: bool,
    pub deactivated_at: Option<String>,
}
