//! Prometheus metrics: one registry per process, served as text by [`serve`] (and by the
//! gateway on its own port) at `/metrics`.
//!
//! - RED per route (`agora_http_server_*`, the gateway) and per RPC, both ends
//!   (`agora_rpc_server_*`, `agora_rpc_client_*`): a counter by outcome and a duration
//!   histogram.
//! - The saga's plumbing: `agora_outbox_backlog` (rows not yet published),
//!   `agora_consumer_lag_seconds` (how old an event is when its consumer handles it),
//!   `agora_dlq_messages_total`.
//! - `agora_db_pool_connections` (in use and idle) of every database pool.

use std::{
    net::SocketAddr,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatusLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCodeLabels {
    pub service: String,
    pub method: String,
    /// The gRPC status code's name (`OK`, `NOT_FOUND`…).
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub topic: String,
    pub group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub group: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    /// The service that owns the outbox.
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub database: String,
    /// `in_use` or `idle`.
    pub state: String,
}

/// Durations from 1 ms to about 16 s.
#[derive(Debug, Clone, Copy)]
pub struct Seconds;

impl MetricConstructor<Histogram> for Seconds {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 15))
    }
}

/// Every metric Agora records.
#[derive(Debug)]
pub struct Metrics {
    pub http_requests: Family<RouteStatusLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, Seconds>,
    pub rpc_server_calls: Family<RpcCodeLabels, Counter>,
    pub rpc_server_duration: Family<RpcLabels, Histogram, Seconds>,
    pub rpc_client_calls: Family<RpcCodeLabels, Counter>,
    pub rpc_client_duration: Family<RpcLabels, Histogram, Seconds>,
    pub outbox_backlog: Family<OutboxLabels, Gauge>,
    pub consumer_lag: Family<ConsumerLabels, Histogram, Seconds>,
    pub consumer_lag_messages: Family<PartitionLabels, Gauge>,
    pub dlq_messages: Family<TopicLabels, Counter>,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    registry: Registry,
    pools: Mutex<Vec<(String, sqlx::AnyPool)>>,
}

/// `metric`, registered under `name` with `help`.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("agora");
        let r = &mut registry;
        Self {
            http_requests: registered(
                r,
                "http_server_requests",
                "REST requests answered, by route and status",
                Family::default(),
            ),
            http_duration: registered(
                r,
                "http_server_request_duration_seconds",
                "REST request duration",
                Family::new_with_constructor(Seconds),
            ),
            rpc_server_calls: registered(
                r,
                "rpc_server_calls",
                "gRPC calls served, by method and code",
                Family::default(),
            ),
            rpc_server_duration: registered(
                r,
                "rpc_server_call_duration_seconds",
                "gRPC calls served: duration",
                Family::new_with_constructor(Seconds),
            ),
            rpc_client_calls: registered(
                r,
                "rpc_client_calls",
                "gRPC calls made, by method and code",
                Family::default(),
            ),
            rpc_client_duration: registered(
                r,
                "rpc_client_call_duration_seconds",
                "gRPC calls made: duration, retries included",
                Family::new_with_constructor(Seconds),
            ),
            outbox_backlog: registered(r, "outbox_backlog", "Outbox rows not yet published", Family::default()),
            consumer_lag: registered(
                r,
                "consumer_lag_seconds",
                "Age of an event when its consumer handles it",
                Family::new_with_constructor(Seconds),
            ),
            consumer_lag_messages: registered(
                r,
                "consumer_lag_messages",
                "Messages after the last one a consumer group handled, per partition (Kafka)",
                Family::default(),
            ),
            dlq_messages: registered(r, "dlq_messages", "Messages sent to a dead-letter topic", Family::default()),
            db_pool_connections: registered(
                r,
                "db_pool_connections",
                "Database pool connections by state",
                Family::default(),
            ),
            registry,
            pools: Mutex::new(Vec::new()),
        }
    }

    /// Records one gRPC call: `path` is `/pkg.Service/Method`, `code` its gRPC status code.
    pub fn rpc(&self, client: bool, path: &str, code: i32, elapsed: Duration) {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        let method_labels = RpcLabels { service: service.to_owned(), method: method.to_owned() };
        let code = code_name(code);
        let labels = RpcCodeLabels { service: service.to_owned(), method: method.to_owned(), code };
        let (calls, duration) = if client {
            (&self.rpc_client_calls, &self.rpc_client_duration)
        } else {
            (&self.rpc_server_calls, &self.rpc_server_duration)
        };
        calls.get_or_create(&labels).inc();
        duration.get_or_create(&method_labels).observe(elapsed.as_secs_f64());
    }

    /// Reports `pool`'s connections as `database` from now on.
    pub fn track_pool(&self, database: &str, pool: sqlx::AnyPool) {
        self.pools.lock().unwrap().push((database.to_owned(), pool));
    }

    /// The Prometheus text exposition of every metric, pool gauges read now.
    pub fn render(&self) -> String {
        for (database, pool) in self.pools.lock().unwrap().iter() {
            let idle = pool.num_idle() as i64;
            let size = i64::from(pool.size());
            let gauge = |state: &str| {
                self.db_pool_connections
                    .get_or_create(&PoolLabels { database: database.clone(), state: state.to_owned() })
                    .clone()
            };
            gauge("idle").set(idle);
            gauge("in_use").set(size - idle);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The canonical name of a gRPC code (`OK`, `NOT_FOUND`…).
fn code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).map_or_else(|| code.to_string(), |n| (*n).to_owned())
}

/// The `/metrics` answer, for any axum router.
pub async fn handler() -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics().render())
}

/// Serves `/metrics` on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = crate::net::bind(addr).await?;
    tracing::info!(%addr, "metrics at /metrics");
    let app = axum::Router::new().route("/metrics", axum::routing::get(handler));
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code() {
        let metrics = Metrics::new();
        metrics.rpc(false, "/agora.product.v1.ProductService/GetProduct", 5, Duration::from_millis(3));
        metrics.rpc(false, "/agora.product.v1.ProductService/GetProduct", 5, Duration::from_millis(3));
        metrics.rpc(true, "/agora.user.v1.UserService/GetUser", 0, Duration::from_millis(1));
        let text = metrics.render();
        assert!(
            text.contains(
                r#"agora_rpc_server_calls_total{service="agora.product.v1.ProductService",method="GetProduct",code="NOT_FOUND"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"agora_rpc_client_calls_total{service="agora.user.v1.UserService",method="GetUser",code="OK"} 1"#
        ));
        assert!(text.contains("agora_rpc_server_call_duration_seconds_bucket"));
        assert_eq!(code_name(99), "99");
    }
}
