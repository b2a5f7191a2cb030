//! liutong: the data-resource marketplace host of an AI compute network (T/AI 123.12).
//!
//! Layers, each importing only from the layers below it (docs/architecture.md):
//!
//! ```text
//! main → cli → app                 wiring: configuration, App::build, serve
//!              api                 HTTP only: extract, call one service method, envelope
//!              services            one per capability; they orchestrate
//!   domain  store  files  crypto   rules and types (pure) · SQL · data files · signatures
//! ```
//!
//! `store` persists domain types (it imports `domain`, never a service); `domain` imports
//! nothing of the crate; `files`, `crypto`, `config`, `metrics` and `schema` are leaves.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod files;
pub mod metrics;
pub mod schema;
pub mod services;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use config::Config;
