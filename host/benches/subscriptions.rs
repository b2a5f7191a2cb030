//! Subscription benchmark: `cargo bench -p liutong --bench subscriptions` (release build).
//!
//! On SQLite and on PostgreSQL, in one run, side by side:
//!
//! 1. the upstream alone: an OpenAI-compatible chat-completions server (axum, on its own
//!    runtime thread) called directly — sequential latency (p50, p99) and throughput at
//!    concurrency 32;
//! 2. the same upstream through liutong: metered calls (`POST /v1/model/delivery`, per call)
//!    through the `openai-chat` adapter plugin, each held, charged and recorded on the ledger —
//!    the same sequential and concurrent runs; afterwards the check that the subscriber paid
//!    exactly price × calls and that the ledger audit is balanced.
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_SECONDS (10 per
//! concurrent run), LIUTONG_BENCH_SEQUENTIAL (2000 sequential calls),
//! LIUTONG_TEST_POSTGRES (admin URL or "skip"), LIUTONG_BENCH_SQLITE ("skip").

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Api, Latencies, Running, env_u64, on_each_backend, run_server};

const OPERATOR_PASSWORD: &str = "bench-operator-1";
const POOL_SIZE: u32 = 16;
/// The price per call, in fen.
const PRICE_MINOR: i64 = 1;

struct Settings {
    concurrency: usize,
    seconds: u64,
    sequential: usize,
}

/// The upstream: a fixed completion with `usage`, counting its calls.
fn start_upstream(calls: Arc<AtomicU64>) -> Running {
    run_server(move |stop, addr| async move {
        let router = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(_body): axum::Json<Value>| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::Relaxed);
                    axum::Json(json!({
                        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                        "model": "bench",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "pong"}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addr.send(format!("http://{}", listener.local_addr().expect("addr")))
            .expect("report address");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
            .expect("upstream serves");
    })
}

fn start_liutong(database_url: String, dir: PathBuf, upstream_authority: String) -> Running {
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
        config.plugins.grants.insert(
            "openai-chat".into(),
            liutong::config::PluginGrant {
                http: vec![upstream_authority],
                secrets: vec![],
            },
        );
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

/// A published model and a subscription with a large balance: (token, license, api).
async fn subscription(api: &Api, upstream: &str) -> (String, Value, String) {
    let alice = api.user("alice").await;
    api.post(
        "/registerData",
        Some(&alice),
        json!({"owner": "alice", "key_words": ["llm"], "dataID": "bench-model",
               "description": "a benchmark model", "data_type": "model",
               "data_format": "openai-chat", "data_size": 1.0, "data_category": ["ai"],
               "collection_time": "2026-01-01 00:00:00", "country": "CN",
               "resource_url": "https://models.example/bench",
               "ownership_confirm": "https://models.example/ownership",
               "public_key": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}),
    )
    .await;
    let model_api = format!("{upstream}/v1");
    let publish_id = api
        .post(
            "/v1/model/publish",
            Some(&alice),
            json!({"publisherId": "alice", "modelId": "bench-model", "billingType": "metered",
                   "billingMethod": {"unit": "calls", "price": PRICE_MINOR as f64 / 100.0},
                   "api": model_api}),
        )
        .await["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    let carol = api.user("carol").await;
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    api.post(
        "/v1/admin/accounts/credit",
        Some(&operator),
        json!({"username": "carol", "amount": 10_000_000, "reference": "bench"}),
    )
    .await;
    let license = api
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            json!({"subscribeId": "carol", "publishId": publish_id, "billingType": "metered",
                   "billingMethod": "calls"}),
        )
        .await["licenses"]
        .clone();
    (carol, license, model_api)
}

const INPUT: &str = r#"{"messages": [{"role": "user", "content": "ping"}]}"#;

/// One direct call of the upstream.
async fn direct(client: &reqwest::Client, url: &str) -> Duration {
    let start = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(INPUT)
        .send()
        .await
        .expect("upstream answers");
    assert!(resp.status().is_success());
    let _ = resp.bytes().await.expect("body");
    start.elapsed()
}

/// One metered call through liutong.
async fn through(api: &Api, token: &str, body: &Value) -> Duration {
    let start = Instant::now();
    let out = api
        .post("/v1/model/delivery", Some(token), body.clone())
        .await;
    let elapsed = start.elapsed();
    assert_eq!(out["output"]["choices"][0]["message"]["content"], "pong");
    elapsed
}

async fn sequential<F, Fut>(n: usize, mut call: F) -> Latencies
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let start = Instant::now();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(call().await);
    }
    Latencies::new(samples, start.elapsed())
}

