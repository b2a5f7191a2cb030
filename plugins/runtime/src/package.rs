//! Signed plugin packages (`.ltpkg`) and publisher keys.
//!
//! A package is an uncompressed tar holding exactly `plugin.toml`, `plugin.wasm` and
//! `signature.json`, in that order. The publisher signs, with Ed25519,
//! `b"liutong-plugin-package-v1\n" + sha256_hex(plugin.wasm) + "\n" + sha256_hex(plugin.toml) + "\n"`,
//! so the signature covers both files and nothing the tar format adds (mtimes, modes, padding).
//! The reader is strict — any other entry, a duplicate, a link or an oversized file is refused —
//! because every byte accepted here ends up executed or trusted.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use ed25519_dalek::SigningKey;

use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// Largest accepted `plugin.wasm`.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;
/// Largest accepted `signature.json`.
pub const MAX_SIGNATURE_BYTES: usize = 4 * 1024;
/// Domain separation prefix of the signed message.
pub const SIGNING_CONTEXT: &[u8] = b"liutong-plugin-package-v1\n";

const MANIFEST_NAME: &str = "plugin.toml";
const COMPONENT_NAME: &str = "plugin.wasm";
const SIGNATURE_NAME: &str = "signature.json";

/// Which signed file does not match its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperedPart {
    Component,
    Manifest,
}

impl std::fmt::Display for TamperedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TamperedPart::Component => "component (plugin.wasm)",
            TamperedPart::Manifest => "manifest (plugin.toml)",
        })
    }
}

/// Why a package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("the plugin package is not signed (no signature.json)")]
    Unsigned,
    #[error(
        "the plugin package is signed by {publisher:?} with key {key_id}, which is not in the trust store"
    )]
    UntrustedPublisher { key_id: String, publisher: String },
    #[error(
        "the plugin package was modified after signing: its {what} does not match the signed hash"
    )]
    Tampered { what: TamperedPart },
    #[error("the plugin package's signature is not valid")]
    BadSignature,
    #[error("the plugin package's plugin.toml is invalid: `{field}`: {message}")]
    InvalidManifest { field: String, message: String },
    #[error(
        "plugin.wasm is not a WebAssembly component (a core module or another file); build it for wasm32-wasip2"
    )]
    NotAComponent,
    #[error("malformed plugin package: {0}")]
    Malformed(String),
}

/// Errors of publisher keys and trust stores.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Malformed { what: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The key id of a public key: the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

fn signed_message(component_sha256: &str, manifest_sha256: &str) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    m.extend_from_slice(component_sha256.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(manifest_sha256.as_bytes());
    m.push(b'\n');
    m
}

/// `signature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageSignature {
    pub publisher: String,
    pub key_id: String,
    pub algorithm: String,
    pub component_sha256: String,
    pub manifest_sha256: String,
    /// Base64 (standard alphabet, padded) of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// A package before signing: the manifest and the component.
#[derive(Debug, Clone)]
pub struct UnsignedPackage {
    manifest: Vec<u8>,
    component: Vec<u8>,
}

impl UnsignedPackage {
    /// Sign as `publisher` with `key`.
    pub fn sign(self, publisher: &str, key: &SigningKey) -> Package {
        let component_sha256 = sha256_hex(&self.component);
        let manifest_sha256 = sha256_hex(&self.manifest);
        let sig = key.sign(&signed_message(&component_sha256, &manifest_sha256));
        Package {
            signature: Some(PackageSignature {
                publisher: publisher.to_string(),
                key_id: key_id(&key.verifying_key()),
                algorithm: "Ed25519".into(),
                component_sha256,
                manifest_sha256,
                signature: BASE64.encode(sig.to_bytes()),
            }),
            manifest: self.manifest,
            component: self.component,
        }
    }

    /// The tar of an unsigned package (`plugin.toml`, `plugin.wasm`); every host refuses it,
    /// it exists for tooling and tests.
    pub fn to_bytes(&self) -> Vec<u8> {
        Package {
            manifest: self.manifest.clone(),
            component: self.component.clone(),
            signature: None,
        }
        .to_bytes()
    }
}

/// A package as read from a file: not yet verified.
#[derive(Debug, Clone)]
pub struct Package {
    manifest: Vec<u8>,
    component: Vec<u8>,
    signature: Option<PackageSignature>,
}

