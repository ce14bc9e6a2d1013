//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), run on
//! the blocking pool because one hash takes tens of milliseconds of CPU.
//!
//! At most one hash per CPU runs at a time; the rest wait their turn. Unbounded, a burst of
//! 50 sign-ups and sign-ins took user-service to 5 GiB of resident memory (each hash holds
//! 19 MiB, on its own thread), where more hashes at once cannot finish any sooner.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use crate::domain::Password;

static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get)));

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let _slot = HASHING.acquire().await?;
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// A PHC string: algorithm, parameters, salt and hash.
pub async fn hash(password: Password) -> anyhow::Result<String> {
    hashing(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// Whether `candidate` matches `phc`. A malformed stored hash counts as a mismatch.
pub async fn verify(candidate: String, phc: String) -> anyhow::Result<bool> {
    hashing(move || {
        PasswordHash::new(&phc)
            .map(|parsed| Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
}

/// A valid hash of a random password, verified against when the email is unknown so that
/// "no such user" takes as long as "wrong password" (no account enumeration by timing).
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$3vF8p0bRz0Kq2a1mH0v9JwQJQ6Ea8yVbWc0p3xkq0cQ";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let pw = Password::parse("correct horse battery").unwrap();
        let a = hash(pw.clone()).await.unwrap();
        let b = hash(pw).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery".into(), a.clone()).await.unwrap());
        assert!(!verify("wrong horse battery".into(), a).await.unwrap());
    }

    #[tokio::test]
    async fn malformed_hashes_never_match() {
        assert!(!verify("anything".into(), "not-a-phc-string".into()).await.unwrap());
        assert!(!verify("anything".into(), DUMMY_HASH.into()).await.unwrap());
    }
}
