//! The events user-service announces, built from its domain types: the one place (with
//! grpc.rs) that sees their generated types.

use agora_events::EventTx;
use agora_proto::events::UserRegistered;

use crate::domain::User;

impl From<&User> for UserRegistered {
    fn from(user: &User) -> Self {
        Self { user_id: user.id.clone(), email: user.email.clone(), name: user.name.clone() }
    }
}

/// Enqueues `UserRegistered` for a new account.
pub(crate) async fn registered(tx: &mut EventTx, user: &User) -> Result<(), sqlx::Error> {
    tx.enqueue(&user.id, &UserRegistered::from(user)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use agora_kit::identity::Role;

    use super::*;

    #[test]
    fn user_registered_carries_the_accounts_id_email_and_name() {
        let user = User {
            id: "u1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            role: Role::Admin,
            created_at: 1,
        };
        let event = UserRegistered::from(&user);
        assert_eq!(event, UserRegistered { user_id: "u1".into(), email: "ada@example.com".into(), name: "Ada".into() });
    }
}
