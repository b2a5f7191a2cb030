//! Crash safety: kill -9 the real binary while 200 settlements run, restart it on the same
//! database, and check that every settlement that answered 200 is there with the same
//! documents, the ledger balances, and nothing is half-done.

use serde_json::{Value, json};
use std::collections::HashMap;

use crate::support::{Backend, TestApp};

const SETTLEMENTS: usize = 200;
const BUYERS: usize = 4;

async fn kill_during_settlements(backend: Backend) {
    let mut app = TestApp::spawn_binary(backend, "").await;
    let alice = app.party("alice").await;
    let listing = app.listing(&alice, "d1", Some(1.25), b"payload").await;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        let buyer = app.buyer(&format!("buyer{i}")).await;
        app.credit(&buyer.name, 1000.0, &format!("funds-{i}"))
            .await
            .ok();
        buyers.push(buyer);
    }
    // 200 confirmations: one demand each, spread over the buyers.
    let mut confirmations = Vec::new();
    for i in 0..SETTLEMENTS {
        let buyer = &buyers[i % BUYERS];
        let id = app.confirm(buyer, &listing.registration_id).await;
        confirmations.push((id, buyer.token.clone(), i % BUYERS));
    }

    // All 200 at once, each in its own task; kill -9 once a quarter of them have answered.
    let requests = confirmations
        .iter()
        .map(|(id, token, _)| {
            (
                "/settlement".to_owned(),
                token.clone(),
                json!({"confirmID": id}),
            )
        })
        .collect();
    let outcomes = app.post_all_then_kill9(requests, SETTLEMENTS / 4).await;
    let mut ok: HashMap<String, (usize, Value)> = HashMap::new();
    for ((id, _, buyer), outcome) in confirmations.iter().zip(outcomes) {
        if let Some(body) = outcome {
            ok.insert(id.clone(), (*buyer, body["data"].clone()));
        }
    }
    assert!(!ok.is_empty(), "no settlement finished before the kill");
    assert!(
        ok.len() < SETTLEMENTS,
        "the kill came after every settlement; nothing was tested"
    );

    app.restart_binary().await;
    // Every settlement that answered 200 survived, with the same documents.
    let operator = app.operator().await;
    let mut settled_per_buyer = [0usize; BUYERS];
    let mut settled = 0;
    for (id, _, buyer) in &confirmations {
        let q = app
            .get("/querySettlement", Some(&operator), &[("confirmID", id)])
            .await;
        let data = q.ok();
        if let Some((_, answered)) = ok.get(id) {
            assert_eq!(data["settlement_status"], "SETTLED", "{id} lost");
            assert_eq!(data["payment_proof"], answered["payment_proof"], "{id}");
            assert_eq!(data["licenses"], answered["licenses"], "{id}");
            assert_eq!(data["private_key"], answered["private_key"], "{id}");
        }
        if data["settlement_status"] == "SETTLED" {
            settled += 1;
            settled_per_buyer[*buyer] += 1;
            assert!(data["payment_proof"].is_object() && data["licenses"].is_object());
        } else {
            assert!(data["payment_proof"].is_null() && data["licenses"].is_null());
        }
    }
    assert!(settled >= ok.len());

    // The ledger balances and holds exactly the settlements that happened.
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["incomplete_settlements"], 0, "{audit}");
    assert_eq!(audit["transactions"], (BUYERS + settled) as u64, "{audit}");
    for (i, buyer) in buyers.iter().enumerate() {
        let expected = 1000.0 - 1.25 * settled_per_buyer[i] as f64;
        assert_eq!(app.balance(&buyer.token).await, expected, "buyer{i}");
    }
    assert_eq!(app.balance(&alice.token).await, 1.25 * settled as f64);

    // What was cut off settles now, once.
    for (id, token, _) in &confirmations {
        app.settle(token, id).await.ok();
    }
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["transactions"], (BUYERS + SETTLEMENTS) as u64);
    assert_eq!(app.balance(&alice.token).await, 1.25 * SETTLEMENTS as f64);
    app.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_settlements_sqlite() {
    kill_during_settlements(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_settlements_postgres() {
    kill_during_settlements(Backend::Postgres).await;
}
