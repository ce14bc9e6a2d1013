//! user-service: accounts, password sign-in and access tokens.
//!
//! Registering publishes `UserRegistered` through the outbox (payment-service opens a wallet
//! on it). Login returns a short-lived HS256 JWT that the gateway verifies.
//!
//! # Layout
//! - [`domain`]: `Email`, `Password`, `DisplayName`, `NewUser`, `User`: wire data parsed.
//! - [`password`]: argon2id hashing.
//! - [`store`]: the `users` table and the outbox, in one transaction.
//! - [`grpc`]: the only module that touches generated protobuf types.
//! - [`error`]: [`Error`] and its single mapping to `tonic::Status`.

pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod password;
pub mod store;

use std::time::Duration;

use agora_events::{Background, Host};
use agora_kit::auth::JwtKeys;
use agora_proto::user::user_service_server::UserServiceServer;
use secrecy::SecretString;
use serde::Deserialize;
use tonic::server::NamedService;

pub use error::Error;

/// user-service settings (flags and `AGORA_*` variables are mapped onto these by `agora`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `sqlite:PATH` or `postgres://…`; this service's own database.
    pub database_url: String,
    /// HS256 signing secret shared with the gateway (at least 32 bytes).
    pub jwt_secret: SecretString,
    /// Access-token lifetime; short, because tokens cannot be revoked.
    pub token_ttl_secs: u64,
    /// When both are set, this admin account is created at start if missing.
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite:data/user.db".to_owned(),
            jwt_secret: SecretString::from(String::new()),
            token_ttl_secs: 900,
            admin_email: None,
            admin_password: None,
        }
    }
}

/// The fully qualified gRPC service name, as reported by health checks.
pub const SERVICE_NAME: &str = <UserServiceServer<grpc::UserApi> as NamedService>::NAME;

/// Connects to the database, seeds the admin, and serves on `listener` until `shutdown`,
/// relaying outbox events to `bus` in the background.
pub async fn run(config: Config, host: Host) -> anyhow::Result<()> {
    let keys = JwtKeys::new(&config.jwt_secret, Duration::from_secs(config.token_ttl_secs))
        .map_err(|e| anyhow::anyhow!("user-service: {e} (set AGORA_JWT_SECRET)"))?;
    let db = store::connect(&config.database_url).await?;
    let background = Background::new("user-service", db, host);
    let store = store::Store::new(background.outbox());
    if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
        seed_admin(&store, email, password).await?;
    }

    let api = grpc::UserApi::new(store, keys);
    let routes = tonic::service::Routes::new(UserServiceServer::new(api));
    background.serve(routes, &[SERVICE_NAME]).await
}

async fn seed_admin(store: &store::Store, email: &str, password: &SecretString) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let new = domain::NewUser::parse(email, password.expose_secret(), "Administrator")
        .map_err(|e| anyhow::anyhow!("invalid admin account in config: {e}"))?;
    if store.find_by_email(new.email.as_str()).await?.is_some() {
        return Ok(());
    }
    let hash = password::hash(new.password.clone()).await?;
    match store.create(&new, &hash, agora_kit::identity::Role::Admin).await {
        Ok(admin) => tracing::info!(email = %admin.email, "admin account created"),
        Err(Error::EmailTaken) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
