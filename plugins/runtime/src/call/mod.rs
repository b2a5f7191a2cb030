//! Calls, one module per plugin kind: each runs the exports of the kind's pre-linked
//! component ([`crate::prelinked`]) in a [`crate::session::Session`], and checks the size of
//! what they return before the host sees it.

pub(crate) mod adapter;
pub(crate) mod billing;
pub(crate) mod policy;
pub(crate) mod provider;

use crate::failure::{PluginError, PluginFailure};
use crate::plugin::LoadedPlugin;

impl LoadedPlugin {
    fn too_large(&self, what: String) -> PluginError {
        self.error(PluginFailure::OutputTooLarge { limit: what })
    }

    fn check_string(&self, field: &str, s: &str) -> Result<(), PluginError> {
        let max = self.inner.results.max_string_bytes;
        if s.len() > max {
            return Err(self.too_large(format!("{field}: {} bytes > {max} bytes", s.len())));
        }
        Ok(())
    }

    fn check_items(&self, field: &str, n: usize) -> Result<(), PluginError> {
        let max = self.inner.results.max_items;
        if n > max {
            return Err(self.too_large(format!("{field}: {n} items > {max} items")));
        }
        Ok(())
    }
}

/// Hosts spawn calls on tokio's multi-threaded runtime: their futures must stay `Send`.
#[cfg(test)]
#[allow(dead_code)]
fn calls_are_send(
    plugin: LoadedPlugin,
    trade: crate::billing::Trade,
    usage: crate::billing::Usage,
    policy: crate::policy::UsagePolicy,
    request: crate::policy::AccessRequest,
    publication: crate::adapter::Publication,
    invocation: crate::adapter::Invocation,
) {
    fn send<T: Send>(_: T) {}
    send(plugin.charge_trade(trade));
    send(plugin.charge_usage(usage));
    send(plugin.evaluate(policy, request));
    send(plugin.invoke(publication, invocation));
}
