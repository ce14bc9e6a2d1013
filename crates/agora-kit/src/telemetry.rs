//! Logs and traces through `tracing`.
//!
//! Logs: human-readable on a terminal, one JSON object per line otherwise (what log
//! collectors in Kubernetes expect). `RUST_LOG` filters, `AGORA_LOG_FORMAT` (`pretty` |
//! `json`) overrides the choice. A log line inside a hop's span carries that span's
//! `trace_id` and `span_id` (see [`crate::trace_context::hop`]).
//!
//! Traces: exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, following the standard variables:
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` for the resource,
//! `OTEL_TRACES_SAMPLER`/`_ARG` for sampling, `OTEL_TRACES_EXPORTER=none` or
//! `OTEL_SDK_DISABLED=true` to turn it off. Spans are batched and flushed by
//! [`Telemetry::shutdown`]. Without an endpoint there is no exporter and no OpenTelemetry
//! layer at all.

use std::{
    io::IsTerminal,
    sync::OnceLock,
    time::{Duration, Instant},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

/// What [`init`] installed; call [`Telemetry::shutdown`] before exiting to flush spans.
#[derive(Debug, Default)]
#[must_use = "dropping it without shutdown loses the spans not yet exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is left and stops the exporter.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("agora: flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber for logs only. Safe to call more than once (later calls do
/// nothing), so tests can call it freely.
pub fn init_logging() {
    drop(install(None));
}

/// Installs logs and, when the `OTEL_*` variables ask for it, trace export; `service` is the
/// service name unless `OTEL_SERVICE_NAME` says otherwise.
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    since_start();
    let provider = if export_wanted() { Some(provider(service)?) } else { None };
    // A subscriber installed earlier (tests) keeps logging; spans then go nowhere.
    drop(install(provider.clone()));
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!(service, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Time since [`init`] (the first thing a role does), or since the first call: what the
/// servers' "listening" lines report as `ready_in_ms`.
pub fn since_start() -> Duration {
    STARTED.get_or_init(Instant::now).elapsed()
}

fn export_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
    // The builder reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the role's name is the
    // fallback for the latter.
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource =
        resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
    // The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

fn install(provider: Option<SdkTracerProvider>) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"));
    let json = match std::env::var("AGORA_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let logs = if json {
        fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let traces = provider.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("agora")));
    // An already-installed subscriber is fine: the first caller wins.
    tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init()
}
