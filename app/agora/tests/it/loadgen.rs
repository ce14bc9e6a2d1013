//! `agora loadgen` against the one-process platform: it prepares its customers and
//! products, sends exactly what it was asked to, follows every order to PAID, and says what
//! to do when it cannot run.

use std::process::{Command, Output};

use serde_json::Value;

use crate::all::{Platform, start};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora")).arg("loadgen").args(args).output().unwrap()
}

/// Runs the generator against `platform` with `args`; returns its `--json` summary.
fn summary(platform: &Platform, args: &[&str]) -> Value {
    let mut all = vec!["--gateway", &platform.url, "--admin-password", &platform.admin.1, "--json", "--quiet"];
    all.extend_from_slice(args);
    let out = loadgen(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

fn count(summary: &Value, route: &str) -> u64 {
    let routes = summary["routes"].as_array().unwrap();
    routes.iter().find(|r| r["route"] == route).map_or(0, |r| r["count"].as_u64().unwrap())
}

#[test]
fn a_closed_loop_run_sends_what_was_asked_and_follows_every_order_to_paid() {
    let data = tempfile::tempdir().unwrap();
    let platform = start(data.path());
    let s = summary(&platform, &["--users", "3", "-c", "4", "-n", "60", "--mix", "browse=1,product=1,order=1,read=1"]);

    assert_eq!((s["mode"].as_str(), s["concurrency"].as_u64()), (Some("closed"), Some(4)), "{s}");
    let routes = s["routes"].as_array().unwrap();
    let measured: u64 = routes
        .iter()
        .filter(|r| !r["route"].as_str().unwrap().ends_with("(settled?)"))
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(measured, 60, "exactly the requests asked for: {s}");
    for route in ["GET /v1/products", "GET /v1/products/{id}", "POST /v1/orders"] {
        assert!(count(&s, route) > 0, "{route} in {s}");
    }
    assert!(count(&s, "GET /v1/orders/{id}") + count(&s, "GET /v1/orders") > 0, "reads in {s}");
    assert_eq!(s["errors"], 0, "{s}");
    let statuses: u64 = s["status"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(statuses, s["requests"].as_u64().unwrap(), "every request has a status: {s}");
    assert_eq!(s["status"]["201"].as_u64(), Some(count(&s, "POST /v1/orders")), "{s}");
    for r in routes {
        let l = &r["latency_ms"];
        let (p50, p99, max) = (l["p50"].as_f64().unwrap(), l["p99"].as_f64().unwrap(), l["max"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "percentiles in order: {r}");
    }

    let orders = &s["orders"];
    assert_eq!(orders["placed"].as_u64(), Some(count(&s, "POST /v1/orders")), "{s}");
    assert_eq!(orders["paid"], orders["placed"], "the generator's wallets cover every order: {s}");
    assert_eq!((orders["cancelled"].as_u64(), orders["unsettled"].as_u64()), (Some(0), Some(0)), "{s}");
    assert!(orders["time_to_paid_ms"]["max"].as_f64().unwrap() >= 0.0, "{s}");
}

#[test]
fn an_open_loop_run_starts_its_requests_on_schedule() {
    let data = tempfile::tempdir().unwrap();
    let platform = start(data.path());
    let s = summary(&platform, &["-r", "40", "-d", "1s", "--mix", "product"]);
    assert_eq!((s["mode"].as_str(), s["rate"].as_f64()), (Some("open"), Some(40.0)), "{s}");
    // Due at 0, 25, 50 ... 975 ms: forty, none dropped.
    assert_eq!((count(&s, "GET /v1/products/{id}"), s["dropped"].as_u64()), (40, Some(0)), "{s}");
    assert!(s["orders"].is_null(), "no orders without order in the mix: {s}");
}

#[test]
fn loadgen_says_what_to_do_when_it_cannot_run() {
    let out = loadgen(&["--gateway", "http://127.0.0.1:9", "-n", "1", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the gateway at http://127.0.0.1:9") && stderr.contains("make run"),
        "{stderr}"
    );

    let out = loadgen(&["--grpc", "127.0.0.1:9", "--mix", "product,order", "-n", "1", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may hold browse and product, not order"), "{stderr}");

    let out = loadgen(&["--mix", "buy=1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("unknown operation \"buy\""), "{stderr}");

    let out = loadgen(&["-r", "10", "-c", "2"]);
    assert_eq!(out.status.code(), Some(2), "open and closed loop at once");
}

#[test]
fn a_runs_history_checks_clean_and_a_tampered_one_names_its_anomaly() {
    let data = tempfile::tempdir().unwrap();
    let platform = start(data.path());
    let history = data.path().join("history.jsonl");
    let path = history.to_str().unwrap();
    let s = summary(
        &platform,
        &["--users", "3", "-c", "4", "-n", "60", "--mix", "order=2,cancel=1,read=1", "--history", path],
    );
    assert!(count(&s, "POST /v1/orders") > 0, "{s}");

    let check = |file: &str| Command::new(env!("CARGO_BIN_EXE_agora")).args(["check-history", file]).output().unwrap();
    let out = check(path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("anomalies: none"), "{text}");
    let lines = std::fs::read_to_string(&history).unwrap();
    let entries: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finals = entries.iter().filter(|e| e["f"] == "final").count();
    assert_eq!(finals, 3, "one final state per customer");
    assert_eq!(entries.iter().filter(|e| e["f"] == "final_stock").count(), 10, "each of the generator's products");
    let acked = entries.iter().filter(|e| e["f"] == "order" && e["status"] == "201").count();
    assert_eq!(acked as u64, count(&s, "POST /v1/orders"), "every acknowledged order is in the history");

    // The same history with one acknowledged order gone from its customer's final state.
    let order = entries.iter().find(|e| e["f"] == "order" && e["status"] == "201").unwrap();
    let id = order["seen"]["id"].as_str().unwrap();
    let tampered: Vec<String> = entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e["f"] == "final" {
                e["orders"].as_array_mut().unwrap().retain(|o| o["id"] != id);
            }
            e.to_string()
        })
        .collect();
    let broken = data.path().join("tampered.jsonl");
    std::fs::write(&broken, tampered.join("\n")).unwrap();
    let out = check(broken.to_str().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("lost") && l.contains(id)), "{text}");
}
