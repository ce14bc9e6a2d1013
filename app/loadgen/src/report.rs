//! The summary table and the progress line.

use std::{fmt::Write as _, time::Duration};

use crate::{Pacing, Summary, stats::Latency};

/// `0.84ms`, `12.3ms`, `1.25s`.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}ms")
    } else if value < 1000.0 {
        format!("{value:.1}ms")
    } else {
        format!("{:.2}s", value / 1000.0)
    }
}

fn percentiles(l: &Latency) -> String {
    format!("{:>9}{:>9}{:>9}{:>9}{:>9}", ms(l.p50), ms(l.p90), ms(l.p99), ms(l.p999), ms(l.max))
}

pub fn table(summary: &Summary) -> String {
    let f = &summary.figures;
    let mut out = String::new();
    let pace = match summary.pacing {
        Pacing::Closed { concurrency } => format!("closed loop, {concurrency} workers"),
        Pacing::Open { rate } => format!("open loop, {rate} requests/s"),
    };
    let _ = writeln!(out, "\n{}", summary.target);
    let _ = writeln!(out, "{pace}, mix {}, measured {:.1} s\n", summary.mix, f.window_secs);
    let _ = writeln!(
        out,
        "{:<32}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}",
        "route", "count", "req/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for r in &f.routes {
        let _ =
            writeln!(out, "{:<32}{:>8}{:>9.1}{}{:>8}", r.route, r.count, r.rps, percentiles(&r.latency_ms), r.errors);
    }
    let _ = writeln!(out, "{:<32}{:>8}{:>9.1}{:>45}{:>8}", "total", f.requests, f.throughput, "", f.errors);

    let codes: Vec<String> = f.status.iter().map(|(code, n)| format!("{code} ×{n}")).collect();
    let _ = writeln!(out, "\nstatus: {}", codes.join("  "));
    let _ = writeln!(out, "served: {:.3} % (last answer neither a 5xx, a 429 nor none)", f.served * 100.0);
    if f.retries > 0 || f.retries_refused > 0 {
        let after: Vec<String> = f.retried.iter().map(|(code, n)| format!("{code} ×{n}")).collect();
        let _ = writeln!(
            out,
            "retries: {} (after {}), {} not allowed by the budget",
            f.retries,
            after.join("  "),
            f.retries_refused
        );
    }
    if f.dropped > 0 {
        let _ = writeln!(
            out,
            "dropped: {} arrivals found --max-in-flight requests waiting (the generator was the limit)",
            f.dropped
        );
    }
    if let Some(o) = &f.orders {
        let _ = writeln!(
            out,
            "orders: {} placed, {} PAID ({:.1}/s), {} CANCELLED, {} unsettled",
            o.placed, o.paid, o.paid_per_second, o.cancelled, o.unsettled
        );
        for (label, latency) in [("time to PAID", &o.time_to_paid_ms), ("time to CANCELLED", &o.time_to_cancelled_ms)] {
            if let Some(l) = latency {
                let _ = writeln!(out, "  {label:<29}{:>17}{}", "", percentiles(l));
            }
        }
    }
    if let Some(cpu) = &summary.machine_cpu {
        let _ = writeln!(out, "\nCPU over the window: {:.2} s busy on the machine", cpu.busy_secs);
        let mut programs: Vec<_> = cpu.programs.iter().collect();
        programs.sort_by(|a, b| (b.1.user_secs + b.1.system_secs).total_cmp(&(a.1.user_secs + a.1.system_secs)));
        for (program, spent) in programs {
            let _ = writeln!(
                out,
                "  {program:<29}{:>8.2} s  ({:.2} s in the kernel)",
                spent.user_secs + spent.system_secs,
                spent.system_secs
            );
        }
    }
    if !f.error_samples.is_empty() {
        let _ = writeln!(out, "\nfirst error of each status:");
        for (status, message) in &f.error_samples {
            let _ = writeln!(out, "  {status}: {message}");
        }
    }
    out
}

pub fn progress_line(done: f64, elapsed: Duration, sent: u64, rate: f64, failed: u64, in_flight: u64) -> String {
    const WIDTH: usize = 24;
    let filled = ((done * WIDTH as f64).round() as usize).min(WIDTH);
    format!(
        "[{}{}] {:>3.0}%  {:>6.1}s  {sent} sent  {rate:.0}/s  {failed} failed  {in_flight} in flight",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        done * 100.0,
        elapsed.as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_read_at_a_glance() {
        assert_eq!(ms(0.8412), "0.84ms");
        assert_eq!(ms(12.34), "12.3ms");
        assert_eq!(ms(1250.0), "1.25s");
    }

    #[test]
    fn the_progress_bar_fills_with_the_run() {
        let line = progress_line(0.5, Duration::from_secs(15), 1200, 80.0, 2, 8);
        assert!(line.starts_with("[############............]  50%"), "{line}");
        assert!(line.contains("1200 sent  80/s  2 failed  8 in flight"), "{line}");
    }
}
