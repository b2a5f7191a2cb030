//! Data files in an S3-compatible object store: a local moto server (PyPI `moto[server]`,
//! which `scripts/test.sh` installs) on 127.0.0.1.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::support::trade::{age_decrypt, b64};
use crate::support::{Backend, TestApp, free_port, http_client};

const BUCKET: &str = "liutong-test";

/// A moto S3 server, stopped when dropped.
struct Moto {
    endpoint: String,
    _child: tokio::process::Child,
}

async fn moto() -> Moto {
    let port = free_port();
    let python = std::env::var("LIUTONG_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let child = tokio::process::Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m moto.server starts (pip install 'moto[server]')");
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = http_client();
    for _ in 0..300 {
        if client.get(&endpoint).send().await.is_ok() {
            // Unsigned requests are fine with moto: create the bucket.
            let created = client
                .put(format!("{endpoint}/{BUCKET}"))
                .send()
                .await
                .expect("create bucket");
            assert!(
                created.status().is_success(),
                "bucket: {}",
                created.status()
            );
            return Moto {
                endpoint,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto server did not start; install it with pip install 'moto[server]'");
}

/// Object keys under the prefix, from S3's ListObjectsV2.
async fn list_keys(endpoint: &str) -> Vec<String> {
    let xml = http_client()
        .get(format!("{endpoint}/{BUCKET}?list-type=2&prefix=files/"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("xml");
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

async fn files_live_in_s3(backend: Backend) {
    let moto = moto().await;
    let endpoint = moto.endpoint.clone();
    let app = TestApp::spawn_with(backend, |c| {
        c.storage.s3 = Some(liutong::config::S3Config {
            bucket: BUCKET.to_owned(),
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            prefix: "files".to_owned(),
            access_key_id: Some("testing".to_owned()),
            secret_access_key: Some("testing".to_owned()),
            allow_http: true,
        });
    })
    .await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    // Larger than one 8 MiB part: a multipart upload.
    let plaintext: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 97) as u8).collect();
    let listing = app.listing(&alice, "big", None, &plaintext).await;
    assert_eq!(list_keys(&endpoint).await.len(), 1);
    // Nothing went to the local directory.
    assert!(!app.config.storage.dir.join("objects").exists());

    let (_, s) = app.settled_trade(&carol, &listing).await;
    let pk = b64()
        .decode(s["private_key"]["ciphertext"].as_str().expect("ciphertext"))
        .expect("base64");
    let provider = crate::support::trade::parse_identity_file(
        &String::from_utf8(age_decrypt(&carol.identity, &pk)).expect("utf8"),
    );
    let response = app
        .client
        .post(app.url("/deliver"))
        .header("X-Auth-Token", &carol.token)
        .header("Accept", "application/octet-stream")
        .json(&json!({"licenses": s["licenses"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..], &listing.ciphertext[..]);
    assert_eq!(age_decrypt(&provider, &body), plaintext);

    // A replacement upload removes the old object.
    app.upload(&alice.token, &listing.registration_id, b"v2".to_vec())
        .await
        .ok();
    let keys = list_keys(&endpoint).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let d = app.deliver_json(&carol.token, &s["licenses"]).await;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(d.ok()["data_file"].as_str().expect("data"))
            .expect("base64"),
        b"v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_in_s3_sqlite() {
    files_live_in_s3(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_in_s3_postgres() {
    files_live_in_s3(Backend::Postgres).await;
}
