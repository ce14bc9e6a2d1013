//! What a service runs beside its gRPC server: the relay that publishes its outbox, the
//! consumers that apply the topics it subscribes to, and its own periodic work. Each task runs
//! until shutdown; [`Background::serve`] serves the service's routes and, once they have
//! drained, waits for every task, so a service's `run` reads as what it is made of.

use std::{future::Future, sync::Arc};

use agora_kit::{db::Db, grpc::Listener};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::Routes;

use crate::{ConsumerOptions, EventBus, Handler, Outbox, Relay, run_consumer};

/// A service's background tasks and its outbox.
#[derive(Debug)]
pub struct Background {
    /// The service's name: its relay's in logs and metrics, and its consumer group.
    name: &'static str,
    bus: Arc<dyn EventBus>,
    outbox: Outbox,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    /// The background of service `name` over its database `db`; the relay that publishes its
    /// outbox to `bus` starts now.
    pub fn new(name: &'static str, db: Db, bus: Arc<dyn EventBus>, shutdown: &CancellationToken) -> Self {
        let relay = Relay::new(db, bus.clone()).named(name);
        let outbox = relay.outbox();
        let background = Self::without_relay(name, outbox, bus, shutdown);
        background.tasks.spawn(relay.run(shutdown.clone()));
        background
    }

    /// The background of a service that announces no event (its consumers still claim each
    /// event in `db`'s processed-event table): no relay.
    pub fn without_publishing(
        name: &'static str,
        db: Db,
        bus: Arc<dyn EventBus>,
        shutdown: &CancellationToken,
    ) -> Self {
        Self::without_relay(name, Outbox::without_relay(db), bus, shutdown)
    }

    fn without_relay(name: &'static str, outbox: Outbox, bus: Arc<dyn EventBus>, shutdown: &CancellationToken) -> Self {
        Self { name, bus, outbox, tasks: TaskTracker::new(), shutdown: shutdown.clone() }
    }

    /// The outbox the service's store writes its events into.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Applies every event of `topic` with `handler`, as the service's consumer group.
    pub fn consume(&self, topic: &str, handler: Arc<dyn Handler>) {
        let options = ConsumerOptions::new(self.name, topic);
        let consumer = run_consumer(self.bus.clone(), options, self.outbox.clone(), handler, self.shutdown.clone());
        self.tasks.spawn(consumer);
    }

    /// Runs `task`, made from the shutdown token, beside the others.
    pub fn spawn<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task(self.shutdown.clone()));
    }

    /// Serves `routes` on `listener` until shutdown (see [`agora_kit::grpc::serve`]), then
    /// waits for every background task to finish. A server that fails returns its error at
    /// once.
    pub async fn serve(
        self,
        routes: Routes,
        service_names: &[&'static str],
        listener: impl Into<Listener>,
    ) -> anyhow::Result<()> {
        self.tasks.close();
        agora_kit::grpc::serve(routes, service_names, listener, self.shutdown.clone()).await?;
        self.tasks.wait().await;
        Ok(())
    }
}
