//! Adapters against a local mock upstream, and the outbound HTTP allow-lists.

use std::net::SocketAddr;

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use liutong_plugin_runtime::adapter::{Invocation, Publication, PublicationKind, Secret};
use liutong_plugin_runtime::{Grants, PluginFailure};
use serde_json::{Value, json};

use crate::common;

/// A mock upstream: OpenAI chat completions and a JSON echo, reporting the authorization
/// header it received.
async fn mock_upstream() -> SocketAddr {
    async fn chat(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Json(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
            "echo": {"messages": body["messages"], "authorization": auth}
        }))
    }
    async fn echo(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Json(json!({"received": body, "authorization": auth}))
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/echo", post(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn publication(endpoint: String, config: &str, secrets: Vec<Secret>) -> Publication {
    Publication {
        publish_id: "pub-1".into(),
        kind: PublicationKind::Model,
        endpoint,
        config: config.into(),
        secrets,
    }
}

fn invocation(input: &str) -> Invocation {
    Invocation {
        input: input.into(),
        caller: "alice".into(),
        request_id: "req-1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_measures_usage() {
    let addr = mock_upstream().await;
    let grants = Grants::none()
        .with_http([format!("127.0.0.1:{}", addr.port())])
        .unwrap()
        .with_secret("api-key", "sk-test");
    let p = common::plugin_with("adapter-openai-chat", &grants);
    let call = p
        .invoke(
            publication(
                format!("http://127.0.0.1:{}", addr.port()),
                r#"{"model": "gpt-test"}"#,
                // Not requested by the manifest: must not reach the plugin.
                vec![Secret {
                    name: "db-password".into(),
                    value: "hunter2".into(),
                }],
            ),
            invocation("Say hello"),
        )
        .await
        .unwrap();
    assert!(call.fuel_used.is_none());
    let outcome = call.value.unwrap();
    assert_eq!(outcome.usage.calls, 1);
    assert_eq!(outcome.usage.input_tokens, 12);
    assert_eq!(outcome.usage.output_tokens, 34);
    let output: Value = serde_json::from_str(&outcome.output).unwrap();
    assert_eq!(output["model"], "gpt-test");
    assert_eq!(output["echo"]["authorization"], "Bearer sk-test");
    assert_eq!(output["echo"]["messages"][0]["content"], "Say hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_round_trip() {
    let addr = mock_upstream().await;
    let grants = Grants::none()
        .with_http([format!("127.0.0.1:{}", addr.port())])
        .unwrap()
        .with_secret("api-key", "k-1");
    let p = common::plugin_with("adapter-http-json", &grants);
    let call = p
        .invoke(
            publication(
                format!("http://127.0.0.1:{}/echo", addr.port()),
                r#"{"apiKeySecret": "api-key"}"#,
                vec![],
            ),
            invocation(r#"{"question": 42}"#),
        )
        .await
        .unwrap();
    let outcome = call.value.unwrap();
    let output: Value = serde_json::from_str(&outcome.output).unwrap();
    assert_eq!(output["received"]["question"], 42);
    assert_eq!(output["authorization"], "Bearer k-1");
    assert_eq!(outcome.usage.calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_outside_the_manifest_is_refused_by_name() {
    let p = common::plugin_with(
        "fixtures/fixture-ungranted-host",
        &Grants::none().with_http(["*"]).unwrap(),
    );
    let err = p
        .invoke(
            publication("http://example.com/".into(), "{}", vec![]),
            invocation("{}"),
        )
        .await
        .unwrap_err();
    let PluginFailure::HttpRefused { host, hint } = &err.kind else {
        panic!("expected HttpRefused, got {err}");
    };
    assert_eq!(host, "example.com:80");
    assert!(hint.contains("plugin.toml"), "{hint}");
    assert!(err.to_string().contains("example.com:80"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_host_is_refused_by_name() {
    let addr = mock_upstream().await;
    // The manifest requests 127.0.0.1:*, but the operator granted another host only.
    let grants = Grants::none().with_http(["api.openai.com:443"]).unwrap();
    let p = common::plugin_with("adapter-openai-chat", &grants);
    let err = p
        .invoke(
            publication(format!("http://127.0.0.1:{}", addr.port()), "{}", vec![]),
            invocation("hi"),
        )
        .await
        .unwrap_err();
    let PluginFailure::HttpRefused { host, hint } = &err.kind else {
        panic!("expected HttpRefused, got {err}");
    };
    assert_eq!(host, &format!("127.0.0.1:{}", addr.port()));
    assert!(hint.contains("operator"), "{hint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_address_needs_an_explicit_grant() {
    let addr = mock_upstream().await;
    let p = common::plugin_with(
        "adapter-http-json",
        &Grants::none().with_http(["*"]).unwrap(),
    );
    let err = p
        .invoke(
            publication(
                format!("http://127.0.0.1:{}/echo", addr.port()),
                "{}",
                vec![],
            ),
            invocation("{}"),
        )
        .await
        .unwrap_err();
    let PluginFailure::HttpRefused { host, hint } = &err.kind else {
        panic!("expected HttpRefused, got {err}");
    };
    assert_eq!(host, &format!("127.0.0.1:{}", addr.port()));
    assert!(hint.contains("private"), "{hint}");

    // `localhost` resolves to loopback: refused as well under `*`.
    let err = p
        .invoke(
            publication(
                format!("http://localhost:{}/echo", addr.port()),
                "{}",
                vec![],
            ),
            invocation("{}"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, PluginFailure::HttpRefused { .. }),
        "{err}"
    );
}
