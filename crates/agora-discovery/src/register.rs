//! Keeping one instance registered with the local Consul agent for as long as it serves.
//!
//! The agent may lose the registration (a restart of a `-dev` agent forgets everything; an
//! operator may remove it): a keeper task watches the instance with blocking queries and
//! registers it again. On shutdown the keeper stops and the instance is deregistered, so
//! callers' watches drop it at once instead of after a failed check.

use std::{collections::BTreeMap, net::SocketAddr, sync::Mutex, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consul::{Check, Consul, ServiceRegistration, go_duration};

/// How long one "is it still registered?" query may block.
const KEEPER_WAIT: Duration = Duration::from_secs(30);
/// Pause after a failed call to the agent before the next try.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How the agent checks an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTiming {
    pub interval: Duration,
    /// After this long critical, the agent removes the instance itself (a process that died
    /// without deregistering). Consul's reaper runs every 30 s and accepts 1 min at least.
    pub deregister_after: Duration,
}

impl Default for CheckTiming {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), deregister_after: Duration::from_secs(60) }
    }
}

/// What the agent checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `grpc.health.v1.Health/Check` for this service name.
    Grpc(String),
    /// An HTTP GET of this path that must answer 2xx.
    Http(String),
    /// The same over HTTPS.
    Https(String),
    /// A TCP connection accepted: for a gRPC server that speaks mutual TLS only, which the
    /// agent, holding no certificate of the deployment, cannot ask for its health.
    Tcp,
    /// `grpc.health.v1.Health/Check` for this service name at another address, in plaintext:
    /// the health port of a server that speaks mutual TLS (`--health-listen`).
    GrpcAt(SocketAddr, String),
}

/// An instance's registration, kept alive between [`Registration::start`] and
/// [`Registration::stop`].
#[derive(Debug)]
pub struct Registration {
    consul: Consul,
    service: ServiceRegistration,
    keeper: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Registration {
    /// The instance of `name` reachable at `advertise`, checked by `probe`.
    ///
    /// Its id is `NAME-HOST-PORT`: unique per address, and the same after a restart, so a
    /// restarted instance replaces its old entry instead of leaving a critical twin behind.
    pub fn new(
        consul: Consul,
        name: &str,
        advertise: SocketAddr,
        probe: Probe,
        timing: CheckTiming,
        version: &str,
    ) -> Self {
        let host = advertise.ip().to_string();
        let target = advertise.to_string();
        let (check_name, grpc, http) = match &probe {
            Probe::Grpc(service) => ("gRPC health", Some(format!("{target}/{service}")), None),
            Probe::Http(path) => ("HTTP health", None, Some(format!("http://{target}{path}"))),
            Probe::Https(path) => ("HTTPS health", None, Some(format!("https://{target}{path}"))),
            Probe::Tcp => ("TCP", None, None),
            Probe::GrpcAt(health, service) => ("gRPC health (health port)", Some(format!("{health}/{service}")), None),
        };
        let service = ServiceRegistration {
            id: format!("{name}-{host}-{}", advertise.port()),
            name: name.to_owned(),
            address: host,
            port: advertise.port(),
            meta: BTreeMap::from([("version".to_owned(), version.to_owned())]),
            check: Check {
                name: check_name.to_owned(),
                grpc_use_tls: grpc.as_ref().map(|_| false),
                grpc,
                http,
                tls_skip_verify: matches!(probe, Probe::Https(_)).then_some(true),
                tcp: matches!(probe, Probe::Tcp).then(|| target.clone()),
                interval: go_duration(timing.interval),
                // A check slower than its interval would overlap the next one.
                timeout: go_duration(timing.interval.min(Duration::from_secs(2))),
                deregister_critical_service_after: go_duration(timing.deregister_after),
                // An instance registers once it serves, so it starts passing: a process
                // restarted after a crash takes calls at once, not up to an interval later.
                status: Some("passing".to_owned()),
            },
        };
        Self { consul, service, keeper: Mutex::new(None) }
    }

    pub fn id(&self) -> &str {
        &self.service.id
    }

    /// For one of several processes that share their address (`SO_REUSEPORT`): an id of this
    /// process's own, so that each registers, and one going away withdraws only itself.
    #[must_use]
    pub fn sharing_address(mut self) -> Self {
        self.service.id = format!("{}-{}", self.service.id, std::process::id());
        self
    }

    /// Registers the instance now (if the agent answers) and keeps it registered.
    pub async fn start(&self) {
        self.stop_keeper();
        let first = self.consul.register(&self.service).await;
        match &first {
            Ok(()) => tracing::info!(id = %self.service.id, consul = %self.consul.address(), "registered with Consul"),
            Err(e) => tracing::warn!(id = %self.service.id, error = %e, "cannot register with Consul yet; retrying"),
        }
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep(self.consul.clone(), self.service.clone(), first.is_ok(), stop.clone()));
        *self.keeper.lock().unwrap() = Some((stop, keeper));
    }

