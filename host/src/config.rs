//! Runtime configuration: defaults, overlaid by an optional TOML file, overlaid by environment
//! variables and command-line flags (clap resolves those two, flags first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the SQLite database lives when nothing else is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./data/liutong.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

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
        Ok(())
    }
}

/// An SQLite URL that creates the file on first use.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}
