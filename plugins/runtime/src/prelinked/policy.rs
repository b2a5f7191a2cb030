//! The policy kind's pre-linked component: `evaluator.evaluate`, type-checked at load.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::bindings::policy::v0_1_0::liutong::policy::types as v0_1_0;
use crate::bindings::triple;
use crate::prelinked::export_func;
use crate::session::CallState;

/// A policy component pre-linked through the bindings of its WIT version.
pub(crate) enum PolicyPre {
    V0_1_0(PolicyV0_1_0),
}

/// `liutong:policy@0.1.0`: the component and its `evaluator` function, type-checked at load.
pub(crate) struct PolicyV0_1_0 {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) evaluate: ComponentExportIndex,
}

pub(crate) type EvaluateParams<'a> = (&'a v0_1_0::UsagePolicy, &'a v0_1_0::AccessRequest);
pub(crate) type EvaluateResult = (Result<v0_1_0::Verdict, v0_1_0::PolicyError>,);

impl PolicyPre {
    /// Type-checks the component's exports against the bindings of `version`.
    pub fn new(version: &Version, pre: InstancePre<CallState>) -> wasmtime::Result<PolicyPre> {
        match triple(version) {
            (0, 1, 0) => Ok(PolicyPre::V0_1_0(PolicyV0_1_0 {
                evaluate: export_func::<EvaluateParams<'_>, EvaluateResult>(
                    &pre,
                    "liutong:policy/evaluator@0.1.0",
                    "evaluate",
                )?,
                pre,
            })),
            _ => wasmtime::bail!("this runtime has no bindings of policy WIT {version}"),
        }
    }
}
