//! Authentication at the edge: the bearer token is verified here, against the policy the
//! proto declares for the matched route, and the verified identity becomes a [`Caller`]
//! extension that the proxy forwards as gRPC metadata.
//!
//! Identity headers a client sends (`x-agora-*`, `x-user-*`) are removed first, whatever
//! the route, so nothing downstream can mistake them for the gateway's word.

use agora_kit::{
    auth::{JwtKeys, TokenError},
    identity::Caller,
};
use axum::body::Body;
use http::{Request, header};
use tonic::Code;

use crate::stage::{Answer, Next, Stage, answer};
use crate::{api::RouteAccess, error::ApiError, route::Matched};

/// The authentication stage: strips identity headers, then admits the caller the matched
/// route's policy asks for (a [`Caller`] extension) or answers 401/403.
#[derive(Debug, Clone)]
pub struct Auth {
    keys: JwtKeys,
}

impl Auth {
    pub fn new(keys: JwtKeys) -> Self {
        Self { keys }
    }
}

impl Stage for Auth {
    fn call(&self, mut request: Request<Body>, next: &mut impl Next) -> Answer {
        strip_identity_headers(request.headers_mut());
        let policy = request.extensions().get::<Matched>().map_or(RouteAccess::Public, |m| m.binding.policy);
        match authorize(&self.keys, policy, request.headers()) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(next.call(request))
            }
            Err(error) => answer(error),
        }
    }
}

/// The caller `policy` admits, `None` on public routes, or the 401/403 to answer with.
pub fn authorize(keys: &JwtKeys, policy: RouteAccess, headers: &http::HeaderMap) -> Result<Option<Caller>, ApiError> {
    if policy == RouteAccess::Public {
        return Ok(None);
    }
    let header = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated(
            "this route needs an access token: send `Authorization: Bearer <token>` from POST /v1/auth/login",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let claims = keys.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthenticated(e.to_string()),
        _ => ApiError::unauthenticated("the access token is invalid; log in again"),
    })?;
    let caller = match claims.role.as_str() {
        "user" => Caller::user(claims.sub),
        "admin" => Caller::admin(claims.sub),
        _ => return Err(ApiError::unauthenticated("the access token carries an unknown role")),
    };
    if policy == RouteAccess::Admin && !caller.is_admin() {
        return Err(ApiError::new(Code::PermissionDenied, "this route is for administrators"));
    }
    Ok(Some(caller))
}

fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-agora-") || name.as_str().starts_with("x-user-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretString::from("k".repeat(32)), Duration::from_secs(60)).unwrap()
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn public_routes_need_no_token() {
        assert_eq!(authorize(&keys(), RouteAccess::Public, &http::HeaderMap::new()), Ok(None));
    }

    #[test]
    fn missing_malformed_and_forged_tokens_are_401_with_a_challenge() {
        let keys = keys();
        let mut basic = http::HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        let forged =
            JwtKeys::new(&SecretString::from("x".repeat(32)), Duration::from_secs(60)).unwrap().issue("u1", "admin");
        for headers in [http::HeaderMap::new(), basic, bearer("not-a-jwt"), bearer(&forged)] {
            let error = authorize(&keys, RouteAccess::Authenticated, &headers).unwrap_err();
            assert_eq!(error.status, http::StatusCode::UNAUTHORIZED);
            assert!(error.headers.iter().any(|(name, _)| name == header::WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn users_are_refused_admin_routes_and_admins_pass() {
        let keys = keys();
        let user = authorize(&keys, RouteAccess::Admin, &bearer(&keys.issue("u1", "user"))).unwrap_err();
        assert_eq!(user.status, http::StatusCode::FORBIDDEN);
        let admin = authorize(&keys, RouteAccess::Admin, &bearer(&keys.issue("a1", "admin"))).unwrap();
        assert_eq!(admin, Some(Caller::admin("a1")));
        let signed_in = authorize(&keys, RouteAccess::Authenticated, &bearer(&keys.issue("u1", "user"))).unwrap();
        assert_eq!(signed_in, Some(Caller::user("u1")));
    }

    #[test]
    fn identity_headers_from_clients_are_removed() {
        let mut headers = bearer("t");
        headers.insert("x-agora-user-role", "admin".parse().unwrap());
        headers.insert("x-user-id", "someone".parse().unwrap());
        strip_identity_headers(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
