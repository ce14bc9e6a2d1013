//! Ejection: an instance that fails is taken out of rotation, and a probe asks its health
//! until it is SERVING again.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tonic::transport::Channel;

use super::{Inner, Instance};

impl Inner {
    /// Takes `instance` out of rotation until its health check answers SERVING.
    pub(super) fn eject(self: &Arc<Self>, instance: &Arc<Instance>, reason: &str) {
        if instance.ejected.swap(true, Ordering::Relaxed) || instance.removed.load(Ordering::Relaxed) {
            return;
        }
        tracing::warn!(service = %self.service, instance = %instance.id, address = %instance.address, %reason, "instance ejected");
        self.changed.notify_waiters();
        let weak = Arc::downgrade(self);
        let instance = instance.clone();
        tokio::spawn(async move {
            let interval = match weak.upgrade() {
                Some(inner) => inner.policy.probe_interval,
                None => return,
            };
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                if instance.removed.load(Ordering::Relaxed) {
                    return;
                }
                if serving(&instance.channel, interval).await {
                    instance.failures.store(0, Ordering::Relaxed);
                    instance.ejected.store(false, Ordering::Relaxed);
                    inner.changed.notify_waiters();
                    tracing::info!(service = %inner.service, instance = %instance.id, "instance back in rotation: health check passes");
                    return;
                }
            }
        });
    }
}

/// Whether `channel`'s server reports SERVING within `timeout`.
async fn serving(channel: &Channel, timeout: Duration) -> bool {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() });
    matches!(
        tokio::time::timeout(timeout, check).await,
        Ok(Ok(response)) if response.get_ref().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
    )
}
