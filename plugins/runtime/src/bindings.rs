//! Host bindings of the WIT worlds, one module per released WIT folder
//! (`bindings::<kind>::v<major>_<minor>_<patch>`), and `bindings::<kind>::latest`, an alias of the
//! newest one. A later WIT version is added beside the existing ones (a module, an entry in
//! `VERSIONS`, the `latest` alias moved), and the manifest's `wit` field selects which one a
//! plugin is called through ([`crate::wit::WitVersion::resolve`]).

use semver::Version;

/// `wit/billing/*`.
pub mod billing {
    /// WIT versions with bindings here, oldest first.
    pub const VERSIONS: &[semver::Version] = &[semver::Version::new(0, 1, 0)];

    /// The newest bindings: what the crate's `billing` types are.
    pub use v0_1_0 as latest;

    /// `liutong:billing@0.1.0`.
    pub mod v0_1_0 {
        wasmtime::component::bindgen!({
            path: "../../wit/billing/v0.1.0",
            world: "billing",
            exports: { default: async },
            additional_derives: [PartialEq, Eq, serde::Serialize, serde::Deserialize],
        });
    }
}

/// `wit/policy/*`.
pub mod policy {
    /// WIT versions with bindings here, oldest first.
    pub const VERSIONS: &[semver::Version] = &[semver::Version::new(0, 1, 0)];

    /// The newest bindings: what the crate's `policy` types are.
    pub use v0_1_0 as latest;

    /// `liutong:policy@0.1.0`.
    pub mod v0_1_0 {
        wasmtime::component::bindgen!({
            path: "../../wit/policy/v0.1.0",
            world: "policy",
            exports: { default: async },
            additional_derives: [PartialEq, Eq, serde::Serialize, serde::Deserialize],
        });
    }
}

/// `wit/adapter/*`.
pub mod adapter {
    /// WIT versions with bindings here, oldest first.
    pub const VERSIONS: &[semver::Version] = &[semver::Version::new(0, 1, 0)];

    /// The newest bindings: what the crate's `adapter` types are.
    pub use v0_1_0 as latest;

    /// `liutong:adapter@0.1.0`.
    pub mod v0_1_0 {
        wasmtime::component::bindgen!({
            path: "../../wit/adapter/v0.1.0",
            world: "adapter",
            exports: { default: async },
            additional_derives: [PartialEq, Eq, serde::Serialize, serde::Deserialize],
        });
    }
}

/// `wit/provider/*`.
pub mod provider {
    /// WIT versions with bindings here, oldest first.
    pub const VERSIONS: &[semver::Version] = &[semver::Version::new(0, 1, 0)];

    /// The newest bindings: what the crate's `provider` types are.
    pub use v0_1_0 as latest;

    /// `liutong:provider@0.1.0`.
    pub mod v0_1_0 {
        wasmtime::component::bindgen!({
            path: "../../wit/provider/v0.1.0",
            world: "provider",
            exports: { default: async },
            additional_derives: [PartialEq, Eq, serde::Serialize, serde::Deserialize],
        });
    }
}

/// `major.minor.patch` of a bindings version, for matching it in `match` arms.
pub(crate) fn triple(v: &Version) -> (u64, u64, u64) {
    (v.major, v.minor, v.patch)
}
