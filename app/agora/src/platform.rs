//! The platform in one process, one way: the four services and the gateway, each on its own
//! database, wired to each other's real addresses over one event bus. `agora all` starts it on
//! a data directory; every in-process end-to-end test (`tests/`) starts it on fresh databases
//! with every port 0.
//!
//! Every port is bound before anything starts, so a port in use fails fast and clearly and
//! each component knows the others' real addresses even when they were port 0.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, sync::Arc};

use agora_events::{EventBus, Host};
use secrecy::SecretString;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// Where each component listens (port 0: a free one).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub gateway: SocketAddr,
    pub user: SocketAddr,
    pub product: SocketAddr,
    pub order: SocketAddr,
    pub payment: SocketAddr,
}

impl Addrs {
    /// Every component on a free loopback port.
    pub fn any_free() -> Self {
        let free = SocketAddr::from(([127, 0, 0, 1], 0));
        Self { gateway: free, user: free, product: free, order: free, payment: free }
    }
}

/// Which services' addresses are only the usual ones: when another process holds one, that
/// service listens on a free port of the same host instead (`agora all`'s defaults). An address
/// that is not movable (the gateway's, one the user gave) must be free, or the start fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Movable {
    pub user: bool,
    pub product: bool,
    pub order: bool,
    pub payment: bool,
}

/// What to start: each component's config (the addresses of the others and the shared JWT
/// secret are filled in by [`start`]) and the bus they share.
#[derive(Debug)]
pub struct Settings {
    pub bus: Arc<dyn EventBus>,
    pub addrs: Addrs,
    pub movable: Movable,
    pub user: user_service::Config,
    pub product: product_service::Config,
    pub order: order_service::Config,
    /// `None` leaves payment-service out: its address is bound and closed again, so the
    /// gateway's payment routes answer 503 and orders stay PENDING_PAYMENT.
    pub payment: Option<payment_service::Config>,
    pub gateway: gateway::Config,
}

impl Settings {
    /// Every component with its defaults, on `database(service)` (`user`, `product`, `order`,
    /// `payment`), signing tokens with `jwt_secret` and creating the admin account
    /// `admin_email` / `admin_password` when missing.
    pub fn new(
        bus: Arc<dyn EventBus>,
        database: impl Fn(&str) -> String,
        jwt_secret: SecretString,
        admin_email: &str,
        admin_password: SecretString,
    ) -> Self {
        Self {
            bus,
            addrs: Addrs::any_free(),
            movable: Movable::default(),
            user: user_service::Config {
                database_url: database("user"),
                jwt_secret,
                admin_email: Some(admin_email.to_owned()),
                admin_password: Some(admin_password),
                ..Default::default()
            },
            product: product_service::Config { database_url: database("product"), ..Default::default() },
            order: order_service::Config { database_url: database("order"), ..Default::default() },
            payment: Some(payment_service::Config { database_url: database("payment"), ..Default::default() }),
            gateway: gateway::Config::default(),
        }
    }
}

/// A started platform: where each component listens, and the components themselves.
#[derive(Debug)]
pub struct Started {
    pub addrs: Addrs,
    components: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
}

/// Binds every address, then starts every component; they stop when `shutdown` is cancelled
/// (or [`Started::stop`] is called).
pub async fn start(settings: Settings, shutdown: &CancellationToken) -> anyhow::Result<Started> {
    let Settings { bus, addrs, movable, user, product, mut order, payment, mut gateway } = settings;
    let gateway_listener = agora_kit::net::bind(addrs.gateway).await?;
    let user_listener = bind("user-service", addrs.user, movable.user).await?;
    let product_listener = bind("product-service", addrs.product, movable.product).await?;
    let order_listener = bind("order-service", addrs.order, movable.order).await?;
    let payment_listener = bind("payment-service", addrs.payment, movable.payment).await?;
    let bound = Addrs {
        gateway: gateway_listener.local_addr()?,
        user: user_listener.local_addr()?,
        product: product_listener.local_addr()?,
        order: order_listener.local_addr()?,
        payment: payment_listener.local_addr()?,
    };

    order.user_addr = bound.user.to_string();
    order.product_addr = bound.product.to_string();
    gateway.backends = BTreeMap::from([
        (user_service::SERVICE_NAME.to_owned(), bound.user.to_string()),
        (product_service::SERVICE_NAME.to_owned(), bound.product.to_string()),
        (order_service::SERVICE_NAME.to_owned(), bound.order.to_string()),
        (payment_service::SERVICE_NAME.to_owned(), bound.payment.to_string()),
    ]);
    gateway.jwt_secret = user.jwt_secret.clone();

    let stop = shutdown.child_token();
    let host = |listener| Host::new(bus.clone(), listener, stop.clone());
    let mut components = JoinSet::new();
    components.spawn(named("user-service", user_service::run(user, host(user_listener))));
    components.spawn(named("product-service", product_service::run(product, host(product_listener))));
    components.spawn(named("order-service", order_service::run(order, host(order_listener))));
    match payment {
        Some(payment) => {
            components.spawn(named("payment-service", payment_service::run(payment, host(payment_listener))));
        }
        None => drop(payment_listener),
    }
    components.spawn(named("gateway", gateway::run(gateway, gateway_listener, stop.clone())));
    Ok(Started { addrs: bound, components, stop })
}

/// Binds `service`'s `addr`; a `movable` one another process holds gives way to a free port of
/// the same host.
async fn bind(service: &str, addr: SocketAddr, movable: bool) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) if movable && e.kind() == std::io::ErrorKind::AddrInUse => {
            let listener = agora_kit::net::bind(SocketAddr::new(addr.ip(), 0)).await?;
            tracing::info!(service, usual = %addr, listening = %listener.local_addr()?, "the usual address is taken: listening on a free port");
            Ok(listener)
        }
        Err(e) => Err(anyhow::anyhow!("{service} cannot listen on {addr}: {e}")),
    }
}

impl Started {
    /// Waits until every component has stopped; the first failure stops the rest.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.components.join_next().await {
            let failure = match joined {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(e) => Some(anyhow::anyhow!("a component task panicked: {e}")),
            };
            if let Some(e) = failure {
                tracing::error!("{e:#}; stopping the other components");
                self.stop.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every component and waits for each to shut down; an error if one did not
    /// stop cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }
}

async fn named(name: &'static str, component: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    component.await.map_err(|e| e.context(name))
}
