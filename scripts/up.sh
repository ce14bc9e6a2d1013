#!/usr/bin/env bash
# The distributed stack on one machine: PostgreSQL (one database per service), Kafka, Consul
# and Jaeger, each run by its script under scripts/, plus the gateway and the four services
# as separate `agora <role>` processes (release build) on Postgres + Kafka, all on
# 127.0.0.1, on the components' usual ports where they are free.
#
# Usage: scripts/up.sh {up|down|logs [NAME...]|status|purge}
#
#   up      build agora (release), start the infrastructure, then the services and the
#           gateway; wait until the gateway reports every service ready; print the URLs.
#           Whatever already runs is left running.
#   down    stop the gateway, the services and the infrastructure; no process is left
#           behind. The data (databases, topics, secrets) stays for the next `up`.
#   logs    follow the logs: all of them, or the named ones (gateway, user-service,
#           product-service, order-service, payment-service, postgres, kafka, consul, jaeger)
#   status  what runs, and where
#   purge   `down`, then delete the stack's data: databases, topics, secrets and logs
#
# The services find each other at the addresses given at start (static discovery); every
# service gets its own database in the stack's PostgreSQL (agora_user, agora_product, ...)
# and the events go through the stack's Kafka. The admin password and the token secret are
# generated once into $AGORA_CACHE/up/secrets.
#
# Environment:
#   AGORA_CACHE          cache root (default: $HOME/.cache/agora)
#   AGORA_UP_INSTANCE    the stack's name: its files are in $AGORA_CACHE/up/NAME and its
#                        PostgreSQL, Kafka, Consul and Jaeger are the instances of that name
#                        (default: up)
#   AGORA_UP_FREE_PORTS  1 = take free ports, not the usual ones (tests)   (default: 0)
#   AGORA_UP_BIN         run this agora binary instead of building the release one
#   CARGO_TARGET_DIR     where cargo builds (default: $AGORA_CACHE/target)
#   AGORA_ADMIN_EMAIL    the admin account (default: admin@agora.local)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"

log() { printf '[up] %s\n' "$*" >&2; }
die() { printf '[up] error: %s\n' "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

# --- Configuration ----------------------------------------------------------

CACHE_DIR="$(realpath -m "${AGORA_CACHE:-$HOME/.cache/agora}")"
INSTANCE="${AGORA_UP_INSTANCE:-up}"
[[ "$INSTANCE" =~ ^[a-zA-Z0-9_-]+$ ]] || die "AGORA_UP_INSTANCE must be letters, digits, - or _"
UP_DIR="$CACHE_DIR/up/$INSTANCE"
PORTS_FILE="$UP_DIR/ports"      # role=port of the running processes
SECRETS_DIR="$UP_DIR/secrets"
LOG_DIR="$UP_DIR/logs"
PID_DIR="$UP_DIR/pids"
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$CACHE_DIR/target}")"
AGORA_BIN="$(realpath -m "${AGORA_UP_BIN:-$TARGET_DIR/release/agora}")"
FREE_PORTS="${AGORA_UP_FREE_PORTS:-0}"
ADMIN_EMAIL="${AGORA_ADMIN_EMAIL:-admin@agora.local}"

# Every component script runs the stack's instance, beside any `dev` or `test` one.
export AGORA_PG_INSTANCE="$INSTANCE" AGORA_PG_DURABLE=1
export AGORA_KAFKA_INSTANCE="$INSTANCE" AGORA_CONSUL_INSTANCE="$INSTANCE" AGORA_JAEGER_INSTANCE="$INSTANCE"

# Services in start order (the gateway goes last), with their usual ports and databases.
SERVICES=(user-service product-service order-service payment-service)
declare -A USUAL_PORT=(
  [user-service]=50051 [product-service]=50052 [order-service]=50053 [payment-service]=50054
  [gateway]=8080
)
declare -A DATABASE=(
  [user-service]=agora_user [product-service]=agora_product
  [order-service]=agora_order [payment-service]=agora_payment
)
INFRA=(postgres kafka consul jaeger)

START_TIMEOUT_SECS=90
STOP_TIMEOUT_SECS=15  # more than a service's 10 s drain

# --- Helpers ----------------------------------------------------------------

# $1 if nothing uses it, else 0 (the component script then picks a free port, or keeps the
# one its running instance has).
usual() {
  if [[ "$FREE_PORTS" == 1 ]] || port_busy "$1"; then printf '0\n'; else printf '%s\n' "$1"; fi
}

# The port recorded for a running role.
role_port() {
  [[ -f "$PORTS_FILE" ]] || return 1
  sed -n "s/^$1=//p" "$PORTS_FILE" | tail -n 1
}

role_pid() {
  daemon_pid "$PID_DIR/$1.pid" "$AGORA_BIN $1"
}

