//! Logs and traces through `tracing`.
//!
//! Logs: human-readable on a terminal, one JSON object per line otherwise (what log
//! collectors in Kubernetes expect), written by [`lines::Lines`]. `RUST_LOG` filters,
//! `AGORA_LOG_FORMAT` (`pretty` | `json`) overrides the choice; the level is in colour on a
//! terminal unless `NO_COLOR` is set. A log line inside a hop's span carries that span's
//! `trace_id` and `span_id` (see [`crate::trace_context::hop`]). A role's lines are gathered in
//! memory and written to stderr in batches ([`Batched`]): a request's access-log line costs a
//! copy, not a system call. A batch waits at most 100 ms, and [`Telemetry::shutdown`] and a
//! panic write what is gathered; only a process killed outright (SIGKILL, the OOM killer) loses
//! its last 100 ms of lines.
//!
//! Traces: exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, following the standard variables:
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` for the resource,
//! `OTEL_TRACES_SAMPLER`/`_ARG` for sampling, `OTEL_TRACES_EXPORTER=none` or
//! `OTEL_SDK_DISABLED=true` to turn it off. Spans are batched and flushed by
//! [`Telemetry::shutdown`]. Without an endpoint there is no exporter and no OpenTelemetry
//! layer at all. An `https://` endpoint is TLS: `OTEL_EXPORTER_OTLP_CERTIFICATE` names the
//! collector's CA, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`/`_CLIENT_KEY` a client certificate
//! (see [`otlp_tls`]). An exported span carries its fields and the log lines written in it (as span
//! events), except the gateway's access-log line, whose fields the request's span has already.

mod lines;

use std::{
    io::{self, IsTerminal, Write as _},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanProcessor},
};
use tracing_subscriber::{EnvFilter, Layer, filter::filter_fn, prelude::*};

use lines::{Format, Lines, Sink};

/// What [`init`] installed; call [`Telemetry::shutdown`] before exiting to flush spans.
#[derive(Debug, Default)]
#[must_use = "dropping it without shutdown loses the spans not yet exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The log lines not written yet.
    logs: Option<Batched>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is left and stops the exporter, then writes the log lines still queued.
    /// Nothing logged after it reaches stderr.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("agora: flushing traces failed: {e}");
        }
        if let Some(logs) = self.logs.take() {
            logs.flush();
        }
    }
}

/// Installs the global subscriber for logs only. Safe to call more than once (later calls do
/// nothing), so tests can call it freely.
pub fn init_logging() {
    drop(install(None, Writer::Direct));
}

/// Installs logs and, when the `OTEL_*` variables ask for it, trace export; `service` is the
/// service name unless `OTEL_SERVICE_NAME` says otherwise.
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    since_start();
    let provider = if export_wanted() { Some(provider(service)?) } else { None };
    let logs = Batched::start();
    // A subscriber installed earlier (tests) keeps logging; spans then go nowhere.
    drop(install(provider.clone(), Writer::Batched(logs.clone())));
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!(service, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider, logs: Some(logs) })
}

/// Where log lines are written.
enum Writer {
    /// To stderr from the thread that logs (tests, whose output the harness captures).
    Direct,
    /// Into a [`Batched`] buffer.
    Batched(Batched),
}

/// Log lines gathered in memory and written to stderr in one system call: by a thread of its
/// own every [`Batched::EVERY`], or by the logger whose line fills [`Batched::BYTES`]. Measured
/// under load (docs/benchmarks.md), a `write` per access-log line cost the gateway 2–3 % of
/// its CPU, and handing each line to a writer thread through a queue (tracing-appender's
/// non-blocking writer) cost 7 %: waking that thread per line costs more than the write.
#[derive(Debug, Clone, Default)]
struct Batched(Arc<Mutex<Vec<u8>>>);

impl Batched {
    const EVERY: Duration = Duration::from_millis(100);
    const BYTES: usize = 64 * 1024;

    /// A buffer, its writer thread, and a panic hook that writes it out before the panic's
    /// message.
    fn start() -> Self {
        let batched = Self(Arc::new(Mutex::new(Vec::with_capacity(Self::BYTES))));
        let flusher = batched.clone();
        let spawned = std::thread::Builder::new().name("agora-logs".to_owned()).spawn(move || {
            loop {
                std::thread::sleep(Self::EVERY);
                flusher.flush();
            }
        });
        if let Err(e) = spawned {
            eprintln!("agora: no log writer thread ({e}); log lines are written when 64 KiB gather");
        }
        let on_panic = batched.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Not if the panic came from under the lock: the lines wait for the next write.
            if let Ok(mut lines) = on_panic.0.try_lock() {
                write_out(&mut lines);
            }
            previous(info);
        }));
        batched
    }

    fn flush(&self) {
        write_out(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Writes `lines` to stderr and empties it, keeping its capacity.
fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        // Nowhere to report a failed write of the logs to.
        let _ = std::io::stderr().lock().write_all(lines);
        lines.clear();
    }
}

impl Sink for Batched {
    fn line(&self, line: &[u8]) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.extend_from_slice(line);
        if lines.len() >= Self::BYTES {
            write_out(&mut lines);
        }
    }
}

