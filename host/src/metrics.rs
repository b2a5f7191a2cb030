//! Prometheus metrics (`GET /metrics`, text exposition format). Each app owns its registry, so
//! several apps in one process (tests) do not share counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub plugin: String,
    pub version: String,
    pub kind: String,
    pub operation: String,
    /// `ok`, `rejected` or `failed`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub kind: String,
    pub operation: String,
}

type HistogramFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub plugin_calls: Family<CallLabels, Counter>,
    pub plugin_call_seconds: HistogramFamily,
    pub plugin_fuel: HistogramFamily,
}

fn latency_buckets() -> Histogram {
    // 10 µs … ~2.6 s.
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

fn fuel_buckets() -> Histogram {
    // 1 k … ~262 M instructions.
    Histogram::new(exponential_buckets(1_000.0, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("liutong");
        let plugin_calls = Family::<CallLabels, Counter>::default();
        let plugin_call_seconds: HistogramFamily = Family::new_with_constructor(latency_buckets);
        let plugin_fuel: HistogramFamily = Family::new_with_constructor(fuel_buckets);
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin, version, kind, operation and outcome",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Wall time of plugin calls (instantiation and call)",
            plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_call_fuel",
            "Fuel (wasm instructions) used by billing and policy plugin calls",
            plugin_fuel.clone(),
        );
        Metrics {
            registry,
            plugin_calls,
            plugin_call_seconds,
            plugin_fuel,
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
