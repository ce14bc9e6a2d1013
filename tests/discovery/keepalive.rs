//! A connection that went dead without closing (a blackhole: bytes accepted, nothing delivered)
//! is found by the balanced channel's HTTP/2 PINGs and made again, instead of failing every
//! call on it until TCP gives up.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agora_discovery::{Policy, Resolver};
use agora_kit::testing::loopback;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A TCP relay that can swallow every byte either way while keeping the connections open,
/// and counts the connections their client closed.
struct Relay {
    swallowing: Arc<AtomicBool>,
    closed_by_client: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(listener: TcpListener, upstream: String) -> Self {
        let relay = Self { swallowing: Arc::default(), closed_by_client: Arc::default(), accepted: Arc::default() };
        let (swallowing, closed, accepted) =
            (relay.swallowing.clone(), relay.closed_by_client.clone(), relay.accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let (to_server, to_client) = (swallowing.clone(), swallowing.clone());
                let closed = closed.clone();
                tokio::spawn(async move {
                    pipe(client_read, server_write, to_server).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
                tokio::spawn(pipe(server_read, client_write, to_client));
            }
        });
        relay
    }
}

/// Copies `from` to `to` until `from` ends, dropping what it reads while `swallowing`.
async fn pipe(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, swallowing: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if !swallowing.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_blackholed_connection_is_dropped_by_its_pings_and_made_again() {
    // A gRPC server with the health service, behind the relay.
    let (server, server_url) = loopback().await;
    let (health, service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(server)),
    );
    let (front, _) = loopback().await;
    let front_addr = front.local_addr().unwrap().to_string();
    let relay = Relay::start(front, server_url.trim_start_matches("http://").to_owned()).await;

    let policy = Policy::default();
    let balanced = Resolver::fixed().policy(policy.clone()).channel("order-service", &front_addr).unwrap();
    let mut client = HealthClient::new(balanced);
    client.check(HealthCheckRequest::default()).await.expect("the first call, over the relay");
    assert_eq!(relay.accepted.load(Ordering::SeqCst), 1);

    // The path swallows everything now; the connection stays open at the TCP level.
    relay.swallowing.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let bound = policy.keepalive + policy.keepalive_timeout + Duration::from_secs(3);
    while relay.closed_by_client.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < bound, "the dead connection was still open after {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Healed: the next call gets a new connection and its answer.
    relay.swallowing.store(false, Ordering::SeqCst);
    let answer = tokio::time::timeout(Duration::from_secs(5), client.check(HealthCheckRequest::default())).await;
    answer.expect("an answer within 5 s").expect("the call after the heal");
    assert!(relay.accepted.load(Ordering::SeqCst) >= 2, "the call went over a new connection");
}
