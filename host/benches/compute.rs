//! Compute orders benchmark: `cargo bench -p liutong --bench compute` (release build).
//!
//! Against one local moto server (an AWS-compatible EC2), in one run, side by side:
//!
//! 1. `RunInstances` called directly with a plain HTTP client, at concurrency 32: instances
//!    per second;
//! 2. compute orders through liutong at the same concurrency: each order posted
//!    (`POST /v1/compute/orders`, first period held on the ledger), provisioned by the
//!    background worker through the `aws-compute` provider plugin (a tag lookup and a
//!    SigV4-signed `RunInstances`), and polled until `ACTIVE`: orders driven to ACTIVE per
//!    second. Afterwards the check that moto holds exactly one instance per order and that the
//!    ledger audit is balanced.
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_ORDERS (320 per
//! run), LIUTONG_TEST_POSTGRES (admin URL or "skip"), LIUTONG_BENCH_SQLITE ("skip").
//! Needs python3 with `moto[server]` (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use liutong_plugin_runtime::{Package, PublisherKey};
use liutong_testkit::moto::Moto;
use serde_json::{Value, json};

mod common;
use common::{Api, env_u64, on_each_backend, run_server};

const OPERATOR_PASSWORD: &str = "bench-operator-1";
const POOL_SIZE: u32 = 16;
const IMAGE: &str = "ami-12c6146b";
/// moto takes any credentials without a `/`; cargo sets this for every bench process.
const CREDENTIAL_ENV: &str = "CARGO_PKG_NAME";

struct Settings {
    concurrency: usize,
    orders: usize,
}

/// The `aws-compute` package, signed by a fresh publisher whose key goes into `trust`.
fn provider_package(trust: &Path, out: &Path) {
    let (manifest, component) = common::guest("provider-aws-compute");
    let key = PublisherKey::generate("liutong-bench");
    std::fs::create_dir_all(trust).expect("trust dir");
    std::fs::write(trust.join("bench.pub"), key.public().to_json()).expect("trusted key");
    std::fs::create_dir_all(out).expect("packages dir");
    std::fs::write(
        out.join("aws-compute.ltpkg"),
        key.sign(Package::build(manifest, component)).to_bytes(),
    )
    .expect("package");
}

fn start_liutong(database_url: String, dir: PathBuf, moto_authority: String) -> common::Running {
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
            "aws-compute".into(),
            liutong::config::PluginGrant {
                http: vec![moto_authority],
                secrets: vec!["aws-access-key-id".into(), "aws-secret-access-key".into()],
            },
        );
        for name in ["aws-access-key-id", "aws-secret-access-key"] {
            config
                .plugins
                .secret_env
                .insert(name.into(), CREDENTIAL_ENV.into());
        }
        config.compute.poll_interval_ms = 20;
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

/// A certified provider with a cloud-host offering on moto, and a funded user: (user token,
/// offering id).
async fn setup(api: &Api, moto: &str) -> (String, String) {
    let provider = api.user("cloudco").await;
    let form = reqwest::multipart::Form::new()
        .part(
            "info",
            reqwest::multipart::Part::text(
                json!({"enterpriseName": "Cloudco 算力有限公司",
                       "creditCode": "91440300MA5ELPB95W", "legalRepresentative": "张三",
                       "contactName": "李四", "contactPhone": "13800138000",
                       "contactEmail": "ops@cloudco.example"})
                .to_string(),
            )
            .mime_str("application/json")
            .expect("mime"),
        )
        .part(
            "document",
            reqwest::multipart::Part::bytes(
                b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n".to_vec(),
            )
            .file_name("licence.pdf")
            .mime_str("application/pdf")
            .expect("mime"),
        );
    let submitted = api
        .call(
            api.client
                .post(format!("{}/v1/provider/certification", api.base))
                .header("X-Auth-Token", &provider)
                .multipart(form),
        )
        .await;
    let id = submitted["certificationId"]
        .as_str()
        .expect("certificationId");
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    api.post(
        &format!("/v1/admin/certifications/{id}/approve"),
        Some(&operator),
        json!({}),
    )
    .await;
    let offering = api
        .post(
            "/v1/compute/offerings",
            Some(&provider),
            json!({"resourceType": "cloud_host", "region": "us-east-1",
                   "spec": {"instanceType": "t3.micro", "imageId": IMAGE}, "price": 0.01,
                   "plugin": "aws-compute",
                   "config": {"endpoint": moto, "accessKeySecret": "aws-access-key-id",
                              "secretKeySecret": "aws-secret-access-key"}}),
        )
        .await["offeringId"]
        .as_str()
        .expect("offeringId")
        .to_owned();
    let carol = api.user("carol").await;
    api.post(
        "/v1/admin/accounts/credit",
        Some(&operator),
        json!({"username": "carol", "amount": 10_000_000, "reference": "bench"}),
    )
    .await;
    (carol, offering)
}

/// `RunInstances` straight to moto (moto reads the service from the credential scope and
/// does not check signatures).
async fn run_instance(client: &reqwest::Client, moto: &str) {
    let resp = client
        .post(format!("{moto}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(format!(
            "Action=RunInstances&Version=2016-11-15&ImageId={IMAGE}&InstanceType=t3.micro\
             &MinCount=1&MaxCount=1"
        ))
        .send()
        .await
        .expect("moto answers");
    assert!(
        resp.status().is_success(),
        "RunInstances: {}",
        resp.status()
    );
    let body = resp.text().await.expect("body");
    assert!(body.contains("<instanceId>"), "{body}");
}

/// `n` jobs over `workers` tasks: how long all took.
async fn drive<F, Fut>(n: usize, workers: usize, job: F) -> Duration
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (job, next) = (job.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    job(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    start.elapsed()
}

/// One order through liutong, from the POST to ACTIVE.
async fn order_to_active(api: &Api, token: &str, offering: &str, key: String) {
    let created = api
        .call(
            api.client
                .post(format!("{}/v1/compute/orders", api.base))
                .header("X-Auth-Token", token)
                .header("Idempotency-Key", key)
                .json(&json!({"offeringId": offering})),
        )
        .await;
    let id = created["orderId"].as_str().expect("orderId").to_owned();
    loop {
        let v = api
            .get(&format!("/v1/compute/orders/{id}"), token, &[])
            .await;
        match v["state"].as_str() {
            Some("ACTIVE") => return,
            Some("FAILED") => panic!("order failed: {v}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn instances(moto: &Moto) -> usize {
    let v: Value = serde_json::from_str(&moto.inventory()).expect("inventory");
    v["instances"].as_array().map_or(0, Vec::len)
}

async fn run_backend(database: &str, database_url: &str, s: &Settings) {
    let moto = Moto::start();
    let endpoint = moto.endpoint();
    let dir = tempfile::tempdir().expect("dir");
    provider_package(&dir.path().join("trusted"), &dir.path().join("packages"));
    let server = start_liutong(
        database_url.to_owned(),
        dir.path().to_owned(),
        format!("127.0.0.1:{}", moto.port),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(s.concurrency * 2)
        .build()
        .expect("client");
    let api = Api {
        client: client.clone(),
        base: server.base.clone(),
    };
    let (token, offering) = setup(&api, &endpoint).await;
    // Warm-up: connections, the plugin's first instantiations.
    for i in 0..8 {
        run_instance(&client, &endpoint).await;
        order_to_active(&api, &token, &offering, format!("warm-{i}")).await;
    }
    let before = instances(&moto);

    let direct = {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        drive(s.orders, s.concurrency, move |_| {
            let (client, endpoint) = (client.clone(), endpoint.clone());
            async move { run_instance(&client, &endpoint).await }
        })
        .await
    };
    let via = {
        let (api, token, offering) = (api.clone(), token.clone(), offering.clone());
        drive(s.orders, s.concurrency, move |i| {
            let (api, token, offering) = (api.clone(), token.clone(), offering.clone());
            async move { order_to_active(&api, &token, &offering, format!("o-{i}")).await }
        })
        .await
    };

    // Exact: one instance per direct call and per order, no more.
    assert_eq!(instances(&moto) - before, 2 * s.orders, "instances at moto");
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let audit = api.get("/v1/admin/ledger/audit", &operator, &[]).await;
    assert_eq!(audit["balanced"], true, "{audit}");
    let direct_rate = s.orders as f64 / direct.as_secs_f64();
    let via_rate = s.orders as f64 / via.as_secs_f64();
    println!(
        "| database | path | count | seconds | per second (c={}) |",
        s.concurrency
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {database} | RunInstances directly | {} | {:.2} | {direct_rate:.0} |",
        s.orders,
        direct.as_secs_f64()
    );
    println!(
        "| {database} | orders to ACTIVE through liutong | {} | {:.2} | {via_rate:.0} |",
        s.orders,
        via.as_secs_f64()
    );
    println!(
        "{database}: liutong at {:.0} % of direct; one instance per order, ledger balanced: exact",
        100.0 * via_rate / direct_rate
    );
    drop(server);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        concurrency: env_u64("LIUTONG_BENCH_CONCURRENCY", 32) as usize,
        orders: env_u64("LIUTONG_BENCH_ORDERS", 320) as usize,
    };
    sqlx::any::install_default_drivers();
    on_each_backend(async |database, url| {
        run_backend(database, url, &s).await;
    })
    .await;
}
