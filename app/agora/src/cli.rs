//! Command-line flags. Each flag has an `AGORA_*` environment twin; flags that map onto a
//! service's config are serialised as overrides on top of defaults and `--config` (so an
//! absent flag keeps the file's value).

use std::{net::SocketAddr, path::PathBuf};

use agora_events::{KafkaProtocol, KafkaSasl, KafkaSecurity, SaslMechanism};
use clap::{Args, Parser, Subcommand, ValueEnum, builder::PossibleValuesParser};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about = "Agora: a gRPC microservices platform. With no command, runs everything in one process."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The gateway and every service in one process on embedded defaults (SQLite,
    /// in-process events, fixed local addresses) [default].
    All(AllArgs),
    /// The REST gateway in front of the four services.
    Gateway(GatewayArgs),
    /// Accounts, sign-in and access tokens.
    UserService(UserArgs),
    /// The catalog and stock reservations.
    ProductService(ProductArgs),
    /// Orders and the order saga.
    OrderService(OrderArgs),
    /// Wallets and payments.
    PaymentService(PaymentArgs),
    /// Print a trace from Jaeger as a tree (or, without an id, a service's latest traces).
    Trace(TraceArgs),
    /// Check that a running platform answers: the gateway's /readyz and GET /v1/products.
    Check(CheckArgs),
    /// Call the REST API through the gateway: sign up, sign in, list and create products,
    /// place and follow orders. Prints the JSON answer; a refusal exits non-zero.
    Client(ClientArgs),
    /// Send realistic traffic through the gateway (or straight to product-service over gRPC)
    /// and print latency percentiles per route, status codes and the orders' time to PAID.
    Loadgen(agora_loadgen::Args),
    /// Check, from the services' databases and the dead-letter topics, that every order
    /// settled, was charged exactly as its status says, and took exactly its stock.
    Reconcile(ReconcileArgs),
    /// Check the history `agora loadgen --history` wrote: every acknowledged order exists and
    /// settled, orders only move forward, customers read their own writes, nothing is charged
    /// twice, wallets and stock add up. Lists each anomaly with its operations; exits 1 on any.
    CheckHistory(CheckHistoryArgs),
    /// Create a development CA (unless --dir holds one) and issue each role a certificate
    /// naming it (spiffe://TRUST_DOMAIN/ROLE), for mutual TLS between the roles. Run it again
    /// to renew them: running roles pick the new files up.
    Certs(CertsArgs),
}

impl Command {
    /// The name this process reports in traces (unless `OTEL_SERVICE_NAME` says otherwise).
    pub fn service_name(&self) -> &'static str {
        match self {
            Command::All(_) => "agora",
            Command::Gateway(_) => crate::role::GATEWAY,
            Command::UserService(_) => crate::role::USER,
            Command::ProductService(_) => crate::role::PRODUCT,
            Command::OrderService(_) => crate::role::ORDER,
            Command::PaymentService(_) => crate::role::PAYMENT,
            Command::Trace(_)
            | Command::Check(_)
            | Command::Client(_)
            | Command::Loadgen(_)
            | Command::Reconcile(_)
            | Command::CheckHistory(_)
            | Command::Certs(_) => "agora-client",
        }
    }

    /// `agora` with no command means `agora all`; parsing it that way applies the `AGORA_*`
    /// variables exactly as for an explicit `agora all`.
    pub fn all_from_env() -> Self {
        Cli::parse_from(["agora", "all"]).command.expect("`all` is a subcommand")
    }
}

/// How events travel between services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Events {
    /// The in-process bus: a log in SQLite at `--bus-url`.
    Memory,
    /// Apache Kafka at `--kafka-brokers`.
    Kafka,
}

/// How a process finds the services it calls, and makes itself known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryMode {
    /// Fixed addresses (`--*-addr`, comma-separated for several instances); nothing is
    /// registered. The embedded default, and what Kubernetes Service DNS names want.
    Static,
    /// Register this instance with the local Consul agent and find the others there
    /// (`--*-addr` flags still override, as fixed addresses).
    Consul,
}

