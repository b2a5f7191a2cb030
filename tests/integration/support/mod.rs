//! Test support: a real server on a random port with a fresh database per test, on SQLite or
//! PostgreSQL, and an HTTP client that checks the standard's envelope on every response.

pub mod fixtures;
pub mod plugins;
pub mod trade;

use std::net::SocketAddr;
use std::time::Duration;

use liutong::{App, Config};
use serde_json::Value;
use tokio::sync::oneshot;

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::support::TestApp::spawn($crate::support::Backend::Sqlite).await;
                    super::$name(app).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::support::TestApp::spawn($crate::support::Backend::Postgres).await;
                    super::$name(app).await
                }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const OPERATOR_PASSWORD: &str = "operator-pass-1";

/// The server PostgreSQL tests create their databases on (`LIUTONG_TEST_POSTGRES`).
pub fn postgres_admin_url() -> String {
    liutong_testkit::postgres::admin_url()
}

/// A database that exists for one test and is removed after it.
pub enum TestDb {
    Sqlite { dir: tempfile::TempDir },
    Postgres { name: String },
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::Sqlite {
                dir: tempfile::tempdir().expect("temp dir"),
            },
            Backend::Postgres => TestDb::Postgres {
                name: liutong_testkit::postgres::create_database(&postgres_admin_url(), "lt_test")
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            },
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite { dir } => liutong::config::sqlite_url(&dir.path().join("test.db")),
            TestDb::Postgres { name } => {
                liutong_testkit::postgres::database_url(&postgres_admin_url(), name)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name } = self {
            let name = name.clone();
            // Drop runs inside the test's runtime, which cannot block on async work: a thread
            // with its own small runtime removes the database.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(liutong_testkit::postgres::drop_database(
                    &postgres_admin_url(),
                    &name,
                ));
            })
            .join();
        }
    }
}

/// A response whose envelope has been checked.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error_msg(&self) -> &str {
        self.body["errorMsg"].as_str().unwrap_or_default()
    }

    /// Asserts success and returns `data`.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected success, got {}", self.body);
        self.data()
    }

    /// Asserts an error with this status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer {}",
            self.body
        );
        assert!(!self.error_msg().is_empty(), "error without message");
        assert!(self.data().is_null(), "error with data: {}", self.body);
        self
    }
}

/// Plugins of a test app: the test publisher trusted, the shared compiled-code cache.
pub fn test_plugins_config(dir: &std::path::Path) -> liutong::config::PluginsConfig {
    let trust_dir = dir.join("trusted-publishers");
    plugins::trust_test_publisher(&trust_dir);
    liutong::config::PluginsConfig {
        trust_dir,
        cache_dir: plugins::shared_cache_dir(),
        ..liutong::config::PluginsConfig::default()
    }
}

