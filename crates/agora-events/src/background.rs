//! What a service runs on and beside its gRPC server. Whoever starts a service (the `agora`
//! binary, the in-process platform, a test) hands it a [`Host`]: the event bus, the socket it
//! serves on with whoever announces it, and the signal to stop. The service turns it into a
//! [`Background`]: the relay that publishes its outbox, the consumers that apply the topics it
//! subscribes to, and its own periodic work. Each task runs until shutdown;
//! [`Background::serve`] serves the service's routes and, once they have drained, waits for
//! every task, so a service's `run` reads as what it is made of.

use std::{future::Future, sync::Arc};

use agora_kit::{db::Db, grpc::Listener};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::Routes;

use crate::{ConsumerOptions, EventBus, Handler, Outbox, Relay, run_consumer};

/// What a service runs on.
#[derive(Debug)]
pub struct Host {
    pub bus: Arc<dyn EventBus>,
    pub listener: Listener,
    pub shutdown: CancellationToken,
}

impl Host {
    pub fn new(bus: Arc<dyn EventBus>, listener: impl Into<Listener>, shutdown: CancellationToken) -> Self {
        Self { bus, listener: listener.into(), shutdown }
    }
}

/// A service's background tasks, its outbox and the socket it will serve on.
#[derive(Debug)]
pub struct Background {
    /// The service's name: its relay's in logs and metrics, and its consumer group.
    name: &'static str,
    host: Host,
    outbox: Outbox,
    tasks: TaskTracker,
}

impl Background {
    /// The background of service `name` over its database `db`; the relay that publishes its
    /// outbox to the host's bus starts now.
    pub fn new(name: &'static str, db: Db, host: Host) -> Self {
        let relay = Relay::new(db, host.bus.clone()).named(name);
        let background = Self { name, outbox: relay.outbox(), host, tasks: TaskTracker::new() };
        background.tasks.spawn(relay.run(background.host.shutdown.clone()));
        background
    }

    /// The background of a service that announces no event (its consumers still claim each
    /// event in `db`'s processed-event table): no relay.
    pub fn without_publishing(name: &'static str, db: Db, host: Host) -> Self {
        Self { name, outbox: Outbox::without_relay(db), host, tasks: TaskTracker::new() }
    }

    /// The outbox the service's store writes its events into.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Applies every event of `topic` with `handler`, as the service's consumer group.
    pub fn consume(&self, topic: &str, handler: Arc<dyn Handler>) {
        let options = ConsumerOptions::new(self.name, topic);
        let shutdown = self.host.shutdown.clone();
        self.tasks.spawn(run_consumer(self.host.bus.clone(), options, self.outbox.clone(), handler, shutdown));
    }

    /// Runs `task`, made from the shutdown token, beside the others.
    pub fn spawn<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task(self.host.shutdown.clone()));
    }

    /// Serves `routes` on the host's listener until shutdown (see [`agora_kit::grpc::serve`]),
    /// then waits for every background task to finish. A server that fails returns its error
    /// at once.
    pub async fn serve(self, routes: Routes, service_names: &[&'static str]) -> anyhow::Result<()> {
        self.tasks.close();
        let Host { listener, shutdown, .. } = self.host;
        agora_kit::grpc::serve(routes, service_names, listener, shutdown).await?;
        self.tasks.wait().await;
        Ok(())
    }
}
