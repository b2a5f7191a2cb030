//! Usage-policy benchmark: `cargo bench -p liutong --bench policies` (release build).
//!
//! On SQLite and on PostgreSQL, in one run:
//!
//! 1. the raw single-row update commit rate of the database: concurrency 32, each transaction
//!    `UPDATE bench_counter SET n = n - 1 WHERE id = 1 AND n >= 1` through liutong's own
//!    `Store::begin_write`, on one row (the same contention as one policy's counter);
//! 2. access decisions per second at concurrency 32 on one policy (`POST
//!    /v1/policies/{policyId}/access`, distinct request ids, every decision an ALLOW that
//!    decrements the same counter, decided by the `use-scenes` plugin), and afterwards the check
//!    that the counter and the ALLOWs add up to `counts`;
//! 3. unloaded latency: sequential access decisions (p50, p99).
//!
//! liutong runs in-process on its own two-worker Tokio runtime, the load generator on another;
//! both share the machine's two cores with the database.
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_SECONDS (10 per run),
//! LIUTONG_BENCH_SEQUENTIAL (2000 sequential decisions), LIUTONG_BENCH_POSTGRES (admin URL or
//! "skip"), LIUTONG_BENCH_SQLITE ("skip").

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use liutong::domain::Role;
use liutong::services::accounts::Accounts;
use liutong::store::Store;
use liutong_plugin_runtime::PluginKind;
use serde_json::{Value, json};

mod common;
use common::{Api, Latencies, Running, env_u64, on_each_backend, run_server};

const OPERATOR_PASSWORD: &str = "bench-operator-1";
const POOL_SIZE: u32 = 16;
/// Large enough that no run uses it up: every decision decrements.
const COUNTS: i64 = 1_000_000_000_000;

struct Settings {
    concurrency: usize,
    seconds: u64,
    sequential: usize,
}

fn start_liutong(database_url: String, dir: PathBuf) -> Running {
    run_server(move |stop, addr| async move {
        let mut config = liutong::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url,
            max_db_connections: POOL_SIZE,
            operator_password: Some(OPERATOR_PASSWORD.into()),
            ..liutong::Config::default()
        };
        config.keys_dir = dir.join("keys");
        config.storage.dir = dir.join("files");
        config.plugins.trust_dir = dir.join("trusted");
        config.plugins.cache_dir = dir.join("cache");
        config.plugins.preinstall = vec![dir.join("packages")];
        config
            .plugins
            .defaults
            .insert(PluginKind::Policy, "use-scenes".into());
        let app = liutong::App::build(config).await.expect("liutong builds");
        addr.send(format!("http://{}", app.local_addr().expect("addr")))
            .expect("report address");
        app.serve_until(async move {
            let _ = stop.await;
        })
        .await
        .expect("liutong serves");
    })
}