/// A package whose signature, hashes, manifest and component format have been checked.
/// Only this type can be loaded by [`crate::Runtime::load`].
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    pub(crate) manifest: Manifest,
    pub(crate) manifest_bytes: Arc<[u8]>,
    pub(crate) component: Arc<[u8]>,
    pub(crate) component_sha256: String,
    pub(crate) publisher: String,
    pub(crate) key_id: String,
}

impl VerifiedPackage {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }
    pub fn component(&self) -> &[u8] {
        &self.component
    }
    pub fn component_sha256(&self) -> &str {
        &self.component_sha256
    }
    /// The publisher name as recorded in the trust store.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Whether `bytes` start with the header of a WebAssembly component (as opposed to a core
/// module, whose version/layer field is `01 00 00 00`).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

impl Package {
    /// Start a package from the bytes of `plugin.toml` and `plugin.wasm`. Nothing is checked
    /// here: [`Package::verify`] checks everything.
    pub fn build(manifest: impl Into<Vec<u8>>, component: impl Into<Vec<u8>>) -> UnsignedPackage {
        UnsignedPackage {
            manifest: manifest.into(),
            component: component.into(),
        }
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
    }
    pub fn component_bytes(&self) -> &[u8] {
        &self.component
    }
    pub fn signature(&self) -> Option<&PackageSignature> {
        self.signature.as_ref()
    }

    /// Replace the component, keeping the signature (for tests of tamper detection).
    #[cfg(feature = "testing")]
    pub fn with_component_for_testing(mut self, component: Vec<u8>) -> Self {
        self.component = component;
        self
    }

    /// Replace the manifest, keeping the signature (for tests of tamper detection).
    #[cfg(feature = "testing")]
    pub fn with_manifest_for_testing(mut self, manifest: Vec<u8>) -> Self {
        self.manifest = manifest;
        self
    }

