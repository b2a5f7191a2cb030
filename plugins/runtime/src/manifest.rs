//! `plugin.toml`: what a plugin is, which WIT contract it implements, and what it may do.
//!
//! The manifest is parsed strictly (`deny_unknown_fields`) so that a typo such as `timout_ms`
//! is an error instead of a silently ignored limit, and every validation error names the field.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

pub use crate::kind::PluginKind;
pub use crate::wit::WitVersion;

/// Largest accepted `plugin.toml`.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Longest accepted `description`.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// A manifest field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin.toml: `{field}`: {message}")]
pub struct ManifestError {
    /// Dotted path of the field, e.g. `capabilities.http[1]` or `limits.fuel`.
    pub field: String,
    pub message: String,
}

impl ManifestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub id: String,
    pub version: semver::Version,
    pub kind: PluginKind,
    /// The WIT package version the component was built against, or a requirement on it;
    /// served by one of [`PluginKind::supported_wit_versions`].
    pub wit: WitVersion,
    pub description: String,
    pub capabilities: Capabilities,
    pub limits: ManifestLimits,
}

/// What a plugin asks to be allowed to do. The operator's grants must also allow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Hosts an adapter may send HTTP requests to.
    pub http: Vec<HostPattern>,
    /// Names of secrets an adapter may receive in `publication.secrets`.
    pub secrets: Vec<String>,
}

/// Limits the plugin asks for; the runtime caps each by the operator's maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManifestLimits {
    pub fuel: Option<u64>,
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    id: String,
    version: String,
    kind: String,
    wit: String,
    description: String,
    #[serde(default)]
    capabilities: Option<RawCapabilities>,
    #[serde(default)]
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    http: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
}

/// The plugin id rule: `^[a-z][a-z0-9-]{0,63}$`.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Guess which field a TOML/serde error is about, so that even a type error names its field.
fn field_of_toml_error(message: &str) -> String {
    if let Some(rest) = message.split("unknown field `").nth(1)
        && let Some(name) = rest.split('`').next()
    {
        return name.to_string();
    }
    if let Some(rest) = message.split("missing field `").nth(1)
        && let Some(name) = rest.split('`').next()
    {
        return name.to_string();
    }
    "plugin.toml".to_string()
}

impl Manifest {
    /// Parse and validate `plugin.toml` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::new(
                "plugin.toml",
                format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ManifestError::new("plugin.toml", "not UTF-8"))?;
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            ManifestError::new(field_of_toml_error(&message), message)
        })?;
        Self::validate(raw)
    }

    fn validate(raw: RawManifest) -> Result<Manifest, ManifestError> {
        if !valid_id(&raw.id) {
            return Err(ManifestError::new(
                "id",
                format!(
                    "{:?} is not a plugin id: 1-64 characters, a lowercase letter first, then lowercase letters, digits or `-`",
                    raw.id
                ),
            ));
        }
        let version = semver::Version::parse(&raw.version).map_err(|e| {
            ManifestError::new(
                "version",
                format!("{:?} is not a semantic version: {e}", raw.version),
            )
        })?;
        let kind: PluginKind = raw.kind.parse().map_err(|()| {
            ManifestError::new(
                "kind",
                format!(
                    "{:?} is not a plugin kind: expected \"billing\", \"policy\" or \"adapter\"",
                    raw.kind
                ),
            )
        })?;
        let wit = WitVersion::parse(&raw.wit).map_err(|e| ManifestError::new("wit", e))?;
        wit.resolve(kind)
            .map_err(|e| ManifestError::new("wit", e))?;
        if raw.description.trim().is_empty() {
            return Err(ManifestError::new("description", "must not be empty"));
        }
        if raw.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ManifestError::new(
                "description",
                format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }

        let mut capabilities = Capabilities::default();
        if let Some(caps) = raw.capabilities {
            if !kind.reaches_network() && !caps.http.is_empty() {
                return Err(ManifestError::new(
                    "capabilities.http",
                    format!(
                        "only adapter and provider plugins may make HTTP requests, this is a {kind} plugin"
                    ),
                ));
            }
            if !kind.reaches_network() && !caps.secrets.is_empty() {
                return Err(ManifestError::new(
                    "capabilities.secrets",
                    format!(
                        "only adapter and provider plugins may receive secrets, this is a {kind} plugin"
                    ),
                ));
            }
            for (i, p) in caps.http.iter().enumerate() {
                let pattern = HostPattern::parse(p).map_err(|message| {
                    ManifestError::new(format!("capabilities.http[{i}]"), message)
                })?;
                capabilities.http.push(pattern);
            }
            for (i, s) in caps.secrets.iter().enumerate() {
                if !valid_secret_name(s) {
                    return Err(ManifestError::new(
                        format!("capabilities.secrets[{i}]"),
                        format!(
                            "{s:?} is not a secret name: 1-64 letters, digits, `-`, `_` or `.`"
                        ),
                    ));
                }
                if capabilities.secrets.contains(s) {
                    return Err(ManifestError::new(
                        format!("capabilities.secrets[{i}]"),
                        format!("{s:?} is listed twice"),
                    ));
                }
                capabilities.secrets.push(s.clone());
            }
        }

        let mut limits = ManifestLimits::default();
        if let Some(l) = raw.limits {
            for (name, value) in [
                ("limits.fuel", l.fuel),
                ("limits.memory_mb", l.memory_mb),
                ("limits.timeout_ms", l.timeout_ms),
            ] {
                if value == Some(0) {
                    return Err(ManifestError::new(name, "must be at least 1"));
                }
            }
            if let Some(mb) = l.memory_mb
                && mb > 4096
            {
                return Err(ManifestError::new(
                    "limits.memory_mb",
                    "a 32-bit WebAssembly memory holds at most 4096 MiB",
                ));
            }
            limits = ManifestLimits {
                fuel: l.fuel,
                memory_mb: l.memory_mb,
                timeout_ms: l.timeout_ms,
            };
        }

        Ok(Manifest {
            id: raw.id,
            version,
            kind,
            wit,
            description: raw.description,
            capabilities,
            limits,
        })
    }
}

