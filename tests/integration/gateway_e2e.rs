//! The identifier gateway end to end: a provider's cloud-management API served by the test
//! (its own JSON: memory in MiB, prices in fen, its own status words and region names), a
//! mapping file, the real `liutong gateway` binary collecting and forwarding to a platform that
//! is stopped mid-run and started again on the same database. Afterwards the platform holds
//! exactly what the provider served, once each; query and statistics agree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::{issue_code, put_json};
use crate::provider::certified;
use crate::support::{Backend, TestApp, binary, cli, free_port};

/// The provider API: the records of the current `version`, and how often each version was
/// fetched.
#[derive(Default)]
struct Provider {
    version: u64,
    codes: Vec<String>,
    fetches: Vec<u64>,
}

const TOKEN: &str = "provider-secret-1";
const EPOCH: i64 = 1_764_460_800; // 2025-11-30T00:00:00Z

/// (region, az, state word) of the i-th instance at `version`.
fn placement(i: usize) -> (&'static str, &'static str) {
    [
        ("cn-south-sz", "az1"),
        ("cn-south-sz", "az1"),
        ("cn-south-gz", "az1"),
        ("cn-south-sz", "az2"),
    ][i]
}

fn state_word(version: u64, i: usize) -> &'static str {
    ["ACTIVE", "SHUTOFF", "PAUSED", "MIGRATING"][(version as usize + i) % 4]
}

/// The provider's own view of its instances at `version`, plus two records no mapping can
/// make valid: a status word outside the table, and a negative memory size.
fn records(codes: &[String], version: u64) -> Value {
    let mut items: Vec<Value> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let (region, az) = placement(i);
            json!({
                "instanceId": format!("i-{i}"),
                "labels": {"liutong-code": code},
                "placement": {"region": region, "az": az},
                "family": if i % 2 == 0 { "gpu" } else { "general" },
                "kind": if i == 3 { "bm" } else { "vm" },
                "flavor": {
                    "vcpus": 8 * (i + 1),
                    "ram_mb": 16384 * (i + 1),
                    "gpu": if i % 2 == 0 { json!({"model": "A800", "count": 2}) } else { Value::Null }
                },
                "disk_gb": 500,
                "net_mbps": 1000,
                "state": state_word(version, i),
                "price_fen": 1250 + i as i64,
                "updated": EPOCH + version as i64 * 60
            })
        })
        .collect();
    let mut exploded = items[0].clone();
    exploded["state"] = json!("EXPLODED");
    exploded["instanceId"] = json!("i-bad-state");
    let mut negative = items[1].clone();
    negative["flavor"]["ram_mb"] = json!(-2048);
    negative["instanceId"] = json!("i-bad-memory");
    items.push(exploded);
    items.push(negative);
    json!({"result": {"total": items.len(), "instances": items}})
}

