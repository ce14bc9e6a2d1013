//! Mutual TLS between roles, against a real product-service served with `--tls-*` files: who
//! gets past the handshake, who may call which method, the plaintext health port beside it, and
//! certificates (the CA's too) rotated on disk while calls flow. And the gateway's HTTPS: HTTP/2 and HTTP/1.1 by ALPN, and a
//! renewed certificate served without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use agora_events::{Host, LocalBus};
use agora_kit::{
    grpc::{Health, Listener},
    identity::Caller,
    testing::{Served, channel, loopback},
    tls::{Connector, Credentials, Identity, PublicCert, Reload as _, TlsFiles, issue::Ca},
};
use agora_proto::{
    Money,
    product::{
        CreateProductRequest, ListProductsRequest, ReservationItem, ReserveStockRequest,
        product_service_client::ProductServiceClient,
    },
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tonic::{Code, transport::Channel};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
};

const DOMAIN: &str = "agora.local";
const DAY: Duration = Duration::from_secs(86_400);

/// A folder of PEM files: a CA, and certificates it issued to roles.
struct Pki {
    dir: PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let ca = Ca::new(name, 30 * DAY).unwrap();
        let pki = Self { dir: dir.join(name), ca };
        std::fs::create_dir_all(&pki.dir).unwrap();
        std::fs::write(pki.dir.join("ca.pem"), pki.ca.cert_pem()).unwrap();
        pki
    }

    /// `role`'s files, valid from `from` to `until`.
    fn issue_between(&self, role: &str, from: SystemTime, until: SystemTime) -> TlsFiles {
        let issued = self.ca.issue(&Identity::new(DOMAIN, role), &[], from, until).unwrap();
        let files = TlsFiles {
            cert: self.dir.join(format!("{role}.pem")),
            key: self.dir.join(format!("{role}-key.pem")),
            ca: self.dir.join("ca.pem"),
        };
        std::fs::write(&files.key, issued.key_pem).unwrap();
        std::fs::write(&files.cert, issued.cert_pem).unwrap();
        files
    }

    fn issue(&self, role: &str) -> TlsFiles {
        let now = SystemTime::now();
        self.issue_between(role, now - Duration::from_secs(60), now + DAY)
    }
}

/// product-service on loopback, mutual TLS with `files`.
async fn product_service(files: TlsFiles) -> (Served, String, Arc<Credentials>) {
    let creds = Credentials::load(files, DOMAIN).unwrap();
    let (tcp, url) = loopback().await;
    let listener = Listener::from(tcp).with_tls(Some(creds.clone()));
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let config = product_service::Config { database_url: "sqlite::memory:".to_owned(), ..Default::default() };
    let served = Served::spawn(|stop| product_service::run(config, Host::new(bus, listener, stop)));
    (served, url, creds)
}

/// A channel to product-service at `url` as the role `files` name, expecting the server to be
/// `expect`; connecting happens on the first call.
fn client(files: &TlsFiles, url: &str, expect: &str) -> ProductServiceClient<Channel> {
    let creds = Credentials::load(files.clone(), DOMAIN).unwrap();
    client_with(&creds, url, expect)
}

fn client_with(creds: &Arc<Credentials>, url: &str, expect: &str) -> ProductServiceClient<Channel> {
    let connector = Connector::new(creds, expect, Duration::from_secs(2)).unwrap();
    let channel = agora_kit::grpc::endpoint(url).unwrap().connect_with_connector_lazy(connector);
    ProductServiceClient::new(channel)
}

fn list() -> tonic::Request<ListProductsRequest> {
    Caller::service().request(ListProductsRequest::default())
}

/// A call that never reached product-service's handlers: the connection failed (the caller's
/// side, or the server's alert after its handshake) rather than the server answering.
#[track_caller]
fn assert_refused(result: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>) {
    let status = result.unwrap_err();
    let from_transport = std::error::Error::source(&status).is_some();
    assert!(
        from_transport && matches!(status.code(), Code::Unavailable | Code::Unknown),
        "expected a refused connection, got {status:?}"
    );
}