/// Service discovery and mutual-TLS flags, shared by every role.
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// How this process finds the services it calls and makes itself known.
    #[arg(long, env = "AGORA_DISCOVERY", value_enum, default_value_t = DiscoveryMode::Static)]
    pub discovery: DiscoveryMode,

    /// HTTP address of the local Consul agent, with `--discovery consul`.
    #[arg(long, env = "AGORA_CONSUL_ADDR", default_value = "127.0.0.1:8500")]
    pub consul_addr: String,

    /// Consul ACL token, when the agent enforces ACLs.
    #[arg(long, env = "AGORA_CONSUL_TOKEN", hide_env_values = true)]
    pub consul_token: Option<SecretString>,

    /// Address registered in Consul for callers to use [default: the listen address; required
    /// when listening on 0.0.0.0]. A port of 0 means the listening port.
    #[arg(long, env = "AGORA_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,

    /// Seconds between the agent's health checks of this instance.
    #[arg(long, env = "AGORA_CONSUL_CHECK_INTERVAL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub consul_check_interval_secs: u64,

    /// Seconds an instance may stay critical before the agent removes it (Consul's minimum is 60).
    #[arg(long, env = "AGORA_CONSUL_DEREGISTER_AFTER_SECS", default_value_t = 60)]
    pub consul_deregister_after_secs: u64,

    /// This role's certificate (PEM), naming it as spiffe://TRUST_DOMAIN/ROLE: with --tls-key
    /// and --tls-ca, every gRPC call this process serves or makes is mutual TLS [default:
    /// plaintext].
    #[arg(long, env = "AGORA_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "AGORA_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The CA certificate(s) (PEM) that sign the deployment's roles.
    #[arg(long, env = "AGORA_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,

    /// The trust domain of the roles' SPIFFE identities.
    #[arg(long, env = "AGORA_TLS_TRUST_DOMAIN", default_value = agora_kit::tls::DEFAULT_TRUST_DOMAIN)]
    pub tls_trust_domain: String,

    /// Seconds between readings of the TLS files: a renewed certificate is used from the next
    /// handshake on, without a restart.
    #[arg(long, env = "AGORA_TLS_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_secs: u64,
}

/// How the Kafka clients meet the brokers: shared by every role and by `agora reconcile`.
#[derive(Debug, Clone, Args)]
pub struct KafkaSecurityArgs {
    /// The brokers' listener protocol: plaintext, ssl (TLS) or sasl-ssl (TLS and SASL
    /// credentials, as managed Kafka wants).
    #[arg(long, env = "AGORA_KAFKA_SECURITY", default_value = "plaintext", value_parser = PossibleValuesParser::new(KafkaProtocol::NAMES))]
    pub kafka_security: String,

    /// The SASL mechanism, with `--kafka-security sasl-ssl`.
    #[arg(long, env = "AGORA_KAFKA_SASL_MECHANISM", default_value = "scram-sha-512", value_parser = PossibleValuesParser::new(SaslMechanism::NAMES))]
    pub kafka_sasl_mechanism: String,

    /// The SASL user name, with `--kafka-security sasl-ssl`.
    #[arg(long, env = "AGORA_KAFKA_SASL_USERNAME", requires = "kafka_sasl_password")]
    pub kafka_sasl_username: Option<String>,

    /// The SASL password (better given through the environment than on the command line).
    #[arg(long, env = "AGORA_KAFKA_SASL_PASSWORD", hide_env_values = true, requires = "kafka_sasl_username")]
    pub kafka_sasl_password: Option<SecretString>,

    /// The CA certificate(s) (PEM) that sign the brokers' certificates [default: the system's].
    #[arg(long, env = "AGORA_KAFKA_TLS_CA")]
    pub kafka_tls_ca: Option<PathBuf>,

    /// This client's certificate (PEM), for brokers that require one (mutual TLS).
    #[arg(long, env = "AGORA_KAFKA_TLS_CERT", requires = "kafka_tls_key")]
    pub kafka_tls_cert: Option<PathBuf>,

    /// The private key of --kafka-tls-cert (PEM).
    #[arg(long, env = "AGORA_KAFKA_TLS_KEY", requires = "kafka_tls_cert")]
    pub kafka_tls_key: Option<PathBuf>,
}

