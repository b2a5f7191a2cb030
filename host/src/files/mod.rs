//! Where delivered data lives: uploaded files in a local directory or an S3-compatible bucket,
//! and http(s) `resource_url`s fetched at delivery time. Everything streams: no file is ever
//! held in memory whole, whatever its size.
//!
//! The files are what providers upload: already encrypted to their `public_key`. liutong never
//! sees plaintext data.

pub mod fetch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::{S3Config, StorageConfig};

/// A stream of file bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Read and write in chunks of this size: large enough for disk and network throughput (fewer
/// read calls, blocking-pool hand-offs and socket writes per byte than 256 KiB), small enough
/// that memory stays flat however many deliveries run.
pub const CHUNK: usize = 1024 * 1024;
/// What a delivery reads (and hands to the socket) at a time: 4 MiB sent 10 % faster than
/// 1 MiB or 8 MiB in the 5 GiB benchmark (fewer hand-offs to the blocking pool and wake-ups).
const READ_CHUNK: usize = 4 * CHUNK;
/// Chunks read ahead of the one being sent, each on the blocking pool.
const READ_AHEAD: usize = 2;
/// Read buffers a delivery keeps for reuse: a recycled buffer is already mapped and in the
/// cache, a fresh one page-faults its way in.
const SPARE_BUFFERS: usize = 3;
/// Local files whose bytes were last confirmed against their digest, remembered at most.
const CONFIRMED_FILES: usize = 100_000;
/// S3 multipart part size (S3's minimum is 5 MiB) and parts in flight per upload.
const S3_PART: usize = 8 * 1024 * 1024;
const S3_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("storage I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The client's upload stream failed (e.g. it disconnected).
    #[error("reading the upload failed: {0}")]
    Upload(std::io::Error),
    #[error("stored object {key} is missing")]
    Missing { key: String },
}

/// What was stored: the object's size, its SHA-256 (what documents and proofs name) and its
/// BLAKE3 (what delivery checks the stored bytes against: same assurance, over twice as fast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: String,
    pub blake3: String,
}

/// Both digests of a stream, computed in one pass.
pub struct Hashing {
    sha256: Sha256,
    blake3: blake3::Hasher,
    size: u64,
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing {
            sha256: Sha256::new(),
            blake3: blake3::Hasher::new(),
            size: 0,
        }
    }
}

impl Hashing {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake3.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn finish(self) -> Stored {
        Stored {
            size: self.size,
            sha256: hex::encode(self.sha256.finalize()),
            blake3: self.blake3.finalize().to_hex().to_string(),
        }
    }
}

/// The digest a delivery checks the stored bytes against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Files stored since the BLAKE3 digest was recorded.
    Blake3(String),
    /// Files stored before (no BLAKE3 on record).
    Sha256(String),
}

impl Expected {
    /// The BLAKE3 digest when there is one, else the SHA-256.
    pub fn best(sha256: &str, blake3: Option<&str>) -> Expected {
        match blake3 {
            Some(b) => Expected::Blake3(b.to_owned()),
            None => Expected::Sha256(sha256.to_owned()),
        }
    }
}

/// A running digest of the kind an [`Expected`] asks for.
enum Running {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl Running {
    fn for_expected(expected: &Expected) -> Running {
        match expected {
            Expected::Blake3(_) => Running::Blake3(Box::new(blake3::Hasher::new())),
            Expected::Sha256(_) => Running::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Blake3(h) => {
                h.update(bytes);
            }
            Running::Sha256(h) => h.update(bytes),
        }
    }

