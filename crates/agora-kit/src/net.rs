//! Sockets, with errors that name the address, and the bounded drain every server ends with.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight calls may take to finish after shutdown starts. Kubernetes allows 30 s
/// by default before SIGKILL; 10 s leaves room for deregistration and the rest of shutdown,
/// and stops one client that never closes its connection from holding the process open.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr`, with an error that names the address (the usual cause is a port in use).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Binds `addr` with `SO_REUSEPORT`, so that other processes that bind it the same way share
/// it: the kernel spreads new connections over all of them, and while one is gone the others
/// take every new connection. A port held without the option still refuses (a port in use).
pub fn bind_shared(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let refused = |e: std::io::Error| anyhow::anyhow!("cannot listen on {addr} (shared): {e}");
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(refused)?;
    socket.set_reuseaddr(true).map_err(refused)?;
    socket.set_reuseport(true).map_err(refused)?;
    socket.bind(addr).map_err(refused)?;
    socket.listen(1024).map_err(refused)
}

/// Runs `server` (which stops accepting once `shutdown` is cancelled and ends when its
/// in-flight work is done) to its end, or to [`DRAIN_TIMEOUT`] after `shutdown`, when the
/// connections still open are closed with it.
pub async fn drain_bounded<E>(
    server: impl Future<Output = Result<(), E>>,
    shutdown: &CancellationToken,
    addr: SocketAddr,
) -> Result<(), E> {
    tokio::select! {
        result = server => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!(%addr, timeout = ?DRAIN_TIMEOUT, "drain timed out; closing the remaining connections");
            Ok(())
        }
    }
}