/// Commits per second of single-row updates of one row, through liutong's store layer.
async fn update_rate(database_url: &str, concurrency: usize, seconds: u64) -> f64 {
    let store = Store::connect(database_url, concurrency as u32)
        .await
        .expect("store");
    sqlx::query("CREATE TABLE bench_counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .expect("table");
    sqlx::query("INSERT INTO bench_counter (id, n) VALUES (1, $1)")
        .bind(COUNTS)
        .execute(store.pool())
        .await
        .expect("row");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let store = store.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut tx = store.begin_write().await.expect("begin");
                    let updated =
                        sqlx::query("UPDATE bench_counter SET n = n - 1 WHERE id = 1 AND n >= 1")
                            .execute(&mut *tx)
                            .await
                            .expect("update")
                            .rows_affected();
                    assert_eq!(updated, 1);
                    tx.commit().await.expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    rate
}

/// A controlled purchase and a policy on it; returns (data space token, policy id).
async fn policy(api: &Api, database_url: &str) -> (String, String) {
    let store = Store::connect(database_url, 2).await.expect("store");
    Accounts::new(store.clone(), Duration::from_secs(3600))
        .register("tds-bench", "tds-bench-pass-1", None, Role::DataSpace)
        .await
        .expect("data space");
    store.close().await;
    let space = api.token("tds-bench", "tds-bench-pass-1").await;
    api.post(
        "/publishDatasets",
        Some(&space),
        json!({"owner": "trusted-data-space", "registrationID": "TDS-CONTROLLED",
               "dataID": "ctl-bench", "description": "benchmark records", "protocol": "IDS",
               "isOpen": 0, "source": "bench", "key_words": ["bench"], "free": false,
               "price": 1}),
    )
    .await;
    let buyer = api.user("carol").await;
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    api.post(
        "/v1/admin/accounts/credit",
        Some(&operator),
        json!({"username": "carol", "amount": 100, "reference": "bench"}),
    )
    .await;
    let confirm = api
        .confirm(&buyer, "carol", "TDS-CONTROLLED", Some("ctl-bench"))
        .await;
    let license = api
        .post("/settlement", Some(&buyer), json!({"confirmID": confirm}))
        .await["licenses"]
        .clone();
    let policy = api
        .post(
            "/deliverDatasets",
            Some(&space),
            json!({"licenses": license, "dataID": "ctl-bench", "policyName": "bench",
                   "relUsers": [{"userId": "u-1", "userName": "bench user", "isGroup": 0}],
                   "useScenes": [{"useSence": "training", "counts": COUNTS,
                                  "aiFrame": ["pytorch", "paddle"]}]}),
        )
        .await["policyId"]
        .as_str()
        .expect("policy")
        .to_owned();
    (space, policy)
}

/// One access decision; must be an ALLOW.
async fn access(api: &Api, token: &str, path: &str, request_id: String) -> Duration {
    let start = Instant::now();
    let d = api
        .post(
            path,
            Some(token),
            json!({"requestId": request_id, "userId": "u-1", "useSence": "training",
                   "aiFrame": "PyTorch"}),
        )
        .await;
    let elapsed = start.elapsed();
    assert_eq!(d["decision"], "ALLOW", "{d}");
    elapsed
}

struct Figures {
    updates_per_s: f64,
    loaded: Latencies,
    unloaded: Latencies,
}

async fn run_backend(database_url: &str, s: &Settings) -> Figures {
    let dir = tempfile::tempdir().expect("dir");
    common::signed_package(
        "policy-use-scenes",
        "use-scenes",
        &dir.path().join("trusted"),
        &dir.path().join("packages"),
    );
    let server = start_liutong(database_url.to_owned(), dir.path().to_owned());
    let api = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(s.concurrency * 2)
            .build()
            .expect("client"),
        base: server.base.clone(),
    };
    let (space, policy_id) = policy(&api, database_url).await;
    let path = format!("/v1/policies/{policy_id}/access");
    // Warm-up: the plugin's first instantiations, connections, the token cache.
    for i in 0..200 {
        access(&api, &space, &path, format!("warm-{i}")).await;
    }

    let updates_per_s = update_rate(database_url, s.concurrency, s.seconds.min(5)).await;

    let deadline = Instant::now() + Duration::from_secs(s.seconds);
    let start = Instant::now();
    let workers: Vec<_> = (0..s.concurrency)
        .map(|w| {
            let api = api.clone();
            let space = space.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    samples.push(access(&api, &space, &path, format!("w{w}-{n}")).await);
                    n += 1;
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await.expect("worker"));
    }
    let loaded = Latencies::new(samples, start.elapsed());

    let start = Instant::now();
    let mut samples = Vec::with_capacity(s.sequential);
    for i in 0..s.sequential {
        samples.push(access(&api, &space, &path, format!("seq-{i}")).await);
    }
    let unloaded = Latencies::new(samples, start.elapsed());

    // Exact: the counter is down by exactly the number of decisions made.
    let policy: Value = api
        .get(&format!("/v1/policies/{policy_id}"), &space, &[])
        .await;
    let remaining = policy["remainingCounts"]["training"]
        .as_i64()
        .expect("remaining");
    let decided = (200 + loaded.count() + unloaded.count()) as i64;
    assert_eq!(remaining + decided, COUNTS, "the counter is off");
    println!("counter check: {decided} ALLOW decisions, remaining {remaining}: exact");
    drop(server);
    Figures {
        updates_per_s,
        loaded,
        unloaded,
    }
}

fn report(database: &str, f: &Figures, s: &Settings) {
    let rate = f.loaded.per_second();
    println!(
        "| database | raw single-row updates/s (c={c}) | access decisions/s (c={c}) | ratio | p50 ms | p99 ms | unloaded p50 ms | unloaded p99 ms |",
        c = s.concurrency
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {database} | {:.0} | {:.0} | {:.0} % | {:.2} | {:.2} | {:.2} | {:.2} |",
        f.updates_per_s,
        rate,
        100.0 * rate / f.updates_per_s,
        f.loaded.ms(0.5),
        f.loaded.ms(0.99),
        f.unloaded.ms(0.5),
        f.unloaded.ms(0.99),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        concurrency: env_u64("LIUTONG_BENCH_CONCURRENCY", 32) as usize,
        seconds: env_u64("LIUTONG_BENCH_SECONDS", 10),
        sequential: env_u64("LIUTONG_BENCH_SEQUENTIAL", 2000) as usize,
    };
    sqlx::any::install_default_drivers();
    on_each_backend(async |database, url| {
        let figures = run_backend(url, &s).await;
        report(database, &figures, &s);
    })
    .await;
}
