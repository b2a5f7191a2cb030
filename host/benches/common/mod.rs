//! What the benchmarks share: settings from the environment, the machine's load, throwaway
//! PostgreSQL databases and latency summaries.

#![allow(dead_code)] // each bench uses its own subset

use std::time::Duration;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1-, 5- and 15-minute load averages: benchmarks share two cores with whatever else runs.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The PostgreSQL server to create benchmark databases on, or `None` when told to skip it.
pub fn postgres_admin() -> Option<String> {
    let admin = std::env::var("LIUTONG_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    (admin != "skip").then_some(admin)
}

pub fn sqlite_enabled() -> bool {
    std::env::var("LIUTONG_BENCH_SQLITE").as_deref() != Ok("skip")
}

/// Creates a fresh database; returns its URL and name.
pub async fn postgres_database(admin: &str) -> Option<(String, String)> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
        .await
        .ok()?;
    let name = format!("lt_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .ok()?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Some((format!("{base}/{name}"), name))
}

pub async fn drop_postgres_database(admin: &str, name: &str) {
    if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await {
        let _ = sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
        )
        .await;
    }
}

/// Latencies of one measured run.
pub struct Latencies {
    sorted: Vec<Duration>,
    pub elapsed: Duration,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort();
        Latencies {
            sorted: samples,
            elapsed,
        }
    }

    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    pub fn per_second(&self) -> f64 {
        self.sorted.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile in milliseconds (`p` in 0..=1).
    pub fn ms(&self, p: f64) -> f64 {
        self.sorted
            .get(((self.sorted.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    }
}
