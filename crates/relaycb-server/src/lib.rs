//! relaycb-server receives the callbacks that Tencent Cloud CSS sends about
//! relay tasks, stores each one durably before answering 200, and serves
//! what every task is doing.
//!
//! The binary is a thin `main` over this library: [`Config`] is its flags,
//! [`start`] opens the store, listens and (with `--nats-url`) publishes
//! every new event to NATS JetStream, and [`Running::shutdown`] stops it
//! gracefully. Tests drive the same [`app`] router without a socket.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use clap::Parser;
//! let config = relaycb_server::Config::parse_from(["relaycb-server", "--listen", "127.0.0.1:0"]);
//! let running = relaycb_server::start(config).await?;
//! println!("listening on {}", running.local_addr());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod publish;
mod routes;
mod serve;
mod store;
mod tasks;
mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use relaycb_core::KeyRing;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use config::{Config, Database, LogFormat};
pub use error::ApiError;
pub use store::StoreError;
pub use telemetry::{LogGuard, init as init_tracing};

use store::StoreHandle;
use tasks::TaskBoard;
use telemetry::metrics::Metrics;

/// An open store with its writer and task state: everything the routes
/// need. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: StoreHandle,
    pub(crate) board: Arc<TaskBoard>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: KeyRing,
    /// Notified after a commit that queued events for publishing; `None`
    /// when publishing is off.
    pub(crate) outbox: Option<Arc<Notify>>,
}

impl Service {
    /// Validates the configuration, opens (creating and migrating) the
    /// store, rebuilds task state from it and starts the writer.
    pub async fn open(config: Config) -> anyhow::Result<Service> {
        config.validate().context("invalid configuration")?;
        let db = config.db.clone();
        let (writer, reader, board, pending) = tokio::task::spawn_blocking(move || {
            let (writer, reader) =
                store::open(&db).with_context(|| format!("cannot open the store {db}"))?;
            let board = TaskBoard::rebuild(&*reader).context("cannot rebuild task state")?;
            let pending = reader.outbox_len().context("cannot count the outbox")?;
            anyhow::Ok((writer, reader, board, pending))
        })
        .await
        .context("store opening task failed")??;
        let board = Arc::new(board);
        let metrics = Arc::new(Metrics::default());
        metrics.outbox_pending(pending);
        // New events go to the outbox only when they are to be published.
        let outbox = config.nats_url.as_ref().map(|_| Arc::new(Notify::new()));
        if outbox.is_none() && pending > 0 {
            // Another server (or an earlier run of this one) publishes;
            // what this one stores is left out of NATS.
            tracing::warn!(
                pending,
                "events wait in the store's outbox for NATS, but this server has no --nats-url: the callbacks it stores will not be published (give every server of a shared store the same --nats-url)"
            );
        }
        let store = StoreHandle::spawn(
            writer,
            reader,
            board.clone(),
            metrics.clone(),
            config.max_rejected,
            outbox.clone(),
        )
        .context("cannot start the store writer")?;
        let keys = KeyRing::new(config.callback_keys.iter().cloned()).with_skew(config.clock_skew);
        Ok(Service {
            shared: Arc::new(Shared {
                config,
                store,
                board,
                metrics,
                keys,
                outbox,
            }),
        })
    }

    /// Commits everything already sent to the writer and closes the store.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.shared
            .store
            .close()
            .await
            .context("closing the store failed")
    }
}

impl Shared {
    /// Brings task state up to date with the store before it is shown: on
    /// a store shared with other servers, their events and retries.
    pub(crate) async fn refresh_tasks(&self) -> Result<(), StoreError> {
        if !self.config.db.is_shared() {
            return Ok(());
        }
        let board = self.board.clone();
        self.store.read(move |reader| board.refresh(reader)).await
    }
}

/// The HTTP routes over an open service, for `axum::serve` or `oneshot`.
///
/// The peer address is recorded when the request carries
/// `ConnectInfo<SocketAddr>`, as [`start`] adds.
pub fn app(service: &Service) -> axum::Router {
    routes::router(service.shared.clone())
}

/// A server listening and serving.
pub struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    publisher: Option<publish::Publisher>,
    service: Service,
}

/// Binds `config.listen`, opens the store and serves until
/// [`Running::shutdown`].
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let listen = config.listen;
    if config.listens_beyond_loopback() {
        if config.callback_token.is_none() {
            tracing::warn!(%listen, "listening beyond loopback without --callback-token: anyone who can reach this address can post callbacks");
        }
        if config.api_token.is_none() {
            tracing::warn!(%listen, "listening beyond loopback without --api-token: anyone who can reach this address can read every stored callback");
        }
    }
    // Bound before the store is opened: a taken port fails at once, before
    // a database is created or migrated for nothing, and callbacks that
    // arrive while task state is rebuilt wait in the backlog.
    config.validate().context("invalid configuration")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let service = Service::open(config).await?;
    let addr = listener.local_addr().context("no local address")?;
    let publisher = match &service.shared.outbox {
        Some(wake) => match publish::start(service.shared.clone(), wake.clone()).await {
            Ok(publisher) => Some(publisher),
            Err(error) => {
                service.close().await.ok();
                return Err(error);
            }
        },
        None => None,
    };
    let router = app(&service);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = serve::Limits {
        max_connections: service.shared.config.max_connections,
        header_timeout: service.shared.config.header_timeout,
    };
    let metrics = service.shared.metrics.clone();
    let server = tokio::spawn(serve::serve(
        listener,
        router,
        limits,
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));
    tracing::info!(%addr, db = %service.shared.config.db, callback_path = %service.shared.config.callback_path, "relaycb-server listening");
    Ok(Running {
        addr,
        stop,
        server,
        publisher,
        service,
    })
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, stops publishing
    /// (what is not yet acknowledged stays in the outbox), flushes the
    /// writer and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let served = self.server.await;
        if let Some(publisher) = self.publisher {
            publisher.stop().await;
        }
        served.context("server task failed")?;
        self.service.close().await?;
        tracing::info!("relaycb-server stopped");
        Ok(())
    }
}
