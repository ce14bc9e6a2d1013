//! A replicated PostgreSQL (a primary and a synchronous standby run by Patroni, its state in
//! Consul) losing its primary, Patroni and PostgreSQL at once as a machine loss would, while
//! product-service writes to it and serves catalog reads off the standby. No acknowledged write
//! is lost, writes succeed again once the standby is promoted (product-service finds it by
//! itself: its URL names both servers), catalog reads never stop, and the lost member rejoins
//! as the new standby when it comes back.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use agora_events::testing::on_loopback;
use agora_kit::{
    identity::Caller,
    testing::{PrivateInstance, channel, consul_addr, eventually, postgres_available},
};
use agora_proto::{
    Money,
    product::{
        CreateProductRequest, GetProductRequest, ListProductsRequest, product_service_client::ProductServiceClient,
    },
};
use tonic::transport::Channel;

const ADMIN: &str = "0190b2c4-0000-7000-8000-00000000ad01";

/// What the writer saw: the id of every product acknowledged, its failed calls, and the time of
/// the first acknowledgement after the fault (once `fault` is set).
struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
    first_after_fault: Arc<Mutex<Option<Instant>>>,
    fault: Arc<Mutex<Option<Instant>>>,
}

async fn write(client: ProductServiceClient<Channel>, w: Arc<Writer>, stop: Arc<AtomicBool>) {
    let mut client = client;
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let request = CreateProductRequest {
            name: format!("failover product {n}"),
            description: String::new(),
            price: Some(Money { currency_code: "USD".into(), amount_minor: 100 }),
            stock: 1,
        };
        let call = client.create_product(Caller::admin(ADMIN).request(request));
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(created)) => {
                w.acked.lock().unwrap().push(created.into_inner().id);
                if w.fault.lock().unwrap().is_some() {
                    w.first_after_fault.lock().unwrap().get_or_insert_with(Instant::now);
                }
            }
            _ => {
                w.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read(client: ProductServiceClient<Channel>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let mut client = client;
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let request = ListProductsRequest { page_size: 5, page_token: String::new() };
        match tokio::time::timeout(Duration::from_secs(5), client.list_products(request)).await {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(status)) => {
                eprintln!("catalog read failed: {status}");
                failed += 1;
            }
            Err(_) => {
                eprintln!("catalog read took over 5 s");
                failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ok, failed)
}

#[tokio::test]
async fn losing_the_primary_loses_no_acknowledged_write_and_catalog_reads_go_on() {
    // The cluster is private, but it runs only where the suite has PostgreSQL and Consul.
    let Some(_) = consul_addr() else { return };
    if !postgres_available() {
        return;
    }
    let consul = PrivateInstance::consul("pg-dcs");
    let cluster = PrivateInstance::pg_cluster("failover", &consul.addr());
    cluster.output(&["create-db", "product"]);
    let writes = cluster.output(&["url"]).replace("/postgres?", "/product?");
    let reads = writes.replace("read-write", "prefer-standby");
    let config = product_service::Config { database_url: writes, database_read_url: Some(reads), ..Default::default() };
    let service = on_loopback(|host| product_service::run(config, host)).await;
    let client = ProductServiceClient::new(channel(&service.url).await);

    let writer = Arc::new(Writer {
        acked: Arc::default(),
        failed: Arc::default(),
        first_after_fault: Arc::default(),
        fault: Arc::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(write(client.clone(), writer.clone(), stop.clone()));
    let reading = tokio::spawn(read(client.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let lost = cluster.output(&["primary"]);
    cluster.output(&["kill", &lost]);
    let killed = Instant::now();
    *writer.fault.lock().unwrap() = Some(killed);
    let back = eventually(60, "a write acknowledged after the primary was lost", || async {
        *writer.first_after_fault.lock().unwrap()
    })
    .await;
    let writes_back = back - killed;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let (reads_ok, reads_failed) = reading.await.unwrap();

    let promoted = cluster.output(&["primary"]);
    assert_ne!(promoted, lost, "the standby leads now");
    let acked = writer.acked.lock().unwrap().clone();
    eprintln!(
        "member {lost} killed: member {promoted} leads; writes succeeded again after {writes_back:?} \
         ({} acknowledged, {} failed); catalog reads: {reads_ok} answered, {reads_failed} failed",
        acked.len(),
        writer.failed.load(Ordering::Relaxed)
    );
    assert!(acked.len() > 50, "writes flowed before and after: {}", acked.len());
    // Every acknowledged product is there (the synchronous standby had each commit).
    let mut check = client.clone();
    for id in &acked {
        let found = check.get_product(GetProductRequest { id: id.clone() }).await;
        assert!(found.is_ok(), "acknowledged product {id} was lost: {found:?}");
    }
    assert_eq!(reads_failed, 0, "catalog reads kept working while the primary failed over");
    assert!(reads_ok > 50, "catalog reads flowed: {reads_ok}");

    // The lost member comes back as the new primary's standby.
    cluster.output(&["start-member", &lost]);
    eventually(90, "the lost member to rejoin as a standby", || async {
        let list = cluster.output(&["list"]);
        list.lines().any(|line| line.starts_with(&format!("{lost} ")) && line.ends_with(" replica")).then_some(())
    })
    .await;
    service.stop().await;
}
