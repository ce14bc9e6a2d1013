#!/usr/bin/env bash
# `make chaos`: the distributed stack keeps its promises while its parts fail.
#
#   1. a private `make up` stack (instance `chaos`, free ports, rate limits off, a 3 s
#      request deadline at the gateway), in `make up`'s default topology: replicated (three
#      Consul servers, a PostgreSQL primary and synchronous standby under Patroni, three Kafka
#      nodes, two processes of every role); AGORA_UP_TOPOLOGY=single runs the one-of-each
#      stack and its faults instead;
#   2. products for the run (one stocked to sell out mid-run), and every product's stock
#      saved (`agora reconcile --save-stock`);
#   3. `agora loadgen` in the background: customers (whose wallets run dry part-way, so some
#      orders are declined) browsing, ordering and cancelling orders just placed (refunds)
#      through the gateway at a fixed rate, sending an order that got no answer again under the same
#      idempotency key, and writing down every order the gateway accepted (201);
#   4. the faults, one at a time, each waited out until the stack is ready again:
#        SIGKILL of one instance of each role and a restart (payment-service twice, mid-batch),
#        replicated: SIGKILL of the Kafka node that leads the most partitions, of the
#        PostgreSQL primary (Patroni and PostgreSQL at once, as a machine loss), of the Consul
#        leader, and of a whole "node" (one instance of every role and one Kafka node);
#        single: Kafka stopped and started, PostgreSQL restarted, Consul restarted;
#        a hung product-service (SIGSTOP past the gateway's deadline: each read answered by the
#        deadline, 504 from it or 200 from another instance, then SIGCONT),
#        the gateway restarted (SIGTERM, drained) under load;
#        network faults on the proxies every path goes through (AGORA_UP_NETFAULTS=1,
#        scripts/toxiproxy.sh): latency with jitter, packet loss, a bandwidth cap, resets, a
#        blackhole, partitions both ways and one way, one instance from everything;
#        pauses (SIGSTOP past their timeouts, then SIGCONT) of the PostgreSQL primary, the
#        busiest Kafka node, the Consul leader and a consumer holding partitions;
#        a gateway's clock 5 minutes ahead and behind (libfaketime);
#   5. `agora reconcile`: every accepted order is in order-service's database and PAID or
#      CANCELLED; each PAID order has one successful payment, one debit and its stock
#      committed; each CANCELLED one cost nothing; wallets match their ledgers; stock is the
#      stock before minus the units PAID; no outbox row unpublished; the dead-letter topics
#      empty. Then `agora check-history` over what every client was told (loadgen --history):
#      no acknowledged order lost or changed, none moving backwards, customers reading their
#      own writes, no phantom order, no double charge, wallets and stock that add up. Any
#      broken promise or anomaly fails the run.
#
# The figures are printed at the end, with a table of the faults: for each, the requests sent
# in its window (from the fault to 10 s after the stack was ready again, or to the next fault
# if that came first), the share served
# (answered, 4xx included, after the client's retries), p99 latency, the longest wait for an
# accepted order (from the fault, or between two: how long writes took to succeed again), the
# time until the stack was ready again, and the history's anomalies in the window. Replicated,
# every masked fault's window must be served at 99.9 % or more, else the run fails (a degraded
# one, a whole role cut off from its database, lists what went unserved). The generator's and
# the reconciliation's JSON, the history, every operation's outcome, the timeline of faults and
# every log stay in $AGORA_CACHE/chaos/<time>/. The stack is purged, and the network healed,
# when the run ends, however it ends.
#
# Usage: scripts/chaos.sh [--quick]
#   --quick   the part `make test` runs: payment-service killed twice mid-batch, the busiest
#             Kafka node and the PostgreSQL primary killed (single: Kafka stopped and started,
#             PostgreSQL restarted), the hung backend, the gateway restarted, order-service's
#             database path 200 ± 50 ms slower, product-service-2 partitioned from everything, a
#             payment-service consumer and the PostgreSQL primary paused past their timeouts,
#             gateway-2's clock 5 minutes ahead; at a lower rate (about five minutes on the
#             debug build)
#
# Environment:
#   AGORA_CACHE         cache root (default: $HOME/.cache/agora)
#   AGORA_CHAOS_BIN     the agora binary to run (default: build the release one)
#   AGORA_CHAOS_RATE    requests per second offered, half of them orders (default: 40; quick 20)
#   AGORA_CHAOS_PAUSE   seconds of steady load between faults (default: 6; quick 3)
#   AGORA_CHAOS_KEEP    1 = leave the stack running afterwards (scripts/up.sh with
#                       AGORA_UP_INSTANCE=chaos stops it)
#   AGORA_UP_TOPOLOGY   ha (default) or single: the stack's topology (scripts/up.sh)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"

