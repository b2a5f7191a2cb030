//! Assembles the server from its configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::domain::accounts::Accounts;
use crate::domain::demand::Demands;
use crate::domain::matching::Matcher;
use crate::domain::supply::Supply;
use crate::schema::Schemas;
use crate::store::Store;

pub struct App {
    listener: TcpListener,
    router: Router,
    store: Store,
}

impl App {
    /// Connects and migrates the database, bootstraps the operator if asked, and binds the
    /// listener; nothing is served until `serve`.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let store = Store::connect(&config.database_url, config.max_db_connections).await?;
        store.migrate().await?;
        let schemas = Schemas::load()?;
        let accounts = Accounts::new(store.clone(), config.token_ttl);
        if let Some(password) = &config.operator_password
            && accounts.bootstrap_operator(password).await?
        {
            tracing::info!("created the bootstrap operator account 'operator'");
        }
        let state = AppState {
            config: Arc::new(config.clone()),
            store: store.clone(),
            schemas,
            accounts,
            supply: Supply::new(store.clone()),
            demands: Demands::new(store.clone()),
            matcher: Matcher::new(store.clone()),
        };
        let router = api::router(state);
        let listener = TcpListener::bind(config.listen).await?;
        Ok(App {
            listener,
            router,
            store,
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
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.store.close().await;
        result
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn serve(self) -> std::io::Result<()> {
        self.serve_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
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
