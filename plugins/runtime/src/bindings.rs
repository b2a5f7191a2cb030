//! Host bindings of the WIT worlds, one module per released WIT folder
//! (`bindings::<kind>::v<major>_<minor>_<patch>`), so a later WIT version is added beside the
//! existing ones and the manifest's `wit` field selects which one a plugin is called through.

/// `wit/billing/*`.
pub mod billing {
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