QUICK=false
case "${1:-}" in
  --quick) QUICK=true ;;
  "") ;;
  *) awk '/^# Usage:/ { on = 1 } /^# Environment:/ { exit } on { sub(/^# ?/, ""); print }' "$0" >&2; exit 2 ;;
esac

TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$CACHE_DIR/target}")"
OUT_DIR="$CACHE_DIR/chaos/$(date -u +%Y%m%dT%H%M%SZ)$($QUICK && echo -quick || true)"
if $QUICK; then RATE="${AGORA_CHAOS_RATE:-20}" PAUSE="${AGORA_CHAOS_PAUSE:-3}"; else
  RATE="${AGORA_CHAOS_RATE:-40}" PAUSE="${AGORA_CHAOS_PAUSE:-6}"
fi
for number in "$RATE" "$PAUSE"; do
  [[ "$number" =~ ^[0-9]+$ ]] || die "AGORA_CHAOS_RATE and AGORA_CHAOS_PAUSE are whole numbers; got '$number'"
done
# The gateway's deadline, and how long the hung backend stays hung (past it).
DEADLINE_MS=3000
HANG_SECS=5

INSTANCE=chaos
UP_DIR="$CACHE_DIR/up/$INSTANCE"
export AGORA_UP_INSTANCE="$INSTANCE" AGORA_UP_FREE_PORTS=1
export AGORA_PG_INSTANCE="$INSTANCE" AGORA_PG_DURABLE=1 AGORA_KAFKA_INSTANCE="$INSTANCE"
export AGORA_CONSUL_INSTANCE="$INSTANCE" AGORA_JAEGER_INSTANCE="$INSTANCE" AGORA_TOXIPROXY_INSTANCE="$INSTANCE"
# Every path of the services through a proxy, for the network faults.
export AGORA_UP_NETFAULTS=1
export AGORA_PG_CLUSTER="$INSTANCE" AGORA_KAFKA_CLUSTER="$INSTANCE" AGORA_CONSUL_CLUSTER="$INSTANCE"
TOPOLOGY="${AGORA_UP_TOPOLOGY:-ha}"
export AGORA_UP_TOPOLOGY="$TOPOLOGY"
[[ "$TOPOLOGY" == ha || "$TOPOLOGY" == single ]] || die "AGORA_UP_TOPOLOGY must be ha or single, not '$TOPOLOGY'"
# The share of each fault's window that must be served, replicated.
GOAL=99.9
# One client address sends everything; the deadline makes the hung backend a quick 504.
export AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0 AGORA_REQUEST_TIMEOUT_MS="$DEADLINE_MS"
# Unpaid orders are cancelled after 2 minutes, looked for every 5 s: shorter than the 5 minutes
# a skewed clock is off, so a sweeper that trusted its own clock would cancel good orders.
export AGORA_PAYMENT_TIMEOUT_SECS=120 AGORA_SWEEP_INTERVAL_SECS=5
# Consul checks each instance every 2 s (5 s by default): the stack is seen ready again that
# much sooner after each fault, and an instance that died leaves the healthy set sooner.
export AGORA_CONSUL_CHECK_INTERVAL_SECS="${AGORA_CONSUL_CHECK_INTERVAL_SECS:-2}"
# A reservation whose order was never written (the client gave up on its key after a fault:
# its retries are budgeted) is released 170 s after it was made, above the payment timeout and
# the events' delays, so that the reconciliation (which waits up to 240 s) finds no stock held
# by a fault. The default is an hour.
export AGORA_RESERVATION_TTL_SECS=170

mkdir -p "$OUT_DIR"
log "results in $OUT_DIR"

if [[ -n "${AGORA_CHAOS_BIN:-}" ]]; then
  BIN="$(realpath -m "$AGORA_CHAOS_BIN")"
else
  BIN="$TARGET_DIR/release/agora"
  log "building agora (release)"
  bash "$SCRIPT_DIR/build-deps.sh"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked -p agora --bin agora) \
    || die "cargo build failed"
fi
[[ -x "$BIN" ]] || die "no agora binary at $BIN"
export AGORA_UP_BIN="$BIN"

up() { bash "$SCRIPT_DIR/up.sh" "$@"; }

