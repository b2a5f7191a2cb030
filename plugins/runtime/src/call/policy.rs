//! Policy calls: `evaluator.evaluate`.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::bindings::policy::v0_1_0::liutong::policy::types as v0_1_0;
use crate::bindings::triple;
use crate::call::{export_func, typed_func};
use crate::failure::{Phase, PluginError};
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::policy::{AccessRequest, PolicyError, UsagePolicy, Verdict};
use crate::session::{Call, CallState, Session};

/// A policy component pre-linked through the bindings of its WIT version.
pub(crate) enum PolicyPre {
    V0_1_0(PolicyV0_1_0),
}

/// `liutong:policy@0.1.0`: the component and its `evaluator` function, type-checked at load.
pub(crate) struct PolicyV0_1_0 {
    pre: InstancePre<CallState>,
    evaluate: ComponentExportIndex,
}

type EvaluateParams<'a> = (&'a v0_1_0::UsagePolicy, &'a v0_1_0::AccessRequest);
type EvaluateResult = (Result<v0_1_0::Verdict, v0_1_0::PolicyError>,);

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

impl LoadedPlugin {
    /// `evaluator.evaluate`.
    pub async fn evaluate(
        &self,
        usage_policy: UsagePolicy,
        request: AccessRequest,
    ) -> Result<Call<Result<Verdict, PolicyError>>, PluginError> {
        let Pre::Policy(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Policy));
        };
        let mut session = Session::open(&self.inner.session)
            .await
            .map_err(|f| self.failed(f))?;
        let outcome = session
            .run(async |store| match pre {
                PolicyPre::V0_1_0(v) => {
                    let instance = v
                        .pre
                        .instantiate_async(&mut *store)
                        .await
                        .map_err(|e| (Phase::Instantiate, e))?;
                    // SAFETY: `evaluate` was checked as this signature by `PolicyPre::new`.
                    let func = unsafe {
                        typed_func::<EvaluateParams<'_>, EvaluateResult>(
                            store,
                            &instance,
                            &v.evaluate,
                        )
                    }
                    .map_err(|e| (Phase::Instantiate, e))?;
                    let (verdict,) = func
                        .call_async(store, (&usage_policy, &request))
                        .await
                        .map_err(|e| (Phase::Call, e))?;
                    Ok(verdict)
                }
            })
            .await;
        let call = session.finish(outcome).map_err(|f| self.failed(f))?;
        match &call.value {
            Ok(v) => {
                self.check_items("reasons", v.reasons.len())?;
                self.check_items("counter-changes", v.counter_changes.len())?;
                for r in &v.reasons {
                    self.check_string("reasons", r)?;
                }
            }
            Err(PolicyError::InvalidPolicy(m) | PolicyError::InvalidRequest(m)) => {
                self.check_string("policy-error", m)?
            }
        }
        Ok(call)
    }
}
