//! Controlled data end to end (A.1.3 → A.3.1 → A.3.3 → A.3.7 → access decisions): usage
//! policies set up with a buyer's license, decided by policy plugins, counted exactly under
//! concurrency, retries and kill -9, with a decision log.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::fixtures::publish_datasets;
use crate::support::plugins::{package_dir, shared_cache_dir, trust_test_publisher};
use crate::support::trade::Party;
use crate::support::{Backend, Resp, TestApp};

/// A settled purchase of controlled data.
struct Purchase {
    /// The data space that published it.
    space: String,
    buyer: Party,
    license: Value,
    data_id: String,
}

fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
    app.client
        .put(app.url(path))
        .header("X-Auth-Token", token)
        .json(body)
}

/// `data_space` publishes `data_id` (A.1.3); `buyer` confirms (A.3.1) and settles (A.3.3).
async fn buy(app: &TestApp, space: &str, data_id: &str, buyer: &str) -> Purchase {
    app.post(
        "/publishDatasets",
        Some(space),
        &publish_datasets(data_id, &["ct"], false, Some(2.5)),
    )
    .await
    .ok();
    let buyer = app.party(buyer).await;
    app.credit(
        &buyer.name,
        100.0,
        &format!("funds-{}-{data_id}", buyer.name),
    )
    .await
    .ok();
    let demand = app
        .published_demand(&buyer.token, &buyer.name, &["ct"], "dataset")
        .await;
    let confirmed = app
        .post(
            "/confirmDemand",
            Some(&buyer.token),
            &json!({"demander": buyer.name, "demandID": demand,
                    "registrationID": "TDS-CONTROLLED", "dataID": data_id}),
        )
        .await;
    let confirm_id = confirmed.ok()["confirmID"]
        .as_str()
        .expect("confirmID")
        .to_owned();
    let settled = app.settle(&buyer.token, &confirm_id).await;
    let license = settled.ok()["licenses"].clone();
    assert_eq!(license["registrationID"], "TDS-CONTROLLED");
    Purchase {
        space: space.to_owned(),
        buyer,
        license,
        data_id: data_id.to_owned(),
    }
}

/// `use-scenes` as the default policy plugin, the data space `tds-one`, and carol's settled
/// purchase of its `ctl-1`.
async fn bought(app: &TestApp) -> Purchase {
    use_scenes_by_default(app).await;
    let space = app.account_with_role("tds-one", "data_space").await;
    buy(app, &space, "ctl-1", "carol").await
}

/// A.3.7 body: users `u-1` and group `g-lab`, the given scenes.
fn policy_body(p: &Purchase, name: &str, scenes: Value) -> Value {
    json!({
        "licenses": p.license,
        "dataID": p.data_id,
        "policyName": name,
        "relUsers": [
            {"userId": "u-1", "userName": "Dr. Wang", "isGroup": 0},
            {"userId": "g-lab", "userName": "Imaging lab", "isGroup": 1}
        ],
        "useScenes": scenes
    })
}

async fn deliver(app: &TestApp, p: &Purchase, body: &Value) -> Resp {
    app.post("/deliverDatasets", Some(&p.space), body).await
}

/// Sets up a policy and returns its id.
async fn policy(app: &TestApp, p: &Purchase, name: &str, scenes: Value) -> String {
    let r = deliver(app, p, &policy_body(p, name, scenes)).await;
    r.ok()["policyId"].as_str().expect("policyId").to_owned()
}

async fn access(app: &TestApp, token: &str, policy_id: &str, body: Value) -> Resp {
    app.post(
        &format!("/v1/policies/{policy_id}/access"),
        Some(token),
        &body,
    )
    .await
}

fn use_as(request_id: &str, user: &str, scene: &str) -> Value {
    json!({"requestId": request_id, "userId": user, "useSence": scene})
}

async fn get_policy(app: &TestApp, token: &str, policy_id: &str) -> Resp {
    app.get(&format!("/v1/policies/{policy_id}"), Some(token), &[])
        .await
}

async fn decisions(app: &TestApp, token: &str, policy_id: &str) -> Resp {
    app.get(
        &format!("/v1/policies/{policy_id}/decisions"),
        Some(token),
        &[("limit", "1000")],
    )
    .await
}

/// Installs `use-scenes` and makes it the default policy plugin.
async fn use_scenes_by_default(app: &TestApp) {
    app.installed("policy-use-scenes").await;
    let operator = app.operator().await;
    app.send(put(
        app,
        &operator,
        "/v1/admin/plugins/default",
        &json!({"kind": "policy", "plugin": "use-scenes"}),
    ))
    .await
    .ok();
}

/// A server that preinstalls `use-scenes` and makes it the default policy plugin through its
/// configuration (`plugins.preinstall`, `plugins.defaults.policy`), as start.sh does.
async fn spawn_with_use_scenes(backend: Backend) -> (TestApp, tempfile::TempDir) {
    let dir = package_dir(&["policy-use-scenes"]);
    let app = TestApp::spawn_with(backend, |c| {
        c.plugins.preinstall = vec![dir.path().to_owned()];
        c.plugins.defaults.insert(
            liutong_plugin_runtime::PluginKind::Policy,
            "use-scenes".into(),
        );
    })
    .await;
    (app, dir)
}

