//! Compute provider access, deep access: offerings and orders of the four resource types
//! provisioned, operated and reclaimed through the reference `aws-compute` provider plugin
//! against a local moto server (EC2, EFS, S3), on both databases; the faults (moto down while
//! provisioning, a provider plugin that traps or loops).

use std::time::{Duration, Instant};

use liutong_testkit::moto::Moto;
use serde_json::{Value, json};

use crate::provider::certified;
use crate::support::{Backend, TestApp};

const IMAGE: &str = "ami-12c6146b";

/// moto takes any credentials without a `/` (it reads the signature's scope): the secrets are
/// read from a variable cargo sets for every test process (`liutong`), so no test has to
/// change the environment.
const CREDENTIAL_ENV: &str = "CARGO_PKG_NAME";

/// A server whose `aws-compute` plugin may reach moto, with the secrets it names, and a
/// worker that polls and retries quickly.
async fn compute_app(backend: Backend, moto: &Moto) -> TestApp {
    compute_app_with(backend, moto, |_| {}).await
}

async fn compute_app_with(
    backend: Backend,
    moto: &Moto,
    adjust: impl FnOnce(&mut liutong::config::Config),
) -> TestApp {
    assert!(
        std::env::var(CREDENTIAL_ENV).is_ok_and(|v| !v.contains('/')),
        "run the tests with cargo: it sets {CREDENTIAL_ENV}"
    );
    let grant = format!("127.0.0.1:{}", moto.port);
    let app = TestApp::spawn_with(backend, |c| {
        c.plugins.grants.insert(
            "aws-compute".into(),
            liutong::config::PluginGrant {
                http: vec![grant.clone()],
                secrets: vec!["aws-access-key-id".into(), "aws-secret-access-key".into()],
            },
        );
        for name in ["aws-access-key-id", "aws-secret-access-key"] {
            c.plugins
                .secret_env
                .insert(name.into(), CREDENTIAL_ENV.into());
        }
        c.compute.poll_interval_ms = 100;
        c.compute.retry_initial_ms = 200;
        c.compute.retry_max_ms = 1_000;
        c.compute.max_attempts = 100;
        adjust(c);
    })
    .await;
    app.installed("provider-aws-compute").await;
    app
}

fn aws_config(moto: &Moto) -> Value {
    json!({"endpoint": moto.endpoint(), "accessKeySecret": "aws-access-key-id",
           "secretKeySecret": "aws-secret-access-key"})
}

async fn offering(
    app: &TestApp,
    provider: &str,
    resource_type: &str,
    spec: Value,
    plugin: &str,
    config: Value,
) -> String {
    let r = app
        .post(
            "/v1/compute/offerings",
            Some(provider),
            &json!({"resourceType": resource_type, "region": "us-east-1", "spec": spec,
                    "price": 1.5, "plugin": plugin, "config": config}),
        )
        .await;
    r.ok()["offeringId"]
        .as_str()
        .expect("offeringId")
        .to_owned()
}

async fn order(app: &TestApp, token: &str, offering_id: &str, key: &str) -> crate::support::Resp {
    app.send(
        app.client
            .post(app.url("/v1/compute/orders"))
            .header("X-Auth-Token", token)
            .header("Idempotency-Key", key)
            .json(&json!({"offeringId": offering_id})),
    )
    .await
}

