//! Retrying as a careful client does, so that an availability figure measures the platform
//! and not a naive client: only requests that are safe to send again (reads, orders with
//! their idempotency key, cancels), only after an answer that was not definite (a 5xx, a
//! 429, a timeout, a lost connection), after an exponential backoff with full jitter (or the
//! server's `Retry-After`), and within a budget.
//!
//! The budget is the one gRPC's retry throttling and Finagle's `RetryBudget` use: every
//! operation deposits a tenth of a retry, every retry withdraws one, and a reserve lets the
//! first retries through before anything was deposited. Retries are then at most about 10 %
//! of the traffic however bad things get, so a client's retries cannot turn a struggling
//! platform into a collapsed one.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// The first backoff's ceiling; each further retry doubles it.
const BASE: Duration = Duration::from_millis(100);
/// The largest backoff, and the most of a `Retry-After` that is waited.
const CAP: Duration = Duration::from_secs(2);
/// Thousandths of a retry, so deposits of a tenth stay exact.
const MILLI: u64 = 1000;

/// Retries in hand: a reserve, and what the operations deposited.
#[derive(Debug)]
pub struct Budget {
    /// In thousandths of a retry.
    balance: AtomicU64,
    /// What each operation deposits, in thousandths of a retry.
    deposit: u64,
    /// The most the balance holds, in thousandths of a retry.
    cap: u64,
}

impl Budget {
    /// Retries worth `percent` % of the operations, after a reserve of `reserve` retries.
    pub fn new(percent: u32, reserve: u64) -> Self {
        let deposit = u64::from(percent) * MILLI / 100;
        Self { balance: AtomicU64::new(reserve * MILLI), deposit, cap: (reserve * MILLI).max(100 * MILLI) }
    }

    /// One operation was sent.
    pub fn deposit(&self) {
        let _ =
            self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((b + self.deposit).min(self.cap)));
    }

    /// Takes one retry out, if one is there.
    pub fn withdraw(&self) -> bool {
        self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(MILLI)).is_ok()
    }
}

/// How many retries an operation may make, and the budget they come out of.
#[derive(Debug)]
pub struct Retries {
    pub max: u32,
    pub budget: Budget,
}

impl Retries {
    pub fn new(max: u32, budget_percent: u32) -> Self {
        Self { max, budget: Budget::new(budget_percent, 10) }
    }
}

/// The wait before retry number `retry` (1, 2, …): a random share of a ceiling that doubles
/// from [`BASE`] up to [`CAP`], or what the server asked for (`Retry-After`) if longer.
pub fn backoff(retry: u32, rng: &mut fastrand::Rng, retry_after: Option<Duration>) -> Duration {
    let ceiling = BASE.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(CAP);
    let jittered = ceiling.mul_f64(rng.f64());
    retry_after.map_or(jittered, |asked| asked.min(CAP).max(jittered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_has_a_reserve_then_a_tenth_of_the_operations() {
        let budget = Budget::new(10, 2);
        assert!(budget.withdraw() && budget.withdraw(), "the reserve");
        assert!(!budget.withdraw(), "nothing deposited yet");
        for _ in 0..9 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "nine operations are not worth a retry");
        budget.deposit();
        assert!(budget.withdraw(), "ten are");
        assert!(!budget.withdraw());
    }

    #[test]
    fn the_budget_does_not_hoard() {
        let budget = Budget::new(10, 2);
        for _ in 0..100_000 {
            budget.deposit();
        }
        let mut taken = 0;
        while budget.withdraw() {
            taken += 1;
        }
        assert_eq!(taken, 100, "at most 100 retries are banked however long things went well");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_honours_retry_after() {
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 1..=10 {
            let ceiling = (BASE * (1 << (retry - 1))).min(CAP);
            let waits: Vec<Duration> = (0..200).map(|_| backoff(retry, &mut rng, None)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}: at most {ceiling:?}");
            assert!(waits.iter().any(|w| *w < ceiling / 2), "retry {retry}: jittered");
        }
        assert_eq!(backoff(1, &mut rng, Some(Duration::from_secs(1))), Duration::from_secs(1));
        assert_eq!(backoff(1, &mut rng, Some(Duration::from_secs(60))), CAP, "a long Retry-After is capped");
    }
}
