//! Identifier gateway benchmark: `cargo bench -p liutong --bench gateway` (release build).
//!
//! On SQLite and on PostgreSQL, in one run:
//!
//! 1. a certified enterprise registers its gateway key; LIUTONG_BENCH_IDENTIFIERS codes
//!    (default 1,000,000) are issued to it, written straight into `identifier_applications`
//!    (approving a million applications over HTTP would measure the review, not the gateway);
//! 2. ingestion: as many identifiers, one per code, in batches of 500 signed with the
//!    enterprise's Ed25519 key, sent to `POST /v1/gateway/identifiers` by
//!    LIUTONG_BENCH_CONCURRENCY (4) senders; identifiers per second;
//! 3. query latency over what was ingested: LIUTONG_BENCH_QUERIES (500) sequential
//!    `GET /v1/gateway/identifiers` (first pages of 100 under a mix of filters: none, city,
//!    status, type and class, a time range, the enterprise, offset 1000), p50 and p99;
//!    then `GET /v1/gateway/statistics` (20 each by province and status), p50 and p99.
//!
//! The load generator builds and signs the batches on the fly, on the same two cores as
//! liutong and the database. On PostgreSQL the table is ANALYZEd after the bulk load (what
//! autovacuum does shortly after one) before the queries.
//!
//! Settings (environment): LIUTONG_BENCH_IDENTIFIERS, LIUTONG_BENCH_CONCURRENCY,
//! LIUTONG_BENCH_QUERIES, LIUTONG_BENCH_POSTGRES (admin URL or "skip"), LIUTONG_BENCH_SQLITE
//! ("skip").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use liutong::crypto::batch;
use liutong::store::Store;
use serde_json::{Value, json};

mod common;
use common::{Api, Latencies, Running, env_u64, on_each_backend, run_server};

const OPERATOR_PASSWORD: &str = "bench-operator-1";
const POOL_SIZE: u32 = 16;
const BATCH: usize = 500;
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n";
/// Cities of Guangdong the codes are spread over (digits 3-4 of their GB/T 2260 codes).
const CITIES: &[&str] = &["01", "03", "04", "06"];
const TYPES: &[&str] = &[
    "cloud_host",
    "bare_metal",
    "file_service",
    "storage_service",
];
const CLASSES: &[&str] = &["general", "ai", "supercomputing"];
const STATUSES: &[&str] = &["running", "idle", "maintenance", "offline"];
const EPOCH: i64 = 1_764_460_800;

struct Settings {
    identifiers: usize,
    concurrency: usize,
    queries: usize,
}

struct Figures {
    seeded: Duration,
    ingest: Latencies,
    per_second: f64,
    query: Latencies,
    statistics: Latencies,
}

