//! The order saga of DESIGN.md, end to end on the in-process bus.

use std::time::Duration;

use agora_kit::testing::TestDatabase;
use agora_proto::{
    order::{CancelOrderRequest, CreateOrderItem, CreateOrderRequest, OrderStatus},
    payment::{ListPaymentsRequest, PaymentStatus},
};
use tonic::Code;

use crate::platform::{Options, start};

fn order(product_id: &str, quantity: i64, key: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        items: vec![CreateOrderItem { product_id: product_id.into(), quantity }],
        idempotency_key: key.into(),
    }
}

async fn paid_declined_and_idempotent(db: TestDatabase) {
    let mut p = start(db, Options::default()).await;
    let buyer = p.user("buyer@agora.test").await;
    let mug = p.product("Mug", 12_50, 5).await;

    // Order 2 → PAID, stock 3, wallet debited.
    let placed = p.orders.create_order(buyer.request(order(&mug, 2, ""))).await.unwrap().into_inner();
    assert_eq!(placed.status(), OrderStatus::PendingPayment);
    assert_eq!(placed.total, crate::platform::usd(25_00));
    let paid = p.settled(&buyer, &placed.id, OrderStatus::Paid).await;
    assert_eq!(paid.cancel_reason, "");
    assert_eq!(p.stock(&mug).await, 3);
    assert_eq!(p.balance(&buyer).await, 75_00);

    // Above the wallet's balance → CANCELLED (insufficient funds), stock released.
    let lamp = p.product("Lamp", 50_00, 5).await;
    let dear = p.orders.create_order(buyer.request(order(&lamp, 2, ""))).await.unwrap().into_inner();
    let cancelled = p.settled(&buyer, &dear.id, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.cancel_reason, "payment declined: insufficient funds");
    p.stock_becomes(&lamp, 5).await;
    assert_eq!(p.balance(&buyer).await, 75_00);

    // The same idempotency key twice → one order, one payment.
    let first = p.orders.create_order(buyer.request(order(&mug, 1, "retry-1"))).await.unwrap().into_inner();
    let second = p.orders.create_order(buyer.request(order(&mug, 1, "retry-1"))).await.unwrap().into_inner();
    assert_eq!(first.id, second.id);
    p.settled(&buyer, &first.id, OrderStatus::Paid).await;
    let payments = p.payments.as_mut().unwrap();
    let listed = payments
        .list_payments(buyer.request(ListPaymentsRequest { order_id: first.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status(), PaymentStatus::Succeeded);
    assert_eq!(p.balance(&buyer).await, 62_50, "charged once for the retried order");
    assert_eq!(p.stock(&mug).await, 2);

    // A paid order cannot be cancelled.
    let late = p.orders.cancel_order(buyer.request(CancelOrderRequest { id: placed.id })).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    p.stop().await;
}

async fn cancelling_a_pending_order_releases_its_stock(db: TestDatabase) {
    let mut p = start(db, Options { payments: false, ..Default::default() }).await;
    let buyer = p.user("buyer@agora.test").await;
    let mug = p.product("Mug", 12_50, 5).await;
    let pending = p.orders.create_order(buyer.request(order(&mug, 4, ""))).await.unwrap().into_inner();
    assert_eq!(p.stock(&mug).await, 1);

    let stranger = p.user("stranger@agora.test").await;
    let denied =
        p.orders.cancel_order(stranger.request(CancelOrderRequest { id: pending.id.clone() })).await.unwrap_err();
    assert_eq!(denied.code(), Code::NotFound, "another user's order answers as an unknown one");

    let cancelled =
        p.orders.cancel_order(buyer.request(CancelOrderRequest { id: pending.id.clone() })).await.unwrap().into_inner();
    assert_eq!(
        (cancelled.status(), cancelled.cancel_reason.as_str()),
        (OrderStatus::Cancelled, "cancelled by customer")
    );
    p.stock_becomes(&mug, 5).await;
    let again = p.orders.cancel_order(buyer.request(CancelOrderRequest { id: pending.id })).await.unwrap().into_inner();
    assert_eq!(again.status(), OrderStatus::Cancelled, "cancelling twice is a no-op");
    p.stop().await;
}

async fn the_sweeper_cancels_orders_never_paid(db: TestDatabase) {
    let mut p = start(db, Options { payments: false, payment_timeout: Duration::ZERO }).await;
    let buyer = p.user("buyer@agora.test").await;
    let mug = p.product("Mug", 12_50, 5).await;
    let pending = p.orders.create_order(buyer.request(order(&mug, 2, ""))).await.unwrap().into_inner();
    let swept = p.settled(&buyer, &pending.id, OrderStatus::Cancelled).await;
    assert_eq!(swept.cancel_reason, "payment not received in time");
    p.stock_becomes(&mug, 5).await;
    p.stop().await;
}

agora_kit::db_tests!(
    paid_declined_and_idempotent,
    cancelling_a_pending_order_releases_its_stock,
    the_sweeper_cancels_orders_never_paid,
);
