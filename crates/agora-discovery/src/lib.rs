//! How Agora's processes find each other.
//!
//! - [`Resolver`]: turns a target into a [`Balanced`] channel. `consul://NAME` follows NAME's
//!   passing instances in Consul ([`watch`]); anything else is a fixed, comma-separated list
//!   of `HOST:PORT` (the embedded default, and Kubernetes Service DNS names).
//! - [`Registration`]: registers a serving instance with the local Consul agent, with a
//!   native gRPC (or HTTP) health check, keeps it registered, and deregisters it on shutdown.
//! - [`balance`]: the channel itself: power-of-two-choices over the instances, deadlines,
//!   budgeted retries of idempotent calls ([`methods`]), outlier ejection.
//! - [`consul`]: the thin Consul HTTP client all of this uses.

pub mod balance;
pub mod consul;
pub mod register;
pub mod watch;

/// Which methods may be sent twice; kept in `agora-kit`, whose servers ask it too.
pub use agora_kit::methods;
pub use balance::{Balanced, Policy};
pub use consul::{Consul, ConsulError};
pub use register::{CheckTiming, Probe, Registration};

/// The scheme of targets resolved through Consul.
pub const CONSUL_SCHEME: &str = "consul://";

/// Makes channels for targets; holds the Consul client when there is one.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    consul: Option<Consul>,
    policy: Policy,
}

impl Resolver {
    /// Fixed addresses only (a `consul://` target is an error).
    pub fn fixed() -> Self {
        Self::default()
    }

    /// Fixed addresses and `consul://` targets, watched through `consul`.
    pub fn with_consul(consul: Consul) -> Self {
        Self { consul: Some(consul), policy: Policy::default() }
    }

    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn consul(&self) -> Option<&Consul> {
        self.consul.as_ref()
    }

    /// A balanced channel to `role` at `target`: `consul://NAME` (the instances registered as
    /// NAME), or `HOST:PORT[,HOST:PORT…]`. Under mutual TLS every instance must prove it is
    /// `role`. Must be called inside a Tokio runtime (a Consul target starts its watch).
    pub fn channel(&self, role: &str, target: &str) -> anyhow::Result<Balanced> {
        if let Some(name) = target.strip_prefix(CONSUL_SCHEME) {
            let name = name.trim_end_matches('/');
            anyhow::ensure!(!name.is_empty(), "target {target:?} names no service");
            let Some(consul) = &self.consul else {
                anyhow::bail!("target {target:?} needs Consul: start with --discovery consul");
            };
            let balanced = Balanced::new(role, self.policy.clone());
            watch::follow(consul.clone(), name, &balanced);
            return Ok(balanced);
        }
        let addresses: Vec<&str> = target.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        Balanced::fixed(role, &addresses, self.policy.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_fixed_lists_or_consul_names() {
        let fixed = Resolver::fixed();
        assert_eq!(
            fixed.channel("product-service", "127.0.0.1:1, 127.0.0.1:2").unwrap().ids(),
            ["127.0.0.1:1", "127.0.0.1:2"]
        );
        let error = fixed.channel("product-service", "consul://product-service").unwrap_err().to_string();
        assert!(error.contains("--discovery consul"), "{error}");
        assert!(fixed.channel("product-service", " , ").is_err());
        let consul = Resolver::with_consul(Consul::new("127.0.0.1:1", None).unwrap());
        assert!(consul.channel("product-service", "consul://").is_err());
        let watched = consul.channel("product-service", "consul://product-service").unwrap();
        assert_eq!(watched.service(), "product-service");
        assert!(watched.ids().is_empty(), "instances come from the watch");
    }
}
