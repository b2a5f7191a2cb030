//! Calls, one module per plugin kind: each runs the exports of the kind's pre-linked
//! component ([`crate::prelinked`]) in a [`crate::session::Session`], and checks the size of
//! what they return before the host sees it.

pub(crate) mod adapter;
pub(crate) mod billing;
pub(crate) mod policy;
pub(crate) mod provider;

use crate::failure::{PluginError, PluginFailure};
use crate::plugin::LoadedPlugin;
use crate::session::{Call, Outcome, Session};

impl LoadedPlugin {
    /// The secrets a networked call (adapter, provider) gets: of those offered, only the ones
    /// the manifest's `capabilities.secrets` names, and the operator's granted values over the
    /// caller's. `name` reads a secret's name, `secret` makes one (each kind has its own type).
    fn pass_secrets<S>(
        &self,
        offered: Vec<S>,
        name: fn(&S) -> &str,
        secret: fn(String, String) -> S,
    ) -> Vec<S> {
        let allowed = &self.inner.manifest.capabilities.secrets;
        let granted = &self.inner.secrets;
        let mut secrets: Vec<S> = offered
            .into_iter()
            .filter(|s| allowed.iter().any(|a| a == name(s)))
            .filter(|s| !granted.iter().any(|(n, _)| n == name(s)))
            .collect();
        secrets.extend(
            granted
                .iter()
                .map(|(n, value)| secret(n.clone(), value.clone())),
        );
        secrets
    }

    /// Finishes a networked call: a refused request the guest turned into its own error is
    /// still reported as the refusal, which is what the operator can act on.
    fn finish_networked<T, E>(
        &self,
        session: Session,
        outcome: Outcome<Result<T, E>>,
    ) -> Result<Call<Result<T, E>>, PluginError> {
        let refusal = session.refusal();
        let call = session.finish(outcome).map_err(|f| self.failed(f))?;
        if call.value.is_err()
            && let Some(r) = refusal
        {
            return Err(self.error(PluginFailure::HttpRefused {
                host: r.host,
                hint: r.hint,
            }));
        }
        Ok(call)
    }

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