    fn matches(self, expected: &Expected) -> bool {
        match (self, expected) {
            (Running::Blake3(h), Expected::Blake3(hex)) => *h.finalize().to_hex() == **hex,
            (Running::Sha256(h), Expected::Sha256(hex)) => hex::encode(h.finalize()) == *hex,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub enum Files {
    Local(Arc<LocalDir>),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        bucket: String,
    },
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Files under `root/objects/<key>`, written through `root/tmp/` and renamed into place, so a
/// reader never sees a partial file.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// Hash every delivery, even of a file unchanged since its bytes were last confirmed.
    verify_every_delivery: bool,
    /// Per object key: how the file looked when its bytes were last confirmed to match the
    /// digest (hashed while uploading, or while delivering), and that digest.
    confirmed: Mutex<HashMap<String, (Stamp, Expected)>>,
}

/// What identifies one state of a file's content without reading it: its inode, size and
/// modification and change times. Any write, truncation or replacement through the
/// filesystem gives a new change time (`ctime`), which no system call lets a process set
/// back; only a write to the raw device, or a clock set backwards, could go unseen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Without inode numbers and change times there is nothing to trust: always hash.
    #[cfg(not(unix))]
    fn of(_: &std::fs::Metadata) -> Option<Stamp> {
        None
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file opened for reading and what `fstat` says of it, on the blocking pool.
pub(crate) async fn open_with_metadata(
    path: PathBuf,
) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        Ok((file, meta))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Runs file-system work on `path` on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io(path)(std::io::Error::other(e)))?
}

/// Creates an upload's temporary file, and `tmp/` the first time.
fn create_part(tmp: &Path) -> Result<std::fs::File, FilesError> {
    match std::fs::File::create(tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = tmp.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::File::create(tmp).map_err(io(tmp))
        }
        other => other.map_err(io(tmp)),
    }
}

/// Makes a written upload durable and moves it to `target`; returns its stamp, taken after the
/// rename (which moves the change time).
fn put_in_place(
    file: &std::fs::File,
    tmp: &Path,
    target: &Path,
) -> Result<Option<Stamp>, FilesError> {
    file.sync_all().map_err(io(tmp))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::rename(tmp, target).map_err(io(target))?;
    Ok(file.metadata().ok().as_ref().and_then(Stamp::of))
}

/// Object keys are liutong's own (`<resource id>-<upload id>`, `certifications/<id>/<document>`,
/// and `<resource id>/<upload id>` from versions before 2026-11-30); anything else is a bug.
fn check_key(key: &str) -> Result<(), FilesError> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(FilesError::Config(format!("invalid object key '{key}'")))
    }
}

impl Files {
    pub fn from_config(config: &StorageConfig) -> Result<Files, FilesError> {
        match &config.s3 {
            None => Ok(Files::Local(Arc::new(LocalDir {
                root: config.dir.clone(),
                verify_every_delivery: config.verify_every_delivery,
                confirmed: Mutex::new(HashMap::new()),
            }))),
            Some(s3) => Self::s3(s3),
        }
    }

    fn s3(c: &S3Config) -> Result<Files, FilesError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_allow_http(c.allow_http);
        if let Some(endpoint) = &c.endpoint {
            // Path-style requests: what S3-compatible servers expect at a custom endpoint.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &c.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &c.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &c.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| FilesError::Config(e.to_string()))?;
        Ok(Files::S3 {
            store: Arc::new(store),
            prefix: c.prefix.trim_matches('/').to_owned(),
            bucket: c.bucket.clone(),
        })
    }

