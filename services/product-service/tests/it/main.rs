//! product-service over a real gRPC connection on 127.0.0.1, on SQLite and on PostgreSQL.

use agora_events::{
    event::envelope,
    testing::{Hosted, on_loopback},
};
use agora_kit::{
    identity::Caller,
    testing::{TestDatabase, channel},
};
use agora_proto::{
    Money,
    events::OrderCancelled,
    product::{
        CommitReservationRequest, CreateProductRequest, GetProductRequest, ListProductsRequest, Product,
        ReleaseReservationRequest, ReservationItem, ReservationState, ReserveStockRequest, UpdateProductRequest,
        product_service_client::ProductServiceClient,
    },
};
use tonic::{Code, transport::Channel};

type Client = ProductServiceClient<Channel>;

struct Running {
    client: Client,
    db_url: String,
    service: Hosted,
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }
}

async fn start(db: TestDatabase) -> Running {
    let config = product_service::Config { database_url: db.url.clone(), ..Default::default() };
    let service = on_loopback(|host| product_service::run(config, host)).await;
    Running { client: Client::new(channel(&service.url).await), db_url: db.url, service }
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money { currency_code: "USD".into(), amount_minor: minor })
}

fn admin() -> Caller {
    Caller::admin("0190b2c4-0000-7000-8000-00000000ad01")
}

async fn create(client: &mut Client, name: &str, stock: i64) -> Product {
    let request = CreateProductRequest { name: name.into(), description: "a thing".into(), price: usd(1250), stock };
    client.create_product(admin().request(request)).await.unwrap().into_inner()
}

fn reserve(order_id: &str, lines: &[(&str, i64)]) -> tonic::Request<ReserveStockRequest> {
    let items = lines
        .iter()
        .map(|(id, q)| ReservationItem { product_id: (*id).into(), quantity: *q, unit_price: None })
        .collect();
    Caller::service().request(ReserveStockRequest { order_id: order_id.into(), items })
}

async fn stock(client: &mut Client, id: &str) -> i64 {
    client.get_product(GetProductRequest { id: id.into() }).await.unwrap().into_inner().stock
}

