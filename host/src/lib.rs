//! liutong: the data-resource marketplace host of an AI compute network (T/AI 123.12).
//!
//! Layers: `api` (HTTP) → `domain` (rules, no HTTP or SQL) → `store` (SQL).

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod metrics;
pub mod plugins;
pub mod schema;
pub mod storage;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use config::Config;
