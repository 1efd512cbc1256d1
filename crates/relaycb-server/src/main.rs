//! `relaycb-server`: parse the flags, set up logging, start the server and
//! run until SIGINT or SIGTERM, then shut down gracefully.
//!
//! Exit status: 0 after a clean shutdown, 1 when the server could not start
//! or did not stop cleanly (the error chain is printed), 2 for bad flags.

use std::process::ExitCode;

use clap::Parser;
use relaycb_server::{Config, LogFormat};

// The store writer frees and reallocates SQLite's statement journal for
// every upsert; glibc's allocator gives that memory back to the kernel
// (madvise) each time on a thread's own arena, and mimalloc keeps it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let format = config.log_format;
    // Dropped last, after the error below is logged: every line is written.
    let _logs = relaycb_server::init_tracing(format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once: as a log line where the log is read by programs, else as
            // the plain sentence a person at the terminal reads.
            match format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Pretty => eprintln!("relaycb-server: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let running = relaycb_server::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested; finishing requests in flight");
    running.shutdown().await
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
