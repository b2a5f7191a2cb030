//! What a plugin may import, per kind. A component importing anything else fails to link at
//! load time ("it imports something billing plugins may not use").

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::failure::RuntimeError;
use crate::manifest::PluginKind;
use crate::session::CallState;

pub(crate) struct Linkers {
    /// Billing and policy: WASI without files, network, environment or clocks.
    compute: Linker<CallState>,
    /// Adapters and providers: the same WASI plus wasi:http through [`crate::http::HttpGuard`].
    adapter: Linker<CallState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Result<Linkers, RuntimeError> {
        let mut compute = Linker::<CallState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut compute)
            .map_err(|e| RuntimeError(format!("linking WASI: {e:#}")))?;
        let mut adapter = Linker::<CallState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut adapter)
            .map_err(|e| RuntimeError(format!("linking WASI: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut adapter)
            .map_err(|e| RuntimeError(format!("linking wasi:http: {e:#}")))?;
        Ok(Linkers { compute, adapter })
    }

    pub fn for_kind(&self, kind: PluginKind) -> &Linker<CallState> {
        match kind {
            PluginKind::Adapter | PluginKind::Provider => &self.adapter,
            PluginKind::Billing | PluginKind::Policy => &self.compute,
        }
    }
}
