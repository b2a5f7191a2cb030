//! Provider plugins: the reference `aws-compute` plugin against a local moto server (EC2,
//! EFS, S3, Cost Explorer), and a provider that traps or loops.

use liutong_plugin_runtime::provider::{
    Account, Action, Period, ProviderError, ProvisionRequest, ResourceState, ResourceType, Secret,
};
use liutong_plugin_runtime::{Grants, LoadedPlugin, PluginFailure};
use liutong_testkit::moto::Moto;
use serde_json::Value;

use crate::common;

fn aws(moto: &Moto) -> LoadedPlugin {
    let grants = Grants::none()
        .with_http([format!("127.0.0.1:{}", moto.port)])
        .unwrap()
        .with_secret("aws-access-key-id", "testing")
        .with_secret("aws-secret-access-key", "testing");
    common::plugin_with("provider-aws-compute", &grants)
}

fn account(moto: &Moto, resource_type: ResourceType) -> Account {
    Account {
        offering_id: "off-1".into(),
        resource_type,
        region: "us-east-1".into(),
        config: format!(
            r#"{{"endpoint": "{}", "accessKeySecret": "aws-access-key-id", "secretKeySecret": "aws-secret-access-key"}}"#,
            moto.endpoint()
        ),
        // A caller cannot smuggle a secret the manifest does not name.
        secrets: vec![Secret {
            name: "other".into(),
            value: "x".into(),
        }],
    }
}

fn request(token: &str, spec: &str) -> ProvisionRequest {
    ProvisionRequest {
        client_token: token.into(),
        order_id: format!("ord-{token}"),
        spec: spec.into(),
    }
}

