//! The operator's keys: Ed25519 signing keys and age X25519 escrow identities.
//!
//! On disk (`keys_dir`, default `./data/keys`), every file readable by its owner only:
//!
//! ```text
//! keys/                       0700
//!   current.json              {"signing": "<keyId>", "escrow": "<escrowId>"}
//!   signing/<keyId>.pem       PKCS#8 PEM Ed25519 private key (readable by `openssl pkey`)
//!   escrow/<escrowId>.key     age identity file, as `age-keygen` writes it
//! ```
//!
//! A key id is derived from the public key (`ed25519-` + the first 16 hex digits of the SHA-256
//! of the 32 raw public-key bytes), so anyone can recompute it from `GET /v1/keys`. Rotation adds
//! a new key of each kind and makes it current; old keys stay, so old signatures keep verifying
//! and delivery keys sealed to an old escrow recipient stay openable.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jcs::canonical;

pub const SIGNATURE_ALG: &str = "Ed25519";
/// The document field naming the key that signed it.
pub const KEY_ID_FIELD: &str = "keyId";

const CURRENT_FILE: &str = "current.json";
const SIGNING_DIR: &str = "signing";
const ESCROW_DIR: &str = "escrow";

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keys already exist in {}; use `liutong keys rotate` to add new ones", .0.display())]
    AlreadyInitialized(PathBuf),
    #[error("no keys in {}; run `liutong keys init` (`serve` creates them on first start)", .0.display())]
    NotInitialized(PathBuf),
    #[error("{} is accessible by other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("random number generator failed: {0}")]
    Rng(String),
}

/// Why a signed document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the document is not a JSON object")]
    NotAnObject,
    #[error("the document has no '{0}' string")]
    MissingField(String),
    #[error("no signing key '{0}' is known to this server")]
    UnknownKey(String),
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error("the signature does not match the document")]
    Invalid,
    #[error("the document cannot be canonicalised: {0}")]
    Canonical(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyRingError + '_ {
    move |source| KeyRingError::Io {
        path: path.to_owned(),
        source,
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `ed25519-` + 16 hex digits of SHA-256(public key).
pub fn signing_key_id(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    format!("ed25519-{}", &hex::encode(digest)[..16])
}

/// `x25519-` + 16 hex digits of SHA-256 of the `age1…` recipient text.
pub fn escrow_id(recipient: &str) -> String {
    let digest = Sha256::digest(recipient.as_bytes());
    format!("x25519-{}", &hex::encode(digest)[..16])
}

struct SigningEntry {
    key_id: String,
    key: SigningKey,
}

struct EscrowEntry {
    id: String,
    identity: age::x25519::Identity,
    recipient: String,
}

/// A public signing key as `GET /v1/keys` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublicSigningKey {
    #[serde(rename = "keyId")]
    pub key_id: String,
    pub alg: &'static str,
    /// Base64 of the 32 raw public-key bytes.
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub current: bool,
}

#[derive(Serialize, Deserialize)]
struct Current {
    signing: String,
    escrow: String,
}

/// The operator's keys in memory.
pub struct KeyRing {
    dir: Option<PathBuf>,
    signing: Vec<SigningEntry>,
    current_signing: usize,
    escrow: Vec<EscrowEntry>,
    current_escrow: usize,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("current_signing", &self.current_key_id())
            .field("escrow_recipient", &self.escrow_recipient())
            .finish_non_exhaustive()
    }
}

fn new_signing_key() -> Result<SigningKey, KeyRingError> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut()).map_err(|e| KeyRingError::Rng(e.to_string()))?;
    Ok(SigningKey::from_bytes(&secret))
}

fn new_escrow() -> EscrowEntry {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    EscrowEntry {
        id: escrow_id(&recipient),
        identity,
        recipient,
    }
}

fn new_signing() -> Result<SigningEntry, KeyRingError> {
    let key = new_signing_key()?;
    Ok(SigningEntry {
        key_id: signing_key_id(&key.verifying_key()),
        key,
    })
}

