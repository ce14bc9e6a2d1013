//! The platform (`agora::platform`) on fresh SQLite databases, used through
//! `gateway::testing`'s REST client.

use std::{sync::Arc, time::Duration};

use agora::platform::{Settings, Started};
use agora_events::LocalBus;
use agora_kit::testing::{TestDatabase, eventually};
pub use gateway::testing::{PASSWORD, RestClient, usd};
use secrecy::SecretString;
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
    started: Started,
}

pub async fn start() -> Platform {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Platform {
    let db = TestDatabase::sqlite();
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let database = agora_tests::databases(&db).await;
    let mut settings =
        Settings::new(bus, database, SecretString::from(SECRET), ADMIN_EMAIL, SecretString::from(ADMIN_PASSWORD));
    settings.gateway = options.gateway;
    if !options.payments {
        settings.payment = None;
    }
    let started = agora::platform::start(settings, &CancellationToken::new()).await.unwrap();

    let url = format!("http://{}", started.addrs.gateway);
    let rest = RestClient::new(&url, ADMIN_EMAIL, ADMIN_PASSWORD);
    if options.payments {
        rest.ready(10).await;
    } else {
        // Never ready without payment-service; live is enough.
        eventually(10, "the gateway to listen", || async { rest.http.get(format!("{url}/healthz")).send().await.ok() })
            .await;
    }
    Platform { rest, started }
}

impl Platform {
    /// Stops everything and checks that each component shut down cleanly.
    pub async fn stop(self) {
        self.started.stop().await.expect("graceful shutdown returns Ok");
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