/// Lists products until product-service answers (it starts in the background).
async fn until_served(client: &mut ProductServiceClient<Channel>) {
    for _ in 0..100 {
        if client.list_products(list()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("product-service never answered over mutual TLS");
}

#[tokio::test]
async fn plaintext_another_ca_an_expired_certificate_and_the_wrong_server_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "deployment");
    let (served, url, _) = product_service(pki.issue("product-service")).await;
    let gateway = pki.issue("gateway");
    until_served(&mut client(&gateway, &url, "product-service")).await;

    // Plaintext HTTP/2 never gets past the handshake.
    let plain = Channel::from_shared(url.clone()).unwrap().connect_lazy();
    assert_refused(ProductServiceClient::new(plain).list_products(list()).await);

    // A certificate of the same role from another CA.
    let rogue = Pki::new(dir.path(), "rogue").issue("gateway");
    let rogue_files = TlsFiles { ca: gateway.ca.clone(), ..rogue };
    assert_refused(client(&rogue_files, &url, "product-service").list_products(list()).await);

    // An expired one from the right CA.
    let now = SystemTime::now();
    let expired = pki.issue_between("payment-service", now - 3 * DAY, now - DAY);
    assert_refused(client(&expired, &url, "product-service").list_products(list()).await);

    // A client that meant to reach user-service refuses product-service's certificate.
    let status = client(&gateway, &url, "user-service").list_products(list()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(format!("{status:?}").contains("not spiffe://agora.local/user-service"), "{status:?}");
    served.stop().await;
}

#[tokio::test]
async fn the_health_port_answers_health_checks_in_plaintext_and_nothing_else_and_stops_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "deployment");
    let creds = Credentials::load(pki.issue("product-service"), DOMAIN).unwrap();
    let ((tcp, url), (health_tcp, health_url)) = (loopback().await, loopback().await);
    let health_addr = health_tcp.local_addr().unwrap();
    let health = Health::new();
    let listener =
        Listener::from(tcp).with_tls(Some(creds)).with_health(health.clone()).with_health_port(Some(health_tcp));
    let bus = Arc::new(LocalBus::in_memory().await.unwrap());
    let config = product_service::Config { database_url: "sqlite::memory:".to_owned(), ..Default::default() };
    let served = Served::spawn(|stop| product_service::run(config, Host::new(bus, listener, stop)));
    until_served(&mut client(&pki.issue("gateway"), &url, "product-service")).await;

    // What Kubernetes' gRPC probe and Consul's check ask, in plaintext: the role's own health.
    let mut probe = HealthClient::new(channel(&health_url).await);
    let check = || HealthCheckRequest { service: product_service::SERVICE_NAME.to_owned() };
    let status = probe.check(check()).await.unwrap().into_inner().status;
    assert_eq!(status, health_check_response::ServingStatus::Serving as i32);
    health.set(&[product_service::SERVICE_NAME], ServingStatus::NotServing).await;
    let status = probe.check(check()).await.unwrap().into_inner().status;
    assert_eq!(status, health_check_response::ServingStatus::NotServing as i32);

    // Nothing else answers there: the catalog is behind mutual TLS only.
    let other = ProductServiceClient::new(channel(&health_url).await).list_products(list()).await.unwrap_err();
    assert_eq!(other.code(), Code::Unimplemented, "{other:?}");
    let plain = Channel::from_shared(url).unwrap().connect_lazy();
    assert_refused(ProductServiceClient::new(plain).list_products(list()).await);

    served.stop().await;
    assert!(tokio::net::TcpStream::connect(health_addr).await.is_err(), "the health port outlived the server");
}

#[tokio::test]
async fn each_method_answers_only_the_roles_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "deployment");
    let (served, url, _) = product_service(pki.issue("product-service")).await;
    let mut gateway = client(&pki.issue("gateway"), &url, "product-service");
    let mut order = client(&pki.issue("order-service"), &url, "product-service");
    let mut payment = client(&pki.issue("payment-service"), &url, "product-service");
    until_served(&mut gateway).await;

    // The public API is the gateway's.
    let created = gateway
        .create_product(Caller::admin("admin-1").request(CreateProductRequest {
            name: "mug".into(),
            description: "a mug".into(),
            price: Some(Money { currency_code: "USD".into(), amount_minor: 900 }),
            stock: 5,
        }))
        .await
        .unwrap()
        .into_inner();
    let denied = payment.list_products(list()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("spiffe://agora.local/payment-service may not call"), "{denied:?}");

    // Reservations are order-service's: the gateway cannot reach past its routes to them.
    let reserve = || {
        Caller::service().request(ReserveStockRequest {
            order_id: agora_kit::id::new_id(),
            items: vec![ReservationItem { product_id: created.id.clone(), quantity: 1, unit_price: None }],
        })
    };
    let denied = gateway.reserve_stock(reserve()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("order-service"), "the refusal names who may call: {denied:?}");
    order.reserve_stock(reserve()).await.unwrap();
    served.stop().await;
}