# A secret generated once (mode 0600), printed.
secret() {
  local file="$SECRETS_DIR/$1"
  if [[ ! -s "$file" ]]; then
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file")
  fi
  cat "$file"
}

# Starts `agora ROLE` with VAR=VALUE... in its environment, unless it runs already.
start_role() {
  local role="$1"
  shift
  if role_pid "$role" >/dev/null; then
    log "$role already runs on 127.0.0.1:$(role_port "$role")"
    return 0
  fi
  local port
  port="$(usual "${USUAL_PORT[$role]}")"
  if [[ "$port" == 0 ]]; then port="$(free_port)"; fi
  DAEMON_TAKEN_PORTS+="$port "
  mkdir -p "$LOG_DIR" "$PID_DIR"
  # Secrets go through the environment, never the command line (which `ps` shows).
  daemon_launch "$PID_DIR/$role.pid" "$LOG_DIR/$role.log" \
    env AGORA_LISTEN="127.0.0.1:$port" AGORA_LOG_FORMAT=pretty "$@" "$AGORA_BIN" "$role"
  printf '%s=%s\n' "$role" "$port" >>"$PORTS_FILE"
  log "$role starting on 127.0.0.1:$port (pid $DAEMON_LAUNCHED_PID, log: $LOG_DIR/$role.log)"
}

gateway_url() {
  printf 'http://127.0.0.1:%s\n' "$(role_port gateway)"
}

# --- Subcommands ------------------------------------------------------------

cmd_up() {
  daemon_lock "$UP_DIR/.lock" 900

  if [[ -z "${AGORA_UP_BIN:-}" ]]; then
    log "building agora (release; the first build takes minutes)"
    (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked -p agora --bin agora) \
      || die "cargo build failed"
  fi
  [[ -x "$AGORA_BIN" ]] || die "no agora binary at $AGORA_BIN"

  AGORA_PG_PORT="$(usual 5432)" bash "$SCRIPT_DIR/postgres.sh" start
  bash "$SCRIPT_DIR/postgres.sh" create-db "${DATABASE[@]}"
  AGORA_KAFKA_PORT="$(usual 9092)" AGORA_KAFKA_CONTROLLER_PORT="$(usual 9093)" bash "$SCRIPT_DIR/kafka.sh" start
  # Consul's other listeners (server, serf) take free ports; DNS and gRPC are not used.
  AGORA_CONSUL_HTTP_PORT="$(usual 8500)" AGORA_CONSUL_SERVER_PORT=0 AGORA_CONSUL_SERF_LAN_PORT=0 \
    AGORA_CONSUL_SERF_WAN_PORT=0 AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1 \
    bash "$SCRIPT_DIR/consul.sh" start
  AGORA_JAEGER_UI_PORT="$(usual 16686)" AGORA_JAEGER_OTLP_GRPC_PORT="$(usual 4317)" \
    AGORA_JAEGER_OTLP_HTTP_PORT="$(usual 4318)" AGORA_JAEGER_QUERY_GRPC_PORT=0 AGORA_JAEGER_HEALTH_PORT=0 \
    bash "$SCRIPT_DIR/jaeger.sh" start

  local pg_base brokers otlp jwt_secret admin_password
  pg_base="$(bash "$SCRIPT_DIR/postgres.sh" url)"
  pg_base="${pg_base%/postgres}"
  brokers="$(bash "$SCRIPT_DIR/kafka.sh" url)"
  otlp="$(bash "$SCRIPT_DIR/jaeger.sh" otlp-grpc)"
  jwt_secret="$(secret jwt-secret)"
  admin_password="$(secret admin-password)"

  # Forget the ports of processes that no longer run.
  if [[ -f "$PORTS_FILE" ]]; then
    local kept="" role
    for role in "${SERVICES[@]}" gateway; do
      if role_pid "$role" >/dev/null; then kept+="$role=$(role_port "$role")"$'\n'; fi
    done
    printf '%s' "$kept" >"$PORTS_FILE"
  fi

  local -a common=(AGORA_EVENTS=kafka AGORA_KAFKA_BROKERS="$brokers" OTEL_EXPORTER_OTLP_ENDPOINT="$otlp")
  start_role user-service "${common[@]}" AGORA_DATABASE_URL="$pg_base/${DATABASE[user-service]}" \
    AGORA_JWT_SECRET="$jwt_secret" AGORA_ADMIN_EMAIL="$ADMIN_EMAIL" AGORA_ADMIN_PASSWORD="$admin_password"
  start_role product-service "${common[@]}" AGORA_DATABASE_URL="$pg_base/${DATABASE[product-service]}" \
    AGORA_SEED_DEMO=true
  start_role order-service "${common[@]}" AGORA_DATABASE_URL="$pg_base/${DATABASE[order-service]}" \
    AGORA_USER_ADDR="127.0.0.1:$(role_port user-service)" AGORA_PRODUCT_ADDR="127.0.0.1:$(role_port product-service)"
  start_role payment-service "${common[@]}" AGORA_DATABASE_URL="$pg_base/${DATABASE[payment-service]}"
  start_role gateway OTEL_EXPORTER_OTLP_ENDPOINT="$otlp" AGORA_JWT_SECRET="$jwt_secret" \
    AGORA_USER_ADDR="127.0.0.1:$(role_port user-service)" \
    AGORA_PRODUCT_ADDR="127.0.0.1:$(role_port product-service)" \
    AGORA_ORDER_ADDR="127.0.0.1:$(role_port order-service)" \
    AGORA_PAYMENT_ADDR="127.0.0.1:$(role_port payment-service)"

  local url deadline=$((SECONDS + START_TIMEOUT_SECS))
  url="$(gateway_url)"
  until curl -fsS --max-time 2 -o /dev/null "$url/readyz" 2>/dev/null; do
    for role in "${SERVICES[@]}" gateway; do
      role_pid "$role" >/dev/null || { tail -n 30 "$LOG_DIR/$role.log" >&2 || true; die "$role exited (log: $LOG_DIR/$role.log); see above, then: $0 down"; }
    done
    if ((SECONDS >= deadline)); then
      curl -sS --max-time 2 "$url/readyz" >&2 || true
      die "the gateway is not ready after ${START_TIMEOUT_SECS}s (logs: $LOG_DIR); run: $0 down"
    fi
    sleep 0.5
  done

  cat <<EOF

Agora is up: the gateway and four services as separate processes on PostgreSQL and Kafka.

  Gateway     $url          (OpenAPI: $url/openapi.json)
  Jaeger UI   $(bash "$SCRIPT_DIR/jaeger.sh" url)
  Consul UI   $(bash "$SCRIPT_DIR/consul.sh" url)/ui
  Kafka       $brokers        PostgreSQL  $pg_base
  Admin       $ADMIN_EMAIL, password in $SECRETS_DIR/admin-password

  Try:        curl $url/v1/products
  Logs:       make logs          Stop:  make down

EOF
}

