//! Compute orders benchmark: `cargo bench -p liutong --bench compute` (release build).
//!
//! Against one local moto server (an AWS-compatible EC2), in one run, side by side:
//!
//! 1. `RunInstances` called directly with a plain HTTP client, at concurrency 32: instances
//!    per second;
//! 2. compute orders through liutong at the same concurrency: each order posted
//!    (`POST /v1/compute/orders`, first period held on the ledger), provisioned by the
//!    background worker through the `aws-compute` provider plugin (a SigV4-signed
//!    `RunInstances`), and polled (every LIUTONG_BENCH_POLL_MS) until `ACTIVE`: orders driven to
//!    ACTIVE per second. Twice:
//!    with the plugin's `idempotency: "client-token"` (the same single `RunInstances` call as
//!    the direct path, as on AWS) and with its default `"tag-lookup"` (a `DescribeInstances`
//!    by tag first, which moto answers by scanning every instance it holds). Afterwards the
//!    check that moto holds exactly one instance per order and that the ledger audit is
//!    balanced.
//!
//! 3. bill lines synced per second: moto's Cost Explorer answers LIUTONG_BENCH_BILL_LINES
//!    (100 000) lines over the orders' resources, in pages of 1 000; one
//!    `POST /v1/admin/compute/bill-sync` lists them through the plugin, stores each once,
//!    matches and charges every one (a ledger posting each); a second sync of the same answer
//!    lists and finds them all stored (the listing's own cost). Afterwards the check that every
//!    line was charged once and the ledger audit is balanced.
//!
//! Settings (environment): LIUTONG_BENCH_CONCURRENCY (32), LIUTONG_BENCH_ORDERS (320 per
//! run), LIUTONG_BENCH_POLL_MS (50: how often each client asks for its order's state),
//! LIUTONG_BENCH_BILL_LINES (100000), LIUTONG_TEST_POSTGRES (admin URL or "skip"),
//! LIUTONG_BENCH_SQLITE ("skip").
//! Needs python3 with `moto[server]` (scripts/test.sh installs it).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    bill_lines: usize,
    /// How often a client asks for its order's state.
    poll: Duration,
}

/// Lines per Cost Explorer page.
const PAGE: usize = 1_000;