fn start_liutong(database_url: String, dir: std::path::PathBuf) -> Running {
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

/// The i-th code of `enterprise`: (code, city digits).
fn code(enterprise: &str, i: usize) -> (String, &'static str) {
    let serial = (i % 1000) as i64;
    let rest = i / 1000;
    let industry = rest % 99 + 1;
    let rest = rest / 99;
    let zone = rest % 10;
    let city = CITIES[(rest / 10) % CITIES.len()];
    let prefix = format!("{enterprise}44{city}{zone}{industry:02}");
    (
        liutong::domain::identifiers::compose(&prefix, serial).expect("code"),
        city,
    )
}

fn identifier(enterprise: &str, i: usize) -> Value {
    let (code, city) = code(enterprise, i);
    json!({
        "code": code,
        "resourceClass": CLASSES[i % CLASSES.len()],
        "resourceType": TYPES[(i / 3) % TYPES.len()],
        "province": "440000",
        "city": format!("44{city}00"),
        "zone": &code[9..10],
        "cpuCores": 8 + (i % 8) * 8,
        "cpuModel": "Kunpeng 920",
        "gpuModel": "Ascend 910B",
        "gpuCount": i % 9,
        "memoryGiB": 64 + (i % 4) * 64,
        "storageGiB": 1000,
        "bandwidthMbps": 10000,
        "status": STATUSES[(i / 7) % STATUSES.len()],
        "unitPrice": 12.5,
        "observedAt": liutong::domain::timefmt::to_rfc3339(
            time::OffsetDateTime::from_unix_timestamp(EPOCH + i as i64).expect("time")
        ),
    })
}

/// Certified enterprise `acme` with a registered key: (token, enterprise id, key).
async fn enterprise(api: &Api) -> (String, String, SigningKey) {
    let token = api.user("acme").await;
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let info = json!({
        "enterpriseName": "acme 算力有限公司",
        "creditCode": "91440300MA5ELPB95W",
        "legalRepresentative": "张三",
        "contactName": "李四",
        "contactPhone": "13812345678",
        "contactEmail": "ops@provider.example"
    });
    let form = reqwest::multipart::Form::new()
        .part(
            "info",
            reqwest::multipart::Part::text(info.to_string())
                .mime_str("application/json")
                .expect("mime"),
        )
        .part(
            "document",
            reqwest::multipart::Part::bytes(PDF.to_vec()).file_name("licence.pdf"),
        );
    let created = api
        .call(
            api.client
                .post(format!("{}/v1/provider/certification", api.base))
                .header("X-Auth-Token", &token)
                .multipart(form),
        )
        .await;
    let id = created["certificationId"].as_str().expect("id").to_owned();
    let approved = api
        .post(
            &format!("/v1/admin/certifications/{id}/approve"),
            Some(&operator),
            json!({}),
        )
        .await;
    let enterprise_id = approved["enterpriseId"]
        .as_str()
        .expect("enterprise id")
        .to_owned();
    let key = batch::generate().expect("key");
    api.put_json(
        "/v1/provider/gateway-key",
        &[],
        &token,
        json!({"publicKey": batch::encode_public_key(&key.verifying_key())}),
    )
    .await;
    (token, enterprise_id, key)
}

/// Issues `n` codes to the enterprise, as approved applications, 1000 rows a statement.
async fn seed_codes(url: &str, token_account: &str, enterprise: &str, n: usize) -> Duration {
    let store = Store::connect(url, 2).await.expect("store");
    let account: String = sqlx::query_scalar("SELECT id FROM accounts WHERE username = $1")
        .bind(token_account)
        .fetch_one(store.pool())
        .await
        .expect("account");
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let rows = (n - i).min(1000);
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let b = r * 4;
                format!(
                    "(${}, $1, $2, ${}, ${}, '0', '65', 'APPROVED', ${}, 0)",
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO identifier_applications (id, account_id, enterprise_id, province, city, \
             zone, industry, status, code, submitted_at) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&account)
            .bind(enterprise);
        for r in 0..rows {
            let (code, city) = code(enterprise, i + r);
            q = q
                .bind(format!("ida_bench_{}", i + r))
                .bind("440000")
                .bind(format!("44{city}00"))
                .bind(code);
        }
        q.execute(store.pool()).await.expect("seed codes");
        i += rows;
    }
    store.close().await;
    start.elapsed()
}

async fn ingest(api: &Api, key: &SigningKey, enterprise: &str, s: &Settings) -> (Latencies, f64) {
    let batches = s.identifiers.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let key_id = batch::key_id(&key.verifying_key());
    let start = Instant::now();
    let tasks: Vec<_> = (0..s.concurrency)
        .map(|_| {
            let api = api.clone();
            let next = Arc::clone(&next);
            let key = key.clone();
            let key_id = key_id.clone();
            let enterprise = enterprise.to_owned();
            let total = s.identifiers;
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        return samples;
                    }
                    let items: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(total))
                        .map(|i| identifier(&enterprise, i))
                        .collect();
                    let body = serde_json::to_vec(&json!({ "identifiers": items })).expect("json");
                    let signature = batch::sign(&key, &body);
                    let sent = Instant::now();
                    let data = api
                        .call(
                            api.client
                                .post(format!("{}/v1/gateway/identifiers", api.base))
                                .header("content-type", "application/json")
                                .header(batch::KEY_ID_HEADER, &key_id)
                                .header(batch::SIGNATURE_HEADER, signature)
                                .body(body),
                        )
                        .await;
                    samples.push(sent.elapsed());
                    assert_eq!(
                        data["accepted"].as_u64(),
                        Some(items.len() as u64),
                        "{data}"
                    );
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("sender"));
    }
    let elapsed = start.elapsed();
    let per_second = s.identifiers as f64 / elapsed.as_secs_f64();
    (Latencies::new(samples, elapsed), per_second)
}

async fn timed(api: &Api, path: &str, token: &str, query: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    api.get(path, token, query).await;
    start.elapsed()
}

