//! The `liutong` command line.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, FileConfig};
use crate::domain::Role;
use crate::domain::accounts::Accounts;
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
    /// max_db_connections, currency).
    #[arg(long, global = true, env = "LIUTONG_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST:PORT/DB.
    #[arg(long = "database", env = "DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
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
        Ok(config)
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = self.base_config()?;
        match self.command {
            Command::Serve {
                listen,
                database,
                operator_password,
            } => {
                if let Some(listen) = listen {
                    config.listen = listen;
                }
                apply_database(&mut config, database);
                config.operator_password = operator_password;
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
        }
    }
}

fn apply_database(config: &mut Config, arg: DatabaseArg) {
    if let Some(url) = arg.database {
        config.database_url = url;
    }
}

/// One line from standard input; prompts without echo when it is a terminal.
fn read_password() -> anyhow::Result<String> {
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
