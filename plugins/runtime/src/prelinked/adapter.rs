//! The adapter kind's pre-linked component: `invoke.invoke`, type-checked at load.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::bindings::adapter::v0_1_0::liutong::adapter::types as v0_1_0;
use crate::bindings::triple;
use crate::prelinked::export_func;
use crate::session::CallState;

/// An adapter component pre-linked through the bindings of its WIT version.
pub(crate) enum AdapterPre {
    V0_1_0(AdapterV0_1_0),
}

/// `liutong:adapter@0.1.0`: the component and its `invoke` function, type-checked at load.
pub(crate) struct AdapterV0_1_0 {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) invoke: ComponentExportIndex,
}

pub(crate) type InvokeParams<'a> = (&'a v0_1_0::Publication, &'a v0_1_0::Invocation);
pub(crate) type InvokeResult = (Result<v0_1_0::Outcome, v0_1_0::AdapterError>,);

impl AdapterPre {
    /// Type-checks the component's exports against the bindings of `version`.
    pub fn new(version: &Version, pre: InstancePre<CallState>) -> wasmtime::Result<AdapterPre> {
        match triple(version) {
            (0, 1, 0) => Ok(AdapterPre::V0_1_0(AdapterV0_1_0 {
                invoke: export_func::<InvokeParams<'_>, InvokeResult>(
                    &pre,
                    "liutong:adapter/invoke@0.1.0",
                    "invoke",
                )?,
                pre,
            })),
            _ => wasmtime::bail!("this runtime has no bindings of adapter WIT {version}"),
        }
    }
}
