"""Side-by-side cost per request, read from /proc: the peer comparisons of `make bench`.

On a machine whose two cores every process shares, throughput says as much about the load
generator and the neighbours as about the server. What a server costs is the CPU its process
spends per request, which /proc/PID/stat counts (user + system time of all its threads) whatever
else runs. So each contender (a server process and the load that drives it) runs in rounds:
every round runs each contender once, in an order that alternates (A B, then B A), so drift of
the machine over the run falls on both. Each run is preceded by an unmeasured warm-up.

For each contender the result holds, over all rounds: requests answered, CPU ms per 1,000
requests of the server (and of a backend process both share, if given), the part of it spent in
the kernel (system time: what the sockets and wake-ups cost, the floor no user-space change
removes), and per round req/s, p50
and p99; then the server's resident memory (VmRSS) after its runs and its peak (VmHWM).

Usage (one contender per --http or --grpc; the order given is the first round's):
    cpu_rounds.py --out FILE --secs 15 --warmup 2 --rounds 3 -c 16 [--backend PID]
        --oha BIN --http NAME PID URL [--header 'Accept-Encoding: gzip']
        --agora BIN --grpc NAME PID ADDR [--grpc-mtls NAME PID ADDR --tls-dir DIR] --mix product
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """CPU time (user + system, all threads) process `pid` has used so far, in ms."""
    user, system = user_system_ms(pid)
    return user + system


def user_system_ms(pid: int) -> tuple:
    """Of that CPU time, (user, system): system is the kernel's work for the process (its
    system calls: the sockets' TCP and the scheduler's wake-ups), in ms."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) * 1000 / TICKS, int(fields[12]) * 1000 / TICKS


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {key} for process {pid}")


