//! Releases reservations that stayed open past their deadline. A reservation is settled by
//! its order's outcome (`OrderPaid` commits it, `OrderCancelled` releases it), and every
//! written order gets one within order-service's payment timeout. A reservation made for an
//! order that was then never written (order-service failed between the two steps and the
//! client never retried) would hold its stock forever; this is what gives it back.
//!
//! Ages are read off the database's clock, which stamped the reservations, so an instance
//! whose clock is off neither releases early nor holds on.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often open reservations are looked at.
pub const INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Expiry {
    pub store: Store,
    pub ttl: Duration,
    pub interval: Duration,
}

impl Expiry {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.store.expire(self.ttl, 100).await {
                Ok(released) if released.is_empty() => {}
                Ok(released) => {
                    tracing::warn!(count = released.len(), orders = ?released, ttl_secs = self.ttl.as_secs(),
                        "released reservations no order settled in time")
                }
                Err(e) => tracing::warn!(error = %e, "looking for expired reservations failed; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