#[tokio::test]
async fn every_certificate_and_the_ca_rotated_on_disk_under_calls_fail_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::new(dir.path(), "old");
    let new = Pki::new(dir.path(), "new");
    let server_files = old.issue("product-service");
    let (served, url, server_creds) = product_service(server_files.clone()).await;
    server_creds.watch(Duration::from_millis(100), tokio_util::sync::CancellationToken::new());
    let client_files = old.issue("gateway");
    let client_creds = Credentials::load(client_files.clone(), DOMAIN).unwrap();
    client_creds.watch(Duration::from_millis(100), tokio_util::sync::CancellationToken::new());
    until_served(&mut client_with(&client_creds, &url, "product-service")).await;
    // A caller of the old CA that trusts both, and stays (its files are not watched): after
    // the old CA is dropped it must be refused on every new connection, not resumed.
    let stale_dir = dir.path().join("stale");
    std::fs::create_dir_all(&stale_dir).unwrap();
    let now = SystemTime::now();
    let stale_issued =
        old.ca.issue(&Identity::new(DOMAIN, "gateway"), &[], now - Duration::from_secs(60), now + DAY).unwrap();
    let stale_files = TlsFiles {
        cert: stale_dir.join("gateway.pem"),
        key: stale_dir.join("gateway-key.pem"),
        ca: stale_dir.join("ca.pem"),
    };
    std::fs::write(&stale_files.cert, stale_issued.cert_pem).unwrap();
    std::fs::write(&stale_files.key, stale_issued.key_pem).unwrap();
    std::fs::write(&stale_files.ca, format!("{}{}", old.ca.cert_pem(), new.ca.cert_pem())).unwrap();
    let stale =
        Connector::new(&Credentials::load(stale_files, DOMAIN).unwrap(), "product-service", Duration::from_secs(2))
            .unwrap();
    let stale_call = |stale: &Connector| {
        let channel = agora_kit::grpc::endpoint(&url).unwrap().connect_with_connector_lazy(stale.clone());
        async move { ProductServiceClient::new(channel).list_products(list()).await }
    };
    stale_call(&stale).await.unwrap();

    // Calls on fresh connections (a new channel every call, so each makes a handshake) while
    // the files change underneath.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, calls, failures, creds, url) =
            (stop.clone(), calls.clone(), failures.clone(), client_creds.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Err(status) = client_with(&creds, &url, "product-service").list_products(list()).await {
                    eprintln!("call failed during rotation: {status:?}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let bundle = format!("{}{}", old.ca.cert_pem(), new.ca.cert_pem());
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    // 1. Both sides trust both CAs.
    std::fs::write(&server_files.ca, &bundle).unwrap();
    std::fs::write(&client_files.ca, &bundle).unwrap();
    pause().await;
    // 2. Both get certificates of the new CA (key and certificate written one after the other,
    // as a renewal does).
    for (files, role) in [(&server_files, "product-service"), (&client_files, "gateway")] {
        let renewed = new.issue(role);
        std::fs::copy(&renewed.key, &files.key).unwrap();
        std::fs::copy(&renewed.cert, &files.cert).unwrap();
    }
    pause().await;
    // 3. The old CA is trusted no more.
    std::fs::write(&server_files.ca, new.ca.cert_pem()).unwrap();
    std::fs::write(&client_files.ca, new.ca.cert_pem()).unwrap();
    pause().await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (calls, failures) = (calls.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    assert!(calls >= 20, "only {calls} calls during the rotation");
    assert_eq!(failures, 0, "{failures} of {calls} calls failed during the rotation");
    // Both sides now hold the new CA's certificates and trust it alone: the client of the old
    // CA is refused (its earlier session is not resumed), and the rotated client is served.
    assert_refused(stale_call(&stale).await);
    client_with(&client_creds, &url, "product-service").list_products(list()).await.unwrap();
    served.stop().await;
}

/// The gateway serving HTTPS with `cert`'s files: backends that are never called (`/healthz`
/// answers without them).
async fn https_gateway(cert: Arc<PublicCert>) -> (Served, std::net::SocketAddr) {
    let (tcp, _) = loopback().await;
    let addr = tcp.local_addr().unwrap();
    let backends = [
        user_service::SERVICE_NAME,
        product_service::SERVICE_NAME,
        order_service::SERVICE_NAME,
        payment_service::SERVICE_NAME,
    ];
    let config = gateway::Config {
        backends: backends.iter().map(|s| ((*s).to_owned(), "127.0.0.1:9".to_owned())).collect(),
        jwt_secret: "k".repeat(40).into(),
        https: Some(cert),
        ..Default::default()
    };
    (Served::spawn(|stop| gateway::run(config, tcp, stop)), addr)
}

/// An HTTPS connection to `addr` trusting `ca_pem` alone and offering `alpn`: what ALPN chose,
/// and a sender of requests on it.
async fn https_connect(addr: std::net::SocketAddr, ca_pem: &str, alpn: &[u8]) -> anyhow::Result<(Vec<u8>, Sender)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let chosen = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let io = hyper_util::rt::TokioIo::new(tls);
    let sender = if chosen == b"h2" {
        let (sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    Ok((chosen, sender))
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>),
}

impl Sender {
    async fn get(&mut self, path: &str) -> anyhow::Result<http::StatusCode> {
        let request = http::Request::get(format!("https://localhost{path}"))
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::new())?;
        Ok(match self {
            Sender::H1(sender) => sender.send_request(request).await?.status(),
            Sender::H2(sender) => sender.send_request(request).await?.status(),
        })
    }
}

#[tokio::test]
async fn the_gateway_serves_https_over_http2_and_http1_and_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Pki::new(dir.path(), "web-old"), Pki::new(dir.path(), "web-new"));
    let issue = |pki: &Pki| {
        let now = SystemTime::now();
        let issued = pki.ca.issue_server(&["localhost".to_owned()], now, now + DAY).unwrap();
        (issued.cert_pem, issued.key_pem)
    };
    let (cert_file, key_file) = (dir.path().join("https.pem"), dir.path().join("https-key.pem"));
    let (cert, key) = issue(&old);
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let https = PublicCert::load(&cert_file, &key_file).unwrap();
    https.watch(Duration::from_millis(100), tokio_util::sync::CancellationToken::new());
    let (served, addr) = https_gateway(https).await;
    let mut ready = false;
    for _ in 0..100 {
        if https_connect(addr, old.ca.cert_pem(), b"h2").await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway never served HTTPS");

    // ALPN picks HTTP/2 or HTTP/1.1, as the client offers.
    let (chosen, mut h2) = https_connect(addr, old.ca.cert_pem(), b"h2").await.unwrap();
    assert_eq!(chosen, b"h2");
    assert_eq!(h2.get("/healthz").await.unwrap(), 200);
    let (chosen, mut h1) = https_connect(addr, old.ca.cert_pem(), b"http/1.1").await.unwrap();
    assert_eq!(chosen, b"http/1.1");
    assert_eq!(h1.get("/healthz").await.unwrap(), 200);
    // Plaintext HTTP gets no answer.
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.is_err());

    // A renewed certificate (of another CA, to tell them apart): new connections get it, and
    // the connections already open keep working.
    let (cert, key) = issue(&new);
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    let mut renewed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if https_connect(addr, new.ca.cert_pem(), b"h2").await.is_ok() {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "the renewed certificate was never served");
    assert!(https_connect(addr, old.ca.cert_pem(), b"h2").await.is_err(), "the old certificate is still served");
    assert_eq!(h2.get("/healthz").await.unwrap(), 200, "an HTTP/2 connection opened before the renewal");
    assert_eq!(h1.get("/healthz").await.unwrap(), 200, "an HTTP/1.1 connection opened before the renewal");
    served.stop().await;
}
