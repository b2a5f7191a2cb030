//! Logging: `LIUTONG_LOG` (or `RUST_LOG`) filters, `LIUTONG_LOG_FORMAT=json` for JSON lines.
//! Every line logged while serving a request carries that request's id (see `api::router`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("LIUTONG_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("LIUTONG_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests start many apps in one process) is harmless: the first one wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
