//! The enterprise side of the identifier gateway: the configuration of `liutong gateway`
//! (where to collect, where to forward) and the **field mapping** that turns a record of the
//! provider's cloud-management API into a standard identifier (compute-provider-access §3).
//!
//! A mapping names, for each standard field (`domain::gateway::FIELDS`), where its value comes
//! from and how it is converted:
//!
//! ```toml
//! [mapping.memoryGiB]
//! pointer = "/flavor/ram_mb"   # JSON Pointer (RFC 6901) into the record
//! divide = 1024                # unit conversion: MiB → GiB (also `multiply`)
//!
//! [mapping.status]
//! pointer = "/state"
//! enum = { ACTIVE = "running", SHUTOFF = "offline" }   # provider value → standard value
//! default = "offline"          # when the record has no value there
//!
//! [mapping.resourceClass]
//! constant = "ai"              # the same for every record
//! ```
//!
//! The mapping is checked when loaded; every error names the line of the configuration file
//! and the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::gateway::{FIELDS, Field};

/// The whole configuration file of `liutong gateway`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Base URL of the regional platform (`liutong serve`), e.g. `https://platform.example`.
    pub platform_url: String,
    /// The enterprise's Ed25519 private key (PKCS#8 PEM), relative to the file's directory.
    pub key_file: String,
    /// Where the backlog and the rejects are kept, relative to the file's directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Identifiers per forwarded batch, 1-500.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    pub source: SourceConfig,
    pub mapping: Spanned<BTreeMap<Spanned<String>, Spanned<FieldMapping>>>,
}

fn default_state_dir() -> String {
    "gateway-state".to_owned()
}
fn default_poll_interval() -> u64 {
    60
}
fn default_batch_size() -> usize {
    super::gateway::MAX_BATCH
}

/// The provider's cloud-management API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub url: String,
    /// JSON Pointer to the array of records in the answer; "" when the answer is the array.
    #[serde(default)]
    pub records: String,
    /// A header carrying the credential, e.g. `Authorization`.
    pub auth_header: Option<String>,
    /// The environment variable holding the credential (a secret reference: the secret itself
    /// never appears in the file).
    pub auth_secret_env: Option<String>,
    /// Put before the secret in the header, e.g. `Bearer `.
    #[serde(default)]
    pub auth_prefix: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    30
}

/// How one standard field is filled.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// JSON Pointer into the record.
    pub pointer: Option<String>,
    /// The same value for every record.
    pub constant: Option<toml::Value>,
    /// The time the record was collected (date-time fields).
    #[serde(default)]
    pub now: bool,
    /// Used when the pointer finds nothing (or null).
    pub default: Option<toml::Value>,
    pub multiply: Option<f64>,
    pub divide: Option<f64>,
    /// Provider value (as text) → standard value.
    #[serde(rename = "enum")]
    pub table: Option<BTreeMap<String, toml::Value>>,
    /// Date-time fields given as numbers: `unix_seconds` or `unix_millis`.
    pub format: Option<String>,
}

/// A mapping that passed its checks, ready to apply.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<(&'static Field, FieldMapping)>,
}