/// moto's Cost Explorer answers for `n` lines over `resources`: line `i` bills resource
/// `i % resources.len()` on day `i / resources.len()` (a unit of its own past 360 days), 0.01
/// each, in pages of `PAGE` chained by `NextPageToken`. The window that holds them.
fn bill_pages(resources: &[String], n: usize) -> (String, String, String) {
    let start = time::Date::from_calendar_date(2026, time::Month::January, 1).expect("date");
    let day = |d: usize| {
        let t = start + time::Duration::days(i64::try_from(d % 360).expect("day"));
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    };
    let pages: Vec<Value> = (0..n)
        .step_by(PAGE)
        .map(|first| {
            let mut by_day: Vec<(usize, Vec<Value>)> = Vec::new();
            for i in first..(first + PAGE).min(n) {
                let d = i / resources.len();
                let group = json!({"Keys": [resources[i % resources.len()]], "Metrics": {
                    "UnblendedCost": {"Amount": "0.01", "Unit": "CNY"},
                    "UsageQuantity": {"Amount": "24", "Unit": format!("Hrs-{}", d / 360)}}});
                match by_day.last_mut() {
                    Some((last, groups)) if *last == d => groups.push(group),
                    _ => by_day.push((d, vec![group])),
                }
            }
            let results: Vec<Value> = by_day
                .into_iter()
                .map(|(d, groups)| {
                    json!({"TimePeriod": {"Start": day(d), "End": day(d + 1)}, "Groups": groups,
                           "Total": {}, "Estimated": false})
                })
                .collect();
            let mut page = json!({"ResultsByTime": results, "DimensionValueAttributes": []});
            if first + PAGE < n {
                page["NextPageToken"] = json!(format!("page-{}", first / PAGE + 1));
            }
            page
        })
        .collect();
    (
        serde_json::to_string(&pages).expect("pages"),
        day(0),
        format!("{:04}-12-31", start.year()),
    )
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

/// A certified provider with two cloud-host offerings on moto (the plugin's idempotency by
/// client token, and by tag lookup), and a funded user: (user token, [offering ids]).
async fn setup(api: &Api, moto: &str) -> (String, [String; 2]) {
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
    let offering = async |idempotency: &str| {
        api.post(
            "/v1/compute/offerings",
            Some(&provider),
            json!({"resourceType": "cloud_host", "region": "us-east-1",
                   "spec": {"instanceType": "t3.micro", "imageId": IMAGE}, "price": 0.01,
                   "plugin": "aws-compute",
                   "config": {"endpoint": moto, "accessKeySecret": "aws-access-key-id",
                              "secretKeySecret": "aws-secret-access-key",
                              "idempotency": idempotency}}),
        )
        .await["offeringId"]
            .as_str()
            .expect("offeringId")
            .to_owned()
    };
    let offerings = [offering("client-token").await, offering("tag-lookup").await];
    let carol = api.user("carol").await;
    api.post(
        "/v1/admin/accounts/credit",
        Some(&operator),
        json!({"username": "carol", "amount": 10_000_000, "reference": "bench"}),
    )
    .await;
    (carol, offerings)
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

/// One order through liutong, from the POST to ACTIVE, asking for its state every `poll`.
async fn order_to_active(api: &Api, token: &str, offering: &str, key: String, poll: Duration) {
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
            _ => tokio::time::sleep(poll).await,
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
    common::signed_package(
        "provider-aws-compute",
        "aws-compute",
        &dir.path().join("trusted"),
        &dir.path().join("packages"),
    );
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
    let (token, offerings) = setup(&api, &endpoint).await;
    // Warm-up: connections, the plugin's first instantiations.
    for i in 0..8 {
        run_instance(&client, &endpoint).await;
        order_to_active(&api, &token, &offerings[i % 2], format!("warm-{i}"), s.poll).await;
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
    let mut via = Vec::new();
    for (mode, offering) in offerings.iter().enumerate() {
        let (api, token, offering, poll) = (api.clone(), token.clone(), offering.clone(), s.poll);
        via.push(
            drive(s.orders, s.concurrency, move |i| {
                let (api, token, offering) = (api.clone(), token.clone(), offering.clone());
                async move {
                    order_to_active(&api, &token, &offering, format!("o-{mode}-{i}"), poll).await
                }
            })
            .await,
        );
    }

    // Exact: one instance per direct call and per order, no more.
    assert_eq!(instances(&moto) - before, 3 * s.orders, "instances at moto");
    let operator = api.token("operator", OPERATOR_PASSWORD).await;
    let audit = api.get("/v1/admin/ledger/audit", &operator, &[]).await;
    assert_eq!(audit["balanced"], true, "{audit}");
    let direct_rate = s.orders as f64 / direct.as_secs_f64();
    println!(
        "| database | path | count | seconds | per second (c={}, polling every {} ms) |",
        s.concurrency,
        s.poll.as_millis()
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {database} | RunInstances directly | {} | {:.2} | {direct_rate:.0} |",
        s.orders,
        direct.as_secs_f64()
    );
    let mut ratios = Vec::new();
    for (mode, took) in ["client-token", "tag-lookup"].iter().zip(&via) {
        let rate = s.orders as f64 / took.as_secs_f64();
        println!(
            "| {database} | orders to ACTIVE through liutong ({mode}) | {} | {:.2} | {rate:.0} |",
            s.orders,
            took.as_secs_f64()
        );
        ratios.push(format!("{mode} {:.0} %", 100.0 * rate / direct_rate));
    }
    println!(
        "{database}: liutong at {} of direct; one instance per order, ledger balanced: exact",
        ratios.join(", ")
    );

    // Bill lines over every order's resource.
    let orders = api
        .get(
            "/v1/compute/orders",
            &operator,
            &[("state", "ACTIVE"), ("limit", "1000")],
        )
        .await;
    let resources: Vec<String> = orders["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["providerResourceId"].as_str().map(str::to_owned))
        .collect();
    let (pages, from, to) = bill_pages(&resources, s.bill_lines);
    let sync = async || {
        moto.set_cost_and_usage(&pages);
        let started = Instant::now();
        let report = api
            .post(
                "/v1/admin/compute/bill-sync",
                Some(&operator),
                json!({"from": from, "to": to}),
            )
            .await;
        (started.elapsed(), report)
    };
    let (first, report) = sync().await;
    let n = s.bill_lines as u64;
    // The two offerings' configs differ: the provider's bill is listed once for each, and
    // each line stored once.
    assert_eq!(
        (&report["new"], &report["charged"]),
        (&json!(n), &json!(n)),
        "{report}"
    );
    let listed = report["listed"].as_u64().unwrap_or_default();
    let (again, report) = sync().await;
    assert_eq!(
        (&report["new"], &report["charged"]),
        (&json!(0), &json!(0)),
        "{report}"
    );
    let audit = api.get("/v1/admin/ledger/audit", &operator, &[]).await;
    assert_eq!(audit["balanced"], true, "{audit}");
    println!("| database | bill sync | lines (listed) | seconds | lines per second |");
    println!("|---|---|---|---|---|");
    println!(
        "| {database} | first: list, store, match, charge | {n} ({listed}) | {:.2} | {:.0} |",
        first.as_secs_f64(),
        n as f64 / first.as_secs_f64()
    );
    println!(
        "| {database} | again: list, all stored already | {n} ({listed}) | {:.2} | {:.0} |",
        again.as_secs_f64(),
        n as f64 / again.as_secs_f64()
    );
    println!(
        "{database}: {n} lines over {} resources charged once each, ledger balanced: exact",
        resources.len()
    );
    drop(server);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        concurrency: env_u64("LIUTONG_BENCH_CONCURRENCY", 32) as usize,
        orders: env_u64("LIUTONG_BENCH_ORDERS", 320) as usize,
        bill_lines: env_u64("LIUTONG_BENCH_BILL_LINES", 100_000) as usize,
        poll: Duration::from_millis(env_u64("LIUTONG_BENCH_POLL_MS", 50)),
    };
    sqlx::any::install_default_drivers();
    on_each_backend(async |database, url| {
        run_backend(database, url, &s).await;
    })
    .await;
}
