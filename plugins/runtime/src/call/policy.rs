//! Policy calls: `evaluator.evaluate`.

use crate::failure::PluginError;
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::policy::{AccessRequest, PolicyError, UsagePolicy, Verdict};
use crate::prelinked::call_export;
use crate::prelinked::policy::{EvaluateParams, EvaluateResult, PolicyPre};
use crate::session::{Call, Session};

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
                // SAFETY: `evaluate` was checked as this signature by `PolicyPre::new`.
                PolicyPre::V0_1_0(v) => unsafe {
                    call_export::<EvaluateParams<'_>, EvaluateResult>(
                        store,
                        &v.pre,
                        &v.evaluate,
                        (&usage_policy, &request),
                    )
                    .await
                }
                .map(|(verdict,)| verdict),
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