async fn concurrent<F, Fut>(workers: usize, seconds: u64, call: F) -> Latencies
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    samples.push(call().await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("worker"));
    }
    Latencies::new(samples, start.elapsed())
}

struct Figures {
    direct_seq: Latencies,
    direct_loaded: Latencies,
    via_seq: Latencies,
    via_loaded: Latencies,
}

async fn run_backend(database_url: &str, s: &Settings) -> Figures {
    let calls = Arc::new(AtomicU64::new(0));
    let upstream = start_upstream(Arc::clone(&calls));
    let authority = upstream.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().expect("dir");
    common::signed_package(
        "adapter-openai-chat",
        "openai-chat",
        &dir.path().join("trusted"),
        &dir.path().join("packages"),
    );
    let server = start_liutong(database_url.to_owned(), dir.path().to_owned(), authority);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(s.concurrency * 2)
        .build()
        .expect("client");
    let api = Api {
        client: client.clone(),
        base: server.base.clone(),
    };
    let (token, license, model_api) = subscription(&api, &upstream.base).await;
    let body = json!({"api": model_api, "licenses": license, "input": INPUT});
    let url = format!("{}/v1/chat/completions", upstream.base);
    // Warm-up: connections, the adapter's first instantiations, the token cache.
    for _ in 0..200 {
        direct(&client, &url).await;
        through(&api, &token, &body).await;
    }
    let before = calls.load(Ordering::Relaxed);

    let direct_seq = sequential(s.sequential, || direct(&client, &url)).await;
    let via_seq = sequential(s.sequential, || through(&api, &token, &body)).await;
    let direct_loaded = {
        let (client, url) = (client.clone(), url.clone());
        concurrent(s.concurrency, s.seconds, move || {
            let (client, url) = (client.clone(), url.clone());
            async move { direct(&client, &url).await }
        })
        .await
    };
    let via_loaded = {
        let (api, token, body) = (api.clone(), token.clone(), body.clone());
        concurrent(s.concurrency, s.seconds, move || {
            let (api, token, body) = (api.clone(), token.clone(), body.clone());
            async move { through(&api, &token, &body).await }
        })
        .await
    };

    // Exact: every call through liutong reached the upstream once and was paid once.
    let via_calls = (200 + via_seq.count() + via_loaded.count()) as i64;
    let direct_calls = (direct_seq.count() + direct_loaded.count()) as u64;
    assert_eq!(
        calls.load(Ordering::Relaxed) - before,
        direct_calls + via_calls as u64 - 200,
        "upstream calls"
    );
    let balance = api.get("/v1/account/balance", &token, &[]).await["balance"]
        .as_f64()
        .expect("balance");
    let paid = 1_000_000_000 - (balance * 100.0).round() as i64;
    assert_eq!(
        paid,
        via_calls * PRICE_MINOR,
        "the subscriber paid for every call once"
    );
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let audit = api.get("/v1/admin/ledger/audit", &operator, &[]).await;
    assert_eq!(audit["balanced"], true, "{audit}");
    println!("check: {via_calls} metered calls, {paid} fen paid, ledger balanced: exact");
    drop(server);
    drop(upstream);
    Figures {
        direct_seq,
        direct_loaded,
        via_seq,
        via_loaded,
    }
}

fn report(database: &str, f: &Figures, s: &Settings) {
    println!(
        "| database | path | sequential p50 ms | sequential p99 ms | calls/s (c={c}) | p50 ms (c={c}) | p99 ms (c={c}) |",
        c = s.concurrency
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, seq, loaded) in [
        ("upstream directly", &f.direct_seq, &f.direct_loaded),
        ("through liutong (metered)", &f.via_seq, &f.via_loaded),
    ] {
        println!(
            "| {database} | {name} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
            seq.ms(0.5),
            seq.ms(0.99),
            loaded.per_second(),
            loaded.ms(0.5),
            loaded.ms(0.99),
        );
    }
    println!(
        "{database}: added sequential p50 {:.2} ms, p99 {:.2} ms",
        f.via_seq.ms(0.5) - f.direct_seq.ms(0.5),
        f.via_seq.ms(0.99) - f.direct_seq.ms(0.99)
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
