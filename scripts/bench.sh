#!/usr/bin/env bash
# `make bench`: Agora's numbers on this machine, in one run (not part of `make test`).
#
#   1. transcoding: criterion benchmarks of JSON -> protobuf -> JSON, small and 10 KiB;
#   2. a private `make up` stack (release build; PostgreSQL, Kafka, Consul, Jaeger) on free
#      ports, with each role's time to ready and idle memory;
#   3. gateway overhead: GET /v1/products/{id} through the gateway against GetProduct
#      called directly over gRPC by the same generator, same product-service, same
#      concurrency; then both at half the gateway's peak rate (open loop) for the p99 it adds;
#   4. CPU per request, side by side (scripts/lib/cpu_rounds.py, from /proc): Agora's gateway
#      as shipped against grpc-gateway v2 generated from the same protos (bench/grpc-gateway),
#      in front of the same product-service, driven by oha in alternating rounds, on
#      GET /v1/products/{id} and GET /v1/products?page_size=20; then product-service against a
#      bare tonic server answering a fixed product (the floor for a service's cost per call),
#      driven by agora loadgen over gRPC; with a flame graph (perf, inferno) of the gateway and
#      of product-service under that load;
#   5. the saga: orders placed at fixed rates through the whole stack, time to PAID, and a
#      closed-loop run for the most it sustains;
#   6. peak memory (VmHWM) of each role after all of that.
#
# The figures are printed at the end; the generator's JSON and the stack's logs stay in
# $AGORA_CACHE/bench/<time>/. The stack is purged when the run ends, however it ends.
#
# Environment:
#   AGORA_CACHE                 cache root (default: $HOME/.cache/agora)
#   AGORA_BENCH_SECS            measured seconds per load run (default: 20)
#   AGORA_BENCH_WARMUP          warm-up seconds before each (default: 3)
#   AGORA_BENCH_CONCURRENCY     workers for the gateway/gRPC comparison (default: 16)
#   AGORA_BENCH_SAGA_RATES      orders per second to try (default: "50 100 150 200 300")
#   AGORA_BENCH_SAGA_WORKERS    customers ordering at once in the closed-loop saga run (default: 32)
#   AGORA_BENCH_ROUNDS          rounds of each CPU-per-request comparison (default: 3)
#   AGORA_BENCH_SKIP            steps to leave out, space-separated: transcode gateway peer
#                               flame saga
#   OTEL_TRACES_SAMPLER[_ARG]   passed to every role, as in production (default: every trace)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"

TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$CACHE_DIR/target}")"
BIN="$TARGET_DIR/release/agora"
OUT_DIR="$CACHE_DIR/bench/$(date -u +%Y%m%dT%H%M%SZ)"
SECS="${AGORA_BENCH_SECS:-20}"
WARMUP="${AGORA_BENCH_WARMUP:-3}"
CONCURRENCY="${AGORA_BENCH_CONCURRENCY:-16}"
SAGA_RATES="${AGORA_BENCH_SAGA_RATES:-50 100 150 200 300}"
SAGA_WORKERS="${AGORA_BENCH_SAGA_WORKERS:-32}"
ROUNDS="${AGORA_BENCH_ROUNDS:-3}"
SKIP=" ${AGORA_BENCH_SKIP:-} "
case "${1:-}" in
  "") ;;
  -h | --help | help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
  *) die "no arguments expected (got '$1'); the knobs are environment variables: see --help" ;;
esac
for number in "$SECS" "$WARMUP" "$CONCURRENCY" "$SAGA_WORKERS" "$ROUNDS" $SAGA_RATES; do
  [[ "$number" =~ ^[0-9]+$ ]] || die "the AGORA_BENCH_* settings are whole numbers; got '$number'"
done
skipped() { [[ "$SKIP" == *" $1 "* ]]; }

# The stack: `make up`'s script, as its own instance on free ports. One client address
# sends everything, so the gateway's per-IP rate limits are off.
# One instance of each role on one of each component (the single topology): the figures
# compare a request through the gateway with one straight to product-service, are kept
# comparable with earlier runs, and no idle replica (three Kafka JVMs) shares the two cores.
# Its roles speak plaintext, as in earlier runs; the peer section measures mutual TLS beside
# plaintext on a pair of its own.
export AGORA_UP_INSTANCE=bench AGORA_UP_FREE_PORTS=1 AGORA_UP_BIN="$BIN" AGORA_UP_REPLICAS=1 AGORA_UP_TOPOLOGY=single
export AGORA_UP_TLS=0
export AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0
# The broker of a long run: both JIT compilers and the concurrent collector, as in the figures
# measured before the test brokers were made lighter (scripts/kafka.sh).
export AGORA_KAFKA_JVM_OPTS="${AGORA_KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}"
UP_DIR="$CACHE_DIR/up/bench"
up() { bash "$SCRIPT_DIR/up.sh" "$@"; }