LOADGEN_PID=""
PAUSED=()
finish() {
  local status=$?
  if [[ -n "$LOADGEN_PID" ]] && kill -0 "$LOADGEN_PID" 2>/dev/null; then kill -KILL "$LOADGEN_PID" 2>/dev/null || true; fi
  # Resume what an interrupted pause left stopped, and heal the network.
  if ((${#PAUSED[@]})); then kill -CONT "${PAUSED[@]}" 2>/dev/null || true; fi
  bash "$SCRIPT_DIR/toxiproxy.sh" heal all >>"$OUT_DIR/up.log" 2>&1 || true
  # Resume a backend left hung by an interrupted run, so it can be stopped.
  if [[ -f "$UP_DIR/pids/product-service.pid" ]]; then kill -CONT "$(cat "$UP_DIR/pids/product-service.pid")" 2>/dev/null || true; fi
  if [[ -d "$UP_DIR/logs" ]]; then cp -r "$UP_DIR/logs" "$OUT_DIR/" 2>/dev/null || true; fi
  if [[ "${AGORA_CHAOS_KEEP:-0}" == 1 ]]; then
    log "the stack stays up (AGORA_CHAOS_KEEP=1); stop it with: AGORA_UP_INSTANCE=$INSTANCE bash scripts/up.sh purge"
  else
    log "purging the stack"
    up purge >>"$OUT_DIR/up.log" 2>&1 || log "purging failed; see $OUT_DIR/up.log"
  fi
  exit "$status"
}
trap finish EXIT

# --- The stack, its products and their stock --------------------------------

# A stack of an earlier interrupted run would hold its orders: start from nothing.
up purge >>"$OUT_DIR/up.log" 2>&1 || true
log "starting the stack (log: $OUT_DIR/up.log)"
up up >>"$OUT_DIR/up.log" 2>&1 || { tail -n 30 "$OUT_DIR/up.log" >&2; die "the stack did not start"; }
GATEWAY="http://127.0.0.1:$(sed -n 's/^gateway=//p' "$UP_DIR/ports" | tail -n 1)"
if [[ "$TOPOLOGY" == ha ]]; then
  PG_CLUSTER_URL="$(bash "$SCRIPT_DIR/pg-cluster.sh" url)"
  BROKERS="$(bash "$SCRIPT_DIR/kafka-cluster.sh" brokers)"
else
  PG_BASE="$(bash "$SCRIPT_DIR/postgres.sh" url)"
  PG_BASE="${PG_BASE%/postgres}"
  BROKERS="$(bash "$SCRIPT_DIR/kafka.sh" url)"
fi
# database_url DB: a service's database (replicated: both servers, for the primary).
database_url() {
  if [[ "$TOPOLOGY" == ha ]]; then printf '%s\n' "${PG_CLUSTER_URL/\/postgres\?/\/$1?}"; else printf '%s/%s\n' "$PG_BASE" "$1"; fi
}
ADMIN_EMAIL="${AGORA_ADMIN_EMAIL:-admin@agora.local}"
ADMIN_PASSWORD="$(cat "$UP_DIR/secrets/admin-password")"

reconcile() {
  "$BIN" reconcile --order-db "$(database_url agora_order)" --payment-db "$(database_url agora_payment)" \
    --product-db "$(database_url agora_product)" --user-db "$(database_url agora_user)" "$@"
}

client() { "$BIN" client --gateway "$GATEWAY" "$@"; }
# The password through the environment, out of the process list.
token="$(AGORA_CLIENT_PASSWORD="$ADMIN_PASSWORD" client --get accessToken sign-in --email "$ADMIN_EMAIL")" \
  || die "cannot sign in as $ADMIN_EMAIL"
# Four products that last, and one that sells out mid-run (its later orders are cancelled).
SCARCE_STOCK=$($QUICK && echo 25 || echo 80)
for spec in "chaos tea:150:1000000" "chaos pot:420:1000000" "chaos cup:275:1000000" "chaos tray:990:1000000" \
  "chaos scarce print:1250:$SCARCE_STOCK"; do
  IFS=: read -r name cents stock <<<"$spec"
  id="$(client --token "$token" --get id create-product --name "$name" --description "For the chaos run." \
    --price-minor "$cents" --stock "$stock")" || die "cannot create the product '$name'"
  if [[ "$name" == *scarce* ]]; then SCARCE_ID="$id"; fi
done
reconcile --save-stock "$OUT_DIR/stock-before.json"

# --- Load -------------------------------------------------------------------

# Each customer's wallet runs dry part-way, so later orders are declined and cancelled:
# both ends of the saga happen under the faults.
TOP_UP_MINOR=$($QUICK && echo 40000 || echo 150000)

# Runs until stopped (SIGTERM ends the sending, then it follows the placed orders).
"$BIN" loadgen --gateway "$GATEWAY" -r "$RATE" -d 1h --mix browse=20,product=20,order=40,cancel=10,read=10 \
  --users 16 --top-up-minor "$TOP_UP_MINOR" --retries 8 --timeout 10s --settle-timeout 120s \
  --accepted-orders "$OUT_DIR/accepted.txt" --outcomes "$OUT_DIR/outcomes.txt" --history "$OUT_DIR/history.jsonl" \
  --json --quiet \
  >"$OUT_DIR/loadgen.json" 2>"$OUT_DIR/loadgen.log" &
LOADGEN_PID=$!
# The customers are signed up before the first order; faults wait for that.
for _ in $(seq 1 120); do
  [[ -s "$OUT_DIR/accepted.txt" ]] && break
  kill -0 "$LOADGEN_PID" 2>/dev/null || { cat "$OUT_DIR/loadgen.log" >&2; die "agora loadgen exited"; }
  sleep 0.5
done
[[ -s "$OUT_DIR/accepted.txt" ]] || die "no order was accepted in the first minute (see $OUT_DIR/loadgen.log)"
log "load running: $RATE requests/s at $GATEWAY (pid $LOADGEN_PID)"

# --- Faults -----------------------------------------------------------------

START=$SECONDS
FAULTS=0
timeline() { printf '%4ss  %s\n' "$((SECONDS - START))" "$*" | tee -a "$OUT_DIR/timeline" >&2; }

now_ms() { date +%s%3N; }
# A fault's window for the table: fault_begins NAME [EXPECT], then fault_recovered once the
# stack is ready again (recover calls it); each line of $OUT_DIR/faults is START_MS READY_MS
# EXPECT NAME. EXPECT is `masked` (the default: replication must hide the fault, the window is
# held to the goal) or `degraded` (a whole role cut off from what it needs: the table says
# what failed, and why that is right, in docs/reliability.md).
FAULT_NAME="" FAULT_START="" FAULT_EXPECT=""
fault_begins() { FAULT_NAME="$1" FAULT_START="$(now_ms)" FAULT_EXPECT="${2:-masked}"; }
fault_recovered() {
  [[ -n "$FAULT_NAME" ]] || return 0
  printf '%s %s %s %s\n' "$FAULT_START" "$(now_ms)" "$FAULT_EXPECT" "$FAULT_NAME" >>"$OUT_DIR/faults"
  FAULT_NAME=""
}

pid_of() { cat "$UP_DIR/pids/$1.pid"; }

# Restarts whatever is not running and waits until the gateway reports every service ready
# and Consul lists every instance passing (a component that runs is taken as ready: that
# end-to-end check is the one that counts, and Kafka's own check starts a JVM per node).
recover() {
  local began=$SECONDS
  AGORA_RUNNING_IS_READY=1 up up >>"$OUT_DIR/up.log" 2>&1 || { tail -n 30 "$OUT_DIR/up.log" >&2; die "the stack did not recover after: $1"; }
  fault_recovered
  timeline "  ready again after $((SECONDS - began))s"
}

steady() {
  kill -0 "$LOADGEN_PID" 2>/dev/null || { cat "$OUT_DIR/loadgen.log" >&2; die "agora loadgen exited during the faults"; }
  sleep "$PAUSE"
}

wait_gone() {
  local pid="$1" i
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  die "process $pid did not exit"
}

kill_role() {
  local name="$1" pid
  pid="$(pid_of "$name")"
  timeline "SIGKILL $name (pid $pid)"
  fault_begins "SIGKILL $name"
  kill -KILL "$pid"
  wait_gone "$pid"
  FAULTS=$((FAULTS + 1))
  recover "SIGKILL $name"
}

# Stops an infrastructure component, keeps it down for $2 seconds, and starts it on the
# ports it had (the services know it there).
outage() {
  local component="$1" secs="$2" began
  local -a ports=()
  case "$component" in
    kafka) ports=(AGORA_KAFKA_PORT="${BROKERS##*:}" AGORA_KAFKA_CONTROLLER_PORT=0) ;;
    postgres) ports=(AGORA_PG_PORT="$(bash "$SCRIPT_DIR/postgres.sh" url | sed 's|.*:\([0-9]*\)/.*|\1|')") ;;
    consul)
      ports=(AGORA_CONSUL_HTTP_PORT="$(bash "$SCRIPT_DIR/consul.sh" addr | sed 's/.*://')" AGORA_CONSUL_SERVER_PORT=0
        AGORA_CONSUL_SERF_LAN_PORT=0 AGORA_CONSUL_SERF_WAN_PORT=0 AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1) ;;
  esac
  timeline "stop $component for ${secs}s"
  fault_begins "$component stopped ${secs} s"
  bash "$SCRIPT_DIR/$component.sh" stop >>"$OUT_DIR/up.log" 2>&1
  sleep "$secs"
  began=$SECONDS
  env "${ports[@]}" bash "$SCRIPT_DIR/$component.sh" start >>"$OUT_DIR/up.log" 2>&1 \
    || { tail -n 30 "$OUT_DIR/up.log" >&2; die "$component did not start again"; }
  timeline "  $component started again in $((SECONDS - began))s"
  FAULTS=$((FAULTS + 1))
  recover "$component outage"
}

