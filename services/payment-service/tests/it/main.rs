//! payment-service over real gRPC and its real consumers, on SQLite and on PostgreSQL.

use agora_events::{
    DomainEvent, EventBus, OutgoingMessage,
    event::envelope,
    testing::{Hosted, on_loopback},
    topics,
};
use agora_kit::{
    identity::Caller,
    testing::{TestDatabase, channel, eventually},
};
use agora_proto::{
    Money,
    events::{EventEnvelope, OrderCancelled, OrderPlaced, PaymentFailed, PaymentSucceeded, UserRegistered},
    payment::{
        GetWalletRequest, ListPaymentsRequest, Payment, PaymentStatus, TopUpWalletRequest,
        payment_service_client::PaymentServiceClient,
    },
};
use prost::Message;
use tonic::{Code, transport::Channel};

type Client = PaymentServiceClient<Channel>;

struct Running {
    client: Client,
    service: Hosted,
}

async fn start(db: TestDatabase) -> Running {
    let config = payment_service::Config { database_url: db.url, ..Default::default() };
    let service = on_loopback(|host| payment_service::run(config, host)).await;
    Running { client: Client::new(channel(&service.url).await), service }
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }

    async fn send(&self, topic: &str, env: &EventEnvelope) {
        let message = OutgoingMessage {
            topic: topic.into(),
            key: env.aggregate_id.clone(),
            payload: env.encode_to_vec(),
            headers: Default::default(),
        };
        self.service.bus.publish(&message).await.unwrap();
    }

    async fn balance(&mut self, user: &str) -> i64 {
        let wallet = self.client.get_wallet(Caller::user(user).request(GetWalletRequest::default())).await.unwrap();
        wallet.into_inner().balance.unwrap().amount_minor
    }

    async fn payment(&mut self, user: &str, order: &str) -> Option<Payment> {
        let request = ListPaymentsRequest { order_id: order.into(), ..Default::default() };
        self.client.list_payments(Caller::user(user).request(request)).await.unwrap().into_inner().payments.pop()
    }
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money { currency_code: "USD".into(), amount_minor: minor })
}

fn placed(order: &str, user: &str, total: i64) -> EventEnvelope {
    envelope(order, &OrderPlaced { order_id: order.into(), user_id: user.into(), total: usd(total), lines: vec![] })
}

