//! Each order-service RPC's error codes.

use agora_events::Host;
use agora_kit::{identity::Caller, testing::TestDatabase};
use agora_proto::order::{CancelOrderRequest, CreateOrderItem, CreateOrderRequest, GetOrderRequest, ListOrdersRequest};
use tonic::Code;

use crate::platform::{Options, start};

fn items(lines: &[(&str, i64)]) -> Vec<CreateOrderItem> {
    lines.iter().map(|(id, q)| CreateOrderItem { product_id: (*id).into(), quantity: *q }).collect()
}

async fn create_order_errors(db: TestDatabase) {
    let mut p = start(db, Options { payments: false, ..Default::default() }).await;
    let buyer = p.user("buyer@agora.test").await;
    let mug = p.product("Mug", 12_50, 5).await;
    let create =
        |lines: &[(&str, i64)], key: &str| CreateOrderRequest { items: items(lines), idempotency_key: key.into() };

    let cases = [
        (create(&[], ""), Code::InvalidArgument, "an order needs"),
        (create(&[(&mug, 0)], ""), Code::InvalidArgument, "items[0]: quantity"),
        (create(&[("not-a-uuid", 1)], ""), Code::InvalidArgument, "items[0]: product_id"),
        (create(&[(&mug, 1)], "has spaces"), Code::InvalidArgument, "idempotency key"),
        (create(&[(&agora_kit::id::new_id(), 1)], ""), Code::NotFound, "not found"),
        (create(&[(&mug, 6)], ""), Code::FailedPrecondition, "5 available"),
    ];
    for (request, code, needle) in cases {
        let err = p.orders.create_order(buyer.request(request.clone())).await.unwrap_err();
        assert_eq!(err.code(), code, "{request:?}: {err:?}");
        assert!(err.message().contains(needle), "{:?} lacks {needle:?}", err.message());
    }
    assert_eq!(p.stock(&mug).await, 5, "failed orders hold no stock");

    let anonymous = p.orders.create_order(create(&[(&mug, 1)], "")).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // The key may also come from the Idempotency-Key header (gRPC metadata).
    let mut with_header = buyer.request(create(&[(&mug, 1)], ""));
    with_header.metadata_mut().insert("idempotency-key", "hdr-1".parse().unwrap());
    let first = p.orders.create_order(with_header).await.unwrap().into_inner();
    let same = p.orders.create_order(buyer.request(create(&[(&mug, 1)], "hdr-1"))).await.unwrap().into_inner();
    assert_eq!(first.id, same.id);
    let reused = p.orders.create_order(buyer.request(create(&[(&mug, 2)], "hdr-1"))).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    // Another user's identical key is their own order.
    let other = p.user("other@agora.test").await;
    let theirs = p.orders.create_order(other.request(create(&[(&mug, 1)], "hdr-1"))).await.unwrap().into_inner();
    assert_ne!(theirs.id, first.id);
    p.stop().await;
}

async fn reading_and_listing_orders(db: TestDatabase) {
    let mut p = start(db, Options { payments: false, ..Default::default() }).await;
    let buyer = p.user("buyer@agora.test").await;
    let mug = p.product("Mug", 1_00, 50).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let request = CreateOrderRequest { items: items(&[(&mug, 1)]), idempotency_key: String::new() };
        ids.push(p.orders.create_order(buyer.request(request)).await.unwrap().into_inner().id);
    }
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = p
            .orders
            .list_orders(buyer.request(ListOrdersRequest { page_size: 2, page_token: token }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.orders.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);

    let stranger = p.user("stranger@agora.test").await;
    let theirs = p.orders.list_orders(stranger.request(ListOrdersRequest::default())).await.unwrap().into_inner();
    assert!(theirs.orders.is_empty(), "lists only the caller's orders");
    let get = |id: &str| GetOrderRequest { id: id.into() };
    // Another user's order answers as an unknown one (OWASP API1).
    assert_eq!(p.orders.get_order(stranger.request(get(&ids[0]))).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        p.orders.get_order(p.admin.request(get(&ids[0]))).await.unwrap().into_inner().id,
        ids[0],
        "admins may read any order"
    );
    assert_eq!(
        p.orders.get_order(buyer.request(get(&agora_kit::id::new_id()))).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(p.orders.get_order(buyer.request(get("42"))).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_page = ListOrdersRequest { page_size: -1, ..Default::default() };
    assert_eq!(p.orders.list_orders(buyer.request(bad_page)).await.unwrap_err().code(), Code::InvalidArgument);
    let cancel_missing = CancelOrderRequest { id: agora_kit::id::new_id() };
    assert_eq!(p.orders.cancel_order(buyer.request(cancel_missing)).await.unwrap_err().code(), Code::NotFound);
    p.stop().await;
}

agora_kit::db_tests!(create_order_errors, reading_and_listing_orders);

/// order-service starts and answers even when the services it calls are down; those calls
/// fail with Unavailable.
#[tokio::test]
async fn dependencies_down_means_unavailable_not_a_crash() {
    let bus = std::sync::Arc::new(agora_events::LocalBus::in_memory().await.unwrap());
    let (listener, url) = agora_kit::testing::loopback().await;
    // Ports nobody listens on: bind and drop.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let config = order_service::Config {
        database_url: "sqlite::memory:".into(),
        user_addr: dead.clone(),
        product_addr: dead,
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(order_service::run(config, Host::new(bus, listener, stop.clone())));
    let mut orders =
        agora_proto::order::order_service_client::OrderServiceClient::new(agora_kit::testing::channel(&url).await);
    let request = CreateOrderRequest { items: items(&[(&agora_kit::id::new_id(), 1)]), idempotency_key: String::new() };
    let err = orders.create_order(Caller::user(agora_kit::id::new_id()).request(request)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("user-service"), "{}", err.message());
    stop.cancel();
    server.await.unwrap().unwrap();
}
