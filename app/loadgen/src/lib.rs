//! `agora loadgen`: realistic traffic through the REST gateway, or straight to
//! product-service over gRPC, with latency percentiles per route.
//!
//! - Customers are signed up, signed in and given a wallet before the run; with the admin
//!   password the generator also creates its own products (stocked so a run never sells out).
//! - The mix weighs four operations ([`mix::Op`]). Placed orders are looked at once the
//!   sending is over (again every `--poll-interval` while pending), so following them does
//!   not load the system being measured; the saga's time comes from each order's own
//!   `createdAt`/`updatedAt`.
//! - Closed loop (`--concurrency`): each worker sends its next request when the last one is
//!   answered. Open loop (`--rate`): requests start on a fixed schedule whatever the answers
//!   take, and each one's latency counts from when it was due, so a slow server cannot hide
//!   its queueing behind a slowed-down client (coordinated omission).
//! - `--json` prints the summary for scripts; `make bench` reads it.

pub mod checker;
pub mod cpu;
pub mod history;
pub mod mix;
mod report;
mod retry;
pub mod stats;
mod target;

use std::{
    io::IsTerminal as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use clap::Args as ClapArgs;
use futures::StreamExt as _;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    mix::parse_duration,
    stats::{Measure, Recorder},
    target::{Placed, Target},
};
pub use crate::{
    mix::{Mix, Op},
    stats::Figures,
};

/// Placed orders looked at concurrently after the run.
const FOLLOWERS: usize = 32;
/// Customers' access tokens are renewed this often (the default token lives 15 minutes).
const TOKEN_RENEWAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// The gateway's base URL.
    #[arg(long, env = "AGORA_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,

    /// Call product-service at this address over gRPC instead of the gateway (GetProduct for
    /// `product`, ListProducts for `browse`; the mix may hold only those two).
    #[arg(long, value_name = "HOST:PORT")]
    pub grpc: Option<String>,

    /// With --grpc: call over mutual TLS, as the role this certificate names (PEM; with
    /// --grpc-tls-key and --grpc-tls-ca). product-service must present its own certificate.
    #[arg(long, requires_all = ["grpc", "grpc_tls_key", "grpc_tls_ca"])]
    pub grpc_tls_cert: Option<std::path::PathBuf>,

    /// The key of --grpc-tls-cert (PEM).
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<std::path::PathBuf>,

    /// The CA certificate(s) that sign product-service's certificate (PEM).
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_tls_ca: Option<std::path::PathBuf>,

    /// What to send, as weights: browse (GET /v1/products), product (GET /v1/products/{id}),
    /// order (POST /v1/orders, then followed to PAID or CANCELLED), read (GET /v1/orders/{id}),
    /// cancel (an order placed, then cancelled at once: POST /v1/orders/{id}:cancel).
    #[arg(long, default_value = "browse=30,product=40,order=20,read=10")]
    pub mix: Mix,

    /// Closed loop: this many workers, each sending its next request when its last one is
    /// answered [default: 8, unless --rate is given].
    #[arg(long, short = 'c', conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,

    /// Open loop: start this many requests per second, whatever the answers take.
    #[arg(long, short = 'r', value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// How long to send after the warm-up (`30s`, `2m`, `500ms`).
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Stop after this many measured requests instead of after --duration.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Send for this long first without measuring (connections, caches, JIT-free but not
    /// cold-free: the services' pools fill up here).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Customers signed up before the run, each with a topped-up wallet (for order and read).
    /// Eight sign-ups and their sign-ins fit the gateway's default sign-in burst (20).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,

    /// Products the generator creates when it has the admin password.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub products: u32,

    /// The admin account, for creating the generator's products.
    #[arg(long, env = "AGORA_ADMIN_EMAIL", default_value = "admin@agora.local")]
    pub admin_email: String,

    /// The admin's password. Without it, the catalog's products in stock are used (orders
    /// may then run them out of stock).
    #[arg(long, env = "AGORA_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Open loop: the most requests waiting for an answer; arrivals beyond are dropped and
    /// counted (the generator, not the server, is then the limit).
    #[arg(long, default_value_t = 2_000)]
    pub max_in_flight: u64,

    /// How often a placed order still pending after the run is looked at again.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How long, after the run, placed orders are followed before they count as unsettled.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle_timeout: Duration,

    /// How long one request may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// What each customer's wallet is topped up with before the run, in cents (USD); a
    /// small amount makes later orders decline for insufficient funds.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(i64).range(1..=100_000_000))]
    pub top_up_minor: i64,

    /// Send a request again, up to N times, when the answer was a 5xx, a 429 or no answer at
    /// all, as a careful client does: reads, cancels, and orders with their idempotency key
    /// (a retry of an order that was in fact placed returns it). Exponential backoff with
    /// jitter, or the server's Retry-After; an operation counts once, with its last answer
    /// and its whole time.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,

    /// Retries may add at most this share of the operations (after a reserve of 10), so
    /// that retrying cannot pile onto a struggling platform.
    #[arg(long, default_value_t = 10, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retry_budget: u32,

    /// Append the id of every order the gateway accepted (201) to FILE, one per line, as
    /// it is accepted (for `agora reconcile --accepted`).
    #[arg(long, value_name = "FILE")]
    pub accepted_orders: Option<std::path::PathBuf>,

    /// Write every operation to FILE as it ends, one line each: `END_UNIX_MS LATENCY_MS ROUTE
    /// SERVED STATUS` (SERVED 1 for a definite answer after the retries, 4xx included), so
    /// that the operations of a time window can be counted afterwards (`make chaos` does,
    /// per fault).
    #[arg(long, value_name = "FILE")]
    pub outcomes: Option<std::path::PathBuf>,

    /// Write every operation on orders to FILE as it completes, with when it was invoked
    /// and completed, what it asked and what it was told (JSON lines), and end with the
    /// final state the customers read once it stopped changing; `agora check-history FILE`
    /// then checks it. Its stock check assumes nobody else orders the products used.
    #[arg(long, value_name = "FILE")]
    pub history: Option<std::path::PathBuf>,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Also report the CPU time every process on this machine spent over the measured window,
    /// per program (each Agora role, Kafka, PostgreSQL, this generator ...), read from /proc:
    /// on a machine they all share, what a request or an order costs in all.
    #[arg(long)]
    pub machine_cpu: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1_000_000.0 => Ok(rate),
        _ => Err(format!("{s:?} is not a rate: give requests per second, above 0 and at most 1000000")),
    }
}

