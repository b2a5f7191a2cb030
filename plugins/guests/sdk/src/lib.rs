//! The SDK of liutong plugins: bindings of the four WIT worlds (`wit/<kind>/v0.1.0`), export
//! macros, and the helpers and rule logic the shipped plugins share.
//!
//! A billing rule is written as
//!
//! ```ignore
//! use liutong_plugin_sdk::billing::{BillingError, Charge, Guest, Trade, Usage};
//!
//! struct MyRule;
//!
//! impl Guest for MyRule {
//!     fn charge_trade(trade: Trade) -> Result<Charge, BillingError> { todo!() }
//!     fn charge_usage(usage: Usage) -> Result<Charge, BillingError> { todo!() }
//! }
//!
//! liutong_plugin_sdk::export_billing!(MyRule);
//! ```
//!
//! and built as a `cdylib` for `wasm32-wasip2`, which yields a component directly. Policies use
//! [`policy`] and [`export_policy!`], adapters [`adapter`] and [`export_adapter!`], compute providers [`provider`] and
//! [`export_provider!`].
//!
//! Everything except the `http` module is plain Rust and is unit-tested natively.

// The generated export macros name this crate by its absolute path, from inside it too.
extern crate self as liutong_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod config;
pub mod money;
pub mod url;

#[cfg(feature = "billing")]
pub mod charge;
#[cfg(feature = "billing")]
pub mod rules;

#[cfg(feature = "policy")]
pub mod use_scenes;

#[cfg(feature = "adapter")]
pub mod openai;

#[cfg(all(feature = "http", target_arch = "wasm32"))]
pub mod http;

/// Billing rules: world `liutong:billing/billing@0.1.0`, exporting `rule`.
#[cfg(feature = "billing")]
pub mod billing {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../../wit/billing/v0.1.0",
            world: "billing",
            pub_export_macro: true,
            export_macro_name: "export_billing",
            default_bindings_module: "::liutong_plugin_sdk::billing::bindings",
            runtime_path: "::liutong_plugin_sdk::__wit_bindgen::rt",
            additional_derives: [PartialEq, Eq],
        });
    }

    pub use bindings::exports::liutong::billing::rule::Guest;
    pub use bindings::liutong::billing::types::*;
}

/// Usage policies: world `liutong:policy/policy@0.1.0`, exporting `evaluator`.
#[cfg(feature = "policy")]
pub mod policy {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../../wit/policy/v0.1.0",
            world: "policy",
            pub_export_macro: true,
            export_macro_name: "export_policy",
            default_bindings_module: "::liutong_plugin_sdk::policy::bindings",
            runtime_path: "::liutong_plugin_sdk::__wit_bindgen::rt",
            additional_derives: [PartialEq, Eq],
        });
    }

    pub use bindings::exports::liutong::policy::evaluator::Guest;
    pub use bindings::liutong::policy::types::*;
}

/// Invocation adapters: world `liutong:adapter/adapter@0.1.0`, exporting `invoke`.
#[cfg(feature = "adapter")]
pub mod adapter {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../../wit/adapter/v0.1.0",
            world: "adapter",
            pub_export_macro: true,
            export_macro_name: "export_adapter",
            default_bindings_module: "::liutong_plugin_sdk::adapter::bindings",
            runtime_path: "::liutong_plugin_sdk::__wit_bindgen::rt",
            additional_derives: [PartialEq, Eq],
        });
    }

    pub use bindings::exports::liutong::adapter::invoke::Guest;
    pub use bindings::liutong::adapter::types::*;

    impl Publication {
        /// The value of the secret `name`, when the host passed it.
        pub fn secret(&self, name: &str) -> Option<&str> {
            self.secrets
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.value.as_str())
        }
    }
}

/// Compute providers: world `liutong:provider/provider@0.1.0`, exporting `resources`.
#[cfg(feature = "provider")]
pub mod provider {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../../wit/provider/v0.1.0",
            world: "provider",
            pub_export_macro: true,
            export_macro_name: "export_provider",
            default_bindings_module: "::liutong_plugin_sdk::provider::bindings",
            runtime_path: "::liutong_plugin_sdk::__wit_bindgen::rt",
            additional_derives: [PartialEq, Eq],
        });
    }

    pub use bindings::exports::liutong::provider::resources::Guest;
    pub use bindings::liutong::provider::types::*;

    impl Account {
        /// The value of the secret `name`, when the host passed it.
        pub fn secret(&self, name: &str) -> Option<&str> {
            self.secrets
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.value.as_str())
        }
    }
}

/// Exports a type implementing [`provider::Guest`] as the component's `resources` interface.
#[cfg(feature = "provider")]
#[macro_export]
macro_rules! export_provider {
    ($ty:ident) => {
        $crate::provider::bindings::export_provider!($ty with_types_in $crate::provider::bindings);
    };
}

/// Exports a type implementing [`billing::Guest`] as the component's `rule` interface.
#[cfg(feature = "billing")]
#[macro_export]
macro_rules! export_billing {
    ($ty:ident) => {
        $crate::billing::bindings::export_billing!($ty with_types_in $crate::billing::bindings);
    };
}

/// Exports a type implementing [`policy::Guest`] as the component's `evaluator` interface.
#[cfg(feature = "policy")]
#[macro_export]
macro_rules! export_policy {
    ($ty:ident) => {
        $crate::policy::bindings::export_policy!($ty with_types_in $crate::policy::bindings);
    };
}

/// Exports a type implementing [`adapter::Guest`] as the component's `invoke` interface.
#[cfg(feature = "adapter")]
#[macro_export]
macro_rules! export_adapter {
    ($ty:ident) => {
        $crate::adapter::bindings::export_adapter!($ty with_types_in $crate::adapter::bindings);
    };
}