/// The whole flow: A.1.3 → confirm → settle → A.3.7 → accesses, with the default policy
/// plugin from the configuration, reads, the decision log and revocation.
async fn controlled_data_end_to_end(backend: Backend) {
    let (app, _dir) = spawn_with_use_scenes(backend).await;
    let space = app.account_with_role("tds-one", "data_space").await;
    let p = buy(&app, &space, "ctl-1", "carol").await;

    let scenes = json!([
        {"useSence": "training", "counts": 3,
         "aiFrame": ["pytorch", "paddle"], "visitArea": ["beijing", "shanghai"]},
        {"useSence": "preview", "viewRowsRange": {"start": 0, "end": 99}},
        {"useSence": "inference", "counts": 10, "remainingCounts": 2}
    ]);
    let created = deliver(&app, &p, &policy_body(&p, "research", scenes.clone())).await;
    let a52 = created.ok().clone();
    let policy_id = a52["policyId"].as_str().expect("policyId").to_owned();
    assert!(policy_id.starts_with("pol_"));
    assert_eq!(a52["policyName"], "research");
    assert_eq!(a52["dataId"], "ctl-1");
    assert_eq!(a52["status"], 1);
    // Without dates the policy runs for the license's term.
    assert_eq!(a52["startDate"], p.license["license_term"]["startData"]);
    assert_eq!(a52["endDate"], p.license["license_term"]["endDate"]);
    assert!(a52["createTime"].as_str().is_some_and(|t| t.len() == 19));
    let keys: HashSet<&str> = a52
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "policyId",
            "policyName",
            "dataId",
            "startDate",
            "endDate",
            "status",
            "createTime"
        ])
    );
    // The same request again is the same policy.
    let again = deliver(&app, &p, &policy_body(&p, "research", scenes)).await;
    assert_eq!(again.ok()["policyId"], policy_id.as_str());
    // Other terms under the same name are a conflict.
    deliver(
        &app,
        &p,
        &policy_body(
            &p,
            "research",
            json!([{"useSence": "training", "counts": 30}]),
        ),
    )
    .await
    .expect_error(409, "CONFLICT");

    // Allowed: a listed user, in a listed scene and environment.
    let mut train = use_as("r-1", "u-1", "Training");
    train["aiFrame"] = json!("PyTorch");
    train["visitArea"] = json!("Beijing");
    let r = access(&app, &space, &policy_id, train.clone()).await;
    let d = r.ok();
    assert_eq!(d["decision"], "ALLOW", "{d}");
    assert_eq!(d["remainingCounts"], json!({"training": 2, "inference": 2}));
    assert!(
        d["decisionId"]
            .as_str()
            .is_some_and(|i| i.starts_with("dec_"))
    );
    // A member of a listed group, previewing allowed rows.
    let r = access(
        &app,
        &space,
        &policy_id,
        json!({"requestId": "r-2", "userId": "u-9", "groups": ["g-x", "g-lab"],
               "useSence": "preview", "viewRows": [10, 20]}),
    )
    .await;
    assert_eq!(r.ok()["decision"], "ALLOW", "{}", r.body);
    // Denied, with every reason: an unknown user, rows outside the range.
    let r = access(
        &app,
        &space,
        &policy_id,
        json!({"requestId": "r-3", "userId": "u-9", "useSence": "preview", "viewRows": [50, 150]}),
    )
    .await;
    let d = r.ok();
    assert_eq!(d["decision"], "DENY");
    let reasons: Vec<&str> = d["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(reasons[0].starts_with("relUsers"), "{reasons:?}");
    assert!(reasons[1].starts_with("viewRowsRange"), "{reasons:?}");
    // An unknown scene.
    let r = access(&app, &space, &policy_id, use_as("r-4", "u-1", "export")).await;
    let d = r.ok();
    assert_eq!(d["decision"], "DENY");
    assert!(
        d["reasons"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("useSence"))
    );
    // The wrong environment.
    let mut elsewhere = train.clone();
    elsewhere["requestId"] = json!("r-5");
    elsewhere["visitArea"] = json!("shenzhen");
    let d = access(&app, &space, &policy_id, elsewhere).await;
    assert_eq!(d.ok()["decision"], "DENY");
    // Counters: inference started at remainingCounts 2; two uses at once take both.
    let r = access(
        &app,
        &space,
        &policy_id,
        json!({"requestId": "r-6", "userId": "u-1", "useSence": "inference", "uses": 2}),
    )
    .await;
    assert_eq!(r.ok()["remainingCounts"]["inference"], 0);
    let r = access(&app, &space, &policy_id, use_as("r-7", "u-1", "inference")).await;
    let d = r.ok();
    assert_eq!(d["decision"], "DENY");
    assert!(
        d["reasons"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("remainingCounts")),
        "{d}"
    );

    // The policy as read: status, terms with remainingCounts, its license.
    let view = get_policy(&app, &space, &policy_id).await;
    let v = view.ok();
    assert_eq!(v["status"], 1);
    assert_eq!(v["statusName"], "active");
    assert_eq!(v["licensesID"], p.license["licensesID"]);
    assert_eq!(v["licensee"], "carol");
    assert_eq!(v["remainingCounts"], json!({"inference": 0, "training": 2}));
    assert_eq!(v["useScenes"][0]["useSence"], "training");
    assert_eq!(v["useScenes"][0]["counts"], 3);
    assert_eq!(v["useScenes"][0]["remainingCounts"], 2);
    assert_eq!(v["useScenes"][2]["remainingCounts"], 0);
    assert_eq!(v["relUsers"][1]["isGroup"], 1);
    // The buyer reads its own policy and its decisions; others do not.
    get_policy(&app, &p.buyer.token, &policy_id).await.ok();
    let mallory = app.user("mallory").await;
    get_policy(&app, &mallory, &policy_id)
        .await
        .expect_error(403, "FORBIDDEN");
    decisions(&app, &mallory, &policy_id)
        .await
        .expect_error(403, "FORBIDDEN");
    let other_space = app.account_with_role("tds-two", "data_space").await;
    get_policy(&app, &other_space, &policy_id)
        .await
        .expect_error(403, "FORBIDDEN");
    access(
        &app,
        &other_space,
        &policy_id,
        use_as("x", "u-1", "training"),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // Buyers do not ask for decisions; only the data space enforces.
    access(
        &app,
        &p.buyer.token,
        &policy_id,
        use_as("x", "u-1", "training"),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    get_policy(&app, &space, "pol_nope")
        .await
        .expect_error(404, "NOT_FOUND");

    // Listing by dataID: the data space, the buyer and operators see it; others see nothing.
    let operator = app.operator().await;
    for token in [&space, &p.buyer.token, &operator] {
        let page = app
            .get("/v1/policies", Some(token), &[("dataID", "ctl-1")])
            .await;
        assert_eq!(page.ok()["total"], 1);
        assert_eq!(page.ok()["policies"][0]["policyId"], policy_id.as_str());
    }
    let page = app
        .get("/v1/policies", Some(&mallory), &[("dataID", "ctl-1")])
        .await;
    assert_eq!(page.ok()["total"], 0);
    app.get("/v1/policies", Some(&space), &[("dataID", "ctl-404")])
        .await
        .expect_error(404, "NOT_FOUND");
    app.get("/v1/policies", Some(&space), &[])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.get(
        "/v1/policies",
        Some(&space),
        &[("dataID", "ctl-1"), ("limit", "0")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");

    // The decision log: newest first, with the plugin, digest and counters.
    let log = decisions(&app, &p.buyer.token, &policy_id).await;
    let log = log.ok();
    assert_eq!(log["total"], 7);
    let entries = log["decisions"].as_array().expect("decisions");
    assert_eq!(entries[0]["requestId"], "r-7");
    assert_eq!(entries[6]["requestId"], "r-1");
    let first = &entries[6];
    assert_eq!(first["decision"], "ALLOW");
    assert_eq!(first["plugin"], "use-scenes");
    assert_eq!(first["pluginVersion"], "0.1.0");
    assert_eq!(first["userId"], "u-1");
    assert_eq!(first["useSence"], "Training");
    assert_eq!(first["uses"], 1);
    assert_eq!(
        first["countersBefore"],
        json!({"training": 3, "inference": 2})
    );
    assert_eq!(
        first["countersAfter"],
        json!({"training": 2, "inference": 2})
    );
    assert_eq!(first["requestSha256"].as_str().map(str::len), Some(64));
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(entries[1]["countersBefore"]["inference"], 2);
    assert_eq!(entries[1]["countersAfter"]["inference"], 0);

    // Revoked: every later access is denied without asking the plugin.
    let r = app
        .post(
            &format!("/v1/policies/{policy_id}/revoke"),
            Some(&other_space),
            &json!({}),
        )
        .await;
    r.expect_error(403, "FORBIDDEN");
    let r = app
        .post(
            &format!("/v1/policies/{policy_id}/revoke"),
            Some(&space),
            &json!({}),
        )
        .await;
    assert_eq!(r.ok()["status"], 0);
    assert_eq!(r.ok()["statusName"], "revoked");
    assert!(r.ok()["revokeTime"].is_string());
    app.post(
        &format!("/v1/policies/{policy_id}/revoke"),
        Some(&space),
        &json!({}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    let r = access(&app, &space, &policy_id, use_as("r-8", "u-1", "training")).await;
    let d = r.ok();
    assert_eq!(d["decision"], "DENY");
    assert!(
        d["reasons"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("revoked"))
    );
    let log = decisions(&app, &space, &policy_id).await;
    assert!(log.ok()["decisions"][0]["plugin"].is_null());
    // The name is free again after revocation.
    let fresh = policy(&app, &p, "research", json!([{"useSence": "training"}])).await;
    assert_ne!(fresh, policy_id);

    // A policy whose every scene is used up is exhausted.
    let one = policy(
        &app,
        &p,
        "one-shot",
        json!([{"useSence": "x", "counts": 1}]),
    )
    .await;
    access(&app, &space, &one, use_as("o-1", "u-1", "x"))
        .await
        .ok();
    assert_eq!(get_policy(&app, &space, &one).await.ok()["status"], 2);
}

/// Every way to get /deliverDatasets wrong is refused, naming what is wrong.
async fn deliver_datasets_refusals(app: TestApp) {
    use_scenes_by_default(&app).await;
    let space = app.account_with_role("tds-one", "data_space").await;
    let other_space = app.account_with_role("tds-two", "data_space").await;
    let p = buy(&app, &space, "ctl-1", "carol").await;
    let scenes = json!([{"useSence": "training", "counts": 5}]);
    let body = policy_body(&p, "research", scenes.clone());

    // Only data spaces, and only the one that published the data.
    let r = app
        .post("/deliverDatasets", Some(&p.buyer.token), &json!({"x": 1}))
        .await;
    r.expect_error(403, "FORBIDDEN");
    app.post("/deliverDatasets", None, &body)
        .await
        .expect_error(401, "UNAUTHENTICATED");
    let r = app
        .post("/deliverDatasets", Some(&other_space), &body)
        .await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("another data space"), "{}", r.body);

    // A forged license: its signature no longer matches.
    let mut forged = body.clone();
    forged["licenses"]["licensee"] = json!("mallory");
    deliver(&app, &p, &forged)
        .await
        .expect_error(403, "FORBIDDEN");
    let mut forged = body.clone();
    forged["licenses"]["license_term"]["endDate"] = json!("2099-01-01 00:00:00");
    deliver(&app, &p, &forged)
        .await
        .expect_error(403, "FORBIDDEN");
    // A malformed one.
    let mut malformed = body.clone();
    malformed["licenses"]
        .as_object_mut()
        .map(|l| l.remove("digital_signature"));
    let r = deliver(&app, &p, &malformed).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/licenses"), "{}", r.body);

    // The wrong dataID.
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-2", &["ct"], true, None),
    )
    .await
    .ok();
    let mut wrong = body.clone();
    wrong["dataID"] = json!("ctl-2");
    let r = deliver(&app, &p, &wrong).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/dataID"), "{}", r.body);

    // Dates: malformed, reversed, beyond the license, in the past.
    for (field, value, needle) in [
        ("startDate", "next monday", "/startDate"),
        ("endDate", "2024-02-30 00:00:00", "/endDate"),
        ("startDate", "2000-01-01 00:00:00", "/startDate"),
        ("endDate", "2999-01-01 00:00:00", "/endDate"),
    ] {
        let mut bad = body.clone();
        bad[field] = json!(value);
        let r = deliver(&app, &p, &bad).await;
        r.expect_error(400, "INVALID_ARGUMENT");
        assert!(
            r.error_msg().contains(needle),
            "{field}={value}: {}",
            r.body
        );
    }
    let mut reversed = body.clone();
    reversed["startDate"] = p.license["license_term"]["endDate"].clone();
    reversed["endDate"] = p.license["license_term"]["startData"].clone();
    let r = deliver(&app, &p, &reversed).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/endDate"), "{}", r.body);

    // Scenes and users.
    for (scenes, needle) in [
        (json!([]), "/useScenes"),
        (
            json!([{"useSence": "a"}, {"useSence": " A"}]),
            "/useScenes/1/useSence",
        ),
        (json!([{"useSence": " "}]), "/useScenes/0/useSence"),
        (json!([{"counts": 1}]), "useSence"),
        (
            json!([{"useSence": "a", "counts": -1}]),
            "/useScenes/0/counts",
        ),
        (
            json!([{"useSence": "a", "counts": 2, "remainingCounts": 3}]),
            "/useScenes/0/remainingCounts",
        ),
        (
            json!([{"useSence": "a", "remainingCounts": 3}]),
            "/useScenes/0/remainingCounts",
        ),
        (
            json!([{"useSence": "a", "viewRowsRange": [9, 1]}]),
            "/useScenes/0/viewRowsRange",
        ),
        (
            json!([{"useSence": "a", "viewPageRange": "1-9"}]),
            "/useScenes/0/viewPageRange",
        ),
        (json!([{"useSence": "a", "usage": 1}]), "/useScenes/0"),
    ] {
        let r = deliver(&app, &p, &policy_body(&p, "research", scenes.clone())).await;
        r.expect_error(400, "INVALID_ARGUMENT");
        assert!(r.error_msg().contains(needle), "{scenes}: {}", r.body);
    }
    let mut users = body.clone();
    users["relUsers"] = json!([{"userId": "u-1", "userName": "x", "isGroup": 2}]);
    let r = deliver(&app, &p, &users).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/relUsers/0/isGroup"), "{}", r.body);
    users["relUsers"] = json!([]);
    deliver(&app, &p, &users)
        .await
        .expect_error(400, "INVALID_ARGUMENT");

    // A license of ordinary data is delivered by /deliver, not here.
    let alice = app.party("alice").await;
    let listing = app.listing(&alice, "d1", None, b"payload").await;
    let buyer = app.buyer("dave").await;
    let (_, settled) = app.settled_trade(&buyer, &listing).await;
    let mut ordinary = body.clone();
    ordinary["licenses"] = settled["licenses"].clone();
    ordinary["dataID"] = json!("d1");
    let r = deliver(&app, &p, &ordinary).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/deliver"), "{}", r.body);

    // A superseded license (after /updateLicenses).
    app.post(
        "/updateLicenses",
        Some(&space),
        &json!({"owner": "trusted-data-space", "dataID": "ctl-1"}),
    )
    .await
    .ok();
    let r = deliver(&app, &p, &body).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("superseded"), "{}", r.body);
}

/// /updateLicenses keeps policies bound to the new license; a revoked publication leaves its
/// policies working.
async fn licenses_updates_and_revocation_keep_policies(app: TestApp) {
    let p = bought(&app).await;
    let space = p.space.clone();
    let scenes = json!([{"useSence": "training", "counts": 5}]);
    let policy_id = policy(&app, &p, "research", scenes.clone()).await;
    access(&app, &space, &policy_id, use_as("a-1", "u-1", "training"))
        .await
        .ok();

    let updated = app
        .post(
            "/updateLicenses",
            Some(&space),
            &json!({"owner": "trusted-data-space", "dataID": "ctl-1"}),
        )
        .await;
    let new_license = updated.ok()["licenses"][0].clone();
    assert_ne!(new_license["licensesID"], p.license["licensesID"]);
    let v = get_policy(&app, &space, &policy_id).await;
    assert_eq!(v.ok()["licensesID"], new_license["licensesID"]);
    assert_eq!(v.ok()["remainingCounts"]["training"], 4);
    let r = access(&app, &space, &policy_id, use_as("a-2", "u-1", "training")).await;
    assert_eq!(r.ok()["decision"], "ALLOW");
    // The new license finds the same policy; the old one is refused.
    let renewed = Purchase {
        license: new_license,
        space: space.clone(),
        buyer: p.buyer,
        data_id: p.data_id.clone(),
    };
    let again = deliver(&app, &renewed, &policy_body(&renewed, "research", scenes)).await;
    assert_eq!(again.ok()["policyId"], policy_id.as_str());
    // New policies can be set up with the new license.
    policy(&app, &renewed, "preview", json!([{"useSence": "preview"}])).await;

    // The data space withdraws the publication: nobody can buy it any more, existing policies
    // keep working until their end date.
    app.post(
        "/revokePublishedData",
        Some(&space),
        &json!({"registrationID": "TDS-CONTROLLED", "dataID": "ctl-1"}),
    )
    .await
    .ok();
    let r = access(&app, &space, &policy_id, use_as("a-3", "u-1", "training")).await;
    assert_eq!(r.ok()["decision"], "ALLOW", "{}", r.body);
    assert_eq!(r.ok()["remainingCounts"]["training"], 2);
}

/// Runs `requests` concurrently (each `(requestId, body)`) and returns the answers by index.
async fn concurrently(
    app: &TestApp,
    token: &str,
    policy_id: &str,
    requests: Vec<Value>,
) -> Vec<Value> {
    let mut tasks = Vec::new();
    for body in requests {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/policies/{policy_id}/access"));
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("X-Auth-Token", token)
                .json(&body)
                .send()
                .await
                .expect("answer");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")["data"].clone()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

fn count(answers: &[Value], decision: &str) -> usize {
    answers.iter().filter(|a| a["decision"] == decision).count()
}

/// 200 concurrent accesses against counts 50: exactly 50 allowed, none after; retried
/// request ids (concurrent with their first attempts, and later) spend nothing more.
async fn counters_are_exact_under_concurrency(app: TestApp) {
    let p = bought(&app).await;
    let space = p.space.clone();
    let policy_id = policy(
        &app,
        &p,
        "fifty",
        json!([{"useSence": "training", "counts": 50}]),
    )
    .await;

    let requests: Vec<Value> = (0..200)
        .map(|i| use_as(&format!("req-{i}"), "u-1", "training"))
        .collect();
    let first = concurrently(&app, &space, &policy_id, requests.clone()).await;
    assert_eq!(count(&first, "ALLOW"), 50);
    assert_eq!(count(&first, "DENY"), 150);
    let v = get_policy(&app, &space, &policy_id).await;
    assert_eq!(v.ok()["remainingCounts"]["training"], 0);
    assert_eq!(v.ok()["status"], 2);
    // Every ALLOW saw its own counter: 49, 48, … 0, each once.
    let mut after: Vec<i64> = first
        .iter()
        .filter(|a| a["decision"] == "ALLOW")
        .filter_map(|a| a["remainingCounts"]["training"].as_i64())
        .collect();
    after.sort_unstable();
    assert_eq!(after, (0..50).collect::<Vec<i64>>());

    // All 200 again: the same decisions, nothing consumed.
    let replay = concurrently(&app, &space, &policy_id, requests).await;
    for (a, b) in first.iter().zip(&replay) {
        assert_eq!(a["decisionId"], b["decisionId"]);
        assert_eq!(a["decision"], b["decision"]);
    }
    let log = decisions(&app, &space, &policy_id).await;
    let log = log.ok();
    assert_eq!(log["total"], 200);
    let allowed = log["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["decision"] == "ALLOW")
        .count();
    assert_eq!(allowed, 50);
    // Denials after the counter ran out say so (from the plugin, or from the conditional update
    // when a concurrent access took the last use).
    assert!(
        first
            .iter()
            .filter(|a| a["decision"] == "DENY")
            .all(|a| a["reasons"][0]
                .as_str()
                .is_some_and(|r| r.starts_with("remainingCounts") || r.starts_with("exhausted"))),
        "{first:?}"
    );

    // Retries racing their first attempts: 50 distinct request ids, each sent 4 times at once,
    // against counts 100: exactly 50 uses, one decision per id.
    let policy_id = policy(
        &app,
        &p,
        "hundred",
        json!([{"useSence": "training", "counts": 100}]),
    )
    .await;
    let requests: Vec<Value> = (0..200)
        .map(|i| use_as(&format!("retry-{}", i % 50), "u-1", "training"))
        .collect();
    let answers = concurrently(&app, &space, &policy_id, requests).await;
    assert_eq!(count(&answers, "ALLOW"), 200);
    let mut by_id: HashMap<String, HashSet<String>> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        by_id
            .entry(format!("retry-{}", i % 50))
            .or_default()
            .insert(a["decisionId"].as_str().unwrap_or_default().to_owned());
    }
    assert!(by_id.values().all(|ids| ids.len() == 1), "{by_id:?}");
    let v = get_policy(&app, &space, &policy_id).await;
    assert_eq!(v.ok()["remainingCounts"]["training"], 50);
    assert_eq!(decisions(&app, &space, &policy_id).await.ok()["total"], 50);

    // A request id is bound to its request.
    let mut other = use_as("retry-1", "u-1", "training");
    other["uses"] = json!(2);
    let r = access(&app, &space, &policy_id, other).await;
    r.expect_error(409, "CONFLICT");
    assert!(r.error_msg().contains("retry-1"), "{}", r.body);
}

/// Access requests are validated like every request.
async fn access_requests_are_validated(app: TestApp) {
    let p = bought(&app).await;
    let space = p.space.clone();
    let policy_id = policy(&app, &p, "p", json!([{"useSence": "training"}])).await;
    for (body, needle) in [
        (
            json!({"userId": "u-1", "useSence": "training"}),
            "requestId",
        ),
        (json!({"requestId": "r", "useSence": "training"}), "userId"),
        (json!({"requestId": "r", "userId": "u-1"}), "useSence"),
        (
            json!({"requestId": "r", "userId": "u-1", "useSence": "training", "uses": 0}),
            "/uses",
        ),
        (
            json!({"requestId": "r", "userId": "u-1", "useSence": "training", "viewRows": "all"}),
            "/viewRows",
        ),
        (
            json!({"requestId": "r", "userId": "u-1", "useSence": "training", "extra": 1}),
            "extra",
        ),
        (
            json!({"requestId": "has space", "userId": "u-1", "useSence": "training"}),
            "/requestId",
        ),
    ] {
        let r = access(&app, &space, &policy_id, body.clone()).await;
        r.expect_error(400, "INVALID_ARGUMENT");
        assert!(r.error_msg().contains(needle), "{body}: {}", r.body);
    }
    access(&app, &space, "pol_unknown", use_as("r", "u-1", "training"))
        .await
        .expect_error(404, "NOT_FOUND");
    // Nothing was decided.
    assert_eq!(decisions(&app, &space, &policy_id).await.ok()["total"], 0);
}

async fn set_policy_rule(app: &TestApp, data_id: &str, plugin: &str, config: Value) -> Resp {
    let operator = app.operator().await;
    app.send(put(
        app,
        &operator,
        "/v1/admin/policy-rules",
        &json!({"registrationID": "TDS-CONTROLLED", "dataID": data_id, "plugin": plugin,
                "config": config}),
    ))
    .await
}

/// A policy plugin that loops, traps, exhausts its memory or answers garbage denies the access
/// with the reason, changes no counter, and the server keeps serving. The per-publication rule
/// wins over the default; without either, accesses are denied.
async fn faulty_policy_plugins_deny(app: TestApp) {
    let space = app.account_with_role("tds-one", "data_space").await;
    let p = buy(&app, &space, "ctl-1", "carol").await;
    let policy_id = policy(
        &app,
        &p,
        "p",
        json!([{"useSence": "training", "counts": 5}]),
    )
    .await;

    // No rule, no default policy plugin: denied.
    let r = access(&app, &space, &policy_id, use_as("n-1", "u-1", "training")).await;
    let d = r.ok();
    assert_eq!(d["decision"], "DENY");
    assert!(
        d["reasons"][0]
            .as_str()
            .is_some_and(|m| m.contains("no policy plugin")),
        "{d}"
    );

    assert_eq!(
        app.installed("fixtures/fixture-policy-faults").await,
        "fixture-policy-faults"
    );
    use_scenes_by_default(&app).await;
    for (fault, needle) in [
        ("loop", "policy plugin fixture-policy-faults@0.1.0"),
        ("trap", "trapped"),
        ("memory", "memory"),
        ("garbage", "malformed verdict"),
        ("nonsense", "invalid-policy"),
    ] {
        set_policy_rule(
            &app,
            "ctl-1",
            "fixture-policy-faults",
            json!({"fault": fault}),
        )
        .await
        .ok();
        let r = access(
            &app,
            &space,
            &policy_id,
            use_as(&format!("f-{fault}"), "u-1", "training"),
        )
        .await;
        let d = r.ok();
        assert_eq!(d["decision"], "DENY", "{fault}: {d}");
        assert!(
            d["reasons"][0].as_str().is_some_and(|m| m.contains(needle)),
            "{fault}: {d}"
        );
        assert_eq!(d["remainingCounts"]["training"], 5, "{fault}");
        app.get("/healthz", None, &[]).await.ok();
    }
    // The loop was stopped by fuel or time, and said so.
    let log = decisions(&app, &space, &policy_id).await;
    let log = log.ok();
    let looped = log["decisions"]
        .as_array()
        .expect("log")
        .iter()
        .find(|d| d["requestId"] == "f-loop")
        .expect("loop decision")
        .clone();
    let reason = looped["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason.contains("out of fuel") || reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(looped["plugin"], "fixture-policy-faults");

    // The same plugin behaving: allowed, counted.
    set_policy_rule(&app, "ctl-1", "fixture-policy-faults", json!({}))
        .await
        .ok();
    let r = access(&app, &space, &policy_id, use_as("ok-1", "u-1", "training")).await;
    assert_eq!(r.ok()["decision"], "ALLOW");
    assert_eq!(r.ok()["remainingCounts"]["training"], 4);
    // Back to use-scenes for this publication: it denies an unknown user.
    set_policy_rule(&app, "ctl-1", "use-scenes", json!({}))
        .await
        .ok();
    let r = access(
        &app,
        &space,
        &policy_id,
        use_as("ok-2", "nobody", "training"),
    )
    .await;
    assert_eq!(r.ok()["decision"], "DENY");
    // A disabled plugin decides nothing.
    let operator = app.operator().await;
    app.post(
        "/v1/admin/plugins/disable",
        Some(&operator),
        &json!({"plugin": "use-scenes"}),
    )
    .await
    .ok();
    let r = access(&app, &space, &policy_id, use_as("ok-3", "u-1", "training")).await;
    assert_eq!(r.ok()["decision"], "DENY");
    assert!(
        r.ok()["reasons"][0]
            .as_str()
            .is_some_and(|m| m.contains("disabled")),
        "{}",
        r.body
    );

    // The audit trail has every call, with its outcome.
    let calls = app
        .get(
            "/v1/admin/plugin-calls",
            Some(&operator),
            &[("plugin", "fixture-policy-faults")],
        )
        .await;
    let calls = calls.ok()["calls"].as_array().cloned().unwrap_or_default();
    let outcomes: BTreeMap<String, usize> = calls.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c["outcome"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("failed".to_owned(), 4),
            ("ok".to_owned(), 1),
            ("rejected".to_owned(), 1)
        ])
    );
    assert!(
        calls
            .iter()
            .all(|c| c["operation"] == "evaluate" && c["subject"] == policy_id.as_str())
    );
}

/// `PUT /v1/admin/policy-rules`: operators, policy plugins, controlled data.
async fn policy_rules_are_checked(app: TestApp) {
    app.installed("policy-use-scenes").await;
    app.installed("billing-flat-fee").await;
    let space = app.account_with_role("tds-one", "data_space").await;
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-1", &["ct"], true, None),
    )
    .await
    .ok();
    let r = set_policy_rule(&app, "ctl-1", "use-scenes", json!({})).await;
    assert_eq!(r.ok()["plugin"], "use-scenes");
    let r = set_policy_rule(&app, "ctl-1", "flat-fee", json!({})).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/plugin"), "{}", r.body);
    set_policy_rule(&app, "ctl-1", "ghost", json!({}))
        .await
        .expect_error(404, "NOT_FOUND");
    set_policy_rule(&app, "ctl-404", "use-scenes", json!({}))
        .await
        .expect_error(404, "NOT_FOUND");
    app.send(put(
        &app,
        &space,
        "/v1/admin/policy-rules",
        &json!({"registrationID": "TDS-CONTROLLED", "dataID": "ctl-1", "plugin": "use-scenes"}),
    ))
    .await
    .expect_error(403, "FORBIDDEN");
    let operator = app.operator().await;
    let r = app
        .send(put(
            &app,
            &operator,
            "/v1/admin/policy-rules",
            &json!({"registrationID": "reg_1", "dataID": "ctl-1", "plugin": "use-scenes"}),
        ))
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/registrationID"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_data_end_to_end_sqlite() {
    controlled_data_end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_data_end_to_end_postgres() {
    controlled_data_end_to_end(Backend::Postgres).await;
}

on_both_backends!(
    deliver_datasets_refusals,
    licenses_updates_and_revocation_keep_policies,
    counters_are_exact_under_concurrency,
    access_requests_are_validated,
    faulty_policy_plugins_deny,
    policy_rules_are_checked,
);

const CRASH_COUNTS: i64 = 50;
const CRASH_REQUESTS: usize = 200;

fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.to_string_lossy())
}

/// kill -9 of the real binary while 200 accesses race for 50 uses; after a restart the counter
/// and the decision log agree (remaining + ALLOWs logged = counts), every ALLOW answered before
/// the kill is in the log, and retrying every request id never allows more than counts.
async fn kill_during_accesses(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let trust = dir.path().join("trusted");
    trust_test_publisher(&trust);
    let packages = package_dir(&["policy-use-scenes"]);
    let extra = format!(
        "[plugins]\ntrust_dir = {}\ncache_dir = {}\npreinstall = [{}]\n\n[plugins.defaults]\npolicy = \"use-scenes\"\n",
        toml_path(&trust),
        toml_path(&shared_cache_dir()),
        toml_path(packages.path())
    );
    let mut app = TestApp::spawn_binary(backend, &extra).await;
    let space = app.account_with_role("tds-one", "data_space").await;
    let p = buy(&app, &space, "ctl-1", "carol").await;
    let policy_id = policy(
        &app,
        &p,
        "crash",
        json!([{"useSence": "training", "counts": CRASH_COUNTS}]),
    )
    .await;

    let requests = (0..CRASH_REQUESTS)
        .map(|i| {
            (
                format!("/v1/policies/{policy_id}/access"),
                space.clone(),
                use_as(&format!("k-{i}"), "u-1", "training"),
            )
        })
        .collect();
    let acknowledged: HashMap<usize, Value> = app
        .post_all_then_kill9(requests, 20)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(i, answer)| Some((i, answer?["data"].clone())))
        .collect();
    assert!(!acknowledged.is_empty(), "nothing answered before the kill");
    assert!(
        acknowledged.len() < CRASH_REQUESTS,
        "every access answered before the kill; nothing was tested"
    );

    app.restart_binary().await;
    let v = get_policy(&app, &space, &policy_id).await;
    let remaining = v.ok()["remainingCounts"]["training"]
        .as_i64()
        .expect("remaining");
    let log = decisions(&app, &space, &policy_id).await;
    let logged: HashMap<String, Value> = log.ok()["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            (
                d["requestId"].as_str().unwrap_or_default().to_owned(),
                d.clone(),
            )
        })
        .collect();
    let allowed_logged = logged.values().filter(|d| d["decision"] == "ALLOW").count() as i64;
    assert_eq!(
        remaining + allowed_logged,
        CRASH_COUNTS,
        "counter and log disagree"
    );
    let allowed_acknowledged = acknowledged
        .values()
        .filter(|a| a["decision"] == "ALLOW")
        .count() as i64;
    assert!(allowed_acknowledged <= allowed_logged);
    for (i, a) in &acknowledged {
        let d = logged
            .get(&format!("k-{i}"))
            .unwrap_or_else(|| panic!("acknowledged k-{i} is not in the log"));
        assert_eq!(d["decisionId"], a["decisionId"]);
        assert_eq!(d["decision"], a["decision"]);
    }

    // Every request id again: the logged ones answer as before, the rest are decided now;
    // never more than counts allowed in all.
    let retried = concurrently(
        &app,
        &space,
        &policy_id,
        (0..CRASH_REQUESTS)
            .map(|i| use_as(&format!("k-{i}"), "u-1", "training"))
            .collect(),
    )
    .await;
    for (i, a) in retried.iter().enumerate() {
        if let Some(first) = acknowledged.get(&i) {
            assert_eq!(first["decisionId"], a["decisionId"], "k-{i}");
        }
    }
    assert_eq!(count(&retried, "ALLOW") as i64, CRASH_COUNTS);
    let v = get_policy(&app, &space, &policy_id).await;
    assert_eq!(v.ok()["remainingCounts"]["training"], 0);
    app.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_accesses_sqlite() {
    kill_during_accesses(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_accesses_postgres() {
    kill_during_accesses(Backend::Postgres).await;
}