    /// For logs: where files go.
    pub fn describe(&self) -> String {
        match self {
            Files::Local(dir) => format!("directory {}", dir.root.display()),
            Files::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    fn s3_path(prefix: &str, key: &str) -> object_store::path::Path {
        if prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{prefix}/{key}"))
        }
    }

    /// Stores a stream under `key`, computing its size and SHA-256 on the way. On any error
    /// nothing is left under `key`.
    pub async fn put_stream<S>(&self, key: &str, mut body: S) -> Result<Stored, FilesError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send,
    {
        check_key(key)?;
        let mut hasher = Hashing::default();
        // How the stored file looks once in place: its bytes are the ones just hashed.
        let mut stored_as = None;
        match self {
            Files::Local(dir) => {
                let tmp = dir
                    .root
                    .join("tmp")
                    .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
                let target = dir.object_path(key);
                // Three trips to the blocking pool per upload, whatever its size: create, the
                // buffered writes (one for a small file), then fsync, rename and stamp.
                let result: Result<Option<Stamp>, FilesError> = async {
                    let file = blocking(&tmp, {
                        let tmp = tmp.clone();
                        move || create_part(&tmp)
                    })
                    .await?;
                    let mut out =
                        tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(FilesError::Upload)?;
                        hasher.update(&chunk);
                        out.write_all(&chunk).await.map_err(io(&tmp))?;
                    }
                    out.flush().await.map_err(io(&tmp))?;
                    let file = out.into_inner().into_std().await;
                    blocking(&tmp, {
                        let tmp = tmp.clone();
                        move || put_in_place(&file, &tmp, &target)
                    })
                    .await
                }
                .await;
                if result.is_err() {
                    let _ = tokio::fs::remove_file(&tmp).await;
                }
                stored_as = result?.map(|stamp| (Arc::clone(dir), stamp));
            }
            Files::S3 { store, prefix, .. } => {
                let path = Self::s3_path(prefix, key);
                let mut out = object_store::buffered::BufWriter::with_capacity(
                    Arc::clone(store),
                    path,
                    S3_PART,
                )
                .with_max_concurrency(S3_PARTS_IN_FLIGHT);
                let result: Result<(), FilesError> = async {
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(FilesError::Upload)?;
                        hasher.update(&chunk);
                        out.put(chunk).await?;
                    }
                    out.shutdown().await.map_err(|e| FilesError::Io {
                        path: key.to_owned(),
                        source: e,
                    })?;
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = out.abort().await;
                    return Err(e);
                }
            }
        }
        let stored = hasher.finish();
        if let Some((dir, stamp)) = stored_as {
            dir.confirm(key, stamp, Expected::Blake3(stored.blake3.clone()));
        }
        Ok(stored)
    }

    /// Opens a stored object for streaming, checked against the size and digest recorded when
    /// it was stored (see [`verified`]). A local file whose bytes were already confirmed
    /// (hashed on upload or on an earlier delivery) and that has not changed since — same
    /// [`Stamp`] — is streamed without hashing it again, unless `verify_every_delivery`.
    pub async fn open_verified(
        &self,
        key: &str,
        expected_size: u64,
        expected: Expected,
    ) -> Result<ByteStream, FilesError> {
        check_key(key)?;
        let Files::Local(dir) = self else {
            let stream = self.open(key).await?;
            return Ok(verified(stream, expected_size, expected, None, None));
        };
        let (file, meta) = dir.open_file(key).await?;
        let stamp = Stamp::of(&meta);
        let unchanged = stamp.as_ref().is_some_and(|stamp| {
            stamp.size == expected_size && dir.is_confirmed(key, stamp, &expected)
        });
        let stream = read_chunks(file, meta.len());
        if unchanged && !dir.verify_every_delivery {
            return Ok(stream);
        }
        let on_intact: Option<Box<dyn FnOnce() + Send>> = stamp.map(|stamp| {
            let dir = Arc::clone(dir);
            let key = key.to_owned();
            let expected = expected.clone();
            Box::new(move || dir.confirm(&key, stamp, expected)) as Box<dyn FnOnce() + Send>
        });
        Ok(verified(stream, expected_size, expected, on_intact, None))
    }

    /// Opens a stored object for streaming.
    pub async fn open(&self, key: &str) -> Result<ByteStream, FilesError> {
        check_key(key)?;
        match self {
            Files::Local(dir) => {
                let (file, meta) = dir.open_file(key).await?;
                Ok(read_chunks(file, meta.len()))
            }
            Files::S3 { store, prefix, .. } => {
                let result = store.get(&Self::s3_path(prefix, key)).await.map_err(|e| {
                    if matches!(e, object_store::Error::NotFound { .. }) {
                        FilesError::Missing {
                            key: key.to_owned(),
                        }
                    } else {
                        FilesError::ObjectStore(e)
                    }
                })?;
                Ok(result
                    .into_stream()
                    .map(|r| r.map_err(std::io::Error::other))
                    .boxed())
            }
        }
    }

    /// Removes partial uploads older than `older_than` from the local directory's `tmp/`: what
    /// a crash (or kill -9) in the middle of an upload leaves behind. An upload in progress
    /// writes continuously, so its file is never that old. Returns how many were removed.
    pub async fn sweep_stale_uploads(&self, older_than: std::time::Duration) -> usize {
        let Files::Local(dir) = self else {
            // S3 multipart uploads cut off by a crash are cleaned by the bucket's lifecycle
            // rule for incomplete multipart uploads.
            return 0;
        };
        let tmp = dir.root.join("tmp");
        let Ok(mut entries) = tokio::fs::read_dir(&tmp).await else {
            return 0;
        };
        let mut removed = 0;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("part") {
                continue;
            }
            let stale = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > older_than);
            if stale && tokio::fs::remove_file(&path).await.is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), FilesError> {
        check_key(key)?;
        match self {
            Files::Local(dir) => {
                dir.forget(key);
                let path = dir.object_path(key);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(FilesError::Io {
                        path: path.display().to_string(),
                        source: e,
                    }),
                }
            }
            Files::S3 { store, prefix, .. } => {
                match store.delete(&Self::s3_path(prefix, key)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Streams the first `len` bytes of a file in [`READ_CHUNK`]s, read straight into reused buffers
/// (one copy, from the page cache) by positioned reads on the blocking pool, [`READ_AHEAD`] at
/// a time. A file shorter than `len` ends the stream with an error.
pub(crate) fn read_chunks(file: std::fs::File, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let spares = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let chunk = READ_CHUNK as u64;
    // A small file gets buffers of its own size: a zeroed 4 MiB buffer per 1 KiB delivery
    // cost more than reading the file.
    let buffer = usize::try_from(len.min(chunk)).unwrap_or(READ_CHUNK);
    futures_util::stream::iter(0..len.div_ceil(chunk))
        .map(move |i| {
            let file = Arc::clone(&file);
            let spares = Arc::clone(&spares);
            let offset = i * chunk;
            let want = usize::try_from((len - offset).min(chunk)).unwrap_or(READ_CHUNK);
            async move {
                tokio::task::spawn_blocking(move || read_chunk(&file, offset, want, buffer, spares))
                    .await
                    .map_err(std::io::Error::other)?
            }
        })
        .buffered(READ_AHEAD)
        .boxed()
}

/// Reads `want` bytes at `offset` into a spare buffer, or a new one of `buffer` bytes.
fn read_chunk(
    file: &std::fs::File,
    offset: u64,
    want: usize,
    buffer: usize,
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
) -> Result<Bytes, std::io::Error> {
    let reused = spares.lock().ok().and_then(|mut s| s.pop());
    let mut buf = reused.unwrap_or_else(|| vec![0; buffer.max(want)]);
    read_exact_at(file, &mut buf[..want], offset)?;
    Ok(Bytes::from_owner(Recycled {
        buf,
        len: want,
        spares,
    }))
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// A read buffer lent out as [`Bytes`]; it goes back to its delivery's spares when the last
/// reference (the socket write, the hashing task) lets go of it.
struct Recycled {
    buf: Vec<u8>,
    len: usize,
    spares: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Ok(mut spares) = self.spares.lock()
            && spares.len() < SPARE_BUFFERS
        {
            spares.push(std::mem::take(&mut self.buf));
        }
    }
}

impl LocalDir {
    /// The object `key` opened for reading, and what `fstat` says of it.
    async fn open_file(&self, key: &str) -> Result<(std::fs::File, std::fs::Metadata), FilesError> {
        let path = self.object_path(key);
        open_with_metadata(path.clone()).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FilesError::Missing {
                    key: key.to_owned(),
                }
            } else {
                io(&path)(e)
            }
        })
    }

    fn is_confirmed(&self, key: &str, stamp: &Stamp, expected: &Expected) -> bool {
        self.confirmed
            .lock()
            .ok()
            .and_then(|c| c.get(key).map(|(s, e)| s == stamp && e == expected))
            .unwrap_or(false)
    }

    fn forget(&self, key: &str) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            confirmed.remove(key);
        }
    }

    fn confirm(&self, key: &str, stamp: Stamp, expected: Expected) {
        let Ok(mut confirmed) = self.confirmed.lock() else {
            return;
        };
        if confirmed.len() >= CONFIRMED_FILES && !confirmed.contains_key(key) {
            // Forgetting one only costs that file one more hashing.
            if let Some(any) = confirmed.keys().next().cloned() {
                confirmed.remove(&any);
            }
        }
        confirmed.insert(key.to_owned(), (stamp, expected));
    }

    fn object_path(&self, key: &str) -> PathBuf {
        let mut path = self.root.join("objects");
        for part in key.split('/') {
            path.push(part);
        }
        path
    }
}

