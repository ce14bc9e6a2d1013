//! Serves a set of tonic services with the two things every Agora server must have:
//! `grpc.health.v1` (what Kubernetes probes, Consul checks and the gateway's `/readyz` ask)
//! and server reflection (what grpcurl and the gateway's debugging rely on).
//!
//! A [`Listener`] is the socket plus who must hear about the server: an [`Announcer`] (the
//! Consul registration) is told once the server is SERVING and again when it stops.
//!
//! Shutdown order matters: on cancellation every service is first reported NOT_SERVING,
//! then the announcer withdraws the instance (deregisters it) so callers stop choosing it,
//! then tonic stops accepting and waits for the in-flight calls to finish, then `serve`
//! returns.
//!
//! With [`Listener::with_tls`] the server speaks mutual TLS only: a caller without a
//! certificate from the deployment's CA never gets past the handshake, and every call is held
//! to the callers its method declares ([`crate::callers`]).

use std::{fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    callers::{AuthorizeLayer, Callers},
    tls::{self, Credentials},
};
use tonic::{service::Routes, transport::server::TcpIncoming};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};

/// Tells the outside world (a service registry) that this server is up, and later that it
/// is going away.
#[async_trait::async_trait]
pub trait Announcer: Send + Sync + fmt::Debug {
    /// The server listens at `addr` and reports SERVING. Returns once the announcement is
    /// under way; keeping it true (e.g. registering again after the registry restarts) is the
    /// announcer's own job until [`Announcer::withdraw`].
    async fn announce(&self, addr: SocketAddr);
    /// The server is NOT_SERVING and about to drain: stop sending callers here.
    async fn withdraw(&self);
}

/// The health a server reports, by service name (the empty name is the whole server). A
/// clone shares the state: whoever holds one can turn the server NOT_SERVING (a lost
/// dependency, a test) and back.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Default for Health {
    fn default() -> Self {
        Self { reporter: HealthReporter::new() }
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the whole server and each of `services` to `status`.
    pub async fn set(&self, services: &[&str], status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in services {
            self.reporter.set_service_status(*name, status).await;
        }
    }

    fn server(&self) -> tonic_health::pb::health_server::HealthServer<HealthService> {
        tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }
}

/// Where a gRPC server listens, and who hears about it.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    announcer: Option<Arc<dyn Announcer>>,
    health: Health,
    tls: Option<Arc<Credentials>>,
    health_port: Option<TcpListener>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, announcer: None, health: Health::new(), tls: None, health_port: None }
    }
}

impl Listener {
    /// The server will be announced by `announcer` once it serves.
    pub fn announced(mut self, announcer: Arc<dyn Announcer>) -> Self {
        self.announcer = Some(announcer);
        self
    }

    /// The server reports `health` (keep a clone to change it later).
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// The server speaks mutual TLS with `creds` and authorizes every call by its caller.
    pub fn with_tls(mut self, creds: Option<Arc<Credentials>>) -> Self {
        self.tls = creds;
        self
    }

    pub fn tls(&self) -> Option<&Arc<Credentials>> {
        self.tls.as_ref()
    }

