//! Runtime configuration: defaults, overlaid by an optional TOML file, overlaid by environment
//! variables and command-line flags (clap resolves those two, flags first).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use liutong_plugin_runtime::PluginKind;
use serde::Deserialize;

/// Where the SQLite database lives when nothing else is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./data/liutong.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the operator's signing keys and escrow identities live unless configured.
pub const DEFAULT_KEYS_DIR: &str = "./data/keys";
/// Where uploaded (encrypted) data files live unless S3 is configured.
pub const DEFAULT_STORAGE_DIR: &str = "./data/files";
/// The largest `max_json_delivery`: a JSON delivery is held in memory, base64-encoded.
pub const MAX_JSON_DELIVERY_LIMIT: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_body: usize,
    pub token_ttl: Duration,
    /// Upper bound on database connections in the pool.
    pub max_db_connections: u32,
    /// Password for the bootstrap `operator` account, created on start when no operator exists.
    pub operator_password: Option<String>,
    /// Currency code written into payment documents; amounts are integer minor units on disk.
    pub currency: String,
    /// Directory of the operator's signing keys and escrow identities.
    pub keys_dir: PathBuf,
    /// Where uploaded data files are stored.
    pub storage: StorageConfig,
    /// How long a confirmation waits for its settlement before it expires and frees its demand.
    pub confirmation_ttl: Duration,
    /// How long a license issued at settlement is valid.
    pub license_term: Duration,
    /// Largest data file `POST /deliver` returns inside JSON; larger ones need
    /// `Accept: application/octet-stream`.
    pub max_json_delivery: u64,
    /// Platform fee of the native flat billing, in basis points (1/100 of a percent) of the price.
    pub platform_fee_bps: u32,
    /// Whether delivery may fetch an http(s) `resource_url` when no file was uploaded.
    pub fetch_resource_urls: bool,
    /// WebAssembly plugins: trust, limits, grants, packages installed at start.
    pub plugins: PluginsConfig,
    /// Whether `GET /metrics` (Prometheus text format, no token) is served.
    pub metrics: bool,
    /// Notices of review outcomes by e-mail and SMS. The `[notifications]` table.
    pub notifications: NotificationsConfig,
    /// Compute orders: the worker that provisions and reclaims them, prepaid periods and the
    /// grace before reclaiming an unpaid resource. The `[compute]` table.
    pub compute: ComputeConfig,
}

/// How compute orders are driven (`[compute]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// Provisioning attempts (the provider unreachable or answering 5xx/429) before an order
    /// is `FAILED`. Reclaiming is never given up: it retries at `retry_max_ms`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each further one up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often the worker looks for orders to move (it is also woken by new orders).
    pub poll_interval_ms: u64,
    /// How long a worker owns an order it took; another server (or this one after a restart)
    /// resumes the order after that. Must exceed the provider plugins' time limit.
    pub lease_ms: u64,
    /// After the balance fails to cover an active order's next period, the resource is
    /// stopped, and reclaimed when this much time passes without the balance covering it.
    pub grace_period_ms: u64,
    /// The length of a billed hour in milliseconds (3 600 000). Shorter values are for tests
    /// and demonstrations only.
    pub hour_ms: u64,
    /// How often every provider's bills are synchronised (`list-bills`); 0: only when an
    /// operator asks (`POST /v1/admin/compute/bill-sync`).
    pub bill_sync_interval_ms: u64,
    /// The days before today (UTC) a scheduled sync asks the providers for: bills arrive
    /// late and are corrected, and a line listed again is stored once.
    pub bill_lookback_days: u32,
    /// How long an ended order keeps its reserve (its metered use not yet billed) held for
    /// the provider's bills to come; then it is released to the user.
    pub bill_wait_ms: u64,
    /// How far (basis points) an order's bills may differ from the platform's metering before
    /// the reconciliation report lists it.
    pub reconciliation_tolerance_bps: u32,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            max_attempts: 10,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            poll_interval_ms: 1_000,
            lease_ms: 120_000,
            grace_period_ms: 24 * 3_600_000,
            hour_ms: 3_600_000,
            bill_sync_interval_ms: 3_600_000,
            bill_lookback_days: 3,
            bill_wait_ms: 7 * 24 * 3_600_000,
            reconciliation_tolerance_bps: 500,
        }
    }
}

