//! Sandboxed WebAssembly plugin runtime of the liutong host.
//!
//! Plugins are WebAssembly components of four kinds — billing rules, usage policies,
//! invocation adapters and compute providers — each implementing a versioned WIT world (`wit/<kind>/v<version>/`).
//! They arrive as signed packages ([`package`]), are verified against trusted publisher keys,
//! compiled once (cached on disk), and called with a fresh, limited instance per call
//! ([`Runtime`], [`LoadedPlugin`]).
//!
//! Calls are `async` and must run inside a tokio runtime (multi-threaded recommended);
//! [`Runtime::load`] is CPU-bound and should be called from `spawn_blocking` in async code.
//!
//! Plugin authors test their plugins with `testing::Harness` (cargo feature `testing`).
//!
//! Modules, each with one reason to change: `config` (operator settings, effective limits),
//! `engine` (the wasmtime engine, pooling, epoch ticker), `cache` (compiled components on
//! disk), `linker` (what each kind may import), `session` (the store of one call), `failure`
//! (errors and their classification), `prelinked::{billing, policy, adapter, provider}` (each
//! kind's component pre-linked per WIT version, its exports type-checked at load), `plugin`
//! (a loaded plugin and its load report), `call::{billing, policy, adapter, provider}` (the
//! calls of each kind and their result checks), [`bindings`] and `wit` (which bindings serve a
//! manifest's WIT version).

pub mod bindings;
mod cache;
mod call;
mod config;
mod engine;
mod failure;
mod grants;
mod http;
mod kind;
mod linker;
pub mod manifest;
pub mod package;
mod plugin;
mod prelinked;
mod runtime;
mod session;
mod stdio;
#[cfg(feature = "testing")]
pub mod testing;
mod wit;

pub use cache::RuntimeStats;
pub use config::{EffectiveLimits, PoolingMode, RuntimeConfig};
pub use failure::{LoadError, PluginError, PluginFailure, RuntimeError};
pub use grants::Grants;
pub use http::{HttpRefusal, is_private};
pub use manifest::{
    Capabilities, HostMatch, HostPattern, Manifest, ManifestError, ManifestLimits, PluginKind,
};
pub use package::{
    KeyError, Package, PackageError, PackageSignature, PublicKeyInfo, PublisherKey, SigningKey,
    TamperedPart, TrustStore, UnsignedPackage, VerifiedPackage,
};
pub use plugin::{LoadReport, LoadedPlugin};
pub use runtime::Runtime;
pub use session::Call;
pub use wit::WitVersion;

/// Types of the billing WIT (`liutong:billing/types`) of the newest bindings, as plain Rust
/// values.
pub mod billing {
    pub use crate::bindings::billing::latest::liutong::billing::types::*;
}

/// Types of the policy WIT (`liutong:policy/types`) of the newest bindings.
pub mod policy {
    pub use crate::bindings::policy::latest::liutong::policy::types::*;
}

/// Types of the adapter WIT (`liutong:adapter/types`) of the newest bindings.
pub mod adapter {
    pub use crate::bindings::adapter::latest::liutong::adapter::types::*;
}

/// Types of the provider WIT (`liutong:provider/types`) of the newest bindings.
pub mod provider {
    pub use crate::bindings::provider::latest::liutong::provider::types::*;
}