/// How the requests were paced.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Pacing {
    Closed { concurrency: u32 },
    Open { rate: f64 },
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    #[serde(flatten)]
    pub pacing: Pacing,
    pub mix: String,
    pub warmup_secs: f64,
    #[serde(flatten)]
    pub figures: Figures,
    /// With `--machine-cpu`: the CPU every program spent over the measured window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu: Option<cpu::MachineCpu>,
}

/// Runs the generator and prints its summary (a table, or JSON with `--json`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let summary = measure(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", report::table(&summary));
    }
    Ok(())
}

/// Prepares the target, sends the traffic and follows the orders; Ctrl-C ends the run early
/// with the figures so far.
pub async fn measure(args: &Args) -> anyhow::Result<Summary> {
    let pacing = match (args.rate, args.concurrency) {
        (Some(rate), _) => Pacing::Open { rate },
        (None, concurrency) => Pacing::Closed { concurrency: concurrency.unwrap_or(8) },
    };
    let show = !args.quiet;
    if show {
        eprintln!("agora loadgen: preparing {} ...", args.grpc.as_deref().unwrap_or(&args.gateway));
    }
    let target = Arc::new(Target::prepare(args).await?);
    if show {
        eprintln!("agora loadgen: {} — {}", target.describe(), describe(pacing, args));
    }

    // The first Ctrl-C (or SIGTERM) ends the sending and the placed orders are still
    // followed; a second one ends that too.
    let stop = CancellationToken::new();
    let sending = stop.child_token();
    let (interrupt, stop_sending) = (stop.clone(), sending.clone());
    tokio::spawn(async move {
        if interrupted().await.is_ok() {
            eprintln!("\nagora loadgen: interrupted; sending stopped, following the placed orders (again to stop now)");
            stop_sending.cancel();
            if interrupted().await.is_ok() {
                eprintln!("\nagora loadgen: interrupted again; summarising what was measured");
                interrupt.cancel();
            }
        }
    });
    let renewing = (target.clone(), stop.clone());
    tokio::spawn(async move {
        let (target, stop) = renewing;
        let mut renew = tokio::time::interval_at(Instant::now() + TOKEN_RENEWAL, TOKEN_RENEWAL);
        loop {
            tokio::select! {
                _ = renew.tick() => target.refresh_tokens().await,
                () = stop.cancelled() => return,
            }
        }
    });

    let recorder = Arc::new(match &args.outcomes {
        Some(path) => Recorder::with_outcomes(anyhow::Context::with_context(std::fs::File::create(path), || {
            format!("cannot create {}", path.display())
        })?),
        None => Recorder::default(),
    });
    let run = Run {
        target,
        recorder: recorder.clone(),
        args: args.clone(),
        start: Instant::now(),
        placed: Arc::default(),
        stop: sending,
    };
    let progress = show.then(|| tokio::spawn(progress(run.recorder.clone(), run.start, args.clone(), stop.clone())));
    let measured_from = run.start + args.warmup;
    let cpu_then = args.machine_cpu.then(|| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measured_from).await;
            tokio::task::spawn_blocking(cpu::snapshot).await
        })
    });
    let sending_ended = match pacing {
        Pacing::Closed { concurrency } => run.closed(concurrency).await,
        Pacing::Open { rate } => run.open(rate).await,
    };
    let window = sending_ended.saturating_duration_since(measured_from);
    // None when sending ended inside the warm-up: nothing was measured.
    let machine_cpu = match cpu_then {
        Some(then) if then.is_finished() => {
            let now = tokio::task::spawn_blocking(cpu::snapshot).await?;
            Some(cpu::between(&then.await??, &now))
        }
        Some(then) => {
            then.abort();
            None
        }
        None => None,
    };

    let placed = std::mem::take(&mut *run.placed.lock().expect("placed lock"));
    if let (Target::Rest(rest), false) = (&*run.target, placed.is_empty()) {
        if show {
            eprintln!("\nagora loadgen: looking at {} placed orders until they settle ...", placed.len());
        }
        let follows = placed.into_iter().map(|(order, counted)| {
            rest.follow(order, args.poll_interval, args.settle_timeout, counted, &recorder, &stop)
        });
        futures::stream::iter(follows).buffer_unordered(FOLLOWERS).collect::<Vec<()>>().await;
    }
    if let Target::Rest(rest) = &*run.target
        && rest.has_history()
    {
        if show {
            eprintln!("agora loadgen: reading the final state for the history ...");
        }
        rest.read_final_state(args.settle_timeout, &stop).await;
    }
    stop.cancel();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    Ok(Summary {
        target: run.target.describe(),
        pacing,
        mix: args.mix.to_string(),
        warmup_secs: args.warmup.as_secs_f64(),
        figures: recorder.summary(window),
        machine_cpu,
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn interrupted() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

fn describe(pacing: Pacing, args: &Args) -> String {
    let pace = match pacing {
        Pacing::Closed { concurrency } => format!("closed loop, {concurrency} workers"),
        Pacing::Open { rate } => format!("open loop, {rate} requests/s"),
    };
    let length = match args.requests {
        Some(n) => format!("{n} requests"),
        None => format!("{:?}", args.duration),
    };
    format!("{pace}, {length} after a {:?} warm-up, mix {}", args.warmup, args.mix)
}

struct Run {
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    args: Args,
    start: Instant,
    /// Orders placed during the run, and whether they were measured.
    placed: Arc<Mutex<Vec<(Placed, bool)>>>,
    /// Ends the sending (the first interrupt).
    stop: CancellationToken,
}

impl Run {
    fn end(&self) -> Option<Instant> {
        self.args.requests.is_none().then(|| self.start + self.args.warmup + self.args.duration)
    }

    fn measured(&self, at: Instant) -> bool {
        at >= self.start + self.args.warmup
    }

    /// `concurrency` workers in a loop; returns when the last one stopped.
    async fn closed(&self, concurrency: u32) -> Instant {
        let tickets = Arc::new(AtomicU64::new(0));
        let workers = TaskTracker::new();
        for worker in 0..concurrency {
            let job = self.job();
            let tickets = tickets.clone();
            let (end, limit, stop) = (self.end(), self.args.requests, self.stop.clone());
            let warm_until = self.start + self.args.warmup;
            workers.spawn(async move {
                let mut rng = fastrand::Rng::with_seed(u64::from(worker) ^ fastrand::u64(..));
                loop {
                    let now = Instant::now();
                    if stop.is_cancelled() || end.is_some_and(|end| now >= end) {
                        return;
                    }
                    let counted = now >= warm_until;
                    if counted && limit.is_some_and(|n| tickets.fetch_add(1, Ordering::Relaxed) >= n) {
                        return;
                    }
                    job.send(&mut rng, now, counted).await;
                }
            });
        }
        workers.close();
        workers.wait().await;
        Instant::now()
    }

    /// Requests started every `1/rate` seconds; returns when the last one was answered.
    async fn open(&self, rate: f64) -> Instant {
        let requests = TaskTracker::new();
        let mut rng = fastrand::Rng::new();
        let mut counted_n = 0u64;
        let mut last_due = self.start;
        for i in 0u64.. {
            let due = self.start + Duration::from_secs_f64(i as f64 / rate);
            if self.end().is_some_and(|end| due >= end) {
                break;
            }
            let counted = self.measured(due);
            if counted {
                if self.args.requests.is_some_and(|n| counted_n >= n) {
                    break;
                }
                counted_n += 1;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.stop.cancelled() => break,
            }
            last_due = due;
            if self.recorder.in_flight.load(Ordering::Relaxed) >= self.args.max_in_flight {
                if counted {
                    self.recorder.dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let job = self.job();
            let mut rng = fastrand::Rng::with_seed(rng.u64(..));
            requests.spawn(async move { job.send(&mut rng, due, counted).await });
        }
        requests.close();
        requests.wait().await;
        // The window is the schedule's, not the last answer's.
        last_due.max(self.start + self.args.warmup) + Duration::from_secs_f64(1.0 / rate)
    }

    fn job(&self) -> Job {
        Job {
            target: self.target.clone(),
            recorder: self.recorder.clone(),
            mix: self.args.mix.clone(),
            placed: self.placed.clone(),
        }
    }
}

/// What one request needs.
struct Job {
    target: Arc<Target>,
    recorder: Arc<Recorder>,
    mix: Mix,
    placed: Arc<Mutex<Vec<(Placed, bool)>>>,
}

impl Job {
    /// Sends one operation (its latency counted from `due`); a placed order is kept to be
    /// followed after the run.
    async fn send(&self, rng: &mut fastrand::Rng, due: Instant, counted: bool) {
        let op = self.mix.pick(rng);
        self.recorder.in_flight.fetch_add(1, Ordering::Relaxed);
        let measure = Measure { recorder: &self.recorder, started: due.into_std(), counted };
        let placed = self.target.send(op, rng, measure).await;
        self.recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(order) = placed {
            if counted {
                self.recorder.placed();
            }
            self.placed.lock().expect("placed lock").push((order, counted));
        }
    }
}

/// A progress line on stderr: redrawn every second on a terminal, printed every 10 s
/// otherwise (logs of `make bench`).
async fn progress(recorder: Arc<Recorder>, start: Instant, args: Args, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let total = args.warmup + args.duration;
    let mut tick = tokio::time::interval_at(start + every, every);
    let mut last = (start, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let now = Instant::now();
        let sent = recorder.sent.load(Ordering::Relaxed);
        let rate = (sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, sent);
        let done = match args.requests {
            Some(n) => (sent as f64 / n as f64).min(1.0),
            None => (now.duration_since(start).as_secs_f64() / total.as_secs_f64().max(1e-3)).min(1.0),
        };
        let line = report::progress_line(
            done,
            now.duration_since(start),
            sent,
            rate,
            recorder.failed.load(Ordering::Relaxed),
            recorder.in_flight.load(Ordering::Relaxed),
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if terminal {
        eprintln!();
    }
}
