//! Clause 7.3 a: keyword matching between published resources and published demands.

use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::TestApp;
use crate::support::fixtures::{publish_datasets, register_data, register_demand};

fn ids(page: &Value, key: &str) -> Vec<String> {
    page["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x[key].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn matches_share_type_and_a_normalised_keyword(app: TestApp) {
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    // Full-width letters, other case and stray spaces still match "ct".
    let ct = app
        .published_resource(&alice, "alice", "ct", &["ＣＴ", " Lung "], 10.0)
        .await;
    let other_type = {
        let mut body = register_data("alice", "ct-model", &["ct"]);
        body["data_type"] = json!("model");
        let id = app.register_resource(&alice, &body).await;
        app.post(
            "/publishData",
            Some(&alice),
            &json!({"owner": "alice", "registrationID": id, "free": true}),
        )
        .await
        .ok();
        id
    };
    let unrelated = app
        .published_resource(&alice, "alice", "weather", &["rainfall"], 1.0)
        .await;
    let unpublished = app
        .register_resource(&alice, &register_data("alice", "ct-draft", &["ct"]))
        .await;

    let demand = app
        .published_demand(&carol, "carol", &["ct", "LUNG"], "dataset")
        .await;
    let page = app
        .get("/queryMatchResults", Some(&carol), &[("demandID", &demand)])
        .await;
    let data = page.ok();
    assert_eq!(ids(data, "registrationID"), vec![ct.clone()], "{data}");
    assert_eq!(data["total"], 1);
    let first = &data["results"][0];
    assert_eq!(first["matched_keywords"], json!(["ct", "lung"]));
    assert!(first["score"].as_i64().is_some_and(|s| s >= 20), "{first}");
    assert_eq!(first["owner"], "alice");
    assert_eq!(first["price"], 10.0);
    for absent in [&other_type, &unrelated, &unpublished] {
        assert!(!ids(data, "registrationID").contains(absent));
    }

    // And the other way round.
    let page = app
        .get(
            "/queryMatchResults",
            Some(&alice),
            &[("registrationID", &ct)],
        )
        .await;
    let data = page.ok();
    assert_eq!(ids(data, "demandID"), vec![demand.clone()], "{data}");
    assert_eq!(data["results"][0]["demander"], "carol");
}

async fn ranking_uses_keywords_categories_and_descriptions(app: TestApp) {
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let publish = |data_id: &'static str,
                   words: &'static [&'static str],
                   category: &'static str,
                   description: &'static str| {
        let mut body = register_data("alice", data_id, words);
        body["data_category"] = json!([category]);
        body["description"] = json!(description);
        body
    };
    let mut ids_by_name = std::collections::HashMap::new();
    for (name, body) in [
        (
            "one-keyword",
            publish("a", &["医疗"], "finance", "银行流水"),
        ),
        (
            "two-keywords",
            publish("b", &["医疗", "影像"], "finance", "银行流水"),
        ),
        (
            "one-keyword-category",
            publish("c", &["医疗"], "healthcare", "银行流水"),
        ),
        (
            "one-keyword-description",
            publish("d", &["医疗"], "finance", "肺部诊断报告"),
        ),
    ] {
        let id = app.register_resource(&alice, &body).await;
        app.post(
            "/publishData",
            Some(&alice),
            &json!({"owner": "alice", "registrationID": id, "free": true}),
        )
        .await
        .ok();
        ids_by_name.insert(name, id);
    }
    let mut demand = register_demand("carol", &["医疗", "影像"], "dataset");
    demand["data_category"] = json!(["healthcare"]);
    demand["description"] = json!("需要肺部诊断影像");
    let demand_id = app.register_demand_from(&carol, &demand).await;
    app.post(
        "/publishDemand",
        Some(&carol),
        &json!({"demander": "carol", "demandID": demand_id}),
    )
    .await
    .ok();

    let page = app
        .get(
            "/queryMatchResults",
            Some(&carol),
            &[("demandID", &demand_id)],
        )
        .await;
    let data = page.ok();
    let order = ids(data, "registrationID");
    let expected: Vec<String> = [
        "two-keywords",
        "one-keyword-category",
        "one-keyword-description",
        "one-keyword",
    ]
    .iter()
    .map(|n| ids_by_name[n].clone())
    .collect();
    assert_eq!(order, expected, "{data}");
    let scores: Vec<i64> = data["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["score"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(scores[0], 20, "two shared keywords");
    assert_eq!(scores[1], 13, "a keyword and a category");
    assert!(
        scores[2] > 10 && scores[2] < 13,
        "a keyword and description terms: {scores:?}"
    );
    assert_eq!(scores[3], 10, "a keyword only");
}