impl KafkaSecurityArgs {
    /// The settings, checked as a whole (e.g. SASL without TLS is refused).
    pub fn security(&self) -> anyhow::Result<KafkaSecurity> {
        let sasl = match (&self.kafka_sasl_username, &self.kafka_sasl_password) {
            (Some(username), Some(password)) => Some(KafkaSasl {
                mechanism: self.kafka_sasl_mechanism.parse().map_err(anyhow::Error::msg)?,
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        let security = KafkaSecurity {
            protocol: self.kafka_security.parse().map_err(anyhow::Error::msg)?,
            sasl,
            ca: self.kafka_tls_ca.clone(),
            client_cert: self.kafka_tls_cert.clone().zip(self.kafka_tls_key.clone()),
        };
        security.check().map_err(anyhow::Error::msg)?;
        Ok(security)
    }
}

/// Flags every single role has.
#[derive(Debug, Args, Serialize)]
pub struct Common {
    /// A TOML file with this role's settings (below defaults' precedence: flags and env win).
    #[arg(long, env = "AGORA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// This role's database: `sqlite:PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "AGORA_DATABASE_URL", hide_env_values = true)]
    #[serde(serialize_with = "exposed", skip_serializing_if = "Option::is_none")]
    pub database_url: Option<SecretString>,

    /// The event bus.
    #[arg(long, env = "AGORA_EVENTS", value_enum, default_value_t = Events::Memory)]
    #[serde(skip)]
    pub events: Events,

    /// Where the in-process bus keeps its log. Roles started as separate processes on one
    /// machine share events when they point at the same file (`sqlite:data/events.db`).
    #[arg(long, env = "AGORA_BUS_URL", default_value = "sqlite::memory:")]
    #[serde(skip)]
    pub bus_url: String,

    /// Kafka bootstrap servers (`HOST:PORT[,HOST:PORT…]`), with `--events kafka`.
    #[arg(long, env = "AGORA_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    #[serde(skip)]
    pub kafka_brokers: String,

    /// Partitions of each topic created on Kafka; more let more consumers share the work.
    #[arg(long, env = "AGORA_KAFKA_PARTITIONS", default_value_t = 3)]
    #[serde(skip)]
    pub kafka_partitions: i32,

    /// Put in front of every Kafka topic and consumer-group name (e.g. `staging.`), so
    /// several deployments can share one cluster.
    #[arg(long, env = "AGORA_KAFKA_PREFIX", default_value = "")]
    #[serde(skip)]
    pub kafka_prefix: String,

    /// Replicas of each topic created on Kafka (3 on a cluster of three or more brokers); a
    /// majority of them must have an event before it counts as published.
    #[arg(long, env = "AGORA_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=9))]
    #[serde(skip)]
    pub kafka_replication: i32,

    #[command(flatten)]
    #[serde(skip)]
    pub kafka: KafkaSecurityArgs,

    #[command(flatten)]
    #[serde(skip)]
    pub discovery: DiscoveryArgs,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464) [default: none].
    #[arg(long, env = "AGORA_METRICS_LISTEN")]
    #[serde(skip)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve gRPC health alone, in plaintext, at ADDR (e.g. 0.0.0.0:8086; port 0 picks
    /// one): for Kubernetes' gRPC probes and Consul's checks when the role speaks mutual TLS
    /// [default: none].
    #[arg(long, env = "AGORA_HEALTH_LISTEN")]
    #[serde(skip)]
    pub health_listen: Option<SocketAddr>,

    /// Where Consul dials the health port [default: the advertised host, the health port]. A
    /// port of 0 means the health port.
    #[arg(long, env = "AGORA_HEALTH_ADVERTISE_ADDR", requires = "health_listen")]
    #[serde(skip)]
    pub health_advertise_addr: Option<SocketAddr>,
}

#[derive(Debug, Args, Serialize)]
pub struct UserArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::USER_ADDR)]
    #[serde(skip)]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// HS256 secret for access tokens, shared with the gateway (32 bytes or more).
    #[arg(long, env = "AGORA_JWT_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "exposed", skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<SecretString>,
    #[arg(long, env = "AGORA_TOKEN_TTL_SECS", help = with_default("Access-token lifetime in seconds", user_service::Config::default().token_ttl_secs))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ttl_secs: Option<u64>,
    /// Admin account created at start when missing (with --admin-password).
    #[arg(long, env = "AGORA_ADMIN_EMAIL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    /// Password of the admin account.
    #[arg(long, env = "AGORA_ADMIN_PASSWORD", hide_env_values = true)]
    #[serde(serialize_with = "exposed", skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<SecretString>,
}

