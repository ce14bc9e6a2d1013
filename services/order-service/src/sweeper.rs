//! Cancels orders that waited for payment longer than the deadline, so stock held by
//! abandoned or stuck orders goes back on sale (the cancel event releases it). An order's
//! age is read off the database's clock, which stamped it: an instance whose own clock is
//! minutes off cancels nothing early (or late).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, Transition};

/// Reason recorded on orders the sweeper cancels.
pub const TIMED_OUT: &str = "payment not received in time";

#[derive(Debug, Clone)]
pub struct Sweeper {
    pub store: Store,
    pub timeout: Duration,
    pub interval: Duration,
}

impl Sweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(cancelled = n, "sweeper cancelled overdue orders"),
                Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One pass; returns how many orders it cancelled.
    pub async fn sweep(&self) -> Result<usize, crate::Error> {
        let timeout = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut cancelled = 0;
        for id in self.store.overdue(timeout, 100).await? {
            if matches!(self.store.cancel(&id, TIMED_OUT).await?, Transition::Applied(_)) {
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }
}
