//! user-service over a real gRPC connection on 127.0.0.1, on SQLite and on PostgreSQL.

use std::sync::Arc;

use agora_events::{
    DomainEvent, Host, LocalBus,
    testing::{Hosted, on_loopback},
    topics,
};
use agora_kit::{
    auth::JwtKeys,
    identity::Caller,
    testing::{TestDatabase, channel, eventually, loopback},
};
use agora_proto::{
    events::{EventEnvelope, UserRegistered},
    user::{GetMeRequest, GetUserRequest, LoginRequest, RegisterRequest, Role, user_service_client::UserServiceClient},
};
use prost::Message;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

const SECRET: &str = "test-secret-test-secret-test-secret!";

struct Running {
    client: UserServiceClient<Channel>,
    service: Hosted,
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }
}

async fn start(db: TestDatabase) -> Running {
    let config = user_service::Config {
        database_url: db.url,
        jwt_secret: SecretString::from(SECRET),
        admin_email: Some("root@agora.test".into()),
        admin_password: Some(SecretString::from("admin-password")),
        ..Default::default()
    };
    let service = on_loopback(|host| user_service::run(config, host)).await;
    Running { client: UserServiceClient::new(channel(&service.url).await), service }
}

fn register(email: &str) -> RegisterRequest {
    RegisterRequest { email: email.into(), password: "correct horse".into(), name: "Ada".into() }
}

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest { email: email.into(), password: password.into() }
}

async fn register_login_and_me(db: TestDatabase) {
    let mut app = start(db).await;
    let user = app.client.register(register("Ada@Example.com")).await.unwrap().into_inner();
    assert_eq!(user.email, "ada@example.com", "emails are normalised");
    assert_eq!(user.role(), Role::User);

    let token = app.client.login(login("ada@example.com", "correct horse")).await.unwrap().into_inner();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, 900);
    let keys = JwtKeys::new(&SecretString::from(SECRET), std::time::Duration::from_secs(900)).unwrap();
    let claims = keys.verify(&token.access_token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.role.as_str()), (user.id.as_str(), "user"));

    let me = app.client.get_me(Caller::user(&user.id).request(GetMeRequest {})).await.unwrap().into_inner();
    assert_eq!(me, user);

    // UserRegistered reaches the bus through the outbox.
    let bus = app.service.bus.clone();
    let user_id = user.id.clone();
    eventually(5, "UserRegistered on the bus", || {
        let (bus, user_id) = (bus.clone(), user_id.clone());
        async move {
            bus.messages(topics::USERS).await.unwrap().into_iter().find_map(|m| {
                let env = EventEnvelope::decode(m.payload.as_slice()).unwrap();
                let event = UserRegistered::decode(env.payload.as_slice()).unwrap();
                (env.event_type == UserRegistered::TYPE && event.user_id == user_id && m.key == user_id).then_some(())
            })
        }
    })
    .await;
    app.stop().await;
}

async fn registration_errors(db: TestDatabase) {
    let mut app = start(db).await;
    app.client.register(register("ada@example.com")).await.unwrap();
    let dup = app.client.register(register("ADA@example.com")).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    let bad_email = app.client.register(register("not-an-email")).await.unwrap_err();
    assert_eq!(bad_email.code(), Code::InvalidArgument);
    assert!(bad_email.message().contains("not-an-email"), "{}", bad_email.message());

    let mut short = register("bob@example.com");
    short.password = "short".into();
    let err = app.client.register(short).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("password"), "{}", err.message());

    let mut nameless = register("bob@example.com");
    nameless.name = " ".into();
    assert_eq!(app.client.register(nameless).await.unwrap_err().code(), Code::InvalidArgument);
    app.stop().await;
}

async fn login_errors(db: TestDatabase) {
    let mut app = start(db).await;
    app.client.register(register("ada@example.com")).await.unwrap();
    let wrong = app.client.login(login("ada@example.com", "wrong horse")).await.unwrap_err();
    let unknown = app.client.login(login("nobody@example.com", "correct horse")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message(), "no hint whether the account exists");
    app.stop().await;
}

async fn identity_and_access(db: TestDatabase) {
    let mut app = start(db).await;
    let ada = app.client.register(register("ada@example.com")).await.unwrap().into_inner();
    let bob = app.client.register(register("bob@example.com")).await.unwrap().into_inner();

    let anonymous = app.client.get_me(GetMeRequest {}).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let get = |id: &str| GetUserRequest { id: id.into() };
    let denied = app.client.get_user(Caller::user(&ada.id).request(get(&bob.id))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let own = app.client.get_user(Caller::user(&ada.id).request(get(&ada.id))).await.unwrap();
    assert_eq!(own.into_inner().id, ada.id);
    let by_service = app.client.get_user(Caller::service().request(get(&bob.id))).await.unwrap();
    assert_eq!(by_service.into_inner().email, "bob@example.com");
    let missing = app.client.get_user(Caller::service().request(get(&agora_kit::id::new_id()))).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = app.client.get_user(Caller::service().request(get("42"))).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    app.stop().await;
}

async fn seeded_admin_logs_in_as_admin(db: TestDatabase) {
    let mut app = start(db).await;
    let token = app.client.login(login("root@agora.test", "admin-password")).await.unwrap().into_inner();
    let keys = JwtKeys::new(&SecretString::from(SECRET), std::time::Duration::from_secs(900)).unwrap();
    let claims = keys.verify(&token.access_token).unwrap();
    assert_eq!(claims.role, "admin");
    let me = app.client.get_me(Caller::admin(&claims.sub).request(GetMeRequest {})).await.unwrap().into_inner();
    assert_eq!(me.role(), Role::Admin);
    app.stop().await;
}

agora_kit::db_tests! {
    register_login_and_me,
    registration_errors,
    login_errors,
    identity_and_access,
    seeded_admin_logs_in_as_admin,
}

#[tokio::test]
async fn a_weak_jwt_secret_stops_start_up_with_a_clear_error() {
    let (listener, _) = loopback().await;
    let config = user_service::Config { database_url: "sqlite::memory:".into(), ..Default::default() };
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let err = user_service::run(config, Host::new(bus, listener, CancellationToken::new())).await.unwrap_err();
    assert!(err.to_string().contains("AGORA_JWT_SECRET"), "{err}");
}