/// A configuration error: the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MappingError {
    pub line: usize,
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .unwrap_or(text)
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn json_of(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(json_of).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), json_of(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn is_numeric(field: &Field) -> bool {
    matches!(field.kind, "integer" | "number")
}

impl GatewayFile {
    /// Reads the configuration text and checks the mapping; errors name the line.
    pub fn parse(text: &str) -> Result<(GatewayFile, Mapping), MappingError> {
        let file: GatewayFile = toml::from_str(text).map_err(|e| MappingError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let err = |offset: usize, message: String| MappingError {
            line: line_of(text, offset),
            message,
        };
        if !(1..=super::gateway::MAX_BATCH).contains(&file.batch_size) {
            return Err(err(
                0,
                format!(
                    "batch_size must be 1-{}, not {}",
                    super::gateway::MAX_BATCH,
                    file.batch_size
                ),
            ));
        }
        if file.poll_interval_secs == 0 {
            return Err(err(0, "poll_interval_secs must be at least 1".to_owned()));
        }
        if !(file.source.records.is_empty() || file.source.records.starts_with('/')) {
            return Err(err(
                0,
                "source.records must be a JSON Pointer (\"\" or starting with '/')".to_owned(),
            ));
        }
        if file.source.auth_header.is_some() != file.source.auth_secret_env.is_some() {
            return Err(err(
                0,
                "source.auth_header and source.auth_secret_env go together".to_owned(),
            ));
        }
        let mut fields = Vec::new();
        for (name, mapping) in file.mapping.get_ref() {
            let at = name.span().start;
            let name_text = name.get_ref().as_str();
            let Some(field) = FIELDS.iter().find(|f| f.name == name_text) else {
                let known: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
                return Err(err(
                    at,
                    format!(
                        "mapping.{name_text}: not a standard field (the fields are {})",
                        known.join(", ")
                    ),
                ));
            };
            check_field(field, mapping.get_ref())
                .map_err(|m| err(at, format!("mapping.{name_text}: {m}")))?;
            fields.push((field, mapping.get_ref().clone()));
        }
        for field in FIELDS.iter().filter(|f| f.required) {
            if !fields.iter().any(|(f, _)| f.name == field.name) {
                return Err(err(
                    file.mapping.span().start,
                    format!(
                        "mapping: the required field '{}' has no mapping (add [mapping.{}])",
                        field.name, field.name
                    ),
                ));
            }
        }
        Ok((file, Mapping { fields }))
    }
}

/// Checks a constant, default or enum target against the field's type.
fn check_value(field: &Field, what: &str, v: &toml::Value) -> Result<(), String> {
    let ok = match field.kind {
        "integer" => v.is_integer(),
        "number" => v.is_integer() || v.is_float(),
        "enum" => v.as_str().is_some_and(|s| field.values.contains(&s)),
        _ => v.is_str(),
    };
    if ok {
        Ok(())
    } else if field.kind == "enum" {
        Err(format!(
            "{what} {v} is not one of {}",
            field.values.join(", ")
        ))
    } else {
        Err(format!("{what} {v} is not of type {}", field.kind))
    }
}

fn check_field(field: &Field, m: &FieldMapping) -> Result<(), String> {
    let sources =
        usize::from(m.pointer.is_some()) + usize::from(m.constant.is_some()) + usize::from(m.now);
    if sources != 1 {
        return Err("needs exactly one of pointer, constant or now = true".to_owned());
    }
    if let Some(p) = &m.pointer
        && !(p.is_empty() || p.starts_with('/'))
    {
        return Err(format!(
            "pointer '{p}' is not a JSON Pointer (it starts with '/', e.g. \"/spec/cpu\")"
        ));
    }
    if m.now && field.kind != "date-time" {
        return Err("now = true is for date-time fields".to_owned());
    }
    if (m.multiply.is_some() || m.divide.is_some()) && !is_numeric(field) {
        return Err(format!(
            "multiply and divide convert numbers; this field is a {}",
            field.kind
        ));
    }
    for (what, factor) in [("multiply", m.multiply), ("divide", m.divide)] {
        if let Some(f) = factor
            && (!f.is_finite() || f == 0.0)
        {
            return Err(format!("{what} must be a finite number other than 0"));
        }
    }
    if let Some(format) = &m.format {
        if field.kind != "date-time" {
            return Err("format is for date-time fields".to_owned());
        }
        if !matches!(format.as_str(), "unix_seconds" | "unix_millis") {
            return Err(format!(
                "format '{format}' is not unix_seconds or unix_millis"
            ));
        }
    }
    if let Some(c) = &m.constant {
        check_value(field, "constant", c)?;
    }
    if let Some(d) = &m.default {
        check_value(field, "default", d)?;
    }
    if let Some(table) = &m.table {
        if table.is_empty() {
            return Err("enum table is empty".to_owned());
        }
        for (from, to) in table {
            check_value(field, &format!("enum entry '{from}' →"), to)?;
        }
    }
    Ok(())
}

/// Why a record did not map to an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The standard field.
    pub field: &'static str,
    pub message: String,
}

/// The text a provider value is looked up by in an enum table.
fn table_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Mapping {
    /// The standard identifier of one provider record, `now` being the collection time
    /// (RFC 3339). The result still goes through the identifier schema.
    pub fn apply(&self, record: &Value, now: &str) -> Result<Value, RecordError> {
        let mut out = Map::new();
        for (field, m) in &self.fields {
            let fail = |message: String| RecordError {
                field: field.name,
                message,
            };
            let mut value = if m.now {
                Some(Value::String(now.to_owned()))
            } else if let Some(c) = &m.constant {
                Some(json_of(c))
            } else {
                let p = m.pointer.as_deref().unwrap_or_default();
                record.pointer(p).filter(|v| !v.is_null()).cloned()
            };
            let mut defaulted = false;
            if value.is_none() {
                value = m.default.as_ref().map(json_of);
                defaulted = value.is_some();
            }
            let Some(mut value) = value else {
                if field.required {
                    return Err(fail(format!(
                        "the record has no value at {}",
                        m.pointer.as_deref().unwrap_or_default()
                    )));
                }
                continue;
            };
            if !defaulted && let Some(table) = &m.table {
                let key = table_key(&value);
                value = match table.get(&key) {
                    Some(to) => json_of(to),
                    None => {
                        return Err(fail(format!(
                            "'{key}' is not in the enum table (it maps {})",
                            table.keys().cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                };
            }
            if let Some(format) = &m.format
                && !defaulted
            {
                let n = as_number(&value)
                    .ok_or_else(|| fail(format!("{value} is not a number of {format}")))?;
                let nanos = if format == "unix_seconds" {
                    n * 1e9
                } else {
                    n * 1e6
                };
                let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
                    .map_err(|e| fail(format!("{value}: {e}")))?;
                value = Value::String(super::timefmt::to_rfc3339(at));
            }
            value = match field.kind {
                "integer" | "number" => {
                    let mut n = as_number(&value)
                        .ok_or_else(|| fail(format!("{value} is not a number")))?;
                    if !defaulted {
                        if let Some(f) = m.multiply {
                            n *= f;
                        }
                        if let Some(f) = m.divide {
                            n /= f;
                        }
                    }
                    if field.kind == "integer" {
                        if n.fract() != 0.0 || !n.is_finite() {
                            return Err(fail(format!("{n} is not a whole number")));
                        }
                        Value::from(n as i64)
                    } else {
                        // Two decimals are what prices carry; other numbers keep what
                        // binary floating point gives after the conversion.
                        serde_json::Number::from_f64(n)
                            .map(Value::Number)
                            .ok_or_else(|| fail(format!("{n} is not a finite number")))?
                    }
                }
                _ => match value {
                    Value::String(s) => Value::String(s),
                    Value::Number(n) => Value::String(n.to_string()),
                    other => return Err(fail(format!("{other} is not text"))),
                },
            };
            out.insert(field.name.to_owned(), value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"platform_url = "http://127.0.0.1:1"
key_file = "key.pem"

[source]
url = "http://127.0.0.1:2/instances"
records = "/items"

[mapping.code]
pointer = "/tag"
[mapping.resourceClass]
constant = "ai"
[mapping.resourceType]
constant = "cloud_host"
[mapping.province]
pointer = "/region/province"
[mapping.city]
pointer = "/region/city"
[mapping.zone]
pointer = "/az"
[mapping.status]
pointer = "/state"
enum = { ACTIVE = "running", SHUTOFF = "offline" }
[mapping.observedAt]
pointer = "/updated"
format = "unix_seconds"
"#;

    #[test]
    fn a_record_is_mapped() {
        let text = format!("{BASE}[mapping.memoryGiB]\npointer = \"/ram_mb\"\ndivide = 1024\n");
        let (_, mapping) = GatewayFile::parse(&text).expect("valid");
        let record = serde_json::json!({
            "tag": "1000144031650007", "region": {"province": "440000", "city": "440300"},
            "az": 1, "state": "ACTIVE", "updated": 1_767_225_600, "ram_mb": 16384
        });
        let mapped = mapping
            .apply(&record, "2026-01-01T00:00:00Z")
            .expect("maps");
        assert_eq!(mapped["memoryGiB"], 16.0);
        assert_eq!(mapped["status"], "running");
        assert_eq!(mapped["zone"], "1");
        assert_eq!(mapped["observedAt"], "2026-01-01T00:00:00Z");
        let unknown = serde_json::json!({"tag": "1", "region": {"province": "1", "city": "2"},
            "az": 1, "state": "PAUSED", "updated": 1});
        assert_eq!(
            mapping.apply(&unknown, "x").expect_err("unmapped").field,
            "status"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let bad_field = format!("{BASE}[mapping.memoryGB]\npointer = \"/ram\"\n");
        let e = GatewayFile::parse(&bad_field).expect_err("unknown field");
        assert_eq!(e.line, BASE.lines().count() + 1, "{e}");
        assert!(e.message.contains("mapping.memoryGB"), "{e}");
        let bad_enum = BASE.replace("SHUTOFF = \"offline\"", "SHUTOFF = \"stopped\"");
        let e = GatewayFile::parse(&bad_enum).expect_err("bad enum target");
        let line = BASE
            .lines()
            .position(|l| l == "[mapping.status]")
            .expect("line")
            + 1;
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains("mapping.status"), "{e}");
        let bad_unit = BASE.replace("format = \"unix_seconds\"", "divide = 0");
        let e = GatewayFile::parse(&bad_unit).expect_err("divide on a date");
        assert!(e.message.contains("mapping.observedAt"), "{e}");
        let missing = BASE.replace("[mapping.zone]\npointer = \"/az\"\n", "");
        let e = GatewayFile::parse(&missing).expect_err("zone missing");
        assert!(e.message.contains("'zone'"), "{e}");
    }
}