/// Another server of the same deployment (see `TestApp::replica`).
pub struct Replica {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// The server's own database handle.
    pub store: liutong::store::Store,
    /// The configuration the server runs with.
    pub config: Config,
    /// Holds the server's key ring and file storage (`config.keys_dir`, `config.storage.dir`)
    /// for as long as the app lives.
    _files: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    /// The real `liutong` process, for apps started with `spawn_binary`.
    child: Option<tokio::process::Child>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts an app after letting the test adjust its configuration.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create(backend).await;
        let files = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: db.url(),
            operator_password: Some(OPERATOR_PASSWORD.to_owned()),
            max_db_connections: 8,
            keys_dir: files.path().join("keys"),
            storage: liutong::config::StorageConfig {
                dir: files.path().join("files"),
                s3: None,
                verify_every_delivery: false,
            },
            plugins: test_plugins_config(files.path()),
            ..Config::default()
        };
        adjust(&mut config);
        let app = App::build(config.clone()).await.expect("app builds");
        let addr = app.local_addr().expect("bound address");
        let store = app.store();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .serve_until(async move {
                    let _ = rx.await;
                })
                .await;
        });
        TestApp {
            addr,
            client: http_client(),
            db,
            store,
            config,
            _files: files,
            shutdown: Some(tx),
            child: None,
        }
    }

    /// Starts the real `liutong` binary (as operators run it) on a fresh database, with
    /// `extra_toml` appended to its configuration file.
    pub async fn spawn_binary(backend: Backend, extra_toml: &str) -> TestApp {
        let db = TestDb::create(backend).await;
        let files = tempfile::tempdir().expect("temp dir");
        let config = Config {
            database_url: db.url(),
            keys_dir: files.path().join("keys"),
            storage: liutong::config::StorageConfig {
                dir: files.path().join("files"),
                s3: None,
                verify_every_delivery: false,
            },
            ..Config::default()
        };
        std::fs::write(files.path().join("liutong.toml"), extra_toml).expect("config file");
        let (child, addr) = start_binary(&config, files.path()).await;
        let store = liutong::store::Store::connect(&db.url(), 2)
            .await
            .expect("store");
        TestApp {
            addr,
            client: http_client(),
            db,
            store,
            config,
            _files: files,
            shutdown: None,
            child: Some(child),
        }
    }

    /// kill -9 of the binary: no shutdown, no flush, nothing.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            let _ = child.wait().await;
        }
    }

    /// Starts the binary again on the same database, keys and files (after `kill9`).
    pub async fn restart_binary(&mut self) {
        self.kill9().await;
        let (child, addr) = start_binary(&self.config, self._files.path()).await;
        self.child = Some(child);
        self.addr = addr;
    }

    /// Stops the in-process server: its port stops answering until `restart_with` (which may
    /// bind the same `listen` address again).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Give the old server a moment to finish; it releases its port when it stops
        // accepting.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Stops the server and starts a new one on the same database, keys and files (with
    /// `config`, which may differ): what an operator's restart does.
    pub async fn restart_with(&mut self, config: Config) {
        self.stop().await;
        let app = App::build(config.clone()).await.expect("app rebuilds");
        self.addr = app.local_addr().expect("bound address");
        self.store = app.store();
        self.config = config;
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .serve_until(async move {
                    let _ = rx.await;
                })
                .await;
        });
        self.shutdown = Some(tx);
    }

    /// A second server on the same database, keys and files, as behind a load balancer;
    /// it stops when the returned handle is dropped.
    pub async fn replica(&self) -> Replica {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.operator_password = None;
        let app = App::build(config).await.expect("replica builds");
        let addr = app.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .serve_until(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Replica {
            addr,
            _shutdown: tx,
        }
    }

    /// A GET sent to `replica` instead of this app's server.
    pub async fn get_via(
        &self,
        replica: &Replica,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
    ) -> Resp {
        let mut request = self
            .client
            .get(format!("http://{}{}", replica.addr, path))
            .query(query);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        self.send(request).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request and checks the envelope: JSON with status (= HTTP status), code,
    /// errorMsg and data; code "OK" and an empty errorMsg exactly on success.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"));
        assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
        assert!(body["code"].is_string(), "{body}");
        assert!(body["errorMsg"].is_string(), "{body}");
        assert!(body.get("data").is_some(), "{body}");
        if status == 200 {
            assert_eq!(body["code"], "OK", "{body}");
            assert_eq!(body["errorMsg"], "", "{body}");
        } else {
            assert_ne!(body["code"], "OK", "{body}");
        }
        assert!(
            headers.contains_key("x-request-id"),
            "response without X-Request-Id"
        );
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>, query: &[(&str, &str)]) -> Resp {
        let mut request = self.client.get(self.url(path)).query(query);
        if let Some(token) = token {
            request = request.header("X-Auth-Token", token);
        }
        self.send(request).await
    }

    /// Registers an enterprise account and returns its token.
    pub async fn user(&self, username: &str) -> String {
        let password = format!("{username}-pass-1");
        self.post(
            "/v1/account/register",
            None,
            &serde_json::json!({"username": username, "password": password, "phone": "13800138000"}),
        )
        .await
        .ok();
        self.login(username, &password).await
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let resp = self
            .post(
                "/v1/account/token",
                None,
                &serde_json::json!({"username": username, "password": password}),
            )
            .await;
        resp.ok()["token"]
            .as_str()
            .expect("token in response")
            .to_owned()
    }

    pub async fn operator(&self) -> String {
        self.login("operator", OPERATOR_PASSWORD).await
    }

    /// Creates an account of any role through the CLI, the way an operator would, and logs in.
    pub async fn account_with_role(&self, username: &str, role: &str) -> String {
        let password = format!("{username}-pass-1");
        let output = cli(&["account", "create", "--username", username, "--role", role])
            .env("DATABASE_URL", self.db.url())
            .stdin_text(&password)
            .run()
            .await;
        assert!(output.success, "account create failed: {}", output.stderr);
        self.login(username, &password).await
    }
}

