//! Test support: a fresh, empty database per test on both backends.
//!
//! PostgreSQL comes from `AGORA_TEST_POSTGRES_URL` (an admin connection URL that `make test`
//! exports after starting the server). Without it the PostgreSQL half of a test is skipped
//! with a message, except under `CI=true`, where a missing PostgreSQL fails the test.

use sqlx::{Connection, Executor, postgres::PgConnection};

#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    /// A private in-memory SQLite database (one pool connection keeps it alive).
    pub fn sqlite() -> Self {
        Self { url: "sqlite::memory:".to_owned() }
    }

    /// A new database on the test PostgreSQL server, or `None` when there is none (outside CI).
    pub async fn postgres() -> Option<Self> {
        let admin_url = required_env("AGORA_TEST_POSTGRES_URL", "PostgreSQL")?;
        let name = format!("agora_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach test PostgreSQL at {admin_url}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        conn.close().await.ok();
        Some(Self { url: with_database(&admin_url, &name) })
    }
}

/// The value of `var`, which `make test` sets once it has started `component`; `None` when it
/// is missing outside CI (the test is skipped with a message), a failure under `CI=true`.
fn required_env(var: &str, component: &str) -> Option<String> {
    let Ok(value) = std::env::var(var) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {var} is not set: run the suite with `make test`, which installs and starts {component}"
        );
        eprintln!("skipping a {component} test: {var} is not set (use `make test`)");
        return None;
    };
    Some(value)
}

/// The test Kafka broker, or `None` when there is none (outside CI).
pub fn kafka_brokers() -> Option<String> {
    required_env("AGORA_TEST_KAFKA_BROKERS", "Kafka")
}

/// The client settings the test broker wants, as the `AGORA_KAFKA_*` variables a role reads
/// (`--kafka-security`, `--kafka-sasl-*`, `--kafka-tls-*`): `make test` exports each as
/// `AGORA_TEST_KAFKA_*` (its broker speaks SASL_SSL and wants a client certificate). Empty for
/// a plaintext broker.
pub fn kafka_client_env() -> Vec<(String, String)> {
    const SETTINGS: [&str; 7] =
        ["SECURITY", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "TLS_CA", "TLS_CERT", "TLS_KEY"];
    SETTINGS
        .iter()
        .filter_map(|setting| {
            let value = std::env::var(format!("AGORA_TEST_KAFKA_{setting}")).ok()?;
            Some((format!("AGORA_KAFKA_{setting}"), value))
        })
        .collect()
}

/// The test Consul agent's HTTP address, or `None` when there is none (outside CI).
pub fn consul_addr() -> Option<String> {
    required_env("AGORA_TEST_CONSUL_ADDR", "Consul")
}

/// The ACL token of the test Consul agent, which denies anything unnamed: `make test` runs it
/// with ACLs on. `None` when it is missing (outside CI).
pub fn consul_token() -> Option<String> {
    required_env("AGORA_TEST_CONSUL_TOKEN", "Consul")
}

/// True when the suite has PostgreSQL (a test that runs its own cluster of it needs the server
/// installed); `false` outside CI without it (the test is skipped with a message).
pub fn postgres_available() -> bool {
    required_env("AGORA_TEST_POSTGRES_URL", "PostgreSQL").is_some()
}

/// The test Jaeger: (query API URL, OTLP gRPC endpoint), or `None` when there is none
/// (outside CI).
pub fn jaeger() -> Option<(String, String)> {
    Some((required_env("AGORA_TEST_JAEGER_URL", "Jaeger")?, required_env("AGORA_TEST_OTLP_ENDPOINT", "Jaeger")?))
}

/// `admin_url` with its database name replaced.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs each named `async fn(TestDatabase)` twice, as `<name>::sqlite` and
/// `<name>::postgres`: `agora_kit::db_tests!(first_case, second_case);`
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::testing::TestDatabase::sqlite()).await;
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some(db) = $crate::testing::TestDatabase::postgres().await {
                        super::$name(db).await;
                    }
                }
            }
        )+
    };
}

/// A listener on a free loopback port and the `http://` URL to reach it.
pub async fn loopback() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    (listener, url)
}

/// A channel to `url` that waits (up to 10 s) for the server to accept.
pub async fn channel(url: &str) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned()).expect("valid url");
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{url} never accepted a connection");
}

/// Polls `check` every 50 ms until it returns `Some`, failing the test after `secs` seconds
/// with `what` in the message. For state that settles asynchronously (events).
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestDatabase {
    /// Another fresh database on the same backend (for tests that run several services).
    pub async fn another(&self) -> Self {
        if self.url.starts_with("sqlite:") {
            Self::sqlite()
        } else {
            Self::postgres().await.expect("PostgreSQL was available a moment ago")
        }
    }
}