async fn wallets(db: TestDatabase) {
    let mut app = start(db).await;
    let ada = agora_kit::id::new_id();
    let bob = agora_kit::id::new_id();
    app.send(
        topics::USERS,
        &envelope(&ada, &UserRegistered { user_id: ada.clone(), email: "a@x.io".into(), name: "A".into() }),
    )
    .await;
    assert_eq!(app.balance(&ada).await, 100_00, "the opening balance");

    let top_up = |amount| TopUpWalletRequest { amount, user_id: String::new() };
    let wallet = app.client.top_up_wallet(Caller::user(&ada).request(top_up(usd(25_00)))).await.unwrap().into_inner();
    assert_eq!(wallet.balance, usd(125_00));

    // Bob uses his wallet before his registration event arrives (twice, as a redelivery):
    // the opening balance is still granted once.
    assert_eq!(app.balance(&bob).await, 100_00);
    let registered = envelope(&bob, &UserRegistered { user_id: bob.clone(), email: "b@x.io".into(), name: "B".into() });
    app.send(topics::USERS, &registered).await;
    app.send(topics::USERS, &registered).await;
    let bus = app.service.bus.clone();
    eventually(5, "user events consumed", || {
        let bus = bus.clone();
        async move { (bus.lag(payment_service::CONSUMER, topics::USERS).await.unwrap() == 0).then_some(()) }
    })
    .await;
    assert_eq!(app.balance(&bob).await, 100_00);
    assert_eq!(app.balance(&ada).await, 125_00);

    for (bad, why) in [
        (usd(0), "zero"),
        (usd(-5), "negative"),
        (None, "missing"),
        (Some(Money { currency_code: "EUR".into(), amount_minor: 5 }), "other currency"),
        (usd(1_000_000_01), "too large"),
    ] {
        let err = app.client.top_up_wallet(Caller::user(&ada).request(top_up(bad))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
    }

    // Another user's wallet answers exactly as one that does not exist.
    let others = GetWalletRequest { user_id: bob.clone() };
    let theirs = app.client.get_wallet(Caller::user(&ada).request(others.clone())).await.unwrap_err();
    let nobody = agora_kit::id::new_id();
    let unknown = app.client.get_wallet(Caller::user(&ada).request(GetWalletRequest { user_id: nobody.clone() })).await;
    let unknown = unknown.unwrap_err();
    assert_eq!((theirs.code(), unknown.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(theirs.message().replace(&bob, "ID"), unknown.message().replace(&nobody, "ID"));
    let as_admin = app.client.get_wallet(Caller::admin(&ada).request(others)).await.unwrap().into_inner();
    assert_eq!(as_admin.user_id, bob);
    let foreign_top_up = TopUpWalletRequest { amount: usd(1), user_id: bob };
    assert_eq!(
        app.client.top_up_wallet(Caller::user(&ada).request(foreign_top_up)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(app.client.get_wallet(GetWalletRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    app.stop().await;
}

async fn orders_are_charged_once_declined_or_refunded(db: TestDatabase) {
    let mut app = start(db).await;
    let ada = agora_kit::id::new_id();
    let (paid, too_dear, cancelled) = (agora_kit::id::new_id(), agora_kit::id::new_id(), agora_kit::id::new_id());

    let event = placed(&paid, &ada, 30_00);
    app.send(topics::ORDERS, &event).await;
    app.send(topics::ORDERS, &event).await; // redelivered: must not charge again
    app.send(topics::ORDERS, &placed(&too_dear, &ada, 80_00)).await;
    app.send(topics::ORDERS, &placed(&cancelled, &ada, 10_00)).await;
    let refund = OrderCancelled { order_id: cancelled.clone(), user_id: ada.clone(), reason: "changed my mind".into() };
    app.send(topics::ORDERS, &envelope(&cancelled, &refund)).await;

    let payment = eventually(5, "the refund", || {
        let (mut client, ada, cancelled) = (app.client.clone(), ada.clone(), cancelled.clone());
        async move {
            let request = ListPaymentsRequest { order_id: cancelled, ..Default::default() };
            let mut list =
                client.list_payments(Caller::user(&ada).request(request)).await.unwrap().into_inner().payments;
            list.pop().filter(|p| p.status() == PaymentStatus::Refunded)
        }
    })
    .await;
    assert_eq!(payment.amount, usd(10_00));

    let first = app.payment(&ada, &paid).await.unwrap();
    assert_eq!(first.status(), PaymentStatus::Succeeded);
    let declined = app.payment(&ada, &too_dear).await.unwrap();
    assert_eq!((declined.status(), declined.decline_reason.as_str()), (PaymentStatus::Declined, "insufficient funds"));
    assert_eq!(app.balance(&ada).await, 70_00, "100 - 30 once; the decline and the refund left it alone");

    let all = app
        .client
        .list_payments(Caller::user(&ada).request(ListPaymentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.payments.len(), 3, "one payment per order");
    assert_eq!(all.payments[0].order_id, cancelled, "newest first");

    // The outcomes went out as events, one per order.
    let published = app.service.bus.messages(topics::PAYMENTS).await.unwrap();
    let types: Vec<String> =
        published.iter().map(|m| EventEnvelope::decode(m.payload.as_slice()).unwrap().event_type).collect();
    let succeeded = types.iter().filter(|t| *t == PaymentSucceeded::TYPE).count();
    let failed = types.iter().filter(|t| *t == PaymentFailed::TYPE).count();
    assert_eq!((succeeded, failed), (2, 1), "{types:?}");

    // Another user's order shows no payments, exactly as an order that does not exist.
    let bob = agora_kit::id::new_id();
    let snoop = ListPaymentsRequest { order_id: paid, ..Default::default() };
    let theirs = app.client.list_payments(Caller::user(&bob).request(snoop)).await.unwrap().into_inner();
    let unknown = ListPaymentsRequest { order_id: agora_kit::id::new_id(), ..Default::default() };
    let unknown = app.client.list_payments(Caller::user(&bob).request(unknown)).await.unwrap().into_inner();
    assert_eq!(theirs, unknown);
    assert!(theirs.payments.is_empty());
    let bad = ListPaymentsRequest { page_size: 500, ..Default::default() };
    assert_eq!(
        app.client.list_payments(Caller::user(&bob).request(bad)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    app.stop().await;
}

agora_kit::db_tests!(wallets, orders_are_charged_once_declined_or_refunded);
