//! A loaded plugin: its manifest, limits, pre-linked component ([`crate::prelinked`]), how
//! its load went, and what each of its calls starts from. The calls themselves are in
//! [`crate::call`], one module per kind.

use std::sync::Arc;

use crate::config::EffectiveLimits;
use crate::failure::{PluginError, PluginFailure};
use crate::manifest::{Manifest, PluginKind};
use crate::prelinked::{
    adapter::AdapterPre, billing::BillingPre, policy::PolicyPre, provider::ProviderPre,
};
use crate::session::SessionConfig;

/// The pre-linked component, through the bindings of the WIT version its manifest resolved to.
pub(crate) enum Pre {
    Billing(BillingPre),
    Policy(PolicyPre),
    Adapter(AdapterPre),
    Provider(ProviderPre),
}

/// Caps on what a result may hold, from the runtime's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultLimits {
    pub max_items: usize,
    pub max_bill_lines: usize,
    pub max_string_bytes: usize,
    pub max_output_bytes: usize,
}

/// How a load went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    /// The compiled component came from the on-disk cache.
    pub cache_hit: bool,
    /// Time spent compiling (0 on a cache hit).
    pub compile_ms: u64,
    /// Time of the whole load (cache read or compile, linking, type checks).
    pub load_ms: u64,
}

pub(crate) struct PluginInner {
    pub manifest: Manifest,
    pub version: String,
    pub component_sha256: String,
    pub pre: Pre,
    pub session: SessionConfig,
    pub results: ResultLimits,
    /// Granted secrets the manifest asks for (adapters and providers only).
    pub secrets: Vec<(String, String)>,
    pub report: LoadReport,
}

/// A loaded plugin, ready to call. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub(crate) inner: Arc<PluginInner>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.inner.manifest.id)
            .field("version", &self.inner.version)
            .field("kind", &self.inner.manifest.kind)
            .field("limits", &self.inner.session.limits)
            .finish()
    }
}

impl LoadedPlugin {
    pub fn id(&self) -> &str {
        &self.inner.manifest.id
    }
    pub fn version(&self) -> &semver::Version {
        &self.inner.manifest.version
    }
    pub fn kind(&self) -> PluginKind {
        self.inner.manifest.kind
    }
    pub fn component_sha256(&self) -> &str {
        &self.inner.component_sha256
    }
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }
    pub fn limits(&self) -> EffectiveLimits {
        self.inner.session.limits
    }
    pub fn load_report(&self) -> LoadReport {
        self.inner.report
    }

    pub(crate) fn error(&self, kind: PluginFailure) -> PluginError {
        PluginError {
            plugin: self.inner.manifest.id.clone(),
            version: self.inner.version.clone(),
            kind,
        }
    }

    /// A failed call, logged (the caller records it in its audit).
    pub(crate) fn failed(&self, kind: PluginFailure) -> PluginError {
        tracing::debug!(plugin = %self.inner.manifest.id, failure = %kind, "plugin call failed");
        self.error(kind)
    }

    pub(crate) fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        self.error(PluginFailure::Instantiate {
            message: format!(
                "this is a {} plugin, not a {wanted} plugin",
                self.inner.manifest.kind
            ),
        })
    }
}
