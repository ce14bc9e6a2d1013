//! Access tokens: HS256 JWTs issued by user-service at login and verified by the gateway.
//! Both sides build a [`JwtKeys`] from the same secret (`AGORA_JWT_SECRET`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::time::now_millis;

/// The issuer claim; tokens from anything else are rejected.
const ISSUER: &str = "agora";

/// Shorter secrets make HS256 guessable; refuse them at start-up rather than in production.
pub const MIN_SECRET_LEN: usize = 32;

/// The claims Agora puts in an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// `user` or `admin`.
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token has expired; log in again")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the JWT secret must be at least {MIN_SECRET_LEN} bytes long")]
    WeakSecret,
}

/// Signing and verification keys plus the token lifetime.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &SecretString, ttl: Duration) -> Result<Self, TokenError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret);
        }
        Ok(Self { encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes), ttl })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `user_id` with `role`, valid for the configured lifetime.
    pub fn issue(&self, user_id: &str, role: &str) -> String {
        let now = now_millis() / 1000;
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        self.sign(&Claims {
            sub: user_id.to_owned(),
            role: role.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl),
        })
    }

    /// Signs arbitrary claims; [`JwtKeys::issue`] is the normal way in.
    pub fn sign(&self, claims: &Claims) -> String {
        // HS256 over serialisable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Checks signature, algorithm, issuer and expiry (no leeway: a token is dead when it says).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret), Duration::from_secs(900)).unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let k = keys(SECRET);
        let claims = k.verify(&k.issue("u-1", "admin")).unwrap();
        assert_eq!(claims.sub, "u-1");
        assert_eq!(claims.role, "admin");
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn expired_tokens_are_rejected_as_expired() {
        let k = keys(SECRET);
        let now = now_millis() / 1000;
        let token =
            k.sign(&Claims { sub: "u".into(), role: "user".into(), iss: ISSUER.into(), iat: now - 100, exp: now - 1 });
        assert_eq!(k.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_and_foreign_tokens_are_invalid() {
        let k = keys(SECRET);
        let token = k.issue("u-1", "user");
        let (head, rest) = token.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();
        // Flip the payload to claim admin: the signature no longer matches.
        let forged_payload = payload.replace('A', "B");
        assert_ne!(forged_payload, payload);
        assert_eq!(k.verify(&format!("{head}.{forged_payload}.{sig}")), Err(TokenError::Invalid));

        let other = keys("ffffffffffffffffffffffffffffffff");
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(k.verify("not-a-jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn short_secrets_are_refused() {
        let err = JwtKeys::new(&SecretString::from("short"), Duration::from_secs(1)).unwrap_err();
        assert_eq!(err, TokenError::WeakSecret);
    }
}
