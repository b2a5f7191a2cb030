//! Signed packages: round trip, and every refusal with its variant.

use liutong_plugin_runtime::{
    Grants, Package, PackageError, PublisherKey, TamperedPart, TrustStore,
};

use crate::common;

const MANIFEST: &str = r#"id = "flat-fee"
version = "0.1.0"
kind = "billing"
wit = "0.1.0"
description = "The list price plus a platform fee"

[limits]
fuel = 50_000_000
memory_mb = 16
timeout_ms = 200
"#;

/// A minimal component header: verification only looks at the preamble.
const FAKE_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";
const CORE_MODULE: &[u8] = b"\0asm\x01\x00\x00\x00";

fn trusting(key: &PublisherKey) -> TrustStore {
    TrustStore::from_keys([key.public()]).unwrap()
}

#[test]
fn round_trip_and_verify() {
    let key = PublisherKey::generate("acme");
    let pkg = key.sign(Package::build(MANIFEST, FAKE_COMPONENT));
    let bytes = pkg.to_bytes();
    // Deterministic: the same inputs give the same bytes.
    assert_eq!(bytes, Package::from_bytes(&bytes).unwrap().to_bytes());
    let read = Package::from_bytes(&bytes).unwrap();
    let verified = read.verify(&trusting(&key)).unwrap();
    assert_eq!(verified.manifest().id, "flat-fee");
    assert_eq!(verified.publisher(), "acme");
    assert_eq!(verified.key_id(), key.key_id());
    assert_eq!(verified.key_id().len(), 16);
    let sig = read.signature().unwrap();
    assert_eq!(sig.algorithm, "Ed25519");
    assert_eq!(
        sig.component_sha256,
        liutong_plugin_runtime::package::sha256_hex(FAKE_COMPONENT)
    );
    // signature.json uses the documented camelCase names.
    let json = serde_json::to_value(sig).unwrap();
    for k in [
        "publisher",
        "keyId",
        "algorithm",
        "componentSha256",
        "manifestSha256",
        "signature",
    ] {
        assert!(json.get(k).is_some(), "{k}");
    }
}

#[test]
fn real_package_loads() {
    let (manifest, wasm) = common::guest("billing-flat-fee");
    let key = PublisherKey::generate("acme");
    let bytes = key.sign(Package::build(manifest, wasm)).to_bytes();
    let verified = Package::from_bytes(&bytes)
        .unwrap()
        .verify(&trusting(&key))
        .unwrap();
    let plugin = common::runtime().load(&verified, &Grants::none()).unwrap();
    assert_eq!(plugin.id(), "flat-fee");
    assert_eq!(plugin.component_sha256(), verified.component_sha256());
}

#[test]
fn unsigned_is_refused() {
    let bytes = Package::build(MANIFEST, FAKE_COMPONENT).to_bytes();
    let pkg = Package::from_bytes(&bytes).unwrap();
    let key = PublisherKey::generate("acme");
    assert_eq!(
        pkg.verify(&trusting(&key)).unwrap_err(),
        PackageError::Unsigned
    );
}

#[test]
fn untrusted_key_is_refused() {
    let key = PublisherKey::generate("acme");
    let other = PublisherKey::generate("acme");
    let pkg = key.sign(Package::build(MANIFEST, FAKE_COMPONENT));
    let err = pkg.verify(&trusting(&other)).unwrap_err();
    assert_eq!(
        err,
        PackageError::UntrustedPublisher {
            key_id: key.key_id(),
            publisher: "acme".into()
        }
    );
    assert!(err.to_string().contains(&key.key_id()), "{err}");
    // A trusted key claimed by another publisher name is refused too.
    let pkg = Package::build(MANIFEST, FAKE_COMPONENT).sign("mallory", &key.key);
    assert!(matches!(
        pkg.verify(&trusting(&key)),
        Err(PackageError::UntrustedPublisher { .. })
    ));
}

