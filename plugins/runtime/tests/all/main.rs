//! Integration tests of the plugin runtime against the real guest plugins of plugins/guests.
//! One test binary (one link of wasmtime); the guests are built once per process.

mod adapters;
mod billing;
mod cache;
mod common;
mod faults;
mod package;
mod policy;
mod providers;
mod wit_versions;