async fn catalog_crud(db: TestDatabase) {
    let mut app = start(db).await;
    let mug = create(&mut app.client, "Mug", 5).await;
    assert_eq!((mug.name.as_str(), mug.stock, mug.price.clone().unwrap().amount_minor), ("Mug", 5, 1250));

    let fetched = app.client.get_product(GetProductRequest { id: mug.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched, mug);

    let patch = UpdateProductRequest { id: mug.id.clone(), stock: Some(9), ..Default::default() };
    let updated = app.client.update_product(admin().request(patch)).await.unwrap().into_inner();
    assert_eq!((updated.stock, updated.name.as_str(), updated.price), (9, "Mug", mug.price), "only stock changed");

    let by_user = CreateProductRequest { name: "X".into(), price: usd(1), ..Default::default() };
    let denied =
        app.client.create_product(Caller::user(agora_kit::id::new_id()).request(by_user.clone())).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(app.client.create_product(by_user).await.unwrap_err().code(), Code::Unauthenticated);

    for bad in [
        CreateProductRequest { name: "".into(), price: usd(1), ..Default::default() },
        CreateProductRequest { name: "X".into(), price: usd(1), stock: -1, ..Default::default() },
        CreateProductRequest { name: "X".into(), price: None, ..Default::default() },
        CreateProductRequest {
            name: "X".into(),
            price: Some(Money { currency_code: "usd".into(), amount_minor: 1 }),
            ..Default::default()
        },
        CreateProductRequest { name: "X".into(), price: usd(-5), ..Default::default() },
    ] {
        let err = app.client.create_product(admin().request(bad.clone())).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }

    let missing = agora_kit::id::new_id();
    assert_eq!(
        app.client.get_product(GetProductRequest { id: missing.clone() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        app.client.get_product(GetProductRequest { id: "nope".into() }).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let patch_missing = UpdateProductRequest { id: missing, name: Some("Y".into()), ..Default::default() };
    assert_eq!(app.client.update_product(admin().request(patch_missing)).await.unwrap_err().code(), Code::NotFound);
    let empty_patch = UpdateProductRequest { id: mug.id.clone(), ..Default::default() };
    assert_eq!(
        app.client.update_product(admin().request(empty_patch)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let user_patch = UpdateProductRequest { id: mug.id, stock: Some(1), ..Default::default() };
    let denied = app.client.update_product(Caller::user("u").request(user_patch)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn listing_pages(db: TestDatabase) {
    let mut app = start(db).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(create(&mut app.client, &format!("P{i}"), 1).await.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_products(ListProductsRequest { page_size: 2, page_token: token })
            .await
            .unwrap()
            .into_inner();
        assert!(page.products.len() <= 2);
        seen.extend(page.products.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created, "every product once, in creation order");

    let too_big =
        app.client.list_products(ListProductsRequest { page_size: 101, ..Default::default() }).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    let forged = app
        .client
        .list_products(ListProductsRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument);
    app.stop().await;
}

async fn reservations(db: TestDatabase) {
    let mut app = start(db).await;
    let mug = create(&mut app.client, "Mug", 5).await.id;
    let order = agora_kit::id::new_id();

    let first = app.client.reserve_stock(reserve(&order, &[(&mug, 2)])).await.unwrap().into_inner();
    assert_eq!(first.state(), ReservationState::Reserved);
    assert_eq!(first.items[0].unit_price, usd(1250), "reservations are priced");
    let again = app.client.reserve_stock(reserve(&order, &[(&mug, 2)])).await.unwrap().into_inner();
    assert_eq!(again, first, "reserving twice for one order is idempotent");
    assert_eq!(stock(&mut app.client, &mug).await, 3);

    let too_many = app.client.reserve_stock(reserve(&agora_kit::id::new_id(), &[(&mug, 4)])).await.unwrap_err();
    assert_eq!(too_many.code(), Code::FailedPrecondition);
    assert!(too_many.message().contains("3 available"), "{}", too_many.message());
    assert_eq!(stock(&mut app.client, &mug).await, 3, "a failed reservation takes nothing");
    let unknown = app
        .client
        .reserve_stock(reserve(&agora_kit::id::new_id(), &[(&agora_kit::id::new_id(), 1)]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let zero = app.client.reserve_stock(reserve(&agora_kit::id::new_id(), &[(&mug, 0)])).await.unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    let mut as_user = reserve(&agora_kit::id::new_id(), &[(&mug, 1)]);
    Caller::user("u").apply(as_user.metadata_mut());
    assert_eq!(app.client.reserve_stock(as_user).await.unwrap_err().code(), Code::PermissionDenied);

    // Commit is idempotent; a committed reservation cannot be released.
    let commit = || Caller::service().request(CommitReservationRequest { order_id: order.clone() });
    assert_eq!(
        app.client.commit_reservation(commit()).await.unwrap().into_inner().state(),
        ReservationState::Committed
    );
    assert_eq!(
        app.client.commit_reservation(commit()).await.unwrap().into_inner().state(),
        ReservationState::Committed
    );
    let release = |id: &str| Caller::service().request(ReleaseReservationRequest { order_id: id.into() });
    assert_eq!(app.client.release_reservation(release(&order)).await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(stock(&mut app.client, &mug).await, 3);

    // Release gives stock back once.
    let other = agora_kit::id::new_id();
    app.client.reserve_stock(reserve(&other, &[(&mug, 3)])).await.unwrap();
    assert_eq!(stock(&mut app.client, &mug).await, 0);
    app.client.release_reservation(release(&other)).await.unwrap();
    app.client.release_reservation(release(&other)).await.unwrap();
    assert_eq!(stock(&mut app.client, &mug).await, 3);
    let after_release = app.client.reserve_stock(reserve(&other, &[(&mug, 1)])).await.unwrap_err();
    assert_eq!(after_release.code(), Code::FailedPrecondition, "a released order cannot reserve again");

    // Releasing an unknown order leaves a tombstone: a late reservation is refused.
    let late = agora_kit::id::new_id();
    let tomb = app.client.release_reservation(release(&late)).await.unwrap().into_inner();
    assert_eq!(tomb.state(), ReservationState::Released);
    assert_eq!(
        app.client.reserve_stock(reserve(&late, &[(&mug, 1)])).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    let no_such = Caller::service().request(CommitReservationRequest { order_id: agora_kit::id::new_id() });
    assert_eq!(app.client.commit_reservation(no_such).await.unwrap_err().code(), Code::NotFound);
    app.stop().await;
}

async fn concurrent_reservations_never_oversell(db: TestDatabase) {
    let mut app = start(db).await;
    let mug = create(&mut app.client, "Mug", 5).await.id;
    let attempts = (0..12).map(|_| {
        let mut client = app.client.clone();
        let mug = mug.clone();
        tokio::spawn(
            async move { client.reserve_stock(reserve(&agora_kit::id::new_id(), &[(&mug, 1)])).await.map(|_| ()) },
        )
    });
    let mut ok = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.unwrap() {
            Ok(()) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(stock(&mut app.client, &mug).await, 0);
    app.stop().await;
}

async fn cancelled_order_events_release_stock_once(db: TestDatabase) {
    let mut app = start(db).await;
    let mug = create(&mut app.client, "Mug", 5).await.id;
    let order = agora_kit::id::new_id();
    app.client.reserve_stock(reserve(&order, &[(&mug, 2)])).await.unwrap();

    // Applied on a pool of its own over the same database, as the consumer does.
    let db = product_service::store::connect(&app.db_url).await.unwrap();
    let outbox = agora_events::Outbox::without_relay(db);
    let event =
        envelope(&order, &OrderCancelled { order_id: order.clone(), user_id: "u".into(), reason: "test".into() });
    let consumer = product_service::CONSUMER;
    let handler = product_service::consumer::Consumer;
    assert!(agora_events::apply(&outbox, consumer, &handler, &event).await.unwrap(), "released");
    assert!(!agora_events::apply(&outbox, consumer, &handler, &event).await.unwrap(), "claimed already");
    assert_eq!(stock(&mut app.client, &mug).await, 5, "the same event twice releases once");
    app.stop().await;
}

/// A reservation no order settles is released after its deadline, by the database's clock;
/// a settled one, or one still within its deadline, is left alone.
async fn open_reservations_expire_and_settled_ones_stay(db: TestDatabase) {
    let mut app = start(db).await;
    let mug = create(&mut app.client, "Mug", 5).await.id;
    let (orphan, paid) = (agora_kit::id::new_id(), agora_kit::id::new_id());
    app.client.reserve_stock(reserve(&orphan, &[(&mug, 2)])).await.unwrap();
    app.client.reserve_stock(reserve(&paid, &[(&mug, 1)])).await.unwrap();
    let commit = Caller::service().request(CommitReservationRequest { order_id: paid.clone() });
    app.client.commit_reservation(commit).await.unwrap();
    assert_eq!(stock(&mut app.client, &mug).await, 2);

    // Another pool over the same database, as a second instance's expiry would be.
    let store = product_service::store::Store::new(product_service::store::connect(&app.db_url).await.unwrap());
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(store.expire(hour, 100).await.unwrap(), Vec::<String>::new(), "nothing is an hour old");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let released = store.expire(std::time::Duration::from_millis(5), 100).await.unwrap();
    assert_eq!(released, std::slice::from_ref(&orphan), "only the open reservation expires");
    assert_eq!(stock(&mut app.client, &mug).await, 4, "its 2 units are back; the paid one's stay taken");
    assert!(store.expire(std::time::Duration::ZERO, 100).await.unwrap().is_empty(), "released once");
    let late = app.client.reserve_stock(reserve(&orphan, &[(&mug, 2)])).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "an expired order cannot reserve again");
    app.stop().await;
}

#[tokio::test]
async fn open_reservations_expire_and_settled_ones_stay_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("product.db").display());
    open_reservations_expire_and_settled_ones_stay(TestDatabase { url }).await;
}

#[tokio::test]
async fn open_reservations_expire_and_settled_ones_stay_postgres() {
    if let Some(db) = TestDatabase::postgres().await {
        open_reservations_expire_and_settled_ones_stay(db).await;
    }
}

agora_kit::db_tests! {
    catalog_crud,
    listing_pages,
    reservations,
    concurrent_reservations_never_oversell,
}

// A second pool on `sqlite::memory:` would be a different database, so this one runs on a
// file for SQLite.
#[tokio::test]
async fn cancelled_order_events_release_stock_once_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("product.db").display());
    cancelled_order_events_release_stock_once(TestDatabase { url }).await;
}

#[tokio::test]
async fn cancelled_order_events_release_stock_once_postgres() {
    if let Some(db) = TestDatabase::postgres().await {
        cancelled_order_events_release_stock_once(db).await;
    }
}

/// Replicas that start together on one new database take turns migrating it; none fails.
#[tokio::test]
async fn replicas_starting_together_migrate_one_database() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = db.url.clone();
        starts.spawn(async move { product_service::store::connect(&url).await.map(drop) });
    }
    while let Some(started) = starts.join_next().await {
        started.unwrap().expect("every replica connects and finds the schema migrated");
    }
}