#[derive(Debug, Args, Serialize)]
pub struct ProductArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::PRODUCT_ADDR)]
    #[serde(skip)]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Add a demo catalog when the catalog is empty (written to the database before serving).
    #[arg(long, env = "AGORA_SEED_DEMO")]
    pub seed_demo: bool,
    /// A database for catalog reads, besides --database-url (PostgreSQL): typically its
    /// standbys, `postgres://USER@H1:P1,H2:P2/DB?target_session_attrs=prefer-standby`. Writes
    /// and reservations always go to --database-url.
    #[arg(long, env = "AGORA_DATABASE_READ_URL", hide_env_values = true)]
    #[serde(serialize_with = "exposed", skip_serializing_if = "Option::is_none")]
    pub database_read_url: Option<SecretString>,
    #[arg(long, env = "AGORA_READ_STALENESS_MS", help = with_default("Milliseconds the read database's replay may trail before catalog reads go to --database-url instead", product_service::Config::default().read_staleness_ms))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_staleness_ms: Option<u64>,
    #[arg(long, env = "AGORA_RESERVATION_TTL_SECS", help = with_default("Release stock reserved for an order that never settled it after this many seconds (keep it well above order-service's --payment-timeout-secs)", product_service::Config::default().reservation_ttl_secs))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_ttl_secs: Option<u64>,
}

#[derive(Debug, Args, Serialize)]
pub struct OrderArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::ORDER_ADDR)]
    #[serde(skip)]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[arg(long, env = "AGORA_USER_ADDR", help = with_default("user-service: `HOST:PORT[,HOST:PORT…]` or `consul://NAME`", format!("{}, or consul://user-service with `--discovery consul`", agora_kit::defaults::USER_ADDR)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_addr: Option<String>,
    #[arg(long, env = "AGORA_PRODUCT_ADDR", help = with_default("product-service, as for --user-addr", format!("{}, or consul://product-service", agora_kit::defaults::PRODUCT_ADDR)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_addr: Option<String>,
    #[arg(long, env = "AGORA_PAYMENT_TIMEOUT_SECS", help = with_default("Cancel orders still unpaid after this many seconds", order_service::Config::default().payment_timeout_secs))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_timeout_secs: Option<u64>,
    #[arg(long, env = "AGORA_SWEEP_INTERVAL_SECS", help = with_default("How often to look for unpaid orders, in seconds", order_service::Config::default().sweep_interval_secs))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_interval_secs: Option<u64>,
}

#[derive(Debug, Args, Serialize)]
pub struct PaymentArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::PAYMENT_ADDR)]
    #[serde(skip)]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[arg(long, env = "AGORA_WALLET_CURRENCY", help = with_default("Wallet currency (ISO 4217)", payment_service::Config::default().currency))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[arg(long, env = "AGORA_OPENING_BALANCE_MINOR", help = with_default("Balance of a new wallet, in minor units (10000 = 100.00)", payment_service::Config::default().opening_balance_minor))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opening_balance_minor: Option<i64>,
}