# One product-service instance hung (SIGSTOP) past the gateway's deadline: product reads
# through the gateway must each come back by the deadline, not hang: a 504 from the hung
# instance, or a 200 from another one; then it resumes.
hang_backend() {
  local pid code took answers="" i
  pid="$(pid_of product-service)"
  timeline "SIGSTOP product-service (pid $pid) for ${HANG_SECS}s"
  fault_begins "SIGSTOP product-service ${HANG_SECS} s"
  kill -STOP "$pid"
  local began=$SECONDS
  for i in 1 2 3; do
    code="$(curl -sS -o "$OUT_DIR/hung-reply.json" -w '%{http_code} %{time_total}' --max-time 15 "$GATEWAY/v1/products/$SCARCE_ID" || true)"
    took="${code#* }"
    code="${code%% *}"
    answers+="$code in ${took}s; "
    [[ "$code" == 504 || "$code" == 200 ]] || { kill -CONT "$pid"; die "a read while product-service hung answered $code, not 504 or 200"; }
    python3 -c "import sys; sys.exit(float(sys.argv[1]) > $DEADLINE_MS / 1000 + 1)" "$took" \
      || { kill -CONT "$pid"; die "a read while product-service hung took ${took}s, past the ${DEADLINE_MS} ms deadline"; }
  done
  sleep $((HANG_SECS - (SECONDS - began) > 0 ? HANG_SECS - (SECONDS - began) : 0))
  kill -CONT "$pid"
  timeline "  SIGCONT product-service; the reads during the hang answered ${answers% }"
  FAULTS=$((FAULTS + 1))
  recover "the hung backend"
}

