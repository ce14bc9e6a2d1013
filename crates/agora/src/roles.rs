//! Running one role: config = defaults < `--config` file < flags / `AGORA_*` environment.

use std::sync::Arc;

use agora_events::{EventBus, KafkaBus, KafkaOptions, LocalBus};
use agora_kit::config;
use tokio_util::sync::CancellationToken;

use crate::cli::{Common, Events, GatewayArgs, OrderArgs, PaymentArgs, ProductArgs, UserArgs};

/// The event bus the flags ask for.
pub async fn bus(common: &Common) -> anyhow::Result<Arc<dyn EventBus>> {
    match common.events {
        Events::Memory => Ok(Arc::new(LocalBus::open(&common.bus_url).await?)),
        Events::Kafka => {
            let options = KafkaOptions {
                partitions: common.kafka_partitions,
                prefix: common.kafka_prefix.clone(),
                ..KafkaOptions::new(&common.kafka_brokers)
            };
            Ok(Arc::new(KafkaBus::new(options)?))
        }
    }
}

pub async fn user(args: UserArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: user_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let bus = bus(&args.common).await?;
    let listener = agora_kit::grpc::bind(args.listen).await?;
    user_service::run(cfg, bus, listener, shutdown).await
}

pub async fn product(args: ProductArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: product_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let bus = bus(&args.common).await?;
    let listener = agora_kit::grpc::bind(args.listen).await?;
    if args.seed_demo {
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move { crate::seed::demo_catalog_when_up(&addr).await });
    }
    product_service::run(cfg, bus, listener, shutdown).await
}

pub async fn order(args: OrderArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: order_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let bus = bus(&args.common).await?;
    let listener = agora_kit::grpc::bind(args.listen).await?;
    order_service::run(cfg, bus, listener, shutdown).await
}

pub async fn payment(args: PaymentArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: payment_service::Config = config::load(args.common.config.as_deref(), &args)?;
    let bus = bus(&args.common).await?;
    let listener = agora_kit::grpc::bind(args.listen).await?;
    payment_service::run(cfg, bus, listener, shutdown).await
}

pub async fn gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut cfg: gateway::Config = config::load(args.config.as_deref(), &args)?;
    // A flag or variable names a backend; otherwise the file's address, otherwise the default.
    let addresses = [
        (user_service::SERVICE_NAME, args.user_addr, "127.0.0.1:50051"),
        (product_service::SERVICE_NAME, args.product_addr, "127.0.0.1:50052"),
        (order_service::SERVICE_NAME, args.order_addr, "127.0.0.1:50053"),
        (payment_service::SERVICE_NAME, args.payment_addr, "127.0.0.1:50054"),
    ];
    for (service, flag, default) in addresses {
        match flag {
            Some(addr) => {
                cfg.backends.insert(service.to_owned(), addr);
            }
            None => {
                cfg.backends.entry(service.to_owned()).or_insert_with(|| default.to_owned());
            }
        }
    }
    let listener = agora_kit::grpc::bind(args.listen).await?;
    gateway::run(cfg, listener, shutdown).await
}
