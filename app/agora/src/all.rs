//! The all-in-one process: the gateway and the four services on embedded defaults, one
//! SQLite file each under the data directory, and one in-process event log shared by all.
//!
//! If any component stops with an error the others are shut down too, so the process never
//! limps on half-alive. Everything it generates (the JWT secret, the admin password) is kept
//! in the data directory, so a restart on the same directory keeps accounts and tokens valid.

use std::{io::Write as _, net::SocketAddr, path::Path, sync::Arc};

use agora_events::{EventBus, LocalBus};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::AllArgs,
    platform::{self, Addrs, Movable, Settings, Started},
};

/// A started platform.
#[derive(Debug)]
pub struct Running {
    /// Where the REST gateway listens.
    pub gateway: SocketAddr,
    pub admin_email: String,
    pub admin_password: SecretString,
    /// The file the generated admin password is kept in, when it was generated.
    pub admin_password_file: Option<std::path::PathBuf>,
    started: Started,
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

/// Starts the platform ([`platform::start`]) on the data directory's SQLite files, product-service
/// seeding the demo catalog. Components stop when `shutdown` is cancelled.
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

    let mut settings = Settings::new(
        bus,
        |service| sqlite(&format!("{service}.db")),
        jwt_secret,
        &args.admin_email,
        admin_password.clone(),
    );
    // A service's usual address gives way to a free port when another process holds it; one
    // the user gave does not.
    let usual = |addr: &str| addr.parse::<SocketAddr>().expect("the usual addresses parse");
    settings.addrs = Addrs {
        gateway: args.listen,
        user: args.user_addr.unwrap_or_else(|| usual(agora_kit::defaults::USER_ADDR)),
        product: args.product_addr.unwrap_or_else(|| usual(agora_kit::defaults::PRODUCT_ADDR)),
        order: args.order_addr.unwrap_or_else(|| usual(agora_kit::defaults::ORDER_ADDR)),
        payment: args.payment_addr.unwrap_or_else(|| usual(agora_kit::defaults::PAYMENT_ADDR)),
    };
    settings.movable = Movable {
        user: args.user_addr.is_none(),
        product: args.product_addr.is_none(),
        order: args.order_addr.is_none(),
        payment: args.payment_addr.is_none(),
    };
    settings.product.seed_demo = args.seed_demo;
    if let Some(secs) = args.payment_timeout_secs {
        settings.order.payment_timeout_secs = secs;
    }
    if let Some(rate) = args.rate_limit_per_second {
        settings.gateway.rate_limit_per_second = rate;
    }
    if let Some(rate) = args.sign_in_limit_per_minute {
        settings.gateway.sign_in_limit_per_minute = rate;
    }
    let started = platform::start(settings, &shutdown).await?;
    let gateway_addr = started.addrs.gateway;
    tracing::info!(data_dir = %data.display(), gateway = %gateway_addr, "agora is running; Ctrl-C to stop");
    Ok(Running { gateway: gateway_addr, admin_email: args.admin_email, admin_password, admin_password_file, started })
}

impl Running {
    /// Waits until every component has stopped; the first failure stops the rest.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.started.wait().await
    }
}

/// What a newcomer needs to start using the platform.
pub fn banner(running: &Running) -> String {
    let url = format!("http://{}", running.gateway);
    let kept = running.admin_password_file.as_ref().map(|f| format!(" (kept in {})", f.display())).unwrap_or_default();
    let addrs = &running.started.addrs;
    format!(
        "\nAgora is running: REST gateway at {url} (OpenAPI: {url}/openapi.json)\n\
         Services (gRPC): user-service {user}, product-service {product}, order-service {order}, \
         payment-service {payment}\n\
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
        user = addrs.user,
        product = addrs.product,
        order = addrs.order,
        payment = addrs.payment,
    )
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