/// A loopback port that was free a moment ago.
///
/// Picked below the kernel's ephemeral range, as `scripts/lib/daemon.sh`'s `free_port` does: a
/// port the kernel hands out for port 0 can become the local end of another test's outgoing
/// connection before a slow starter binds it (a test run saw Consul fail so, with three lanes
/// of tests connecting at once). Never the same port twice in one process; `AGORA_PORT_MAX`
/// lowers the ceiling.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let mut high = ephemeral_low.saturating_sub(1);
    if let Some(max) = std::env::var("AGORA_PORT_MAX").ok().and_then(|m| m.parse::<u32>().ok()) {
        high = high.min(max);
    }
    let low = 10_000;
    let mut given = GIVEN.lock().unwrap();
    if high > low + 1_000 {
        let random = std::collections::hash_map::RandomState::new();
        for attempt in 0..500u32 {
            let mut hasher = random.build_hasher();
            hasher.write_u32(attempt);
            let port = (low + (hasher.finish() % u64::from(high - low + 1)) as u32) as u16;
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port();
    given.insert(port);
    port
}

/// A test's own instance of a component from `scripts/` (Kafka, Consul, or a cluster of them) on fixed free ports,
/// so that a restart brings it back where its clients expect it. Started on creation; reset
/// (stopped, files deleted) when dropped.
#[derive(Debug)]
pub struct PrivateInstance {
    script: &'static str,
    env: Vec<(&'static str, String)>,
}

impl PrivateInstance {
    /// A Kafka broker (`scripts/kafka.sh`) named `NAME-…`.
    pub fn kafka(name: &str) -> Self {
        Self::start(
            "kafka.sh",
            ("AGORA_KAFKA_INSTANCE", name),
            &["AGORA_KAFKA_PORT", "AGORA_KAFKA_CONTROLLER_PORT"],
            &[],
        )
    }

    /// A Kafka cluster of three nodes (`scripts/kafka-cluster.sh`) named `NAME-…`: topics
    /// replicated three times, a majority taking each write.
    pub fn kafka_cluster(name: &str) -> Self {
        Self::start("kafka-cluster.sh", ("AGORA_KAFKA_CLUSTER", name), &[], &[])
    }

    /// A Consul cluster (`scripts/consul-cluster.sh`) named `NAME-…`: three servers and the
    /// client agent processes talk to (`output(&["addr"])`).
    pub fn consul_cluster(name: &str) -> Self {
        Self::start("consul-cluster.sh", ("AGORA_CONSUL_CLUSTER", name), &[], &[])
    }

    /// A replicated PostgreSQL (`scripts/pg-cluster.sh`) named `NAME-…`: a primary and a
    /// synchronous standby that Patroni fails over, keeping its state in the Consul agent at
    /// `consul` (HOST:PORT). `output(&["url"])` names both servers, for the one that accepts
    /// writes; `output(&["primary"])` is the member that leads now.
    pub fn pg_cluster(name: &str, consul: &str) -> Self {
        let mut instance = Self { script: "pg-cluster.sh", env: vec![("AGORA_PG_CLUSTER", unique(name))] };
        instance.env.push(("AGORA_PG_CONSUL", consul.to_owned()));
        instance.script("start");
        instance
    }

    /// A Consul agent (`scripts/consul.sh`) named `NAME-…`, HTTP API only.
    pub fn consul(name: &str) -> Self {
        let ports = [
            "AGORA_CONSUL_HTTP_PORT",
            "AGORA_CONSUL_SERVER_PORT",
            "AGORA_CONSUL_SERF_LAN_PORT",
            "AGORA_CONSUL_SERF_WAN_PORT",
        ];
        Self::start(
            "consul.sh",
            ("AGORA_CONSUL_INSTANCE", name),
            &ports,
            &["AGORA_CONSUL_DNS_PORT", "AGORA_CONSUL_GRPC_PORT"],
        )
    }

    /// Starts `script` as instance `NAME-…` (named by the variable `instance.0`), each of
    /// `ports` on a free port of its own and each of `off` disabled (-1).
    fn start(
        script: &'static str,
        instance: (&'static str, &str),
        ports: &[&'static str],
        off: &[&'static str],
    ) -> Self {
        let mut env = vec![(instance.0, unique(instance.1))];
        env.extend(ports.iter().map(|&var| (var, free_port().to_string())));
        env.extend(off.iter().map(|&var| (var, "-1".to_owned())));
        let instance = Self { script, env };
        instance.script("start");
        instance
    }

    /// `127.0.0.1:PORT` of its main listener (Kafka's broker, Consul's HTTP API).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.env[1].1)
    }

    /// Runs `scripts/SCRIPT COMMAND` for this instance (`stop`, `start`…); panics on failure.
    pub fn script(&self, command: &str) {
        self.output(&[command]);
    }

    /// What `scripts/SCRIPT ARGS...` prints for this instance (`brokers`, `kill 2`…); panics
    /// on failure. Its log lines go to the test's stderr.
    pub fn output(&self, args: &[&str]) -> String {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts").join(self.script);
        let out = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{} {args:?} failed", self.script);
        String::from_utf8(out.stdout).expect("UTF-8 output").trim_end().to_owned()
    }
}

impl Drop for PrivateInstance {
    fn drop(&mut self) {
        self.script("reset");
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A service running in-process on its own task.
#[derive(Debug)]
pub struct Served {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// Spawns `run(shutdown)` (a service's `run` with everything but the token applied).
    pub fn spawn<F>(run: impl FnOnce(tokio_util::sync::CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = tokio_util::sync::CancellationToken::new();
        Self { task: tokio::spawn(run(shutdown.clone())), shutdown }
    }

    /// Asks the service to shut down and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("service task panicked").expect("graceful shutdown returns Ok");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(with_database("postgres://a@h:1/postgres", "t"), "postgres://a@h:1/t");
        assert_eq!(
            with_database("postgres://a@h:1/postgres?sslmode=disable", "t"),
            "postgres://a@h:1/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://a@h:1", "t"), "postgres://a@h:1/t");
    }
}
