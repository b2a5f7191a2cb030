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

/// An offering served by the reference plugin on `moto`.
async fn aws_offering(
    app: &TestApp,
    provider: &str,
    moto: &Moto,
    resource_type: &str,
    spec: Value,
) -> String {
    offering(
        app,
        provider,
        resource_type,
        spec,
        "aws-compute",
        aws_config(moto),
    )
    .await
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

/// A server (see `compute_app_with`), the certified provider `cloudco` with a t3.micro host
/// offering, and carol, credited `credit`, with one ACTIVE order of it.
struct HostOrder {
    app: TestApp,
    provider: String,
    carol: String,
    id: String,
    view: Value,
}

async fn active_host_order(
    backend: Backend,
    moto: &Moto,
    credit: f64,
    adjust: impl FnOnce(&mut liutong::config::Config),
) -> HostOrder {
    let app = compute_app_with(backend, moto, adjust).await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", credit, "c-1").await.ok();
    let host = aws_offering(
        &app,
        &provider,
        moto,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
    )
    .await;
    let id = order(&app, &carol, &host, "k-1").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    let view = wait_for(&app, &carol, &id, "ACTIVE").await;
    HostOrder {
        app,
        provider,
        carol,
        id,
        view,
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

    let host = aws_offering(
        &app,
        &provider,
        &moto,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
    )
    .await;
    let metal = aws_offering(
        &app,
        &provider,
        &moto,
        "bare_metal",
        json!({"instanceType": "m5.metal", "imageId": IMAGE}),
    )
    .await;
    let files = aws_offering(&app, &provider, &moto, "file_service", json!({})).await;
    let storage = aws_offering(&app, &provider, &moto, "storage_service", json!({})).await;
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
        // The provider's bill is the charge: until it comes, the period used stays held.
        assert_eq!(v["charged"], 0.0, "{v}");
        assert_eq!(v["held"], 1.5, "{v}");
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

    // One period each stays held from carol for the provider's bills (see
    // bills_are_synced_once_matched_charged_and_reconciled); the books balance.
    assert_eq!(app.balance(&carol).await, 94.0);
    assert_eq!(app.balance(&provider).await, 0.0);
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
    let host = aws_offering(
        &app,
        &provider,
        &moto,
        "cloud_host",
        json!({"instanceType": "t3.micro", "imageId": IMAGE}),
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
    // Listing their bills fails the same way: the sync answers which, and goes on.
    let operator = app.operator().await;
    let synced = app
        .post("/v1/admin/compute/bill-sync", Some(&operator), &json!({}))
        .await;
    let failures = synced.ok()["failures"].clone();
    let messages: Vec<&str> = failures
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(messages.len(), 2, "{failures}");
    assert!(
        messages[0].contains("trap") && messages[1].contains("time"),
        "{failures}"
    );
    assert_eq!(synced.ok()["providers"], 1, "{}", synced.ok());
    let health = app.get("/healthz", None, &[]).await;
    assert_eq!(health.status, 200);
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
/// the period used stays held for the provider's bill.
async fn an_exhausted_balance_stops_then_reclaims(backend: Backend) {
    let moto = Moto::start();
    // 2.00 covers one period of 1.50, not two.
    let HostOrder {
        app,
        provider,
        carol,
        id,
        ..
    } = active_host_order(backend, &moto, 2.0, |c| {
        c.compute.hour_ms = 3_000;
        c.compute.grace_period_ms = 3_000;
    })
    .await;
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
    assert_eq!(v["held"], 1.5, "{v}");
    assert_eq!(v["charged"], 0.0, "{v}");
    assert_eq!(app.balance(&carol).await, 0.5);
    assert_eq!(app.balance(&provider).await, 0.0);
    let inv = inventory(&moto);
    assert_eq!(inv["instances"][0]["state"], "terminated", "{inv}");
    let operator = app.operator().await;
    let audit = app
        .get("/v1/admin/ledger/audit", Some(&operator), &[])
        .await;
    assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
}

/// The reference plugin's `idempotency` option: `client-token` provisions with the one
/// `RunInstances` call (the instance carries the order's client token), and a value it does
/// not know fails the order with the reason instead of guessing.
async fn the_plugins_idempotency_option(backend: Backend) {
    let moto = Moto::start();
    let app = compute_app(backend, &moto).await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 10.0, "c-1").await.ok();
    let spec = json!({"instanceType": "t3.micro", "imageId": IMAGE});
    let mut config = aws_config(&moto);
    config["idempotency"] = json!("client-token");
    let one_call = offering(
        &app,
        &provider,
        "cloud_host",
        spec.clone(),
        "aws-compute",
        config.clone(),
    )
    .await;
    config["idempotency"] = json!("sometimes");
    let unknown = offering(&app, &provider, "cloud_host", spec, "aws-compute", config).await;

    let id = order(&app, &carol, &one_call, "k-1").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    let v = wait_for(&app, &carol, &id, "ACTIVE").await;
    let inv = inventory(&moto);
    let instances = inv["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 1, "{inv}");
    assert_eq!(instances[0]["id"], v["providerResourceId"], "{inv}");
    assert!(
        instances[0]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{inv}"
    );

    let id = order(&app, &carol, &unknown, "k-2").await.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    let v = wait_for(&app, &carol, &id, "FAILED").await;
    let error = v["error"].as_str().unwrap_or_default();
    // The plugin's reason, labelled once.
    assert!(
        error.contains("invalid config: unknown variant `sometimes`")
            && error.matches("invalid config").count() == 1,
        "{v}"
    );
    // Nothing was made for it.
    assert_eq!(
        inventory(&moto)["instances"].as_array().map(Vec::len),
        Some(1)
    );
}

/// `YYYY-MM-DD` of today (UTC) plus `days`.
fn day(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn millis_of(v: &Value, field: &str) -> i64 {
    let text = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"));
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("millis")
}

/// Minor units as Cost Explorer writes amounts.
fn amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// One Cost Explorer answer: a day's cost and usage of each `(resource, amount, currency)`.
fn cost_and_usage(start: &str, end: &str, groups: &[(&str, String, &str)]) -> Value {
    let groups: Vec<Value> = groups
        .iter()
        .map(|(resource, amount, currency)| {
            json!({"Keys": [resource], "Metrics": {
                "UnblendedCost": {"Amount": amount, "Unit": currency},
                "UsageQuantity": {"Amount": "2.5", "Unit": "Hrs"}}})
        })
        .collect();
    json!({"ResultsByTime": [{"TimePeriod": {"Start": start, "End": end}, "Groups": groups,
                              "Total": {}, "Estimated": false}],
           "DimensionValueAttributes": []})
}

/// What the platform meters for an order that ended: `per_period` minor units an hour of
/// `hour_ms`, pro rata to the millisecond, rounded half up (domain::compute_billing::metered).
fn metered_of(v: &Value, per_period: i64, hour_ms: i64) -> i64 {
    let ms = millis_of(v, "endedAt") - millis_of(v, "activeAt");
    (per_period * ms * 2 + hour_ms) / (2 * hour_ms)
}

/// Bill synchronisation: the provider's bills, configured in moto's Cost Explorer, are synced
/// by two syncs at once and again later, each line stored and charged exactly once, through
/// the offering's billing plugin (flat-fee) or the native rule; the ledger balances, and the
/// reconciliation report lists the line without an order, the line in another currency, the
/// order without lines and the planted discrepancy — and nothing else.
async fn bills_are_synced_once_matched_charged_and_reconciled(backend: Backend) {
    const HOUR_MS: i64 = 1_000;
    let moto = Moto::start();
    let app = compute_app_with(backend, &moto, |c| {
        // One-second hours make the metering visible within a test.
        c.compute.hour_ms = 1_000;
        c.compute.bill_sync_interval_ms = 0;
        // Reserves are released by the first sync after an order ends.
        c.compute.bill_wait_ms = 0;
        c.platform_fee_bps = 200;
    })
    .await;
    app.installed("billing-flat-fee").await;
    let (provider, _) = certified(&app, "cloudco").await;
    let carol = app.user("carol").await;
    app.credit("carol", 1000.0, "c-1").await.ok();
    let host = app
        .post(
            "/v1/compute/offerings",
            Some(&provider),
            &json!({"resourceType": "cloud_host", "region": "us-east-1",
                    "spec": {"instanceType": "t3.micro", "imageId": IMAGE}, "price": 1.5,
                    "plugin": "aws-compute", "config": aws_config(&moto),
                    "billing": {"plugin": "flat-fee", "config": {"feeBps": 1000}}}),
        )
        .await;
    let host = host.ok()["offeringId"]
        .as_str()
        .expect("offeringId")
        .to_owned();
    let listed = app.get("/v1/compute/offerings", Some(&carol), &[]).await;
    assert!(
        listed.ok()["offerings"]
            .as_array()
            .expect("offerings")
            .iter()
            .any(|o| o["billing"]["plugin"] == "flat-fee"),
        "{}",
        listed.ok()
    );
    // A billing plugin that is not installed is refused by name.
    app.post(
        "/v1/compute/offerings",
        Some(&provider),
        &json!({"resourceType": "cloud_host", "region": "us-east-1", "spec": {}, "price": 1,
                "plugin": "aws-compute", "config": aws_config(&moto),
                "billing": {"plugin": "no-such-rule"}}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let files = aws_offering(&app, &provider, &moto, "file_service", json!({})).await;
    let bucket = aws_offering(&app, &provider, &moto, "storage_service", json!({})).await;
    let mut ids = Vec::new();
    for (i, o) in [&host, &files, &bucket].into_iter().enumerate() {
        let r = order(&app, &carol, o, &format!("k-{i}")).await;
        ids.push(r.ok()["orderId"].as_str().expect("orderId").to_owned());
    }
    for id in &ids {
        wait_for(&app, &carol, id, "ACTIVE").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids[..2] {
        app.send(
            app.client
                .delete(app.url(&format!("/v1/compute/orders/{id}")))
                .header("X-Auth-Token", &carol),
        )
        .await
        .ok();
    }
    let h = wait_for(&app, &carol, &ids[0], "RECLAIMED").await;
    let f = wait_for(&app, &carol, &ids[1], "RECLAIMED").await;
    let b = wait_for(&app, &carol, &ids[2], "ACTIVE").await;
    let (h_res, f_res, b_res) = (
        h["providerResourceId"]
            .as_str()
            .expect("host id")
            .to_owned(),
        f["providerResourceId"]
            .as_str()
            .expect("file system id")
            .to_owned(),
        b["providerResourceId"].as_str().expect("bucket").to_owned(),
    );
    // The host is billed what the platform metered; the file service ten times that (the
    // planted discrepancy); a resource no order has, and one line in dollars.
    let a_h = metered_of(&h, 150, HOUR_MS);
    let metered_f = metered_of(&f, 150, HOUR_MS);
    let a_f = metered_f * 10;
    assert!(a_h > 0 && metered_f > 0, "{h} {f}");
    let today = day(0);
    let tomorrow = day(1);
    let answer = cost_and_usage(
        &today,
        &tomorrow,
        &[
            (h_res.as_str(), amount(a_h), "CNY"),
            // Listed twice: stored once.
            (h_res.as_str(), amount(a_h), "CNY"),
            (f_res.as_str(), amount(a_f), "CNY"),
            ("i-0123456789abcdef0", "3.00".into(), "CNY"),
            ("i-0fedcba9876543210", "1.00".into(), "USD"),
        ],
    );
    moto.set_cost_and_usage(&json!([answer, answer, answer]).to_string());

    let operator = app.operator().await;
    // Only operators sync, and a window runs forwards.
    app.post("/v1/admin/compute/bill-sync", Some(&carol), &json!({}))
        .await
        .expect_error(403, "FORBIDDEN");
    app.post(
        "/v1/admin/compute/bill-sync",
        Some(&operator),
        &json!({"from": tomorrow, "to": today}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    app.post(
        "/v1/admin/compute/bill-sync",
        Some(&operator),
        &json!({"provider": "nobody"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // Two syncs at once: every line stored once, each chargeable line charged once.
    let window = json!({"from": day(-1), "to": day(2)});
    let (first, second) = tokio::join!(
        app.post("/v1/admin/compute/bill-sync", Some(&operator), &window),
        app.post("/v1/admin/compute/bill-sync", Some(&operator), &window),
    );
    let (first, second) = (first.ok().clone(), second.ok().clone());
    let sum =
        |field: &str| first[field].as_u64().unwrap_or(99) + second[field].as_u64().unwrap_or(99);
    assert_eq!(sum("providers"), 2, "{first} {second}");
    assert_eq!(sum("listed"), 10, "{first} {second}");
    assert_eq!(sum("new"), 4, "{first} {second}");
    assert_eq!(sum("charged"), 2, "{first} {second}");
    assert_eq!(sum("rejected"), 1, "{first} {second}");
    assert_eq!(sum("unpaid"), 0, "{first} {second}");
    assert!(sum("unmatched") >= 1, "{first} {second}");
    assert_eq!(first["failures"], json!([]), "{first}");

    let fee_h = (a_h * 1000 + 5_000) / 10_000; // flat-fee: 10 %, half up
    let fee_f = a_f * 200 / 10_000; // native: 2 %, rounded down
    let cents = |minor: i64| minor as f64 / 100.0;
    let check_books = async || {
        // Carol paid both bills; the bucket's first month is still held; the hosts' reserves
        // came back.
        assert_eq!(app.balance(&carol).await, cents(100_000 - 150 - a_h - a_f));
        assert_eq!(
            app.balance(&provider).await,
            cents(a_h - fee_h + a_f - fee_f)
        );
        for (id, billed) in [(&ids[0], a_h), (&ids[1], a_f)] {
            let v = app
                .get(&format!("/v1/compute/orders/{id}"), Some(&carol), &[])
                .await;
            assert_eq!(
                (v.ok()["charged"].clone(), v.ok()["held"].clone()),
                (json!(cents(billed)), json!(0.0))
            );
        }
        let audit = app
            .get("/v1/admin/ledger/audit", Some(&operator), &[])
            .await;
        assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
    };
    check_books().await;

    // Synced again: nothing new, nothing charged twice.
    let again = app
        .post("/v1/admin/compute/bill-sync", Some(&operator), &window)
        .await;
    let again = again.ok().clone();
    assert_eq!(
        (
            again["listed"].clone(),
            again["new"].clone(),
            again["charged"].clone()
        ),
        (json!(5), json!(0), json!(0)),
        "{again}"
    );
    assert_eq!(again["unmatched"], 1, "{again}");
    check_books().await;

    let report = app
        .get(
            "/v1/admin/compute/reconciliation",
            Some(&operator),
            &[("from", &day(-1)), ("to", &day(2))],
        )
        .await;
    let report = report.ok().clone();
    let resources = |list: &str, field: &str| -> Vec<String> {
        report[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list} in {report}"))
            .iter()
            .map(|x| x[field].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        resources("linesWithoutOrder", "resourceId"),
        ["i-0123456789abcdef0"],
        "{report}"
    );
    assert_eq!(
        resources("rejectedLines", "resourceId"),
        ["i-0fedcba9876543210"],
        "{report}"
    );
    assert!(
        report["rejectedLines"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("USD"),
        "{report}"
    );
    assert_eq!(
        resources("unpaidLines", "resourceId"),
        Vec::<String>::new(),
        "{report}"
    );
    assert_eq!(
        resources("ordersWithoutLines", "orderId"),
        [ids[2].clone()],
        "{report}"
    );
    assert_eq!(
        resources("ordersWithoutLines", "providerResourceId"),
        [b_res],
        "{report}"
    );
    assert_eq!(
        resources("amountMismatches", "orderId"),
        [ids[1].clone()],
        "{report}"
    );
    let m = &report["amountMismatches"][0];
    assert_eq!(m["billed"], json!(cents(a_f)), "{report}");
    assert_eq!(m["metered"], json!(cents(metered_f)), "{report}");
    assert_eq!(m["differenceBps"], 90_000, "{report}");
    assert_eq!(report["totals"]["lines"], 4, "{report}");
    // A tolerance wide enough lets the discrepancy pass.
    let wide = app
        .get(
            "/v1/admin/compute/reconciliation",
            Some(&operator),
            &[
                ("from", &day(-1)),
                ("to", &day(2)),
                ("toleranceBps", "100000"),
            ],
        )
        .await;
    assert_eq!(wide.ok()["amountMismatches"], json!([]), "{}", wide.ok());
    app.get(
        "/v1/admin/compute/reconciliation",
        Some(&operator),
        &[("toleranceBps", "a lot")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    app.get("/v1/admin/compute/reconciliation", Some(&carol), &[])
        .await
        .expect_error(403, "FORBIDDEN");
}

/// The scheduled job syncs the last days' bills without being asked; a line whose user cannot
/// pay waits as `unpaid` (the balance never goes negative) and is charged once the balance
/// covers it.
async fn the_scheduled_job_syncs_and_unpaid_lines_wait(backend: Backend) {
    let moto = Moto::start();
    let HostOrder {
        app,
        provider,
        carol,
        id,
        view: v,
    } = active_host_order(backend, &moto, 2.0, |c| {
        c.compute.bill_sync_interval_ms = 300;
    })
    .await;
    let resource = v["providerResourceId"]
        .as_str()
        .expect("resource")
        .to_owned();
    // Yesterday's bill is 9.00: the hold (1.50) and the balance (0.50) do not cover it.
    let answer = cost_and_usage(
        &day(-1),
        &day(0),
        &[(resource.as_str(), "9.00".into(), "CNY")],
    );
    moto.set_cost_and_usage(&json!([answer, answer, answer, answer, answer, answer]).to_string());
    let operator = app.operator().await;
    let unpaid = poll_report(&app, &operator, |r| {
        r["unpaidLines"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert_eq!(unpaid["unpaidLines"][0]["orderId"], json!(id), "{unpaid}");
    assert_eq!(app.balance(&carol).await, 0.5);
    assert_eq!(app.balance(&provider).await, 0.0);
    // Once carol tops up, a later scheduled sync charges the line.
    app.credit("carol", 10.0, "c-2").await.ok();
    let started = Instant::now();
    loop {
        let v = app
            .get(&format!("/v1/compute/orders/{id}"), Some(&carol), &[])
            .await
            .ok()
            .clone();
        if v["charged"] == 9.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never charged: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.balance(&provider).await, 9.0);
    let audit = app
        .get("/v1/admin/ledger/audit", Some(&operator), &[])
        .await;
    assert_eq!(audit.ok()["balanced"], true, "{}", audit.ok());
}

/// Polls the default reconciliation report until `done` holds (panics after 30 s).
async fn poll_report(app: &TestApp, operator: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = app
            .get("/v1/admin/compute/reconciliation", Some(operator), &[])
            .await;
        let v = r.ok().clone();
        if done(&v) {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "report never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    bills_are_synced_once_matched_charged_and_reconciled,
    the_scheduled_job_syncs_and_unpaid_lines_wait,
    the_plugins_idempotency_option,
);
