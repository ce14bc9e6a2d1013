//! Sockets, with errors that name the address.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds `addr`, with an error that names the address (the usual cause is a port in use).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
