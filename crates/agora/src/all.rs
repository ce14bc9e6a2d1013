//! The all-in-one process: the four services on embedded defaults, one SQLite file each
//! under the data directory, and one in-process event log shared by all of them.
//!
//! If any service stops with an error the others are shut down too, so the process never
//! limps on half-alive.

use std::{path::Path, sync::Arc};

use agora_events::{EventBus, LocalBus};
use secrecy::SecretString;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::AllArgs;

pub async fn run(args: AllArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data = &args.data_dir;
    std::fs::create_dir_all(data)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data.display()))?;
    let sqlite = |name: &str| format!("sqlite:{}", data.join(name).display());
    let bus: Arc<dyn EventBus> = Arc::new(LocalBus::open(&sqlite("events.db")).await?);
    let jwt_secret = match args.jwt_secret {
        Some(secret) => SecretString::from(secret),
        None => stored_secret(&data.join("jwt-secret"))?,
    };

    let user = user_service::Config {
        database_url: sqlite("user.db"),
        jwt_secret,
        admin_email: args.admin_email,
        admin_password: args.admin_password.map(SecretString::from),
        ..Default::default()
    };
    let product = product_service::Config { database_url: sqlite("product.db") };
    let order = order_service::Config {
        database_url: sqlite("order.db"),
        user_addr: args.user_addr.to_string(),
        product_addr: args.product_addr.to_string(),
        ..Default::default()
    };
    let payment = payment_service::Config { database_url: sqlite("payment.db"), ..Default::default() };

    // Bind every port before starting anything, so a port in use fails fast and clearly.
    let user_listener = agora_kit::grpc::bind(args.user_addr).await?;
    let product_listener = agora_kit::grpc::bind(args.product_addr).await?;
    let order_listener = agora_kit::grpc::bind(args.order_addr).await?;
    let payment_listener = agora_kit::grpc::bind(args.payment_addr).await?;

    let stop = shutdown.child_token();
    let mut services = JoinSet::new();
    services.spawn(named("user-service", user_service::run(user, bus.clone(), user_listener, stop.clone())));
    services
        .spawn(named("product-service", product_service::run(product, bus.clone(), product_listener, stop.clone())));
    services.spawn(named("order-service", order_service::run(order, bus.clone(), order_listener, stop.clone())));
    services.spawn(named("payment-service", payment_service::run(payment, bus, payment_listener, stop.clone())));
    tracing::info!(data_dir = %data.display(), "agora is running; Ctrl-C to stop");

    let mut first_error = None;
    while let Some(joined) = services.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::anyhow!("a service task panicked: {e}")),
        };
        if let Some(e) = failure {
            tracing::error!("{e:#}; stopping the other services");
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn named(name: &'static str, service: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    service.await.map_err(|e| e.context(name))
}

/// A random secret kept in `path`, created on first run (mode 0600), so tokens stay valid
/// across restarts of the all-in-one process.
fn stored_secret(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= agora_kit::auth::MIN_SECRET_LEN {
            return Ok(SecretString::from(existing));
        }
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(path, &secret).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(SecretString::from(secret))
}