async fn queries(api: &Api, enterprise: &str, s: &Settings) -> (Latencies, Latencies) {
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let mid = liutong::domain::timefmt::to_rfc3339(
        time::OffsetDateTime::from_unix_timestamp(EPOCH + s.identifiers as i64 / 2).expect("time"),
    );
    let end = liutong::domain::timefmt::to_rfc3339(
        time::OffsetDateTime::from_unix_timestamp(EPOCH + s.identifiers as i64 / 2 + 3600)
            .expect("time"),
    );
    let mixes: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("city", "440300")],
        vec![("status", "idle")],
        vec![("type", "bare_metal"), ("class", "ai")],
        vec![("from", mid.as_str()), ("to", end.as_str())],
        vec![("enterprise", enterprise)],
        vec![("offset", "1000")],
        vec![("province", "440000"), ("status", "offline")],
    ];
    let start = Instant::now();
    let mut samples = Vec::with_capacity(s.queries);
    let mut by_mix: Vec<Vec<Duration>> = vec![Vec::new(); mixes.len()];
    for q in 0..s.queries {
        let mix = &mixes[q % mixes.len()];
        let took = timed(api, "/v1/gateway/identifiers", &operator, mix).await;
        samples.push(took);
        by_mix[q % mixes.len()].push(took);
    }
    let query = Latencies::new(samples, start.elapsed());
    for (mix, samples) in mixes.iter().zip(by_mix) {
        let l = Latencies::new(samples, Duration::ZERO);
        println!(
            "  query {mix:?}: p50 {:.1} ms, max {:.1} ms",
            l.ms(0.5),
            l.ms(1.0)
        );
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    for q in 0..40 {
        let group = if q % 2 == 0 { "province" } else { "status" };
        samples.push(
            timed(
                api,
                "/v1/gateway/statistics",
                &operator,
                &[("groupBy", group)],
            )
            .await,
        );
    }
    (query, Latencies::new(samples, start.elapsed()))
}

async fn run_backend(url: &str, s: &Settings) -> Figures {
    let dir = tempfile::tempdir().expect("dir");
    let server = start_liutong(url.to_owned(), dir.path().to_owned());
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let (_token, enterprise_id, key) = enterprise(&api).await;
    let seeded = seed_codes(url, "acme", &enterprise_id, s.identifiers).await;
    let (ingest, per_second) = ingest(&api, &key, &enterprise_id, s).await;
    if url.starts_with("postgres") {
        // A bulk load just happened: give the planner the statistics autovacuum would gather
        // a little later, so the queries measure the steady state, not the first minute.
        let store = Store::connect(url, 1).await.expect("store");
        sqlx::query("ANALYZE gateway_identifiers")
            .execute(store.pool())
            .await
            .expect("analyze");
        store.close().await;
    }
    let (query, statistics) = queries(&api, &enterprise_id, s).await;
    drop(server);
    Figures {
        seeded,
        ingest,
        per_second,
        query,
        statistics,
    }
}

fn report(database: &str, f: &Figures, s: &Settings) {
    println!(
        "{database}: {} codes seeded in {:.1} s",
        s.identifiers,
        f.seeded.as_secs_f64()
    );
    println!(
        "{database}: ingested {} identifiers in {} signed batches of {BATCH} by {} senders in \
         {:.1} s: {:.0} identifiers/s (batch p50 {:.1} ms, p99 {:.1} ms)",
        s.identifiers,
        f.ingest.count(),
        s.concurrency,
        f.ingest.elapsed.as_secs_f64(),
        f.per_second,
        f.ingest.ms(0.5),
        f.ingest.ms(0.99)
    );
    println!(
        "{database}: {} queries over {} identifiers: p50 {:.1} ms, p99 {:.1} ms",
        f.query.count(),
        s.identifiers,
        f.query.ms(0.5),
        f.query.ms(0.99)
    );
    println!(
        "{database}: {} statistics (by province, by status): p50 {:.1} ms, p99 {:.1} ms",
        f.statistics.count(),
        f.statistics.ms(0.5),
        f.statistics.ms(0.99)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        identifiers: env_u64("LIUTONG_BENCH_IDENTIFIERS", 1_000_000) as usize,
        concurrency: env_u64("LIUTONG_BENCH_CONCURRENCY", 4) as usize,
        queries: env_u64("LIUTONG_BENCH_QUERIES", 500) as usize,
    };
    sqlx::any::install_default_drivers();
    on_each_backend(async |database, url| {
        let figures = run_backend(url, &s).await;
        report(database, &figures, &s);
    })
    .await;
}
