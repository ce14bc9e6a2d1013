//! Logs through `tracing`: human-readable on a terminal, one JSON object per line otherwise
//! (what log collectors in Kubernetes expect). `RUST_LOG` filters, `AGORA_LOG_FORMAT`
//! (`pretty` | `json`) overrides the choice.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// the all-in-one binary and tests can both call it.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"));
    let json = match std::env::var("AGORA_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(fmt::layer().json().with_current_span(true).with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    // An already-installed subscriber is fine: the first caller wins.
    drop(result);
}