#[test]
fn tampering_is_detected() {
    let key = PublisherKey::generate("acme");
    let trust = trusting(&key);
    let pkg = key.sign(Package::build(MANIFEST, FAKE_COMPONENT));

    let mut component = FAKE_COMPONENT.to_vec();
    component.push(0);
    let tampered =
        Package::from_bytes(&pkg.clone().with_component_for_testing(component).to_bytes()).unwrap();
    assert_eq!(
        tampered.verify(&trust).unwrap_err(),
        PackageError::Tampered {
            what: TamperedPart::Component
        }
    );

    let manifest = MANIFEST.replace("fuel = 50_000_000", "fuel = 900_000_000");
    let tampered = pkg.clone().with_manifest_for_testing(manifest.into_bytes());
    assert_eq!(
        tampered.verify(&trust).unwrap_err(),
        PackageError::Tampered {
            what: TamperedPart::Manifest
        }
    );

    // A signature by another key presented under the trusted key id.
    let other = PublisherKey::generate("acme");
    let resigned = Package::build(MANIFEST, FAKE_COMPONENT).sign("acme", &other.key);
    let mut sig = serde_json::to_value(resigned.signature().unwrap()).unwrap();
    sig["keyId"] = key.key_id().into();
    let bytes = rebuild_with_signature(MANIFEST.as_bytes(), FAKE_COMPONENT, &sig);
    assert_eq!(
        Package::from_bytes(&bytes)
            .unwrap()
            .verify(&trust)
            .unwrap_err(),
        PackageError::BadSignature
    );
}

/// A tar with the given files (bypassing the builder, to forge packages).
fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, kind) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_path(name).unwrap();
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn rebuild_with_signature(manifest: &[u8], component: &[u8], sig: &serde_json::Value) -> Vec<u8> {
    let sig = serde_json::to_vec(sig).unwrap();
    tar_of(&[
        ("plugin.toml", manifest, tar::EntryType::Regular),
        ("plugin.wasm", component, tar::EntryType::Regular),
        ("signature.json", &sig, tar::EntryType::Regular),
    ])
}

