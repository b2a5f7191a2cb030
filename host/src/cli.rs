//! The `liutong` command line.

mod plugin;

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, FileConfig};
use crate::crypto::KeyRing;
use crate::domain::Role;
use crate::services::accounts::Accounts;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "liutong",
    version,
    about = "Data-resource marketplace host of an AI compute network (T/AI 123.12)",
    long_about = "Data-resource marketplace host of an AI compute network (T/AI 123.12).\n\n\
        Settings come from built-in defaults, then the TOML file given by --config, then \
        environment variables, then flags; later ones win. With no database configured, an \
        SQLite file ./data/liutong.db is created on first start."
)]
pub struct Cli {
    /// TOML configuration file (keys: listen, database_url, max_json_body, token_ttl_secs,
    /// max_db_connections, currency, keys_dir, storage_dir, [s3], confirmation_ttl_secs,
    /// license_term_secs, max_json_delivery, platform_fee_bps, fetch_resource_urls, metrics,
    /// [plugins]).
    #[arg(long, global = true, env = "LIUTONG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// Database URL: sqlite://PATH (the file is created when missing) or
    /// postgres://USER@HOST:PORT/DB.
    #[arg(long = "database", env = "DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeysDirArg {
    /// Directory of the operator's signing keys and escrow identities [default: ./data/keys].
    #[arg(long = "keys-dir", env = "LIUTONG_KEYS_DIR", value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations and serve the HTTP API until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LIUTONG_LISTEN", value_name = "ADDR")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        database: DatabaseArg,
        /// Password of the bootstrap account 'operator', created when no operator exists.
        #[arg(long, env = "LIUTONG_OPERATOR_PASSWORD", hide_env_values = true)]
        operator_password: Option<String>,
        #[command(flatten)]
        keys: KeysDirArg,
        /// Directory of uploaded data files, unless S3 is configured [default: ./data/files].
        #[arg(long = "storage-dir", env = "LIUTONG_STORAGE_DIR", value_name = "DIR")]
        storage_dir: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage the operator's signing keys and escrow identities.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write, build, sign, verify and install WebAssembly plugins (see docs/plugins.md).
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// The identifier gateway on the enterprise side: collect from the provider's
    /// cloud-management API, map, validate, forward signed batches to the platform (see
    /// docs/provider-access.md §3).
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Collect and forward every poll_interval_secs until SIGTERM or Ctrl-C.
    Run {
        /// The gateway's TOML configuration file (platform, key, source, mapping).
        file: PathBuf,
        /// One cycle: collect once, forward the backlog, exit (non-zero if forwarding failed;
        /// the backlog is kept for the next run).
        #[arg(long)]
        once: bool,
    },
    /// Check a configuration file and its mapping without collecting anything.
    Check { file: PathBuf },
    /// Create an Ed25519 key (PKCS#8 PEM, mode 0600) and print the public key to register
    /// with PUT /v1/provider/gateway-key.
    Keygen {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the first Ed25519 signing key and age escrow identity (`serve` does this on
    /// first start); refuses if keys exist.
    Init {
        #[command(flatten)]
        keys: KeysDirArg,
    },
    /// Add a new signing key and escrow identity and make them current; old ones stay, so old
    /// signatures keep verifying and old deposits stay openable. Restart `serve` to use them.
    Rotate {
        #[command(flatten)]
        keys: KeysDirArg,
    },
    /// Print the public signing keys and the escrow recipient.
    Show {
        #[command(flatten)]
        keys: KeysDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account of any role; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Mobile number (optional for accounts created here).
        #[arg(long)]
        phone: Option<String>,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Enterprise,
    Operator,
    #[value(name = "data_space")]
    DataSpace,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Enterprise => Role::Enterprise,
            RoleArg::Operator => Role::Operator,
            RoleArg::DataSpace => Role::DataSpace,
        }
    }
}

impl Cli {
    fn base_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            FileConfig::load(path)?.apply(&mut config);
        }
        // Every command refuses a file with a value out of range, not only `serve`: an
        // operator who runs `migrate` with the production file learns of it before deploying.
        config.validate()?;
        Ok(config)
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = self.base_config()?;
        match self.command {
            Command::Serve {
                listen,
                database,
                operator_password,
                keys,
                storage_dir,
            } => {
                if let Some(listen) = listen {
                    config.listen = listen;
                }
                apply_database(&mut config, database);
                config.operator_password = operator_password;
                apply_keys_dir(&mut config, keys);
                if let Some(dir) = storage_dir {
                    config.storage.dir = dir;
                }
                let app = crate::App::build(config).await?;
                tracing::info!(address = %app.local_addr()?, "liutong is serving");
                app.serve().await?;
                Ok(())
            }
            Command::Migrate { database } => {
                apply_database(&mut config, database);
                let store = Store::connect(&config.database_url, 1).await?;
                store.migrate().await?;
                println!(
                    "migrations applied to the {} database",
                    store.backend().name()
                );
                Ok(())
            }
            Command::Account {
                command:
                    AccountCommand::Create {
                        username,
                        role,
                        phone,
                        database,
                    },
            } => {
                apply_database(&mut config, database);
                let password = read_password()?;
                let store = Store::connect(&config.database_url, 1).await?;
                store.migrate().await?;
                let accounts = Accounts::new(store, config.token_ttl);
                let id = accounts
                    .register(&username, &password, phone.as_deref(), role.into())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("created account {username} ({id})");
                Ok(())
            }
            Command::Keys { command } => {
                let (keys, action) = match command {
                    KeysCommand::Init { keys } => (keys, KeyAction::Init),
                    KeysCommand::Rotate { keys } => (keys, KeyAction::Rotate),
                    KeysCommand::Show { keys } => (keys, KeyAction::Show),
                };
                apply_keys_dir(&mut config, keys);
                let dir = &config.keys_dir;
                let ring = match action {
                    KeyAction::Init => KeyRing::init(dir)?,
                    KeyAction::Rotate => KeyRing::rotate(dir)?,
                    KeyAction::Show => KeyRing::load(dir)?,
                };
                match action {
                    KeyAction::Init => println!("created keys in {}", dir.display()),
                    KeyAction::Rotate => println!(
                        "rotated keys in {}; restart `liutong serve` to sign with the new key",
                        dir.display()
                    ),
                    KeyAction::Show => {}
                }
                for key in ring.public_signing_keys() {
                    println!(
                        "signing key {} Ed25519 {}{}",
                        key.key_id,
                        key.public_key,
                        if key.current { " (current)" } else { "" }
                    );
                }
                println!("escrow recipient {}", ring.escrow_recipient());
                Ok(())
            }
            Command::Plugin { command } => plugin::run(command, &config).await,
            Command::Gateway { command } => run_gateway(command).await,
        }
    }
}