/// How notices of review outcomes are sent. Without `smtp_url` no e-mail is written, without
/// `sms_url` no SMS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `smtp://host:port` (plain, or `?tls=required` / `?tls=opportunistic` for STARTTLS) or
    /// `smtps://host:port` (TLS); credentials as `smtp://user:password@host`.
    pub smtp_url: Option<String>,
    /// The sender, e.g. `liutong <noreply@example.com>`.
    pub email_from: String,
    /// The HTTP SMS gateway's URL.
    pub sms_url: Option<String>,
    /// Its HTTP method.
    pub sms_method: String,
    /// The request body; `{phone}` and `{message}` become JSON string literals.
    pub sms_body_template: String,
    pub sms_content_type: String,
    /// A header carrying the gateway's credentials, e.g. `Authorization` …
    pub sms_auth_header: Option<String>,
    /// … whose value is this secret: `env:NAME` (an environment variable) or `file:PATH` (a
    /// file's content, trimmed).
    pub sms_auth_secret: Option<String>,
    /// Attempts before a notice is given up as `failed`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each further one up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often the worker looks for due notices (it is also woken at once by a decision).
    pub poll_interval_ms: u64,
    /// Per attempt: connecting and talking to the SMTP server or the gateway.
    pub timeout_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            smtp_url: None,
            email_from: "liutong <noreply@localhost>".to_owned(),
            sms_url: None,
            sms_method: "POST".to_owned(),
            sms_body_template: "{\"phone\": {phone}, \"message\": {message}}".to_owned(),
            sms_content_type: "application/json".to_owned(),
            sms_auth_header: None,
            sms_auth_secret: None,
            max_attempts: 10,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            poll_interval_ms: 1_000,
            timeout_ms: 10_000,
        }
    }
}

/// Where plugins live and what they may do. The `[plugins]` table of the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory of trusted publisher keys (`*.pub`, as `liutong plugin keygen` writes them);
    /// packages signed by any other key are refused.
    pub trust_dir: PathBuf,
    /// Where compiled components are cached, keyed by component hash and engine.
    pub cache_dir: PathBuf,
    /// Package files (`*.ltpkg`), or directories of them, installed at start unless that
    /// plugin version is installed already.
    pub preinstall: Vec<PathBuf>,
    /// Default plugin per kind (`billing = "flat-fee"`), set at start when none is chosen yet.
    pub defaults: BTreeMap<PluginKind, String>,
    /// Operator maximums every plugin's own limits are capped by.
    pub max_fuel: u64,
    pub max_memory_mb: u64,
    pub max_timeout_ms: u64,
    /// What each plugin (by id) may reach: `[plugins.grants.openai-chat] http = ["api.openai.com:443"]`,
    /// `secrets = ["api-key"]`. A plugin without an entry gets no network and no secrets.
    pub grants: BTreeMap<String, PluginGrant>,
    /// Secret values by name, read from environment variables: `api-key = "OPENAI_API_KEY"`.
    pub secret_env: BTreeMap<String, String>,
    /// The adapter plugin of model publications that name none (A.4.1).
    pub model_adapter: String,
    /// The adapter plugin of application publications that name none (A.5.1).
    pub application_adapter: String,
}

/// The operator's grant to one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrant {
    /// `host[:port|:*]` patterns; a request must match these and the manifest's.
    pub http: Vec<String>,
    /// Names of secrets (from `secret_env`) the plugin may receive.
    pub secrets: Vec<String>,
}

