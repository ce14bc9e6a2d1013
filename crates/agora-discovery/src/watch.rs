//! Following a service's passing instances in Consul and feeding them to a [`Balanced`]
//! channel as inserts and removes.
//!
//! One blocking query at a time (`?passing&index=N&wait=…`): the agent answers as soon as the
//! set changes, so an instance that passes or fails reaches callers in milliseconds, and an
//! idle watch costs one request per `WATCH_WAIT`.
//!
//! When Consul is unreachable the last known instances stay (calls keep flowing; a dead one
//! is ejected by the channel). An answer with no instance at all after some were known is
//! not applied either: that is what a restarted agent says before the instances register
//! again, and emptying the channel would turn a registry hiccup into an outage.

use std::{collections::BTreeMap, time::Duration};

use tower::discover::Change;

use crate::{
    balance::{Balanced, WeakInner},
    consul::{Consul, Instance},
};

const WATCH_WAIT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts following `service` in Consul on behalf of `balanced`; the watch ends when the
/// last clone of `balanced` is dropped.
pub fn follow(consul: Consul, service: &str, balanced: &Balanced) {
    tokio::spawn(watch(consul, service.to_owned(), balanced.downgrade()));
}

async fn watch(consul: Consul, service: String, target: WeakInner) {
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut index = 0u64;
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let answer = consul.passing(&service, index, WATCH_WAIT).await;
        let Some(balanced) = Balanced::upgrade(&target) else { return };
        match answer {
            Ok((instances, next)) => {
                if failing {
                    tracing::info!(%service, consul = %consul.address(), "Consul answers again");
                    failing = false;
                }
                backoff = BACKOFF_MIN;
                // The index only grows; a smaller one means a new agent or cluster state:
                // start over rather than block on an index it will never reach.
                index = if next < index { 0 } else { next };
                if instances.is_empty() && !known.is_empty() {
                    tracing::warn!(%service, kept = known.len(), "Consul lists no passing instance; keeping the last known");
                } else {
                    apply(&balanced, &service, &mut known, instances);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(%service, error = %e, kept = known.len(), "cannot watch Consul; keeping the last known instances");
                    failing = true;
                }
                index = 0;
                drop(balanced);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Moves `balanced` from `known` to `now` with the fewest changes.
fn apply(balanced: &Balanced, service: &str, known: &mut BTreeMap<String, String>, now: Vec<Instance>) {
    let now: BTreeMap<String, String> = now.into_iter().map(|i| (i.id, i.address)).collect();
    for (id, address) in known.iter() {
        if now.get(id) != Some(address) {
            tracing::info!(%service, instance = %id, %address, "instance left");
            let _ = balanced.apply(Change::Remove(id.clone()));
        }
    }
    for (id, address) in &now {
        if known.get(id) != Some(address) {
            match balanced.apply(Change::Insert(id.clone(), address.clone())) {
                Ok(()) => tracing::info!(%service, instance = %id, %address, "instance joined"),
                Err(e) => tracing::warn!(%service, instance = %id, error = %e, "ignoring an instance"),
            }
        }
    }
    *known = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Policy;

    fn instance(id: &str, port: u16) -> Instance {
        Instance { id: id.to_owned(), address: format!("127.0.0.1:{port}") }
    }

    #[tokio::test]
    async fn applying_a_new_set_inserts_moves_and_removes() {
        let balanced = Balanced::new("svc", Policy::default());
        let mut known = BTreeMap::new();
        apply(&balanced, "svc", &mut known, vec![instance("a", 1), instance("b", 2)]);
        assert_eq!(balanced.ids(), ["a", "b"]);
        apply(&balanced, "svc", &mut known, vec![instance("b", 3), instance("c", 4)]);
        let mut states = balanced.states();
        states.sort_by(|x, y| x.id.cmp(&y.id));
        let seen: Vec<(String, String)> = states.into_iter().map(|s| (s.id, s.address)).collect();
        assert_eq!(seen, [("b".to_owned(), "127.0.0.1:3".to_owned()), ("c".to_owned(), "127.0.0.1:4".to_owned())]);
    }
}
