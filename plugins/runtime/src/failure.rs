//! What can go wrong — starting the runtime, loading a plugin, calling it — and how a wasmtime
//! error of a call is told apart: fuel, time, memory, a refused request, or a plain trap.

use std::time::Duration;

use wasmtime::Trap;

use crate::http::HttpRefusal;
use crate::manifest::PluginKind;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(pub(crate) String);

/// A plugin that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("plugin.toml is invalid: `{field}`: {message}")]
    InvalidManifest { field: String, message: String },
    #[error("plugin.wasm is not a WebAssembly component; build it for wasm32-wasip2")]
    NotAComponent,
    #[error("plugin {plugin}: the component does not compile: {message}")]
    Compile { plugin: String, message: String },
    #[error(
        "plugin {plugin}: the component does not implement the {kind} world {world}: {message}"
    )]
    WrongWorld {
        plugin: String,
        kind: PluginKind,
        world: String,
        message: String,
    },
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    #[error("timed out (limit {} ms)", limit.as_millis())]
    Timeout { limit: Duration },
    #[error("ran out of fuel (limit {limit})")]
    OutOfFuel { limit: u64 },
    #[error("exceeded its memory limit ({limit} bytes)")]
    MemoryLimit { limit: usize },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("returned a malformed result: {message}")]
    MalformedResult { message: String },
    #[error("returned a result larger than allowed ({limit})")]
    OutputTooLarge { limit: String },
    #[error("was refused an HTTP request to {host}: {hint}")]
    HttpRefused { host: String, hint: String },
    #[error("could not be instantiated: {message}")]
    Instantiate { message: String },
}

/// A failed call: which plugin, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin}@{version}: {kind}")]
pub struct PluginError {
    pub plugin: String,
    pub version: String,
    pub kind: PluginFailure,
}

/// Where in a call a wasmtime error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Instantiate,
    Call,
}

/// What the call's store recorded, to explain a wasmtime error.
pub(crate) struct Evidence {
    pub fuel_limit: Option<u64>,
    pub timeout: Duration,
    pub memory_limit: usize,
    /// A memory grow was refused by the limiter: whatever trap followed is the limit's doing.
    pub memory_refused: bool,
    /// The first HTTP request the guard refused.
    pub refusal: Option<HttpRefusal>,
    /// What the guest wrote to stderr (its panic message, typically).
    pub stderr: String,
}

/// The failure a wasmtime error of `phase` stands for. The order matters: a guest that hits
/// its memory limit or is refused a request usually traps afterwards, and the cause is what
/// the operator needs to read.
pub(crate) fn classify(phase: Phase, err: &wasmtime::Error, evidence: Evidence) -> PluginFailure {
    match err.downcast_ref::<Trap>().copied() {
        Some(Trap::OutOfFuel) => PluginFailure::OutOfFuel {
            limit: evidence.fuel_limit.unwrap_or(0),
        },
        Some(Trap::Interrupt) => PluginFailure::Timeout {
            limit: evidence.timeout,
        },
        _ if evidence.memory_refused => PluginFailure::MemoryLimit {
            limit: evidence.memory_limit,
        },
        _ if evidence.refusal.is_some() => {
            let r = evidence.refusal.unwrap_or_else(|| HttpRefusal {
                host: String::new(),
                hint: String::new(),
            });
            PluginFailure::HttpRefused {
                host: r.host,
                hint: r.hint,
            }
        }
        Some(t) => {
            let mut message = t.to_string();
            let stderr = evidence.stderr.trim();
            if !stderr.is_empty() {
                message.push_str(&format!(" (guest stderr: {})", truncate(stderr, 500)));
            }
            PluginFailure::Trap { message }
        }
        None => match phase {
            Phase::Instantiate => PluginFailure::Instantiate {
                message: short_error(err),
            },
            Phase::Call => PluginFailure::Trap {
                message: short_error(err),
            },
        },
    }
}

/// The first line of an error chain, without backtraces.
pub(crate) fn short_error(e: &wasmtime::Error) -> String {
    let mut s = format!("{e:#}");
    if let Some(i) = s.find("\nStack backtrace") {
        s.truncate(i);
    }
    let s = s.trim().replace('\n', " ");
    truncate(&s, 1000)
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
