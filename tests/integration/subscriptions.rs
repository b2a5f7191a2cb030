//! Model and application subscriptions (A.4, A.5) over HTTP, on both databases, against real
//! upstream servers started here: an OpenAI-compatible chat-completions server that reports
//! `usage`, and a JSON application. Every upstream counts the calls that reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fixtures::register_data;
use crate::support::trade::verify_signed;
use crate::support::{Backend, Resp, TestApp};

/// Tokens the chat upstream reports for every completion.
const PROMPT_TOKENS: u64 = 12;
const COMPLETION_TOKENS: u64 = 34;

/// A real upstream on 127.0.0.1: `/v1/chat/completions` (OpenAI-compatible, with `usage`) and
/// `/app` (JSON in, JSON out). A last message of "fail" answers 500; "slow" answers after 2 s.
pub struct Upstream {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let calls = Arc::new(AtomicUsize::new(0));
        let chat_calls = Arc::clone(&calls);
        let app_calls = Arc::clone(&calls);
        let router = axum::Router::new()
            .route(
                "/v1/chat/completions",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let calls = Arc::clone(&chat_calls);
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let last = body["messages"]
                            .as_array()
                            .and_then(|m| m.last())
                            .and_then(|m| m["content"].as_str())
                            .unwrap_or_default()
                            .to_owned();
                        if last == "fail" {
                            return (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                axum::Json(json!({"error": {"message": "model crashed"}})),
                            );
                        }
                        if last == "slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({
                                "id": "chatcmpl-1",
                                "object": "chat.completion",
                                "created": 1_700_000_000,
                                "model": body["model"].as_str().unwrap_or("test-model"),
                                "choices": [{
                                    "index": 0,
                                    "message": {"role": "assistant", "content": format!("echo: {last}")},
                                    "finish_reason": "stop"
                                }],
                                "usage": {
                                    "prompt_tokens": PROMPT_TOKENS,
                                    "completion_tokens": COMPLETION_TOKENS,
                                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
                                }
                            })),
                        )
                    }
                }),
            )
            .route(
                "/app",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let calls = Arc::clone(&app_calls);
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        axum::Json(json!({"answer": body}))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Upstream { addr, calls }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.addr.port())
    }

    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}/app", self.addr.port())
    }
}

/// A server whose adapters are granted the upstream, with both adapters installed.
pub async fn subscription_app(backend: Backend, upstream: &Upstream, fee_bps: u32) -> TestApp {
    let grant = format!("127.0.0.1:{}", upstream.addr.port());
    let app = TestApp::spawn_with(backend, |c| {
        c.platform_fee_bps = fee_bps;
        for id in ["openai-chat", "http-json"] {
            c.plugins.grants.insert(
                id.into(),
                liutong::config::PluginGrant {
                    http: vec![grant.clone()],
                    secrets: vec![],
                },
            );
        }
    })
    .await;
    app.installed("adapter-openai-chat").await;
    app.installed("adapter-http-json").await;
    app
}

/// Registers `data_id` as a resource of `data_type` for `owner`.
async fn registered(app: &TestApp, token: &str, owner: &str, data_id: &str, data_type: &str) {
    let mut body = register_data(owner, data_id, &["llm"]);
    body["data_type"] = json!(data_type);
    app.register_resource(token, &body).await;
}

pub struct Sub {
    pub publish_id: String,
    pub order_id: String,
    pub license: Value,
}

