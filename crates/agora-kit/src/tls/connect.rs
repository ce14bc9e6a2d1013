//! The client side: a connector for tonic's channels that dials TCP, then TLS to one role.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::Credentials;

/// Connects to instances of one role: the server must present a certificate from a trusted
/// CA naming that role, and is shown this role's own certificate.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    /// Sent as SNI only; the identity check is the URI SAN's, not a host name's.
    server_name: ServerName<'static>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Connector {
    pub fn new(creds: &Arc<Credentials>, role: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let server_name = ServerName::try_from(role.to_owned())
            .map_err(|e| anyhow::anyhow!("{role:?} cannot be a TLS server name: {e}"))?;
        Ok(Self {
            tls: TlsConnector::from(creds.client_config(creds.identity_of_role(role))),
            server_name,
            connect_timeout,
        })
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host =
                uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: no host")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::time::timeout(this.connect_timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {uri} timed out")))??;
            tcp.set_nodelay(true)?;
            let tls = this.tls.connect(this.server_name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