impl TestApp {
    /// Sends every `(path, token, body)` POST at once, kills the binary with SIGKILL (see
    /// `kill9`) as soon as `answers` of them have answered, and returns each one's answer in
    /// order: the body of a 200, or `None` (an error, or cut off by the kill).
    pub async fn post_all_then_kill9(
        &mut self,
        requests: Vec<(String, String, Value)>,
        answers: usize,
    ) -> Vec<Option<Value>> {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (path, token, body) in requests {
            let client = self.client.clone();
            let url = self.url(&path);
            let done = done_tx.clone();
            tasks.push(tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("X-Auth-Token", token)
                    .json(&body)
                    .send()
                    .await;
                let outcome = match response {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
                    _ => None,
                };
                let _ = done.send(());
                outcome
            }));
        }
        drop(done_tx);
        let mut answered = 0;
        while answered < answers {
            if tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
                .await
                .ok()
                .flatten()
                .is_none()
            {
                break;
            }
            answered += 1;
        }
        self.kill9().await;
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        outcomes
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP client for tests. reqwest speaks TLS through rustls here (liutong needs it for S3
/// and resource_url), so the process-wide crypto provider must be installed before any client
/// is built; doing it here means no test depends on another having started an app first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until a server answers /healthz.
pub async fn wait_healthy(base: &str) -> bool {
    let client = http_client();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs `liutong --config <dir>/liutong.toml serve` on a free port; its log goes to
/// `<dir>/server.log`.
async fn start_binary(
    config: &Config,
    dir: &std::path::Path,
) -> (tokio::process::Child, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let child = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(dir.join("liutong.toml"))
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--database", &config.database_url])
        .arg("--keys-dir")
        .arg(&config.keys_dir)
        .arg("--storage-dir")
        .arg(&config.storage.dir)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("LIUTONG_CONFIG")
        .env_remove("LIUTONG_LISTEN")
        .env("LIUTONG_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
        .env("LIUTONG_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("liutong serve starts");
    assert!(
        wait_healthy(&format!("http://{addr}")).await,
        "the liutong binary did not come up; see {}",
        dir.join("server.log").display()
    );
    (child, addr)
}

/// The `liutong` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_liutong")
}

pub struct Cli {
    command: tokio::process::Command,
    stdin: Option<String>,
}

pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn cli(args: &[&str]) -> Cli {
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LIUTONG_CONFIG")
        .env_remove("LIUTONG_LISTEN")
        .env_remove("LIUTONG_OPERATOR_PASSWORD")
        .env("LIUTONG_LOG", "warn");
    Cli {
        command,
        stdin: None,
    }
}

impl Cli {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn stdin_text(mut self, text: &str) -> Self {
        self.stdin = Some(format!("{text}\n"));
        self
    }

    pub async fn run(mut self) -> CliOutput {
        use tokio::io::AsyncWriteExt;
        self.command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = self.command.spawn().expect("liutong binary starts");
        if let Some(mut stdin) = child.stdin.take() {
            if let Some(text) = &self.stdin {
                let _ = stdin.write_all(text.as_bytes()).await;
            }
            drop(stdin);
        }
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("liutong command finishes")
            .expect("liutong command output");
        CliOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