impl KeyRing {
    /// A ring that lives only in memory (unit and property tests).
    pub fn ephemeral() -> Result<KeyRing, KeyRingError> {
        Ok(KeyRing {
            dir: None,
            signing: vec![new_signing()?],
            current_signing: 0,
            escrow: vec![new_escrow()],
            current_escrow: 0,
        })
    }

    /// Creates the first keys in `dir`; refuses if keys exist there already.
    pub fn init(dir: &Path) -> Result<KeyRing, KeyRingError> {
        if dir.join(CURRENT_FILE).exists() {
            return Err(KeyRingError::AlreadyInitialized(dir.to_owned()));
        }
        create_private_dir(dir)?;
        let signing = new_signing()?;
        let escrow = new_escrow();
        write_signing(dir, &signing)?;
        write_escrow(dir, &escrow)?;
        let current = Current {
            signing: signing.key_id.clone(),
            escrow: escrow.id.clone(),
        };
        // Another process may be initialising the same directory: whoever links current.json
        // first wins, the other loads the winner's choice (its own key files stay, unused).
        match write_current(dir, &current, false) {
            Ok(()) => {}
            Err(KeyRingError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Err(KeyRingError::AlreadyInitialized(dir.to_owned()));
            }
            Err(e) => return Err(e),
        }
        KeyRing::load(dir)
    }

