//! The platform (`agora::platform`) on fresh databases, with a gRPC client per service.

use std::{sync::Arc, time::Duration};

use agora::platform::{Settings, Started};
use agora_events::LocalBus;
use agora_kit::{
    identity::Caller,
    testing::{TestDatabase, channel, eventually},
};
use agora_proto::{
    Money,
    order::{GetOrderRequest, Order, OrderStatus, order_service_client::OrderServiceClient},
    payment::{GetWalletRequest, payment_service_client::PaymentServiceClient},
    product::{CreateProductRequest, GetProductRequest, product_service_client::ProductServiceClient},
    user::{LoginRequest, RegisterRequest, user_service_client::UserServiceClient},
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SECRET: &str = "platform-test-secret-platform-test";

pub struct Options {
    /// Leave payment-service out, so orders stay PENDING_PAYMENT.
    pub payments: bool,
    pub payment_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { payments: true, payment_timeout: Duration::from_secs(900) }
    }
}

pub struct Platform {
    pub users: UserServiceClient<Channel>,
    pub products: ProductServiceClient<Channel>,
    pub orders: OrderServiceClient<Channel>,
    pub payments: Option<PaymentServiceClient<Channel>>,
    pub admin: Caller,
    started: Started,
}

pub async fn start(db: TestDatabase, options: Options) -> Platform {
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let database = agora_tests::databases(&db).await;
    let mut settings = Settings::new(
        bus,
        database,
        SecretString::from(SECRET),
        "admin@agora.test",
        SecretString::from("admin-password"),
    );
    settings.order.payment_timeout_secs = options.payment_timeout.as_secs();
    settings.order.sweep_interval_secs = 1;
    if !options.payments {
        settings.payment = None;
    }
    let started = agora::platform::start(settings, &CancellationToken::new()).await.unwrap();
    let url = |addr: std::net::SocketAddr| format!("http://{addr}");

    let mut users = UserServiceClient::new(channel(&url(started.addrs.user)).await);
    let login = LoginRequest { email: "admin@agora.test".into(), password: "admin-password".into() };
    let token = users.login(login).await.unwrap().into_inner().access_token;
    let keys = agora_kit::auth::JwtKeys::new(&SecretString::from(SECRET), Duration::from_secs(60)).unwrap();
    let admin = Caller::admin(keys.verify(&token).unwrap().sub);
    let payments = match options.payments {
        true => Some(PaymentServiceClient::new(channel(&url(started.addrs.payment)).await)),
        false => None,
    };

    Platform {
        users,
        products: ProductServiceClient::new(channel(&url(started.addrs.product)).await),
        orders: OrderServiceClient::new(channel(&url(started.addrs.order)).await),
        payments,
        admin,
        started,
    }
}

pub fn usd(minor: i64) -> Option<Money> {
    Some(Money { currency_code: "USD".into(), amount_minor: minor })
}

impl Platform {
    /// Stops every component and checks that each shut down cleanly.
    pub async fn stop(self) {
        self.started.stop().await.expect("graceful shutdown returns Ok");
    }

    /// Registers a user and returns their identity.
    pub async fn user(&mut self, email: &str) -> Caller {
        let request = RegisterRequest { email: email.into(), password: "correct horse".into(), name: "Buyer".into() };
        Caller::user(self.users.register(request).await.unwrap().into_inner().id)
    }

    pub async fn product(&mut self, name: &str, price_minor: i64, stock: i64) -> String {
        let request =
            CreateProductRequest { name: name.into(), description: String::new(), price: usd(price_minor), stock };
        self.products.create_product(self.admin.request(request)).await.unwrap().into_inner().id
    }

    pub async fn stock(&mut self, product_id: &str) -> i64 {
        self.products.get_product(GetProductRequest { id: product_id.into() }).await.unwrap().into_inner().stock
    }

    pub async fn balance(&mut self, who: &Caller) -> i64 {
        let payments = self.payments.as_mut().expect("payment-service runs");
        payments
            .get_wallet(who.request(GetWalletRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .balance
            .unwrap()
            .amount_minor
    }

    /// Waits until the order reaches `status` and returns it.
    pub async fn settled(&self, who: &Caller, order_id: &str, status: OrderStatus) -> Order {
        eventually(10, &format!("order {order_id} to become {status:?}"), || {
            let mut orders = self.orders.clone();
            let request = who.request(GetOrderRequest { id: order_id.into() });
            async move { Some(orders.get_order(request).await.unwrap().into_inner()).filter(|o| o.status() == status) }
        })
        .await
    }

    /// Waits until the product's stock is `expected`.
    pub async fn stock_becomes(&self, product_id: &str, expected: i64) {
        eventually(10, &format!("stock of {product_id} to become {expected}"), || {
            let mut products = self.products.clone();
            let request = GetProductRequest { id: product_id.into() };
            async move { (products.get_product(request).await.unwrap().into_inner().stock == expected).then_some(()) }
        })
        .await;
    }
}