async fn run_gateway(command: GatewayCommand) -> anyhow::Result<()> {
    use crate::services::gateway_agent::{Agent, keygen};
    let formats = [(
        crate::domain::provider::CREDIT_CODE_FORMAT,
        crate::domain::provider::is_credit_code as fn(&str) -> bool,
    )];
    match command {
        GatewayCommand::Keygen { out } => {
            let (public_key, key_id) = keygen(&out)?;
            println!("wrote {}", out.display());
            println!("key id {key_id}");
            println!("public key {public_key}");
            Ok(())
        }
        GatewayCommand::Check { file } => {
            let key_id = Agent::check(&file)?;
            println!("{}: valid; signing key {key_id}", file.display());
            Ok(())
        }
        GatewayCommand::Run { file, once } => {
            let mut agent = Agent::load(&file, &formats)?;
            tracing::info!(key_id = agent.key_id(), "gateway started");
            let report = agent.run(once, crate::app::shutdown_signal()).await?;
            if once {
                println!(
                    "collected {} queued {} rejected {} forwarded {} accepted {} duplicates {} \
                     refused {}",
                    report.collected,
                    report.queued,
                    report.rejected,
                    report.forwarded,
                    report.accepted,
                    report.duplicates,
                    report.refused_by_platform
                );
            }
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum KeyAction {
    Init,
    Rotate,
    Show,
}

fn apply_keys_dir(config: &mut Config, arg: KeysDirArg) {
    if let Some(dir) = arg.keys_dir {
        config.keys_dir = dir;
    }
}

fn apply_database(config: &mut Config, arg: DatabaseArg) {
    if let Some(url) = arg.database {
        config.database_url = url;
    }
}

/// One line from standard input; prompts without echo when it is a terminal.
pub(crate) fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ").context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(password)
}
