//! Assembles the server from its configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::domain::billing::{Billing, FlatBilling};
use crate::files::Files;
use crate::files::fetch::Fetcher;
use crate::metrics::Metrics;
use crate::schema::Schemas;
use crate::services::Services;
use crate::services::accounts::Accounts;
use crate::services::compute::Compute;
use crate::services::delivery::{Delivery, DeliveryConfig};
use crate::services::demand::Demands;
use crate::services::gateway::Gateway;
use crate::services::identifiers::Identifiers;
use crate::services::keys::Keys;
use crate::services::ledger::Ledger;
use crate::services::matching::Matcher;
use crate::services::notifications::Notifications;
use crate::services::ops::Ops;
use crate::services::plugins::PluginHost;
use crate::services::plugins::billing::PluginBilling;
use crate::services::policies::Policies;
use crate::services::provider::Provider;
use crate::services::subscriptions::{Subscriptions, SubscriptionsConfig};
use crate::services::supply::Supply;
use crate::services::trading::{Trading, TradingConfig};
use crate::store::Store;

pub struct App {
    listener: TcpListener,
    router: Router,
    store: Store,
    /// Sends the notices of the outbox while the server runs.
    notifications: Notifications,
    /// Provisions and reclaims compute orders while the server runs.
    compute: Compute,
}

impl App {
    /// Connects and migrates the database, bootstraps the operator if asked, and binds the
    /// listener; nothing is served until `serve`.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        // TLS for S3 and resource_url fetches uses rustls with ring; a second call (tests build
        // many apps in one process) finds it installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (keys, created) = KeyRing::ensure(&config.keys_dir)?;
        if created {
            tracing::info!(dir = %config.keys_dir.display(), "created the operator's signing key and escrow identity");
        }
        tracing::info!(
            key_id = keys.current_key_id(),
            escrow = keys.escrow_recipient(),
            "operator keys loaded"
        );
        let keys = Arc::new(keys);
        let files = Files::from_config(&config.storage)?;
        tracing::info!(storage = %files.describe(), "data files storage");
        let swept = files
            .sweep_stale_uploads(std::time::Duration::from_secs(3600))
            .await;
        if swept > 0 {
            tracing::info!(
                count = swept,
                "removed partial uploads left by an earlier crash"
            );
        }
        let store = Store::connect(&config.database_url, config.max_db_connections).await?;
        store.migrate().await?;
        let schemas = Schemas::load(&[(
            crate::domain::provider::CREDIT_CODE_FORMAT,
            crate::domain::provider::is_credit_code,
        )])?;
        let accounts = Accounts::new(store.clone(), config.token_ttl);
        if let Some(password) = &config.operator_password
            && accounts.bootstrap_operator(password).await?
        {
            tracing::info!("created the bootstrap operator account 'operator'");
        }
        let metrics = Arc::new(Metrics::default());
        let plugins = PluginHost::new(&config, store.clone(), Arc::clone(&metrics))?;
        tracing::info!(
            pooling = plugins.runtime().pooling(),
            trust_dir = %config.plugins.trust_dir.display(),
            "plugin runtime ready"
        );
        plugins.preinstall(&config.plugins).await?;
        let registry = plugins.refresh(true).await?;
        tracing::info!(
            plugins = registry.plugins.len(),
            defaults = ?registry.defaults,
            "plugins loaded"
        );
        // The one seam every charge goes through: the plugin chosen, else the native flat rule.
        let billing: Arc<dyn Billing> = Arc::new(PluginBilling::new(
            plugins.clone(),
            FlatBilling {
                fee_bps: config.platform_fee_bps,
            },
        ));
        let trading = Trading::new(
            store.clone(),
            Arc::clone(&keys),
            Arc::clone(&billing),
            TradingConfig {
                confirmation_ttl: config.confirmation_ttl,
                license_term: config.license_term,
                currency: config.currency.clone(),
                fetch_resource_urls: config.fetch_resource_urls,
            },
        );
        let notifications = Notifications::new(store.clone(), &config.notifications)?;
        let provider = Provider::new(store.clone(), files.clone(), notifications.clone());
        let delivery = Delivery::new(
            store.clone(),
            trading.clone(),
            files,
            Fetcher::new()?,
            DeliveryConfig {
                max_json_delivery: config.max_json_delivery,
                fetch_resource_urls: config.fetch_resource_urls,
            },
        );
        let matcher = Matcher::new(store.clone());
        let loading = std::time::Instant::now();
        let loaded = matcher.sync().await?;
        tracing::info!(
            items = loaded,
            elapsed_ms = loading.elapsed().as_millis() as u64,
            "loaded the match index"
        );
        let policies = Policies::new(store.clone(), Arc::clone(&keys), plugins.clone());
        let subscriptions = Subscriptions::new(
            store.clone(),
            Arc::clone(&keys),
            plugins.clone(),
            SubscriptionsConfig {
                currency: config.currency.clone(),
                fee_bps: config.platform_fee_bps,
                license_term: config.license_term,
                model_adapter: config.plugins.model_adapter.clone(),
                application_adapter: config.plugins.application_adapter.clone(),
            },
        );
        let compute = Compute::new(
            store.clone(),
            plugins.clone(),
            config.compute.clone(),
            config.platform_fee_bps,
            config.currency.clone(),
        );
        let services = Services {
            accounts,
            supply: Supply::new(store.clone()),
            demands: Demands::new(store.clone()),
            matching: matcher,
            trading,
            delivery,
            ledger: Ledger::new(store.clone(), config.currency.clone()),
            plugins,
            keys: Keys::new(keys),
            ops: Ops::new(store.clone(), metrics, config.metrics),
            policies,
            provider,
            identifiers: Identifiers::new(store.clone(), notifications.clone()),
            notifications: notifications.clone(),
            gateway: Gateway::new(store.clone(), schemas.clone())?,
            subscriptions,
            compute: compute.clone(),
        };
        let state = AppState {
            services: Arc::new(services),
            schemas,
            max_json_body: config.max_json_body,
        };
        let router = api::router(state);
        let listener = TcpListener::bind(config.listen).await?;
        Ok(App {
            listener,
            router,
            store,
            notifications,
            compute,
        })
    }

    /// The app's database handle (tests use it to simulate an outage).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(self.notifications.run(stopped.clone()));
        let bills = tokio::spawn(self.compute.clone().run_bill_sync(stopped.clone()));
        let compute = tokio::spawn(self.compute.run(stopped));
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        // A notice being sent finishes its attempt; what is left stays in the outbox.
        let _ = stop.send(true);
        let _ = worker.await;
        // An order being provisioned finishes its step; one cut short is resumed (same
        // client token) by the next server.
        let _ = compute.await;
        // A bill sync cut short leaves its lines pending; the next one charges them.
        let _ = bills.await;
        self.store.close().await;
        result
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn serve(self) -> std::io::Result<()> {
        self.serve_until(shutdown_signal()).await
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
