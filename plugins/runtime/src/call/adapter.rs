//! Adapter calls: `invoke.invoke`, with the granted secrets and the HTTP allow-list.

use crate::adapter::{AdapterError, Invocation, Outcome, Publication, Secret};
use crate::failure::{Phase, PluginError, PluginFailure};
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::prelinked::adapter::{AdapterPre, InvokeParams, InvokeResult};
use crate::prelinked::typed_func;
use crate::session::{Call, Session};

impl LoadedPlugin {
    /// `invoke.invoke`. `publication.secrets` is replaced: only secrets named in the
    /// manifest's `capabilities.secrets` pass, and granted values override the caller's.
    pub async fn invoke(
        &self,
        mut publication: Publication,
        invocation: Invocation,
    ) -> Result<Call<Result<Outcome, AdapterError>>, PluginError> {
        let Pre::Adapter(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Adapter));
        };
        let allowed = &self.inner.manifest.capabilities.secrets;
        let granted = &self.inner.secrets;
        let mut secrets: Vec<Secret> = publication
            .secrets
            .drain(..)
            .filter(|s| allowed.contains(&s.name))
            .filter(|s| !granted.iter().any(|(n, _)| *n == s.name))
            .collect();
        secrets.extend(granted.iter().map(|(name, value)| Secret {
            name: name.clone(),
            value: value.clone(),
        }));
        publication.secrets = secrets;

        let mut session = Session::open(&self.inner.session)
            .await
            .map_err(|f| self.failed(f))?;
        let outcome = session
            .run(async |store| match pre {
                AdapterPre::V0_1_0(v) => {
                    let instance = v
                        .pre
                        .instantiate_async(&mut *store)
                        .await
                        .map_err(|e| (Phase::Instantiate, e))?;
                    // SAFETY: `invoke` was checked as this signature by `AdapterPre::new`.
                    let func = unsafe {
                        typed_func::<InvokeParams<'_>, InvokeResult>(store, &instance, &v.invoke)
                    }
                    .map_err(|e| (Phase::Instantiate, e))?;
                    let (outcome,) = func
                        .call_async(store, (&publication, &invocation))
                        .await
                        .map_err(|e| (Phase::Call, e))?;
                    Ok(outcome)
                }
            })
            .await;
        // A refused request the guest turned into its own error is still reported as the
        // refusal: that is what the operator can act on.
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
        if let Ok(o) = &call.value {
            let max = self.inner.results.max_output_bytes;
            if o.output.len() > max {
                return Err(
                    self.too_large(format!("output: {} bytes > {max} bytes", o.output.len()))
                );
            }
        }
        Ok(call)
    }
}
