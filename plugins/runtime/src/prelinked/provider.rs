//! The provider kind's pre-linked component: the `resources` functions, type-checked at
//! load.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::bindings::provider::v0_1_0::liutong::provider::types as v0_1_0;
use crate::bindings::triple;
use crate::prelinked::export_func;
use crate::session::CallState;

/// A provider component pre-linked through the bindings of its WIT version.
pub(crate) enum ProviderPre {
    V0_1_0(ProviderV0_1_0),
}

/// `liutong:provider@0.1.0`: the component and its `resources` functions, type-checked at load.
pub(crate) struct ProviderV0_1_0 {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) provision: ComponentExportIndex,
    pub(crate) describe: ComponentExportIndex,
    pub(crate) operate: ComponentExportIndex,
    pub(crate) reclaim: ComponentExportIndex,
    pub(crate) list_bills: ComponentExportIndex,
}

type ResourceResult = (Result<v0_1_0::Resource, v0_1_0::ProviderError>,);
type UnitResult = (Result<(), v0_1_0::ProviderError>,);
type BillsResult = (Result<Vec<v0_1_0::BillLine>, v0_1_0::ProviderError>,);
pub(crate) type ProvisionParams<'a> = (&'a v0_1_0::Account, &'a v0_1_0::ProvisionRequest);
pub(crate) type IdParams<'a> = (&'a v0_1_0::Account, &'a str);
pub(crate) type OperateParams<'a> = (&'a v0_1_0::Account, &'a str, &'a v0_1_0::Action);
pub(crate) type BillsParams<'a> = (&'a v0_1_0::Account, &'a v0_1_0::Period);

impl ProviderPre {
    /// Type-checks the component's exports against the bindings of `version`.
    pub fn new(version: &Version, pre: InstancePre<CallState>) -> wasmtime::Result<ProviderPre> {
        match triple(version) {
            (0, 1, 0) => {
                const RESOURCES: &str = "liutong:provider/resources@0.1.0";
                Ok(ProviderPre::V0_1_0(ProviderV0_1_0 {
                    provision: export_func::<ProvisionParams<'_>, ResourceResult>(
                        &pre,
                        RESOURCES,
                        "provision",
                    )?,
                    describe: export_func::<IdParams<'_>, ResourceResult>(
                        &pre, RESOURCES, "describe",
                    )?,
                    operate: export_func::<OperateParams<'_>, ResourceResult>(
                        &pre, RESOURCES, "operate",
                    )?,
                    reclaim: export_func::<IdParams<'_>, UnitResult>(&pre, RESOURCES, "reclaim")?,
                    list_bills: export_func::<BillsParams<'_>, BillsResult>(
                        &pre,
                        RESOURCES,
                        "list-bills",
                    )?,
                    pre,
                }))
            }
            _ => wasmtime::bail!("this runtime has no bindings of provider WIT {version}"),
        }
    }
}