    /// The `.ltpkg` bytes: a deterministic ustar archive (mtime 0, mode 0644).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut entries: Vec<(&str, Vec<u8>)> = vec![
            (MANIFEST_NAME, self.manifest.clone()),
            (COMPONENT_NAME, self.component.clone()),
        ];
        if let Some(sig) = &self.signature {
            // Serializing a struct of strings cannot fail.
            let json = serde_json::to_vec_pretty(sig).unwrap_or_default();
            entries.push((SIGNATURE_NAME, json));
        }
        for (name, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            // Names are short ASCII constants: set_path cannot fail.
            let _ = header.set_path(name);
            header.set_cksum();
            // Writing to a Vec cannot fail.
            let _ = builder.append(&header, data.as_slice());
        }
        builder.into_inner().unwrap_or_default()
    }

    /// Read a `.ltpkg`. Refuses anything but the expected regular files, in order, within
    /// their size caps. A package with only `plugin.toml` and `plugin.wasm` is read (so that
    /// [`Package::verify`] can say it is unsigned).
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, PackageError> {
        let malformed = |m: String| PackageError::Malformed(m);
        let mut archive = tar::Archive::new(bytes);
        let entries = archive
            .entries()
            .map_err(|e| malformed(format!("not a tar archive: {e}")))?;
        let expected = [
            (MANIFEST_NAME, MAX_MANIFEST_BYTES),
            (COMPONENT_NAME, MAX_COMPONENT_BYTES),
            (SIGNATURE_NAME, MAX_SIGNATURE_BYTES),
        ];
        let mut files: Vec<Vec<u8>> = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| malformed(format!("unreadable tar entry: {e}")))?;
            let index = files.len();
            let path = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&path).into_owned();
            let Some((want, cap)) = expected.get(index) else {
                return Err(malformed(format!(
                    "unexpected entry {name:?}: a package holds only plugin.toml, plugin.wasm and signature.json"
                )));
            };
            if name != *want {
                return Err(malformed(if expected.iter().any(|(n, _)| *n == name) {
                    format!("entry {name:?} is out of order or duplicated (expected {want:?})")
                } else {
                    format!("unexpected entry {name:?} (expected {want:?})")
                }));
            }
            let kind = entry.header().entry_type();
            if kind != tar::EntryType::Regular && kind != tar::EntryType::Continuous {
                return Err(malformed(format!(
                    "entry {name:?} is not a regular file (links and other entry types are refused)"
                )));
            }
            let size = entry
                .header()
                .size()
                .map_err(|e| malformed(format!("entry {name:?}: bad size: {e}")))?;
            if size > *cap as u64 {
                return Err(malformed(format!(
                    "entry {name:?} is {size} bytes, more than the {cap} allowed"
                )));
            }
            let mut data = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(*cap as u64 + 1)
                .read_to_end(&mut data)
                .map_err(|e| malformed(format!("entry {name:?}: {e}")))?;
            if data.len() as u64 != size {
                return Err(malformed(format!("entry {name:?} is truncated")));
            }
            files.push(data);
        }
        let mut files = files.into_iter();
        let (Some(manifest), Some(component)) = (files.next(), files.next()) else {
            return Err(malformed(
                "a package must hold plugin.toml, plugin.wasm and signature.json".into(),
            ));
        };
        let signature = match files.next() {
            None => None,
            Some(json) => Some(
                serde_json::from_slice::<PackageSignature>(&json)
                    .map_err(|e| malformed(format!("signature.json: {e}")))?,
            ),
        };
        Ok(Package {
            manifest,
            component,
            signature,
        })
    }

    /// Check the package against the trusted publisher keys.
    ///
    /// Order: signature present, hashes, trusted key, signature, manifest, component format
    /// — so an attacker-controlled manifest is never parsed before the signature is checked.
    pub fn verify(&self, trust: &TrustStore) -> Result<VerifiedPackage, PackageError> {
        let sig = self.signature.as_ref().ok_or(PackageError::Unsigned)?;
        if sig.algorithm != "Ed25519" {
            return Err(PackageError::Malformed(format!(
                "signature.json: unsupported algorithm {:?} (expected \"Ed25519\")",
                sig.algorithm
            )));
        }
        let component_sha256 = sha256_hex(&self.component);
        let manifest_sha256 = sha256_hex(&self.manifest);
        if !sig.component_sha256.eq_ignore_ascii_case(&component_sha256) {
            return Err(PackageError::Tampered {
                what: TamperedPart::Component,
            });
        }
        if !sig.manifest_sha256.eq_ignore_ascii_case(&manifest_sha256) {
            return Err(PackageError::Tampered {
                what: TamperedPart::Manifest,
            });
        }
        let trusted = trust
            .get(&sig.key_id)
            .ok_or_else(|| PackageError::UntrustedPublisher {
                key_id: sig.key_id.clone(),
                publisher: sig.publisher.clone(),
            })?;
        if trusted.info.publisher != sig.publisher {
            // The key is trusted for another publisher name: the claim is false.
            return Err(PackageError::UntrustedPublisher {
                key_id: sig.key_id.clone(),
                publisher: sig.publisher.clone(),
            });
        }
        let raw = BASE64
            .decode(sig.signature.trim())
            .map_err(|_| PackageError::BadSignature)?;
        let raw: [u8; 64] = raw.try_into().map_err(|_| PackageError::BadSignature)?;
        trusted
            .key
            .verify_strict(
                &signed_message(&component_sha256, &manifest_sha256),
                &Signature::from_bytes(&raw),
            )
            .map_err(|_| PackageError::BadSignature)?;
        let manifest =
            Manifest::parse(&self.manifest).map_err(|e| PackageError::InvalidManifest {
                field: e.field,
                message: e.message,
            })?;
        if !is_component(&self.component) {
            return Err(PackageError::NotAComponent);
        }
        Ok(VerifiedPackage {
            manifest,
            manifest_bytes: self.manifest.clone().into(),
            component: self.component.clone().into(),
            component_sha256,
            publisher: trusted.info.publisher.clone(),
            key_id: sig.key_id.clone(),
        })
    }
}

/// The `.pub` file of a publisher key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicKeyInfo {
    pub publisher: String,
    pub key_id: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
}

