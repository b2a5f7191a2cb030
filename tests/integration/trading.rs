//! A.3.1–A.3.4, A.3.8 and the ledger over HTTP: confirming, settling, licenses, credits.

use std::time::Duration;

use base64::Engine as _;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::fixtures::publish_datasets;
use crate::support::trade::{age_decrypt, b64, parse_identity_file, verify_signed};
use crate::support::{Backend, TestApp};

const A37_FIELDS: &[&str] = &[
    "licensesID",
    "licensor",
    "licensee",
    "registrationID",
    "dataID",
    "resource_url",
    "digital_watermarking",
    "digital_signature",
    "usage_restrictions",
    "license_term",
];

async fn full_trade(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let stranger = app.user("mallory").await;
    let operator = app.operator().await;
    let listing = app
        .listing(&alice, "ct-2024", Some(19.99), b"chest CT scans")
        .await;
    app.credit("carol", 50.0, "wire-1").await.ok();
    assert_eq!(app.balance(&carol.token).await, 50.0);

    let demand = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    let confirmed = app
        .post(
            "/confirmDemand",
            Some(&carol.token),
            &json!({"demander": "carol", "demandID": demand,
                    "registrationID": listing.registration_id}),
        )
        .await;
    let c = confirmed.ok();
    let confirm_id = c["confirmID"].as_str().expect("confirmID").to_owned();
    assert!(confirm_id.starts_with("cfm_"));
    assert_eq!(c["owner"], "alice");
    assert_eq!(c["demander"], "carol");
    assert_eq!(c["dataID"], "ct-2024");
    assert_eq!(c["demandID"], demand.as_str());
    assert_eq!(c["price"], 19.99);

    // A.3.2: buyer, seller and operator see it; others do not.
    for token in [&carol.token, &alice.token, &operator] {
        let q = app
            .get(
                "/queryDemandForSettlement",
                Some(token),
                &[("confirmID", &confirm_id)],
            )
            .await;
        let d = q.ok();
        assert_eq!(d["settlement_status"], "UNSETTLED");
        assert_eq!(d["registrationID"], listing.registration_id.as_str());
        assert_eq!(d["price"], 19.99);
        assert_eq!(d["owner"], "alice");
    }
    app.get(
        "/queryDemandForSettlement",
        Some(&stranger),
        &[("confirmID", &confirm_id)],
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let unsettled = app
        .get(
            "/querySettlement",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(unsettled.ok()["settlement_status"], "UNSETTLED");
    assert!(unsettled.ok()["payment_proof"].is_null());

    // A.3.3.
    let settled = app.settle(&carol.token, &confirm_id).await;
    let s = settled.ok().clone();
    assert_eq!(s["settlement_status"], "SETTLED");
    let keys = app.keys().await;
    let proof = &s["payment_proof"];
    assert!(verify_signed(&keys, proof, "signature"), "{proof}");
    assert_eq!(proof["confirmID"], confirm_id.as_str());
    assert_eq!(proof["payer"], "carol");
    assert_eq!(proof["payee"], "alice");
    assert_eq!(proof["amount"], "19.99");
    assert_eq!(proof["amountMinor"], 1999);
    assert_eq!(proof["currency"], "CNY");
    assert!(
        proof["ledgerTransaction"]
            .as_str()
            .is_some_and(|t| t.starts_with("ltx_"))
    );
    assert!(
        proof["receiptID"]
            .as_str()
            .is_some_and(|t| t.starts_with("rcpt_"))
    );

    let license = &s["licenses"];
    for field in A37_FIELDS {
        assert!(
            license.get(*field).is_some(),
            "license lacks {field}: {license}"
        );
    }
    assert!(verify_signed(&keys, license, "digital_signature"));
    assert_eq!(license["licensor"], "alice");
    assert_eq!(license["licensee"], "carol");
    assert_eq!(license["registrationID"], listing.registration_id.as_str());
    assert_eq!(license["dataID"], "ct-2024");
    assert_eq!(
        license["usage_restrictions"]["prohibited"],
        json!(["unlicensed_commercial_use", "redistribution", "illegal_use"])
    );
    assert!(license["license_term"]["startData"].is_string());
    assert!(license["license_term"]["endDate"].is_string());

    // private_key opens with the buyer's identity and is the provider's identity.
    let pk = &s["private_key"];
    assert_eq!(pk["format"], "age");
    assert_eq!(pk["recipient"], carol.recipient().as_str());
    let ciphertext = b64()
        .decode(pk["ciphertext"].as_str().expect("ciphertext"))
        .expect("base64");
    let identity_text = String::from_utf8(age_decrypt(&carol.identity, &ciphertext)).expect("utf8");
    let provider = parse_identity_file(&identity_text);
    assert_eq!(
        provider.to_public().to_string(),
        listing.identity.to_public().to_string()
    );

    assert_eq!(app.balance(&carol.token).await, 30.01);
    assert_eq!(app.balance(&alice.token).await, 19.99);

    // Exactly once: again returns the same documents, charges nothing.
    let again = app.settle(&carol.token, &confirm_id).await;
    assert_eq!(again.ok(), &s);
    assert_eq!(app.balance(&carol.token).await, 30.01);
    for token in [&carol.token, &alice.token, &operator] {
        let q = app
            .get(
                "/querySettlement",
                Some(token),
                &[("confirmID", &confirm_id)],
            )
            .await;
        assert_eq!(q.ok(), &s);
    }
    app.get(
        "/querySettlement",
        Some(&stranger),
        &[("confirmID", &confirm_id)],
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let q = app
        .get(
            "/queryDemandForSettlement",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(q.ok()["settlement_status"], "SETTLED");

    // A.3.5: the delivered bytes open with the provider's identity from private_key.
    let delivered = app.deliver_json(&carol.token, license).await;
    let d = delivered.ok();
    let data = b64()
        .decode(d["data_file"].as_str().expect("data_file"))
        .expect("base64");
    assert_eq!(age_decrypt(&provider, &data), b"chest CT scans");
    let dp = &d["delivery_proof"];
    assert!(verify_signed(&keys, dp, "signature"));
    assert_eq!(dp["licensesID"], license["licensesID"]);
    assert_eq!(dp["confirmID"], confirm_id.as_str());
    assert_eq!(dp["size"], data.len());
    assert_eq!(
        dp["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)).as_str()
    );
    assert_eq!(dp["digital_watermarking"], license["digital_watermarking"]);

    // A.3.6.
    for token in [&carol.token, &alice.token, &operator] {
        let q = app
            .get(
                "/queryDeliverResult",
                Some(token),
                &[("confirmID", &confirm_id)],
            )
            .await;
        assert_eq!(q.ok()["delivery_proof"], json!([dp]));
    }
    app.get(
        "/queryDeliverResult",
        Some(&stranger),
        &[("confirmID", &confirm_id)],
    )
    .await
    .expect_error(403, "FORBIDDEN");

    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["entries_sum"], 0);
    assert_eq!(audit["transactions"], 2);
}

async fn confirmation_rules(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let dave = app.buyer("dave").await;
    let listing = app.listing(&alice, "d1", Some(5.0), b"x").await;
    let demand = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    let confirm = |token: &str, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move { app.post("/confirmDemand", Some(&token), &body).await }
    };
    let body = |demander: &str, demand: &str, reg: &str| json!({"demander": demander, "demandID": demand, "registrationID": reg});
    // Claiming to be the demander, or confirming someone else's demand.
    confirm(
        &dave.token,
        body("carol", &demand, &listing.registration_id),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    confirm(&dave.token, body("dave", &demand, &listing.registration_id))
        .await
        .expect_error(403, "FORBIDDEN");
    confirm(
        &carol.token,
        body("carol", "dem_nope", &listing.registration_id),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    confirm(&carol.token, body("carol", &demand, "reg_nope"))
        .await
        .expect_error(404, "NOT_FOUND");
    // Schema: unknown field, missing field.
    let mut extra = body("carol", &demand, &listing.registration_id);
    extra["price"] = json!(1);
    let r = confirm(&carol.token, extra).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("price"), "{}", r.error_msg());
    let r = confirm(
        &carol.token,
        json!({"demander": "carol", "demandID": demand}),
    )
    .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        r.error_msg().contains("registrationID"),
        "{}",
        r.error_msg()
    );

    // An unpublished demand, and a demand of another data_type.
    let unpublished = app
        .register_demand_from(
            &carol.token,
            &crate::support::fixtures::register_demand("carol", &["ct"], "dataset"),
        )
        .await;
    confirm(
        &carol.token,
        body("carol", &unpublished, &listing.registration_id),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    let models = app
        .published_demand(&carol.token, "carol", &["ct"], "model")
        .await;
    let r = confirm(
        &carol.token,
        body("carol", &models, &listing.registration_id),
    )
    .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("data_type"), "{}", r.error_msg());

    // Buying one's own resource.
    let own = app
        .published_demand(&alice.token, "alice", &["ct"], "dataset")
        .await;
    confirm(&alice.token, body("alice", &own, &listing.registration_id))
        .await
        .expect_error(403, "FORBIDDEN");

    // One live confirmation per demand.
    confirm(
        &carol.token,
        body("carol", &demand, &listing.registration_id),
    )
    .await
    .ok();
    let r = confirm(
        &carol.token,
        body("carol", &demand, &listing.registration_id),
    )
    .await;
    r.expect_error(409, "CONFLICT");
    // ...but the same resource for another demand is fine.
    app.confirm(&dave, &listing.registration_id).await;

    // An unpublished (revoked) resource cannot be confirmed.
    app.post(
        "/revokePublishedData",
        Some(&alice.token),
        &json!({"registrationID": listing.registration_id}),
    )
    .await
    .ok();
    app.try_confirm(&carol, &listing.registration_id)
        .await
        .expect_error(409, "INVALID_STATE");

    // Controlled data is confirmed by registrationID TDS-CONTROLLED and its dataID.
    let space = app.account_with_role("tds-one", "data_space").await;
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-1", &["ct"], false, Some(8.5)),
    )
    .await
    .ok();
    let d2 = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    confirm(&carol.token, body("carol", &d2, "TDS-CONTROLLED"))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let mut controlled = body("carol", &d2, "TDS-CONTROLLED");
    controlled["dataID"] = json!("ctl-1");
    let r = confirm(&carol.token, controlled).await;
    assert_eq!(r.ok()["owner"], "trusted-data-space");
    assert_eq!(r.ok()["price"], 8.5);
}

async fn price_is_snapshotted_at_confirmation(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", Some(10.0), b"x").await;
    app.credit("carol", 100.0, "r1").await.ok();
    let confirm_id = app.confirm(&carol, &listing.registration_id).await;
    // Re-priced, then revoked: the confirmed price stands.
    app.post(
        "/publishData",
        Some(&alice.token),
        &json!({"owner": "alice", "registrationID": listing.registration_id, "free": false,
                "price": 99.0}),
    )
    .await
    .ok();
    app.post(
        "/revokePublishedData",
        Some(&alice.token),
        &json!({"registrationID": listing.registration_id}),
    )
    .await
    .ok();
    let q = app
        .get(
            "/queryDemandForSettlement",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(q.ok()["price"], 10.0);
    let s = app.settle(&carol.token, &confirm_id).await;
    assert_eq!(s.ok()["payment_proof"]["amount"], "10.00");
    assert_eq!(app.balance(&carol.token).await, 90.0);
    assert_eq!(app.balance(&alice.token).await, 10.0);
}

async fn settlement_refusals(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let stranger = app.user("mallory").await;
    let listing = app.listing(&alice, "d1", Some(25.0), b"x").await;
    let confirm_id = app.confirm(&carol, &listing.registration_id).await;

    app.settle(&carol.token, "cfm_nope")
        .await
        .expect_error(404, "NOT_FOUND");
    app.settle(&alice.token, &confirm_id)
        .await
        .expect_error(403, "FORBIDDEN");
    app.settle(&stranger, &confirm_id)
        .await
        .expect_error(403, "FORBIDDEN");

    // Not enough money: 402 and nothing changes.
    app.credit("carol", 20.0, "r1").await.ok();
    let before = app.audit().await;
    let r = app.settle(&carol.token, &confirm_id).await;
    r.expect_error(402, "INSUFFICIENT_FUNDS");
    assert!(r.error_msg().contains("20.00"), "{}", r.error_msg());
    assert_eq!(app.balance(&carol.token).await, 20.0);
    assert_eq!(app.balance(&alice.token).await, 0.0);
    assert_eq!(app.audit().await, before);
    let q = app
        .get(
            "/querySettlement",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(q.ok()["settlement_status"], "UNSETTLED");
    // Topped up, it goes through.
    app.credit("carol", 5.0, "r2").await.ok();
    app.settle(&carol.token, &confirm_id).await.ok();
    assert_eq!(app.balance(&carol.token).await, 0.0);
    assert_eq!(app.balance(&alice.token).await, 25.0);

    // A buyer without a delivery key: 409 before any money moves.
    let erin = app.party("erin").await;
    app.credit("erin", 100.0, "r3").await.ok();
    let c2 = app
        .confirm(&erin, &listing_again(&app, &alice, "d2").await)
        .await;
    let r = app.settle(&erin.token, &c2).await;
    r.expect_error(409, "INVALID_STATE");
    assert!(
        r.error_msg().contains("/v1/account/deliveryKey"),
        "{}",
        r.error_msg()
    );
    assert_eq!(app.balance(&erin.token).await, 100.0);
    app.set_delivery_key(&erin).await;
    app.settle(&erin.token, &c2).await.ok();

    // A provider that deposited no delivery key: 409, nothing charged.
    let identity = age::x25519::Identity::generate();
    let mut body = crate::support::fixtures::register_data("alice", "d3", &["ct"]);
    body["public_key"] = json!(identity.to_public().to_string());
    let reg = app.register_resource(&alice.token, &body).await;
    app.post(
        "/publishData",
        Some(&alice.token),
        &json!({"owner": "alice", "registrationID": reg, "free": false, "price": 1.0}),
    )
    .await
    .ok();
    app.upload(&alice.token, &reg, b"data".to_vec()).await.ok();
    let c3 = app.confirm(&erin, &reg).await;
    let r = app.settle(&erin.token, &c3).await;
    r.expect_error(409, "INVALID_STATE");
    assert!(r.error_msg().contains("deliveryKey"), "{}", r.error_msg());
    let balance = app.balance(&erin.token).await;

    // A provider with a key but no file and a resource_url liutong cannot fetch: 409.
    let reg4 = app
        .listing_with(
            &alice,
            "d4",
            Some(1.0),
            b"x",
            age::x25519::Identity::generate(),
            |b| b["resource_url"] = json!("ftp://provider.example/d4.age"),
        )
        .await
        .registration_id;
    let c4 = app.confirm(&erin, &reg4).await;
    let r = app.settle(&erin.token, &c4).await;
    r.expect_error(409, "INVALID_STATE");
    assert!(r.error_msg().contains("/v1/data/file"), "{}", r.error_msg());
    assert_eq!(app.balance(&erin.token).await, balance);

    // A free resource settles at 0 with no money at all.
    let free = app.listing(&alice, "free-1", None, b"free data").await;
    let frank = app.buyer("frank").await;
    let (_, s) = app.settled_trade(&frank, &free).await;
    assert_eq!(s["payment_proof"]["amount"], "0.00");
    assert_eq!(app.balance(&frank.token).await, 0.0);
    let delivered = app.deliver_json(&frank.token, &s["licenses"]).await;
    assert!(delivered.ok()["data_file"].is_string());

    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
}

async fn listing_again(app: &TestApp, owner: &crate::support::trade::Party, id: &str) -> String {
    app.listing(owner, id, Some(3.0), b"more")
        .await
        .registration_id
}

async fn expired_confirmations_release_the_demand(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.confirmation_ttl = Duration::from_secs(1);
    })
    .await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", Some(1.0), b"x").await;
    app.credit("carol", 10.0, "r").await.ok();
    let demand = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    let body = json!({"demander": "carol", "demandID": demand,
                      "registrationID": listing.registration_id});
    let first = app.post("/confirmDemand", Some(&carol.token), &body).await;
    let first_id = first.ok()["confirmID"].as_str().expect("id").to_owned();
    app.post("/confirmDemand", Some(&carol.token), &body)
        .await
        .expect_error(409, "CONFLICT");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let q = app
        .get(
            "/queryDemandForSettlement",
            Some(&carol.token),
            &[("confirmID", &first_id)],
        )
        .await;
    assert_eq!(q.ok()["confirmation_status"], "expired");
    assert_eq!(q.ok()["settlement_status"], "UNSETTLED");
    let r = app.settle(&carol.token, &first_id).await;
    r.expect_error(409, "INVALID_STATE");
    assert!(r.error_msg().contains("expired"), "{}", r.error_msg());
    assert_eq!(app.balance(&carol.token).await, 10.0);
    // The lock is released: the demand can be confirmed again, and that one settles.
    let second = app.post("/confirmDemand", Some(&carol.token), &body).await;
    let second_id = second.ok()["confirmID"].as_str().expect("id").to_owned();
    assert_ne!(second_id, first_id);
    app.settle(&carol.token, &second_id).await.ok();
    // A settled confirmation keeps the demand bound for good.
    app.post("/confirmDemand", Some(&carol.token), &body)
        .await
        .expect_error(409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_confirmations_release_the_demand_sqlite() {
    expired_confirmations_release_the_demand(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_confirmations_release_the_demand_postgres() {
    expired_confirmations_release_the_demand(Backend::Postgres).await;
}

async fn credits_are_idempotent(app: TestApp) {
    let carol = app.user("carol").await;
    app.user("dave").await;
    let operator = app.operator().await;
    let credit = |token: &str, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move {
            app.post("/v1/admin/accounts/credit", Some(&token), &body)
                .await
        }
    };
    let first = credit(
        &operator,
        json!({"username": "carol", "amount": 12.34, "reference": "bank-77"}),
    )
    .await;
    let receipt = first.ok().clone();
    assert_eq!(receipt["username"], "carol");
    assert_eq!(receipt["amount"], 12.34);
    assert_eq!(receipt["reference"], "bank-77");
    assert!(
        receipt["transactionID"]
            .as_str()
            .is_some_and(|t| t.starts_with("ltx_"))
    );
    // Same reference and content: the same result, credited once.
    let again = credit(
        &operator,
        json!({"username": "carol", "amount": 12.34, "reference": "bank-77"}),
    )
    .await;
    assert_eq!(again.ok(), &receipt);
    assert_eq!(app.balance(&carol).await, 12.34);
    // Same reference, other content: conflict.
    for body in [
        json!({"username": "carol", "amount": 12.35, "reference": "bank-77"}),
        json!({"username": "dave", "amount": 12.34, "reference": "bank-77"}),
    ] {
        credit(&operator, body).await.expect_error(409, "CONFLICT");
    }
    // Concurrent repeats of one new reference credit once.
    let results = join_all((0..20).map(|_| {
        credit(
            &operator,
            json!({"username": "carol", "amount": 1.0, "reference": "bank-78"}),
        )
    }))
    .await;
    let first = results[0].ok().clone();
    for r in &results {
        assert_eq!(r.ok(), &first);
    }
    assert_eq!(app.balance(&carol).await, 13.34);

    credit(
        &carol,
        json!({"username": "carol", "amount": 1.0, "reference": "self"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    credit(
        &operator,
        json!({"username": "nobody", "amount": 1.0, "reference": "x1"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    for (amount, pointer) in [
        (json!(0), "/amount"),
        (json!(-5), "/amount"),
        (json!(1.234), "/amount"),
    ] {
        let r = credit(
            &operator,
            json!({"username": "carol", "amount": amount, "reference": "x2"}),
        )
        .await;
        r.expect_error(400, "INVALID_ARGUMENT");
        assert!(r.error_msg().contains(pointer), "{}", r.error_msg());
    }
    app.get("/v1/account/balance", None, &[])
        .await
        .expect_error(401, "UNAUTHENTICATED");
    let b = app.get("/v1/account/balance", Some(&carol), &[]).await;
    assert_eq!(b.ok()["currency"], "CNY");
    app.get("/v1/admin/ledger/audit", Some(&carol), &[])
        .await
        .expect_error(403, "FORBIDDEN");
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["transactions"], 2);
}

/// 100 concurrent confirmations of one demand: exactly one wins, the rest get 409.
async fn concurrent_confirmations_lock_the_demand(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let a = app.listing(&alice, "d1", Some(1.0), b"x").await;
    let b = app.listing(&alice, "d2", Some(2.0), b"y").await;
    let demand = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    let bodies: Vec<Value> = (0..100)
        .map(|i| {
            let reg = if i % 2 == 0 { &a } else { &b };
            json!({"demander": "carol", "demandID": demand, "registrationID": reg.registration_id})
        })
        .collect();
    let results = join_all(
        bodies
            .iter()
            .map(|body| app.post("/confirmDemand", Some(&carol.token), body)),
    )
    .await;
    let winners: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one confirmation wins");
    for r in results.iter().filter(|r| r.status != 200) {
        r.expect_error(409, "CONFLICT");
    }
}

/// 100 concurrent settlements of one confirmation: one debit, and every caller gets the same
/// documents.
async fn concurrent_settlements_charge_once(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", Some(7.5), b"x").await;
    app.credit("carol", 100.0, "r").await.ok();
    let confirm_id = app.confirm(&carol, &listing.registration_id).await;
    let results = join_all((0..100).map(|_| app.settle(&carol.token, &confirm_id))).await;
    let first = results[0].ok().clone();
    for r in &results {
        assert_eq!(r.ok(), &first, "every caller gets the same documents");
    }
    assert_eq!(app.balance(&carol.token).await, 92.5);
    assert_eq!(app.balance(&alice.token).await, 7.5);
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["transactions"], 2);
}

/// Concurrent settlements of different confirmations by one buyer never overdraw it.
async fn concurrent_debits_never_overdraw(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", Some(10.0), b"x").await;
    app.credit("carol", 50.0, "r").await.ok();
    let mut confirmations = Vec::new();
    for _ in 0..20 {
        confirmations.push(app.confirm(&carol, &listing.registration_id).await);
    }
    let results = join_all(confirmations.iter().map(|c| app.settle(&carol.token, c))).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5, "50.00 pays for exactly five 10.00 settlements");
    for r in results.iter().filter(|r| r.status != 200) {
        r.expect_error(402, "INSUFFICIENT_FUNDS");
    }
    assert_eq!(app.balance(&carol.token).await, 0.0);
    assert_eq!(app.balance(&alice.token).await, 50.0);
    assert_eq!(app.audit().await["balanced"], true);
}

async fn update_licenses_reissues_and_supersedes(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let dave = app.buyer("dave").await;
    let listing = app.listing(&alice, "ct-9", None, b"payload").await;
    let (c1, s1) = app.settled_trade(&carol, &listing).await;
    let (c2, s2) = app.settled_trade(&dave, &listing).await;
    let old1 = s1["licenses"].clone();
    let old2 = s2["licenses"].clone();

    app.post(
        "/updateLicenses",
        Some(&carol.token),
        &json!({"owner": "alice", "dataID": "ct-9"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    app.post(
        "/updateLicenses",
        Some(&alice.token),
        &json!({"owner": "alice", "dataID": "nope"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    let updated = app
        .post(
            "/updateLicenses",
            Some(&alice.token),
            &json!({"owner": "alice", "dataID": "ct-9"}),
        )
        .await;
    let licenses = updated.ok()["licenses"].as_array().expect("array").clone();
    assert_eq!(licenses.len(), 2);
    let keys = app.keys().await;
    for (new, old) in licenses.iter().zip([&old1, &old2]) {
        assert!(verify_signed(&keys, new, "digital_signature"));
        assert_ne!(new["licensesID"], old["licensesID"]);
        assert_ne!(new["digital_watermarking"], old["digital_watermarking"]);
        for same in [
            "licensor",
            "licensee",
            "registrationID",
            "dataID",
            "license_term",
            "usage_restrictions",
            "confirmID",
        ] {
            assert_eq!(new[same], old[same], "{same}");
        }
    }
    // The old licenses are refused, the new ones work, and querySettlement shows the new one.
    let r = app.deliver_json(&carol.token, &old1).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("superseded"), "{}", r.error_msg());
    app.deliver_json(&dave.token, &old2)
        .await
        .expect_error(403, "FORBIDDEN");
    app.deliver_json(&carol.token, &licenses[0]).await.ok();
    app.deliver_json(&dave.token, &licenses[1]).await.ok();
    let q = app
        .get(
            "/querySettlement",
            Some(&carol.token),
            &[("confirmID", &c1)],
        )
        .await;
    assert_eq!(q.ok()["licenses"], licenses[0]);
    let q = app
        .get("/querySettlement", Some(&dave.token), &[("confirmID", &c2)])
        .await;
    assert_eq!(q.ok()["licenses"], licenses[1]);
    // The payment proof is untouched.
    assert_eq!(q.ok()["payment_proof"], s2["payment_proof"]);

    // Controlled data: the owning data space re-issues under the fixed owner name.
    let space = app.account_with_role("tds-one", "data_space").await;
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-1", &["ct"], true, None),
    )
    .await
    .ok();
    let demand = app
        .published_demand(&carol.token, "carol", &["ct"], "dataset")
        .await;
    let c = app
        .post(
            "/confirmDemand",
            Some(&carol.token),
            &json!({"demander": "carol", "demandID": demand, "registrationID": "TDS-CONTROLLED",
                    "dataID": "ctl-1"}),
        )
        .await;
    let cid = c.ok()["confirmID"].as_str().expect("id").to_owned();
    app.settle(&carol.token, &cid).await.ok();
    app.post(
        "/updateLicenses",
        Some(&alice.token),
        &json!({"owner": "trusted-data-space", "dataID": "ctl-1"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let r = app
        .post(
            "/updateLicenses",
            Some(&space),
            &json!({"owner": "trusted-data-space", "dataID": "ctl-1"}),
        )
        .await;
    assert_eq!(r.ok()["licenses"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.ok()["licenses"][0]["licensor"], "trusted-data-space");
}

async fn platform_fee_goes_to_the_fee_account(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.platform_fee_bps = 250).await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", Some(19.99), b"x").await;
    app.credit("carol", 20.0, "r").await.ok();
    let (_, s) = app.settled_trade(&carol, &listing).await;
    let proof = &s["payment_proof"];
    assert_eq!(proof["amountMinor"], 1999);
    assert_eq!(proof["platformFeeMinor"], 49);
    assert_eq!(proof["providerShareMinor"], 1950);
    assert_eq!(app.balance(&carol.token).await, 0.01);
    assert_eq!(app.balance(&alice.token).await, 19.5);
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_fee_goes_to_the_fee_account_sqlite() {
    platform_fee_goes_to_the_fee_account(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_fee_goes_to_the_fee_account_postgres() {
    platform_fee_goes_to_the_fee_account(Backend::Postgres).await;
}

on_both_backends!(
    full_trade,
    confirmation_rules,
    price_is_snapshotted_at_confirmation,
    settlement_refusals,
    credits_are_idempotent,
    concurrent_confirmations_lock_the_demand,
    concurrent_settlements_charge_once,
    concurrent_debits_never_overdraw,
    update_licenses_reissues_and_supersedes,
);
