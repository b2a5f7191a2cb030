//! The guest plugins (plugins/guests, wasm32-wasip2), built by scripts/build-plugins.sh.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn guests_dir() -> PathBuf {
    repo_root().join("plugins/guests")
}

/// Builds every guest once per process, under a file lock so that concurrent processes (test
/// binaries, benchmarks) do not build at the same time. A no-op when they are up to date.
pub fn build() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        std::fs::create_dir_all(guests_dir().join("target")).map_err(|e| e.to_string())?;
        let lock = std::fs::File::create(guests_dir().join("target/.testkit-build.lock"))
            .map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/build-plugins.sh"))
            // The guests build into their own target dir, whatever this build uses.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .output()
            .map_err(|e| format!("running build-plugins.sh: {e}"))?;
        let _ = lock.unlock();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "build-plugins.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// The built component of `crate_dir` (relative to plugins/guests, e.g. `billing-flat-fee` or
/// `fixtures/fixture-trap`), building the guests first.
pub fn component_path(crate_dir: &str) -> PathBuf {
    build();
    let name = Path::new(crate_dir)
        .file_name()
        .map(|n| n.to_string_lossy().replace('-', "_"))
        .unwrap_or_default();
    guests_dir().join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

pub fn manifest_path(crate_dir: &str) -> PathBuf {
    guests_dir().join(crate_dir).join("plugin.toml")
}
