//! The caller of an RPC, as the gateway forwards it after verifying the access token.
//!
//! Services trust these metadata entries because the gateway strips any that a client sent
//! and only the gateway (and other services) can reach the gRPC ports. Service-to-service
//! calls carry the `service` role and no user.

use tonic::{Status, metadata::MetadataMap};

/// Metadata key with the verified user id.
pub const USER_ID_KEY: &str = "x-agora-user-id";
/// Metadata key with the caller's role: `user`, `admin` or `service`.
pub const ROLE_KEY: &str = "x-agora-user-role";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
    /// Another Agora service (no end user behind the call).
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    user_id: Option<String>,
    role: Role,
}

impl Caller {
    pub fn user(id: impl Into<String>) -> Self {
        Self { user_id: Some(id.into()), role: Role::User }
    }

    pub fn admin(id: impl Into<String>) -> Self {
        Self { user_id: Some(id.into()), role: Role::Admin }
    }

    pub fn service() -> Self {
        Self { user_id: None, role: Role::Service }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Reads the caller from request metadata; absent or malformed identity is
    /// `Unauthenticated`.
    pub fn from_metadata(meta: &MetadataMap) -> Result<Self, Status> {
        let role = meta
            .get(ROLE_KEY)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing caller identity; call through the gateway"))?;
        let role = Role::parse(role).ok_or_else(|| Status::unauthenticated(format!("unknown caller role {role:?}")))?;
        let user_id = meta.get(USER_ID_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match (role, user_id) {
            (Role::Service, _) => Ok(Self::service()),
            (_, Some(id)) if !id.is_empty() => Ok(Self { user_id: Some(id), role }),
            _ => Err(Status::unauthenticated("missing caller user id")),
        }
    }

    /// Writes this identity into outgoing metadata.
    pub fn apply(&self, meta: &mut MetadataMap) {
        meta.insert(ROLE_KEY, self.role.as_str().parse().expect("role names are ASCII"));
        if let Some(Ok(value)) = self.user_id.as_deref().map(str::parse) {
            meta.insert(USER_ID_KEY, value);
        }
    }

    /// A request carrying this identity. (The trace context is added by the channel: see
    /// [`crate::rpc`].)
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.apply(request.metadata_mut());
        request
    }

    /// The end user behind the call, or `Unauthenticated` for service calls.
    pub fn user_id(&self) -> Result<&str, Status> {
        self.user_id.as_deref().ok_or_else(|| Status::unauthenticated("this call needs a signed-in user"))
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May this caller see or change what `owner` owns? Owners, admins and services may.
    pub fn may_access(&self, owner: &str) -> bool {
        match self.role {
            Role::Admin | Role::Service => true,
            Role::User => self.user_id.as_deref() == Some(owner),
        }
    }

    /// [`Caller::may_access`] for `what` (`order 0190…`), which `owner` owns. A refusal is
    /// logged with both users' ids for the operator, and the caller is to be answered exactly
    /// as for an id that does not exist, so that the answer does not tell which ids are real
    /// (OWASP API1, broken object-level authorization).
    pub fn may_see(&self, what: &str, owner: &str) -> bool {
        let may = self.may_access(owner);
        if !may {
            tracing::warn!(
                caller_user_id = self.user_id.as_deref().unwrap_or("-"),
                owner_user_id = owner,
                resource = what,
                "refused another user's resource; answered as not found"
            );
        }
        may
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_resource_of_another_user_is_logged_with_both_users_ids() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Kept(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Kept {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let kept = Kept::default();
        let writer = kept.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let bob = Caller::user("u-bob");
        let answers = tracing::subscriber::with_default(subscriber, || {
            (
                bob.may_see("order o-ada", "u-ada"),
                bob.may_see("order o-bob", "u-bob"),
                Caller::admin("u-root").may_see("order o-x", "u-ada"),
            )
        });
        assert_eq!(answers, (false, true, true));
        let logged = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.lines().count(), 1, "only the refusal is logged: {logged}");
        for said in ["caller_user_id=\"u-bob\"", "owner_user_id=\"u-ada\"", "order o-ada", "answered as not found"] {
            assert!(logged.contains(said), "{said} in {logged}");
        }
    }

    #[test]
    fn identity_round_trips_through_metadata() {
        let mut meta = MetadataMap::new();
        Caller::admin("u-1").apply(&mut meta);
        assert_eq!(Caller::from_metadata(&meta).unwrap(), Caller::admin("u-1"));
    }

    #[test]
    fn missing_or_bad_identity_is_unauthenticated() {
        let meta = MetadataMap::new();
        assert_eq!(Caller::from_metadata(&meta).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut meta = MetadataMap::new();
        meta.insert(ROLE_KEY, "root".parse().unwrap());
        assert_eq!(Caller::from_metadata(&meta).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut meta = MetadataMap::new();
        meta.insert(ROLE_KEY, "user".parse().unwrap());
        assert_eq!(Caller::from_metadata(&meta).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn only_owners_admins_and_services_may_access() {
        assert!(Caller::user("a").may_access("a"));
        assert!(!Caller::user("a").may_access("b"));
        assert!(Caller::admin("x").may_access("b"));
        assert!(Caller::service().may_access("b"));
    }
}