/// The host part of a [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `*`: any host.
    Any,
    /// `*.example.com`: any subdomain of `example.com` (not `example.com` itself).
    Subdomains(String),
    /// A host name (lowercase) or an IP literal, matched exactly.
    Exact(String),
}

/// `host[:port|:*]`: a destination an adapter may reach. A missing port or `:*` means any port;
/// IPv6 literals are written in brackets (`[::1]:8080`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    pub host: HostMatch,
    /// `None`: any port.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Parse a pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        if s.contains("://") || s.contains('/') {
            return Err(format!(
                "{s:?} must be `host[:port|:*]`, without a scheme or a path"
            ));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed `[` of an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{s:?}: expected `:port` after `]`"))?,
                ),
            };
            inside
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{s:?}: {inside:?} is not an IPv6 address"))?;
            (inside.to_ascii_lowercase(), port)
        } else {
            match s.split_once(':') {
                Some((h, p)) => {
                    if p.contains(':') {
                        return Err(format!("{s:?}: write IPv6 addresses in brackets"));
                    }
                    (h.to_ascii_lowercase(), Some(p))
                }
                None => (s.to_ascii_lowercase(), None),
            }
        };
        let port = match port {
            None | Some("*") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("{s:?}: {p:?} is not a port (1-65535 or `*`)")),
            },
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_hostname(domain) {
                return Err(format!("{s:?}: {domain:?} is not a host name"));
            }
            HostMatch::Subdomains(domain.to_string())
        } else if host.parse::<IpAddr>().is_ok() || valid_hostname(&host) {
            HostMatch::Exact(host)
        } else {
            return Err(format!(
                "{s:?}: {host:?} is not a host name, an IP address, `*` or `*.domain`"
            ));
        };
        Ok(HostPattern { host, port })
    }

    /// Whether `host` (lowercase, IPv6 without brackets) and `port` match this pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            HostMatch::Exact(h) => {
                // Compare IP literals by value so `::1` matches `0:0::1`.
                match (h.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => *h == host,
                }
            }
        }
    }

    /// Whether the pattern names one host exactly (no wildcard). Only such a pattern lets a
    /// request reach a private, loopback or link-local address.
    pub fn is_explicit(&self) -> bool {
        matches!(self.host, HostMatch::Exact(_))
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Any => f.write_str("*")?,
            HostMatch::Subdomains(d) => write!(f, "*.{d}")?,
            HostMatch::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostMatch::Exact(h) => f.write_str(h)?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HostPattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = HostPattern::parse("api.openai.com:443").unwrap();
        assert!(p.matches("API.openai.com", 443));
        assert!(!p.matches("api.openai.com", 80));
        assert!(p.is_explicit());
        let any = HostPattern::parse("*").unwrap();
        assert!(any.matches("10.0.0.1", 1) && !any.is_explicit());
        let star443 = HostPattern::parse("*:443").unwrap();
        assert!(star443.matches("x.y", 443) && !star443.matches("x.y", 80));
        let local = HostPattern::parse("127.0.0.1:*").unwrap();
        assert!(local.matches("127.0.0.1", 5555) && local.is_explicit());
        let v6 = HostPattern::parse("[::1]:8080").unwrap();
        assert!(v6.matches("0:0::1", 8080));
        let sub = HostPattern::parse("*.example.com").unwrap();
        assert!(sub.matches("a.example.com", 1) && !sub.matches("example.com", 1));
        assert!(!sub.matches("badexample.com", 1));
        for bad in ["", "http://x", "x:0", "x:99999", "a b", "::1", "x/y"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
