//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), run on
//! the blocking pool because one hash takes tens of milliseconds of CPU.
//!
//! Memory is bounded: at most one hash per CPU runs at a time (the rest wait their turn),
//! and each runs in a 19 MiB block buffer kept for the next one. Letting argon2 allocate
//! and free its own buffer per hash, glibc kept the freed buffers in every blocking thread's
//! arena: a burst of 50 sign-ups and sign-ins left user-service at 650 MiB resident
//! (docs/benchmarks.md). Now it holds at most one buffer per CPU.

use std::sync::{LazyLock, Mutex};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// Hashes that may run at once: one per CPU.
fn slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(slots()));

/// Block buffers of finished hashes, reused: never more than the permits of [`HASHING`].
static BUFFERS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `work` with a block buffer on the blocking pool, once a hashing slot is free.
async fn hashing<T: Send + 'static>(work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static) -> anyhow::Result<T> {
    let _slot = HASHING.acquire().await?;
    let mut buffer = BUFFERS.lock().expect("buffer pool lock").pop().unwrap_or_default();
    let (result, buffer) = tokio::task::spawn_blocking(move || {
        let result = work(&mut buffer);
        (result, buffer)
    })
    .await?;
    BUFFERS.lock().expect("buffer pool lock").push(buffer);
    Ok(result)
}

/// The `len`-byte argon2 output of `password` and `salt` under `argon2`, computed in `buffer`.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    len: usize,
    buffer: &mut Vec<Block>,
) -> password_hash::Result<Output> {
    let mut decoded = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut decoded)?;
    buffer.resize(argon2.params().block_count(), Block::default());
    Output::init_with(len, |out| Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut buffer[..])?))
}

/// A PHC string: algorithm, parameters, salt and hash.
pub async fn hash(password: Password) -> anyhow::Result<String> {
    hashing(move |buffer| {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = compute(&argon2, password.expose().as_bytes(), salt.as_salt(), len, buffer)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok::<_, password_hash::Error>(phc.to_string())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// Whether `candidate` matches `phc`. A malformed stored hash counts as a mismatch.
pub async fn verify(candidate: String, phc: String) -> anyhow::Result<bool> {
    hashing(move |buffer| matches(candidate.as_bytes(), &phc, buffer).unwrap_or(false)).await
}

/// Recomputes the hash with the stored algorithm, version, parameters and salt, and
/// compares in constant time (`Output`'s equality).
fn matches(candidate: &[u8], phc: &str, buffer: &mut Vec<Block>) -> password_hash::Result<bool> {
    let stored = PasswordHash::new(phc)?;
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else { return Ok(false) };
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored.version.map(Version::try_from).transpose()?.unwrap_or_default();
    let argon2 = Argon2::new(algorithm, version, Params::try_from(&stored)?);
    Ok(compute(&argon2, candidate, salt, expected.len(), buffer)? == expected)
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
    async fn hashes_are_the_argon2_crates_own_both_ways() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let ours = hash(Password::parse("correct horse battery").unwrap()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok(), "{ours}");
        assert!(Argon2::default().verify_password(b"correct horse batterx", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"tr0ub4dor&3", &salt).unwrap().to_string();
        assert!(verify("tr0ub4dor&3".into(), theirs.clone()).await.unwrap());
        assert!(!verify("tr0ub4dor&4".into(), theirs).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_hashes_reuses_one_buffer_per_slot() {
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..12 {
            burst.spawn(hash(Password::parse(&format!("burst password {i}")).unwrap()));
        }
        while let Some(hashed) = burst.join_next().await {
            assert!(hashed.unwrap().unwrap().starts_with("$argon2id$"));
        }
        let pooled = BUFFERS.lock().unwrap().len();
        assert!((1..=slots()).contains(&pooled), "{pooled} buffers for {} slots", slots());
    }

    #[tokio::test]
    async fn malformed_hashes_never_match() {
        assert!(!verify("anything".into(), "not-a-phc-string".into()).await.unwrap());
        assert!(!verify("anything".into(), DUMMY_HASH.into()).await.unwrap());
    }
}