mkdir -p "$OUT_DIR"
log "results in $OUT_DIR"
{
  printf 'cpus=%s\n' "$(nproc)"
  printf 'cpu=%s\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  printf 'memory_kib=%s\n' "$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
  printf 'kernel=%s\n' "$(uname -r)"
  printf 'rustc=%s\n' "$(rustc --version)"
  printf 'commit=%s\n' "$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'secs=%s\nwarmup=%s\nconcurrency=%s\nsaga_workers=%s\n' "$SECS" "$WARMUP" "$CONCURRENCY" "$SAGA_WORKERS"
} >"$OUT_DIR/machine"

log "building agora (release)"
bash "$SCRIPT_DIR/build-deps.sh"
(cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked -p agora --bin agora) \
  || die "cargo build failed"
if ! skipped peer; then
  log "building the peers: the bare product server, grpc-gateway; the tools: oha, perf, inferno"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked -p product-service --example bare) \
    || die "cargo build of the bare product server failed"
  BARE_BIN="$TARGET_DIR/release/examples/bare"
  bash "$SCRIPT_DIR/bench-tools.sh" install oha grpc-gateway-peer perf inferno
  OHA="$(bash "$SCRIPT_DIR/bench-tools.sh" path oha)"
  PEER_BIN="$(bash "$SCRIPT_DIR/bench-tools.sh" path grpc-gateway-peer)"
fi

# --- 1. Transcoding ---------------------------------------------------------

if ! skipped transcode; then
  log "transcoding benchmarks (criterion)"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo bench --locked -p gateway --bench transcode 2>&1) \
    | tee "$OUT_DIR/transcode.txt" | grep -E '^transcode/|time:|thrpt:' >&2 \
    || die "the transcoding benchmarks failed"
fi

# --- 2. The stack -----------------------------------------------------------