restart_gateway() {
  local pid
  pid="$(pid_of gateway)"
  timeline "SIGTERM gateway (pid $pid): drain and restart"
  fault_begins "SIGTERM gateway (drain)"
  kill -TERM "$pid"
  wait_gone "$pid"
  FAULTS=$((FAULTS + 1))
  recover "the gateway restart"
}

# A member of a replicated component SIGKILLed (kill_member SCRIPT N WHAT); recover starts it
# again where it was.
kill_member() {
  local script="$1" n="$2" what="$3"
  timeline "SIGKILL $what (member $n of $script)"
  fault_begins "SIGKILL $what"
  bash "$SCRIPT_DIR/$script.sh" kill "$n" >>"$OUT_DIR/up.log" 2>&1
  FAULTS=$((FAULTS + 1))
  recover "SIGKILL $what"
}

kill_kafka_leader() { kill_member kafka-cluster "$(bash "$SCRIPT_DIR/kafka-cluster.sh" busiest)" "the Kafka node leading most partitions"; }
kill_pg_primary() { kill_member pg-cluster "$(bash "$SCRIPT_DIR/pg-cluster.sh" primary)" "the PostgreSQL primary"; }
kill_consul_leader() { kill_member consul-cluster "$(bash "$SCRIPT_DIR/consul-cluster.sh" leader)" "the Consul leader"; }

# A whole "node" lost at once: one instance of every role and a Kafka node.
kill_node() {
  local name pids=()
  timeline "SIGKILL a node: one instance of every role and Kafka node 2"
  fault_begins "SIGKILL a node (every role once, a Kafka node)"
  for name in gateway user-service product-service order-service payment-service; do pids+=("$(pid_of "$name")"); done
  kill -KILL "${pids[@]}"
  bash "$SCRIPT_DIR/kafka-cluster.sh" kill 2 >>"$OUT_DIR/up.log" 2>&1
  for name in "${pids[@]}"; do wait_gone "$name"; done
  FAULTS=$((FAULTS + 1))
  recover "the node loss"
}

# --- Network faults and pauses ------------------------------------------------

toxiproxy() { bash "$SCRIPT_DIR/toxiproxy.sh" "$@" >>"$OUT_DIR/up.log" 2>&1; }

# net_fault SECS EXPECT WHAT KIND [ARG...] -- GLOB...: fault KIND on the proxies GLOB...
# (scripts/toxiproxy.sh) for SECS seconds, then healed.
net_fault() {
  local secs="$1" expect="$2" what="$3" glob
  shift 3
  local -a fault=()
  while [[ "$1" != -- ]]; do fault+=("$1"); shift; done
  shift
  timeline "$what: ${fault[*]} for ${secs}s"
  fault_begins "$what (${fault[*]})" "$expect"
  for glob in "$@"; do toxiproxy fault "$glob" "${fault[@]}" || die "cannot put ${fault[*]} on $glob"; done
  sleep "$secs"
  toxiproxy heal all || die "cannot heal the network"
  timeline "  healed"
  FAULTS=$((FAULTS + 1))
  recover "$what"
}

# The pids of a process and everything under it.
process_tree() {
  local pid
  for pid in "$@"; do
    printf '%s\n' "$pid"
    # shellcheck disable=SC2046 # one child pid per word
    process_tree $(pgrep -P "$pid" || true)
  done
}

