//! `agora check`: is a deployed platform answering? Asks the gateway's `/readyz` (every
//! backend SERVING) and one REST route (`GET /v1/products`), and exits non-zero with what
//! failed. The Helm chart's `helm test` pod runs it, so the image needs no shell or curl.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::CheckArgs;

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(args.timeout_secs)).build()?;
    let base = args.gateway.trim_end_matches('/');
    for (path, expect) in [("/readyz", "status"), ("/v1/products", "products")] {
        let url = format!("{base}{path}");
        let reply = http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = reply.status();
        let body = reply.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{url} answered {status}: {body}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{url} answered {status} but not JSON: {body}"))?;
        if json.get(expect).is_none() {
            bail!("{url} answered {status} without {expect:?}: {body}");
        }
        println!("ok: GET {path} {status}");
    }
    Ok(())
}
