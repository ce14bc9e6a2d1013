#!/usr/bin/env python3
"""Runs the workspace's test binaries in lanes side by side, as `cargo test` would run each (in
its package's directory, with its target's name), and fails if any failed.

Most of the suite's time is spent waiting on Kafka, PostgreSQL, Consul and Jaeger rather
than on the CPU, and `cargo test` runs one binary at a time; lanes overlap the waits on this
machine's two cores. A lane's output is printed when the lane ends, so lanes never mix.

Usage: cargo test --workspace --all-targets --no-run --message-format=json \
         | python3 scripts/lib/test-lanes.py [--lanes N] [--heavy NAME ...] [-- TEST ARGS]
  --lanes N     how many lanes (default: 2)
  --heavy NAME  a binary (package:target, e.g. agora-events:it) to spread over the lanes
                first, heaviest first; the others follow, dealt the same way
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def binaries(lines):
    """(name, executable, package dir) for every test binary cargo built, in build order."""
    found = []
    for line in lines:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message.get("profile", {}).get("test"):
            continue
        package = message["package_id"]
        name = message["target"]["name"]
        # package_id: "path+file:///…/crates/agora-events#0.0.0" or "registry…#name@0.0.0"
        manifest = message["manifest_path"]
        found.append((f"{package_name(package, manifest)}:{name}", message["executable"], os.path.dirname(manifest)))
    return found


def package_name(package_id, manifest):
    tail = package_id.rsplit("#", 1)[-1]
    if "@" in tail:
        return tail.split("@", 1)[0]
    return os.path.basename(os.path.dirname(manifest))


def run_lane(lane, jobs, args, results):
    with tempfile.TemporaryFile(mode="w+") as out:
        for name, executable, directory in jobs:
            started = time.monotonic()
            out.write(f"\n     Running {name} ({executable})\n")
            out.flush()
            env = dict(os.environ, CARGO_MANIFEST_DIR=directory)
            code = subprocess.call([executable, *args], cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT)
            results.append((name, code, time.monotonic() - started, lane))
        out.seek(0)
        with print_lock:
            print(f"\n==== lane {lane} ====", flush=True)
            sys.stdout.write(out.read())
            sys.stdout.flush()


print_lock = threading.Lock()


def main():
    argv = sys.argv[1:]
    args = []
    if "--" in argv:
        args = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    heavy = []
    count = 2
    while argv:
        if argv[0] == "--heavy" and len(argv) > 1:
            heavy.append(argv[1])
            argv = argv[2:]
        elif argv[0] == "--lanes" and len(argv) > 1 and argv[1].isdigit() and int(argv[1]) >= 1:
            count = int(argv[1])
            argv = argv[2:]
        else:
            sys.exit(f"unknown argument {argv[0]!r}\n{__doc__}")
    found = binaries(sys.stdin)
    if not found:
        sys.exit("no test binary in cargo's output (was it built with --message-format=json?)")
    by_name = {name: (name, exe, d) for name, exe, d in found}
    missing = [name for name in heavy if name not in by_name]
    if missing:
        sys.exit(f"--heavy names no test binary: {', '.join(missing)} (have: {', '.join(sorted(by_name))})")
    lanes = [[] for _ in range(count)]
    # Dealt like a snake draft (lanes 1, 2, 3, 3, 2, 1, 1, ...): the heavy ones first, heaviest
    # first, so the second round's lighter ones join the lanes whose first one was lightest.
    def lane_of(i):
        i %= 2 * count
        return i if i < count else 2 * count - 1 - i
    rest = [b for b in found if b[0] not in heavy]
    for i, job in enumerate([by_name[name] for name in heavy] + rest):
        lanes[lane_of(i)].append(job)
    results = []
    threads = [threading.Thread(target=run_lane, args=(n + 1, jobs, args, results)) for n, jobs in enumerate(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [(name, code) for name, code, _, _ in results if code != 0]
    print("\ntest binaries (lane, seconds):")
    for name, code, secs, lane in sorted(results, key=lambda r: -r[2]):
        print(f"  {lane}  {secs:6.1f}s  {name}{'  FAILED (exit %d)' % code if code else ''}")
    if failed:
        sys.exit(f"{len(failed)} test binaries failed: {', '.join(name for name, _ in failed)}")


if __name__ == "__main__":
    main()
