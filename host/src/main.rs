use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    liutong::telemetry::init();
    let cli = liutong::cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
