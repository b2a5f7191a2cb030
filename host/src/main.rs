use clap::Parser;

// glibc's malloc took ~5 % of the server's CPU in the trading bench's profile (allocation
// and consolidation across threads); mimalloc's thread-local heaps cost less for a server that
// hands small buffers between runtime, database and crypto threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
