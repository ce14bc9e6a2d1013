//! The gateway: Agora's REST/JSON front door, built at start-up from the proto annotations.
//!
//! Every route comes from a `google.api.http` rule in the descriptor set and its access
//! level from `agora.api.v1.policy`; there is no per-endpoint code, so an annotated RPC is
//! a REST route as soon as the gateway is rebuilt with the new descriptors.
//!
//! # Layout
//! - [`api`]: bindings read from the descriptors; [`template`]: path templates.
//! - [`route`], [`auth`]: the layers that pick a binding and check its policy.
//! - [`transcode`], [`fields`]: JSON ⇄ protobuf; [`client`]: the generic gRPC client;
//!   [`proxy`]: the one service that ties them together.
//! - [`deadline`], [`rate_limit`], [`observe`]: cross-cutting layers, assembled in [`app`].
//! - [`stage`]: the one shape of the gateway's own layers (a [`stage::Stage`] answers a request
//!   or hands it on); the five above are stages.
//! - [`error`]: the error body and grpc-gateway's status table; [`health`], [`openapi`].

pub mod api;
pub mod auth;
pub mod client;
pub mod deadline;
pub mod error;
pub mod fields;
pub mod health;
pub mod observe;
pub mod openapi;
pub mod proxy;
pub mod rate_limit;
pub mod route;
pub mod stage;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transcode;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use agora_kit::auth::JwtKeys;
use axum::{Router, routing::get, serve::ListenerExt as _};
use http::{HeaderName, HeaderValue, Method};
use secrecy::SecretString;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, util::option_layer};
use tower_http::{
    compression::{
        CompressionLayer,
        predicate::{DefaultPredicate, Predicate, SizeAbove},
    },
    cors::{AllowOrigin, CorsLayer},
    decompression::RequestDecompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::{
    api::Api,
    auth::Auth,
    client::Backends,
    deadline::Deadline,
    observe::Observe,
    proxy::Proxy,
    rate_limit::{Rate, RateLimit},
    route::Routes,
    stage::Stage,
};

/// Gateway settings (flags and `AGORA_*` variables are mapped onto these by `agora`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Backend by fully qualified gRPC service name: `HOST:PORT[,HOST:PORT…]` (or URLs), or
    /// `consul://NAME` to follow NAME's passing instances in Consul.
    pub backends: BTreeMap<String, String>,
    /// HS256 secret shared with user-service, which signs the tokens this verifies.
    pub jwt_secret: SecretString,
    /// Larger request bodies are refused with 413 before they are read.
    pub body_limit_bytes: usize,
    /// Every request's deadline; the backend gets what is left as `grpc-timeout`.
    pub request_timeout_ms: u64,
    /// Sustained requests per second per client IP; 0 turns rate limiting off.
    pub rate_limit_per_second: f64,
    /// Requests a client may send at once.
    pub rate_limit_burst: u32,
    /// Sign-ins and sign-ups per minute per client IP (each hashes a password); 0 turns this
    /// limit off.
    pub sign_in_limit_per_minute: f64,
    /// Sign-ins a client may make at once.
    pub sign_in_limit_burst: u32,
    /// Origins browsers may call from (`*` for any); empty sends no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Turns `backends` into balanced channels (and watches Consul for them).
    #[serde(skip)]
    pub resolver: agora_discovery::Resolver,
    /// Serve HTTPS with this certificate (HTTP/2 and HTTP/1.1, chosen by ALPN) instead of
    /// plaintext HTTP.
    #[serde(skip)]
    pub https: Option<Arc<agora_kit::tls::PublicCert>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backends: BTreeMap::new(),
            jwt_secret: SecretString::from(String::new()),
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 15_000,
            rate_limit_per_second: 100.0,
            rate_limit_burst: 200,
            sign_in_limit_per_minute: 30.0,
            sign_in_limit_burst: 20,
            cors_origins: Vec::new(),
            resolver: agora_discovery::Resolver::fixed(),
            https: None,
        }
    }
}

/// Responses smaller than this many bytes go uncompressed even to a client that accepts gzip:
/// below about one TCP segment gzip saves no round trip, and its CPU and 18-byte frame cost more
/// than the bytes it saves (a single product is ~300 bytes of JSON, a page of 20 about 6 KiB).
pub const COMPRESS_ABOVE: u16 = 1024;

