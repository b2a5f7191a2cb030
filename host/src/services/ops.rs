//! Operations: readiness and the Prometheus metrics.

use std::sync::Arc;

use serde::Serialize;

use super::ServiceError;
use crate::metrics::Metrics;
use crate::store::Store;

/// `GET /readyz` response data.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub database: &'static str,
}

#[derive(Clone)]
pub struct Ops {
    store: Store,
    metrics: Arc<Metrics>,
    metrics_enabled: bool,
}

impl Ops {
    pub fn new(store: Store, metrics: Arc<Metrics>, metrics_enabled: bool) -> Self {
        Ops {
            store,
            metrics,
            metrics_enabled,
        }
    }

    /// The database answers.
    pub async fn readiness(&self) -> Result<Readiness, ServiceError> {
        match self.store.ping().await {
            Ok(()) => Ok(Readiness {
                ready: true,
                database: self.store.backend().name(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Err(ServiceError::Unavailable(
                    "the database is not reachable".to_owned(),
                ))
            }
        }
    }

    /// The Prometheus text exposition, or `None` when the operator turned metrics off.
    pub fn metrics_text(&self) -> Result<Option<String>, ServiceError> {
        if !self.metrics_enabled {
            return Ok(None);
        }
        self.metrics
            .render()
            .map(Some)
            .map_err(|e| ServiceError::Internal(format!("rendering metrics: {e}")))
    }
}
