//! The all-in-one process: the gateway and the four services on embedded defaults, one
//! SQLite file each under the data directory, and one in-process event log shared by all.
//!
//! If any component stops with an error the others are shut down too, so the process never
//! limps on half-alive. Everything it generates (the JWT secret, the admin password) is kept
//! in the data directory, so a restart on the same directory keeps accounts and tokens valid.

use std::{collections::BTreeMap, io::Write as _, net::SocketAddr, path::Path, sync::Arc};

use agora_events::{EventBus, LocalBus};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::AllArgs;

/// A started platform.
#[derive(Debug)]
pub struct Running {
    /// Where the REST gateway listens.
    pub gateway: SocketAddr,
    pub admin_email: String,
    pub admin_password: SecretString,
    /// The file the generated admin password is kept in, when it was generated.
    pub admin_password_file: Option<std::path::PathBuf>,
    /// Demo products added at this start (0 when the catalog already had products).
    pub seeded: usize,
    components: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
}

/// Runs the platform until `shutdown`, after telling the user how to reach it.
pub async fn run(args: AllArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(args, shutdown).await?;
    // A closed stdout (a detached terminal, a reader that went away) must not stop the
    // platform, so a failed write is ignored rather than allowed to panic like `println!`.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner(&running).as_bytes()).and_then(|()| stdout.flush());
    drop(stdout);
    running.wait().await
}

/// Binds every port (port 0 picks a free one), starts every component and seeds the demo
/// catalog. Components stop when `shutdown` is cancelled.
pub async fn start(args: AllArgs, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let data = &args.data_dir;
    std::fs::create_dir_all(data)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data.display()))?;
    let sqlite = |name: &str| format!("sqlite:{}", data.join(name).display());
    let bus: Arc<dyn EventBus> = Arc::new(LocalBus::open(&sqlite("events.db")).await?);
    let jwt_secret = match args.jwt_secret {
        Some(secret) => secret,
        None => stored_secret(&data.join("jwt-secret"), agora_kit::auth::MIN_SECRET_LEN)?,
    };
    let (admin_password, admin_password_file) = match args.admin_password {
        Some(password) => (password, None),
        None => {
            let file = data.join("admin-password");
            (stored_secret(&file, 16)?, Some(file))
        }
    };

    // Bind every port before starting anything, so a port in use fails fast and clearly,
    // and so each component knows the others' real addresses even when they were port 0.
    let gateway_listener = agora_kit::net::bind(args.listen).await?;
    let user_listener = agora_kit::net::bind(args.user_addr).await?;
    let product_listener = agora_kit::net::bind(args.product_addr).await?;
    let order_listener = agora_kit::net::bind(args.order_addr).await?;
    let payment_listener = agora_kit::net::bind(args.payment_addr).await?;
    let user_addr = user_listener.local_addr()?.to_string();
    let product_addr = product_listener.local_addr()?.to_string();
    let order_addr = order_listener.local_addr()?.to_string();
    let payment_addr = payment_listener.local_addr()?.to_string();
    let gateway_addr = gateway_listener.local_addr()?;

    let user = user_service::Config {
        database_url: sqlite("user.db"),
        jwt_secret: jwt_secret.clone(),
        admin_email: Some(args.admin_email.clone()),
        admin_password: Some(admin_password.clone()),
        ..Default::default()
    };
    let product = product_service::Config { database_url: sqlite("product.db") };
    let mut order = order_service::Config {
        database_url: sqlite("order.db"),
        user_addr: user_addr.clone(),
        product_addr: product_addr.clone(),
        ..Default::default()
    };
    if let Some(secs) = args.payment_timeout_secs {
        order.payment_timeout_secs = secs;
    }
    let payment = payment_service::Config { database_url: sqlite("payment.db"), ..Default::default() };
    let mut gateway = gateway::Config {
        backends: BTreeMap::from([
            (user_service::SERVICE_NAME.to_owned(), user_addr),
            (product_service::SERVICE_NAME.to_owned(), product_addr.clone()),
            (order_service::SERVICE_NAME.to_owned(), order_addr),
            (payment_service::SERVICE_NAME.to_owned(), payment_addr),
        ]),
        jwt_secret,
        ..Default::default()
    };
    if let Some(rate) = args.rate_limit_per_second {
        gateway.rate_limit_per_second = rate;
    }
    if let Some(rate) = args.sign_in_limit_per_minute {
        gateway.sign_in_limit_per_minute = rate;
    }

    let stop = shutdown.child_token();
    let mut components = JoinSet::new();
    components.spawn(named("user-service", user_service::run(user, bus.clone(), user_listener, stop.clone())));
    components
        .spawn(named("product-service", product_service::run(product, bus.clone(), product_listener, stop.clone())));
    components.spawn(named("order-service", order_service::run(order, bus.clone(), order_listener, stop.clone())));
    components.spawn(named("payment-service", payment_service::run(payment, bus, payment_listener, stop.clone())));
    components.spawn(named("gateway", gateway::run(gateway, gateway_listener, stop.clone())));

    let seeded = if args.seed_demo { crate::seed::demo_catalog_when_up(&product_addr).await } else { 0 };
    tracing::info!(data_dir = %data.display(), gateway = %gateway_addr, "agora is running; Ctrl-C to stop");
    Ok(Running {
        gateway: gateway_addr,
        admin_email: args.admin_email,
        admin_password,
        admin_password_file,
        seeded,
        components,
        stop,
    })
}

impl Running {
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
}

/// What a newcomer needs to start using the platform.
pub fn banner(running: &Running) -> String {
    let url = format!("http://{}", running.gateway);
    let kept = running.admin_password_file.as_ref().map(|f| format!(" (kept in {})", f.display())).unwrap_or_default();
    format!(
        "\nAgora is running: REST gateway at {url} (OpenAPI: {url}/openapi.json)\n\
         Admin account: {email} / {password}{kept}\n\n\
         Try:\n\
         \x20 curl -s {url}/v1/products\n\
         \x20 curl -s -X POST {url}/v1/users -H 'content-type: application/json' \\\n\
         \x20      -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\",\"name\":\"Ada\"}}'\n\
         \x20 curl -s -X POST {url}/v1/auth/login -H 'content-type: application/json' \\\n\
         \x20      -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse battery\"}}'\n\n\
         Ctrl-C stops it; data stays in the data directory for the next start.\n",
        email = running.admin_email,
        password = running.admin_password.expose_secret(),
    )
}

async fn named(name: &'static str, component: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    component.await.map_err(|e| e.context(name))
}

/// A random secret kept in `path`, created on first run (mode 0600), so that what it
/// protects stays valid across restarts of the all-in-one process.
fn stored_secret(path: &Path, min_len: usize) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= min_len {
            return Ok(SecretString::from(existing));
        }
    }
    let mut secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    secret.truncate(2 * min_len);
    std::fs::write(path, &secret).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(SecretString::from(secret))
}