#[test]
fn malformed_archives_are_refused() {
    let key = PublisherKey::generate("acme");
    let good = key.sign(Package::build(MANIFEST, FAKE_COMPONENT));
    let sig = serde_json::to_vec(good.signature().unwrap()).unwrap();
    let m = MANIFEST.as_bytes();
    let r = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "wrong order",
            tar_of(&[
                ("plugin.wasm", FAKE_COMPONENT, r),
                ("plugin.toml", m, r),
                ("signature.json", &sig, r),
            ]),
        ),
        (
            "extra entry",
            tar_of(&[
                ("plugin.toml", m, r),
                ("plugin.wasm", FAKE_COMPONENT, r),
                ("signature.json", &sig, r),
                ("README", b"hi", r),
            ]),
        ),
        (
            "duplicate",
            tar_of(&[
                ("plugin.toml", m, r),
                ("plugin.toml", m, r),
                ("signature.json", &sig, r),
            ]),
        ),
        (
            "symlink",
            tar_of(&[
                ("plugin.toml", b"", tar::EntryType::Symlink),
                ("plugin.wasm", FAKE_COMPONENT, r),
                ("signature.json", &sig, r),
            ]),
        ),
        (
            "directory",
            tar_of(&[("plugin.toml", b"", tar::EntryType::Directory)]),
        ),
        (
            "oversized manifest",
            tar_of(&[
                ("plugin.toml", &vec![b'#'; 64 * 1024 + 1], r),
                ("plugin.wasm", FAKE_COMPONENT, r),
            ]),
        ),
        ("manifest only", tar_of(&[("plugin.toml", m, r)])),
        ("not a tar", b"hello world".to_vec()),
        (
            "bad signature.json",
            tar_of(&[
                ("plugin.toml", m, r),
                ("plugin.wasm", FAKE_COMPONENT, r),
                ("signature.json", b"{}", r),
            ]),
        ),
    ];
    for (name, bytes) in cases {
        match Package::from_bytes(&bytes) {
            Err(PackageError::Malformed(msg)) => assert!(!msg.is_empty(), "{name}"),
            other => panic!("{name}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn core_module_is_refused() {
    let key = PublisherKey::generate("acme");
    let pkg = key.sign(Package::build(MANIFEST, CORE_MODULE));
    assert_eq!(
        pkg.verify(&trusting(&key)).unwrap_err(),
        PackageError::NotAComponent
    );
    let pkg = key.sign(Package::build(MANIFEST, b"MZ not wasm".to_vec()));
    assert_eq!(
        pkg.verify(&trusting(&key)).unwrap_err(),
        PackageError::NotAComponent
    );
}

#[test]
fn invalid_manifests_name_their_field() {
    let key = PublisherKey::generate("acme");
    let trust = trusting(&key);
    let cases: Vec<(String, &str)> = vec![
        (
            MANIFEST.replace("id = \"flat-fee\"", "id = \"Flat_Fee\""),
            "id",
        ),
        (
            MANIFEST.replace("version = \"0.1.0\"", "version = \"1.0\""),
            "version",
        ),
        (
            MANIFEST.replace("kind = \"billing\"", "kind = \"pricing\""),
            "kind",
        ),
        (
            MANIFEST.replace("wit = \"0.1.0\"", "wit = \"0.9.0\""),
            "wit",
        ),
        (MANIFEST.replace("wit = \"0.1.0\"", "wit = \"zero\""), "wit"),
        (
            MANIFEST.replace(
                "description = \"The list price plus a platform fee\"",
                "description = \"  \"",
            ),
            "description",
        ),
        (
            MANIFEST.replace("fuel = 50_000_000", "fuel = 0"),
            "limits.fuel",
        ),
        (
            MANIFEST.replace("memory_mb = 16", "memory_mb = 0"),
            "limits.memory_mb",
        ),
        (
            MANIFEST.replace("memory_mb = 16", "memory_mb = 9999"),
            "limits.memory_mb",
        ),
        (
            MANIFEST.replace("timeout_ms = 200", "timeout_ms = 0"),
            "limits.timeout_ms",
        ),
        (
            MANIFEST.replace("timeout_ms = 200", "timout_ms = 200"),
            "timout_ms",
        ),
        (MANIFEST.replace("id = \"flat-fee\"\n", ""), "id"),
        (
            format!("{MANIFEST}\n[capabilities]\nhttp = [\"api.openai.com:443\"]\n"),
            "capabilities.http",
        ),
        (
            format!("{MANIFEST}\n[capabilities]\nsecrets = [\"k\"]\n"),
            "capabilities.secrets",
        ),
        (
            MANIFEST.replace("kind = \"billing\"", "kind = \"adapter\"")
                + "\n[capabilities]\nhttp = [\"ok.example:443\", \"https://bad\"]\n",
            "capabilities.http[1]",
        ),
        (
            MANIFEST.replace("kind = \"billing\"", "kind = \"adapter\"")
                + "\n[capabilities]\nsecrets = [\"api key\"]\n",
            "capabilities.secrets[0]",
        ),
    ];
    for (manifest, field) in cases {
        let pkg = key.sign(Package::build(manifest.clone(), FAKE_COMPONENT));
        match pkg.verify(&trust) {
            Err(PackageError::InvalidManifest { field: f, message }) => {
                assert_eq!(f, field, "{manifest}\n{message}");
                assert!(!message.is_empty());
            }
            other => panic!("{field}: expected InvalidManifest, got {other:?}"),
        }
    }
}

#[test]
fn keys_and_trust_store_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let key = PublisherKey::generate("acme");
    let secret = dir.path().join("acme.key");
    key.save(&secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Refuses to overwrite.
    assert!(key.save(&secret).is_err());
    let loaded = PublisherKey::load(&secret).unwrap();
    assert_eq!(loaded.key_id(), key.key_id());
    assert_eq!(loaded.publisher, "acme");

    let trust_dir = dir.path().join("trusted");
    std::fs::create_dir(&trust_dir).unwrap();
    std::fs::copy(
        PublisherKey::public_path(&secret),
        trust_dir.join("acme.pub"),
    )
    .unwrap();
    let store = TrustStore::load(&trust_dir).unwrap();
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.list()[0].key_id, key.key_id());
    let pkg = loaded.sign(Package::build(MANIFEST, FAKE_COMPONENT));
    pkg.verify(&store).unwrap();

    // A .pub whose keyId does not belong to its key is an error, not skipped.
    let mut info = key.public();
    info.key_id = "0000000000000000".into();
    std::fs::write(trust_dir.join("bad.pub"), info.to_json()).unwrap();
    assert!(TrustStore::load(&trust_dir).is_err());

    let mut store = TrustStore::new();
    store.trust(&key.public().to_json()).unwrap();
    assert!(store.trust("{\"publisher\":\"x\"}").is_err());
}