# pause SECS WHAT PID...: SIGSTOP the processes (and their children) for SECS seconds, as a
# VM paused or a GC that never ends would, then SIGCONT: what the paused one does when it
# wakes (a former leader, a consumer whose partitions moved on) is the test.
pause() {
  local secs="$1" what="$2"
  shift 2
  mapfile -t PAUSED < <(process_tree "$@")
  timeline "SIGSTOP $what (${#PAUSED[@]} processes) for ${secs}s"
  fault_begins "SIGSTOP $what ${secs} s"
  kill -STOP "${PAUSED[@]}"
  sleep "$secs"
  kill -CONT "${PAUSED[@]}" 2>/dev/null || true
  PAUSED=()
  timeline "  SIGCONT $what"
  FAULTS=$((FAULTS + 1))
  recover "the pause of $what"
}

# The processes of member N of a replicated component: its daemon (found by the member's
# directory on its command line) and, for PostgreSQL, Patroni's heartbeat.
member_pids() {
  case "$1" in
    pg) pgrep -f "$CACHE_DIR/patroni/$INSTANCE-$2/" || true
      pgrep -f "agora-patroni-$INSTANCE-$2\$" || true ;;
    kafka) pgrep -f "$CACHE_DIR/kafka/instances/$INSTANCE-$2/" || true ;;
    consul) pgrep -f "$CACHE_DIR/consul/$INSTANCE-$2/" || true ;;
  esac
}

pause_pg_primary() {
  local n
  n="$(bash "$SCRIPT_DIR/pg-cluster.sh" primary)"
  # shellcheck disable=SC2046 # one pid per word
  pause 12 "the PostgreSQL primary (member $n: Patroni, PostgreSQL, heartbeat)" $(member_pids pg "$n")
}
pause_kafka_leader() {
  local n
  n="$(bash "$SCRIPT_DIR/kafka-cluster.sh" busiest)"
  # shellcheck disable=SC2046
  pause 12 "the Kafka node leading most partitions (node $n)" $(member_pids kafka "$n")
}
pause_consul_leader() {
  local n
  n="$(bash "$SCRIPT_DIR/consul-cluster.sh" leader)"
  # shellcheck disable=SC2046
  pause 10 "the Consul leader (server $n)" $(member_pids consul "$n")
}
# skew NAME OFFSET SECS: process NAME restarted with its wall clock OFFSET off (libfaketime)
# for SECS seconds under load, then restarted on the true time. What it stamps, compares or
# signs by the clock must stay right: order ages (the sweeper), tokens, the saga's times.
skew() {
  local name="$1" offset="$2" secs="$3" pid
  pid="$(pid_of "$name")"
  timeline "clock of $name $offset (restarted under libfaketime) for ${secs}s"
  fault_begins "clock of $name $offset"
  kill -TERM "$pid"
  wait_gone "$pid"
  AGORA_UP_FAKETIME="$name=$offset" up up >>"$OUT_DIR/up.log" 2>&1 || { tail -n 30 "$OUT_DIR/up.log" >&2; die "$name did not start with a skewed clock"; }
  pid="$(pid_of "$name")"
  grep -qz "^FAKETIME=$offset\$" "/proc/$pid/environ" || die "$name (pid $pid) does not run with FAKETIME=$offset"
  sleep "$secs"
  timeline "  $name's last log line: $(tail -n 1 "$UP_DIR/logs/$name.log" | cut -c1-40 | sed 's/\x1b\[[0-9;]*m//g')"
  kill -TERM "$pid"
  wait_gone "$pid"
  FAULTS=$((FAULTS + 1))
  recover "the skewed clock of $name"
}

# The Kafka node leading the most partitions cut off from the other nodes (both ways: their
# replication and controller paths to it and its to them); clients still reach it.
partition_kafka_node() {
  local n
  n="$(bash "$SCRIPT_DIR/kafka-cluster.sh" busiest)"
  net_fault 10 masked "Kafka node $n from the others" partition -- "kafka.$n-*" "kafka.*-$n.*"
}

# A consumer that holds partitions, stopped past its group session (10 s): the group gives
# its partitions to the other instance; when it wakes, its work in hand must not apply twice.
pause_consumer() { pause 15 "payment-service (a consumer holding partitions)" "$(pid_of payment-service)"; }

steady
kill_role payment-service
sleep 1 # back, and picking up the orders that waited: kill it again in the middle of that
kill_role payment-service
steady
if ! $QUICK; then
  kill_role order-service
  steady
fi
if [[ "$TOPOLOGY" == ha ]]; then
  kill_kafka_leader
  steady
  kill_pg_primary
  steady
else
  outage kafka 8
  steady
  outage postgres 3
  steady
fi
hang_backend
steady
restart_gateway
steady
# The network, quick: a slow path to the database, and one instance cut off from everything.
net_fault 6 masked "order-service to PostgreSQL" latency 200 50 -- 'order-service*.db.*'
steady
net_fault 8 masked "product-service-2 from everything" partition -- 'product-service-2.*'
steady
# A paused consumer, and a paused PostgreSQL primary that wakes after its standby was promoted.
pause_consumer
steady
if [[ "$TOPOLOGY" == ha ]]; then
  pause_pg_primary
  steady