class Contender:
    def __init__(self, name: str, pid: str, kind: str, target: str, args):
        self.name, self.pid, self.kind, self.target, self.args = name, int(pid), kind, target, args
        self.runs = []

    def command(self, secs: float) -> list:
        a = self.args
        if self.kind == "http":
            command = [a.oha, "-z", f"{secs}s", "-c", str(a.concurrency), "--no-tui", "--output-format", "json"]
            for header in a.header:
                command += ["-H", header]
            return command + [self.target]
        command = [a.agora, "loadgen", "--grpc", self.target, "--mix", a.mix, "-c", str(a.concurrency),
                   "-d", f"{secs}s", "--warmup", "0s", "--json", "--quiet"]
        if self.kind == "grpc-mtls":
            tls = Path(a.tls_dir)
            command += ["--grpc-tls-cert", str(tls / "gateway.pem"), "--grpc-tls-key", str(tls / "gateway-key.pem"),
                        "--grpc-tls-ca", str(tls / "ca.pem")]
        return command

    def load(self, secs: float) -> dict:
        """Runs the load for `secs`; what it answered, from the generator's JSON."""
        done = subprocess.run(self.command(secs), capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"cpu_rounds: {self.name}: {' '.join(self.command(secs))} failed:\n{done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        if self.kind == "http":
            codes = report.get("statusCodeDistribution", {})
            ok = sum(n for code, n in codes.items() if code.startswith("2"))
            # oha cuts the requests still in flight when the duration ends; those failed nothing.
            errors = {e: n for e, n in report.get("errorDistribution", {}).items() if "deadline" not in e}
            failed = sum(codes.values()) - ok + sum(errors.values())
            latency = report["latencyPercentiles"]
            return {"requests": ok, "failed": failed, "rps": report["summary"]["requestsPerSec"],
                    "p50_ms": latency["p50"] * 1000, "p99_ms": latency["p99"] * 1000}
        route = report["routes"][0]
        return {"requests": route["count"] - route["errors"], "failed": route["errors"], "rps": route["rps"],
                "p50_ms": route["latency_ms"]["p50"], "p99_ms": route["latency_ms"]["p99"]}

    def run(self, backend) -> None:
        a = self.args
        if a.warmup > 0:
            self.load(a.warmup)
        before, backend_before, started = user_system_ms(self.pid), backend and cpu_ms(backend), time.monotonic()
        result = self.load(a.secs)
        after = user_system_ms(self.pid)
        result["cpu_ms"] = sum(after) - sum(before)
        result["system_ms"] = after[1] - before[1]
        result["wall_s"] = time.monotonic() - started
        if backend:
            result["backend_cpu_ms"] = cpu_ms(backend) - backend_before
        self.runs.append(result)
        print(f"cpu_rounds: {self.name:<14} {result['rps']:>9.0f} req/s  "
              f"{result['cpu_ms'] * 1000 / max(result['requests'], 1):>7.3f} CPU ms per 1k requests", file=sys.stderr)

    def summary(self) -> dict:
        requests = sum(r["requests"] for r in self.runs)
        median = lambda key: sorted(r[key] for r in self.runs)[len(self.runs) // 2]  # noqa: E731
        out = {
            "name": self.name, "kind": self.kind, "target": self.target, "rounds": self.runs,
            "requests": requests, "failed": sum(r["failed"] for r in self.runs),
            "cpu_ms_per_1k": sum(r["cpu_ms"] for r in self.runs) * 1000 / max(requests, 1),
            "system_ms_per_1k": sum(r["system_ms"] for r in self.runs) * 1000 / max(requests, 1),
            "rps": median("rps"), "p50_ms": median("p50_ms"), "p99_ms": median("p99_ms"),
            "rss_kib": memory_kib(self.pid, "VmRSS"), "hwm_kib": memory_kib(self.pid, "VmHWM"),
        }
        if all("backend_cpu_ms" in r for r in self.runs):
            out["backend_cpu_ms_per_1k"] = sum(r["backend_cpu_ms"] for r in self.runs) * 1000 / max(requests, 1)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--secs", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--backend", type=int, help="a process every contender calls (its CPU per request)")
    parser.add_argument("--oha", help="the oha binary (for --http)")
    parser.add_argument("--header", action="append", default=[], help="a header oha sends")
    parser.add_argument("--agora", help="the agora binary (for --grpc: agora loadgen)")
    parser.add_argument("--mix", default="product", help="agora loadgen's --mix for --grpc")
    parser.add_argument("--http", nargs=3, action="append", default=[], metavar=("NAME", "PID", "URL"))
    parser.add_argument("--grpc", nargs=3, action="append", default=[], metavar=("NAME", "PID", "ADDR"))
    parser.add_argument("--grpc-mtls", nargs=3, action="append", default=[], metavar=("NAME", "PID", "ADDR"),
                        help="as --grpc, over mutual TLS as the gateway (its files in --tls-dir)")
    parser.add_argument("--tls-dir", help="agora certs' directory, for --grpc-mtls")
    args = parser.parse_args()
    contenders = [Contender(n, p, "http", t, args) for n, p, t in args.http]
    contenders += [Contender(n, p, "grpc", t, args) for n, p, t in args.grpc]
    contenders += [Contender(n, p, "grpc-mtls", t, args) for n, p, t in args.grpc_mtls]
    if len(contenders) < 2:
        parser.error("give at least two contenders")
    if args.http and not args.oha:
        parser.error("--http needs --oha")
    if (args.grpc or args.grpc_mtls) and not args.agora:
        parser.error("--grpc needs --agora")
    if args.grpc_mtls and not args.tls_dir:
        parser.error("--grpc-mtls needs --tls-dir")
    for round_number in range(args.rounds):
        order = contenders if round_number % 2 == 0 else contenders[::-1]
        for contender in order:
            contender.run(args.backend)
    result = {"secs": args.secs, "warmup": args.warmup, "rounds": args.rounds, "concurrency": args.concurrency,
              "headers": args.header, "contenders": [c.summary() for c in contenders]}
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
