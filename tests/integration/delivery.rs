//! A.3.5, A.3.6 and what delivery needs: operator keys, delivery keys, uploads, resource_url
//! fetching, streaming, and the refusal of every license that is not the caller's, current and
//! genuine.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest;

use crate::on_both_backends;
use crate::support::fixtures::{publish_datasets, register_data};
use crate::support::trade::{
    age_decrypt, age_encrypt, b64, identity_file, parse_identity_file, verify_signed,
};
use crate::support::{Backend, TestApp, cli};

async fn keys_are_public_and_verifiable(app: TestApp) {
    // No token needed.
    let keys = app.keys().await;
    let signing = keys["signingKeys"].as_array().expect("signingKeys");
    assert_eq!(signing.len(), 1);
    let key = &signing[0];
    assert_eq!(key["alg"], "Ed25519");
    assert_eq!(key["current"], true);
    let raw = b64()
        .decode(key["publicKey"].as_str().expect("publicKey"))
        .expect("base64");
    assert_eq!(raw.len(), 32);
    // The key id is derived from the public key.
    let digest = hex::encode(sha2::Sha256::digest(&raw));
    assert_eq!(key["keyId"], format!("ed25519-{}", &digest[..16]).as_str());
    let escrow = keys["escrowRecipient"].as_str().expect("escrowRecipient");
    assert!(escrow.parse::<age::x25519::Recipient>().is_ok(), "{escrow}");
    // The key files are the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["signing", "escrow"] {
            for f in std::fs::read_dir(app.config.keys_dir.join(sub)).expect("dir") {
                let mode = f
                    .expect("entry")
                    .metadata()
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
    }
}

async fn registration_needs_a_real_age_recipient(app: TestApp) {
    let alice = app.user("alice").await;
    // Matches the schema's pattern (Bech32 characters, right length) but its checksum is wrong.
    let mut body = register_data("alice", "d1", &["x"]);
    body["public_key"] = json!("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
    let r = app.post("/registerData", Some(&alice), &body).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/public_key"), "{}", r.error_msg());
    body["public_key"] = json!("ssh-ed25519 AAAA");
    let r = app.post("/registerData", Some(&alice), &body).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/public_key"), "{}", r.error_msg());
}

async fn delivery_keys_are_checked(app: TestApp) {
    let alice = app.party("alice").await;
    let mallory = app.party("mallory").await;
    let identity = age::x25519::Identity::generate();
    let listing = app
        .listing_with(&alice, "d1", Some(1.0), b"x", identity, |_| {})
        .await;
    let reg = &listing.registration_id;
    let escrow = app.escrow_recipient().await;
    let good = age_encrypt(&escrow, identity_file(&listing.identity).as_bytes());

    app.deposit(&mallory.token, reg, &good)
        .await
        .expect_error(403, "FORBIDDEN");
    app.deposit(&alice.token, "reg_nope", &good)
        .await
        .expect_error(404, "NOT_FOUND");
    app.deposit(&alice.token, "TDS-CONTROLLED", &good)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let r = app
        .send(
            app.client
                .put(app.url("/v1/data/deliveryKey"))
                .query(&[("registrationID", reg.as_str())])
                .header("X-Auth-Token", &alice.token)
                .json(&json!({"sealedIdentity": "%%% not base64"})),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        r.error_msg().contains("/sealedIdentity"),
        "{}",
        r.error_msg()
    );
    // Sealed to someone else: the host cannot open it.
    let stranger = age::x25519::Identity::generate().to_public().to_string();
    let r = app
        .deposit(
            &alice.token,
            reg,
            &age_encrypt(&stranger, identity_file(&listing.identity).as_bytes()),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        r.error_msg().contains("escrowRecipient"),
        "{}",
        r.error_msg()
    );
    // Opens, but is not an identity.
    let r = app
        .deposit(&alice.token, reg, &age_encrypt(&escrow, b"not a key"))
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    // Opens, is an identity, but not the one of the registered public_key.
    let other = age::x25519::Identity::generate();
    let r = app
        .deposit(
            &alice.token,
            reg,
            &age_encrypt(&escrow, identity_file(&other).as_bytes()),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("public_key"), "{}", r.error_msg());
    // The right one, ASCII-armoured as `age -a` writes it, is accepted too.
    let armored = age::encrypt_and_armor(
        &escrow.parse::<age::x25519::Recipient>().expect("recipient"),
        identity_file(&listing.identity).as_bytes(),
    )
    .expect("armor");
    let r = app.deposit(&alice.token, reg, armored.as_bytes()).await;
    assert_eq!(
        r.ok()["recipient"],
        listing.identity.to_public().to_string().as_str()
    );
    app.deposit(&alice.token, reg, &good).await.ok();
    // The identity is stored only sealed: the plaintext key appears nowhere in the database.
    let sealed: Vec<String> = sqlx::query_scalar("SELECT sealed FROM resource_delivery_keys")
        .fetch_all(app.store.pool())
        .await
        .expect("query");
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].contains("AGE-SECRET-KEY"));
    assert!(age_decrypt_fails_without_escrow(
        &sealed[0],
        &listing.identity
    ));

    // The buyer's own recipient must parse too.
    let r = app
        .send(
            app.client
                .put(app.url("/v1/account/deliveryKey"))
                .header("X-Auth-Token", &mallory.token)
                .json(&json!({"publicKey": "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"})),
        )
        .await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("/publicKey"), "{}", r.error_msg());
}

