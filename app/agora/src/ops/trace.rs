//! `agora trace`: an order's trace read back from Jaeger's query API, printed as a tree in
//! the terminal, and the latest traces of a service. It reads the same API the Jaeger UI
//! reads, so it works against any Jaeger, including the UI-less one `make up` runs.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::TraceArgs;

/// One trace as `/api/traces` returns it (the fields used here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    pub processes: BTreeMap<String, Process>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Microseconds since the epoch.
    pub start_time: i64,
    /// Microseconds.
    pub duration: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(rename = "processID")]
    pub process_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<Trace>,
    #[serde(default)]
    errors: Option<Vec<serde_json::Value>>,
}

impl Span {
    fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        self.tags.iter().find(|t| t.key == key).map(|t| &t.value)
    }

    /// The status message of a failed span, or `Some("")` when failed without one.
    fn failure(&self) -> Option<String> {
        let failed = self.tag("error").and_then(serde_json::Value::as_bool) == Some(true)
            || self.tag("otel.status_code").and_then(serde_json::Value::as_str) == Some("ERROR");
        failed.then(|| {
            self.tag("otel.status_description").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned()
        })
    }

    /// The parent: the CHILD_OF reference, else the first one. Jaeger turns a consumer's
    /// parent into FOLLOWS_FROM when the span also links to it (as ours do to the publish).
    fn parent(&self) -> Option<&str> {
        let child_of = self.references.iter().find(|r| r.ref_type == "CHILD_OF");
        child_of.or(self.references.first()).map(|r| r.span_id.as_str())
    }

    fn kind(&self) -> &str {
        self.tag("span.kind").and_then(serde_json::Value::as_str).unwrap_or("internal")
    }
}

impl Trace {
    fn service(&self, span: &Span) -> &str {
        self.processes.get(&span.process_id).map_or("?", |p| p.service_name.as_str())
    }

    /// The spans with no parent in the trace (the client's span is not in it).
    fn roots(&self) -> Vec<&Span> {
        let ids: std::collections::HashSet<&str> = self.spans.iter().map(|s| s.span_id.as_str()).collect();
        let mut roots: Vec<&Span> = self.spans.iter().filter(|s| s.parent().is_none_or(|p| !ids.contains(p))).collect();
        roots.sort_by_key(|s| s.start_time);
        roots
    }

    fn start(&self) -> i64 {
        self.spans.iter().map(|s| s.start_time).min().unwrap_or(0)
    }

    fn end(&self) -> i64 {
        self.spans.iter().map(|s| s.start_time + s.duration).max().unwrap_or(0)
    }

    fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = self.spans.iter().map(|s| self.service(s)).collect();
        services.sort_unstable();
        services.dedup();
        services
    }

    /// The trace as an indented tree: start offset, duration, service, span name, kind, and
    /// `! message` on failed spans.
    pub fn render(&self) -> String {
        let mut children: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
        for span in &self.spans {
            if let Some(parent) = span.parent() {
                children.entry(parent).or_default().push(span);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|s| s.start_time);
        }
        let start = self.start();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trace {}: {} spans from {}, {}",
            self.trace_id,
            self.spans.len(),
            self.services().join(", "),
            millis(self.end() - start)
        );
        let _ = writeln!(out, "{:>10} {:>10}  {:<16} span", "start", "took", "service");
        let mut stack: Vec<(&Span, usize)> = self.roots().into_iter().rev().map(|s| (s, 0)).collect();
        while let Some((span, depth)) = stack.pop() {
            let failure = span.failure().map(|m| format!("  ! {}", if m.is_empty() { "error" } else { &m }));
            let _ = writeln!(
                out,
                "{:>10} {:>10}  {:<16} {}{} ({}){}",
                millis(span.start_time - start),
                millis(span.duration),
                self.service(span),
                "  ".repeat(depth),
                span.operation_name,
                span.kind(),
                failure.unwrap_or_default()
            );
            if let Some(kids) = children.get(span.span_id.as_str()) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
        out
    }

    /// One line: how long ago, the first span's name, span count, services, duration, failures.
    pub fn summary(&self) -> String {
        let root = self.roots().first().map_or("?", |s| s.operation_name.as_str()).to_owned();
        let failed = self.spans.iter().filter(|s| s.failure().is_some()).count();
        let ago = (agora_kit::time::now_millis() - self.start() / 1000).max(0) / 1000;
        let when = format!("{ago:>5} s ago");
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        format!(
            "{}  {when}  {root}: {} spans, {} services, {}{failed}",
            self.trace_id,
            self.spans.len(),
            self.services().len(),
            millis(self.end() - self.start())
        )
    }
}