/// alice registers and publishes model `data_id` with `method`; carol subscribes.
async fn model_subscription(
    app: &TestApp,
    upstream: &Upstream,
    alice: &str,
    carol: &str,
    data_id: &str,
    billing_type: &str,
    method: Value,
) -> Sub {
    registered(app, alice, "alice", data_id, "model").await;
    let published = app
        .post(
            "/v1/model/publish",
            Some(alice),
            &json!({"publisherId": "alice", "modelId": data_id, "billingType": billing_type,
                    "billingMethod": method, "api": upstream.api()}),
        )
        .await;
    let publish_id = published.ok()["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    let subscribed = app
        .post(
            "/v1/model/subscribe",
            Some(carol),
            &json!({"subscribeId": "carol", "publishId": publish_id, "billingType": billing_type,
                    "billingMethod": method["unit"]}),
        )
        .await;
    let data = subscribed.ok();
    Sub {
        publish_id,
        order_id: data["orderId"].as_str().expect("orderId").to_owned(),
        license: data["licenses"].clone(),
    }
}

async fn call_model(app: &TestApp, token: &str, api: &str, license: &Value, input: &str) -> Resp {
    app.post(
        "/v1/model/delivery",
        Some(token),
        &json!({"api": api, "licenses": license, "input": input}),
    )
    .await
}

async fn usage(app: &TestApp, token: &str, order_id: &str) -> Value {
    app.get(&format!("/v1/orders/{order_id}/usage"), Some(token), &[])
        .await
        .ok()
        .clone()
}

fn minor(balance: f64) -> i64 {
    (balance * 100.0).round() as i64
}

/// Metered per call: every call paid as it happens, a signed statement for the subscriber, a
/// payout that adds up to the cent for the provider (fee 10 %), exactly once.
async fn metered_calls_are_paid_as_they_happen(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 1000).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let sub = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-7b",
        "metered",
        json!({"unit": "calls", "price": 0.15}),
    )
    .await;
    assert!(verify_signed(
        &app.keys().await,
        &sub.license,
        "digital_signature"
    ));
    assert_eq!(sub.license["orderId"], sub.order_id.as_str());
    assert_eq!(sub.license["publishId"], sub.publish_id.as_str());
    assert_eq!(sub.license["licensee"], "carol");
    app.credit("carol", 1.0, "c-1").await.ok();

    for i in 0..3 {
        let r = call_model(
            &app,
            &carol,
            &upstream.api(),
            &sub.license,
            &format!("hi {i}"),
        )
        .await;
        let output = &r.ok()["output"];
        assert_eq!(
            output["choices"][0]["message"]["content"],
            format!("echo: hi {i}")
        );
    }
    assert_eq!(upstream.calls(), 3);
    assert_eq!(minor(app.balance(&carol).await), 100 - 45);
    let records = usage(&app, &carol, &sub.order_id).await;
    assert_eq!(records["total"], 3);
    let first = &records["usage"][0];
    assert_eq!(first["status"], "charged");
    assert_eq!(first["chargeMinor"], 15);
    assert_eq!(first["inputTokens"], PROMPT_TOKENS);
    assert_eq!(first["outputTokens"], COMPLETION_TOKENS);
    assert_eq!(first["adapter"], "openai-chat@0.1.0");
    assert_eq!(first["upstreamStatus"], 200);
    // 10 % of 15 fen is 1.5 → 1 fen, rounded down; the provider gets 14.
    assert_eq!(
        (
            first["platformFeeMinor"].clone(),
            first["providerShareMinor"].clone()
        ),
        (json!(1), json!(14))
    );

    // The publisher and operators see the order; nobody else does.
    let order = app
        .get(&format!("/v1/orders/{}", sub.order_id), Some(&alice), &[])
        .await;
    assert_eq!(order.ok()["calls"], 3);
    assert_eq!(order.ok()["status"], "active");
    assert_eq!(order.ok()["paidMinor"], 45);
    let mallory = app.user("mallory").await;
    app.get(&format!("/v1/orders/{}", sub.order_id), Some(&mallory), &[])
        .await
        .expect_error(403, "FORBIDDEN");
    app.get(
        &format!("/v1/orders/{}/usage", sub.order_id),
        Some(&mallory),
        &[],
    )
    .await
    .expect_error(403, "FORBIDDEN");

    // The subscriber's statement closes the usage so far, once.
    let settled = app
        .post(
            "/v1/model/userSettlement",
            Some(&carol),
            &json!({"subscriberId": "carol", "orderId": sub.order_id,
                    "paymentProof": {"method": "balance"}}),
        )
        .await;
    let statement = settled.ok()["statement"].clone();
    assert_eq!(settled.ok()["orderId"], sub.order_id.as_str());
    assert!(verify_signed(&app.keys().await, &statement, "signature"));
    assert_eq!(
        (
            statement["calls"].clone(),
            statement["amountMinor"].clone(),
            statement["inputTokens"].clone()
        ),
        (json!(3), json!(45), json!(3 * PROMPT_TOKENS))
    );
    let again = app
        .post(
            "/v1/model/userSettlement",
            Some(&carol),
            &json!({"subscriberId": "carol", "orderId": sub.order_id,
                    "paymentProof": {"method": "balance"}}),
        )
        .await;
    assert_eq!(again.ok()["statement"]["calls"], 0);
    let wire = app
        .post(
            "/v1/model/userSettlement",
            Some(&carol),
            &json!({"subscriberId": "carol", "orderId": sub.order_id,
                    "paymentProof": {"method": "wire"}}),
        )
        .await;
    wire.expect_error(400, "INVALID_ARGUMENT");
    assert!(wire.error_msg().contains("balance"), "{}", wire.error_msg());

    // The provider is paid its share once; the fee goes to the platform.
    app.post(
        "/v1/model/providerSettlement",
        Some(&carol),
        &json!({"publisherId": "carol", "orderId": sub.order_id, "creditInfo": {"method": "balance"}}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let paid = app
        .post(
            "/v1/model/providerSettlement",
            Some(&alice),
            &json!({"publisherId": "alice", "orderId": sub.order_id,
                    "creditInfo": {"method": "balance"}}),
        )
        .await;
    let payout = &paid.ok()["statement"];
    assert_eq!(
        (
            payout["amountMinor"].clone(),
            payout["platformFeeMinor"].clone(),
            payout["providerShareMinor"].clone()
        ),
        (json!(45), json!(3), json!(42))
    );
    assert_eq!(minor(app.balance(&alice).await), 42);
    let twice = app
        .post(
            "/v1/model/providerSettlement",
            Some(&alice),
            &json!({"publisherId": "alice", "orderId": sub.order_id,
                    "creditInfo": {"method": "balance"}}),
        )
        .await;
    assert_eq!(twice.ok()["statement"]["amountMinor"], 0);
    assert_eq!(minor(app.balance(&alice).await), 42);
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
    assert_eq!(audit["subscription_mismatches"], 0, "{audit}");
}

/// Metered by tokens: the native rule (per 1,000 tokens, rounded up) and a billing plugin
/// (`per-token`), each against hand-computed amounts.
async fn metered_tokens_by_the_native_rule_and_a_plugin(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    app.installed("billing-per-token").await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    app.credit("carol", 10.0, "c-1").await.ok();

    // 0.50 per 1000 tokens; 12 + 34 = 46 tokens → 2.3 fen → 3 fen per call.
    let native = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-native",
        "metered",
        json!({"unit": "tokens", "price": 0.5, "maxTokens": 100}),
    )
    .await;
    call_model(&app, &carol, &upstream.api(), &native.license, "hello")
        .await
        .ok();
    assert_eq!(minor(app.balance(&carol).await), 1000 - 3);

    // per-token: input 12 tokens → 1 started thousand × 20, output 34 → 1 × 60 = 80 fen.
    let plugin = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-plugin",
        "metered",
        json!({"unit": "tokens", "price": 0.2, "maxTokens": 100, "plugin": "per-token",
               "config": {"inputPrice": 20, "outputPrice": 60}}),
    )
    .await;
    call_model(&app, &carol, &upstream.api(), &plugin.license, "hello")
        .await
        .ok();
    assert_eq!(minor(app.balance(&carol).await), 1000 - 3 - 80);
    let records = usage(&app, &carol, &plugin.order_id).await;
    assert_eq!(records["usage"][0]["billingRule"], "plugin per-token@0.1.0");
    // A unit that does not agree with the publication is refused at subscription.
    let wrong = app
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            &json!({"subscribeId": "carol", "publishId": plugin.publish_id,
                    "billingType": "metered", "billingMethod": "calls"}),
        )
        .await;
    wrong.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        wrong.error_msg().contains("tokens"),
        "{}",
        wrong.error_msg()
    );
    let paid = app
        .post(
            "/v1/model/providerSettlement",
            Some(&alice),
            &json!({"publisherId": "alice", "orderId": plugin.order_id,
                    "creditInfo": {"method": "balance"}}),
        )
        .await;
    assert_eq!(paid.ok()["statement"]["providerShareMinor"], 80);
    assert_eq!(app.audit().await["balanced"], true);
}