    /// Stops keeping the instance registered and removes it from the agent.
    pub async fn stop(&self) {
        if let Some((stop, keeper)) = self.stop_keeper() {
            stop.cancel();
            let _ = keeper.await;
        }
        match self.consul.deregister(&self.service.id).await {
            Ok(()) => tracing::info!(id = %self.service.id, "deregistered from Consul"),
            Err(e) => tracing::warn!(
                id = %self.service.id,
                error = %e,
                "cannot deregister; the failing health check removes the instance from rotation"
            ),
        }
    }

    fn stop_keeper(&self) -> Option<(CancellationToken, JoinHandle<()>)> {
        let taken = self.keeper.lock().unwrap().take();
        if let Some((stop, _)) = &taken {
            stop.cancel();
        }
        taken
    }
}

#[async_trait::async_trait]
impl agora_kit::grpc::Announcer for Registration {
    async fn announce(&self, _addr: SocketAddr) {
        self.start().await;
    }

    async fn withdraw(&self) {
        self.stop().await;
    }
}

/// Registers `service` whenever the agent does not have it, until `stop`.
async fn keep(consul: Consul, service: ServiceRegistration, mut registered: bool, stop: CancellationToken) {
    let mut hash: Option<String> = None;
    let mut failing = false;
    loop {
        let step = async {
            if !registered {
                consul.register(&service).await?;
                registered = true;
                hash = None;
                tracing::info!(id = %service.id, "registered with Consul again");
            }
            // Blocks until the definition changes (or KEEPER_WAIT): cheap for the agent.
            match consul.registered(&service.id, hash.as_deref(), KEEPER_WAIT).await? {
                Some(current) => hash = Some(current),
                None => {
                    tracing::warn!(id = %service.id, "the Consul agent lost this instance's registration");
                    registered = false;
                }
            }
            Ok::<(), crate::consul::ConsulError>(())
        };
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = step => result,
        };
        match result {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(id = %service.id, error = %e, "Consul agent unreachable; will register again when it returns");
                }
                failing = true;
                // A restarted agent has forgotten us; registering is idempotent anyway.
                registered = false;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_sharing_an_address_register_under_ids_of_their_own() {
        let consul = Consul::new("127.0.0.1:1", None).unwrap();
        let timing = CheckTiming { interval: Duration::from_secs(5), deregister_after: Duration::from_secs(60) };
        let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let one = || Registration::new(consul.clone(), "gateway", addr, Probe::Http("/healthz".into()), timing, "1");
        assert_eq!(one().id(), "gateway-10.0.0.7-8080", "one per address: a restart replaces its old registration");
        assert_eq!(one().sharing_address().id(), format!("gateway-10.0.0.7-8080-{}", std::process::id()));
    }

    #[test]
    fn a_health_port_is_checked_in_plaintext_where_it_is_while_callers_get_the_service_address() {
        let consul = Consul::new("127.0.0.1:1", None).unwrap();
        let timing = CheckTiming { interval: Duration::from_secs(5), deregister_after: Duration::from_secs(60) };
        let (addr, health): (SocketAddr, SocketAddr) =
            ("10.0.0.7:50052".parse().unwrap(), "10.0.0.7:8086".parse().unwrap());
        let probe = Probe::GrpcAt(health, "agora.product.v1.ProductService".to_owned());
        let registration = Registration::new(consul, "product-service", addr, probe, timing, "1");
        let json = serde_json::to_value(&registration.service).unwrap();
        assert_eq!((json["Address"].as_str(), json["Port"].as_u64()), (Some("10.0.0.7"), Some(50052)));
        assert_eq!(json["Check"]["GRPC"], "10.0.0.7:8086/agora.product.v1.ProductService");
        assert_eq!(json["Check"]["GRPCUseTLS"], false);
    }
}
