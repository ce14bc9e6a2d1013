//! The part of Consul's HTTP API Agora uses: the local agent's service registration, and
//! blocking queries on a service's passing instances. A thin client over `reqwest`; see
//! ARCHITECTURE.md for why not a Consul crate.

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How long a request that is not a blocking query may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("cannot reach the Consul agent at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Consul answered {status} to {what}: {body}")]
    Refused { what: String, status: reqwest::StatusCode, body: String },
    #[error("Consul sent an unreadable answer to {what}: {source}")]
    Unreadable {
        what: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A client of one Consul agent (normally the node's own, on 127.0.0.1:8500).
#[derive(Clone)]
pub struct Consul {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
}

impl fmt::Debug for Consul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consul").field("base", &self.base).finish_non_exhaustive()
    }
}

/// A service instance as registered with the agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub check: Check,
}

/// The agent's health check of an instance. Exactly one of `grpc`, `http` and `tcp` is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    pub name: String,
    /// `HOST:PORT/SERVICE`: Consul asks `grpc.health.v1.Health/Check` for SERVICE.
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "Option::is_none")]
    pub grpc_use_tls: Option<bool>,
    /// A URL that must answer 2xx.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// An `https://` check asks whether the instance answers, not who it is: the certificate
    /// is for the names clients use, not for the address the agent dials.
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    /// `HOST:PORT` that must accept a connection.
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Go duration syntax (`5s`), as the agent wants it.
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
    /// The status until the first check has run (the agent's default is critical, and its
    /// first run comes anywhere within the interval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A passing instance, as a blocking query returns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    pub id: String,
    /// `HOST:PORT`.
    pub address: String,
}

/// Go's duration syntax for whole milliseconds (`1500ms`, `5s`).
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