/// fixed_term: nothing before the term is paid (402), calls within it cost nothing more,
/// the provider is credited the term.
async fn fixed_terms_are_paid_before_use(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let sub = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-term",
        "fixed_term",
        json!({"unit": "calls", "price": 9.9, "termDays": 30}),
    )
    .await;
    let unpaid = call_model(&app, &carol, &upstream.api(), &sub.license, "hi").await;
    unpaid.expect_error(402, "PAYMENT_REQUIRED");
    assert!(
        unpaid.error_msg().contains("userSettlement"),
        "{}",
        unpaid.error_msg()
    );
    assert_eq!(upstream.calls(), 0);
    let pay = json!({"subscriberId": "carol", "orderId": sub.order_id,
                     "paymentProof": {"method": "balance"}});
    app.post("/v1/model/userSettlement", Some(&carol), &pay)
        .await
        .expect_error(402, "INSUFFICIENT_FUNDS");
    app.credit("carol", 20.0, "c-1").await.ok();
    let paid = app
        .post("/v1/model/userSettlement", Some(&carol), &pay)
        .await;
    assert_eq!(paid.ok()["statement"]["amountMinor"], 990);
    assert_eq!(minor(app.balance(&carol).await), 2000 - 990);
    for _ in 0..2 {
        call_model(&app, &carol, &upstream.api(), &sub.license, "hi")
            .await
            .ok();
    }
    assert_eq!(minor(app.balance(&carol).await), 2000 - 990);
    let order = app
        .get(&format!("/v1/orders/{}", sub.order_id), Some(&carol), &[])
        .await;
    assert_eq!(order.ok()["status"], "active");
    assert_eq!(order.ok()["calls"], 2);
    assert!(order.ok()["paidUntil"].is_string());
    let credited = app
        .post(
            "/v1/model/providerSettlement",
            Some(&alice),
            &json!({"publisherId": "alice", "orderId": sub.order_id,
                    "creditInfo": {"method": "balance"}}),
        )
        .await;
    assert_eq!(credited.ok()["statement"]["amountMinor"], 990);
    assert_eq!(minor(app.balance(&alice).await), 990);
    assert_eq!(app.audit().await["balanced"], true);
}