/// The gateway's router with every layer in place.
pub fn app(config: &Config, api: &Api) -> anyhow::Result<Router> {
    let keys = JwtKeys::new(&config.jwt_secret, Duration::ZERO)
        .map_err(|e| anyhow::anyhow!("gateway: {e} (set AGORA_JWT_SECRET to user-service's secret)"))?;
    for binding in &api.bindings {
        anyhow::ensure!(
            config.backends.contains_key(binding.service()),
            "gateway: no backend address for {}, which serves {} {}",
            binding.service(),
            binding.verb,
            binding.template
        );
    }
    let backends = Backends::connect(&config.backends, &config.resolver)?;
    // Written once: the document only changes with the binary.
    let document = bytes::Bytes::from(serde_json::to_vec(&openapi::document(api))?);

    let transcoded = ServiceBuilder::new()
        // Routing first: the auth layer needs the matched route's policy.
        .layer(Routes::new(api.bindings.clone()).into_layer())
        .layer(Auth::new(keys).into_layer())
        .service(Proxy::new(backends.clone(), config.body_limit_bytes));

    let rate_limit = (config.rate_limit_per_second > 0.0).then(|| {
        RateLimit::new(Rate { per_second: config.rate_limit_per_second, burst: config.rate_limit_burst }).into_layer()
    });
    let sign_in_limit = (config.sign_in_limit_per_minute > 0.0).then(|| {
        RateLimit::sign_ins(Rate {
            per_second: config.sign_in_limit_per_minute / 60.0,
            burst: config.sign_in_limit_burst,
        })
        .into_layer()
    });
    // Layers are listed innermost first; each `.layer` wraps everything above it.
    Ok(Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(agora_kit::metrics::handler))
        .route(
            "/openapi.json",
            get(move || std::future::ready(([(http::header::CONTENT_TYPE, "application/json")], document.clone()))),
        )
        .with_state(backends)
        .fallback_service(transcoded)
        .layer(Deadline::new(Duration::from_millis(config.request_timeout_ms)).into_layer())
        // Decompressed bytes still count against the body limit the proxy enforces.
        .layer(
            ServiceBuilder::new()
                .map_response(unsupported_encoding)
                .layer(RequestDecompressionLayer::new().gzip(true))
                .map_request(|request: http::Request<_>| request.map(axum::body::Body::new)),
        )
        // Early, so a client over its limit costs no body reading or backend call.
        .layer(option_layer(sign_in_limit))
        .layer(option_layer(rate_limit))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE))),
        )
        // Outside rate limiting, so a browser can read a 429 too; preflights end here.
        .layer(option_layer(cors(&config.cors_origins)?))
        // A span, the route metrics and a log line for each request, including the ones
        // refused by the layers inside.
        .layer(Observe.into_layer())
        // Outermost, so every log line and every response carries the request id.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid)))
}

/// Serves the gateway on `listener` until `shutdown`, then drains in-flight requests.
pub async fn run(
    config: Config,
    listener: impl Into<agora_kit::grpc::Listener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api = Api::agora()?;
    let app = app(&config, &api)?;
    let (listener, announcer) = listener.into().into_parts();
    let addr = listener.local_addr()?;
    let ready_in_ms = agora_kit::telemetry::since_start().as_millis();
    let scheme = if config.https.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, routes = api.bindings.len(), ready_in_ms, "gateway listening");
    if let Some(announcer) = &announcer {
        announcer.announce(addr).await;
    }
    // On shutdown callers are told first (the instance leaves the registry), then the
    // in-flight requests drain.
    let drained = shutdown.clone();
    let withdrawn = async move {
        drained.cancelled().await;
        if let Some(announcer) = announcer {
            announcer.withdraw().await;
        }
        tracing::info!(%addr, "draining in-flight requests");
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match &config.https {
        None => {
            // TCP_NODELAY: a small response must not wait for the client's delayed ACK (40 ms).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
            });
            let server = axum::serve(listener, service).with_graceful_shutdown(withdrawn);
            agora_kit::net::drain_bounded(server.into_future(), &shutdown, addr).await?;
        }
        Some(cert) => {
            // The incoming connections set TCP_NODELAY themselves; the no-op tap is what gives
            // a listener of another kind than TCP its callers' addresses (ConnectInfo).
            let listener =
                agora_kit::tls::TlsListener::new(listener, cert.server_config(&[b"h2", b"http/1.1"]))?.tap_io(|_| {});
            let server = axum::serve(listener, service).with_graceful_shutdown(withdrawn);
            agora_kit::net::drain_bounded(server.into_future(), &shutdown, addr).await?;
        }
    }
    tracing::info!(%addr, "gateway stopped");
    Ok(())
}

/// The decompression layer refuses an unknown `Content-Encoding` with a bare 415; give it the
/// JSON error body every other refusal has.
fn unsupported_encoding<B>(response: http::Response<B>) -> axum::response::Response
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    use axum::response::IntoResponse as _;
    if response.status() == http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        && !response.headers().contains_key(http::header::CONTENT_TYPE)
    {
        return error::ApiError::new(
            tonic::Code::InvalidArgument,
            "this Content-Encoding is not supported; send the body as it is, or gzip-compressed",
        )
        .with_status(http::StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .into_response();
    }
    response.map(axum::body::Body::new)
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let parsed: Result<Vec<HeaderValue>, _> = origins.iter().map(|o| HeaderValue::from_str(o)).collect();
        AllowOrigin::list(parsed.map_err(|e| anyhow::anyhow!("gateway: bad CORS origin: {e}"))?)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                HeaderName::from_static(agora_kit::methods::IDEMPOTENCY_KEY),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), http::header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}
