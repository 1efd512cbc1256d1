//! The accept loop: HTTP/1.1 over TCP with the limits a server facing the
//! internet needs, which `axum::serve` does not set.
//!
//! - At most `--max-connections` connections at once; one more is closed
//!   as soon as it is accepted (and counted), so a flood of idle sockets
//!   cannot exhaust file descriptors or memory.
//! - A request's head must arrive within `--header-timeout`, and an idle
//!   keep-alive connection is closed after the same time, so a client that
//!   trickles its headers, or says nothing, does not hold a slot for ever
//!   (the body has its own timeout in the callback route).
//! - On stop, no new connection is accepted; requests in flight finish
//!   (each answered only after its commit), idle connections are closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::telemetry::metrics::Metrics;

/// What bounds the connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` resolves, then waits for the
/// connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut saturated = false;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or the peer gave up first:
                    // wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // FIXME: the limit is global, not per peer: one peer that opens
        // every slot shuts the others out until its connections time out.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connection_refused();
            if !saturated {
                saturated = true;
                tracing::warn!(
                    max_connections = limits.max_connections,
                    %peer,
                    "too many connections; new ones are closed until some end"
                );
            }
            drop(stream);
            continue;
        };
        saturated = false;
        metrics.connection_opened();
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            metrics.connection_closed();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