/// 200 concurrent calls against a balance that covers 50: exactly 50 reach the upstream, the
/// rest are 402 before it, the balance ends at zero, never below.
async fn concurrent_calls_never_overdraw(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let sub = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-busy",
        "metered",
        json!({"unit": "calls", "price": 0.1}),
    )
    .await;
    app.credit("carol", 5.0, "c-1").await.ok();
    let body = json!({"api": upstream.api(), "licenses": sub.license, "input": "hi"});
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let request = app
            .client
            .post(app.url("/v1/model/delivery"))
            .header("X-Auth-Token", &carol)
            .json(&body);
        tasks.push(tokio::spawn(async move {
            request.send().await.expect("answer").status().as_u16()
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [(200u16, 50), (402u16, 150)].into_iter().collect(),
        "{statuses:?}"
    );
    assert_eq!(upstream.calls(), 50);
    assert_eq!(minor(app.balance(&carol).await), 0);
    let records = usage(&app, &carol, &sub.order_id).await;
    assert_eq!(records["total"], 50);
    let audit = app.audit().await;
    assert_eq!(audit["balanced"], true, "{audit}");
}

/// A retried Idempotency-Key answers the first response: one upstream call, one charge, even
/// when the retries race the first call.
async fn retried_idempotency_keys_charge_once(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let sub = model_subscription(
        &app,
        &upstream,
        &alice,
        &carol,
        "chat-retry",
        "metered",
        json!({"unit": "calls", "price": 0.1}),
    )
    .await;
    app.credit("carol", 5.0, "c-1").await.ok();
    let body = json!({"api": upstream.api(), "licenses": sub.license, "input": "once"});
    let send = |key: &str| {
        app.send(
            app.client
                .post(app.url("/v1/model/delivery"))
                .header("X-Auth-Token", &carol)
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let first = send("key-1").await;
    let output = first.ok()["output"].clone();
    for _ in 0..3 {
        let again = send("key-1").await;
        assert_eq!(again.ok()["output"], output);
    }
    assert_eq!(upstream.calls(), 1);
    assert_eq!(minor(app.balance(&carol).await), 490);
    // Racing retries of a new key: one call; the others answer it or say it is running.
    let racing: Vec<Resp> = futures_util::future::join_all((0..8).map(|_| send("key-2"))).await;
    assert_eq!(upstream.calls(), 2);
    assert!(racing.iter().any(|r| r.status == 200));
    assert!(
        racing
            .iter()
            .all(|r| r.status == 200 || r.code() == "CONFLICT"),
        "{:?}",
        racing.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(minor(app.balance(&carol).await), 480);
    send("").await.expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(app.audit().await["balanced"], true);
}

/// Upstream errors and timeouts are 502/504 with the upstream's status, release the hold and
/// charge nothing; a faulty adapter is a 502 naming it; the server stays healthy.
async fn failures_charge_nothing(backend: Backend) {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let app = TestApp::spawn_with(backend, |c| {
        for id in [
            "openai-chat",
            "fixture-ungranted-host",
            "fixture-adapter-faults",
        ] {
            c.plugins.grants.insert(
                id.into(),
                liutong::config::PluginGrant {
                    http: vec![format!("127.0.0.1:{port}")],
                    secrets: vec![],
                },
            );
        }
    })
    .await;
    app.installed("adapter-openai-chat").await;
    app.installed("fixtures/fixture-ungranted-host").await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    app.credit("carol", 5.0, "c-1").await.ok();
    registered(&app, &alice, "alice", "chat-flaky", "model").await;
    let publish = |adapter: Option<&str>, config: Value| {
        let mut body = json!({"publisherId": "alice", "modelId": "chat-flaky",
                              "billingType": "metered",
                              "billingMethod": {"unit": "calls", "price": 0.1},
                              "api": upstream.api(), "adapterConfig": config});
        if let Some(a) = adapter {
            body["adapter"] = json!(a);
        }
        let (app, alice) = (&app, &alice);
        async move { app.post("/v1/model/publish", Some(alice), &body).await }
    };
    let publish_id = publish(None, json!({"timeoutMs": 500})).await.ok()["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    let license = app
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            &json!({"subscribeId": "carol", "publishId": publish_id, "billingType": "metered",
                    "billingMethod": "calls"}),
        )
        .await
        .ok()["licenses"]
        .clone();

    let failed = call_model(&app, &carol, &upstream.api(), &license, "fail").await;
    failed.expect_error(502, "UPSTREAM_FAILED");
    assert!(failed.error_msg().contains("500"), "{}", failed.error_msg());
    let slow = call_model(&app, &carol, &upstream.api(), &license, "slow").await;
    slow.expect_error(504, "UPSTREAM_TIMEOUT");
    assert_eq!(minor(app.balance(&carol).await), 500);
    let order_id = license["orderId"].as_str().expect("orderId");
    let records = usage(&app, &carol, order_id).await;
    assert_eq!(records["total"], 2);
    assert!(
        records["usage"]
            .as_array()
            .expect("usage")
            .iter()
            .all(|u| u["status"] == "failed" && u["chargeMinor"] == 0),
        "{records}"
    );
    assert_eq!(records["usage"][1]["upstreamStatus"], 500);

    // A faulty adapter: 502 naming it, nothing charged, the server healthy.
    let faulty = publish(Some("fixture-ungranted-host"), json!({}))
        .await
        .ok()["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    let license = app
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            &json!({"subscribeId": "carol", "publishId": faulty, "billingType": "metered",
                    "billingMethod": "calls"}),
        )
        .await
        .ok()["licenses"]
        .clone();
    let r = call_model(&app, &carol, &upstream.api(), &license, "hi").await;
    r.expect_error(502, "PLUGIN_FAILED");
    assert!(
        r.error_msg().contains("fixture-ungranted-host"),
        "{}",
        r.error_msg()
    );
    assert_eq!(minor(app.balance(&carol).await), 500);

    // An adapter that traps, and one that never returns (stopped by its 1 s wall-time limit):
    // 502 naming it, nothing charged, nothing reached the upstream, the server healthy.
    app.installed("fixtures/fixture-adapter-faults").await;
    let calls_before = upstream.calls();
    for mode in ["trap", "loop"] {
        let faulty = publish(Some("fixture-adapter-faults"), json!({"mode": mode}))
            .await
            .ok()["publishId"]
            .as_str()
            .expect("publishId")
            .to_owned();
        let license = app
            .post(
                "/v1/model/subscribe",
                Some(&carol),
                &json!({"subscribeId": "carol", "publishId": faulty, "billingType": "metered",
                        "billingMethod": "calls"}),
            )
            .await
            .ok()["licenses"]
            .clone();
        let r = call_model(&app, &carol, &upstream.api(), &license, "hi").await;
        r.expect_error(502, "PLUGIN_FAILED");
        assert!(
            r.error_msg().contains("fixture-adapter-faults"),
            "{mode}: {}",
            r.error_msg()
        );
        assert_eq!(minor(app.balance(&carol).await), 500, "{mode}");
        let order_id = license["orderId"].as_str().expect("orderId");
        let records = usage(&app, &carol, order_id).await;
        assert!(
            records["usage"]
                .as_array()
                .expect("usage")
                .iter()
                .all(|u| u["chargeMinor"] == 0),
            "{mode}: {records}"
        );
    }
    assert_eq!(upstream.calls(), calls_before);
    app.get("/healthz", None, &[]).await.ok();

    // A billing plugin that traps in charge-usage: 502 naming it, before the upstream.
    app.installed("fixtures/fixture-trap").await;
    let calls_before = upstream.calls();
    let body = json!({"publisherId": "alice", "modelId": "chat-flaky", "billingType": "metered",
                      "billingMethod": {"unit": "calls", "price": 0.1, "plugin": "fixture-trap"},
                      "api": upstream.api()});
    let trapping = app
        .post("/v1/model/publish", Some(&alice), &body)
        .await
        .ok()["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    let license = app
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            &json!({"subscribeId": "carol", "publishId": trapping, "billingType": "metered",
                    "billingMethod": "calls"}),
        )
        .await
        .ok()["licenses"]
        .clone();
    let r = call_model(&app, &carol, &upstream.api(), &license, "hi").await;
    r.expect_error(502, "PLUGIN_FAILED");
    assert!(r.error_msg().contains("fixture-trap"), "{}", r.error_msg());
    assert_eq!(upstream.calls(), calls_before);
    assert_eq!(minor(app.balance(&carol).await), 500);
    app.get("/healthz", None, &[]).await.ok();
    assert_eq!(app.audit().await["balanced"], true);
}

/// Publication rules: the resource must be the publisher's own model, the adapter must be
/// granted the upstream now (the error names the grant to add), billing plugins must exist.
async fn publications_are_checked_at_publish(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    registered(&app, &alice, "alice", "chat-a", "model").await;
    registered(&app, &alice, "alice", "scans", "dataset").await;
    let body = |model: &str, api: String| {
        json!({"publisherId": "alice", "modelId": model, "billingType": "metered",
               "billingMethod": {"unit": "calls", "price": 0.1}, "api": api})
    };
    let r = app
        .post(
            "/v1/model/publish",
            Some(&alice),
            &body("nope", upstream.api()),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/modelId"), "{}", r.error_msg());
    let r = app
        .post(
            "/v1/model/publish",
            Some(&alice),
            &body("scans", upstream.api()),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("dataset"), "{}", r.error_msg());
    app.post(
        "/v1/model/publish",
        Some(&bob),
        &body("chat-a", upstream.api()),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let ungranted = app
        .post(
            "/v1/model/publish",
            Some(&alice),
            &body("chat-a", "http://127.0.0.1:9/v1".into()),
        )
        .await;
    ungranted.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        ungranted
            .error_msg()
            .contains("[plugins.grants.openai-chat] http = [\"127.0.0.1:9\"]"),
        "{}",
        ungranted.error_msg()
    );
    let mut fixed = body("chat-a", upstream.api());
    fixed["billingType"] = json!("fixed_term");
    app.post("/v1/model/publish", Some(&alice), &fixed)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let mut plugin = body("chat-a", upstream.api());
    plugin["billingMethod"]["plugin"] = json!("no-such-rule");
    app.post("/v1/model/publish", Some(&alice), &plugin)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let ok = app
        .post(
            "/v1/model/publish",
            Some(&alice),
            &body("chat-a", upstream.api()),
        )
        .await;
    let publish_id = ok.ok()["publishId"].as_str().expect("id").to_owned();
    let listed = app
        .get("/v1/publications", Some(&bob), &[("kind", "model")])
        .await;
    assert_eq!(listed.ok()["total"], 1);
    assert_eq!(listed.ok()["publications"][0]["publishId"], publish_id);
    assert_eq!(listed.ok()["publications"][0]["adapter"], "openai-chat");
    let apps = app
        .get("/v1/publications", Some(&bob), &[("kind", "application")])
        .await;
    assert_eq!(apps.ok()["total"], 0);

    // Licenses: only the licensee, only the publication's api, only as issued.
    let carol = app.user("carol").await;
    let license = app
        .post(
            "/v1/model/subscribe",
            Some(&carol),
            &json!({"subscribeId": "carol", "publishId": publish_id, "billingType": "metered",
                    "billingMethod": "calls"}),
        )
        .await
        .ok()["licenses"]
        .clone();
    call_model(&app, &bob, &upstream.api(), &license, "hi")
        .await
        .expect_error(403, "FORBIDDEN");
    call_model(&app, &carol, &upstream.app_url(), &license, "hi")
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let mut forged = license.clone();
    forged["licensee"] = json!("bob");
    call_model(&app, &bob, &upstream.api(), &forged, "hi")
        .await
        .expect_error(403, "FORBIDDEN");
    assert_eq!(upstream.calls(), 0);
}

/// A.5: applications the same way, through `http-json`; settlement by GET with query
/// parameters; `providerSettlement`'s `subscriberId` names the publisher.
async fn applications_are_subscribed_the_same_way(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    registered(&app, &alice, "alice", "ocr", "application").await;
    registered(&app, &alice, "alice", "chat", "model").await;
    let wrong_kind = app
        .post(
            "/v1/application/publish",
            Some(&alice),
            &json!({"publisherId": "alice", "appId": "chat", "billingType": "metered",
                    "billingMethod": {"unit": "calls", "price": 0.2}, "url": upstream.app_url()}),
        )
        .await;
    wrong_kind.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        wrong_kind.error_msg().contains("/appId"),
        "{}",
        wrong_kind.error_msg()
    );
    let published = app
        .post(
            "/v1/application/publish",
            Some(&alice),
            &json!({"publisherId": "alice", "appId": "ocr", "billingType": "metered",
                    "billingMethod": {"unit": "calls", "price": 0.2}, "url": upstream.app_url()}),
        )
        .await;
    let publish_id = published.ok()["publishId"].as_str().expect("id").to_owned();
    // A model subscription to an application publication does not exist.
    app.post(
        "/v1/model/subscribe",
        Some(&carol),
        &json!({"subscribeId": "carol", "publishId": publish_id, "billingType": "metered",
                "billingMethod": "calls"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    let subscribed = app
        .post(
            "/v1/application/subscribe",
            Some(&carol),
            &json!({"subscriberId": "carol", "publishId": publish_id, "billingType": "metered",
                    "billingMethod": "calls"}),
        )
        .await;
    let order_id = subscribed.ok()["orderId"]
        .as_str()
        .expect("orderId")
        .to_owned();
    let license = subscribed.ok()["licenses"].clone();
    assert_eq!(license["kind"], "application");
    assert!(verify_signed(
        &app.keys().await,
        &license,
        "digital_signature"
    ));
    app.credit("carol", 1.0, "c-1").await.ok();
    let used = app
        .post(
            "/v1/application/delivery",
            Some(&carol),
            &json!({"url": upstream.app_url(), "licenses": license,
                    "input": {"image": "scan-1.png", "lang": "zh"}}),
        )
        .await;
    assert_eq!(
        used.ok()["output"],
        json!({"answer": {"image": "scan-1.png", "lang": "zh"}})
    );
    assert_eq!(upstream.calls(), 1);
    assert_eq!(minor(app.balance(&carol).await), 80);
    // A license of an application is not one of a model.
    app.post(
        "/v1/model/delivery",
        Some(&carol),
        &json!({"api": upstream.app_url(), "licenses": license, "input": "x"}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");

    let settle = |proof: &'static str| {
        let (app, carol, order_id) = (&app, &carol, &order_id);
        async move {
            app.get(
                "/v1/application/userSettlement",
                Some(carol),
                &[
                    ("subscriberId", "carol"),
                    ("orderId", order_id.as_str()),
                    ("paymentProof", proof),
                ],
            )
            .await
        }
    };
    settle("{not json}")
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let statement = settle(r#"{"method": "balance"}"#).await;
    assert_eq!(statement.ok()["statement"]["calls"], 1);
    assert_eq!(statement.ok()["statement"]["amountMinor"], 20);
    let paid = app
        .post(
            "/v1/application/providerSettlement",
            Some(&alice),
            &json!({"subscriberId": "alice", "orderId": order_id,
                    "creditInfo": {"method": "balance"}}),
        )
        .await;
    assert_eq!(paid.ok()["statement"]["providerShareMinor"], 20);
    assert_eq!(minor(app.balance(&alice).await), 20);
    let listed = app
        .get("/v1/publications", Some(&carol), &[("kind", "application")])
        .await;
    assert_eq!(listed.ok()["publications"][0]["adapter"], "http-json");
    assert_eq!(app.audit().await["balanced"], true);
}

/// Runs examples/openai_chat.py (the official `openai` package) against the server.
async fn openai_client(app: &TestApp, key: &str, model: &str, idempotency: Option<&str>) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/openai_chat.py");
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(script)
        .arg("Say hello")
        .env("LIUTONG_URL", format!("http://{}", app.addr))
        .env("LIUTONG_API_KEY", key)
        .env("LIUTONG_MODEL", model);
    if let Some(k) = idempotency {
        command.env("LIUTONG_IDEMPOTENCY_KEY", k);
    }
    let output = command.output().await.expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "openai client printed no JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// API keys work wherever a token does; the OpenAI-compatible front, called by the official
/// `openai` package, lists the subscribed models and charges calls like `/v1/model/delivery`.
async fn api_keys_and_the_openai_front(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = subscription_app(backend, &upstream, 0).await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let created = app
        .post(
            "/v1/account/apiKeys",
            Some(&carol),
            &json!({"name": "batch jobs"}),
        )
        .await;
    let key = created.ok()["apiKey"].as_str().expect("apiKey").to_owned();
    let key_id = created.ok()["keyId"].as_str().expect("keyId").to_owned();
    assert!(key.starts_with("ltk_"));
    let listed = app.get("/v1/account/apiKeys", Some(&carol), &[]).await;
    let listed = listed.ok()["apiKeys"].clone();
    assert_eq!(listed[0]["name"], "batch jobs");
    assert!(
        !listed.to_string().contains(&key),
        "a key is shown once: {listed}"
    );
    // The key is accepted wherever a token is, as X-Auth-Token or as a bearer.
    app.get("/v1/account/balance", Some(&key), &[]).await.ok();
    let bearer = app
        .send(
            app.client
                .get(app.url("/v1/account/balance"))
                .bearer_auth(&key),
        )
        .await;
    bearer.ok();
    app.post("/v1/account/apiKeys", Some(&carol), &json!({"name": " "}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");

    registered(&app, &alice, "alice", "chat-7b", "model").await;
    let publish_id = app
        .post(
            "/v1/model/publish",
            Some(&alice),
            &json!({"publisherId": "alice", "modelId": "chat-7b", "billingType": "metered",
                    "billingMethod": {"unit": "calls", "price": 0.1}, "api": upstream.api(),
                    "adapterConfig": {"model": "qwen2-7b"}}),
        )
        .await
        .ok()["publishId"]
        .as_str()
        .expect("publishId")
        .to_owned();
    app.post(
        "/v1/model/subscribe",
        Some(&key),
        &json!({"subscribeId": "carol", "publishId": publish_id, "billingType": "metered",
                "billingMethod": "calls"}),
    )
    .await
    .ok();
    app.credit("carol", 0.3, "c-1").await.ok();

    let answer = openai_client(&app, &key, &publish_id, None).await;
    assert_eq!(answer["models"], json!([publish_id]), "{answer}");
    assert_eq!(answer["content"], "echo: Say hello", "{answer}");
    assert_eq!(answer["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(minor(app.balance(&carol).await), 20);
    // Retried with one Idempotency-Key: one upstream call, one charge.
    for _ in 0..2 {
        let again = openai_client(&app, &key, &publish_id, Some("job-1")).await;
        assert_eq!(again["content"], "echo: Say hello", "{again}");
    }
    assert_eq!(upstream.calls(), 2);
    assert_eq!(minor(app.balance(&carol).await), 10);
    openai_client(&app, &key, &publish_id, None).await;
    let broke = openai_client(&app, &key, &publish_id, None).await;
    assert_eq!(
        (broke["status"].clone(), broke["code"].clone()),
        (json!(402), json!("INSUFFICIENT_FUNDS")),
        "{broke}"
    );
    assert_eq!(upstream.calls(), 3);
    let unknown = openai_client(&app, &key, "pub_nope", None).await;
    assert_eq!(unknown["status"], 404, "{unknown}");

    // A deleted key stops working at once.
    app.send(
        app.client
            .delete(app.url(&format!("/v1/account/apiKeys/{key_id}")))
            .header("X-Auth-Token", &carol),
    )
    .await
    .ok();
    app.get("/v1/account/balance", Some(&key), &[])
        .await
        .expect_error(401, "UNAUTHENTICATED");
    let gone = openai_client(&app, &key, &publish_id, None).await;
    assert_eq!(gone["status"], 401, "{gone}");
    assert_eq!(app.audit().await["balanced"], true);
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
    metered_calls_are_paid_as_they_happen,
    metered_tokens_by_the_native_rule_and_a_plugin,
    fixed_terms_are_paid_before_use,
    concurrent_calls_never_overdraw,
    retried_idempotency_keys_charge_once,
    failures_charge_nothing,
    publications_are_checked_at_publish,
    applications_are_subscribed_the_same_way,
    api_keys_and_the_openai_front,
);
