//! The identifier gateway (compute-provider-access §3): the standard identifier fields the
//! platform publishes for enterprises to report, and the parsing of identifier codes.
//!
//! The fields are described twice on purpose: here for people (name, type, unit, whether
//! required) and in `schemas/gateway.identifier.json` for machines; a test keeps the two equal.

use serde::Serialize;

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
