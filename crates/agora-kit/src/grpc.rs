//! Serves a set of tonic services with the two things every Agora server must have:
//! `grpc.health.v1` (what Kubernetes probes, Consul checks and the gateway's `/readyz` ask)
//! and server reflection (what grpcurl and the gateway's debugging rely on).
//!
//! Shutdown order matters: on cancellation every service is first reported NOT_SERVING so
//! that load balancers stop sending new calls, then tonic stops accepting and waits for the
//! in-flight calls to finish, then `serve` returns.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;

/// How long in-flight calls may take to finish after shutdown starts. Kubernetes allows 30 s
/// by default before SIGKILL; 10 s leaves room for deregistration and the rest of shutdown,
/// and stops one client that never closes its connection from holding the process open.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `routes` (plus health and reflection) on `listener` until `shutdown` is cancelled and
/// the in-flight calls have drained.
///
/// `service_names` are the fully qualified names (`agora.user.v1.UserService`) whose health
/// is reported individually; the empty name reports the whole server.
pub async fn serve(
    routes: Routes,
    service_names: &[&'static str],
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter.set_service_status(*name, ServingStatus::Serving).await;
    }

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
    let drained = async move {
        shutdown.cancelled().await;
        reporter.set_service_status("", ServingStatus::NotServing).await;
        for name in names {
            reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
        tracing::info!(%addr, "health set to NOT_SERVING; draining in-flight calls");
    };

    tracing::info!(%addr, services = ?service_names, "gRPC server listening");
    let server = tonic::transport::Server::builder()
        // Each call runs under its caller's trace context (or a new one).
        .layer(crate::trace_context::TraceContextLayer)
        .add_routes(routes.add_service(health).add_service(reflection).add_service(reflection_alpha))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), drained);
    tokio::select! {
        result = server => result?,
        () = async {
            deadline.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!(%addr, timeout = ?DRAIN_TIMEOUT, "drain timed out; closing the remaining connections"),
    }
    tracing::info!(%addr, "gRPC server stopped");
    Ok(())
}

/// Binds `addr`, with an error that names the address (the usual cause is a port in use).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// A channel to `addr` that connects on first use and reconnects after failures, so a
/// service starts even when the services it calls are not up yet: those calls fail with
/// `Unavailable` until they are.
pub fn lazy_channel(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    Ok(tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| anyhow::anyhow!("invalid address {addr:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect_lazy())
}