    /// `grpc.health.v1` alone is also served on `health_port`, in plaintext: what Kubernetes'
    /// probes and Consul's checks ask when the server itself speaks mutual TLS only. It reports
    /// the same health, and stops with the server.
    pub fn with_health_port(mut self, health_port: Option<TcpListener>) -> Self {
        self.health_port = health_port;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The socket and the announcer, for a server other than [`serve`] (the gateway's HTTP).
    pub fn into_parts(self) -> (TcpListener, Option<Arc<dyn Announcer>>) {
        (self.tcp, self.announcer)
    }
}

/// Runs `routes` (plus health and reflection) on `listener` until `shutdown` is cancelled and
/// the in-flight calls have drained.
///
/// `service_names` are the fully qualified names (`agora.user.v1.UserService`) whose health
/// is reported individually; the empty name reports the whole server.
pub async fn serve(
    routes: Routes,
    service_names: &[&'static str],
    listener: impl Into<Listener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Listener { tcp: listener, announcer, health, tls, health_port } = listener.into();
    let addr = listener.local_addr()?;
    health.set(service_names, ServingStatus::Serving).await;
    let health_only = match health_port {
        Some(port) => Some(serve_health(port, &health)?),
        None => None,
    };

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agora_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agora_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let names: Vec<&'static str> = service_names.to_vec();
    let deadline = shutdown.clone();
    let health_server = health.server();
    let withdrawing = announcer.clone();
    let drained = async move {
        shutdown.cancelled().await;
        health.set(&names, ServingStatus::NotServing).await;
        tracing::info!(%addr, "health set to NOT_SERVING");
        if let Some(announcer) = withdrawing {
            announcer.withdraw().await;
        }
        tracing::info!(%addr, "draining in-flight calls");
    };

    let ready_in_ms = crate::telemetry::since_start().as_millis();
    let identity = tls.as_ref().map(|creds| creds.identity().to_string());
    tracing::info!(%addr, services = ?service_names, ready_in_ms, mtls = ?identity, "gRPC server listening");
    if let Some(announcer) = &announcer {
        announcer.announce(addr).await;
    }
    let router = tonic::transport::Server::builder()
        // Each call is observed (span, metrics) and runs under its caller's trace context.
        .layer(crate::rpc::ServerLayer)
        // Under mutual TLS, a caller the method does not name is refused.
        .layer(tower::util::option_layer(tls.as_ref().map(|_| AuthorizeLayer::new(Callers::agora()))))
        // A call that is safe twice waits out a database failover instead of failing.
        .layer(crate::patience::PatienceLayer::default())
        .add_routes(routes.add_service(health_server).add_service(reflection).add_service(reflection_alpha));
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match &tls {
        // Without TCP_NODELAY a reply that ends in a small write waits for the caller's
        // delayed ACK: 40 ms on Linux, at the p90 of a busy service (docs/benchmarks.md).
        None => {
            Box::pin(router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), drained))
        }
        Some(creds) => Box::pin(
            router.serve_with_incoming_shutdown(tls::incoming(listener, creds.server_config(&[b"h2"])), drained),
        ),
    };
    let served = crate::net::drain_bounded(server, &deadline, addr).await;
    if let Some((stop, task)) = health_only {
        stop.cancel();
        // It has no calls to drain but the one in flight, and it ends with the process anyway.
        drop(task.await);
    }
    served?;
    tracing::info!(%addr, "gRPC server stopped");
    Ok(())
}

/// Serves `health` alone on `tcp`, in plaintext, until the returned token is cancelled.
fn serve_health(
    tcp: TcpListener,
    health: &Health,
) -> std::io::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let addr = tcp.local_addr()?;
    let stop = CancellationToken::new();
    let server = tonic::transport::Server::builder().add_service(health.server());
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let incoming = TcpIncoming::from(tcp).with_nodelay(Some(true));
        if let Err(e) = server.serve_with_incoming_shutdown(incoming, stopped.cancelled_owned()).await {
            tracing::error!(%addr, error = %e, "the health port failed");
        }
    });
    tracing::info!(%addr, "gRPC health served in plaintext on the health port");
    Ok((stop, task))
}

/// A channel to `addr` that connects on first use and reconnects after failures, so a
/// service starts even when the services it calls are not up yet: those calls fail with
/// `Unavailable` until they are.
pub fn lazy_channel(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(endpoint(addr)?.connect_timeout(std::time::Duration::from_secs(2)).connect_lazy())
}

/// The endpoint of `addr` (`HOST:PORT`, or a URL), with an error that names it.
pub fn endpoint(addr: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    tonic::transport::Endpoint::from_shared(uri).map_err(|e| anyhow::anyhow!("invalid address {addr:?}: {e}"))
}
