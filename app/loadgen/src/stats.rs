//! What was measured: a latency histogram and an error count per route, the status codes,
//! and for orders the time from placed to PAID or CANCELLED. Also the live counters the
//! progress line reads.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are kept in microseconds, from 1 µs to 10 minutes, to 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 600_000_000)
}

/// How a request ended: an HTTP status or gRPC code, or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `200`, `503`, `OK`, `Unavailable`, `timeout`, `connection error`…
    pub status: String,
    pub ok: bool,
    /// What the server (or the connection) said, for an error.
    pub message: Option<String>,
}

impl Outcome {
    pub fn http(status: reqwest::StatusCode, message: Option<String>) -> Self {
        Self { status: status.as_u16().to_string(), ok: status.is_success(), message }
    }

    pub fn grpc(result: Result<(), tonic::Status>) -> Self {
        match result {
            Ok(()) => Self { status: "OK".into(), ok: true, message: None },
            Err(status) => {
                Self { status: format!("{:?}", status.code()), ok: false, message: Some(status.message().to_owned()) }
            }
        }
    }

    /// No definite answer: a 5xx, a 429, a timeout or a lost connection. Trying again (with
    /// the same idempotency key) may succeed; a 4xx will not.
    pub fn indefinite(&self) -> bool {
        (!self.ok && !self.status.starts_with('4')) || self.status == "429"
    }

    pub fn failed(error: &reqwest::Error) -> Self {
        let status = if error.is_timeout() { "timeout" } else { "connection error" };
        Self { status: status.into(), ok: false, message: Some(format!("{error:#}")) }
    }
}

#[derive(Debug)]
struct Route {
    latency: Histogram<u64>,
    errors: u64,
}

#[derive(Debug, Default)]
struct Tally {
    routes: BTreeMap<&'static str, Route>,
    status: BTreeMap<String, u64>,
    /// The first message seen for each failing status.
    samples: BTreeMap<String, String>,
    placed: u64,
    settled: BTreeMap<&'static str, Histogram<u64>>,
    /// The first `createdAt` and the last `updatedAt` of the PAID orders, in epoch ms.
    paid_span: Option<(i64, i64)>,
    unsettled: u64,
    /// Retries sent, by the status of the answer that was retried.
    retried: BTreeMap<String, u64>,
    /// Retries the budget did not allow.
    retries_refused: u64,
    /// Requests whose last answer was not definite (a 5xx, a 429, none).
    unanswered: u64,
}

/// How one operation is recorded: into `recorder`, its time counted from `started`, its
/// figures kept only when `counted` (after the warm-up).
#[derive(Debug, Clone, Copy)]
pub struct Measure<'a> {
    pub recorder: &'a Recorder,
    pub started: std::time::Instant,
    pub counted: bool,
}

impl Measure<'_> {
    /// The operation ended with `outcome`, now.
    pub fn done(&self, route: &'static str, outcome: &Outcome) {
        self.recorder.request(route, outcome, self.started.elapsed(), self.counted);
    }

    /// It is sent again after `outcome`.
    pub fn retried(&self, outcome: &Outcome) {
        self.recorder.retried(outcome, self.counted);
    }

    /// A retry it needed that the budget did not allow.
    pub fn retry_refused(&self) {
        self.recorder.retry_refused(self.counted);
    }
}

/// Everything recorded during a run; shared by the workers.
#[derive(Debug, Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
    /// Live counters for the progress line: every request sent, counted or not.
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    pub dropped: AtomicU64,
    /// Where each counted operation is written as it ends (`--outcomes`).
    outcomes: Option<Mutex<std::io::LineWriter<std::fs::File>>>,
}

impl Recorder {
    /// A recorder that also writes one line per counted operation to `file`, as it ends:
    /// `END_UNIX_MS LATENCY_MS ROUTE SERVED STATUS` (SERVED is 1 for a definite answer, 4xx
    /// included, after the retries; 0 for none), so that a fault's window can be cut out later.
    pub fn with_outcomes(file: std::fs::File) -> Self {
        Self { outcomes: Some(Mutex::new(std::io::LineWriter::new(file))), ..Self::default() }
    }

