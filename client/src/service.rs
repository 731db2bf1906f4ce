//! The client API service: the REST server and the [`Driver`] (the network towards the
//! cluster and the client-API core), both on the Tokio runtime.

use crate::config::ClientConfig;
use crate::connections::{self, ConnectionCounts, HttpLimits};
use crate::driver::Driver;
use crate::http;
use crate::subscriptions::Subscriptions;
use anyhow::Context;
use common::node::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running client API. Dropping it (or [`ClientHandle::shutdown`]) stops the REST
/// server; in-flight requests finish first.
pub struct ClientHandle {
    address: SocketAddr,
    /// Dropping the sender tells the server to stop.
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl ClientHandle {
    /// The address the REST API is bound to (useful when `listen` had port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the REST server and waits until it has stopped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.take();
        self.join().await
    }

    /// Serves until the server fails (it otherwise runs until the process is killed).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        self.join().await
    }

    async fn join(&mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server
                .await
                .context("the REST server task failed")?
                .context("the REST server stopped"),
            None => Ok(()),
        }
    }
}

/// Starts the client API of `config`: binds `config.listen` (port 0 picks a free port),
/// connects to the proposers and learners, and serves the REST API in the background.
pub async fn start(config: ClientConfig) -> anyhow::Result<ClientHandle> {
    let listener = listen(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (CLIENT_PORT)", config.listen))?;
    let address = listener.local_addr()?;
    let driver = Driver::connect(&config)
        .await
        .context("cannot start the client network")?;
    let node = NodeId::client(config.id);
    let subscriptions = match &config.data_dir {
        Some(data_dir) => {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || Subscriptions::open(&data_dir))
                .await?
                .context("cannot open the subscriptions (DATA_DIR)")?
        }
        None => Subscriptions::in_memory(),
    };
    let subscriptions = Arc::new(subscriptions);
    let router =
        http::router_with_subscriptions(driver, node.to_string(), Arc::clone(&subscriptions));
    let limits = HttpLimits::from_config(&config);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stopped = async move {
            // Resolves on a stop signal and when the handle is dropped.
            let _ = stopped.await;
            // Event streams never end by themselves; the server waits for them.
            subscriptions.close_streams();
        };
        let counts = Arc::new(ConnectionCounts::default());
        connections::serve(listener, router, limits, counts, stopped).await
    });
    tracing::info!(
        %node,
        %address,
        proposers = ?config.proposer_hosts,
        learners = ?config.learner_hosts,
        header_timeout_milliseconds = limits.header_timeout.as_millis() as u64,
        idle_timeout_milliseconds = limits.idle_timeout.as_millis() as u64,
        max_connections = limits.max_connections,
        "client API listening"
    );
    Ok(ClientHandle {
        address,
        stop: Some(stop),
        server: Some(server),
    })
}

/// Runs the client API of `config` until the process is killed.
pub async fn run(config: ClientConfig) -> anyhow::Result<()> {
    start(config).await?.wait().await
}

/// Connections that may wait to be accepted. Many clients connecting at once (a load
/// generator's 256) overflowed the default of 128: the kernel dropped their handshakes and
/// each such client waited a SYN-ACK retransmission, one second, for its first request.
/// The kernel caps this at `net.core.somaxconn` (4096 by default).
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `address` (`ip:port`, or `host:port` resolved to its first address) with a
/// backlog of [`ACCEPT_BACKLOG`].
async fn listen(address: &str) -> std::io::Result<TcpListener> {
    let resolved = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{address} resolves to no address")))?;
    let socket = match resolved {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(ACCEPT_BACKLOG)
}