pub const DEFAULT_TRUST_DIR: &str = "./data/trusted-publishers";
pub const DEFAULT_PLUGIN_CACHE_DIR: &str = "./data/plugin-cache";

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            trust_dir: PathBuf::from(DEFAULT_TRUST_DIR),
            cache_dir: PathBuf::from(DEFAULT_PLUGIN_CACHE_DIR),
            preinstall: Vec::new(),
            defaults: BTreeMap::new(),
            max_fuel: 1_000_000_000,
            max_memory_mb: 256,
            max_timeout_ms: 120_000,
            grants: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            model_adapter: "openai-chat".to_owned(),
            application_adapter: "http-json".to_owned(),
        }
    }
}

/// Where delivered files are stored: a local directory, or an S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub dir: PathBuf,
    pub s3: Option<S3Config>,
    /// Hash a local file against its recorded digest on every delivery. When off, a file is
    /// hashed on upload, then again only when the server has not yet seen it whole since
    /// starting or its inode, size, modification or change time moved (see `files::Stamp`).
    pub verify_every_delivery: bool,
}

/// An S3-compatible object store. Credentials left unset are read from the standard AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Endpoint URL for S3-compatible services (MinIO, Ceph, …); AWS when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-http endpoint (testing, or a store on a trusted network).
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address is valid"),
            database_url: sqlite_url(Path::new(DEFAULT_SQLITE_PATH)),
            max_json_body: 1024 * 1024,
            token_ttl: Duration::from_secs(12 * 3600),
            max_db_connections: 16,
            operator_password: None,
            currency: "CNY".to_owned(),
            keys_dir: PathBuf::from(DEFAULT_KEYS_DIR),
            storage: StorageConfig {
                dir: PathBuf::from(DEFAULT_STORAGE_DIR),
                s3: None,
                verify_every_delivery: false,
            },
            confirmation_ttl: Duration::from_secs(24 * 3600),
            license_term: Duration::from_secs(365 * 24 * 3600),
            max_json_delivery: 16 * 1024 * 1024,
            platform_fee_bps: 0,
            fetch_resource_urls: true,
            plugins: PluginsConfig::default(),
            metrics: true,
            notifications: NotificationsConfig::default(),
            compute: ComputeConfig::default(),
        }
    }
}