async fn revocations_and_publications_show_at_once(app: TestApp) {
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let demand = app
        .published_demand(&carol, "carol", &["genome"], "dataset")
        .await;
    let params = [("demandID", demand.as_str())];
    let query = || app.get("/queryMatchResults", Some(&carol), &params);
    assert_eq!(query().await.ok()["total"], 0);
    let r = app
        .published_resource(&alice, "alice", "g1", &["genome"], 2.0)
        .await;
    assert_eq!(ids(query().await.ok(), "registrationID"), vec![r.clone()]);
    app.post(
        "/revokePublishedData",
        Some(&alice),
        &json!({"registrationID": r}),
    )
    .await
    .ok();
    assert_eq!(query().await.ok()["total"], 0);
    // A revoked demand has no matches to show.
    app.post(
        "/revokeDemand",
        Some(&carol),
        &json!({"demander": "carol", "demandID": demand}),
    )
    .await
    .ok();
    query().await.expect_error(409, "INVALID_STATE");
}

async fn paging(app: TestApp) {
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(
            app.published_resource(&alice, "alice", &format!("p{i}"), &["paged"], 1.0)
                .await,
        );
    }
    let demand = app
        .published_demand(&carol, "carol", &["paged"], "dataset")
        .await;
    let mut seen = Vec::new();
    for offset in ["0", "3", "6"] {
        let page = app
            .get(
                "/queryMatchResults",
                Some(&carol),
                &[("demandID", &demand), ("limit", "3"), ("offset", offset)],
            )
            .await;
        let data = page.ok();
        assert_eq!(data["total"], 7);
        assert_eq!(data["limit"], 3);
        seen.extend(ids(data, "registrationID"));
    }
    // Equal scores: newest first, each exactly once.
    all.reverse();
    assert_eq!(seen, all);
    let past_end = app
        .get(
            "/queryMatchResults",
            Some(&carol),
            &[("demandID", &demand), ("offset", "50")],
        )
        .await;
    assert_eq!(past_end.ok()["total"], 7);
    assert_eq!(past_end.ok()["results"], json!([]));
    for (k, v) in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("offset", "-1"),
    ] {
        app.get(
            "/queryMatchResults",
            Some(&carol),
            &[("demandID", &demand), (k, v)],
        )
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    }
}

async fn controlled_data_matches_too(app: TestApp) {
    let space = app.account_with_role("space-one", "data_space").await;
    let carol = app.user("carol").await;
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-7", &["clinical"], false, Some(3.0)),
    )
    .await
    .ok();
    let demand = app
        .published_demand(&carol, "carol", &["Clinical"], "dataset")
        .await;
    let page = app
        .get("/queryMatchResults", Some(&carol), &[("demandID", &demand)])
        .await;
    let data = page.ok();
    assert_eq!(data["results"][0]["registrationID"], "TDS-CONTROLLED");
    assert_eq!(data["results"][0]["dataID"], "ctl-7");
    assert_eq!(data["results"][0]["owner"], "trusted-data-space");
    let page = app
        .get(
            "/queryMatchResults",
            Some(&space),
            &[("registrationID", "TDS-CONTROLLED"), ("dataID", "ctl-7")],
        )
        .await;
    assert_eq!(ids(page.ok(), "demandID"), vec![demand]);
}

