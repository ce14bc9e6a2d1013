//! `/healthz` says the gateway process is up; `/readyz` says it can do its job, which is
//! only when every backend answers its gRPC health check with SERVING.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use futures::future::join_all;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::client::Backends;

/// How long one backend may take to answer a health check before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(backends): State<Backends>) -> impl IntoResponse {
    let checks = backends.iter().map(|(service, address, channel)| async move {
        let request = HealthCheckRequest { service: service.to_owned() };
        let status = match tokio::time::timeout(CHECK_TIMEOUT, HealthClient::new(channel.clone()).check(request)).await
        {
            Ok(Ok(response)) => response.into_inner().status().as_str_name().to_owned(),
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("no answer from {address} within {} ms", CHECK_TIMEOUT.as_millis()),
        };
        (service.to_owned(), status)
    });
    let results: serde_json::Map<String, serde_json::Value> =
        join_all(checks).await.into_iter().map(|(service, status)| (service, status.into())).collect();
    let ready = results.values().all(|s| s == ServingStatus::Serving.as_str_name());
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({ "status": if ready { "ready" } else { "not ready" }, "backends": results })))
}
