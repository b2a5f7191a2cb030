//! Adapter calls: `invoke.invoke`, with the granted secrets and the HTTP allow-list.

use crate::adapter::{AdapterError, Invocation, Outcome, Publication, Secret};
use crate::failure::PluginError;
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::prelinked::adapter::{AdapterPre, InvokeParams, InvokeResult};
use crate::prelinked::call_export;
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
        publication.secrets = self.pass_secrets(
            std::mem::take(&mut publication.secrets),
            |s| &s.name,
            |name, value| Secret { name, value },
        );
        let mut session = Session::open(&self.inner.session)
            .await
            .map_err(|f| self.failed(f))?;
        let outcome = session
            .run(async |store| match pre {
                // SAFETY: `invoke` was checked as this signature by `AdapterPre::new`.
                AdapterPre::V0_1_0(v) => unsafe {
                    call_export::<InvokeParams<'_>, InvokeResult>(
                        store,
                        &v.pre,
                        &v.invoke,
                        (&publication, &invocation),
                    )
                    .await
                }
                .map(|(outcome,)| outcome),
            })
            .await;
        let call = self.finish_networked(session, outcome)?;
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