#[derive(Debug, Args, Serialize)]
pub struct GatewayArgs {
    /// Address to serve REST on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::GATEWAY_ADDR)]
    #[serde(skip)]
    pub listen: SocketAddr,
    /// A TOML file with the gateway's settings (below defaults' precedence: flags and env win).
    #[arg(long, env = "AGORA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long, env = "AGORA_USER_ADDR", help = with_default("user-service: `HOST:PORT[,HOST:PORT…]` or `consul://NAME`", format!("{}, or consul://user-service with `--discovery consul`", agora_kit::defaults::USER_ADDR)))]
    #[serde(skip)]
    pub user_addr: Option<String>,
    #[arg(long, env = "AGORA_PRODUCT_ADDR", help = with_default("product-service, as for --user-addr", agora_kit::defaults::PRODUCT_ADDR))]
    #[serde(skip)]
    pub product_addr: Option<String>,
    #[arg(long, env = "AGORA_ORDER_ADDR", help = with_default("order-service, as for --user-addr", agora_kit::defaults::ORDER_ADDR))]
    #[serde(skip)]
    pub order_addr: Option<String>,
    #[arg(long, env = "AGORA_PAYMENT_ADDR", help = with_default("payment-service, as for --user-addr", agora_kit::defaults::PAYMENT_ADDR))]
    #[serde(skip)]
    pub payment_addr: Option<String>,
    #[command(flatten)]
    #[serde(skip)]
    pub discovery: DiscoveryArgs,
    /// HS256 secret that user-service signs access tokens with (32 bytes or more).
    #[arg(long, env = "AGORA_JWT_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "exposed", skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<SecretString>,
    #[arg(long, env = "AGORA_BODY_LIMIT_BYTES", help = with_default("Largest accepted request body, in bytes", gateway::Config::default().body_limit_bytes))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    #[arg(long, env = "AGORA_REQUEST_TIMEOUT_MS", help = with_default("Deadline of every request, in milliseconds", gateway::Config::default().request_timeout_ms))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    #[arg(long, env = "AGORA_RATE_LIMIT_PER_SECOND", help = with_default("Sustained requests per second per client IP; 0 turns the limit off", gateway::Config::default().rate_limit_per_second))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    #[arg(long, env = "AGORA_RATE_LIMIT_BURST", help = with_default("Requests a client may send at once", gateway::Config::default().rate_limit_burst))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    #[arg(long, env = "AGORA_SIGN_IN_LIMIT_PER_MINUTE", help = with_default("Sign-ins and sign-ups per minute per client IP (each hashes a password); 0 turns this limit off", gateway::Config::default().sign_in_limit_per_minute))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_limit_per_minute: Option<f64>,
    #[arg(long, env = "AGORA_SIGN_IN_LIMIT_BURST", help = with_default("Sign-ins a client may make at once", gateway::Config::default().sign_in_limit_burst))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_limit_burst: Option<u32>,
    /// Share the listening port with the other gateways started with this flag on this machine
    /// (SO_REUSEPORT): the kernel spreads new connections over them, and while one is gone
    /// the others take every new connection. Each registers in Consul under an id of its own.
    #[arg(long, env = "AGORA_REUSE_PORT")]
    #[serde(skip)]
    pub reuse_port: bool,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain (PEM) instead of plaintext
    /// HTTP; read again every --tls-reload-secs, so a renewed one is served without a restart.
    #[arg(long, env = "AGORA_HTTPS_CERT", requires = "https_key")]
    #[serde(skip)]
    pub https_cert: Option<PathBuf>,
    /// The private key of --https-cert (PEM).
    #[arg(long, env = "AGORA_HTTPS_KEY", requires = "https_cert")]
    #[serde(skip)]
    pub https_key: Option<PathBuf>,
    /// Origins browsers may call from, comma-separated, or `*`; none sends no CORS headers.
    #[arg(long, env = "AGORA_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
}

/// `agora all`'s help for a service's address.
const SERVICE_ADDR_HELP: &str = "Where SERVICE listens. Given (flag or variable), it must be free; by default, when another \
     process holds it (a second `agora all`, `make up`), SERVICE takes a free port and the banner says which";