fi
# Clocks: the gateway checks the tokens user-service signed, by its own clock. The services
# are not skewed this way: librdkafka's timed waits break under libfaketime (a skewed service
# hangs on shutdown and cannot get an idempotent producer id; docs/reliability.md), so their
# wall-clock uses were moved to the database's clock and are tested there.
skew gateway-2 +5m 6
steady
if ! $QUICK; then
  skew gateway-2 -5m 6
  steady
  net_fault 10 masked "payment-service to PostgreSQL" loss 10 -- 'payment-service*.db.*'
  steady
  # Every instance of a role throttled, or cut off from its database: nothing is left to
  # fail over to, so the role's calls fail (degraded), and the table says which.
  net_fault 10 degraded "the gateway to product-service" bandwidth 8 -- 'product-service*.in'
  steady
  net_fault 8 degraded "user-service to PostgreSQL" reset -- 'user-service*.db.*'
  steady
  net_fault 8 masked "callers to order-service" oneway -- 'order-service.in'
  steady
  net_fault 8 masked "order-service to product-service" blackhole -- 'product-service.in'
  steady
  net_fault 10 masked "order-service to Consul" partition -- 'order-service*.consul'
  steady
  net_fault 8 degraded "product-service to PostgreSQL" partition -- 'product-service*.db.*'
  steady
  if [[ "$TOPOLOGY" == ha ]]; then
    # Kafka's paths (kafka-cluster.sh, "Proxied"): a role slowed, an instance cut off (its
    # group's other member takes its partitions), and the busiest node cut off from the others
    # (fenced by the controllers; its partitions get new leaders).
    net_fault 8 masked "order-service to Kafka" latency 200 50 -- 'order-service*.kafka.*'
    steady
    net_fault 10 masked "payment-service to Kafka" partition -- 'payment-service.kafka.*'
    steady
    partition_kafka_node
    steady
    pause_kafka_leader
    steady
    pause_consul_leader
    steady
  fi
  kill_role product-service
  steady
  kill_role user-service
  steady
  kill_role gateway
  steady
  if [[ "$TOPOLOGY" == ha ]]; then
    kill_consul_leader
    steady
    kill_node
    steady
  else
    outage consul 3
    steady
  fi
fi
steady
timeline "faults over ($FAULTS); stopping the load"

# --- Reconciliation ---------------------------------------------------------

kill -TERM "$LOADGEN_PID"
if ! wait "$LOADGEN_PID"; then
  cat "$OUT_DIR/loadgen.log" >&2
  die "agora loadgen failed"
fi
LOADGEN_PID=""

log "reconciling"
set +e
reconcile --accepted "$OUT_DIR/accepted.txt" --stock-before "$OUT_DIR/stock-before.json" \
  --kafka-brokers "$BROKERS" --settle-secs 240 | tee "$OUT_DIR/reconcile.txt"
reconciled=${PIPESTATUS[0]}
set -e
reconcile --accepted "$OUT_DIR/accepted.txt" --stock-before "$OUT_DIR/stock-before.json" \
  --kafka-brokers "$BROKERS" --settle-secs 0 --json >"$OUT_DIR/reconcile.json" 2>/dev/null || true
# What every client was told, checked against itself and the final state it read.
log "checking the clients' history"
"$BIN" check-history "$OUT_DIR/history.jsonl" >"$OUT_DIR/history.txt" 2>&1 && checked=0 || checked=$?
head -n 40 "$OUT_DIR/history.txt"
"$BIN" check-history "$OUT_DIR/history.jsonl" --json >"$OUT_DIR/history.json" 2>/dev/null || true

set +e
python3 - "$OUT_DIR" "$FAULTS" "$SCARCE_STOCK" "$TOPOLOGY" "$GOAL" <<'EOF' | tee "$OUT_DIR/summary"
import json, sys
out, faults, scarce, topology, goal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
load = json.load(open(f"{out}/loadgen.json"))
rec = json.load(open(f"{out}/reconcile.json"))
history = json.load(open(f"{out}/history.json"))
# Each history operation's wall-clock span (the history's times count from its first line).
entries = {}
origin = None
for line in open(f"{out}/history.jsonl"):
    entry = json.loads(line)
    if entry["f"] == "run":
        origin = entry["unix_ms"]
    entries[entry["op"]] = entry
def wall(op):
    entry = entries.get(op)
    return None if entry is None or origin is None else (origin + entry["start"], origin + entry["end"])