impl Sink for Writer {
    fn line(&self, line: &[u8]) {
        match self {
            // Nowhere to report a failed write of the logs to.
            Self::Direct => drop(io::stderr().lock().write_all(line)),
            Self::Batched(batched) => batched.line(line),
        }
    }
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
    use opentelemetry_otlp::WithTonicConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(tls) = otlp_tls()? {
        builder = builder.with_tls_config(tls);
    }
    let exporter = builder.build().map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
    // The builder reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the role's name is the
    // fallback for the latter.
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource =
        resource.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
    // The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    let batch = BatchSpanProcessor::builder(exporter).build();
    Ok(SdkTracerProvider::builder().with_span_processor(DbSpans(batch)).with_resource(resource).build())
}

/// The exporter's TLS settings from the standard variables, unless the endpoint is `http://`
/// (plaintext whatever they say):
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` (the collector's CA; default: the public roots) and, for a
/// collector that wants mutual TLS, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
/// `OTEL_EXPORTER_OTLP_CLIENT_KEY` (each also as `OTEL_EXPORTER_OTLP_TRACES_…`, which wins).
fn otlp_tls() -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let var = |name: &str| {
        std::env::var(format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
            .or_else(|_| std::env::var(format!("OTEL_EXPORTER_OTLP_{name}")))
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let read = |name: &str, path: &str| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the OTLP {name} file {path}: {e}"))
    };
    // The exporter takes an endpoint without a scheme as https, as the specification does.
    let plaintext = var("ENDPOINT")
        .is_some_and(|endpoint| endpoint.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")));
    if plaintext {
        return Ok(None);
    }
    let (ca, cert, key) = (var("CERTIFICATE"), var("CLIENT_CERTIFICATE"), var("CLIENT_KEY"));
    let mut tls = ClientTlsConfig::new();
    tls = match &ca {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read("CA certificate", path)?)),
        None => tls.with_webpki_roots(),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read("client certificate", &cert)?, read("client key", &key)?));
        }
        (None, None) => {}
        _ => anyhow::bail!("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together"),
    }
    Ok(Some(tls))
}

/// Completes database spans as OpenTelemetry's database conventions want them, so that each
/// store method declares only its span's name (`SELECT orders`) and `db.system` (see
/// [`crate::db::failed`]): a finished span with a `db.system` attribute is a CLIENT span, and
/// its name's two words are its `db.operation.name` and `db.collection.name`.
#[derive(Debug)]
struct DbSpans<P>(P);

impl<P: SpanProcessor> SpanProcessor for DbSpans<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        let database = span.attributes.iter().any(|kv| kv.key.as_str() == "db.system");
        if let Some((operation, collection)) = span.name.split_once(' ').filter(|_| database) {
            let (operation, collection) = (operation.to_owned(), collection.to_owned());
            span.span_kind = opentelemetry::trace::SpanKind::Client;
            span.attributes.push(KeyValue::new("db.operation.name", operation));
            span.attributes.push(KeyValue::new("db.collection.name", collection));
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

fn install(provider: Option<SdkTracerProvider>, writer: Writer) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"));
    let terminal = io::stderr().is_terminal();
    let text = match std::env::var("AGORA_LOG_FORMAT").as_deref() {
        Ok("json") => false,
        Ok("pretty") => true,
        _ => terminal,
    };
    let format =
        if text { Format::Text { ansi: terminal && std::env::var_os("NO_COLOR").is_none() } } else { Format::Json };
    let logs = Lines::new(format, writer);
    // Per span, the bridge would also time every poll (busy/idle), name the thread and the
    // source line, and make the span the current OpenTelemetry context on each poll: work on
    // every request for attributes nobody reads here (hops pass their context on through
    // `trace_context`, not OpenTelemetry's current context).
    let traces = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("agora"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(filter_fn(|metadata| !(metadata.is_event() && metadata.target() == ACCESS_LOG)))
    });
    // An already-installed subscriber is fine: the first caller wins.
    tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init()
}

/// The target of the gateway's access-log lines.
pub const ACCESS_LOG: &str = "agora::access";

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanKind, Tracer as _};

    use super::*;

    /// Keeps what reaches it.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Kept {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn log_lines_gather_in_memory_until_flushed() {
        let batched = Batched::default();
        batched.line(b"first\n");
        batched.line(b"second\n");
        assert_eq!(&*batched.0.lock().unwrap(), b"first\nsecond\n", "nothing is written line by line");
        batched.flush();
        assert!(batched.0.lock().unwrap().is_empty(), "a flush writes the batch out");
    }

    #[test]
    fn database_spans_get_their_kind_operation_and_collection_from_the_name() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder().with_span_processor(DbSpans(kept.clone())).build();
        let tracer = provider.tracer("test");
        tracer.build(
            opentelemetry::trace::SpanBuilder::from_name("SELECT orders")
                .with_attributes([KeyValue::new("db.system", "postgresql")]),
        );
        tracer.start("agora.user.v1.UserService/GetUser");
        drop(provider);
        let spans = kept.0.lock().unwrap();
        let attribute = |span: &SpanData, key: &str| {
            span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
        };
        let select = spans.iter().find(|s| s.name == "SELECT orders").expect("the database span");
        assert_eq!(select.span_kind, SpanKind::Client);
        assert_eq!(attribute(select, "db.operation.name").as_deref(), Some("SELECT"));
        assert_eq!(attribute(select, "db.collection.name").as_deref(), Some("orders"));
        let rpc = spans.iter().find(|s| s.name.starts_with("agora.user")).expect("the other span");
        assert_eq!(rpc.span_kind, SpanKind::Internal, "a span without db.system is left as it is");
        assert_eq!(attribute(rpc, "db.operation.name"), None);
    }
}