/// The stored sealed key is an age file the provider's own identity cannot open (only the
/// escrow identity can).
fn age_decrypt_fails_without_escrow(sealed_b64: &str, wrong: &age::x25519::Identity) -> bool {
    let raw = b64().decode(sealed_b64).expect("base64");
    let decryptor = age::Decryptor::new(&raw[..]).expect("age file");
    decryptor
        .decrypt(std::iter::once(wrong as &dyn age::Identity))
        .is_err()
}

async fn uploads_stream_any_size(app: TestApp) {
    let alice = app.party("alice").await;
    let mallory = app.user("mallory").await;
    let carol = app.buyer("carol").await;
    let listing = app
        .listing_with(
            &alice,
            "big",
            None,
            b"",
            age::x25519::Identity::generate(),
            |_| {},
        )
        .await;
    let reg = listing.registration_id.clone();
    // Larger than the 1 MiB JSON body limit.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Refusals come before the body is read, so they are tried with small bodies: a client
    // that sends a large body to be refused sees the connection closed under it (HTTP's
    // answer is `Expect: 100-continue`, which liutong honours).
    let small = b"small".to_vec();
    app.send(
        app.client
            .put(app.url("/v1/data/file"))
            .query(&[("registrationID", reg.as_str())])
            .header("X-Auth-Token", &alice.token)
            .header("Content-Type", "application/json")
            .body(small.clone()),
    )
    .await
    .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    app.upload(&mallory, &reg, small.clone())
        .await
        .expect_error(403, "FORBIDDEN");
    app.upload(&alice.token, "reg_nope", small.clone())
        .await
        .expect_error(404, "NOT_FOUND");
    app.send(
        app.client
            .put(app.url("/v1/data/file"))
            .query(&[("registrationID", reg.as_str())])
            .header("Content-Type", "application/octet-stream")
            .body(small),
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");

    // A streamed body of unknown length (chunked transfer encoding).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let r = app
        .send(
            app.client
                .put(app.url("/v1/data/file"))
                .query(&[("registrationID", reg.as_str())])
                .header("X-Auth-Token", &alice.token)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    let up = r.ok();
    assert_eq!(up["size"], big.len());
    assert_eq!(
        up["sha256"],
        hex::encode(sha2::Sha256::digest(&big)).as_str()
    );

    let (_, s) = app.settled_trade(&carol, &listing).await;
    let delivered = app.deliver_json(&carol.token, &s["licenses"]).await;
    let data = b64()
        .decode(delivered.ok()["data_file"].as_str().expect("data_file"))
        .expect("base64");
    assert_eq!(data, big);

    // A new upload replaces the old one; the old object is removed from storage.
    app.upload(&alice.token, &reg, b"second version".to_vec())
        .await
        .ok();
    let delivered = app.deliver_json(&carol.token, &s["licenses"]).await;
    let data = b64()
        .decode(delivered.ok()["data_file"].as_str().expect("data_file"))
        .expect("base64");
    assert_eq!(data, b"second version");
    let objects = walk(&app.config.storage.dir.join("objects"));
    assert_eq!(objects.len(), 1, "{objects:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn streaming_delivery_and_json_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_json_delivery = 4096).await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    let listing = app.listing(&alice, "d1", None, &plaintext).await;
    let (confirm_id, s) = app.settled_trade(&carol, &listing).await;
    let license = &s["licenses"];

    let r = app.deliver_json(&carol.token, license).await;
    r.expect_error(413, "PAYLOAD_TOO_LARGE");
    assert!(
        r.error_msg().contains("application/octet-stream"),
        "{}",
        r.error_msg()
    );

    let response = app
        .client
        .post(app.url("/deliver"))
        .header("X-Auth-Token", &carol.token)
        .header("Accept", "application/octet-stream")
        .json(&json!({"licenses": license}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    let proof_json = b64()
        .decode(headers["x-delivery-proof"].to_str().expect("ascii"))
        .expect("base64");
    let proof: Value = serde_json::from_slice(&proof_json).expect("json");
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len(), listing.ciphertext.len());
    assert_eq!(&body[..], &listing.ciphertext[..]);
    let keys = app.keys().await;
    assert!(verify_signed(&keys, &proof, "signature"));
    assert_eq!(
        proof["sha256"],
        hex::encode(sha2::Sha256::digest(&body)).as_str()
    );
    assert_eq!(
        headers["x-content-sha256"],
        proof["sha256"].as_str().expect("sha")
    );
    assert_eq!(
        headers["x-delivery-id"],
        proof["deliveryID"].as_str().expect("id")
    );
    assert_eq!(proof["size"], body.len());
    // The private key from the settlement opens what was delivered.
    let pk = b64()
        .decode(s["private_key"]["ciphertext"].as_str().expect("ciphertext"))
        .expect("base64");
    let provider =
        parse_identity_file(&String::from_utf8(age_decrypt(&carol.identity, &pk)).expect("utf8"));
    assert_eq!(age_decrypt(&provider, &body), plaintext);

    // Errors in streaming mode are still envelopes.
    let dave = app.buyer("dave").await;
    app.send(
        app.client
            .post(app.url("/deliver"))
            .header("X-Auth-Token", &dave.token)
            .header("Accept", "application/octet-stream")
            .json(&json!({"licenses": license})),
    )
    .await
    .expect_error(403, "FORBIDDEN");

    let q = app
        .get(
            "/queryDeliverResult",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(q.ok()["delivery_proof"], json!([proof]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_delivery_and_json_limit_sqlite() {
    streaming_delivery_and_json_limit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_delivery_and_json_limit_postgres() {
    streaming_delivery_and_json_limit(Backend::Postgres).await;
}

/// Forged, tampered, foreign, malformed and other servers' licenses are refused.
async fn bad_licenses_are_refused(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let dave = app.buyer("dave").await;
    let listing = app.listing(&alice, "d1", None, b"secret bytes").await;
    let (_, s) = app.settled_trade(&carol, &listing).await;
    let license = s["licenses"].clone();
    app.deliver_json(&carol.token, &license).await.ok();

    // Someone else's license, presented by dave.
    let r = app.deliver_json(&dave.token, &license).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(
        r.error_msg().contains("issued to 'carol'"),
        "{}",
        r.error_msg()
    );
    // Forged: dave rewrites the licensee to himself.
    let mut forged = license.clone();
    forged["licensee"] = json!("dave");
    let r = app.deliver_json(&dave.token, &forged).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("signature"), "{}", r.error_msg());
    // Tampered: a longer term, another resource, a flipped signature byte, another key id.
    for (field, value) in [
        ("/license_term/endDate", json!("2099-12-31 00:00:00")),
        ("/dataID", json!("other")),
        ("/usage_restrictions", json!({"prohibited": []})),
    ] {
        let mut t = license.clone();
        *t.pointer_mut(field).expect("field") = value;
        app.deliver_json(&carol.token, &t)
            .await
            .expect_error(403, "FORBIDDEN");
    }
    let mut flipped = license.clone();
    let mut sig = b64()
        .decode(license["digital_signature"].as_str().expect("sig"))
        .expect("base64");
    sig[0] ^= 1;
    flipped["digital_signature"] = json!(b64().encode(&sig));
    app.deliver_json(&carol.token, &flipped)
        .await
        .expect_error(403, "FORBIDDEN");
    let mut unknown_key = license.clone();
    unknown_key["keyId"] = json!("ed25519-0000000000000000");
    let r = app.deliver_json(&carol.token, &unknown_key).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(
        r.error_msg().contains("ed25519-0000000000000000"),
        "{}",
        r.error_msg()
    );
    // Signed by a key this server does not have, under this server's key id.
    let other = liutong::crypto::KeyRing::ephemeral().expect("ring");
    let mut resigned = license.clone();
    resigned
        .as_object_mut()
        .expect("object")
        .remove("digital_signature");
    resigned.as_object_mut().expect("object").remove("keyId");
    let Value::Object(map) = resigned else {
        unreachable!()
    };
    let mut resigned = Value::Object(other.sign_document(map, "digital_signature").expect("sign"));
    resigned["keyId"] = license["keyId"].clone();
    app.deliver_json(&carol.token, &resigned)
        .await
        .expect_error(403, "FORBIDDEN");
    // Malformed: the schema names the field.
    let mut malformed = license.clone();
    malformed
        .as_object_mut()
        .expect("object")
        .remove("licensee");
    let r = app.deliver_json(&carol.token, &malformed).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(r.error_msg().contains("licensee"), "{}", r.error_msg());
    let mut bad_date = license.clone();
    bad_date["license_term"]["endDate"] = json!("someday");
    app.deliver_json(&carol.token, &bad_date)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.deliver_json(&carol.token, &json!("a license"))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    // The genuine one still works.
    app.deliver_json(&carol.token, &license).await.ok();
}

async fn expired_licenses_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.license_term = Duration::from_secs(1)).await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app.listing(&alice, "d1", None, b"x").await;
    let (_, s) = app.settled_trade(&carol, &listing).await;
    let license = &s["licenses"];
    let end = license["license_term"]["endDate"]
        .as_str()
        .expect("endDate");
    let start = license["license_term"]["startData"]
        .as_str()
        .expect("startData");
    assert_ne!(start, end);
    // Wait until the term (whole seconds) is certainly over.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.deliver_json(&carol.token, license).await;
    r.expect_error(403, "FORBIDDEN");
    assert!(r.error_msg().contains("expired"), "{}", r.error_msg());
    // Expired licenses are not re-issued.
    let r = app
        .post(
            "/updateLicenses",
            Some(&alice.token),
            &json!({"owner": "alice", "dataID": "d1"}),
        )
        .await;
    assert_eq!(r.ok()["licenses"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_licenses_are_refused_sqlite() {
    expired_licenses_are_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_licenses_are_refused_postgres() {
    expired_licenses_are_refused(Backend::Postgres).await;
}

/// A local HTTP server standing in for a provider's resource_url.
async fn provider_server(body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = axum::Router::new().route(
        "/data.age",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), handle)
}

async fn resource_url_is_fetched_when_nothing_was_uploaded(app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let identity = age::x25519::Identity::generate();
    let plaintext = b"served by the provider".to_vec();
    let ciphertext = age_encrypt(&identity.to_public().to_string(), &plaintext);
    let (base, server) = provider_server(ciphertext.clone()).await;
    let listing = app
        .listing_with(&alice, "remote", Some(2.0), &plaintext, identity, |b| {
            b["resource_url"] = json!(format!("{base}/data.age"))
        })
        .await;
    app.credit("carol", 10.0, "r").await.ok();
    let (confirm_id, s) = app.settled_trade(&carol, &listing).await;
    let r = app.deliver_json(&carol.token, &s["licenses"]).await;
    let d = r.ok();
    let data = b64()
        .decode(d["data_file"].as_str().expect("data_file"))
        .expect("base64");
    assert_eq!(data, ciphertext);
    assert_eq!(d["delivery_proof"]["source"], "resource_url");
    assert_eq!(age_decrypt(&listing.identity, &data), plaintext);
    // Streaming works from a fetched file too.
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
    assert_eq!(response.bytes().await.expect("body").to_vec(), ciphertext);

    // The provider's server goes away: 503, and no delivery is recorded.
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.deliver_json(&carol.token, &s["licenses"])
        .await
        .expect_error(503, "SERVICE_UNAVAILABLE");
    let q = app
        .get(
            "/queryDeliverResult",
            Some(&carol.token),
            &[("confirmID", &confirm_id)],
        )
        .await;
    assert_eq!(q.ok()["delivery_proof"].as_array().map(Vec::len), Some(2));
}

async fn resource_urls_are_not_fetched_when_disabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.fetch_resource_urls = false).await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let listing = app
        .listing_with(
            &alice,
            "remote",
            None,
            b"x",
            age::x25519::Identity::generate(),
            |b| b["resource_url"] = json!("http://127.0.0.1:9/data.age"),
        )
        .await;
    let confirm_id = app.confirm(&carol, &listing.registration_id).await;
    let r = app.settle(&carol.token, &confirm_id).await;
    r.expect_error(409, "INVALID_STATE");
    // Uploading the file makes it deliverable.
    app.upload(
        &alice.token,
        &listing.registration_id,
        listing.ciphertext.clone(),
    )
    .await
    .ok();
    let s = app.settle(&carol.token, &confirm_id).await;
    app.deliver_json(&carol.token, &s.ok()["licenses"])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_urls_are_not_fetched_when_disabled_sqlite() {
    resource_urls_are_not_fetched_when_disabled(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_urls_are_not_fetched_when_disabled_postgres() {
    resource_urls_are_not_fetched_when_disabled(Backend::Postgres).await;
}

/// Controlled data settles (the data space is paid, a license is issued) but is delivered by
/// its trusted data space, not by /deliver.
async fn controlled_data_is_not_delivered_here(app: TestApp) {
    let space = app.account_with_role("tds-one", "data_space").await;
    let carol = app.party("carol").await;
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-1", &["ct"], false, Some(8.5)),
    )
    .await
    .ok();
    app.credit("carol", 10.0, "r").await.ok();
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
    let confirm_id = c.ok()["confirmID"].as_str().expect("id").to_owned();
    // No delivery key is needed: nothing is handed over here.
    let s = app.settle(&carol.token, &confirm_id).await;
    let s = s.ok();
    assert!(s["private_key"].is_null());
    assert_eq!(s["licenses"]["licensor"], "trusted-data-space");
    assert_eq!(s["licenses"]["registrationID"], "TDS-CONTROLLED");
    assert_eq!(app.balance(&carol.token).await, 1.5);
    assert_eq!(app.balance(&space).await, 8.5);
    let r = app.deliver_json(&carol.token, &s["licenses"]).await;
    r.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        r.error_msg().contains("/deliverDatasets"),
        "{}",
        r.error_msg()
    );
}

/// Rotation: new documents are signed by the new key, old licenses keep verifying and
/// delivering, delivery keys sealed to the old escrow recipient stay usable.
async fn rotated_keys_keep_old_documents_valid(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let old_keys = app.keys().await;
    let first = app.listing(&alice, "d1", None, b"one").await;
    let second = app.listing(&alice, "d2", None, b"two").await;
    let (_, s1) = app.settled_trade(&carol, &first).await;

    let out = cli(&["keys", "rotate", "--keys-dir"])
        .env("LIUTONG_KEYS_DIR", &app.config.keys_dir)
        .run()
        .await;
    assert!(!out.success, "--keys-dir without a value is an error");
    let dir = app.config.keys_dir.to_str().expect("path").to_owned();
    let out = cli(&["keys", "rotate", "--keys-dir", &dir]).run().await;
    assert!(out.success, "{}", out.stderr);
    let out = cli(&["keys", "show"])
        .env("LIUTONG_KEYS_DIR", &dir)
        .run()
        .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        out.stdout.matches("signing key").count(),
        2,
        "{}",
        out.stdout
    );
    let config = app.config.clone();
    app.restart_with(config).await;

    let keys = app.keys().await;
    let signing = keys["signingKeys"].as_array().expect("keys");
    assert_eq!(signing.len(), 2);
    assert_eq!(signing[0]["current"], true);
    assert_ne!(signing[0]["keyId"], old_keys["signingKeys"][0]["keyId"]);
    assert_ne!(keys["escrowRecipient"], old_keys["escrowRecipient"]);
    // The old license verifies with the listed old key and still delivers.
    assert!(verify_signed(&keys, &s1["licenses"], "digital_signature"));
    app.deliver_json(&carol.token, &s1["licenses"]).await.ok();
    // The second resource's key was sealed to the old escrow recipient: it still settles, and
    // its documents carry the new key.
    let (_, s2) = app.settled_trade(&carol, &second).await;
    assert_eq!(s2["licenses"]["keyId"], signing[0]["keyId"]);
    assert!(verify_signed(&keys, &s2["payment_proof"], "signature"));
    let d = app.deliver_json(&carol.token, &s2["licenses"]).await;
    let data = b64()
        .decode(d.ok()["data_file"].as_str().expect("data"))
        .expect("base64");
    assert_eq!(age_decrypt(&second.identity, &data), b"two");
    // keys init refuses to overwrite.
    let out = cli(&["keys", "init", "--keys-dir", &dir]).run().await;
    assert!(!out.success);
    assert!(out.stderr.contains("already exist"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_keep_old_documents_valid_sqlite() {
    rotated_keys_keep_old_documents_valid(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_keep_old_documents_valid_postgres() {
    rotated_keys_keep_old_documents_valid(Backend::Postgres).await;
}

/// A stored file that changed on disk after its upload is hashed again at its next delivery
/// and not delivered as whole; once it is back as uploaded it is delivered again.
async fn a_stored_file_changed_on_disk_is_not_delivered_as_whole(mut app: TestApp) {
    let alice = app.party("alice").await;
    let carol = app.buyer("carol").await;
    let plaintext: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let listing = app.listing(&alice, "d1", None, &plaintext).await;
    let (_, s) = app.settled_trade(&carol, &listing).await;
    let license = s["licenses"].clone();
    let deliver = |app: &TestApp| {
        app.client
            .post(app.url("/deliver"))
            .header("X-Auth-Token", &carol.token)
            .header("Accept", "application/octet-stream")
            .json(&json!({"licenses": license}))
            .send()
    };
    let whole = |body: &[u8]| body == &listing.ciphertext[..];

    let body = deliver(&app).await.expect("request").bytes().await;
    assert!(whole(&body.expect("body")), "delivered as uploaded");

    let objects = walk(&app.config.storage.dir.join("objects"));
    assert_eq!(objects.len(), 1);
    let flip = |path: &std::path::Path| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open stored file");
        let at = 1_500_000;
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, at).expect("read");
        file.write_all_at(&[byte[0] ^ 0xff], at).expect("write");
    };
    // Same size, one byte changed in the second of its three 1 MiB chunks.
    flip(&objects[0]);
    let response = deliver(&app).await.expect("request");
    assert_eq!(
        response.status(),
        200,
        "the proof was signed before the bytes"
    );
    match response.bytes().await {
        Err(_) => {}
        Ok(body) => panic!(
            "a changed file was delivered as whole ({} bytes)",
            body.len()
        ),
    }
    // Changed back: hashed again, it matches, and is delivered (twice: the second time
    // from its confirmation).
    flip(&objects[0]);
    for _ in 0..2 {
        let body = deliver(&app).await.expect("request").bytes().await;
        assert!(whole(&body.expect("body")));
    }

    // A restarted server has confirmed nothing yet: it hashes, and delivers.
    app.restart_with(app.config.clone()).await;
    let body = deliver(&app).await.expect("request").bytes().await;
    assert!(whole(&body.expect("body")));
    flip(&objects[0]);
    let response = deliver(&app).await.expect("request");
    assert!(response.bytes().await.is_err());
}

on_both_backends!(
    keys_are_public_and_verifiable,
    registration_needs_a_real_age_recipient,
    delivery_keys_are_checked,
    uploads_stream_any_size,
    bad_licenses_are_refused,
    resource_url_is_fetched_when_nothing_was_uploaded,
    controlled_data_is_not_delivered_here,
    a_stored_file_changed_on_disk_is_not_delivered_as_whole,
);