#[derive(Debug, Args)]
pub struct AllArgs {
    /// Address the REST gateway serves on.
    #[arg(long, env = "AGORA_LISTEN", default_value = agora_kit::defaults::GATEWAY_ADDR)]
    pub listen: SocketAddr,
    /// Directory for the SQLite databases, the event log and generated secrets.
    #[arg(long, env = "AGORA_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "AGORA_USER_ADDR", help = with_default(SERVICE_ADDR_HELP.replace("SERVICE", "user-service").as_str(), agora_kit::defaults::USER_ADDR))]
    pub user_addr: Option<SocketAddr>,
    #[arg(long, env = "AGORA_PRODUCT_ADDR", help = with_default(SERVICE_ADDR_HELP.replace("SERVICE", "product-service").as_str(), agora_kit::defaults::PRODUCT_ADDR))]
    pub product_addr: Option<SocketAddr>,
    #[arg(long, env = "AGORA_ORDER_ADDR", help = with_default(SERVICE_ADDR_HELP.replace("SERVICE", "order-service").as_str(), agora_kit::defaults::ORDER_ADDR))]
    pub order_addr: Option<SocketAddr>,
    #[arg(long, env = "AGORA_PAYMENT_ADDR", help = with_default(SERVICE_ADDR_HELP.replace("SERVICE", "payment-service").as_str(), agora_kit::defaults::PAYMENT_ADDR))]
    pub payment_addr: Option<SocketAddr>,
    /// Access-token secret; generated once and kept in the data directory when unset.
    #[arg(long, env = "AGORA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// Admin account created at start when missing.
    #[arg(long, env = "AGORA_ADMIN_EMAIL", default_value = "admin@agora.local")]
    pub admin_email: String,
    /// Password of the admin account; generated once and kept in the data directory when unset.
    #[arg(long, env = "AGORA_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,
    #[arg(long, env = "AGORA_PAYMENT_TIMEOUT_SECS", help = with_default("Cancel orders still unpaid after this many seconds", order_service::Config::default().payment_timeout_secs))]
    pub payment_timeout_secs: Option<u64>,
    #[arg(long, env = "AGORA_RATE_LIMIT_PER_SECOND", help = with_default("Sustained gateway requests per second per client IP; 0 turns the limit off", gateway::Config::default().rate_limit_per_second))]
    pub rate_limit_per_second: Option<f64>,
    #[arg(long, env = "AGORA_SIGN_IN_LIMIT_PER_MINUTE", help = with_default("Sign-ins and sign-ups per minute per client IP; 0 turns this limit off", gateway::Config::default().sign_in_limit_per_minute))]
    pub sign_in_limit_per_minute: Option<f64>,
    /// Add a demo catalog when the catalog is empty.
    #[arg(long, env = "AGORA_SEED_DEMO", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_demo: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The trace id (32 hex digits: the middle of a `traceparent`, or `trace_id` in a log
    /// line). Without it, the latest traces of `--service` are listed.
    pub trace_id: Option<String>,

    /// Jaeger's query address (its UI/API port).
    #[arg(long, env = "AGORA_JAEGER_URL", default_value = "http://127.0.0.1:16686")]
    pub jaeger: String,

    /// Whose traces to list.
    #[arg(long, default_value = "gateway")]
    pub service: String,

    /// How many traces to list.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,

    /// How far back to look, in Jaeger's units (`15m`, `1h`, `2d`).
    #[arg(long, default_value = "1h")]
    pub lookback: String,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Where the CA (ca.pem, ca-key.pem) and the roles' files (ROLE.pem, ROLE-key.pem) are.
    #[arg(long)]
    pub dir: PathBuf,

    /// The roles to issue certificates to.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gateway,user-service,product-service,order-service,payment-service"
    )]
    pub roles: Vec<String>,

    /// The trust domain the identities are in.
    #[arg(long, default_value = agora_kit::tls::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// Days each role's certificate is valid.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub days: u64,

    /// Host names and addresses of the gateway's HTTPS certificate (gateway-https.pem, apart
    /// from its mutual-TLS one), comma-separated; empty: none.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub gateway_hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The gateway's base URL.
    #[arg(long, env = "AGORA_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,

    /// Seconds each request may take.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The gateway's base URL.
    #[arg(long, env = "AGORA_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,

    /// An access token (`agora client sign-in ... --get accessToken`), sent as a bearer token.
    #[arg(long, env = "AGORA_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,

    /// Print only this field of the answer: a dot path such as `id`, `total.amountMinor` or
    /// `products.0.id` (a string is printed without quotes).
    #[arg(long)]
    pub get: Option<String>,

    /// Seconds each request may take.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,

    #[command(subcommand)]
    pub call: ClientCall,
}

