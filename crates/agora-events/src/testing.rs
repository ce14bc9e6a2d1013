//! One service served for a test: on a free loopback port, over an in-memory bus the test can
//! publish to and read from.

use std::sync::Arc;

use agora_kit::testing::{Served, loopback};

use crate::{EventBus, Host, LocalBus};

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
