//! Running one role: config = defaults < `--config` file < flags / `AGORA_*` environment.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agora_discovery::{CheckTiming, Consul, Policy, Probe, Registration, Resolver};
use agora_events::{EventBus, Host, KafkaBus, KafkaOptions, LocalBus};
use agora_kit::{
    config,
    grpc::Listener,
    tls::{Credentials, PublicCert, Reload as _, TlsFiles},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{Common, DiscoveryArgs, DiscoveryMode, Events, GatewayArgs, OrderArgs, PaymentArgs, ProductArgs, UserArgs},
    role::{GATEWAY, ORDER, PAYMENT, PRODUCT, USER},
};

/// Serves `/metrics` on `--metrics-listen`, if given, until `shutdown`.
fn serve_metrics(common: &Common, shutdown: &CancellationToken) {
    if let Some(addr) = common.metrics_listen {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = agora_kit::metrics::serve(addr, shutdown).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics");
            }
        });
    }
}

/// The event bus the flags ask for.
pub async fn bus(common: &Common) -> anyhow::Result<Arc<dyn EventBus>> {
    match common.events {
        Events::Memory => Ok(Arc::new(LocalBus::open(&common.bus_url).await?)),
        Events::Kafka => {
            let options = KafkaOptions {
                partitions: common.kafka_partitions,
                replication: common.kafka_replication,
                prefix: common.kafka_prefix.clone(),
                security: common.kafka.security()?,
                ..KafkaOptions::new(&common.kafka_brokers)
            };
            Ok(Arc::new(KafkaBus::new(options)?))
        }
    }
}

/// What a service role runs on: the bus its flags ask for, its listener (announced with
/// `--discovery consul`, checked through grpc.health.v1 for `grpc_service`) and, with
/// `--metrics-listen`, `/metrics` beside it.
async fn host(
    common: &Common,
    listen_addr: SocketAddr,
    role: &str,
    grpc_service: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<Host> {
    let bus = bus(common).await?;
    let tls = credentials(&common.discovery, role, &shutdown)?;
    let health_port = match common.health_listen {
        Some(addr) => Some(agora_kit::net::bind(addr).await?),
        None => None,
    };
    let health_at = health_port.as_ref().map(TcpListener::local_addr).transpose()?;
    let (health_advertised, mtls) = (common.health_advertise_addr, tls.is_some());
    // Consul's agent holds no certificate of the deployment: under mutual TLS it asks the
    // plaintext health port, or without one can only see that the port accepts connections
    // (a stopping instance deregisters itself first).
    let probe = |advertised: SocketAddr| match (health_at, mtls) {
        (Some(local), _) => {
            let at = match health_advertised {
                Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), local.port()),
                Some(addr) => addr,
                None => SocketAddr::new(advertised.ip(), local.port()),
            };
            Probe::GrpcAt(at, grpc_service.to_owned())
        }
        (None, true) => Probe::Tcp,
        (None, false) => Probe::Grpc(grpc_service.to_owned()),
    };
    let tcp: TcpListener = agora_kit::net::bind(listen_addr).await?;
    let listener = announce(Listener::from(tcp), &common.discovery, role, probe, |registration| registration)?
        .with_tls(tls)
        .with_health_port(health_port);
    serve_metrics(common, &shutdown);
    Ok(Host::new(bus, listener, shutdown))
}

pub async fn user(args: UserArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: user_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let host = host(&args.common, args.listen, USER, user_service::SERVICE_NAME, shutdown).await?;
    user_service::run(cfg, host).await
}

pub async fn product(args: ProductArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: product_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let host = host(&args.common, args.listen, PRODUCT, product_service::SERVICE_NAME, shutdown).await?;
    product_service::run(cfg, host).await
}

pub async fn order(mut args: OrderArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.common.discovery.discovery == DiscoveryMode::Consul {
        args.user_addr.get_or_insert_with(|| consul_target(USER));
        args.product_addr.get_or_insert_with(|| consul_target(PRODUCT));
    }
    let mut cfg: order_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let host = host(&args.common, args.listen, ORDER, order_service::SERVICE_NAME, shutdown).await?;
    cfg.resolver = resolver(&args.common.discovery, host.listener.tls().cloned())?;
    order_service::run(cfg, host).await
}

pub async fn payment(args: PaymentArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: payment_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let host = host(&args.common, args.listen, PAYMENT, payment_service::SERVICE_NAME, shutdown).await?;
    payment_service::run(cfg, host).await
}