#[derive(Debug, Subcommand)]
pub enum ClientCall {
    /// Create an account (POST /v1/users).
    SignUp {
        #[arg(long)]
        email: String,
        /// The new account's password (the variable keeps it out of process lists).
        #[arg(long, env = "AGORA_CLIENT_PASSWORD", hide_env_values = true)]
        password: SecretString,
        /// The name the account goes by.
        #[arg(long)]
        name: String,
    },
    /// Sign in (POST /v1/auth/login): the answer holds the access token.
    SignIn {
        #[arg(long)]
        email: String,
        /// The account's password (the variable keeps it out of process lists).
        #[arg(long, env = "AGORA_CLIENT_PASSWORD", hide_env_values = true)]
        password: SecretString,
    },
    /// The whole catalog, every page of GET /v1/products, as one `{"products": [...]}`.
    Products,
    /// Add a product to the catalog (POST /v1/products; needs an admin's token).
    CreateProduct {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The price in minor units (cents).
        #[arg(long)]
        price_minor: i64,
        #[arg(long, default_value = "USD")]
        currency: String,
        #[arg(long, default_value_t = 0)]
        stock: i64,
    },
    /// Place an order (POST /v1/orders).
    Order {
        /// What to buy: PRODUCT_ID or PRODUCT_ID:QUANTITY, one or more.
        #[arg(required = true)]
        items: Vec<String>,
        /// Sent as `Idempotency-Key`: the same key places the order once, however often sent.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the order until it is PAID or CANCELLED, at most this many seconds.
        #[arg(long = "wait")]
        wait_secs: Option<u64>,
    },
    /// Show an order (GET /v1/orders/{id}).
    GetOrder {
        id: String,
        /// Follow the order until it is PAID or CANCELLED, at most this many seconds.
        #[arg(long = "wait")]
        wait_secs: Option<u64>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// order-service's database URL.
    #[arg(long, env = "AGORA_RECONCILE_ORDER_DB", hide_env_values = true)]
    pub order_db: SecretString,

    /// payment-service's database URL.
    #[arg(long, env = "AGORA_RECONCILE_PAYMENT_DB", hide_env_values = true)]
    pub payment_db: SecretString,

    /// product-service's database URL.
    #[arg(long, env = "AGORA_RECONCILE_PRODUCT_DB", hide_env_values = true)]
    pub product_db: SecretString,

    /// user-service's database URL (only its outbox is looked at).
    #[arg(long, env = "AGORA_RECONCILE_USER_DB", hide_env_values = true)]
    pub user_db: Option<SecretString>,

    /// Kafka brokers whose dead-letter topics must be empty [default: not looked at].
    #[arg(long, env = "AGORA_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// The deployment's Kafka topic prefix.
    #[arg(long, env = "AGORA_KAFKA_PREFIX", default_value = "")]
    pub kafka_prefix: String,

    #[command(flatten)]
    pub kafka: KafkaSecurityArgs,

    /// Ids of the orders the gateway accepted (201), one per line, as `agora loadgen
    /// --accepted-orders` writes them: each must be in order-service's database.
    #[arg(long, value_name = "FILE")]
    pub accepted: Option<PathBuf>,

    /// Each product's stock before the run, as `--save-stock` wrote it: the stock now must be
    /// that minus the units PAID orders took since.
    #[arg(long, value_name = "FILE")]
    pub stock_before: Option<PathBuf>,

    /// Write each product's stock (plus the units PAID orders took so far) to FILE and exit;
    /// run it before the traffic, with no order pending.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["accepted", "stock_before"])]
    pub save_stock: Option<PathBuf>,

    /// How long to wait for pending orders and unpublished events to drain before judging.
    #[arg(long, default_value_t = 120)]
    pub settle_secs: u64,

    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Secrets stay [`SecretString`]s from parsing on (so no `Debug` of the flags shows them) until
/// they are handed, as overrides, to the config of the service that uses them.
/// A flag's help ending in the default its component declares (its `Config::default()`, or
/// `agora_kit::defaults` for addresses): the flag only overrides the config when given, so
/// clap has no default of its own to show, and the help must not state a second copy.
fn with_default(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}

fn exposed<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    secret.as_ref().map(ExposeSecret::expose_secret).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command and nested command (`client sign-up`), by its full name.
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            for sub in command.get_subcommands() {
                let name = format!("{prefix}{}", sub.get_name());
                out.push((name.clone(), sub.clone()));
                walk(&format!("{name} "), sub, out);
            }
        }
        let mut out = Vec::new();
        walk("", &Cli::command(), &mut out);
        out
    }

    /// docs/configuration.md's table rows (the lines that start with `|`).
    fn documented_rows() -> Vec<String> {
        let doc = include_str!("../../../docs/configuration.md");
        doc.lines().filter(|line| line.starts_with("| ")).map(str::to_owned).collect()
    }

    /// Every flag of every command, with its environment twin, is in docs/configuration.md,
    /// twin and flag on one row; and every flag the document names exists.
    #[test]
    fn every_flag_and_its_environment_twin_is_documented_and_nothing_else_is() {
        let rows = documented_rows();
        // A flag's row is the one whose first cell names it.
        let row_of = |long: &str| {
            rows.iter().find(|row| {
                let cell = row.split('|').nth(1).unwrap_or_default();
                cell.contains(&format!("`--{long}`")) || cell.contains(&format!("`--{long} "))
            })
        };
        let (mut flags, mut wrong) = (std::collections::BTreeSet::new(), Vec::new());
        for (name, command) in commands() {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long().filter(|long| !["help", "version"].contains(long)) else { continue };
                flags.insert(long.to_owned());
                let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
                match (row_of(long), env) {
                    (None, _) => wrong.push(format!("`agora {name} --{long}` has no row")),
                    (Some(row), Some(env)) if !row.contains(&env) => {
                        wrong.push(format!("`agora {name} --{long}` reads {env}, which its row does not name"));
                    }
                    _ => {}
                }
            }
        }
        for row in &rows {
            for documented in row.split('|').nth(1).unwrap_or_default().split("`--").skip(1) {
                let name: String = documented.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if !flags.contains(&name) {
                    wrong.push(format!("docs/configuration.md names --{name}, which no command has"));
                }
            }
        }
        assert!(wrong.is_empty(), "docs/configuration.md and the flags disagree:\n{}", wrong.join("\n"));
    }

    #[test]
    fn secrets_reach_the_config_but_never_debug_output() {
        let cli = Cli::parse_from([
            "agora",
            "user-service",
            "--jwt-secret",
            "jwt-secret-0123456789abcdef0123456789",
            "--admin-password",
            "admin-password-42",
            "--database-url",
            "postgres://agora:db-password-7@db/users",
        ]);
        let Some(Command::UserService(args)) = cli.command else { panic!("user-service parses as itself") };
        let shown = format!("{args:?}");
        for secret in ["jwt-secret-0123456789", "admin-password-42", "db-password-7"] {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
        let overrides = serde_json::to_value(&args).unwrap();
        assert_eq!(overrides["jwt_secret"], "jwt-secret-0123456789abcdef0123456789");
        assert_eq!(overrides["admin_password"], "admin-password-42");
        assert_eq!(overrides["database_url"], "postgres://agora:db-password-7@db/users");
    }

    /// What `agora <command> --help` says a flag defaults to: clap's default, or the
    /// `[default: …]` its help text states (for flags whose default lives in the config).
    fn help_default(arg: &clap::Arg) -> Option<String> {
        let given: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        if !given.is_empty() {
            return Some(given.join(","));
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let stated = help.split("[default: ").nth(1)?;
        Some(stated.split(']').next()?.to_owned())
    }

    #[test]
    fn every_default_in_help_is_the_one_documented() {
        let rows = documented_rows();
        let mut wrong = Vec::new();
        for (name, command) in commands() {
            for arg in command.get_arguments() {
                let (Some(long), Some(default)) = (arg.get_long(), help_default(arg)) else { continue };
                // A flag several commands share with different meanings (--kafka-brokers) has a
                // row per meaning: one of them must state this default.
                let documented: Vec<&str> = rows
                    .iter()
                    .filter(|row| {
                        let cell = row.split('|').nth(1).unwrap_or_default();
                        cell.contains(&format!("`--{long}`")) || cell.contains(&format!("`--{long} "))
                    })
                    .map(|row| row.split('|').nth(3).unwrap_or_default().trim())
                    .collect();
                // The value itself: "8, unless --rate is given" defaults to 8.
                let value = default.split_whitespace().next().unwrap_or_default().trim_end_matches([',', ';']);
                if !documented.iter().any(|cell| cell.contains(value)) {
                    wrong.push(format!(
                        "`agora {name} --help` says --{long} defaults to {default:?}; docs/configuration.md says {documented:?}",
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "defaults disagree:\n{}", wrong.join("\n"));
    }
}

#[derive(Debug, Args)]
pub struct CheckHistoryArgs {
    /// The history file (`agora loadgen --history FILE`).
    pub file: std::path::PathBuf,

    /// Print the verdict as JSON on stdout (the anomalies, and counts by kind).
    #[arg(long)]
    pub json: bool,
}
