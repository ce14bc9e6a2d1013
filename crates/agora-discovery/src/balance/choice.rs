//! Which instance an attempt goes to: power of two choices among the eligible ones.

use std::sync::{Arc, atomic::Ordering};

use tokio::time::Instant;
use tonic::Status;

use super::{Inner, Instance};

impl Inner {
    /// An eligible instance other than `avoid` (when there is a choice); waits for the first
    /// instances to be known, up to the deadline.
    pub(super) async fn pick(
        self: &Arc<Self>,
        avoid: Option<&Instance>,
        deadline: Instant,
    ) -> Result<Arc<Instance>, Status> {
        let give_up = deadline.min(Instant::now() + self.policy.wait_for_instances);
        loop {
            let changed = self.changed.notified();
            if let Some(instance) = self.choose(avoid) {
                return Ok(instance);
            }
            if tokio::time::timeout_at(give_up, changed).await.is_err() {
                return Err(Status::unavailable(format!("no instance of {} is known", self.service)));
            }
        }
    }

    pub(super) fn choose(&self, avoid: Option<&Instance>) -> Option<Arc<Instance>> {
        let instances = self.instances.read().unwrap();
        let avoided = |i: &Instance| avoid.is_some_and(|a| std::ptr::eq(a, i));
        let healthy: Vec<&Arc<Instance>> =
            instances.iter().filter(|i| !i.ejected.load(Ordering::Relaxed) && !avoided(i)).collect();
        // With every other instance ejected, calls still go somewhere rather than nowhere:
        // the ejection may be stale, and failing fast helps nobody.
        let candidates = if !healthy.is_empty() {
            healthy
        } else {
            let rest: Vec<&Arc<Instance>> = instances.iter().filter(|i| !avoided(i)).collect();
            if rest.is_empty() { instances.iter().collect() } else { rest }
        };
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                let winner =
                    if b.outstanding.load(Ordering::Relaxed) < a.outstanding.load(Ordering::Relaxed) { b } else { a };
                Some(winner.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::with_instances;
    use super::*;

    #[tokio::test]
    async fn the_less_loaded_of_two_wins_and_ejected_instances_sit_out() {
        let balanced = with_instances(&["a", "b"]);
        let instances = balanced.inner.instances.read().unwrap().clone();
        instances[0].outstanding.store(5, Ordering::Relaxed);
        for _ in 0..20 {
            assert_eq!(balanced.inner.choose(None).unwrap().id, "b", "with two candidates, the idle one wins");
        }
        instances[1].ejected.store(true, Ordering::Relaxed);
        for _ in 0..20 {
            assert_eq!(balanced.inner.choose(None).unwrap().id, "a", "an ejected instance sits out");
        }
        // A retry avoids the instance that failed, even if that leaves only an ejected one.
        assert_eq!(balanced.inner.choose(Some(&instances[0])).unwrap().id, "b");
        // With nothing else left, the avoided instance is still better than nothing.
        let single = with_instances(&["only"]);
        let only = single.inner.instances.read().unwrap()[0].clone();
        assert_eq!(single.inner.choose(Some(&only)).unwrap().id, "only");
    }
}
