//! What loading leaves for the calls, one module per plugin kind: the component pre-linked
//! through the bindings of its WIT version, with the indexes of its exports, type-checked
//! once at load. The calls that run them are in [`crate::call`].

pub(crate) mod adapter;
pub(crate) mod billing;
pub(crate) mod policy;
pub(crate) mod provider;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};

use crate::failure::Phase;
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
unsafe fn typed_func<Params, Results>(
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

/// Instantiates `pre` in `store` and calls the export at `index` with `params`: one call of a
/// fresh instance, each error tagged with the phase it happened in.
///
/// # Safety
///
/// As [`typed_func`]: `index` must come from [`export_func`] with the same `Params` and
/// `Results`, on the component of `pre`.
pub(crate) async unsafe fn call_export<Params, Results>(
    store: &mut wasmtime::Store<CallState>,
    pre: &InstancePre<CallState>,
    index: &ComponentExportIndex,
    params: Params,
) -> Result<Results, (Phase, wasmtime::Error)>
where
    Params: ComponentNamedList + Lower + Send + Sync,
    Results: ComponentNamedList + Lift + Send + Sync + 'static,
{
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| (Phase::Instantiate, e))?;
    // SAFETY: the caller guarantees what `typed_func` needs.
    let func = unsafe { typed_func::<Params, Results>(store, &instance, index) }
        .map_err(|e| (Phase::Instantiate, e))?;
    func.call_async(store, params)
        .await
        .map_err(|e| (Phase::Call, e))
}
