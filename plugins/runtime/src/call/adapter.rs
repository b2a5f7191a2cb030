//! Adapter calls: `invoke.invoke`, with the granted secrets and the HTTP allow-list.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::adapter::{AdapterError, Invocation, Outcome, Publication, Secret};
use crate::bindings::adapter::v0_1_0::liutong::adapter::types as v0_1_0;
use crate::bindings::triple;
use crate::call::{export_func, typed_func};
use crate::failure::{Phase, PluginError, PluginFailure};
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::session::{Call, CallState, Session};

/// An adapter component pre-linked through the bindings of its WIT version.
pub(crate) enum AdapterPre {
    V0_1_0(AdapterV0_1_0),
}

/// `liutong:adapter@0.1.0`: the component and its `invoke` function, type-checked at load.
pub(crate) struct AdapterV0_1_0 {
    pre: InstancePre<CallState>,
    invoke: ComponentExportIndex,
}

type InvokeParams<'a> = (&'a v0_1_0::Publication, &'a v0_1_0::Invocation);
type InvokeResult = (Result<v0_1_0::Outcome, v0_1_0::AdapterError>,);

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