impl PublicKeyInfo {
    /// Parse `.pub` JSON and check that the key id belongs to the key.
    pub fn parse(json: &str) -> Result<(PublicKeyInfo, VerifyingKey), KeyError> {
        let malformed = |m: String| KeyError::Malformed {
            what: "public key".into(),
            message: m,
        };
        let info: PublicKeyInfo =
            serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
        if info.publisher.trim().is_empty() {
            return Err(malformed("empty publisher name".into()));
        }
        let raw = BASE64
            .decode(info.public_key.trim())
            .map_err(|e| malformed(format!("publicKey is not base64: {e}")))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| malformed("publicKey is not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|e| malformed(format!("publicKey is not an Ed25519 key: {e}")))?;
        let id = key_id(&key);
        if info.key_id != id {
            return Err(malformed(format!(
                "keyId {} does not belong to this key (its id is {id})",
                info.key_id
            )));
        }
        Ok((info, key))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A publisher's signing key.
#[derive(Debug, Clone)]
pub struct PublisherKey {
    pub publisher: String,
    pub key: SigningKey,
}

impl PublisherKey {
    /// A new random key from the OS generator.
    pub fn generate(publisher: &str) -> PublisherKey {
        let key = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
        PublisherKey {
            publisher: publisher.to_string(),
            key,
        }
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    pub fn public(&self) -> PublicKeyInfo {
        PublicKeyInfo {
            publisher: self.publisher.clone(),
            key_id: self.key_id(),
            public_key: BASE64.encode(self.key.verifying_key().as_bytes()),
        }
    }

    /// Sign a package as this publisher.
    pub fn sign(&self, package: UnsignedPackage) -> Package {
        package.sign(&self.publisher, &self.key)
    }

    /// The `.pub` path beside a secret key file: `<path>.pub`.
    pub fn public_path(secret_path: &Path) -> PathBuf {
        let mut s = secret_path.as_os_str().to_owned();
        s.push(".pub");
        PathBuf::from(s)
    }

    /// Write the secret (base64 of the 32 bytes, mode 0600, refusing to overwrite) and
    /// `<path>.pub` (JSON [`PublicKeyInfo`]).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_err(path))?;
        file.write_all(BASE64.encode(self.key.to_bytes()).as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(io_err(path))?;
        let pub_path = Self::public_path(path);
        fs::write(&pub_path, self.public().to_json() + "\n").map_err(io_err(&pub_path))?;
        Ok(())
    }

    /// Read a key written by [`PublisherKey::save`] (the publisher name comes from `.pub`).
    pub fn load(path: &Path) -> Result<PublisherKey, KeyError> {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let malformed = |m: &str| KeyError::Malformed {
            what: path.display().to_string(),
            message: m.to_string(),
        };
        let raw = BASE64
            .decode(text.trim())
            .map_err(|_| malformed("not base64"))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| malformed("not a 32-byte Ed25519 secret key"))?;
        let key = SigningKey::from_bytes(&raw);
        let pub_path = Self::public_path(path);
        let pub_json = fs::read_to_string(&pub_path).map_err(io_err(&pub_path))?;
        let (info, public) = PublicKeyInfo::parse(&pub_json)?;
        if public != key.verifying_key() {
            return Err(malformed("the .pub file beside it holds another key"));
        }
        Ok(PublisherKey {
            publisher: info.publisher,
            key,
        })
    }
}

#[derive(Debug, Clone)]
struct TrustedKey {
    info: PublicKeyInfo,
    key: VerifyingKey,
}

/// The publisher keys this host trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<String, TrustedKey>,
}

impl TrustStore {
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Every `*.pub` file of `dir` (a missing directory is an empty store). A malformed file is
    /// an error rather than skipped, so a broken trust store is noticed.
    pub fn load(dir: &Path) -> Result<TrustStore, KeyError> {
        let mut store = TrustStore::new();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(io_err(dir)(e)),
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_err(dir))?.path();
            if path.extension().is_some_and(|e| e == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let json = fs::read_to_string(&path).map_err(io_err(&path))?;
            store.trust(&json).map_err(|e| match e {
                KeyError::Malformed { message, .. } => KeyError::Malformed {
                    what: path.display().to_string(),
                    message,
                },
                other => other,
            })?;
        }
        Ok(store)
    }

    pub fn from_keys(
        keys: impl IntoIterator<Item = PublicKeyInfo>,
    ) -> Result<TrustStore, KeyError> {
        let mut store = TrustStore::new();
        for info in keys {
            store.trust(&info.to_json())?;
        }
        Ok(store)
    }

    /// Trust the key of a `.pub` JSON document.
    pub fn trust(&mut self, pubkey_json: &str) -> Result<PublicKeyInfo, KeyError> {
        let (info, key) = PublicKeyInfo::parse(pubkey_json)?;
        self.keys.insert(
            info.key_id.clone(),
            TrustedKey {
                info: info.clone(),
                key,
            },
        );
        Ok(info)
    }

    pub fn list(&self) -> Vec<&PublicKeyInfo> {
        self.keys.values().map(|k| &k.info).collect()
    }

    fn get(&self, key_id: &str) -> Option<&TrustedKey> {
        self.keys.get(key_id)
    }
}