/// Polls the order until `state` (panics after 60 s with the last answer).
async fn wait_for(app: &TestApp, token: &str, order_id: &str, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = app
            .get(&format!("/v1/compute/orders/{order_id}"), Some(token), &[])
            .await;
        let v = r.ok().clone();
        if v["state"] == state {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "order {order_id} never reached {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn inventory(moto: &Moto) -> Value {
    serde_json::from_str(&moto.inventory()).expect("inventory JSON")
}

async fn four_resource_types_are_provisioned_operated_and_reclaimed(backend: Backend) {
    let moto = Moto::start();
    let app = compute_app(backend, &moto).await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 100.0, "c-1").await.ok();

    // Only a certified enterprise publishes, and only through a provider plugin.
    let uncertified = app.user("dave").await;
    app.post(
        "/v1/compute/offerings",
        Some(&uncertified),
        &json!({"resourceType": "cloud_host", "region": "us-east-1", "spec": {}, "price": 1,
                "plugin": "aws-compute", "config": {}}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    let bad = app
        .post(
            "/v1/compute/offerings",
            Some(&provider),
            &json!({"resourceType": "mainframe", "region": "us-east-1", "spec": {}, "price": 1,
                    "plugin": "aws-compute", "config": {}}),
        )
        .await;
    bad.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        bad.error_msg().contains("/resourceType"),
        "{}",
        bad.error_msg()
    );

    let config = aws_config(&moto);
    let host = offering(
        &app,
        &provider,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
        "aws-compute",
        config.clone(),
    )
    .await;
    let metal = offering(
        &app,
        &provider,
        "bare_metal",
        json!({"instanceType": "m5.metal", "imageId": IMAGE}),
        "aws-compute",
        config.clone(),
    )
    .await;
    let files = offering(
        &app,
        &provider,
        "file_service",
        json!({}),
        "aws-compute",
        config.clone(),
    )
    .await;
    let storage = offering(
        &app,
        &provider,
        "storage_service",
        json!({}),
        "aws-compute",
        config,
    )
    .await;
    let listed = app.get("/v1/compute/offerings", Some(&carol), &[]).await;
    assert_eq!(listed.ok()["offerings"].as_array().expect("list").len(), 4);

    // Ordering needs an Idempotency-Key; the same key is the same order.
    app.post(
        "/v1/compute/orders",
        Some(&carol),
        &json!({"offeringId": host}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let mut orders = Vec::new();
    for (i, offering_id) in [&host, &metal, &files, &storage].into_iter().enumerate() {
        let key = format!("k-{i}");
        let first = order(&app, &carol, offering_id, &key).await;
        let id = first.ok()["orderId"].as_str().expect("orderId").to_owned();
        let again = order(&app, &carol, offering_id, &key).await;
        assert_eq!(again.ok()["orderId"], id.as_str());
        orders.push(id);
    }
    // Four first periods held.
    assert_eq!(app.balance(&carol).await, 94.0);

    let mut resources = Vec::new();
    for id in &orders {
        let v = wait_for(&app, &carol, id, "ACTIVE").await;
        let resource = v["providerResourceId"]
            .as_str()
            .expect("resource")
            .to_owned();
        assert!(v["endpoint"].is_object(), "{v}");
        resources.push(resource);
    }
    let inv = inventory(&moto);
    let instances = inv["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 2, "one instance per order: {inv}");
    for (resource, instance_type) in [(&resources[0], "t3.micro"), (&resources[1], "m5.metal")] {
        assert!(
            instances
                .iter()
                .any(|i| i["id"] == resource.as_str() && i["type"] == instance_type),
            "{inv}"
        );
    }
    assert_eq!(inv["fileSystems"][0]["id"], resources[2].as_str());
    assert_eq!(inv["buckets"], json!([resources[3]]));

    // Operate the cloud host; a file service has no such operation.
    let stopped = app
        .post(
            &format!("/v1/compute/orders/{}/actions", orders[0]),
            Some(&carol),
            &json!({"action": "stop"}),
        )
        .await;
    assert_eq!(stopped.ok()["resourceState"], "stopped");
    let resized = app
        .post(
            &format!("/v1/compute/orders/{}/actions", orders[0]),
            Some(&carol),
            &json!({"action": "resize", "size": "t3.large"}),
        )
        .await;
    assert_eq!(resized.ok()["endpoint"]["instanceType"], "t3.large");
    let started = app
        .post(
            &format!("/v1/compute/orders/{}/actions", orders[0]),
            Some(&carol),
            &json!({"action": "start"}),
        )
        .await;
    assert_eq!(started.ok()["resourceState"], "running");
    app.post(
        &format!("/v1/compute/orders/{}/actions", orders[2]),
        Some(&carol),
        &json!({"action": "reboot"}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    // Someone else's order is not found.
    let dave = app.user("erin").await;
    app.get(
        &format!("/v1/compute/orders/{}", orders[0]),
        Some(&dave),
        &[],
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // Reclaim all four; each is gone at the provider.
    for id in &orders {
        let r = app
            .send(
                app.client
                    .delete(app.url(&format!("/v1/compute/orders/{id}")))
                    .header("X-Auth-Token", &carol),
            )
            .await;
        assert!(
            ["RECLAIMING", "RECLAIMED"].contains(&r.ok()["state"].as_str().unwrap_or_default()),
            "{}",
            r.ok()
        );
    }
    for id in &orders {
        let v = wait_for(&app, &carol, id, "RECLAIMED").await;
        assert_eq!(v["charged"], 1.5, "{v}");
    }
    let inv = inventory(&moto);
    assert!(
        inv["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .all(|i| i["state"] == "terminated"),
        "{inv}"
    );
    assert_eq!(inv["fileSystems"], json!([]));
    assert_eq!(inv["buckets"], json!([]));

    // One period each was charged to carol and paid to the provider; the books balance.
    assert_eq!(app.balance(&carol).await, 94.0);
    assert_eq!(app.balance(&provider).await, 6.0);
    let operator = app.operator().await;
    let audit = app
        .get("/v1/admin/ledger/audit", Some(&operator), &[])
        .await;
    assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
    let listed = app
        .get(
            "/v1/compute/orders",
            Some(&carol),
            &[("state", "RECLAIMED")],
        )
        .await;
    assert_eq!(listed.ok()["orders"].as_array().expect("orders").len(), 4);
}

async fn provisioning_retries_until_the_provider_is_back(backend: Backend) {
    let mut moto = Moto::start();
    let app = compute_app(backend, &moto).await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 10.0, "c-1").await.ok();
    let host = offering(
        &app,
        &provider,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
        "aws-compute",
        aws_config(&moto),
    )
    .await;

    moto.stop();
    let id = order(&app, &carol, &host, "k-1").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    // The provider is unreachable: the order stays PROVISIONING, retrying, with the reason.
    let started = Instant::now();
    let v = loop {
        let v = app
            .get(&format!("/v1/compute/orders/{id}"), Some(&carol), &[])
            .await
            .ok()
            .clone();
        if v["attempts"].as_i64().unwrap_or_default() >= 2 {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no retries: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["state"], "PROVISIONING", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be reached"),
        "{v}"
    );

    moto.resume();
    let v = wait_for(&app, &carol, &id, "ACTIVE").await;
    assert!(v["error"].is_null(), "{v}");
    let inv = inventory(&moto);
    assert_eq!(
        inv["instances"].as_array().expect("instances").len(),
        1,
        "{inv}"
    );
}

async fn a_provider_plugin_that_traps_or_loops_fails_the_order(backend: Backend) {
    let moto = Moto::start();
    let app = compute_app(backend, &moto).await;
    app.installed("fixtures/fixture-provider-faults").await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 10.0, "c-1").await.ok();
    for (i, (mode, reason)) in [("trap", "trap"), ("loop", "time")].into_iter().enumerate() {
        let o = offering(
            &app,
            &provider,
            "cloud_host",
            json!({}),
            "fixture-provider-faults",
            json!({"mode": mode}),
        )
        .await;
        let id = order(&app, &carol, &o, &format!("k-{i}")).await.ok()["orderId"]
            .as_str()
            .expect("orderId")
            .to_owned();
        let v = wait_for(&app, &carol, &id, "FAILED").await;
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("fixture-provider-faults") && error.contains(reason),
            "{mode}: {v}"
        );
        // Nothing was charged: the hold is back.
        assert_eq!(v["charged"], 0.0);
        assert_eq!(app.balance(&carol).await, 10.0);
    }
    let health = app.get("/healthz", None, &[]).await;
    assert_eq!(health.status, 200);
    let operator = app.operator().await;
    let audit = app
        .get("/v1/admin/ledger/audit", Some(&operator), &[])
        .await;
    assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
}

/// A TCP proxy in front of moto that forwards each request at once but holds each answer back
/// for `delay`: a provider call is executed by the provider well before its caller hears of it.
/// The flag turns true once a request carrying `watch` went through.
async fn slow_proxy(
    target: u16,
    delay: Duration,
    watch: &'static [u8],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy binds");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if upstream_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if buf[..n].windows(watch.len()).any(|w| w == watch) {
                            flag.store(true, Ordering::SeqCst);
                        }
                    }
                });
                tokio::time::sleep(delay).await;
                let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                up.abort();
            });
        }
    });
    (port, seen)
}

fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.to_string_lossy())
}

/// kill -9 of the real binary after the provider made the instance but before the plugin heard
/// back: after the restart the order resumes with the same client token and ends ACTIVE with
/// that one instance — none leaked, none made twice.
async fn kill_during_provisioning(backend: Backend) {
    use crate::support::plugins::{shared_cache_dir, trust_test_publisher};
    let moto = Moto::start();
    let delay = Duration::from_secs(3);
    let (proxy, run_instances) = slow_proxy(moto.port, delay, b"Action=RunInstances").await;
    let dir = tempfile::tempdir().expect("dir");
    let trust = dir.path().join("trusted");
    trust_test_publisher(&trust);
    let extra = format!(
        "[plugins]\ntrust_dir = {}\ncache_dir = {}\n\n\
         [plugins.grants.aws-compute]\nhttp = [\"127.0.0.1:{proxy}\"]\n\
         secrets = [\"aws-access-key-id\", \"aws-secret-access-key\"]\n\n\
         [plugins.secret_env]\naws-access-key-id = \"{CREDENTIAL_ENV}\"\naws-secret-access-key = \"{CREDENTIAL_ENV}\"\n\n\
         [compute]\npoll_interval_ms = 100\nretry_initial_ms = 200\nretry_max_ms = 1000\n\
         lease_ms = 10000\n",
        toml_path(&trust),
        toml_path(&shared_cache_dir()),
    );
    let mut app = TestApp::spawn_binary(backend, &extra).await;
    app.installed("provider-aws-compute").await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 10.0, "c-1").await.ok();
    let host = offering(
        &app,
        &provider,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
        "aws-compute",
        json!({"endpoint": format!("http://127.0.0.1:{proxy}"),
               "accessKeySecret": "aws-access-key-id",
               "secretKeySecret": "aws-secret-access-key"}),
    )
    .await;
    let id = order(&app, &carol, &host, "k-1").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    wait_for(&app, &carol, &id, "PROVISIONING").await;
    // The lookup's answer takes `delay`, then RunInstances goes to moto at once and its answer
    // takes `delay` again: kill in the middle of that second wait.
    let started = Instant::now();
    while !run_instances.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "RunInstances never went out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(delay / 3).await;
    app.kill9().await;
    let inv = inventory(&moto);
    assert_eq!(
        inv["instances"].as_array().expect("instances").len(),
        1,
        "{inv}"
    );
    let state = app
        .store
        .compute_order(&id)
        .await
        .expect("read")
        .expect("order")
        .state;
    assert_eq!(state.as_str(), "PROVISIONING", "the kill came too late");

    app.restart_binary().await;
    let v = wait_for(&app, &carol, &id, "ACTIVE").await;
    let inv = inventory(&moto);
    let instances = inv["instances"].as_array().expect("instances");
    assert_eq!(
        instances.len(),
        1,
        "exactly one resource for the order: {inv}"
    );
    assert_eq!(v["providerResourceId"], instances[0]["id"]);
}

