//! What the benchmarks share: settings from the environment, the machine's load, throwaway
//! PostgreSQL databases, latency summaries and signed guest packages.

#![allow(dead_code)] // each bench uses its own subset

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

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

    /// Registers and publishes a demand of `demander` (a dataset, keyword `bench`), then
    /// confirms `registration_id` (with `data_id` for controlled data) for it; returns the
    /// confirmID.
    pub async fn confirm(
        &self,
        token: &str,
        demander: &str,
        registration_id: &str,
        data_id: Option<&str>,
    ) -> String {
        let demand = self
            .post(
                "/registerDemand",
                Some(token),
                json!({"demander": demander, "data_category": ["bench"], "key_words": ["bench"],
                       "data_type": "dataset"}),
            )
            .await["demandID"]
            .as_str()
            .expect("demand")
            .to_owned();
        self.post(
            "/publishDemand",
            Some(token),
            json!({"demander": demander, "demandID": demand}),
        )
        .await;
        let mut confirm =
            json!({"demander": demander, "demandID": demand, "registrationID": registration_id});
        if let Some(d) = data_id {
            confirm["dataID"] = json!(d);
        }
        self.post("/confirmDemand", Some(token), confirm).await["confirmID"]
            .as_str()
            .expect("confirm")
            .to_owned()
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

/// Runs `run` on a fresh SQLite file and on a fresh PostgreSQL database (each unless skipped),
/// with the database's name and URL, printing the load average before and after each.
pub async fn on_each_backend(mut run: impl AsyncFnMut(&'static str, &str)) {
    println!("load average at start: {}", load_average());
    if sqlite_enabled() {
        let dir = tempfile::tempdir().expect("dir");
        let url = liutong::config::sqlite_url(&dir.path().join("bench.db"));
        run("SQLite", &url).await;
        println!("load average: {}", load_average());
    }
    if let Some(admin) = postgres_admin() {
        match postgres_database(&admin).await {
            Some((url, name)) => {
                run("PostgreSQL", &url).await;
                drop_postgres_database(&admin, &name).await;
                println!("load average: {}", load_average());
            }
            None => println!("PostgreSQL not reachable at {admin}"),
        }
    }
}

/// A server on its own runtime thread, stopped when dropped.
pub struct Running {
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `serve(listener, stop)` on a new two-worker runtime in its own thread.
pub fn run_server<F, Fut>(serve: F) -> Running
where
    F: FnOnce(oneshot::Receiver<()>, std::sync::mpsc::Sender<String>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(serve(stop_rx, addr_tx));
    });
    let base = addr_rx.recv().expect("server reports its address");
    Running {
        base,
        shutdown: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A guest plugin of `plugins/guests` (`crate_dir`, e.g. `billing-flat-fee`): its manifest and
/// its component, built first (a no-op when up to date).
pub fn guest(crate_dir: &str) -> (Vec<u8>, Vec<u8>) {
    use liutong_testkit::guests::{component_path, manifest_path};
    (
        std::fs::read(manifest_path(crate_dir)).expect("manifest"),
        std::fs::read(component_path(crate_dir)).expect("component"),
    )
}

/// Writes the guest `crate_dir` as the signed package `out/<file>.ltpkg`, signed by a fresh
/// publisher whose key goes into `trust` (the server's trust directory).
pub fn signed_package(crate_dir: &str, file: &str, trust: &std::path::Path, out: &std::path::Path) {
    use liutong_plugin_runtime::{Package, PublisherKey};
    let (manifest, component) = guest(crate_dir);
    let key = PublisherKey::generate("liutong-bench");
    std::fs::create_dir_all(trust).expect("trust dir");
    std::fs::write(trust.join("bench.pub"), key.public().to_json()).expect("trusted key");
    std::fs::create_dir_all(out).expect("packages dir");
    std::fs::write(
        out.join(format!("{file}.ltpkg")),
        key.sign(Package::build(manifest, component)).to_bytes(),
    )
    .expect("package");
}
