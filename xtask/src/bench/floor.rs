//! The floor of the ingest benchmark: what HTTP alone costs on this
//! machine. An axum route that reads the body and answers `{"code":0}`
//! without decoding or storing anything, on the same runtime shape as
//! relaycb-server (tokio's multi-thread default). Run as its own process,
//! `xtask bench-floor --listen ADDR`, so that it is measured like the
//! servers it is compared with.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;

/// Serves the floor on `--listen ADDR` until SIGTERM or SIGINT.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let addr: SocketAddr = match args {
        [flag, value] if flag == "--listen" => value
            .parse()
            .with_context(|| format!("--listen expects an address, found {value:?}"))?,
        other => bail!("usage: xtask bench-floor --listen ADDR, found {other:?}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let app = Router::new().fallback(answer);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .context("the floor server failed")
}

/// Reads the whole body, as any receiver must, and answers success.
async fn answer(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body);
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"code":0}"#,
    )
}
