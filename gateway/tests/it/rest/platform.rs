//! The in-process platform behind a real gateway, used through `gateway::testing`'s client.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use agora_events::LocalBus;
use agora_kit::testing::{TestDatabase, eventually, loopback};
pub use gateway::testing::{PASSWORD, RestClient, usd};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "rest-test-secret-rest-test-secret!";
pub const ADMIN_EMAIL: &str = "admin@agora.test";
const ADMIN_PASSWORD: &str = "admin-password";

pub struct Options {
    /// Leave payment-service out, so orders stay PENDING_PAYMENT.
    pub payments: bool,
    pub gateway: gateway::Config,
}

impl Default for Options {
    fn default() -> Self {
        Self { payments: true, gateway: gateway::Config::default() }
    }
}

/// The platform, used through its REST client (`Deref`).
pub struct Platform {
    pub rest: RestClient,
    stop: CancellationToken,
    servers: Vec<JoinHandle<anyhow::Result<()>>>,
}

pub async fn start() -> Platform {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Platform {
    let db = TestDatabase::sqlite();
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let stop = CancellationToken::new();
    let mut servers = Vec::new();
    let mut backends = BTreeMap::new();

    let (listener, user_url) = loopback().await;
    let user_cfg = user_service::Config {
        database_url: db.url.clone(),
        jwt_secret: SecretString::from(SECRET),
        admin_email: Some(ADMIN_EMAIL.into()),
        admin_password: Some(SecretString::from(ADMIN_PASSWORD)),
        ..Default::default()
    };
    servers.push(tokio::spawn(user_service::run(user_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(user_service::SERVICE_NAME.to_owned(), user_url.clone());

    let (listener, product_url) = loopback().await;
    let product_cfg = product_service::Config { database_url: db.another().await.url };
    servers.push(tokio::spawn(product_service::run(product_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(product_service::SERVICE_NAME.to_owned(), product_url.clone());

    let (listener, order_url) = loopback().await;
    let order_cfg = order_service::Config {
        database_url: db.another().await.url,
        user_addr: user_url,
        product_addr: product_url,
        ..Default::default()
    };
    servers.push(tokio::spawn(order_service::run(order_cfg, bus.clone(), listener, stop.clone())));
    backends.insert(order_service::SERVICE_NAME.to_owned(), order_url);

    let (listener, payment_url) = loopback().await;
    if options.payments {
        let payment_cfg = payment_service::Config { database_url: db.another().await.url, ..Default::default() };
        servers.push(tokio::spawn(payment_service::run(payment_cfg, bus.clone(), listener, stop.clone())));
    } else {
        // Nothing listens there: payment routes answer 503.
        drop(listener);
    }
    backends.insert(payment_service::SERVICE_NAME.to_owned(), payment_url);

    let (listener, url) = loopback().await;
    let gateway_cfg = gateway::Config { backends, jwt_secret: SecretString::from(SECRET), ..options.gateway };
    servers.push(tokio::spawn(gateway::run(gateway_cfg, listener, stop.clone())));

    let rest = RestClient::new(&url, ADMIN_EMAIL, ADMIN_PASSWORD);
    if options.payments {
        rest.ready(10).await;
    } else {
        // Never ready without payment-service; live is enough.
        eventually(10, "the gateway to listen", || async { rest.http.get(format!("{url}/healthz")).send().await.ok() })
            .await;
    }
    Platform { rest, stop, servers }
}

impl Platform {
    /// Stops everything and checks that each component shut down cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        for server in self.servers {
            server.await.unwrap().expect("graceful shutdown returns Ok");
        }
    }
}

impl std::ops::Deref for Platform {
    type Target = RestClient;

    fn deref(&self) -> &RestClient {
        &self.rest
    }
}

/// A token for `user_id` that expired a minute ago, signed with the platform's secret.
pub fn expired_token(user_id: &str) -> String {
    let keys = agora_kit::auth::JwtKeys::new(&SecretString::from(SECRET), Duration::from_secs(60)).unwrap();
    let now = agora_kit::time::now_millis() / 1000;
    keys.sign(&agora_kit::auth::Claims {
        sub: user_id.to_owned(),
        role: "user".to_owned(),
        iss: "agora".to_owned(),
        iat: now - 120,
        exp: now - 60,
    })
}