sent = sum(route["count"] for route in load["routes"] if not route["route"].endswith("(settled?)"))
codes = load["status"]
server_errors = sum(n for code, n in codes.items() if code.startswith("5"))
no_answer = sum(n for code, n in codes.items() if not code[0].isdigit())
print()
print(f"chaos run: {faults} faults under load")
print(f"  requests sent                  {sent}  (answers by status, with the follow-ups after the run: {codes})")
print(f"  5xx / no answer during faults  {server_errors} / {no_answer}  (after the client's retries)")
print(f"  served                         {load['served'] * 100:.3f} %  ({load['retries']} retries after {load['retried']}; {load['retries_refused']} not allowed by the budget)")
print(f"  orders accepted (201)          {rec['accepted']}")
print(f"  orders PAID / CANCELLED        {rec['paid']} / {rec['cancelled']}  (of {rec['orders']} in order-service; {rec['refunded']} payments refunded)")
print(f"  orders lost                    {rec['lost']}")
print(f"  orders unsettled               {rec['unsettled']}")
print(f"  double charges                 {rec['double_charges']}")
print(f"  PAID not charged exactly once  {rec['paid_not_charged']}")
print(f"  CANCELLED that cost something  {rec['cancelled_but_charged']}")
print(f"  wallets off their ledger       {rec['wallet_mismatches']}")
print(f"  stock mismatches               {rec['stock_mismatches']}  ({rec['products_checked']} products; one of {scarce} units sold out)")
print(f"  unpublished events             {rec['unpublished_events']}")
print(f"  dead letters                   {rec['dead_letters']}")
counts = history["counts"]
print(f"  history anomalies              {len(history['verdict']['anomalies'])}  ({', '.join(f'{k} {n}' for k, n in counts.items()) or 'none'}; "
      f"{history['verdict']['operations']} operations, {history['verdict']['observations']} observations compared)")
for code, message in load["error_samples"].items():
    print(f"  first {code}: {message[:160]}")

# Each fault's window: operations that began between the fault and 10 s after the stack was
# ready again or the next fault, whichever came first (the follow-ups of placed orders after
# the run are not in it).
ops = []
for line in open(f"{out}/outcomes.txt"):
    end, latency, route, served, status = line.split()
    if "settled" in route:
        continue
    ops.append((int(end) - float(latency), float(latency), route, served == "1", status))
short = []
print()
print(f"  {'fault':<62} {'requests':>8} {'served':>9} {'p99 ms':>8} {'order gap':>10} {'recovered':>9} {'anomalies':>9}")
faults = [line.split(maxsplit=3) for line in open(f"{out}/faults")]
for i, (start, ready, expect, name) in enumerate(faults):
    start, ready, name = int(start), int(ready), name.strip()
    # A window ends 10 s after the stack was ready again, or where the next fault begins:
    # what the next fault does is not counted against this one.
    end = min([ready + 10_000] + [int(later[0]) for later in faults[i + 1:i + 2]])
    window = [op for op in ops if start <= op[0] <= end]
    if not window:
        continue
    served = sum(op[3] for op in window) / len(window) * 100
    # The checker's anomalies whose operations overlap the window.
    found = 0
    for anomaly in history["verdict"]["anomalies"]:
        spans = [wall(op) for op in anomaly["ops"]]
        if any(span and span[0] <= end and span[1] >= start for span in spans):
            found += 1
    failed = {}
    for op in window:
        if not op[3]:
            failed[op[2]] = failed.get(op[2], 0) + 1
    latencies = sorted(op[1] for op in window)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    # Writes' longest gap: from the fault to the first accepted order, or between two
    # accepted orders, in the window (the time writes took to succeed again).
    accepted = sorted(op[0] + op[1] for op in ops if op[2] == "POST_/v1/orders" and op[4] == "201"
                      and start <= op[0] + op[1] <= end)
    gaps = [b - a for a, b in zip([start] + accepted, accepted)]
    gap = f"{max(gaps) / 1000:.1f} s" if gaps else "none"
    label = name if expect == "masked" else name + " [degraded]"
    print(f"  {label:<62} {len(window):>8} {served:>8.3f}% {p99:>8.0f} {gap:>10} {(ready - start) / 1000:>8.1f}s {found:>9}")
    if failed and expect == "degraded":
        print(f"  {'':<4}unserved: " + ", ".join(f"{route.replace('_', ' ')} {n}" for route, n in sorted(failed.items())))
    if served < goal and expect == "masked":
        short.append(f"{name}: {served:.3f} %")
if not rec["accepted"] or not rec["paid"]:
    sys.exit("no order was accepted or paid: the run proved nothing")
if topology == "ha" and short:
    sys.exit(f"served under the goal of {goal} % during: " + "; ".join(short))
EOF
summarised=${PIPESTATUS[0]}
set -e
[[ "$reconciled" == 0 ]] || die "the reconciliation found broken promises (above; details in $OUT_DIR)"
[[ "$checked" == 0 ]] || die "the history checker found anomalies (above; details in $OUT_DIR/history.txt)"
[[ "$summarised" == 0 ]] || die "the run fell short (above; details in $OUT_DIR)"
log "every promise kept; details in $OUT_DIR"