/// The TOML file's shape: every key optional, unknown keys refused so typos surface at start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub max_json_body: Option<usize>,
    pub token_ttl_secs: Option<u64>,
    pub max_db_connections: Option<u32>,
    pub currency: Option<String>,
    pub keys_dir: Option<PathBuf>,
    pub storage_dir: Option<PathBuf>,
    pub s3: Option<S3Config>,
    pub verify_every_delivery: Option<bool>,
    pub confirmation_ttl_secs: Option<u64>,
    pub license_term_secs: Option<u64>,
    pub max_json_delivery: Option<u64>,
    pub platform_fee_bps: Option<u32>,
    pub fetch_resource_urls: Option<bool>,
    pub plugins: Option<PluginsConfig>,
    pub metrics: Option<bool>,
    pub notifications: Option<NotificationsConfig>,
    pub compute: Option<ComputeConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Applies the file's values over the defaults.
    pub fn apply(self, config: &mut Config) {
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.database_url {
            config.database_url = v;
        }
        if let Some(v) = self.max_json_body {
            config.max_json_body = v;
        }
        if let Some(v) = self.token_ttl_secs {
            config.token_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.max_db_connections {
            config.max_db_connections = v;
        }
        if let Some(v) = self.currency {
            config.currency = v;
        }
        if let Some(v) = self.keys_dir {
            config.keys_dir = v;
        }
        if let Some(v) = self.storage_dir {
            config.storage.dir = v;
        }
        if let Some(v) = self.s3 {
            config.storage.s3 = Some(v);
        }
        if let Some(v) = self.verify_every_delivery {
            config.storage.verify_every_delivery = v;
        }
        if let Some(v) = self.confirmation_ttl_secs {
            config.confirmation_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.license_term_secs {
            config.license_term = Duration::from_secs(v);
        }
        if let Some(v) = self.max_json_delivery {
            config.max_json_delivery = v;
        }
        if let Some(v) = self.platform_fee_bps {
            config.platform_fee_bps = v;
        }
        if let Some(v) = self.fetch_resource_urls {
            config.fetch_resource_urls = v;
        }
        if let Some(v) = self.plugins {
            config.plugins = v;
        }
        if let Some(v) = self.metrics {
            config.metrics = v;
        }
        if let Some(v) = self.notifications {
            config.notifications = v;
        }
        if let Some(v) = self.compute {
            config.compute = v;
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_json_body < 1024 {
            return Err(ConfigError::Invalid(
                "max_json_body must be at least 1024 bytes".into(),
            ));
        }
        if self.token_ttl < Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "token_ttl_secs must be at least 60".into(),
            ));
        }
        if self.max_db_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_db_connections must be at least 1".into(),
            ));
        }
        if self.confirmation_ttl < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "confirmation_ttl_secs must be at least 1".into(),
            ));
        }
        if self.license_term < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "license_term_secs must be at least 1".into(),
            ));
        }
        // A license term is written as a calendar date; keep it within any date format's reach.
        if self.license_term > Duration::from_secs(100 * 366 * 24 * 3600) {
            return Err(ConfigError::Invalid(
                "license_term_secs must be at most 100 years".into(),
            ));
        }
        if self.max_json_delivery == 0 || self.max_json_delivery > MAX_JSON_DELIVERY_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "max_json_delivery must be between 1 and {MAX_JSON_DELIVERY_LIMIT} bytes"
            )));
        }
        if self.platform_fee_bps > 10_000 {
            return Err(ConfigError::Invalid(
                "platform_fee_bps must be between 0 and 10000 (100 %)".into(),
            ));
        }
        let currency_ok = (3..=8).contains(&self.currency.len())
            && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(ConfigError::Invalid(
                "currency must be an upper-case currency code such as CNY".into(),
            ));
        }
        let p = &self.plugins;
        if p.max_fuel == 0 || p.max_memory_mb == 0 || p.max_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "plugins.max_fuel, max_memory_mb and max_timeout_ms must be positive".into(),
            ));
        }
        if p.max_memory_mb > 4096 {
            return Err(ConfigError::Invalid(
                "plugins.max_memory_mb must be at most 4096 (a 32-bit wasm memory)".into(),
            ));
        }
        for (id, grant) in &p.grants {
            for name in &grant.secrets {
                if !p.secret_env.contains_key(name) {
                    return Err(ConfigError::Invalid(format!(
                        "plugins.grants.{id}: secret '{name}' is not defined in plugins.secret_env"
                    )));
                }
            }
        }
        let n = &self.notifications;
        if n.max_attempts == 0 || n.retry_initial_ms == 0 || n.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "notifications.max_attempts, retry_initial_ms and poll_interval_ms must be \
                 positive"
                    .into(),
            ));
        }
        if n.retry_max_ms < n.retry_initial_ms || n.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "notifications.retry_max_ms must be at least retry_initial_ms, timeout_ms \
                 positive"
                    .into(),
            ));
        }
        let c = &self.compute;
        if c.max_attempts == 0
            || c.retry_initial_ms == 0
            || c.poll_interval_ms == 0
            || c.lease_ms == 0
            || c.hour_ms == 0
            || c.retry_max_ms < c.retry_initial_ms
            || c.bill_lookback_days == 0
            || c.bill_lookback_days > 366
        {
            return Err(ConfigError::Invalid(
                "compute.max_attempts, retry_initial_ms, poll_interval_ms, lease_ms and hour_ms \
                 must be positive, retry_max_ms at least retry_initial_ms, bill_lookback_days \
                 within 1..=366"
                    .into(),
            ));
        }
        if n.sms_auth_header.is_some() != n.sms_auth_secret.is_some() {
            return Err(ConfigError::Invalid(
                "notifications.sms_auth_header and sms_auth_secret go together".into(),
            ));
        }
        if let Some(s3) = &self.storage.s3
            && s3.bucket.trim().is_empty()
        {
            return Err(ConfigError::Invalid("s3.bucket must not be empty".into()));
        }
        Ok(())
    }
}

/// An SQLite URL that creates the file on first use.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}