    /// Loads the keys in `dir`, creating them first if there are none (what `serve` does).
    /// Returns whether it created them.
    pub fn ensure(dir: &Path) -> Result<(KeyRing, bool), KeyRingError> {
        if dir.join(CURRENT_FILE).exists() {
            return Ok((KeyRing::load(dir)?, false));
        }
        match KeyRing::init(dir) {
            Ok(ring) => Ok((ring, true)),
            Err(KeyRingError::AlreadyInitialized(_)) => Ok((KeyRing::load(dir)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Adds a new signing key and a new escrow identity and makes them current.
    pub fn rotate(dir: &Path) -> Result<KeyRing, KeyRingError> {
        // Loading first proves the directory is a valid key ring before anything is added.
        KeyRing::load(dir)?;
        let signing = new_signing()?;
        let escrow = new_escrow();
        write_signing(dir, &signing)?;
        write_escrow(dir, &escrow)?;
        write_current(
            dir,
            &Current {
                signing: signing.key_id.clone(),
                escrow: escrow.id.clone(),
            },
            true,
        )?;
        KeyRing::load(dir)
    }

    pub fn load(dir: &Path) -> Result<KeyRing, KeyRingError> {
        let current_path = dir.join(CURRENT_FILE);
        if !current_path.exists() {
            return Err(KeyRingError::NotInitialized(dir.to_owned()));
        }
        check_private(dir, true)?;
        let current: Current =
            serde_json::from_slice(&read_private(&current_path)?).map_err(|e| {
                KeyRingError::Invalid {
                    path: current_path.clone(),
                    message: e.to_string(),
                }
            })?;

        let mut signing = Vec::new();
        for path in list_files(&dir.join(SIGNING_DIR), "pem")? {
            let text =
                String::from_utf8(read_private(&path)?).map_err(|_| invalid(&path, "not UTF-8"))?;
            let key = SigningKey::from_pkcs8_pem(&text)
                .map_err(|e| invalid(&path, &format!("not a PKCS#8 Ed25519 key: {e}")))?;
            let key_id = signing_key_id(&key.verifying_key());
            if path.file_stem().and_then(|s| s.to_str()) != Some(key_id.as_str()) {
                return Err(invalid(
                    &path,
                    &format!("holds key {key_id}, which does not match its file name"),
                ));
            }
            signing.push(SigningEntry { key_id, key });
        }
        let mut escrow = Vec::new();
        for path in list_files(&dir.join(ESCROW_DIR), "key")? {
            let text = zeroize::Zeroizing::new(
                String::from_utf8(read_private(&path)?).map_err(|_| invalid(&path, "not UTF-8"))?,
            );
            let identity = super::sealing::parse_identity_file(&text)
                .map_err(|e| invalid(&path, &e.to_string()))?;
            let recipient = identity.to_public().to_string();
            let id = escrow_id(&recipient);
            if path.file_stem().and_then(|s| s.to_str()) != Some(id.as_str()) {
                return Err(invalid(
                    &path,
                    &format!("holds identity {id}, which does not match its file name"),
                ));
            }
            escrow.push(EscrowEntry {
                id,
                identity,
                recipient,
            });
        }
        let current_signing = signing
            .iter()
            .position(|e| e.key_id == current.signing)
            .ok_or_else(|| {
                invalid(
                    &current_path,
                    &format!(
                        "names signing key {} but it is not in signing/",
                        current.signing
                    ),
                )
            })?;
        let current_escrow = escrow
            .iter()
            .position(|e| e.id == current.escrow)
            .ok_or_else(|| {
                invalid(
                    &current_path,
                    &format!(
                        "names escrow identity {} but it is not in escrow/",
                        current.escrow
                    ),
                )
            })?;
        Ok(KeyRing {
            dir: Some(dir.to_owned()),
            signing,
            current_signing,
            escrow,
            current_escrow,
        })
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn current_key_id(&self) -> &str {
        &self.signing[self.current_signing].key_id
    }

    /// Every signing key, current first, then the others by key id.
    pub fn public_signing_keys(&self) -> Vec<PublicSigningKey> {
        let mut keys: Vec<PublicSigningKey> = self
            .signing
            .iter()
            .enumerate()
            .map(|(i, e)| PublicSigningKey {
                key_id: e.key_id.clone(),
                alg: SIGNATURE_ALG,
                public_key: b64().encode(e.key.verifying_key().as_bytes()),
                current: i == self.current_signing,
            })
            .collect();
        keys.sort_by(|a, b| b.current.cmp(&a.current).then(a.key_id.cmp(&b.key_id)));
        keys
    }

    /// The `age1…` recipient providers seal their delivery keys to.
    pub fn escrow_recipient(&self) -> &str {
        &self.escrow[self.current_escrow].recipient
    }

    /// Every escrow identity, current and rotated out: a deposit sealed to any of them opens.
    pub fn escrow_identities(&self) -> impl Iterator<Item = &age::x25519::Identity> {
        self.escrow.iter().map(|e| &e.identity)
    }

    fn key(&self, key_id: &str) -> Option<&SigningKey> {
        self.signing
            .iter()
            .find(|e| e.key_id == key_id)
            .map(|e| &e.key)
    }

    /// Base64 Ed25519 signature of the canonical JSON of `value`, by the current key; returns
    /// the key id with it.
    pub fn sign_value<T: Serialize>(&self, value: &T) -> Result<(String, String), SignatureError> {
        let entry = &self.signing[self.current_signing];
        let bytes = canonical(value).map_err(|e| SignatureError::Canonical(e.to_string()))?;
        let signature = entry.key.sign(&bytes);
        Ok((entry.key_id.clone(), b64().encode(signature.to_bytes())))
    }

    /// Checks a base64 Ed25519 signature by `key_id` over the canonical JSON of `value`.
    pub fn verify_value<T: Serialize>(
        &self,
        key_id: &str,
        value: &T,
        signature_b64: &str,
    ) -> Result<(), SignatureError> {
        let key = self
            .key(key_id)
            .ok_or_else(|| SignatureError::UnknownKey(key_id.to_owned()))?;
        let raw = b64()
            .decode(signature_b64)
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_slice(&raw).map_err(|_| SignatureError::Malformed)?;
        let bytes = canonical(value).map_err(|e| SignatureError::Canonical(e.to_string()))?;
        key.verifying_key()
            .verify_strict(&bytes, &signature)
            .map_err(|_| SignatureError::Invalid)
    }

    /// Signs a document (any value that serialises to a JSON object): sets `keyId` to the
    /// current key, then puts into `field` the base64 Ed25519 signature over the canonical JSON
    /// of the document without `field`.
    pub fn sign<T: Serialize>(&self, doc: &T, field: &str) -> Result<Value, SignatureError> {
        let value =
            serde_json::to_value(doc).map_err(|e| SignatureError::Canonical(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(SignatureError::NotAnObject);
        };
        self.sign_document(map, field).map(Value::Object)
    }

    /// `sign` for a document that is a JSON object already.
    pub fn sign_document(
        &self,
        mut doc: Map<String, Value>,
        field: &str,
    ) -> Result<Map<String, Value>, SignatureError> {
        doc.remove(field);
        doc.insert(
            KEY_ID_FIELD.to_owned(),
            Value::String(self.current_key_id().to_owned()),
        );
        let doc = Value::Object(doc);
        let (_, signature) = self.sign_value(&doc)?;
        let Value::Object(mut doc) = doc else {
            return Err(SignatureError::NotAnObject);
        };
        doc.insert(field.to_owned(), Value::String(signature));
        Ok(doc)
    }

    /// Verifies a document signed by `sign_document`; returns the key id that signed it.
    pub fn verify_document(&self, doc: &Value, field: &str) -> Result<String, SignatureError> {
        let Value::Object(map) = doc else {
            return Err(SignatureError::NotAnObject);
        };
        let signature = map
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| SignatureError::MissingField(field.to_owned()))?;
        let key_id = map
            .get(KEY_ID_FIELD)
            .and_then(Value::as_str)
            .ok_or_else(|| SignatureError::MissingField(KEY_ID_FIELD.to_owned()))?;
        let mut unsigned = map.clone();
        unsigned.remove(field);
        self.verify_value(key_id, &Value::Object(unsigned), signature)?;
        Ok(key_id.to_owned())
    }
}

fn invalid(path: &Path, message: &str) -> KeyRingError {
    KeyRingError::Invalid {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyRingError> {
    for d in [dir.to_owned(), dir.join(SIGNING_DIR), dir.join(ESCROW_DIR)] {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&d).map_err(io_err(&d))?;
    }
    Ok(())
}

/// Refuses files and directories that other users can read or write: like ssh, a key others
/// can read is a key that may have leaked.
fn check_private(path: &Path, is_dir: bool) -> Result<(), KeyRingError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let mode = meta.permissions().mode() & 0o777;
        // A directory others may list is tolerable (names are public key ids); one they may
        // write to is not.
        let forbidden = if is_dir { 0o022 } else { 0o077 };
        if mode & forbidden != 0 {
            return Err(KeyRingError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, is_dir);
    Ok(())
}

fn read_private(path: &Path) -> Result<Vec<u8>, KeyRingError> {
    check_private(path, false)?;
    std::fs::read(path).map_err(io_err(path))
}

fn list_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, KeyRingError> {
    check_private(dir, true)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Writes a new file readable by its owner only, durably; never overwrites.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyRingError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), KeyRingError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn write_signing(dir: &Path, entry: &SigningEntry) -> Result<(), KeyRingError> {
    let path = dir.join(SIGNING_DIR).join(format!("{}.pem", entry.key_id));
    let pem = entry
        .key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| invalid(&path, &format!("cannot encode: {e}")))?;
    write_private(&path, pem.as_bytes())?;
    sync_dir(&dir.join(SIGNING_DIR))
}

fn write_escrow(dir: &Path, entry: &EscrowEntry) -> Result<(), KeyRingError> {
    let path = dir.join(ESCROW_DIR).join(format!("{}.key", entry.id));
    let text = super::sealing::identity_file_text(
        &entry.identity,
        &time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    write_private(&path, text.as_bytes())?;
    sync_dir(&dir.join(ESCROW_DIR))
}

/// Writes current.json through a temporary file: renamed over the old one when `replace`,
/// hard-linked (failing if one exists) when not.
fn write_current(dir: &Path, current: &Current, replace: bool) -> Result<(), KeyRingError> {
    let path = dir.join(CURRENT_FILE);
    let tmp = dir.join(format!(
        "{CURRENT_FILE}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let bytes = serde_json::to_vec_pretty(current).map_err(|e| invalid(&path, &e.to_string()))?;
    write_private(&tmp, &bytes)?;
    let result = if replace {
        std::fs::rename(&tmp, &path)
    } else {
        std::fs::hard_link(&tmp, &path)
    };
    let _ = std::fs::remove_file(&tmp);
    result.map_err(io_err(&path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_verify_and_tampering_is_caught() {
        let ring = KeyRing::ephemeral().expect("ring");
        let doc = json!({"b": "two", "a": 1, "nested": {"z": true, "y": null}});
        let Value::Object(map) = doc else {
            unreachable!()
        };
        let signed = ring.sign_document(map, "signature").expect("sign");
        let signed = Value::Object(signed);
        assert_eq!(signed["keyId"], ring.current_key_id());
        assert_eq!(
            ring.verify_document(&signed, "signature").as_deref(),
            Ok(ring.current_key_id())
        );

        let mut tampered = signed.clone();
        tampered["a"] = json!(2);
        assert_eq!(
            ring.verify_document(&tampered, "signature"),
            Err(SignatureError::Invalid)
        );
        let mut extra = signed.clone();
        extra["extra"] = json!("x");
        assert_eq!(
            ring.verify_document(&extra, "signature"),
            Err(SignatureError::Invalid)
        );
        let mut other_key = signed.clone();
        other_key["keyId"] = json!("ed25519-0000000000000000");
        assert!(matches!(
            ring.verify_document(&other_key, "signature"),
            Err(SignatureError::UnknownKey(_))
        ));
        let mut garbage = signed.clone();
        garbage["signature"] = json!("not base64!");
        assert_eq!(
            ring.verify_document(&garbage, "signature"),
            Err(SignatureError::Malformed)
        );
        // Another ring's signature does not verify here even under a forged key id.
        let other = KeyRing::ephemeral().expect("ring");
        let Value::Object(map) = json!({"a": 1}) else {
            unreachable!()
        };
        let mut foreign = Value::Object(other.sign_document(map, "signature").expect("sign"));
        foreign["keyId"] = json!(ring.current_key_id());
        assert_eq!(
            ring.verify_document(&foreign, "signature"),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn files_are_private_and_rotation_keeps_old_keys() {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path().join("keys");
        let (ring, created) = KeyRing::ensure(&dir).expect("init");
        assert!(created);
        let first_key = ring.current_key_id().to_owned();
        let first_escrow = ring.escrow_recipient().to_owned();
        assert!(first_escrow.starts_with("age1"));
        assert!(matches!(
            KeyRing::init(&dir),
            Err(KeyRingError::AlreadyInitialized(_))
        ));
        let (again, created) = KeyRing::ensure(&dir).expect("load");
        assert!(!created);
        assert_eq!(again.current_key_id(), first_key);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for sub in [SIGNING_DIR, ESCROW_DIR] {
                for f in std::fs::read_dir(dir.join(sub)).expect("list") {
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

        let Value::Object(map) = json!({"x": 1}) else {
            unreachable!()
        };
        let old_doc = Value::Object(ring.sign_document(map, "signature").expect("sign"));
        let rotated = KeyRing::rotate(&dir).expect("rotate");
        assert_ne!(rotated.current_key_id(), first_key);
        assert_ne!(rotated.escrow_recipient(), first_escrow);
        let keys = rotated.public_signing_keys();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].current && !keys[1].current);
        assert!(keys.iter().any(|k| k.key_id == first_key));
        assert_eq!(rotated.escrow_identities().count(), 2);
        assert_eq!(
            rotated.verify_document(&old_doc, "signature").as_deref(),
            Ok(first_key.as_str())
        );
        // The PEM file is what openssl reads: the public key in /v1/keys matches it.
        let pem_path = dir.join(SIGNING_DIR).join(format!("{first_key}.pem"));
        let pem = std::fs::read_to_string(pem_path).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path().join("keys");
        let ring = KeyRing::init(&dir).expect("init");
        let pem = dir
            .join(SIGNING_DIR)
            .join(format!("{}.pem", ring.current_key_id()));
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            KeyRing::load(&dir),
            Err(KeyRingError::Permissions { .. })
        ));
    }
}
