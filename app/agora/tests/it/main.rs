//! The `agora` binary, run as a real process per role: it starts, answers grpc.health.v1
//! with SERVING, lists its services over reflection (even while the roles it calls are
//! down), and exits 0 on SIGTERM.

mod all;
mod client;
mod distributed;
mod loadgen;
mod reconcile;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use agora_kit::testing::{channel, free_port};
use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

struct Role {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn spawn(role: &str, extra: &[&str]) -> Role {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = format!("sqlite:{}", dir.path().join(format!("{role}.db")).display());
    let dead = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg(role)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--database-url", &db])
        .args(extra)
        // The suite's broker wants SASL_SSL and a client certificate.
        .envs(agora_kit::testing::kafka_client_env())
        // Where a role calls another, point it at a port nobody listens on.
        .env("AGORA_USER_ADDR", &dead)
        .env("AGORA_PRODUCT_ADDR", &dead)
        .env("AGORA_JWT_SECRET", "role-test-secret-role-test-secret!")
        .env("AGORA_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .expect("agora binary starts");
    Role { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
}

async fn serving(url: &str, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(channel(url).await);
    let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap();
    response.into_inner().status()
}

async fn listed_services(url: &str) -> Vec<String> {
    let mut reflection = ServerReflectionClient::new(channel(url).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    match responses.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn terminate(role: &mut Role) -> std::process::ExitStatus {
    let pid = role.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Shorter than the server's drain timeout: a clean drain must not need it.
    for _ in 0..80 {
        if let Some(status) = role.child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agora did not exit within 8 s of SIGTERM");
}

async fn check_role(role: &str, service: &str) {
    check_role_with(role, service, &[]).await;
}

async fn check_role_with(role: &str, service: &str, extra: &[&str]) {
    let mut running = spawn(role, extra);
    assert_eq!(serving(&running.url, "").await, ServingStatus::Serving, "{role} overall health");
    assert_eq!(serving(&running.url, service).await, ServingStatus::Serving, "{role} {service} health");
    let services = listed_services(&running.url).await;
    for expected in [service, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(services.iter().any(|s| s == expected), "{role} does not list {expected}: {services:?}");
    }
    let status = terminate(&mut running).await;
    assert!(status.success(), "{role} exited with {status} on SIGTERM");
}

#[tokio::test]
async fn user_service_role() {
    check_role("user-service", "agora.user.v1.UserService").await;
}

#[tokio::test]
async fn product_service_role() {
    check_role("product-service", "agora.product.v1.ProductService").await;
}

#[tokio::test]
async fn order_service_role_starts_while_its_dependencies_are_down() {
    check_role("order-service", "agora.order.v1.OrderService").await;
}

#[tokio::test]
async fn payment_service_role() {
    check_role("payment-service", "agora.payment.v1.PaymentService").await;
}

#[tokio::test]
async fn payment_service_role_on_kafka() {
    let Some(brokers) = agora_kit::testing::kafka_brokers() else { return };
    let extra = ["--events", "kafka", "--kafka-brokers", brokers.as_str()];
    check_role_with("payment-service", "agora.payment.v1.PaymentService", &extra).await;
}

#[tokio::test]
async fn gateway_role_is_live_before_its_backends_and_ready_only_with_them() {
    let port = free_port();
    let dead = format!("127.0.0.1:{}", free_port());
    let mut gateway = Role {
        child: Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--user-addr", &dead, "--product-addr", &dead, "--order-addr", &dead, "--payment-addr", &dead])
            .env("AGORA_JWT_SECRET", "role-test-secret-role-test-secret!")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
        _dir: tempfile::tempdir().unwrap(),
    };
    let http = reqwest::Client::new();
    let live = agora_kit::testing::eventually(10, "the gateway to listen", || async {
        http.get(format!("{}/healthz", gateway.url)).send().await.ok()
    })
    .await;
    assert_eq!(live.status(), 200);
    let ready = http.get(format!("{}/readyz", gateway.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "no backend is up");
    let products = http.get(format!("{}/v1/products", gateway.url)).send().await.unwrap();
    assert_eq!(products.status(), 503, "a call to a backend that is down is Unavailable");
    let status = terminate(&mut gateway).await;
    assert!(status.success(), "the gateway exited with {status} on SIGTERM");
}

/// A gateway with `--reuse-port` on `port`, its access log in `log`.
fn shared_gateway(port: u16, log: &std::path::Path) -> Role {
    let dead = format!("127.0.0.1:{}", free_port());
    Role {
        child: Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["gateway", "--reuse-port", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--user-addr", &dead, "--product-addr", &dead, "--order-addr", &dead, "--payment-addr", &dead])
            .env("AGORA_JWT_SECRET", "role-test-secret-role-test-secret!")
            .env("AGORA_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
        _dir: tempfile::tempdir().unwrap(),
    }
}

#[tokio::test]
async fn two_gateways_share_one_port_and_one_killed_leaves_every_new_connection_to_the_other() {
    let (port, logs) = (free_port(), tempfile::tempdir().unwrap());
    let log = |n: usize| logs.path().join(format!("gateway-{n}.log"));
    let mut first = shared_gateway(port, &log(1));
    let second = shared_gateway(port, &log(2));
    // A new connection per request, so the kernel chooses a gateway for each.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let healthz = format!("{}/healthz", first.url);
    let answered = |n: usize| std::fs::read_to_string(log(n)).unwrap_or_default().matches("/healthz").count();
    agora_kit::testing::eventually(10, "both gateways to answer on the one port", || async {
        http.get(&healthz).send().await.ok()?;
        (answered(1) > 0 && answered(2) > 0).then_some(())
    })
    .await;

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Log lines reach the file in batches at most 100 ms apart: count once they are all there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = answered(2);
    for i in 0..50 {
        let reply = http.get(&healthz).send().await.unwrap_or_else(|e| panic!("request {i} after the kill: {e}"));
        assert_eq!(reply.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answered(2), before + 50, "the survivor answered every request after the kill");
    drop(second);
}

#[test]
fn gateway_refuses_to_start_without_a_usable_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--jwt-secret", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_documents_every_flag_with_its_environment_twin() {
    let out = Command::new(env!("CARGO_BIN_EXE_agora")).args(["order-service", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for twin in
        ["AGORA_LISTEN", "AGORA_DATABASE_URL", "AGORA_USER_ADDR", "AGORA_PRODUCT_ADDR", "AGORA_EVENTS", "AGORA_CONFIG"]
    {
        assert!(help.contains(twin), "--help lacks {twin}:\n{help}");
    }
}

#[test]
fn secrets_are_not_shown_in_help_and_bad_config_fails_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["user-service", "--help"])
        .env("AGORA_JWT_SECRET", "super-secret-value-super-secret-value")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("super-secret-value"));

    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["user-service", "--database-url", "mysql://nope", "--listen", "127.0.0.1:0"])
        .env("AGORA_JWT_SECRET", "role-test-secret-role-test-secret!")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
}