async fn serve_provider(state: Arc<Mutex<Provider>>) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/api/v2/instances",
        axum::routing::get(move |headers: HeaderMap| {
            let state = Arc::clone(&state);
            async move {
                let expected = format!("Bearer {TOKEN}");
                let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(expected.as_str());
                if !authorized {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": "auth"})),
                    );
                }
                let mut p = state.lock().expect("provider state");
                let version = p.version as usize;
                if p.fetches.len() <= version {
                    p.fetches.resize(version + 1, 0);
                }
                p.fetches[version] += 1;
                (StatusCode::OK, axum::Json(records(&p.codes, p.version)))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

pub fn config_text(platform: &str, provider: &str) -> String {
    format!(
        r#"# liutong gateway of acme
platform_url = "{platform}"
key_file = "gateway.pem"
state_dir = "state"
poll_interval_secs = 1
batch_size = 3

[source]
url = "{provider}/api/v2/instances"
records = "/result/instances"
auth_header = "Authorization"
auth_secret_env = "PROVIDER_TOKEN"
auth_prefix = "Bearer "

[mapping.code]
pointer = "/labels/liutong-code"

[mapping.resourceClass]
pointer = "/family"
enum = {{ gpu = "ai", general = "general", hpc = "supercomputing" }}

[mapping.resourceType]
pointer = "/kind"
enum = {{ vm = "cloud_host", bm = "bare_metal" }}

[mapping.province]
pointer = "/placement/region"
enum = {{ cn-south-sz = "440000", cn-south-gz = "440000" }}

[mapping.city]
pointer = "/placement/region"
enum = {{ cn-south-sz = "440300", cn-south-gz = "440100" }}

[mapping.zone]
pointer = "/placement/az"
enum = {{ az1 = "1", az2 = "2" }}

[mapping.cpuCores]
pointer = "/flavor/vcpus"

[mapping.gpuModel]
pointer = "/flavor/gpu/model"

[mapping.gpuCount]
pointer = "/flavor/gpu/count"
default = 0

[mapping.memoryGiB]
pointer = "/flavor/ram_mb"
divide = 1024

[mapping.storageGiB]
pointer = "/disk_gb"

[mapping.bandwidthMbps]
pointer = "/net_mbps"

[mapping.status]
pointer = "/state"
enum = {{ ACTIVE = "running", SHUTOFF = "offline", PAUSED = "idle", MIGRATING = "maintenance" }}

[mapping.unitPrice]
pointer = "/price_fen"
divide = 100

[mapping.observedAt]
pointer = "/updated"
format = "unix_seconds"
"#
    )
}

fn observed(version: u64) -> String {
    liutong::domain::timefmt::to_rfc3339(
        time::OffsetDateTime::from_unix_timestamp(EPOCH + version as i64 * 60).expect("time"),
    )
}

/// The identifiers the platform lists, by code.
async fn listed(app: &TestApp, operator: &str) -> Vec<Value> {
    let resp = app
        .get(
            "/v1/gateway/identifiers",
            Some(operator),
            &[("limit", "1000")],
        )
        .await;
    resp.ok()["identifiers"].as_array().expect("list").clone()
}

/// Waits until every listed identifier was observed at `version`.
async fn wait_for_version(app: &TestApp, operator: &str, version: u64, codes: usize) {
    let want = observed(version);
    for _ in 0..400 {
        let items = listed(app, operator).await;
        if items.len() == codes && items.iter().all(|i| i["observedAt"] == want.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the platform never showed version {version}: {:?}",
        listed(app, operator).await
    );
}

/// Serves `version` and waits until the gateway fetched it twice (so it has mapped and queued
/// it, and tried to forward it).
async fn serve_version(provider: &Arc<Mutex<Provider>>, version: u64) {
    provider.lock().expect("state").version = version;
    for _ in 0..200 {
        let fetched = provider
            .lock()
            .expect("state")
            .fetches
            .get(version as usize)
            .copied()
            .unwrap_or_default();
        if fetched >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway never fetched version {version}");
}

async fn gateway_collects_maps_and_forwards_through_a_platform_restart(backend: Backend) {
    let port = free_port();
    let mut app = TestApp::spawn_with(backend, |c| {
        c.listen = format!("127.0.0.1:{port}").parse().expect("address");
    })
    .await;
    let operator = app.operator().await;
    let (acme, _) = certified(&app, "acme").await;
    let mut codes = Vec::new();
    for i in 0..4 {
        let (region, az) = placement(i);
        let city = if region == "cn-south-sz" {
            "440300"
        } else {
            "440100"
        };
        codes.push(issue_code(&app, &acme, city, &az[2..]).await);
    }
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("gateway.pem");
    let out = cli(&[
        "gateway",
        "keygen",
        "--out",
        key_file.to_str().expect("path"),
    ])
    .run()
    .await;
    assert!(out.success, "{}", out.stderr);
    let public_key = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key "))
        .expect("public key printed")
        .to_owned();
    put_json(
        &app,
        "/v1/provider/gateway-key",
        &acme,
        &json!({ "publicKey": public_key }),
    )
    .await
    .ok();

    let provider = Arc::new(Mutex::new(Provider {
        version: 1,
        codes: codes.clone(),
        fetches: Vec::new(),
    }));
    let provider_addr = serve_provider(Arc::clone(&provider)).await;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("http://127.0.0.1:{port}"),
            &format!("http://{provider_addr}"),
        ),
    )
    .expect("config");
    let config_arg = config.to_str().expect("path");

    // Without the secret the source cannot be read; the configuration says which variable.
    let out = cli(&["gateway", "run", config_arg, "--once"]).run().await;
    assert!(!out.success);
    assert!(out.stderr.contains("PROVIDER_TOKEN"), "{}", out.stderr);

    // One cycle: 4 records forwarded, 2 reported and kept in the rejects, never forwarded.
    let out = cli(&["gateway", "run", config_arg, "--once"])
        .env("PROVIDER_TOKEN", TOKEN)
        .run()
        .await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("collected 6 queued 4 rejected 2 forwarded 4 accepted 4 duplicates 0"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("record rejected"), "{}", out.stderr);
    let rejects = std::fs::read_to_string(dir.path().join("state/rejects.jsonl")).expect("rejects");
    let rejects: Vec<Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0]["path"], "/status");
    assert_eq!(rejects[0]["record"]["instanceId"], "i-bad-state");
    assert_eq!(rejects[1]["path"], "/memoryGiB");
    assert_eq!(rejects[1]["record"]["instanceId"], "i-bad-memory");
    let items = listed(&app, &operator).await;
    assert_eq!(items.len(), 4);
    let first = items
        .iter()
        .find(|i| i["code"] == codes[3].as_str())
        .expect("listed");
    assert_eq!(first["memoryGiB"], 64.0);
    assert_eq!(first["resourceType"], "bare_metal");
    assert_eq!(first["resourceClass"], "general");
    assert_eq!(first["zone"], "2");
    assert_eq!(first["unitPrice"], 12.53);
    assert_eq!(first["gpuCount"], 0);
    assert_eq!(first["status"], "running");
    assert_eq!(first["observedAt"], observed(1));

    // The same cycle again (a fresh process remembers nothing) doubles nothing.
    let out = cli(&["gateway", "run", config_arg, "--once"])
        .env("PROVIDER_TOKEN", TOKEN)
        .run()
        .await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("accepted 0 duplicates 4"),
        "{}",
        out.stdout
    );

    // The gateway as a service: polls every second.
    let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log");
    let mut gateway = tokio::process::Command::new(binary())
        .args(["gateway", "run", config_arg])
        .env("PROVIDER_TOKEN", TOKEN)
        .env("LIUTONG_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("gateway starts");
    serve_version(&provider, 2).await;
    wait_for_version(&app, &operator, 2, 4).await;

    // The platform goes down; the provider moves on twice meanwhile.
    app.stop().await;
    serve_version(&provider, 3).await;
    serve_version(&provider, 4).await;
    let backlog = std::fs::read_to_string(dir.path().join("state/backlog.jsonl")).expect("backlog");
    assert_eq!(backlog.lines().count(), 8, "v3 and v4 wait in the backlog");

    // Back up on the same database and port: the backlog arrives.
    let config_again = app.config.clone();
    app.restart_with(config_again).await;
    wait_for_version(&app, &operator, 4, 4).await;
    let _ = gateway.start_kill();
    let _ = gateway.wait().await;
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).expect("log");
    assert!(log.contains("forwarding failed"), "{log}");

    // Exactly versions 1-4 of each served identifier, once each.
    let counts = app
        .store
        .gateway_observation_counts()
        .await
        .expect("counts");
    assert_eq!(counts.len(), 4, "{counts:?}");
    for code in &codes {
        assert_eq!(counts.get(code), Some(&4), "{code}: {counts:?}");
    }
    // Query and statistics agree with the last version served.
    let items = listed(&app, &operator).await;
    for (i, code) in codes.iter().enumerate() {
        let item = items
            .iter()
            .find(|it| it["code"] == code.as_str())
            .expect("listed");
        let want = match state_word(4, i) {
            "ACTIVE" => "running",
            "SHUTOFF" => "offline",
            "PAUSED" => "idle",
            _ => "maintenance",
        };
        assert_eq!(item["status"], want, "{code}");
        assert_eq!(item["memoryGiB"], 16.0 * (i + 1) as f64);
        assert_eq!(item["cpuCores"], 8 * (i + 1));
    }
    let stats = app
        .get(
            "/v1/gateway/statistics",
            Some(&operator),
            &[("groupBy", "city")],
        )
        .await;
    assert_eq!(
        stats.ok()["groups"],
        json!([
            {"key": "440100", "count": 1, "cpuCores": 24, "gpuCount": 2, "memoryGiB": 48.0, "storageGiB": 500.0},
            {"key": "440300", "count": 3, "cpuCores": 56, "gpuCount": 2, "memoryGiB": 112.0, "storageGiB": 1500.0}
        ])
    );
    let stats = app
        .get(
            "/v1/gateway/statistics",
            Some(&operator),
            &[("groupBy", "status")],
        )
        .await;
    assert_eq!(stats.ok()["total"]["count"], 4);
    assert_eq!(stats.ok()["groups"].as_array().expect("groups").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gateway_end_to_end() {
    gateway_collects_maps_and_forwards_through_a_platform_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gateway_end_to_end() {
    gateway_collects_maps_and_forwards_through_a_platform_restart(Backend::Postgres).await;
}

/// A mapping error names the configuration file's line and the field.
#[tokio::test]
async fn mapping_errors_name_the_line() {
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("gateway.pem");
    let out = cli(&[
        "gateway",
        "keygen",
        "--out",
        key_file.to_str().expect("path"),
    ])
    .run()
    .await;
    assert!(out.success, "{}", out.stderr);
    let good = config_text("http://127.0.0.1:1", "http://127.0.0.1:2");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &good).expect("config");
    let out = cli(&["gateway", "check", config.to_str().expect("path")])
        .run()
        .await;
    assert!(out.success, "{}", out.stderr);
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l == needle)
            .expect("line present")
            + 1
    };
    for (from, to, header, words) in [
        (
            "[mapping.memoryGiB]",
            "[mapping.memoryGB]",
            "[mapping.memoryGB]",
            &["mapping.memoryGB", "not a standard field"][..],
        ),
        (
            "SHUTOFF = \"offline\"",
            "SHUTOFF = \"stopped\"",
            "[mapping.status]",
            &["mapping.status", "stopped"][..],
        ),
        (
            "pointer = \"/disk_gb\"",
            "pointer = \"disk_gb\"",
            "[mapping.storageGiB]",
            &["mapping.storageGiB", "JSON Pointer"][..],
        ),
        (
            "[mapping.cpuCores]\npointer = \"/flavor/vcpus\"",
            "[mapping.cpuCores]\nconstant = \"many\"",
            "[mapping.cpuCores]",
            &["mapping.cpuCores", "not of type integer"][..],
        ),
    ] {
        let bad = good.replace(from, to);
        std::fs::write(&config, &bad).expect("config");
        let out = cli(&["gateway", "check", config.to_str().expect("path")])
            .run()
            .await;
        assert!(!out.success, "{to}");
        let line = line_of(&bad, header);
        assert!(
            out.stderr.contains(&format!("line {line}:")),
            "{to}: {}",
            out.stderr
        );
        for w in words {
            assert!(out.stderr.contains(w), "{to}: {}", out.stderr);
        }
    }
    // A TOML error (an unknown option) names its line too.
    let bad = good.replace("divide = 1024", "divde = 1024");
    std::fs::write(&config, &bad).expect("config");
    let out = cli(&["gateway", "check", config.to_str().expect("path")])
        .run()
        .await;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains(&format!("line {}", line_of(&bad, "divde = 1024"))),
        "{}",
        out.stderr
    );
}