fn inventory(moto: &Moto) -> Value {
    serde_json::from_str(&moto.inventory()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_compute_runs_every_resource_type_against_moto() {
    let moto = Moto::start();
    let p = aws(&moto);

    // A cloud host: provisioned twice with one token is one instance.
    let host = account(&moto, ResourceType::CloudHost);
    let spec = r#"{"instanceType": "t3.micro", "imageId": "ami-12c6146b"}"#;
    let first = p
        .provision(host.clone(), request("tok-host", spec))
        .await
        .unwrap()
        .value
        .unwrap();
    let again = p
        .provision(host.clone(), request("tok-host", spec))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(first.resource_id, again.resource_id);
    assert!(first.resource_id.starts_with("i-"), "{first:?}");
    let inv = inventory(&moto);
    assert_eq!(inv["instances"].as_array().unwrap().len(), 1, "{inv}");
    assert_eq!(inv["instances"][0]["token"], "tok-host");
    let endpoint: Value = serde_json::from_str(&first.endpoint).unwrap();
    assert!(endpoint["privateIpAddress"].is_string(), "{endpoint}");

    let id = first.resource_id.as_str();
    let stopped = p
        .operate(host.clone(), id, Action::Stop)
        .await
        .unwrap()
        .value
        .unwrap();
    assert!(
        matches!(
            stopped.state,
            ResourceState::Stopped | ResourceState::Stopping
        ),
        "{stopped:?}"
    );
    let resized = p
        .operate(host.clone(), id, Action::Resize("t3.large".into()))
        .await
        .unwrap()
        .value
        .unwrap();
    let endpoint: Value = serde_json::from_str(&resized.endpoint).unwrap();
    assert_eq!(endpoint["instanceType"], "t3.large");
    let started = p
        .operate(host.clone(), id, Action::Start)
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(started.state, ResourceState::Running);
    p.operate(host.clone(), id, Action::Reboot)
        .await
        .unwrap()
        .value
        .unwrap();
    p.reclaim(host.clone(), id).await.unwrap().value.unwrap();
    let gone = p.describe(host.clone(), id).await.unwrap().value.unwrap();
    assert_eq!(gone.state, ResourceState::Deleted);
    // Reclaiming again, or an unknown instance, succeeds.
    p.reclaim(host.clone(), id).await.unwrap().value.unwrap();

    // Bare metal needs a *.metal type.
    let metal = account(&moto, ResourceType::BareMetal);
    let refused = p
        .provision(metal.clone(), request("tok-metal", spec))
        .await
        .unwrap()
        .value;
    assert!(
        matches!(refused, Err(ProviderError::InvalidRequest(_))),
        "{refused:?}"
    );
    let m = p
        .provision(
            metal.clone(),
            request(
                "tok-metal",
                r#"{"instanceType": "m5.metal", "imageId": "ami-12c6146b"}"#,
            ),
        )
        .await
        .unwrap()
        .value
        .unwrap();
    let inv = inventory(&moto);
    assert!(
        inv["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == m.resource_id.as_str() && i["type"] == "m5.metal"),
        "{inv}"
    );
    p.reclaim(metal, &m.resource_id)
        .await
        .unwrap()
        .value
        .unwrap();

    // A file service: EFS, idempotent on the creation token.
    let files = account(&moto, ResourceType::FileService);
    let fs = p
        .provision(files.clone(), request("tok-fs", "{}"))
        .await
        .unwrap()
        .value
        .unwrap();
    let fs_again = p
        .provision(files.clone(), request("tok-fs", "{}"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(fs.resource_id, fs_again.resource_id);
    let inv = inventory(&moto);
    assert_eq!(inv["fileSystems"].as_array().unwrap().len(), 1, "{inv}");
    let unsupported = p
        .operate(files.clone(), &fs.resource_id, Action::Stop)
        .await
        .unwrap()
        .value;
    assert!(
        matches!(unsupported, Err(ProviderError::Unsupported(_))),
        "{unsupported:?}"
    );
    p.reclaim(files.clone(), &fs.resource_id)
        .await
        .unwrap()
        .value
        .unwrap();
    let inv = inventory(&moto);
    assert_eq!(inv["fileSystems"].as_array().unwrap().len(), 0, "{inv}");
    let missing = p.describe(files, &fs.resource_id).await.unwrap().value;
    assert!(
        matches!(missing, Err(ProviderError::NotFound(_))),
        "{missing:?}"
    );

    // A storage service: an S3 bucket named after the token.
    let storage = account(&moto, ResourceType::StorageService);
    let b = p
        .provision(storage.clone(), request("Tok-Bucket", "{}"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(b.resource_id, "liutong-tok-bucket");
    p.provision(storage.clone(), request("Tok-Bucket", "{}"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(
        inventory(&moto)["buckets"],
        serde_json::json!(["liutong-tok-bucket"])
    );
    let described = p
        .describe(storage.clone(), &b.resource_id)
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(described.state, ResourceState::Available);
    p.reclaim(storage.clone(), &b.resource_id)
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(inventory(&moto)["buckets"], serde_json::json!([]));
    p.reclaim(storage, &b.resource_id)
        .await
        .unwrap()
        .value
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_compute_lists_cost_explorer_bills() {
    let moto = Moto::start();
    moto.set_cost_and_usage(
        r#"[{"ResultsByTime": [
            {"TimePeriod": {"Start": "2026-11-01", "End": "2026-11-02"}, "Total": {}, "Groups": [
                {"Keys": ["i-0abc"], "Metrics": {
                    "UnblendedCost": {"Amount": "2.345", "Unit": "USD"},
                    "UsageQuantity": {"Amount": "24", "Unit": "Hrs"}}},
                {"Keys": ["fs-1"], "Metrics": {
                    "UnblendedCost": {"Amount": "0.10", "Unit": "USD"},
                    "UsageQuantity": {"Amount": "1.5", "Unit": "GB-Mo"}}}]}]}]"#,
    );
    let p = aws(&moto);
    let lines = p
        .list_bills(
            account(&moto, ResourceType::CloudHost),
            Period {
                start: "2026-11-01".into(),
                end: "2026-12-01".into(),
            },
        )
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].resource_id, "i-0abc");
    assert_eq!(lines[0].amount_minor, 235);
    assert_eq!(lines[0].quantity_milli, 24_000);
    assert_eq!(lines[0].unit, "Hrs");
    assert_eq!(lines[0].currency, "USD");
    assert_eq!(lines[0].period.start, "2026-11-01");
    assert_eq!(lines[1].amount_minor, 10);
    assert_eq!(lines[1].quantity_milli, 1_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_compute_without_a_grant_is_refused_by_name() {
    let moto = Moto::start();
    let grants = Grants::none()
        .with_secret("aws-access-key-id", "testing")
        .with_secret("aws-secret-access-key", "testing");
    let p = common::plugin_with("provider-aws-compute", &grants);
    let err = p
        .describe(account(&moto, ResourceType::CloudHost), "i-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err.kind, PluginFailure::HttpRefused { host, .. } if host == &format!("127.0.0.1:{}", moto.port)),
        "{err}"
    );
    assert!(inventory(&moto)["instances"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_traps_or_loops_fails_the_call() {
    let p = common::plugin("fixtures/fixture-provider-faults");
    let account = |mode: &str| Account {
        offering_id: "off-1".into(),
        resource_type: ResourceType::CloudHost,
        region: "local".into(),
        config: format!(r#"{{"mode": "{mode}"}}"#),
        secrets: Vec::new(),
    };
    let trap = p
        .provision(account("trap"), request("t", "{}"))
        .await
        .unwrap_err();
    assert!(matches!(trap.kind, PluginFailure::Trap { .. }), "{trap}");
    let started = std::time::Instant::now();
    let looped = p.reclaim(account("loop"), "i-1").await.unwrap_err();
    assert!(
        matches!(looped.kind, PluginFailure::Timeout { .. }),
        "{looped}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let other = p.describe(account("other"), "i-1").await.unwrap().value;
    assert!(
        matches!(other, Err(ProviderError::InvalidConfig(_))),
        "{other:?}"
    );
}