async fn query_rules(app: TestApp) {
    let carol = app.user("carol").await;
    app.get("/queryMatchResults", None, &[("demandID", "x")])
        .await
        .expect_error(401, "UNAUTHENTICATED");
    app.get("/queryMatchResults", Some(&carol), &[])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.get(
        "/queryMatchResults",
        Some(&carol),
        &[("demandID", "x"), ("registrationID", "y")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    app.get(
        "/queryMatchResults",
        Some(&carol),
        &[("demandID", "dem_missing")],
    )
    .await
    .expect_error(404, "NOT_FOUND");
    app.get(
        "/queryMatchResults",
        Some(&carol),
        &[("registrationID", "TDS-CONTROLLED")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let unpublished = app
        .register_demand_from(&carol, &register_demand("carol", &["x"], "dataset"))
        .await;
    app.get(
        "/queryMatchResults",
        Some(&carol),
        &[("demandID", &unpublished)],
    )
    .await
    .expect_error(409, "INVALID_STATE");
}

/// Each server keeps its own in-memory index; a change made through one shows at once on
/// every other server of the same database.
async fn servers_sharing_a_database_see_each_others_changes(app: TestApp) {
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let demand = app
        .published_demand(&carol, "carol", &["sonar"], "dataset")
        .await;
    let replica = app.replica().await;
    let params = [("demandID", demand.as_str())];
    let total_on_replica = || async {
        app.get_via(&replica, "/queryMatchResults", Some(&carol), &params)
            .await
            .ok()["total"]
            .clone()
    };
    assert_eq!(total_on_replica().await, 0);
    let first = app
        .published_resource(&alice, "alice", "sonar-1", &["sonar"], 1.0)
        .await;
    let second = app
        .published_resource(&alice, "alice", "sonar-2", &["SONAR", "depth"], 1.0)
        .await;
    let page = app
        .get_via(&replica, "/queryMatchResults", Some(&carol), &params)
        .await;
    assert_eq!(
        ids(page.ok(), "registrationID"),
        vec![second.clone(), first.clone()],
        "ties go to the newest"
    );
    app.post(
        "/revokePublishedData",
        Some(&alice),
        &json!({"registrationID": second}),
    )
    .await
    .ok();
    let page = app
        .get_via(&replica, "/queryMatchResults", Some(&carol), &params)
        .await;
    assert_eq!(ids(page.ok(), "registrationID"), vec![first.clone()]);
    // Republished, it is back; and a server started later loads everything at start.
    app.post(
        "/publishData",
        Some(&alice),
        &json!({"owner": "alice", "registrationID": second, "free": true}),
    )
    .await
    .ok();
    let late = app.replica().await;
    let page = app
        .get_via(&late, "/queryMatchResults", Some(&carol), &params)
        .await;
    assert_eq!(ids(page.ok(), "registrationID"), vec![second, first]);
    assert_eq!(total_on_replica().await, 2);
}

/// The index loads a few items by id lists and many (at start, after a mass import) in one
/// pass over a side's terms; both reads must give the same terms.
async fn both_ways_of_reading_indexed_terms_agree(app: TestApp) {
    use liutong::domain::matching::Side;
    let alice = app.user("alice").await;
    let mut resources = Vec::new();
    for (i, words) in [&["ct", "lung"][..], &["ＭＲＩ"], &["genome", "ct"]]
        .iter()
        .enumerate()
    {
        resources.push(
            app.published_resource(&alice, "alice", &format!("r{i}"), words, 1.0)
                .await,
        );
    }
    // Internal ids of the chosen items (the store keys terms by them).
    let mut wanted = Vec::new();
    for registration_id in &resources[..2] {
        let r = app
            .store
            .resource_by_ref(registration_id, None)
            .await
            .expect("read")
            .expect("resource");
        wanted.push(r.id);
    }
    let sorted = |mut v: Vec<liutong::store::matching::IndexedTerm>| {
        v.sort_by(|a, b| (&a.item_id, &a.term).cmp(&(&b.item_id, &b.term)));
        v
    };
    let by_ids = sorted(
        app.store
            .match_item_terms_by_ids(Side::Resource, &wanted)
            .await
            .expect("by ids"),
    );
    let by_scan = sorted(
        app.store
            .match_item_terms_by_scan(Side::Resource, &wanted)
            .await
            .expect("by scan"),
    );
    assert!(by_ids.iter().any(|t| t.term == "mri"), "{by_ids:?}");
    assert!(by_ids.iter().all(|t| wanted.contains(&t.item_id)));
    assert_eq!(by_ids, by_scan);
}

on_both_backends!(
    both_ways_of_reading_indexed_terms_agree,
    servers_sharing_a_database_see_each_others_changes,
    matches_share_type_and_a_normalised_keyword,
    ranking_uses_keywords_categories_and_descriptions,
    revocations_and_publications_show_at_once,
    paging,
    controlled_data_matches_too,
    query_rules,
);
