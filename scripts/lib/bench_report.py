"""The summary of a `make bench` run: reads the directory scripts/bench.sh filled and prints
the figures next to the targets in docs/benchmarks.md."""

import json
import re
import sys
from pathlib import Path


def pairs(path: Path) -> dict:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def load(out: Path, name: str):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def route(run: dict) -> dict:
    """The run's one measured route (the product-only mixes)."""
    return run["routes"][0]


def ms(value) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def main(out: Path) -> None:
    machine = pairs(out / "machine")
    print(f"\nAgora benchmarks — {machine.get('cpus')} CPUs ({machine.get('cpu')}), "
          f"{int(machine.get('memory_kib', 0)) // 1024} MiB, {machine.get('rustc')}, commit {machine.get('commit')}")
    print(f"each load run: {machine.get('secs')} s measured after {machine.get('warmup')} s of warm-up; "
          f"raw results in {out}\n")

    transcode = out / "transcode.txt"
    if transcode.exists():
        print("1. Transcoding (criterion, median time per call)")
        text = transcode.read_text()
        for name, median in re.findall(r"^(transcode/\S+)\s+time:\s+\[\S+ \S+ (\S+ \S+)", text, re.M):
            print(f"   {name:<30} {median}")
        print()

    gw, grpc = load(out, "gateway-closed"), load(out, "grpc-closed")
    if gw and grpc:
        c = machine.get("concurrency")
        g, d = route(gw), route(grpc)
        print(f"2. Gateway overhead: GET /v1/products/{{id}} vs GetProduct over gRPC, {c} workers")
        print(f"   {'':<24}{'req/s':>10}{'p50':>12}{'p99':>12}{'errors':>8}")
        print(f"   {'through the gateway':<24}{g['rps']:>10.0f}{ms(g['latency_ms']['p50']):>12}{ms(g['latency_ms']['p99']):>12}{g['errors']:>8}")
        print(f"   {'direct gRPC':<24}{d['rps']:>10.0f}{ms(d['latency_ms']['p50']):>12}{ms(d['latency_ms']['p99']):>12}{d['errors']:>8}")
        print(f"   throughput ratio gateway/direct: {g['rps'] / d['rps']:.2f}   (target >= 0.8)")
        gh, dh = load(out, "gateway-half"), load(out, "grpc-half")
        if gh and dh:
            a, b = route(gh), route(dh)
            added = a["latency_ms"]["p99"] - b["latency_ms"]["p99"]
            print(f"   at half the gateway's peak ({gh['rate']:.0f} req/s, open loop): p99 {ms(a['latency_ms']['p99'])} "
                  f"through the gateway, {ms(b['latency_ms']['p99'])} direct: {added:+.2f} ms added   (target <= 1 ms)")
        print()

    peers = [(title, load(out, name)) for title, name in (
        ("GET /v1/products/{id}", "peer-one"), ("GET /v1/products?page_size=20", "peer-list"))]
    if any(run for _, run in peers):
        print("3. CPU per request, side by side: Agora's gateway as shipped and grpc-gateway v2, same product-service")
        for title, run in peers:
            if not run:
                continue
            ours, peer = run["contenders"]
            print(f"   {title}: oha, {run['concurrency']} connections, {run['rounds']} alternating rounds of {run['secs']:.0f} s"
                  f" ({', '.join(run['headers']) or 'no extra header'})")
            print(f"   {'':<16}{'CPU ms/1k req':>14}{'in kernel':>10}{'backend':>10}{'req/s':>9}{'p50':>11}{'p99':>11}"
                  f"{'RSS':>10}{'failed':>8}")
            for c in (ours, peer):
                print(f"   {c['name']:<16}{c['cpu_ms_per_1k']:>14.1f}{c.get('system_ms_per_1k', 0):>10.1f}"
                      f"{c.get('backend_cpu_ms_per_1k', 0):>10.1f}{c['rps']:>9.0f}"
                      f"{ms(c['p50_ms']):>11}{ms(c['p99_ms']):>11}{c['rss_kib'] / 1024:>6.1f} MiB{c['failed']:>8}")
            ratio = ours["cpu_ms_per_1k"] / peer["cpu_ms_per_1k"]
            verdict = "met" if ratio <= 0.5 else "missed"
            print(f"   CPU per request, Agora / grpc-gateway: {ratio:.2f}   (target <= 0.5: {verdict}); "
                  f"req/s ratio {ours['rps'] / peer['rps']:.2f}")
            if "system_ms_per_1k" in ours:
                floor = ours["system_ms_per_1k"] / peer["cpu_ms_per_1k"]
                print(f"   Agora's kernel time alone is {floor:.2f}x grpc-gateway's whole CPU per request")
        service = load(out, "peer-service")
        if service:
            ours, bare = service["contenders"]
            print(f"   GetProduct over gRPC: agora loadgen, {service['concurrency']} workers, {service['rounds']} alternating rounds")
            print(f"   {'':<16}{'CPU µs/call':>14}{'in kernel':>10}{'req/s':>9}{'p50':>11}{'p99':>11}{'RSS':>10}")
            for c in (ours, bare):
                print(f"   {c['name']:<16}{c['cpu_ms_per_1k']:>14.1f}{c.get('system_ms_per_1k', 0):>10.1f}{c['rps']:>9.0f}"
                      f"{ms(c['p50_ms']):>11}{ms(c['p99_ms']):>11}"
                      f"{c['rss_kib'] / 1024:>6.1f} MiB")
            verdict = "met" if ours["cpu_ms_per_1k"] <= 60 else "missed"
            print(f"   product-service: {ours['cpu_ms_per_1k']:.1f} µs of CPU per call (target <= 60: {verdict}), "
                  f"{ours['cpu_ms_per_1k'] / bare['cpu_ms_per_1k']:.1f}x the bare server's")
        mtls = load(out, "peer-mtls")
        if mtls:
            plain, tls = mtls["contenders"]
            print(f"   GetProduct in plaintext and over mutual TLS (two product-service processes, one database), "
                  f"{mtls['rounds']} alternating rounds")
            print(f"   {'':<16}{'CPU µs/call':>14}{'in kernel':>10}{'req/s':>9}{'p50':>11}{'p99':>11}{'RSS':>10}")
            for c in (plain, tls):
                print(f"   {c['name']:<16}{c['cpu_ms_per_1k']:>14.1f}{c.get('system_ms_per_1k', 0):>10.1f}{c['rps']:>9.0f}"
                      f"{ms(c['p50_ms']):>11}{ms(c['p99_ms']):>11}"
                      f"{c['rss_kib'] / 1024:>6.1f} MiB")
            extra = tls["cpu_ms_per_1k"] - plain["cpu_ms_per_1k"]
            print(f"   mutual TLS costs the server {extra:+.1f} µs of CPU per call "
                  f"({tls['cpu_ms_per_1k'] / plain['cpu_ms_per_1k']:.2f}x plaintext); "
                  f"req/s ratio {tls['rps'] / plain['rps']:.2f}")
        graphs = sorted(out.glob("*.svg"))
        if graphs:
            print(f"   flame graphs: {', '.join(str(g) for g in graphs)}")
        print()

    rates = sorted((load(out, p.stem) for p in out.glob("saga-rate-*.json")), key=lambda r: r["rate"])
    closed = load(out, "saga-closed")
    if rates or closed:
        print("4. The saga: POST /v1/orders → PAID through gateway, order-, product- and payment-service, Kafka")
        print(f"   {'offered':<16}{'placed/s':>10}{'PAID/s':>10}{'PAID p50':>12}{'PAID p99':>12}{'POST p99':>12}{'unsettled':>11}{'errors':>8}")
        saturated = None
        for run in rates + ([closed] if closed else []):
            orders = run.get("orders") or {}
            paid = orders.get("time_to_paid_ms") or {}
            post = next((r for r in run["routes"] if r["route"] == "POST /v1/orders"), None)
            offered = f"{run['rate']:.0f}/s" if run["mode"] == "open" else f"{run['concurrency']} workers"
            placed = orders.get("placed", 0) / run["window_secs"]
            print(f"   {offered:<16}{placed:>10.1f}{orders.get('paid_per_second', 0):>10.1f}{ms(paid.get('p50')):>12}"
                  f"{ms(paid.get('p99')):>12}{ms(post and post['latency_ms']['p99']):>12}"
                  f"{orders.get('unsettled', 0):>11}{run['errors']:>8}")
            if run["mode"] == "open" and saturated is None and (
                    orders.get("paid_per_second", 0) < 0.95 * run["rate"] or (paid.get("p99") or 1e9) > 500):
                saturated = run["rate"]
        if saturated is not None:
            print(f"   saturates at {saturated:.0f} orders/s offered (PAID/s under 95% of it, or p99 to PAID over 500 ms)")
        else:
            print("   not saturated at the rates tried")
        print("   target: >= 300 orders/s sustained with p99 to PAID under 500 ms")
        costed = [run for run in rates + ([closed] if closed else [])
                  if run.get("machine_cpu") and (run.get("orders") or {}).get("paid")]
        if costed:
            print("   CPU per PAID order over the window, every process but the load generator (ms; /proc):")
            for run in costed:
                offered = f"{run['rate']:.0f}/s" if run["mode"] == "open" else f"{run['concurrency']} workers"
                spent = {name: p["user_secs"] + p["system_secs"] for name, p in run["machine_cpu"]["programs"].items()
                         if name != "loadgen"}
                paid = run["orders"]["paid"]
                top = sorted(spent.items(), key=lambda item: -item[1])[:7]
                parts = ", ".join(f"{name} {secs * 1000 / paid:.2f}" for name, secs in top)
                print(f"   {offered:<16}{sum(spent.values()) * 1000 / paid:>6.2f} in all: {parts}")
        print()

    ready, idle, peak = pairs(out / "ready_ms"), pairs(out / "idle_rss_kib"), pairs(out / "peak_rss_kib")
    if idle:
        print("5. Memory and start-up (RSS; peak is VmHWM after every load run above)")
        print(f"   {'role':<18}{'ready in':>10}{'idle':>10}{'peak':>10}{'target':>10}")
        for role, kib in idle.items():
            target = "64 MiB" if role == "gateway" else "40 MiB"
            mib = lambda v: "-" if not v or not v.isdigit() else f"{int(v) / 1024:.1f} MiB"  # noqa: E731
            print(f"   {role:<18}{ready.get(role, '?') + ' ms':>10}{mib(kib):>10}{mib(peak.get(role)):>10}{target:>10}")
        print("   target: every role ready within 1 s of its dependencies")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_report.py RESULTS_DIR")
    main(Path(sys.argv[1]))