PEER_PIDS=()
cleanup() {
  if ((${#PEER_PIDS[@]})); then kill "${PEER_PIDS[@]}" 2>/dev/null || true; fi
  log "stopping the bench stack"
  cp -r "$UP_DIR/logs" "$OUT_DIR/logs" 2>/dev/null || true
  up purge >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "starting the stack (up.sh, instance bench)"
up purge >/dev/null 2>&1 || true
up up >"$OUT_DIR/up.txt" || die "the stack did not start: see $OUT_DIR/up.txt and $UP_DIR/logs"

GATEWAY="http://127.0.0.1:$(sed -n 's/^gateway=//p' "$UP_DIR/ports" | tail -n 1)"
PRODUCT="127.0.0.1:$(sed -n 's/^product-service=//p' "$UP_DIR/ports" | tail -n 1)"
export AGORA_ADMIN_PASSWORD
AGORA_ADMIN_PASSWORD="$(cat "$UP_DIR/secrets/admin-password")"
ROLES=(gateway user-service product-service order-service payment-service)

# Each role's "listening" line says how long it took from start to serving.
for role in "${ROLES[@]}"; do
  ms="$(sed 's/\x1b\[[0-9;]*m//g' "$UP_DIR/logs/$role.log" | sed -n 's/.*listening.*ready_in_ms=\([0-9]*\).*/\1/p' | tail -n 1)"
  printf '%s=%s\n' "$role" "${ms:-?}" >>"$OUT_DIR/ready_ms"
done

# kB of resident memory: $1 = role, $2 = VmRSS (now) or VmHWM (peak).
memory() {
  local pid
  pid="$(cat "$UP_DIR/pids/$1.pid")"
  sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$pid/status"
}
sleep 2
for role in "${ROLES[@]}"; do printf '%s=%s\n' "$role" "$(memory "$role" VmRSS)" >>"$OUT_DIR/idle_rss_kib"; done

# $1 = file name, then loadgen's arguments.
loadgen() {
  local name="$1"
  shift
  log "loadgen $name: $*"
  "$BIN" loadgen --gateway "$GATEWAY" --json --quiet --warmup "${WARMUP}s" "$@" >"$OUT_DIR/$name.json" \
    || die "loadgen $name failed"
}

# --- 3. Gateway overhead ----------------------------------------------------

if ! skipped gateway; then
  loadgen gateway-closed --mix product -c "$CONCURRENCY" -d "${SECS}s"
  loadgen grpc-closed --grpc "$PRODUCT" --mix product -c "$CONCURRENCY" -d "${SECS}s"
  half="$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput"] / 2))' "$OUT_DIR/gateway-closed.json")"
  loadgen gateway-half --mix product -r "$half" -d "${SECS}s"
  loadgen grpc-half --grpc "$PRODUCT" --mix product -r "$half" -d "${SECS}s"
fi

# --- 4. CPU per request, side by side -----------------------------------------

# A flame graph of process $1 (name $2) over the next $3 seconds: perf samples with DWARF call
# stacks (release builds keep no frame pointers), folded and drawn by inferno.
flame() {
  local pid="$1" name="$2" secs="$3" data="$OUT_DIR/$2.perf.data"
  perf record -q -F 499 --call-graph dwarf,16384 -o "$data" -p "$pid" -- sleep "$secs" 2>>"$OUT_DIR/perf.log" \
    || { log "perf record of $name failed (see $OUT_DIR/perf.log)"; return 0; }
  # Without inlined frames perf script takes seconds instead of minutes; frames narrower than
  # 0.1 % of the samples are left out of the picture (not of the .folded file).
  perf script --no-inline -i "$data" 2>>"$OUT_DIR/perf.log" | "$CACHE_DIR/bin/inferno-collapse-perf" >"$OUT_DIR/$name.folded" \
    && "$CACHE_DIR/bin/inferno-flamegraph" --minwidth 1.2 --title "$name under load (make bench)" \
      <"$OUT_DIR/$name.folded" >"$OUT_DIR/$name.svg" \
    || log "no flame graph of $name (see $OUT_DIR/perf.log)"
  rm -f "$data"
}

# Starts the command $2... in the background as peer $1, its output in $OUT_DIR/$1.log.
start_peer() {
  local name="$1"
  shift
  "$@" >"$OUT_DIR/$name.log" 2>&1 &
  PEER_PIDS+=($!)
}

if ! skipped peer; then
  # shellcheck source-path=SCRIPTDIR
  source "$SCRIPT_DIR/lib/daemon.sh"
  GATEWAY_PID="$(cat "$UP_DIR/pids/gateway.pid")"
  PRODUCT_PID="$(cat "$UP_DIR/pids/product-service.pid")"
  peer_url="http://127.0.0.1:$(free_port)"
  start_peer grpc-gateway "$PEER_BIN" -listen "${peer_url#http://}" -backend "$PRODUCT"
  peer_pid="${PEER_PIDS[-1]}"
  bare_addr="127.0.0.1:$(free_port)"
  start_peer bare "$BARE_BIN" "$bare_addr"
  bare_pid="${PEER_PIDS[-1]}"
  product_id="$(curl -fsS "$GATEWAY/v1/products?page_size=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')" \
    || die "no product to ask for at $GATEWAY"
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "$peer_url/v1/products/$product_id" 2>/dev/null && break
    sleep 0.2
  done
  curl -fsS -o /dev/null "$peer_url/v1/products/$product_id" || die "the grpc-gateway peer does not answer: see $OUT_DIR/grpc-gateway.log"
  rounds() { python3 "$SCRIPT_DIR/lib/cpu_rounds.py" --secs "$SECS" --warmup "$WARMUP" --rounds "$ROUNDS" -c "$CONCURRENCY" "$@"; }
  # A client that accepts gzip, as browsers and curl --compressed do: each gateway compresses
  # (or not) as it ships.
  for route in "one:/v1/products/$product_id" "list:/v1/products?page_size=20"; do
    log "CPU per request, $route: Agora's gateway and grpc-gateway, $ROUNDS rounds"
    rounds --out "$OUT_DIR/peer-${route%%:*}.json" --backend "$PRODUCT_PID" --oha "$OHA" --header "Accept-Encoding: gzip" \
      --http agora "$GATEWAY_PID" "$GATEWAY${route#*:}" --http grpc-gateway "$peer_pid" "$peer_url${route#*:}" \
      || die "the gateway comparison on ${route#*:} failed"
  done
  log "CPU per call, GetProduct: product-service and the bare tonic server, $ROUNDS rounds"
  rounds --out "$OUT_DIR/peer-service.json" --agora "$BIN" --mix product \
    --grpc product-service "$PRODUCT_PID" "$PRODUCT" --grpc bare "$bare_pid" "$bare_addr" \
    || die "the service comparison failed"

  # The cost of mutual TLS: two more product-service processes on the stack's database,
  # started alike (no trace export, no registration), one in plaintext and one serving mTLS
  # only (agora certs' development CA), called as the gateway.
  tls_dir="$OUT_DIR/tls"
  "$BIN" certs --dir "$tls_dir" --roles gateway,product-service --gateway-hosts "" >/dev/null
  product_db="$(tr '\0' '\n' <"/proc/$PRODUCT_PID/environ" | sed -n 's/^AGORA_DATABASE_URL=//p')"
  plain_addr="127.0.0.1:$(free_port)"
  start_peer product-service-plain env AGORA_DATABASE_URL="$product_db" "$BIN" product-service --listen "$plain_addr"
  plain_pid="${PEER_PIDS[-1]}"
  mtls_addr="127.0.0.1:$(free_port)"
  start_peer product-service-mtls env AGORA_DATABASE_URL="$product_db" "$BIN" product-service --listen "$mtls_addr" \
    --tls-cert "$tls_dir/product-service.pem" --tls-key "$tls_dir/product-service-key.pem" --tls-ca "$tls_dir/ca.pem"
  mtls_pid="${PEER_PIDS[-1]}"
  for peer in "plain $plain_pid $plain_addr" "mtls $mtls_pid $mtls_addr"; do
    read -r name pid addr <<<"$peer"
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/${addr##*:}") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || die "the $name product-service exited: see $OUT_DIR/product-service-$name.log"
      sleep 0.1
    done
  done
  log "CPU per call, GetProduct: product-service in plaintext and over mutual TLS, $ROUNDS rounds"
  rounds --out "$OUT_DIR/peer-mtls.json" --agora "$BIN" --mix product --tls-dir "$tls_dir" \
    --grpc plaintext "$plain_pid" "$plain_addr" --grpc-mtls mtls "$mtls_pid" "$mtls_addr" \
    || die "the mutual-TLS comparison failed"

  if ! skipped flame; then
    log "flame graphs: the gateway under GET /v1/products/{id}, product-service under GetProduct"
    "$OHA" -z "$((SECS + 2))s" -c "$CONCURRENCY" --no-tui -H "Accept-Encoding: gzip" "$GATEWAY/v1/products/$product_id" >/dev/null &
    load=$!
    sleep 1
    flame "$GATEWAY_PID" gateway "$SECS"
    wait "$load"
    "$BIN" loadgen --grpc "$PRODUCT" --mix product -c "$CONCURRENCY" -d "$((SECS + 2))s" --warmup 0s --quiet >/dev/null &
    load=$!
    sleep 1
    flame "$PRODUCT_PID" product-service "$SECS"
    wait "$load"
  fi
fi

# --- 5. The saga ------------------------------------------------------------

if ! skipped saga; then
  # Kafka's JVM compiles its hot paths in its first minutes under load: in the first run at
  # 50 orders/s it spent 14 ms of CPU per order, at the 200/s run a minute later under 1 ms.
  # An unmeasured run first, so the rows below measure the broker warm.
  loadgen saga-warm-up --mix order -r 100 -d 30s --users 10
  # --machine-cpu: what every process spent over each window, for the CPU per paid order.
  for rate in $SAGA_RATES; do
    loadgen "saga-rate-$rate" --mix order -r "$rate" -d "${SECS}s" --users 50 --machine-cpu
  done
  loadgen saga-closed --mix order -c "$SAGA_WORKERS" -d "${SECS}s" --users 50 --machine-cpu
fi

# --- 6. Peak memory ---------------------------------------------------------

for role in "${ROLES[@]}"; do printf '%s=%s\n' "$role" "$(memory "$role" VmHWM)" >>"$OUT_DIR/peak_rss_kib"; done

python3 "$SCRIPT_DIR/lib/bench_report.py" "$OUT_DIR" | tee "$OUT_DIR/report.txt"