/// Reads a whole stream into memory, refusing more than `limit` bytes.
pub async fn read_to_vec(mut stream: ByteStream, limit: u64) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(std::io::Error::other(format!(
                "more than the {limit} bytes expected"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Chunks handed to the hashing task ahead of the one being sent (a delivery's are 4 MiB).
const HASH_QUEUE: usize = 2;

/// Passes a stream through while checking it against the size and digest recorded when it was
/// stored. The hashing runs in its own task, beside the sending, so it costs throughput only
/// when a core is free for it; and the last chunk is held back until the digest is confirmed,
/// so on a mismatch the transfer ends with an error and the client never receives a corrupted
/// file as if it were whole. `on_intact` runs once the whole stream matched; `guard` is
/// dropped with the stream (e.g. a spool file's path, which deletes the file).
fn verified(
    inner: ByteStream,
    expected_size: u64,
    expected: Expected,
    on_intact: Option<Box<dyn FnOnce() + Send>>,
    guard: Option<Box<dyn Send + Sync>>,
) -> ByteStream {
    let (to_hasher, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
    let mut running = Running::for_expected(&expected);
    let hasher = tokio::spawn(async move {
        let mut size: u64 = 0;
        while let Some(chunk) = chunks.recv().await {
            running.update(&chunk);
            size += chunk.len() as u64;
        }
        size == expected_size && running.matches(&expected)
    });
    struct State {
        inner: ByteStream,
        to_hasher: Option<tokio::sync::mpsc::Sender<Bytes>>,
        hasher: Option<tokio::task::JoinHandle<bool>>,
        held: Option<Bytes>,
        seen: u64,
        done: bool,
        on_intact: Option<Box<dyn FnOnce() + Send>>,
        _guard: Option<Box<dyn Send + Sync>>,
    }
    let mismatch = || {
        tracing::error!(
            "stored file does not match its recorded size and digest; delivery aborted"
        );
        std::io::Error::other("stored file does not match its record")
    };
    let state = State {
        inner,
        to_hasher: Some(to_hasher),
        hasher: Some(hasher),
        held: None,
        seen: 0,
        done: false,
        on_intact,
        _guard: guard,
    };
    futures_util::stream::unfold(state, move |mut st| {
        async move {
            if st.done {
                return None;
            }
            loop {
                match st.inner.next().await {
                    Some(Ok(chunk)) => {
                        st.seen += chunk.len() as u64;
                        if st.seen > expected_size {
                            st.done = true;
                            return Some((Err(mismatch()), st));
                        }
                        let queued = match &st.to_hasher {
                            Some(tx) => tx.send(chunk.clone()).await.is_ok(),
                            None => false,
                        };
                        if !queued {
                            st.done = true;
                            return Some((Err(std::io::Error::other("hashing task ended")), st));
                        }
                        // Send the previous chunk; keep this one until the next arrives.
                        if let Some(previous) = st.held.replace(chunk) {
                            return Some((Ok(previous), st));
                        }
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => {
                        st.done = true;
                        drop(st.to_hasher.take());
                        let intact = match st.hasher.take() {
                            Some(task) => task.await.unwrap_or(false),
                            None => false,
                        };
                        if !intact {
                            return Some((Err(mismatch()), st));
                        }
                        if let Some(confirm) = st.on_intact.take() {
                            confirm();
                        }
                        return st.held.take().map(|last| (Ok(last), st));
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn local_round_trip_and_verification() {
        let tmp = tempfile::tempdir().expect("dir");
        let storage = Files::from_config(&StorageConfig {
            dir: tmp.path().to_owned(),
            s3: None,
            verify_every_delivery: false,
        })
        .expect("storage");
        let stored = storage
            .put_stream("res_1/up_1", chunks(&[b"hello ", b"world"]))
            .await
            .expect("put");
        assert_eq!(stored.size, 11);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(b"hello world")));
        let back = read_to_vec(storage.open("res_1/up_1").await.expect("open"), 100)
            .await
            .expect("read");
        assert_eq!(back, b"hello world");
        // Nothing is left in tmp/.
        assert_eq!(
            std::fs::read_dir(tmp.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );

        assert_eq!(
            stored.blake3,
            blake3::hash(b"hello world").to_hex().to_string()
        );
        let by_blake3 = Expected::Blake3(stored.blake3.clone());
        let by_sha256 = Expected::Sha256(stored.sha256.clone());
        for expected in [by_blake3.clone(), by_sha256.clone()] {
            let good = verified(
                storage.open("res_1/up_1").await.expect("open"),
                11,
                expected.clone(),
                None,
                None,
            );
            assert_eq!(
                read_to_vec(good, 100).await.expect("verified"),
                b"hello world"
            );
            // A corrupted file of the right size: every chunk but the last is passed on, then
            // the stream fails instead of completing.
            let mut corrupted = verified(
                chunks(&[b"hello ", b"WORLD"]),
                11,
                expected.clone(),
                None,
                None,
            );
            assert_eq!(
                corrupted.next().await.map(|r| r.ok()),
                Some(Some(Bytes::from_static(b"hello ")))
            );
            assert!(matches!(corrupted.next().await, Some(Err(_))));
            assert!(corrupted.next().await.is_none());
            let short = verified(chunks(&[b"hello"]), 11, expected, None, None);
            assert!(read_to_vec(short, 100).await.is_err());
        }
        for wrong in [
            Expected::Blake3("00".repeat(32)),
            Expected::Sha256("00".repeat(32)),
            // The right digest of the other kind is not accepted either.
            Expected::Blake3(stored.sha256.clone()),
        ] {
            let bad = verified(
                storage.open("res_1/up_1").await.expect("open"),
                11,
                wrong,
                None,
                None,
            );
            assert!(read_to_vec(bad, 100).await.is_err());
        }
        let empty = verified(
            chunks(&[]),
            0,
            Expected::Blake3(blake3::hash(b"").to_hex().to_string()),
            None,
            None,
        );
        assert!(read_to_vec(empty, 100).await.expect("empty").is_empty());

        storage.delete("res_1/up_1").await.expect("delete");
        assert!(matches!(
            storage.open("res_1/up_1").await,
            Err(FilesError::Missing { .. })
        ));
        storage.delete("res_1/up_1").await.expect("delete twice");
        assert!(storage.open("../etc/passwd").await.is_err());
    }

    #[tokio::test]
    async fn confirmed_unchanged_files_are_hashed_again_only_when_asked() {
        let data: Vec<u8> = (0..2 * READ_CHUNK + 5).map(|i| (i % 7) as u8).collect();
        let changed: Vec<u8> = data.iter().map(|b| b ^ 1).collect();
        for verify_every_delivery in [false, true] {
            let tmp = tempfile::tempdir().expect("dir");
            let storage = Files::from_config(&StorageConfig {
                dir: tmp.path().to_owned(),
                s3: None,
                verify_every_delivery,
            })
            .expect("storage");
            let one = |bytes: &[u8]| {
                futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(bytes))]).boxed()
            };
            let stored = storage.put_stream("r/u", one(&data)).await.expect("put");
            let expected = Expected::Blake3(stored.blake3.clone());
            let deliver = || async {
                let stream = storage
                    .open_verified("r/u", stored.size, expected.clone())
                    .await
                    .expect("open");
                read_to_vec(stream, 1 << 30).await
            };
            assert_eq!(deliver().await.expect("whole"), data);
            assert_eq!(deliver().await.expect("whole again"), data);

            // A change no stamp shows (a write to the raw device): simulated by changing the
            // bytes and confirming the new stamp as if it were still the upload's.
            let Files::Local(dir) = &storage else {
                panic!("local storage")
            };
            let path = dir.object_path("r/u");
            std::fs::write(&path, &changed).expect("change");
            let stamp = Stamp::of(&std::fs::metadata(&path).expect("stat")).expect("stamp");
            dir.confirm("r/u", stamp, expected.clone());
            let delivered = deliver().await;
            if verify_every_delivery {
                assert!(delivered.is_err(), "hashed, and refused");
            } else {
                assert_eq!(delivered.expect("trusted"), changed);
            }
            // A visible change (a new change time) is always hashed, and the file refused.
            std::fs::write(&path, &changed).expect("change");
            assert!(deliver().await.is_err());

            // Empty files, and a file shorter than recorded.
            let empty = storage.put_stream("r/e", one(b"")).await.expect("put");
            for _ in 0..2 {
                let stream = storage
                    .open_verified("r/e", 0, Expected::Blake3(empty.blake3.clone()))
                    .await
                    .expect("open");
                assert!(read_to_vec(stream, 10).await.expect("empty").is_empty());
            }
            std::fs::write(&path, &data[..CHUNK]).expect("truncate");
            let stream = storage
                .open_verified("r/u", stored.size, expected.clone())
                .await
                .expect("open");
            assert!(read_to_vec(stream, 1 << 30).await.is_err());
            assert!(matches!(
                storage.open_verified("r/none", 1, expected.clone()).await,
                Err(FilesError::Missing { .. })
            ));
            // A deleted object is forgotten.
            assert_eq!(dir.confirmed.lock().map(|c| c.len()).ok(), Some(2));
            storage.delete("r/e").await.expect("delete");
            assert_eq!(dir.confirmed.lock().map(|c| c.len()).ok(), Some(1));
        }
    }

    #[tokio::test]
    async fn stale_partial_uploads_are_swept() {
        let tmp = tempfile::tempdir().expect("dir");
        let storage = Files::from_config(&StorageConfig {
            dir: tmp.path().to_owned(),
            s3: None,
            verify_every_delivery: false,
        })
        .expect("storage");
        std::fs::create_dir_all(tmp.path().join("tmp")).expect("tmp");
        std::fs::write(tmp.path().join("tmp/left-by-a-crash.part"), b"x").expect("part");
        std::fs::write(tmp.path().join("tmp/other.txt"), b"x").expect("other");
        assert_eq!(
            storage
                .sweep_stale_uploads(std::time::Duration::from_secs(3600))
                .await,
            0,
            "a fresh part may be an upload in progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            storage
                .sweep_stale_uploads(std::time::Duration::from_millis(1))
                .await,
            1
        );
        assert!(tmp.path().join("tmp/other.txt").exists());
    }

    #[tokio::test]
    async fn failed_uploads_leave_nothing() {
        let tmp = tempfile::tempdir().expect("dir");
        let storage = Files::from_config(&StorageConfig {
            dir: tmp.path().to_owned(),
            s3: None,
            verify_every_delivery: false,
        })
        .expect("storage");
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        assert!(matches!(
            storage.put_stream("r/u", failing).await,
            Err(FilesError::Upload(_))
        ));
        assert!(storage.open("r/u").await.is_err());
        assert_eq!(
            std::fs::read_dir(tmp.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }
}
