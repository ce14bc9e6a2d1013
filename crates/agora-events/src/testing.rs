//! One service served for a test: on a free loopback port, over an in-memory bus the test can
//! publish to and read from.

use std::{collections::HashMap, sync::Arc};

use agora_kit::testing::{Served, kafka_client_env, loopback};

use crate::{EventBus, Host, KafkaOptions, KafkaSasl, KafkaSecurity, LocalBus};

/// A service started by [`on_loopback`].
#[derive(Debug)]
pub struct Hosted {
    /// Where it serves gRPC (`http://127.0.0.1:…`).
    pub url: String,
    /// The bus it publishes to and consumes from.
    pub bus: LocalBus,
    served: Served,
}

/// Starts `run` (a service's `run` with its config applied) on a loopback listener and a fresh
/// in-memory bus.
pub async fn on_loopback<F>(run: impl FnOnce(Host) -> F) -> Hosted
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let bus = LocalBus::in_memory().await.expect("an in-memory bus");
    let (listener, url) = loopback().await;
    let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
    let served = Served::spawn(|stop| run(Host::new(shared, listener, stop)));
    Hosted { url, bus, served }
}

impl Hosted {
    /// Asks the service to shut down and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// `KafkaOptions::new(brokers)` with the test broker's client settings
/// ([`kafka_client_env`]): over SASL_SSL with a client certificate under `make test`.
pub fn kafka_options(brokers: &str) -> KafkaOptions {
    kafka_options_from(brokers, &kafka_client_env())
}

/// `KafkaOptions::new(brokers)` with the client settings `env` gives as `AGORA_KAFKA_*`
/// variables (what a role started with them would use).
pub fn kafka_options_from(brokers: &str, env: &[(String, String)]) -> KafkaOptions {
    let vars: HashMap<&str, &str> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let var = |name: &str| vars.get(format!("AGORA_KAFKA_{name}").as_str()).map(|v| (*v).to_owned());
    let sasl = var("SASL_USERNAME").map(|username| KafkaSasl {
        mechanism: parsed("SASL_MECHANISM", var("SASL_MECHANISM")),
        username,
        password: var("SASL_PASSWORD").expect("AGORA_KAFKA_SASL_PASSWORD goes with the user name").into(),
    });
    let security = KafkaSecurity {
        protocol: parsed("SECURITY", var("SECURITY")),
        sasl,
        ca: var("TLS_CA").map(Into::into),
        client_cert: var("TLS_CERT").map(Into::into).zip(var("TLS_KEY").map(Into::into)),
    };
    security.check().unwrap_or_else(|e| panic!("the Kafka client settings (AGORA_KAFKA_*): {e}"));
    KafkaOptions { security, ..KafkaOptions::new(brokers) }
}

/// A test setting's value, or its default when it is not set.
fn parsed<T: std::str::FromStr<Err = String> + Default>(name: &str, value: Option<String>) -> T {
    value.map_or_else(T::default, |v| v.parse().unwrap_or_else(|e| panic!("AGORA_KAFKA_{name}: {e}")))
}
