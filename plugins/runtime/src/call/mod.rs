//! Calls, one module per plugin kind: each holds the kind's pre-linked component per WIT
//! version, runs its exports in a [`crate::session::Session`], and checks the size of what
//! they return before the host sees it.

pub(crate) mod adapter;
pub(crate) mod billing;
pub(crate) mod policy;
pub(crate) mod provider;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};

use crate::failure::{PluginError, PluginFailure};
use crate::plugin::LoadedPlugin;
use crate::session::CallState;

/// Finds the function `name` of the exported `interface` (semver-compatible names match, as
/// `liutong:billing/rule@0.1.1` for `@0.1.0`) and checks that its type is `Params -> Results`.
/// Done once at load, so that a component whose exports have the right names but other types
/// is refused there, and a call only fetches the function by index ([`typed_func`]). This is
/// how wasmtime's bindgen checks world-level function exports before instantiation.
pub(crate) fn export_func<Params, Results>(
    pre: &InstancePre<CallState>,
    interface: &str,
    name: &str,
) -> wasmtime::Result<ComponentExportIndex>
where
    Params: ComponentNamedList + Lower,
    Results: ComponentNamedList + Lift,
{
    let component = pre.component();
    let parent = component
        .get_export_index(None, interface)
        .ok_or_else(|| wasmtime::format_err!("no exported instance named `{interface}`"))?;
    let (item, index) = component
        .get_export(Some(&parent), name)
        .ok_or_else(|| wasmtime::format_err!("`{interface}` does not export `{name}`"))?;
    let ComponentItem::ComponentFunc(func) = item else {
        wasmtime::bail!("`{interface}` exports `{name}`, but not as a function");
    };
    func.typecheck::<Params, Results>(&pre.instance_type())
        .map_err(|e| wasmtime::format_err!("`{interface}.{name}` has the wrong type: {e:#}"))?;
    Ok(index)
}

/// The function at `index` of `instance`, without checking its type again.
///
/// # Safety
///
/// `index` must come from [`export_func`] with the same `Params` and `Results`, on the
/// component `instance` was instantiated from.
pub(crate) unsafe fn typed_func<Params, Results>(
    store: &mut wasmtime::Store<CallState>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<TypedFunc<Params, Results>>
where
    Params: ComponentNamedList + Lower,
    Results: ComponentNamedList + Lift,
{
    let func = instance
        .get_func(store, index)
        .ok_or_else(|| wasmtime::format_err!("an export checked at load is missing"))?;
    // SAFETY: the caller guarantees that the export's type was checked as this signature.
    Ok(unsafe { TypedFunc::new_unchecked(func) })
}

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