    /// One answered request. `counted` is false in the warm-up, whose requests only show
    /// in the live counters.
    pub fn request(&self, route: &'static str, outcome: &Outcome, latency: Duration, counted: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !outcome.ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if !counted {
            return;
        }
        let mut tally = self.tally.lock().expect("recorder lock");
        let entry = tally.routes.entry(route).or_insert_with(|| Route { latency: histogram(), errors: 0 });
        entry.latency.saturating_record(micros(latency));
        if !outcome.ok {
            entry.errors += 1;
            if let Some(message) = &outcome.message {
                tally.samples.entry(outcome.status.clone()).or_insert_with(|| message.clone());
            }
        }
        *tally.status.entry(outcome.status.clone()).or_default() += 1;
        let served = outcome.ok || !outcome.indefinite();
        if !served {
            tally.unanswered += 1;
        }
        drop(tally);
        if let Some(out) = &self.outcomes {
            use std::io::Write as _;
            let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let line = format!(
                "{} {:.1} {} {} {}\n",
                end.as_millis(),
                latency.as_secs_f64() * 1000.0,
                route.replace(' ', "_"),
                u8::from(served),
                outcome.status.replace(' ', "_")
            );
            // A full disk loses lines of this log, never the run.
            let _ = out.lock().expect("outcomes lock").write_all(line.as_bytes());
        }
    }

    /// A request that is sent again after `outcome` (not definite); the operation is recorded
    /// once, with its last outcome, by [`Recorder::request`].
    pub fn retried(&self, outcome: &Outcome, counted: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if counted {
            *self.tally.lock().expect("recorder lock").retried.entry(outcome.status.clone()).or_default() += 1;
        }
    }

    /// A retry the budget did not allow.
    pub fn retry_refused(&self, counted: bool) {
        if counted {
            self.tally.lock().expect("recorder lock").retries_refused += 1;
        }
    }

    pub fn placed(&self) {
        self.tally.lock().expect("recorder lock").placed += 1;
    }

    /// An order created at `created_ms` reached `status` (PAID or CANCELLED) at `updated_ms`
    /// (epoch milliseconds, by order-service's clock).
    pub fn settled(&self, status: &'static str, created_ms: i64, updated_ms: i64) {
        let took = Duration::from_millis(u64::try_from(updated_ms - created_ms).unwrap_or(0));
        let mut tally = self.tally.lock().expect("recorder lock");
        tally.settled.entry(status).or_insert_with(histogram).saturating_record(micros(took));
        if status == "PAID" {
            let (first, last) = tally.paid_span.unwrap_or((created_ms, updated_ms));
            tally.paid_span = Some((first.min(created_ms), last.max(updated_ms)));
        }
    }

    /// An order still PENDING_PAYMENT when the generator stopped following it.
    pub fn unsettled(&self) {
        self.tally.lock().expect("recorder lock").unsettled += 1;
    }

    /// The figures over a measured window of `window`.
    pub fn summary(&self, window: Duration) -> Figures {
        let tally = self.tally.lock().expect("recorder lock");
        let secs = window.as_secs_f64().max(f64::EPSILON);
        let routes: Vec<RouteFigures> = tally
            .routes
            .iter()
            .map(|(route, r)| RouteFigures {
                route: (*route).to_owned(),
                count: r.latency.len(),
                rps: r.latency.len() as f64 / secs,
                errors: r.errors,
                latency_ms: Latency::of(&r.latency),
            })
            .collect();
        let requests = routes.iter().map(|r| r.count).sum();
        let settled = |status| tally.settled.get(status);
        let paid = settled("PAID").map_or(0, Histogram::len);
        let orders = (tally.placed > 0).then(|| Orders {
            placed: tally.placed,
            paid,
            cancelled: settled("CANCELLED").map_or(0, Histogram::len),
            unsettled: tally.unsettled,
            paid_per_second: match tally.paid_span {
                Some((first, last)) if last > first => paid as f64 * 1000.0 / (last - first) as f64,
                _ => 0.0,
            },
            time_to_paid_ms: settled("PAID").map(Latency::of),
            time_to_cancelled_ms: settled("CANCELLED").map(Latency::of),
        });
        Figures {
            window_secs: window.as_secs_f64(),
            requests,
            throughput: requests as f64 / secs,
            served: if requests == 0 { 1.0 } else { 1.0 - tally.unanswered as f64 / requests as f64 },
            retries: tally.retried.values().sum(),
            retried: tally.retried.clone(),
            retries_refused: tally.retries_refused,
            errors: routes.iter().map(|r| r.errors).sum(),
            dropped: self.dropped.load(Ordering::Relaxed),
            routes,
            status: tally.status.clone(),
            error_samples: tally.samples.clone(),
            orders,
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteFigures {
    pub route: String,
    pub count: u64,
    pub rps: f64,
    pub errors: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Orders {
    pub placed: u64,
    pub paid: u64,
    pub cancelled: u64,
    /// Still PENDING_PAYMENT when the generator stopped following them.
    pub unsettled: u64,
    /// PAID orders per second from the first one's creation to the last one's payment: the
    /// rate the saga sustained, which falls below the placing rate once it queues.
    pub paid_per_second: f64,
    /// From the order's `createdAt` to its `updatedAt` when it was seen PAID: the saga's
    /// own time, without the polling interval.
    pub time_to_paid_ms: Option<Latency>,
    pub time_to_cancelled_ms: Option<Latency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// The measured window: from the end of the warm-up to the last request sent.
    pub window_secs: f64,
    pub requests: u64,
    pub throughput: f64,
    /// The share of the requests whose last answer was definite: neither a 5xx nor a 429 nor
    /// none at all (after the retries, with `--retries`). A 4xx counts as served.
    pub served: f64,
    /// Requests sent again (`--retries`), and by the status they were sent again after.
    pub retries: u64,
    pub retried: BTreeMap<String, u64>,
    /// Retries the budget did not allow.
    pub retries_refused: u64,
    pub errors: u64,
    /// Open loop only: arrivals not sent because `--max-in-flight` requests were waiting.
    pub dropped: u64,
    pub routes: Vec<RouteFigures>,
    pub status: BTreeMap<String, u64>,
    pub error_samples: BTreeMap<String, String>,
    pub orders: Option<Orders>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outcome {
        Outcome { status: "200".into(), ok: true, message: None }
    }

    #[test]
    fn figures_count_only_the_measured_requests_and_keep_one_error_sample_per_status() {
        let recorder = Recorder::default();
        recorder.request("GET /x", &ok(), Duration::from_millis(100), false);
        for ms in 1..=100 {
            recorder.request("GET /x", &ok(), Duration::from_millis(ms), true);
        }
        let busy = |m: &str| Outcome { status: "503".into(), ok: false, message: Some(m.into()) };
        recorder.request("POST /y", &busy("first"), Duration::from_millis(5), true);
        recorder.request("POST /y", &busy("second"), Duration::from_millis(5), true);

        let figures = recorder.summary(Duration::from_secs(2));
        assert_eq!(figures.requests, 102);
        assert_eq!(figures.errors, 2);
        assert!((figures.throughput - 51.0).abs() < 1e-9);
        assert_eq!(figures.status["200"], 100);
        assert_eq!(figures.error_samples["503"], "first");
        let x = &figures.routes[0];
        assert_eq!((x.route.as_str(), x.count, x.errors), ("GET /x", 100, 0));
        assert!((x.latency_ms.p50 - 50.0).abs() < 0.1, "{:?}", x.latency_ms);
        assert!((x.latency_ms.p99 - 99.0).abs() < 0.1, "{:?}", x.latency_ms);
        assert!((x.latency_ms.max - 100.0).abs() < 0.1, "{:?}", x.latency_ms);
        assert_eq!(recorder.sent.load(Ordering::Relaxed), 103);
        assert!(figures.orders.is_none());
    }

    #[test]
    fn a_retried_request_counts_once_with_its_last_answer_and_served_counts_definite_answers() {
        let recorder = Recorder::default();
        let answer = |status: &str| Outcome { status: status.into(), ok: status == "201", message: None };
        // Retried after a 503 and a timeout, then placed.
        recorder.retried(&answer("503"), true);
        recorder.retried(&answer("timeout"), true);
        recorder.request("POST /v1/orders", &answer("201"), Duration::from_millis(900), true);
        // Refused for a reason of the client's: served. Unavailable to the end: not served.
        recorder.request("POST /v1/orders", &answer("409"), Duration::from_millis(5), true);
        recorder.retry_refused(true);
        recorder.request("POST /v1/orders", &answer("503"), Duration::from_millis(5), true);
        recorder.request("POST /v1/orders", &answer("201"), Duration::from_millis(5), true);

        let figures = recorder.summary(Duration::from_secs(1));
        assert_eq!(figures.requests, 4, "each operation once");
        assert_eq!(figures.retries, 2);
        assert_eq!(figures.retried, BTreeMap::from([("503".to_owned(), 1), ("timeout".to_owned(), 1)]));
        assert_eq!(figures.retries_refused, 1);
        assert!((figures.served - 0.75).abs() < 1e-9, "{}", figures.served);
        assert_eq!(recorder.sent.load(Ordering::Relaxed), 6, "every request sent, retries included");
    }

    #[test]
    fn orders_are_counted_by_outcome() {
        let recorder = Recorder::default();
        for _ in 0..3 {
            recorder.placed();
        }
        recorder.settled("PAID", 1_000, 1_040);
        recorder.settled("PAID", 1_500, 2_000);
        recorder.settled("CANCELLED", 1_000, 1_060);
        recorder.unsettled();
        let orders = recorder.summary(Duration::from_secs(1)).orders.unwrap();
        assert_eq!((orders.placed, orders.paid, orders.cancelled, orders.unsettled), (3, 2, 1, 1));
        assert!((orders.time_to_paid_ms.unwrap().p99 - 500.0).abs() < 0.5);
        assert!((orders.time_to_cancelled_ms.unwrap().max - 60.0).abs() < 0.1);
        // Two payments between 1.000 s and 2.000 s.
        assert!((orders.paid_per_second - 2.0).abs() < 1e-9, "{}", orders.paid_per_second);
    }
}