fn millis(micros: i64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

async fn fetch(http: &reqwest::Client, url: String) -> anyhow::Result<Vec<Trace>> {
    let reply = http.get(&url).send().await.with_context(|| format!("cannot reach Jaeger at {url}"))?;
    let status = reply.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        bail!("Jaeger answered {status} to {url}: {}", reply.text().await.unwrap_or_default());
    }
    let answer: Answer = reply.json().await.with_context(|| format!("Jaeger's answer to {url} is not a trace list"))?;
    if let Some(errors) = answer.errors.filter(|e| !e.is_empty()) {
        bail!("Jaeger reported errors for {url}: {errors:?}");
    }
    Ok(answer.data)
}

/// Prints one trace as a tree, or the latest traces of a service.
pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let jaeger = args.jaeger.trim_end_matches('/');
    match &args.trace_id {
        Some(id) => {
            let id = id.trim().to_ascii_lowercase();
            if id.len() > 32 || id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{id:?} is not a trace id: up to 32 hex digits, as in a traceparent or a log line's trace_id");
            }
            let traces = fetch(&http, format!("{jaeger}/api/traces/{id}")).await?;
            let trace = traces.into_iter().next().with_context(|| {
                format!("Jaeger at {jaeger} has no trace {id} (spans arrive a few seconds after the request)")
            })?;
            print!("{}", trace.render());
        }
        None => {
            let url =
                format!("{jaeger}/api/traces?service={}&limit={}&lookback={}", args.service, args.limit, args.lookback);
            let traces = fetch(&http, url).await?;
            if traces.is_empty() {
                println!("no traces of {} in the last {} at {jaeger}", args.service, args.lookback);
            }
            for trace in &traces {
                println!("{}", trace.summary());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, name: &str, start: i64, duration: i64, process: &str) -> Span {
        Span {
            span_id: id.to_owned(),
            operation_name: name.to_owned(),
            references: parent
                .map(|p| vec![Reference { ref_type: "CHILD_OF".to_owned(), span_id: p.to_owned() }])
                .unwrap_or_default(),
            start_time: start,
            duration,
            tags: vec![Tag { key: "span.kind".to_owned(), value: "server".into() }],
            process_id: process.to_owned(),
        }
    }

    #[test]
    fn renders_children_under_their_parents_in_start_order_with_failures() {
        let mut failed = span("c", Some("a"), "process orders", 3_000, 1_000, "p2");
        failed.tags.push(Tag { key: "error".to_owned(), value: true.into() });
        failed.tags.push(Tag { key: "otel.status_description".to_owned(), value: "declined".into() });
        let trace = Trace {
            trace_id: "t1".to_owned(),
            spans: vec![
                failed,
                span("a", Some("client"), "POST /v1/orders", 1_000, 5_000, "p1"),
                span("b", Some("a"), "CreateOrder", 1_500, 1_000, "p2"),
            ],
            processes: BTreeMap::from([
                ("p1".to_owned(), Process { service_name: "gateway".to_owned() }),
                ("p2".to_owned(), Process { service_name: "order-service".to_owned() }),
            ]),
        };
        let text = trace.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "trace t1: 3 spans from gateway, order-service, 5.0 ms");
        assert!(lines[2].ends_with("gateway          POST /v1/orders (server)"), "{text}");
        assert!(lines[3].contains("order-service      CreateOrder (server)"), "{text}");
        assert!(lines[4].contains("  process orders (server)  ! declined"), "{text}");
        assert!(lines[4].trim_start().starts_with("2.0 ms"), "offset from the trace's start: {text}");
        assert!(trace.summary().contains("POST /v1/orders: 3 spans, 2 services, 5.0 ms, 1 failed"));
    }
}