cmd_down() {
  daemon_lock "$UP_DIR/.lock" 900
  local role
  for role in gateway "${SERVICES[@]}"; do
    log "$role:"
    daemon_stop "$PID_DIR/$role.pid" "$AGORA_BIN $role" "$STOP_TIMEOUT_SECS"
  done
  rm -f "$PORTS_FILE"
  bash "$SCRIPT_DIR/jaeger.sh" stop
  bash "$SCRIPT_DIR/consul.sh" stop
  bash "$SCRIPT_DIR/kafka.sh" stop
  bash "$SCRIPT_DIR/postgres.sh" stop
}

cmd_purge() {
  cmd_down
  bash "$SCRIPT_DIR/jaeger.sh" reset
  bash "$SCRIPT_DIR/consul.sh" reset
  bash "$SCRIPT_DIR/kafka.sh" reset
  log "deleting the stack's databases and files"
  rm -rf "$CACHE_DIR/postgres/$INSTANCE" "$UP_DIR"
}

log_file() {
  case "$1" in
    postgres) printf '%s\n' "$CACHE_DIR/postgres/$INSTANCE/postgres.log" ;;
    kafka) printf '%s\n' "$CACHE_DIR/kafka/instances/$INSTANCE/data/server.log" ;;
    consul) printf '%s\n' "$CACHE_DIR/consul/$INSTANCE/consul.log" ;;
    jaeger) printf '%s\n' "$CACHE_DIR/jaeger/$INSTANCE/jaeger.log" ;;
    gateway | user-service | product-service | order-service | payment-service)
      printf '%s\n' "$LOG_DIR/$1.log" ;;
    *) die "no log named '$1'; names: gateway ${SERVICES[*]} ${INFRA[*]}" ;;
  esac
}

cmd_logs() {
  local -a names=("$@") files=()
  ((${#names[@]})) || names=(gateway "${SERVICES[@]}" "${INFRA[@]}")
  local name file
  for name in "${names[@]}"; do
    file="$(log_file "$name")"
    if [[ -f "$file" ]]; then files+=("$file"); fi
  done
  ((${#files[@]})) || die "no logs yet; run: $0 up"
  exec tail -n 20 -F "${files[@]}"
}

cmd_status() {
  local role pid down=0
  for role in "${SERVICES[@]}" gateway; do
    if pid="$(role_pid "$role")"; then
      log "$role: running on 127.0.0.1:$(role_port "$role") (pid $pid)"
    else
      log "$role: not running"
      down=1
    fi
  done
  local component
  for component in "${INFRA[@]}"; do
    bash "$SCRIPT_DIR/$component.sh" status || down=1
  done
  return "$down"
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    logs) shift; cmd_logs "$@" ;;
    status) cmd_status ;;
    purge) cmd_purge ;;
    *) usage ;;
  esac
}

main "$@"
