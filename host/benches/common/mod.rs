//! What the benchmarks share: settings from the environment, the machine's load, throwaway
//! PostgreSQL databases and latency summaries.

#![allow(dead_code)] // each bench uses its own subset

use std::time::Duration;

use serde_json::{Value, json};

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

/// The PostgreSQL server to create benchmark databases on (`LIUTONG_TEST_POSTGRES`, shared
/// with the tests), or `None` when it is `skip`.
pub fn postgres_admin() -> Option<String> {
    liutong_testkit::postgres::enabled().then(liutong_testkit::postgres::admin_url)
}

pub fn sqlite_enabled() -> bool {
    std::env::var("LIUTONG_BENCH_SQLITE").as_deref() != Ok("skip")
}

/// Creates a fresh database; returns its URL and name.
pub async fn postgres_database(admin: &str) -> Option<(String, String)> {
    let name = liutong_testkit::postgres::create_database(admin, "lt_bench")
        .await
        .ok()?;
    Some((liutong_testkit::postgres::database_url(admin, &name), name))
}

pub async fn drop_postgres_database(admin: &str, name: &str) {
    liutong_testkit::postgres::drop_database(admin, name).await;
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

/// A client of a liutong server that checks every answer is a success and returns its `data`.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{status}: {body}");
        body["data"].clone()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        self.call(req).await
    }

    pub async fn get(&self, path: &str, token: &str, query: &[(&str, &str)]) -> Value {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .header("X-Auth-Token", token);
        self.call(req).await
    }

    pub async fn put_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        token: &str,
        body: Value,
    ) -> Value {
        let req = self
            .client
            .put(format!("{}{path}", self.base))
            .query(query)
            .header("X-Auth-Token", token)
            .json(&body);
        self.call(req).await
    }

    /// Registers `name` (password `<name>-pass-1`) and returns a token.
    pub async fn user(&self, name: &str) -> String {
        let password = format!("{name}-pass-1");
        self.post(
            "/v1/account/register",
            None,
            json!({"username": name, "password": password, "phone": "13800138000"}),
        )
        .await;
        self.token(name, &password).await
    }

    pub async fn token(&self, name: &str, password: &str) -> String {
        self.post(
            "/v1/account/token",
            None,
            json!({"username": name, "password": password}),
        )
        .await["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }
}
