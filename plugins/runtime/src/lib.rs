//! Sandboxed WebAssembly plugin runtime of the liutong host.
//!
//! Plugins are WebAssembly components of three kinds — billing rules, usage policies and
//! invocation adapters — each implementing a versioned WIT world (`wit/<kind>/v<version>/`).
//! They arrive as signed packages ([`package`]), are verified against trusted publisher keys,
//! compiled once (cached on disk), and called with a fresh, limited instance per call
//! ([`Runtime`], [`LoadedPlugin`]).
//!
//! Calls are `async` and must run inside a tokio runtime (multi-threaded recommended);
//! [`Runtime::load`] is CPU-bound and should be called from `spawn_blocking` in async code.
//!
//! Plugin authors test their plugins with [`testing::Harness`].

pub mod bindings;
mod http;
pub mod manifest;
pub mod package;
mod runtime;
mod stdio;
pub mod testing;

pub use http::{HttpRefusal, is_private};
pub use manifest::{
    Capabilities, HostMatch, HostPattern, Manifest, ManifestError, ManifestLimits, PluginKind,
};
pub use package::{
    KeyError, Package, PackageError, PackageSignature, PublicKeyInfo, PublisherKey, SigningKey,
    TamperedPart, TrustStore, UnsignedPackage, VerifiedPackage,
};
pub use runtime::{
    Call, EffectiveLimits, Grants, LoadError, LoadReport, LoadedPlugin, PluginError, PluginFailure,
    PoolingMode, Runtime, RuntimeConfig, RuntimeError, RuntimeStats,
};

/// Types of the billing WIT (`liutong:billing/types`), as plain Rust values.
pub mod billing {
    pub use crate::bindings::billing::v0_1_0::liutong::billing::types::*;
}

/// Types of the policy WIT (`liutong:policy/types`).
pub mod policy {
    pub use crate::bindings::policy::v0_1_0::liutong::policy::types::*;
}

/// Types of the adapter WIT (`liutong:adapter/types`).
pub mod adapter {
    pub use crate::bindings::adapter::v0_1_0::liutong::adapter::types::*;
}
