//! Compiled components, cached on disk as `<component sha256>-<engine config hash>.cwasm`, so
//! a restarted host does not compile every plugin again (50-100 ms each in release builds,
//! far more in debug builds).

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::failure::{LoadError, short_error};

/// Counters of a runtime's compiled-code cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub cache_hits: u64,
    pub compilations: u64,
    /// Cache files that could not be used and were replaced.
    pub cache_rejects: u64,
}

/// A component obtained from the cache or compiled.
pub(crate) struct Compiled {
    pub component: Component,
    pub cache_hit: bool,
    /// Time spent compiling (0 on a cache hit).
    pub compile_ms: u64,
}

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    /// Names the engine configuration: a file compiled under another is never even read.
    engine_hash: String,
    hits: AtomicU64,
    compilations: AtomicU64,
    rejects: AtomicU64,
}

/// Feeds `Hash` into SHA-256, for a stable name of the engine configuration.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> ComponentCache {
        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
        let engine_hash = hex::encode(hasher.0.finalize())[..16].to_string();
        ComponentCache {
            dir,
            engine_hash,
            hits: AtomicU64::new(0),
            compilations: AtomicU64::new(0),
            rejects: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            cache_hits: self.hits.load(Ordering::Relaxed),
            compilations: self.compilations.load(Ordering::Relaxed),
            cache_rejects: self.rejects.load(Ordering::Relaxed),
        }
    }

    /// The compiled component of `bytes` (whose SHA-256 is `sha`): from the cache if a valid
    /// entry exists, else compiled (and cached).
    pub fn component(
        &self,
        engine: &Engine,
        label: &str,
        bytes: &[u8],
        sha: &str,
    ) -> Result<Compiled, LoadError> {
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha}-{}.cwasm", self.engine_hash)));
        if let Some(path) = &path
            && path.exists()
        {
            match read(engine, path) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Compiled {
                        component,
                        cache_hit: true,
                        compile_ms: 0,
                    });
                }
                Err(e) => {
                    self.rejects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), error = %e, "plugin cache entry unusable; recompiling");
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
            plugin: label.to_string(),
            message: short_error(&e),
        })?;
        let compile_ms = started.elapsed().as_millis() as u64;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &path
            && let Err(e) = write(&component, path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the plugin cache");
        }
        Ok(Compiled {
            component,
            cache_hit: false,
            compile_ms,
        })
    }
}

const MAGIC: &[u8; 8] = b"LTPCACHE";

/// Cache file: magic, serialized component, SHA-256 of the serialized bytes. The checksum
/// catches truncated or corrupted files, which wasmtime's own header check would not.
fn read(engine: &Engine, path: &Path) -> Result<Component, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    if data.len() < 8 + 32 || &data[..8] != MAGIC {
        return Err("not a liutong plugin cache file".into());
    }
    let (body, sum) = data[8..].split_at(data.len() - 8 - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the bytes were produced by `Component::serialize` of an engine with this
    // configuration (the file name includes its hash) in the operator's cache directory, and
    // the checksum shows they are unchanged; wasmtime also checks version and settings.
    unsafe { Component::deserialize(engine, body) }.map_err(|e| short_error(&e))
}

/// Write atomically: a temporary file in the same directory, then rename.
fn write(component: &Component, path: &Path) -> Result<(), String> {
    let body = component.serialize().map_err(|e| short_error(&e))?;
    let dir = path.parent().ok_or("cache path has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&body)?;
        f.write_all(&Sha256::digest(&body))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| e.to_string())
}

/// Tells apart the temporary files of concurrent writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
