//! Plugins over HTTP: installing signed packages, choosing rules, settlements charged by
//! plugins, faulty plugins failing only their own call, direct calls, audit and metrics.

use liutong_plugin_runtime::{Package, PublisherKey};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::plugins::{
    component_path, manifest_path, package_dir, signed_package, signed_package_with,
};
use crate::support::trade::Listing;
use crate::support::{Backend, TestApp};

fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
    app.client
        .put(app.url(path))
        .header("X-Auth-Token", token)
        .json(body)
}

async fn set_billing_rule(app: &TestApp, listing: &Listing, plugin: &str, config: Value) {
    let operator = app.operator().await;
    app.send(put(
        app,
        &operator,
        "/v1/admin/billing-rules",
        &json!({"registrationID": listing.registration_id, "plugin": plugin, "config": config}),
    ))
    .await
    .ok();
}

async fn set_default(app: &TestApp, kind: &str, plugin: &str) -> crate::support::Resp {
    let operator = app.operator().await;
    app.send(put(
        app,
        &operator,
        "/v1/admin/plugins/default",
        &json!({"kind": kind, "plugin": plugin}),
    ))
    .await
}

async fn plugins(app: &TestApp) -> Vec<Value> {
    let operator = app.operator().await;
    app.get("/v1/admin/plugins", Some(&operator), &[])
        .await
        .ok()["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn installing_checks_signatures_roles_and_versions(app: TestApp) {
    let first = app.install_plugin(signed_package("billing-flat-fee")).await;
    let data = first.ok();
    assert_eq!(data["id"], "flat-fee");
    assert_eq!(data["version"], "0.1.0");
    assert_eq!(data["kind"], "billing");
    assert_eq!(data["installed"], true);
    assert_eq!(data["active"], true);
    // The same package again changes nothing.
    let again = app.install_plugin(signed_package("billing-flat-fee")).await;
    assert_eq!(again.ok()["installed"], false);

    let listed = plugins(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "flat-fee");
    assert_eq!(listed[0]["status"], "loaded");
    assert_eq!(listed[0]["enabled"], true);
    assert_eq!(listed[0]["versions"][0]["publisher"], "liutong-tests");

    // Only operators install. The role is checked before the body is read, so the server
    // answers and closes while a large body may still be in flight (the client then sees a
    // reset, not the 403): a small body keeps this about the role.
    let user = app.user("alice").await;
    app.send(
        app.client
            .post(app.url("/v1/admin/plugins"))
            .header("X-Auth-Token", &user)
            .header("Content-Type", "application/octet-stream")
            .body(b"LTPKG".to_vec()),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // Packages only.
    let operator = app.operator().await;
    app.send(
        app.client
            .post(app.url("/v1/admin/plugins"))
            .header("X-Auth-Token", &operator)
            .json(&json!({"package": "no"})),
    )
    .await
    .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");

    let component = std::fs::read(component_path("billing-per-token")).expect("component");
    let manifest = std::fs::read(manifest_path("billing-per-token")).expect("manifest");
    // Unsigned.
    let unsigned = Package::build(manifest.clone(), component.clone()).to_bytes();
    let r = app.install_plugin(unsigned).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(
        r.error_msg().contains("unsigned") || r.error_msg().contains("not signed"),
        "{}",
        r.error_msg()
    );
    // Signed by a publisher this server does not trust.
    let stranger = PublisherKey::generate("mallory");
    let r = app
        .install_plugin(
            stranger
                .sign(Package::build(manifest.clone(), component.clone()))
                .to_bytes(),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("trust"), "{}", r.error_msg());
    // Tampered after signing: one byte of the component changed.
    let signed = Package::from_bytes(&signed_package("billing-per-token")).expect("package");
    let mut evil = component.clone();
    let last = evil.len() - 1;
    evil[last] ^= 0x01;
    let r = app
        .install_plugin(signed.with_component_for_testing(evil).to_bytes())
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert!(
        r.error_msg().contains("modified after signing"),
        "{}",
        r.error_msg()
    );
    // Not a package at all.
    app.install_plugin(b"hello".to_vec())
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    // Same id and version, another component: a new build needs a new version.
    let other = signed_package_with("billing-tiered-per-call", |m| {
        m.replace("id = \"tiered-per-call\"", "id = \"flat-fee\"")
    });
    app.install_plugin(other)
        .await
        .expect_error(409, "CONFLICT");
    // A plugin id keeps its kind.
    let policy_as_flat = signed_package_with("policy-use-scenes", |m| {
        m.replace("id = \"use-scenes\"", "id = \"flat-fee\"")
            .replace("version = \"0.1.0\"", "version = \"0.9.0\"")
    });
    app.install_plugin(policy_as_flat)
        .await
        .expect_error(409, "CONFLICT");
    assert_eq!(
        plugins(&app).await.len(),
        1,
        "refused packages leave nothing behind"
    );
}

async fn settlement_charges_by_the_rule_chosen_for_the_publication(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    app.credit("carol", 100.0, "wire-1").await.ok();
    let listing = app.listing(&alice, "ct-1", Some(20.0), b"scans").await;
    app.installed("billing-flat-fee").await;
    set_billing_rule(&app, &listing, "flat-fee", json!({"feeBps": 1000})).await;

    let (_, settled) = app.settled_trade(&carol, &listing).await;
    let proof = &settled["payment_proof"];
    assert_eq!(proof["billing"], "plugin flat-fee@0.1.0", "{proof}");
    assert_eq!(proof["amountMinor"], 2000);
    assert_eq!(proof["platformFeeMinor"], 200);
    assert_eq!(proof["providerShareMinor"], 1800);
    assert_eq!(app.balance(&carol.token).await, 80.0);
    assert_eq!(app.balance(&alice.token).await, 18.0);
    assert_eq!(app.audit().await["balanced"], true);

    // The call is audited.
    let operator = app.operator().await;
    let calls = app
        .get(
            "/v1/admin/plugin-calls",
            Some(&operator),
            &[("plugin", "flat-fee")],
        )
        .await;
    let calls = calls.ok();
    assert_eq!(calls["total"], 1, "{calls}");
    let call = &calls["calls"][0];
    assert_eq!(call["operation"], "charge-trade");
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["caller"], "carol");
    assert_eq!(call["version"], "0.1.0");
    assert_eq!(call["inputSha256"].as_str().map(str::len), Some(64));
    assert!(call["fuelUsed"].as_i64().is_some_and(|f| f > 0), "{call}");
}

async fn a_default_billing_plugin_and_new_versions_apply_without_restart(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    app.credit("carol", 100.0, "wire-1").await.ok();
    app.installed("billing-flat-fee").await;
    set_default(&app, "billing", "flat-fee").await.ok();

    let first = app.listing(&alice, "a", Some(1.0), b"a").await;
    let (_, settled) = app.settled_trade(&carol, &first).await;
    assert_eq!(settled["payment_proof"]["billing"], "plugin flat-fee@0.1.0");

    // Version 0.2.0 of the same plugin: new calls use it at once.
    let v2 = signed_package_with("billing-flat-fee", |m| {
        m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
    });
    assert_eq!(app.install_plugin(v2).await.ok()["active"], true);
    let second = app.listing(&alice, "b", Some(1.0), b"b").await;
    let (_, settled) = app.settled_trade(&carol, &second).await;
    assert_eq!(settled["payment_proof"]["billing"], "plugin flat-fee@0.2.0");

    // Rolled back by activating the old version.
    let operator = app.operator().await;
    app.post(
        "/v1/admin/plugins/activate",
        Some(&operator),
        &json!({"plugin": "flat-fee", "version": "0.1.0"}),
    )
    .await
    .ok();
    let third = app.listing(&alice, "c", Some(1.0), b"c").await;
    let (_, settled) = app.settled_trade(&carol, &third).await;
    assert_eq!(settled["payment_proof"]["billing"], "plugin flat-fee@0.1.0");
    app.post(
        "/v1/admin/plugins/activate",
        Some(&operator),
        &json!({"plugin": "flat-fee", "version": "9.9.9"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // Disabled: settlements refuse rather than silently bill another way.
    app.post(
        "/v1/admin/plugins/disable",
        Some(&operator),
        &json!({"plugin": "flat-fee"}),
    )
    .await
    .ok();
    let fourth = app.listing(&alice, "d", Some(1.0), b"d").await;
    let confirm_id = app.confirm(&carol, &fourth.registration_id).await;
    let r = app.settle(&carol.token, &confirm_id).await;
    r.expect_error(503, "SERVICE_UNAVAILABLE");
    assert!(r.error_msg().contains("disabled"), "{}", r.error_msg());
    app.post(
        "/v1/admin/plugins/enable",
        Some(&operator),
        &json!({"plugin": "flat-fee"}),
    )
    .await
    .ok();
    app.settle(&carol.token, &confirm_id).await.ok();

    // Defaults must exist and be of their kind.
    set_default(&app, "billing", "nope")
        .await
        .expect_error(404, "NOT_FOUND");
    set_default(&app, "policy", "flat-fee")
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(app.audit().await["balanced"], true);
}

async fn faulty_plugins_fail_only_their_own_call(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    app.credit("carol", 100.0, "wire-1").await.ok();
    app.installed("billing-flat-fee").await;
    for (fixture, plugin, symptom) in [
        (
            "fixtures/fixture-endless-loop",
            "fixture-endless-loop",
            "fuel",
        ),
        (
            "fixtures/fixture-memory-hog",
            "fixture-memory-hog",
            "memory",
        ),
        ("fixtures/fixture-trap", "fixture-trap", "trap"),
        (
            "fixtures/fixture-bad-charge",
            "fixture-bad-charge",
            "inconsistent",
        ),
    ] {
        app.installed(fixture).await;
        let listing = app.listing(&alice, plugin, Some(5.0), b"x").await;
        set_billing_rule(&app, &listing, plugin, json!({})).await;
        let confirm_id = app.confirm(&carol, &listing.registration_id).await;
        let r = app.settle(&carol.token, &confirm_id).await;
        r.expect_error(502, "PLUGIN_FAILED");
        assert!(r.error_msg().contains(plugin), "{}", r.error_msg());
        assert!(
            r.error_msg().contains(symptom),
            "{plugin}: {}",
            r.error_msg()
        );
        assert_eq!(app.balance(&carol.token).await, 100.0, "nothing charged");
        // The server keeps answering, and a healthy plugin keeps working.
        app.get("/healthz", None, &[]).await.ok();
        set_billing_rule(&app, &listing, "flat-fee", json!({})).await;
        app.settle(&carol.token, &confirm_id).await.ok();
        assert_eq!(app.balance(&carol.token).await, 95.0);
        app.credit("carol", 5.0, &format!("top-up-{plugin}"))
            .await
            .ok();
    }
    let operator = app.operator().await;
    let failed = app
        .get(
            "/v1/admin/plugin-calls",
            Some(&operator),
            &[("outcome", "failed")],
        )
        .await;
    let failed = failed.ok();
    assert_eq!(failed["total"], 4, "{failed}");
    assert!(failed["calls"][0]["error"].is_string());

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("liutong_plugin_calls_total{plugin=\"fixture-trap\",version=\"0.1.0\",kind=\"billing\",operation=\"charge-trade\",outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("liutong_plugin_call_duration_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(app.audit().await["balanced"], true);
}

async fn policy_and_adapter_plugins_answer_direct_calls(app: TestApp) {
    app.installed("policy-use-scenes").await;
    let operator = app.operator().await;
    let policy = json!({
        "policy_id": "p1", "policy_name": "research", "data_id": "ct-1",
        "rel_users": [{"user_id": "u1", "user_name": "carol", "is_group": false}],
        "start_ms": 0, "end_ms": 4_000_000_000_000i64,
        "use_scenes": [{"scene": "training", "counts": 3, "remaining_counts": 2}],
        "config": "{}"
    });
    let request = |user: &str, scene: &str| json!({"user_id": user, "groups": [], "scene": scene, "uses": 1, "at_ms": 1_700_000_000_000i64});
    let allowed = app
        .post(
            "/v1/admin/plugins/call",
            Some(&operator),
            &json!({"plugin": "use-scenes", "operation": "evaluate",
                    "input": {"policy": policy, "request": request("u1", "training")}}),
        )
        .await;
    let verdict = &allowed.ok()["result"]["ok"];
    assert_eq!(verdict["allowed"], true, "{verdict}");
    assert_eq!(verdict["counter_changes"][0]["remaining_after"], 1);
    let denied = app
        .post(
            "/v1/admin/plugins/call",
            Some(&operator),
            &json!({"plugin": "use-scenes", "operation": "evaluate",
                    "input": {"policy": policy, "request": request("u2", "resale")}}),
        )
        .await;
    let verdict = &denied.ok()["result"]["ok"];
    assert_eq!(verdict["allowed"], false);
    assert!(
        verdict["reasons"].as_array().is_some_and(|r| r.len() >= 2),
        "every failed rule: {verdict}"
    );
    // Input that is not the operation's shape is a 400 naming the field.
    let bad = app
        .post(
            "/v1/admin/plugins/call",
            Some(&operator),
            &json!({"plugin": "use-scenes", "operation": "evaluate", "input": {"policy": {}}}),
        )
        .await;
    bad.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        bad.error_msg().contains("/input/policy"),
        "{}",
        bad.error_msg()
    );
    // An operation of another kind.
    app.post(
        "/v1/admin/plugins/call",
        Some(&operator),
        &json!({"plugin": "use-scenes", "operation": "charge-trade", "input": {}}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
}

/// An upstream for adapters: echoes the posted JSON inside `{"echo": …}`.
async fn echo_upstream() -> std::net::SocketAddr {
    let router = axum::Router::new().route(
        "/infer",
        axum::routing::post(|axum::Json(v): axum::Json<Value>| async move {
            axum::Json(json!({"echo": v}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

async fn adapters_reach_only_granted_hosts(backend: Backend) {
    let upstream = echo_upstream().await;
    let app = TestApp::spawn_with(backend, |c| {
        c.plugins.grants.insert(
            "http-json".into(),
            liutong::config::PluginGrant {
                http: vec![format!("127.0.0.1:{}", upstream.port())],
                secrets: vec![],
            },
        );
        c.plugins.grants.insert(
            "fixture-ungranted-host".into(),
            liutong::config::PluginGrant {
                http: vec!["127.0.0.1:*".into()],
                secrets: vec![],
            },
        );
    })
    .await;
    app.installed("adapter-http-json").await;
    app.installed("fixtures/fixture-ungranted-host").await;
    let operator = app.operator().await;
    let invoke = |plugin: &str, endpoint: String| {
        json!({"plugin": plugin, "operation": "invoke", "input": {
            "publication": {"publish_id": "pub_1", "kind": "Model", "endpoint": endpoint,
                            "config": "{}", "secrets": []},
            "invocation": {"input": "{\"question\": 42}", "caller": "carol", "request_id": "r1"}
        }})
    };
    let r = app
        .post(
            "/v1/admin/plugins/call",
            Some(&operator),
            &invoke(
                "http-json",
                format!("http://127.0.0.1:{}/infer", upstream.port()),
            ),
        )
        .await;
    let outcome = &r.ok()["result"]["ok"];
    let output: Value =
        serde_json::from_str(outcome["output"].as_str().expect("output")).expect("JSON output");
    assert_eq!(output["echo"]["question"], 42);
    assert_eq!(outcome["usage"]["calls"], 1);

    // Granted 127.0.0.1 only: any other host is refused, and the error names it.
    let r = app
        .post(
            "/v1/admin/plugins/call",
            Some(&operator),
            &invoke("fixture-ungranted-host", "http://127.0.0.1:9/".into()),
        )
        .await;
    r.expect_error(502, "PLUGIN_FAILED");
    assert!(r.error_msg().contains("example.com"), "{}", r.error_msg());
    app.get("/healthz", None, &[]).await.ok();
}

async fn audit_queries_are_for_operators_and_validated(app: TestApp) {
    let user = app.user("alice").await;
    app.get("/v1/admin/plugin-calls", Some(&user), &[])
        .await
        .expect_error(403, "FORBIDDEN");
    app.get("/v1/admin/plugins", Some(&user), &[])
        .await
        .expect_error(403, "FORBIDDEN");
    let operator = app.operator().await;
    app.get("/v1/admin/plugin-calls", Some(&operator), &[("limit", "0")])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.get(
        "/v1/admin/plugin-calls",
        Some(&operator),
        &[("outcome", "maybe")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let empty = app
        .get("/v1/admin/plugin-calls", Some(&operator), &[])
        .await;
    assert_eq!(empty.ok()["total"], 0);

    // A batch of the audit writer spans several multi-row statements (64 rows each).
    let records: Vec<_> = (0..150i64)
        .map(|i| liutong::domain::plugins::PluginCallRecord {
            id: format!("pcall_{i:04}"),
            at: 1_700_000_000_000 + i,
            plugin_id: "flat-fee".into(),
            version: "0.1.0".into(),
            component_sha256: "ab".repeat(32),
            kind: liutong_plugin_runtime::PluginKind::Billing,
            operation: "charge-trade".into(),
            caller: "carol".into(),
            subject: format!("cfm_{i}"),
            input_sha256: "cd".repeat(32),
            outcome: if i % 3 == 0 { "rejected" } else { "ok" }.into(),
            error: (i % 3 == 0).then(|| format!("invalid input: call {i}")),
            fuel_used: (i % 2 == 0).then_some(i * 10),
            duration_us: i,
        })
        .collect();
    app.store
        .insert_plugin_calls(&records)
        .await
        .expect("audit batch");
    let all = app
        .get(
            "/v1/admin/plugin-calls",
            Some(&operator),
            &[("limit", "200")],
        )
        .await;
    let all = all.ok();
    assert_eq!(all["total"], 150);
    let newest = &all["calls"][0];
    assert_eq!(newest["id"], "pcall_0149");
    assert_eq!(newest["subject"], "cfm_149");
    assert_eq!(newest["error"], Value::Null);
    assert_eq!(newest["fuelUsed"], Value::Null);
    let rejected = app
        .get(
            "/v1/admin/plugin-calls",
            Some(&operator),
            &[("outcome", "rejected"), ("limit", "1")],
        )
        .await;
    let rejected = rejected.ok();
    assert_eq!(rejected["total"], 50);
    assert_eq!(rejected["calls"][0]["id"], "pcall_0147");
    assert_eq!(rejected["calls"][0]["error"], "invalid input: call 147");
    assert_eq!(rejected["calls"][0]["durationUs"], 147);
    app.post(
        "/v1/admin/plugins/enable",
        Some(&operator),
        &json!({"plugin": "ghost"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    app.post(
        "/v1/admin/plugins/enable",
        Some(&operator),
        &json!({"plugin": "Bad Id"}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
}

async fn preinstalled_packages_load_at_start(backend: Backend) {
    let dir = package_dir(&["billing-flat-fee", "policy-use-scenes"]);
    let app = TestApp::spawn_with(backend, |c| {
        c.plugins.preinstall = vec![dir.path().to_owned()];
        c.plugins.defaults.insert(
            liutong_plugin_runtime::PluginKind::Billing,
            "flat-fee".into(),
        );
    })
    .await;
    let listed = plugins(&app).await;
    let ids: Vec<&str> = listed.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, vec!["flat-fee", "use-scenes"]);
    assert_eq!(listed[0]["default"], true);
    assert_eq!(listed[0]["versions"][0]["installedBy"], "preinstall");
    // A second server on the same database finds them installed and changes nothing.
    let replica = app.replica().await;
    let operator = app.operator().await;
    let seen = app
        .get_via(&replica, "/v1/admin/plugins", Some(&operator), &[])
        .await;
    assert_eq!(seen.ok()["plugins"].as_array().map(Vec::len), Some(2));
}

on_both_backends!(
    installing_checks_signatures_roles_and_versions,
    settlement_charges_by_the_rule_chosen_for_the_publication,
    a_default_billing_plugin_and_new_versions_apply_without_restart,
    faulty_plugins_fail_only_their_own_call,
    policy_and_adapter_plugins_answer_direct_calls,
    audit_queries_are_for_operators_and_validated,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_reach_only_granted_hosts_sqlite() {
    adapters_reach_only_granted_hosts(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_reach_only_granted_hosts_postgres() {
    adapters_reach_only_granted_hosts(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preinstalled_packages_load_at_start_sqlite() {
    preinstalled_packages_load_at_start(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preinstalled_packages_load_at_start_postgres() {
    preinstalled_packages_load_at_start(Backend::Postgres).await;
}
