//! Which WIT version a plugin declares (`wit` in `plugin.toml`), and which of the runtime's
//! bindings serve it.
//!
//! WIT packages follow semver, and the component model links by semver compatibility: an
//! import or export named `liutong:billing/rule@0.1.2` is found under `@0.1.0` (wasmtime looks
//! names up by their compatibility track, `@0.1` here). So a plugin built against any 0.1.x is
//! served by the newest 0.1.x bindings this runtime has; whether it uses something those
//! bindings lack is checked when it is linked, with an error naming the missing item.

use std::fmt;

use semver::{Version, VersionReq};

use crate::kind::PluginKind;

/// The manifest's `wit` field: either the version the plugin was built against (`"0.1.2"`) or a
/// requirement (`"^0.1"`, `">=0.1, <0.3"`). Displays as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitVersion {
    declared: String,
    spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    /// Served by bindings on the same compatibility track.
    Built(Version),
    /// Served by bindings whose version satisfies it.
    Requirement(VersionReq),
}

impl WitVersion {
    /// Parses a version (`0.1.0`) or, failing that, a semver requirement (`^0.1`).
    pub fn parse(text: &str) -> Result<WitVersion, String> {
        let declared = text.trim();
        let spec = match Version::parse(declared) {
            Ok(v) => Spec::Built(v),
            Err(version_error) => match VersionReq::parse(declared) {
                Ok(req) => Spec::Requirement(req),
                Err(_) => {
                    return Err(format!(
                        "{text:?} is neither a version (\"0.1.0\") nor a requirement (\"^0.1\"): {version_error}"
                    ));
                }
            },
        };
        Ok(WitVersion {
            declared: declared.to_string(),
            spec,
        })
    }

    /// The version as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.declared
    }

    /// Whether bindings of version `bindings` can call this plugin.
    pub fn is_served_by(&self, bindings: &Version) -> bool {
        match &self.spec {
            Spec::Built(v) => same_track(v, bindings),
            Spec::Requirement(req) => req.matches(bindings),
        }
    }

    /// The newest bindings version of `kind` that serves this plugin; the error names the
    /// versions this runtime supports.
    pub fn resolve(&self, kind: PluginKind) -> Result<&'static Version, String> {
        let supported = kind.supported_wit_versions();
        supported
            .iter()
            .filter(|v| self.is_served_by(v))
            .max()
            .ok_or_else(|| {
                let list: Vec<String> = supported
                    .iter()
                    .map(|v| format!("{v}, which serves any {}", track(v)))
                    .collect();
                format!(
                    "{kind} WIT version {} is not supported by this runtime (supported: {})",
                    self.declared,
                    list.join("; ")
                )
            })
    }
}

impl fmt::Display for WitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.declared)
    }
}

/// The versions compatible with `v`, for messages: `0.1.x`, `1.x`.
fn track(v: &Version) -> String {
    match (v.major, v.minor) {
        _ if !v.pre.is_empty() => v.to_string(),
        (0, 0) => format!("0.0.{}", v.patch),
        (0, minor) => format!("0.{minor}.x"),
        (major, _) => format!("{major}.x"),
    }
}

/// Semver compatibility as the component model applies it to names: the same major version,
/// and for 0.x the same minor (for 0.0.x the same patch). A pre-release matches only itself,
/// since its contract may still change.
fn same_track(a: &Version, b: &Version) -> bool {
    if !a.pre.is_empty() || !b.pre.is_empty() {
        return (a.major, a.minor, a.patch, &a.pre) == (b.major, b.minor, b.patch, &b.pre);
    }
    match (a.major, a.minor) {
        (0, 0) => b.major == 0 && b.minor == 0 && a.patch == b.patch,
        (0, minor) => b.major == 0 && b.minor == minor,
        (major, _) => b.major == major,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(declared: &str, bindings: &str) -> bool {
        WitVersion::parse(declared)
            .unwrap()
            .is_served_by(&Version::parse(bindings).unwrap())
    }

    #[test]
    fn versions_match_by_compatibility_track() {
        assert!(served("0.1.0", "0.1.0"));
        assert!(served("0.1.2", "0.1.0"));
        assert!(served("0.1.0", "0.1.7"));
        assert!(!served("0.2.0", "0.1.0"));
        assert!(!served("0.1.0", "0.2.0"));
        assert!(!served("1.0.0", "0.1.0"));
        assert!(served("1.4.0", "1.0.0"));
        assert!(!served("2.0.0", "1.9.0"));
        assert!(served("0.0.3", "0.0.3") && !served("0.0.3", "0.0.4"));
        assert!(!served("0.1.0-rc.1", "0.1.0"));
        assert!(served("0.1.0-rc.1", "0.1.0-rc.1"));
        assert!(served("0.1.0+build.5", "0.1.0"));
    }

    #[test]
    fn requirements_match_as_semver_requirements() {
        assert!(served("^0.1", "0.1.0"));
        assert!(served("0.1.*", "0.1.0"));
        assert!(served("~0.1.0", "0.1.0"));
        assert!(served(">=0.1, <0.3", "0.1.0"));
        assert!(!served("^0.2", "0.1.0"));
        assert!(!served("^0.1.3", "0.1.0"));
        assert!(!served("=0.1.1", "0.1.0"));
    }

    #[test]
    fn resolves_to_the_bindings_or_names_the_supported_versions() {
        for declared in ["0.1.0", "0.1.2", " ^0.1 ", "0.1"] {
            let wit = WitVersion::parse(declared).unwrap();
            assert_eq!(
                wit.resolve(PluginKind::Billing),
                Ok(&Version::new(0, 1, 0)),
                "{declared}"
            );
        }
        assert_eq!(WitVersion::parse(" ^0.1 ").unwrap().to_string(), "^0.1");
        let e = WitVersion::parse("9.0.0")
            .unwrap()
            .resolve(PluginKind::Policy)
            .unwrap_err();
        assert_eq!(
            e,
            "policy WIT version 9.0.0 is not supported by this runtime \
             (supported: 0.1.0, which serves any 0.1.x)"
        );
        assert!(
            WitVersion::parse("0.2.0")
                .unwrap()
                .resolve(PluginKind::Adapter)
                .is_err()
        );
        assert!(WitVersion::parse("latest").is_err());
        assert!(WitVersion::parse("").is_err());
    }
}