pub async fn gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut cfg: gateway::Config = config::load(args.config.as_deref(), &args)?;
    let consul = args.discovery.discovery == DiscoveryMode::Consul;
    // A flag or variable names a backend; otherwise the file's address, otherwise the
    // default: the role's name in Consul, or its usual local address.
    let addresses = [
        (user_service::SERVICE_NAME, args.user_addr, USER, agora_kit::defaults::USER_ADDR),
        (product_service::SERVICE_NAME, args.product_addr, PRODUCT, agora_kit::defaults::PRODUCT_ADDR),
        (order_service::SERVICE_NAME, args.order_addr, ORDER, agora_kit::defaults::ORDER_ADDR),
        (payment_service::SERVICE_NAME, args.payment_addr, PAYMENT, agora_kit::defaults::PAYMENT_ADDR),
    ];
    for (service, flag, role, local) in addresses {
        let default = if consul { consul_target(role) } else { local.to_owned() };
        match flag {
            Some(addr) => {
                cfg.backends.insert(service.to_owned(), addr);
            }
            None if consul => {
                cfg.backends.insert(service.to_owned(), default);
            }
            None => {
                cfg.backends.entry(service.to_owned()).or_insert(default);
            }
        }
    }
    cfg.resolver = resolver(&args.discovery, credentials(&args.discovery, GATEWAY, &shutdown)?)?;
    if let (Some(cert), Some(key)) = (&args.https_cert, &args.https_key) {
        let https = PublicCert::load(cert, key)?;
        https.watch(Duration::from_secs(args.discovery.tls_reload_secs), shutdown.clone());
        cfg.https = Some(https);
    }
    // The gateway serves HTTP(S), so the agent checks `/healthz`.
    let probe = if cfg.https.is_some() { Probe::Https("/healthz".into()) } else { Probe::Http("/healthz".into()) };
    let listener = if args.reuse_port {
        let tcp = agora_kit::net::bind_shared(args.listen)?;
        announce(Listener::from(tcp), &args.discovery, GATEWAY, |_| probe, Registration::sharing_address)?
    } else {
        listen(args.listen, &args.discovery, GATEWAY, probe).await?
    };
    gateway::run(cfg, listener, shutdown).await
}

fn consul_target(role: &str) -> String {
    format!("{}{role}", agora_discovery::CONSUL_SCHEME)
}

fn consul_client(args: &DiscoveryArgs) -> anyhow::Result<Consul> {
    Consul::new(&args.consul_addr, args.consul_token.clone())
}

/// Channels for `--*-addr` targets; `consul://` ones need `--discovery consul`. With `tls`
/// every channel is mutual TLS.
fn resolver(args: &DiscoveryArgs, tls: Option<Arc<Credentials>>) -> anyhow::Result<Resolver> {
    let resolver = match args.discovery {
        DiscoveryMode::Static => Resolver::fixed(),
        DiscoveryMode::Consul => Resolver::with_consul(consul_client(args)?),
    };
    Ok(resolver.policy(Policy { tls, ..Policy::default() }))
}

/// `role`'s TLS credentials, when `--tls-cert` names them: read, checked to name `role`, and
/// read again every `--tls-reload-secs` until `shutdown`.
fn credentials(
    args: &DiscoveryArgs,
    role: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<Credentials>>> {
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.tls_ca) else {
        return Ok(None);
    };
    let files = TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() };
    let creds = Credentials::load(files, &args.tls_trust_domain)?;
    let identity = creds.identity();
    anyhow::ensure!(
        identity.name() == role,
        "--tls-cert {} names {identity}, but this process is {role}: give it {role}'s certificate",
        cert.display()
    );
    creds.watch(Duration::from_secs(args.tls_reload_secs), shutdown.clone());
    tracing::info!(%identity, "mutual TLS on for gRPC");
    Ok(Some(creds))
}

/// The Consul registration of `role` listening at `local`, checked by the `probe` of its
/// advertised address.
fn registration(
    args: &DiscoveryArgs,
    role: &str,
    local: SocketAddr,
    probe: impl FnOnce(SocketAddr) -> Probe,
) -> anyhow::Result<Registration> {
    let timing = CheckTiming {
        interval: Duration::from_secs(args.consul_check_interval_secs),
        deregister_after: Duration::from_secs(args.consul_deregister_after_secs),
    };
    let advertise = advertise(args, local)?;
    Ok(Registration::new(consul_client(args)?, role, advertise, probe(advertise), timing, env!("CARGO_PKG_VERSION")))
}

/// What callers are told to dial: `--advertise-addr`, else the listening address.
fn advertise(args: &DiscoveryArgs, local: SocketAddr) -> anyhow::Result<SocketAddr> {
    match args.advertise_addr {
        Some(mut addr) => {
            if addr.port() == 0 {
                addr.set_port(local.port());
            }
            Ok(addr)
        }
        None if local.ip().is_unspecified() => anyhow::bail!(
            "listening on {local} (every interface): set --advertise-addr (AGORA_ADVERTISE_ADDR) to the \
             address other processes should dial, e.g. the pod IP"
        ),
        None => Ok(local),
    }
}

/// Binds `addr`; with `--discovery consul` the server also registers as `role` once it
/// serves, checked by `probe`, and deregisters first when it stops.
async fn listen(addr: SocketAddr, args: &DiscoveryArgs, role: &str, probe: Probe) -> anyhow::Result<Listener> {
    let tcp: TcpListener = agora_kit::net::bind(addr).await?;
    announce(Listener::from(tcp), args, role, |_| probe, |registration| registration)
}

/// `listener`, registered in Consul (`adjust`ed) when discovery is by Consul.
fn announce(
    listener: Listener,
    args: &DiscoveryArgs,
    role: &str,
    probe: impl FnOnce(SocketAddr) -> Probe,
    adjust: impl FnOnce(Registration) -> Registration,
) -> anyhow::Result<Listener> {
    if args.discovery == DiscoveryMode::Static {
        return Ok(listener);
    }
    let registration = adjust(registration(args, role, listener.local_addr()?, probe)?);
    Ok(listener.announced(Arc::new(registration)))
}