impl Consul {
    /// A client of the agent at `address` (`HOST:PORT` or `http://HOST:PORT`); `token` is
    /// sent as `X-Consul-Token` when ACLs are on.
    pub fn new(address: &str, token: Option<SecretString>) -> anyhow::Result<Self> {
        let base = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
        let parsed =
            reqwest::Url::parse(&base).map_err(|e| anyhow::anyhow!("invalid Consul address {address:?}: {e}"))?;
        if parsed.scheme() != "http" {
            anyhow::bail!("Consul address {address:?}: only http:// is supported (use the node's local agent)");
        }
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.header("X-Consul-Token", token.expose_secret()),
            None => builder,
        }
    }

    async fn send(&self, what: &str, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, ConsulError> {
        let response =
            builder.send().await.map_err(|source| ConsulError::Unreachable { url: self.base.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(ConsulError::Refused { what: what.to_owned(), status, body: body.trim().to_owned() })
    }

    /// Registers (or re-registers, replacing its checks) `service` with the agent.
    pub async fn register(&self, service: &ServiceRegistration) -> Result<(), ConsulError> {
        let builder = self
            .request(reqwest::Method::PUT, "/v1/agent/service/register?replace-existing-checks=true")
            .timeout(REQUEST_TIMEOUT)
            .json(service);
        self.send(&format!("registering {}", service.id), builder).await.map(drop)
    }

    /// Removes the instance `id` and its checks from the agent.
    pub async fn deregister(&self, id: &str) -> Result<(), ConsulError> {
        let builder =
            self.request(reqwest::Method::PUT, &format!("/v1/agent/service/deregister/{id}")).timeout(REQUEST_TIMEOUT);
        self.send(&format!("deregistering {id}"), builder).await.map(drop)
    }

    /// Whether the agent has the instance `id`, waiting up to `wait` for its definition to
    /// change from the one whose content hash is `hash`. Returns the current hash, or `None`
    /// when the agent does not know the instance (it restarted, or someone removed it).
    pub async fn registered(
        &self,
        id: &str,
        hash: Option<&str>,
        wait: Duration,
    ) -> Result<Option<String>, ConsulError> {
        let mut path = format!("/v1/agent/service/{id}");
        if let Some(hash) = hash {
            path.push_str(&format!("?hash={hash}&wait={}", go_duration(wait)));
        }
        let builder = self.request(reqwest::Method::GET, &path).timeout(wait + REQUEST_TIMEOUT);
        match self.send(&format!("looking up {id}"), builder).await {
            Ok(response) => {
                let hash = response.headers().get("X-Consul-ContentHash").and_then(|v| v.to_str().ok());
                Ok(Some(hash.unwrap_or_default().to_owned()))
            }
            Err(ConsulError::Refused { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The passing instances of `service`. A blocking query: with `index` > 0 the agent
    /// answers when the set changes after `index`, or after `wait`. Returns the instances
    /// and the index to ask with next.
    pub async fn passing(
        &self,
        service: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Instance>, u64), ConsulError> {
        let path = format!("/v1/health/service/{service}?passing=true&index={index}&wait={}", go_duration(wait));
        // Consul adds up to wait/16 of jitter to a blocking query.
        let builder = self.request(reqwest::Method::GET, &path).timeout(wait + wait / 16 + REQUEST_TIMEOUT);
        let what = format!("the instances of {service}");
        let response = self.send(&what, builder).await?;
        let next = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let entries: Vec<HealthEntry> =
            response.json().await.map_err(|source| ConsulError::Unreadable { what, source })?;
        let mut instances: Vec<Instance> = entries.into_iter().map(HealthEntry::instance).collect();
        instances.sort();
        Ok((instances, next))
    }

    /// Every check of `service`'s instances: instance id → status (`passing`, `critical`…).
    pub async fn check_status(&self, service: &str) -> Result<BTreeMap<String, String>, ConsulError> {
        let what = format!("the checks of {service}");
        let builder =
            self.request(reqwest::Method::GET, &format!("/v1/health/checks/{service}")).timeout(REQUEST_TIMEOUT);
        let checks: Vec<CheckEntry> =
            self.send(&what, builder).await?.json().await.map_err(|source| ConsulError::Unreadable { what, source })?;
        Ok(checks.into_iter().map(|c| (c.service_id, c.status)).collect())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: NodeEntry,
    service: ServiceEntry,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeEntry {
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry {
    #[serde(rename = "ID")]
    id: String,
    address: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckEntry {
    #[serde(rename = "ServiceID")]
    service_id: String,
    status: String,
}

impl HealthEntry {
    /// An instance registered without an address is reached at its node's address.
    fn instance(self) -> Instance {
        let host = if self.service.address.is_empty() { self.node.address } else { self.service.address };
        let address = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.service.port).to_string(),
            Err(_) => format!("{host}:{}", self.service.port),
        };
        Instance { id: self.service.id, address }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_gos_syntax() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn a_registration_is_what_the_agent_expects() {
        let registration = ServiceRegistration {
            id: "product-service-127.0.0.1-50052".into(),
            name: "product-service".into(),
            address: "127.0.0.1".into(),
            port: 50052,
            meta: BTreeMap::from([("version".into(), "1.2.3".into())]),
            check: Check {
                name: "gRPC health".into(),
                grpc: Some("127.0.0.1:50052/agora.product.v1.ProductService".into()),
                grpc_use_tls: Some(false),
                http: None,
                tls_skip_verify: None,
                tcp: None,
                interval: "5s".into(),
                timeout: "2s".into(),
                deregister_critical_service_after: "1m".into(),
                status: Some("passing".into()),
            },
        };
        let json = serde_json::to_value(&registration).unwrap();
        assert_eq!(json["ID"], "product-service-127.0.0.1-50052");
        assert_eq!(json["Check"]["GRPC"], "127.0.0.1:50052/agora.product.v1.ProductService");
        assert_eq!(json["Check"]["GRPCUseTLS"], false);
        assert_eq!(json["Check"]["DeregisterCriticalServiceAfter"], "1m");
        assert_eq!(json["Check"]["Status"], "passing");
        assert_eq!(json["Meta"]["version"], "1.2.3");
        assert!(json["Check"].get("HTTP").is_none());
    }

    #[test]
    fn instances_without_an_address_use_their_nodes() {
        let entries: Vec<HealthEntry> = serde_json::from_str(
            r#"[{"Node":{"Address":"10.0.0.7"},"Service":{"ID":"a","Address":"","Port":50052}},
                {"Node":{"Address":"10.0.0.7"},"Service":{"ID":"b","Address":"::1","Port":50053}},
                {"Node":{"Address":"10.0.0.7"},"Service":{"ID":"c","Address":"product.local","Port":1}}]"#,
        )
        .unwrap();
        let addresses: Vec<String> = entries.into_iter().map(|e| e.instance().address).collect();
        assert_eq!(addresses, ["10.0.0.7:50052", "[::1]:50053", "product.local:1"]);
    }
}
