//! A token bucket per client IP: `burst` requests at once, refilled at `per_second`.
//! An empty bucket is answered 429 with `Retry-After`, the seconds until a token is back.
//!
//! Clients are told apart by the connection's peer address; behind a proxy that is the
//! proxy, so there the limit applies to all of its clients together.
//!
//! A second, much lower limit covers sign-ins ([`RateLimit::sign_ins`]): each one costs
//! an argon2 hash, and a password guesser gets a few tries a minute.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{body::Body, extract::ConnectInfo};
use http::{HeaderValue, Request, header};
use tokio::time::Instant;
use tonic::Code;

use crate::error::ApiError;
use crate::stage::{Answer, Next, Stage, answer};

/// Buckets beyond this many are swept of the full ones, which bounds memory under a
/// flood of distinct addresses.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Sustained requests per second per client.
    pub per_second: f64,
    /// Requests a client may make at once after being idle.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The shared bucket table.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: Rate,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl Limiter {
    pub fn new(limit: Rate) -> Self {
        Self { limit, buckets: Arc::default() }
    }

    /// Takes a token for `client`, or says how many seconds until one is available.
    pub fn try_acquire(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let Rate { per_second, burst } = self.limit;
        let burst = f64::from(burst.max(1));
        let mut buckets = self.buckets.lock().expect("the bucket lock is never poisoned");
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: burst, updated: now });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Which requests a limit counts, and what its 429 says.
#[derive(Debug, Clone, Copy)]
struct Scope {
    applies: fn(&Request<Body>) -> bool,
    what: &'static str,
}

const EVERY_REQUEST: Scope = Scope { applies: |_| true, what: "too many requests" };

/// Signing in (`POST /v1/auth/login`) and signing up (`POST /v1/users`): the requests that
/// hash a password.
fn is_sign_in(request: &Request<Body>) -> bool {
    request.method() == http::Method::POST && matches!(request.uri().path(), "/v1/auth/login" | "/v1/users")
}

/// The rate-limit stage: a token bucket per client over the requests its scope covers.
#[derive(Debug, Clone)]
pub struct RateLimit {
    limiter: Limiter,
    scope: Scope,
}

impl RateLimit {
    /// A limit on every request.
    pub fn new(limit: Rate) -> Self {
        Self { limiter: Limiter::new(limit), scope: EVERY_REQUEST }
    }

    /// A limit on sign-ins and sign-ups only.
    pub fn sign_ins(limit: Rate) -> Self {
        Self { limiter: Limiter::new(limit), scope: Scope { applies: is_sign_in, what: "too many sign-in attempts" } }
    }
}

impl Stage for RateLimit {
    fn call(&self, request: Request<Body>, next: &mut impl Next) -> Answer {
        if !(self.scope.applies)(&request) {
            return Box::pin(next.call(request));
        }
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        match self.limiter.try_acquire(client, Instant::now()) {
            Ok(()) => Box::pin(next.call(request)),
            Err(retry_after) => {
                let error =
                    ApiError::new(Code::ResourceExhausted, format!("{}; retry in {retry_after} s", self.scope.what))
                        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after));
                answer(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_refilled() {
        let limiter = Limiter::new(Rate { per_second: 2.0, burst: 3 });
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.try_acquire(client, start).unwrap();
        }
        assert_eq!(limiter.try_acquire(client, start), Err(1));
        assert_eq!(limiter.try_acquire(other, start), Ok(()), "each client has its own bucket");
        assert_eq!(limiter.try_acquire(client, start + Duration::from_millis(500)), Ok(()));
        assert!(limiter.try_acquire(client, start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_a_token() {
        let limiter = Limiter::new(Rate { per_second: 0.2, burst: 1 });
        let client: IpAddr = "::1".parse().unwrap();
        let start = Instant::now();
        limiter.try_acquire(client, start).unwrap();
        assert_eq!(limiter.try_acquire(client, start), Err(5));
    }
}
