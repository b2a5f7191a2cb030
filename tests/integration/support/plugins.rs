//! Plugins for the integration tests: the real guest components (built once per test run by
//! scripts/build-plugins.sh), signed by a test publisher whose key every `TestApp` trusts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use liutong_plugin_runtime::{Package, PublisherKey};

use super::TestApp;

pub use liutong_testkit::guests::{component_path, manifest_path, repo_root};

/// The publisher every test app trusts.
pub fn test_publisher() -> &'static PublisherKey {
    static KEY: OnceLock<PublisherKey> = OnceLock::new();
    KEY.get_or_init(|| PublisherKey::generate("liutong-tests"))
}

/// Writes the test publisher's public key into `dir` (a trust store).
pub fn trust_test_publisher(dir: &Path) {
    std::fs::create_dir_all(dir).expect("trust dir");
    std::fs::write(
        dir.join("liutong-tests.pub"),
        test_publisher().public().to_json(),
    )
    .expect("trusted key");
}

/// A guest's manifest, optionally edited (e.g. a new version), signed by the test publisher.
pub fn signed_package_with(
    crate_dir: &str,
    edit_manifest: impl FnOnce(String) -> String,
) -> Vec<u8> {
    let component = std::fs::read(component_path(crate_dir)).expect("component");
    let manifest = std::fs::read_to_string(manifest_path(crate_dir)).expect("manifest");
    let manifest = edit_manifest(manifest);
    test_publisher()
        .sign(Package::build(manifest.into_bytes(), component))
        .to_bytes()
}

pub fn signed_package(crate_dir: &str) -> Vec<u8> {
    signed_package_with(crate_dir, |m| m)
}

/// A directory holding the signed packages of `crate_dirs` (`<name>.ltpkg`), for
/// `plugins.preinstall`.
pub fn package_dir(crate_dirs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("packages dir");
    for crate_dir in crate_dirs {
        let name = Path::new(crate_dir)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::write(
            dir.path().join(format!("{name}.ltpkg")),
            signed_package(crate_dir),
        )
        .expect("package");
    }
    dir
}

/// Where compiled components are cached across test apps and runs: compiling in a debug
/// build takes most of a second per component.
pub fn shared_cache_dir() -> PathBuf {
    repo_root().join("target/plugin-cache-tests")
}

impl TestApp {
    /// Uploads a package as the operator; returns the response.
    pub async fn install_plugin(&self, package: Vec<u8>) -> super::Resp {
        let token = self.operator().await;
        self.send(
            self.client
                .post(self.url("/v1/admin/plugins"))
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .body(package),
        )
        .await
    }

    /// Installs a guest signed by the test publisher and returns its id; panics unless 200.
    pub async fn installed(&self, crate_dir: &str) -> String {
        let r = self.install_plugin(signed_package(crate_dir)).await;
        r.ok()["id"].as_str().expect("plugin id").to_owned()
    }
}