/// Prepaid: a balance that covers only the first period. When the next one starts the resource
/// is stopped (the balance never goes negative), and reclaimed once the grace period passes;
/// the period used is charged, the provider paid.
async fn an_exhausted_balance_stops_then_reclaims(backend: Backend) {
    let moto = Moto::start();
    let app = compute_app_with(backend, &moto, |c| {
        c.compute.hour_ms = 3_000;
        c.compute.grace_period_ms = 3_000;
    })
    .await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 2.0, "c-1").await.ok();
    let host = offering(
        &app,
        &provider,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
        "aws-compute",
        aws_config(&moto),
    )
    .await;
    // 2.00 covers one period of 1.50, not two.
    let id = order(&app, &carol, &host, "k-1").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    wait_for(&app, &carol, &id, "ACTIVE").await;
    let started = Instant::now();
    let v = loop {
        let v = app
            .get(&format!("/v1/compute/orders/{id}"), Some(&carol), &[])
            .await
            .ok()
            .clone();
        // Suspension is written first, then the provider stops the resource.
        if (v["suspended"] == true && v["resourceState"] == "stopped") || v["state"] != "ACTIVE" {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never suspended: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["state"], "ACTIVE", "{v}");
    assert_eq!(v["resourceState"], "stopped", "{v}");
    // Starting it again needs the money first.
    app.post(
        &format!("/v1/compute/orders/{id}/actions"),
        Some(&carol),
        &json!({"action": "start"}),
    )
    .await
    .expect_error(402, "PAYMENT_REQUIRED");
    assert_eq!(app.balance(&carol).await, 0.5);

    let v = wait_for(&app, &carol, &id, "RECLAIMED").await;
    assert_eq!(v["charged"], 1.5, "{v}");
    assert_eq!(app.balance(&carol).await, 0.5);
    assert_eq!(app.balance(&provider).await, 1.5);
    let inv = inventory(&moto);
    assert_eq!(inv["instances"][0]["state"], "terminated", "{inv}");
    let operator = app.operator().await;
    let audit = app
        .get("/v1/admin/ledger/audit", Some(&operator), &[])
        .await;
    assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both!(
    four_resource_types_are_provisioned_operated_and_reclaimed,
    provisioning_retries_until_the_provider_is_back,
    a_provider_plugin_that_traps_or_loops_fails_the_order,
    kill_during_provisioning,
    an_exhausted_balance_stops_then_reclaims,
);
