//! What the operator allows one plugin, given at load time.

use std::collections::BTreeMap;

use crate::manifest::HostPattern;

/// What the operator allows one plugin, given at load time. `Debug` does not print secret
/// values.
#[derive(Clone, Default)]
pub struct Grants {
    /// Destinations the operator allows; a request must match these AND the manifest.
    pub http: Vec<HostPattern>,
    /// Secret values by name. Only names in the manifest's `capabilities.secrets` reach the
    /// plugin, in `publication.secrets`.
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let http: Vec<String> = self.http.iter().map(|p| p.to_string()).collect();
        f.debug_struct("Grants")
            .field("http", &http)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Grants {
    pub fn none() -> Grants {
        Grants::default()
    }

    /// Grant HTTP patterns, e.g. `["api.openai.com:443"]`.
    pub fn with_http<I, S>(mut self, patterns: I) -> Result<Grants, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in patterns {
            self.http.push(HostPattern::parse(p.as_ref())?);
        }
        Ok(self)
    }

    pub fn with_secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Grants {
        self.secrets.insert(name.into(), value.into());
        self
    }
}
