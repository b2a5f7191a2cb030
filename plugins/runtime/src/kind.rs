//! The kinds of plugin: which WIT world a component implements. Its own module so that the
//! manifest (which names a kind) and the WIT versions (which are per kind) both depend on it
//! instead of on each other.

use std::fmt;
use std::str::FromStr;

/// The kind of a plugin, i.e. which WIT world its component implements.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `liutong:billing` world: charges for trades and usage. Pure computation.
    Billing,
    /// `liutong:policy` world: usage-policy evaluation. Pure computation.
    Policy,
    /// `liutong:adapter` world: calls an upstream over granted outbound HTTP.
    Adapter,
    /// `liutong:provider` world: provisions and reclaims a compute provider's resources and
    /// lists its bills, over granted outbound HTTP.
    Provider,
}

impl PluginKind {
    /// The name used in `plugin.toml` (`kind = "billing"`).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Billing => "billing",
            PluginKind::Policy => "policy",
            PluginKind::Adapter => "adapter",
            PluginKind::Provider => "provider",
        }
    }

    /// Adapters and providers call out over granted HTTP with granted secrets, run without
    /// fuel (waiting on the network costs none) and see real clocks; the others compute only.
    pub fn reaches_network(self) -> bool {
        matches!(self, PluginKind::Adapter | PluginKind::Provider)
    }

    /// WIT package versions of this kind that this runtime has bindings for, oldest first. A
    /// manifest's `wit` must be served by one of them ([`WitVersion::resolve`]).
    pub fn supported_wit_versions(self) -> &'static [semver::Version] {
        match self {
            PluginKind::Billing => crate::bindings::billing::VERSIONS,
            PluginKind::Policy => crate::bindings::policy::VERSIONS,
            PluginKind::Adapter => crate::bindings::adapter::VERSIONS,
            PluginKind::Provider => crate::bindings::provider::VERSIONS,
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "billing" => Ok(PluginKind::Billing),
            "policy" => Ok(PluginKind::Policy),
            "adapter" => Ok(PluginKind::Adapter),
            "provider" => Ok(PluginKind::Provider),
            _ => Err(()),
        }
    }
}
