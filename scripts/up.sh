#!/usr/bin/env bash
# The distributed stack on one machine: PostgreSQL (one database per service), Kafka, Consul
# and Jaeger, each run by its script under scripts/, plus the gateway and the four services
# as separate `agora <role>` processes (release build) on Postgres + Kafka, all on
# 127.0.0.1.
#
# Two topologies (AGORA_UP_TOPOLOGY):
#   ha      (the default) nothing is single: a Consul cluster of three servers and the agent
#           the processes talk to (consul-cluster.sh), PostgreSQL as a primary and a
#           synchronous standby that Patroni fails over (pg-cluster.sh; the services' URLs
#           name both servers and follow the primary; product-service reads the catalog off
#           the standby), three Kafka nodes with every topic on all three (kafka-cluster.sh);
#           Jaeger stays single (traces are not on any request's path). Their ports are free
#           ones, chosen once per stack and kept.
#   single  one of each, on the components' usual ports where they are free: less memory
#           (one JVM instead of three) for a laptop.
#
# Usage: scripts/up.sh {up|down|logs [NAME...]|status|purge}
#
#   up      build agora (release), start the infrastructure, then the services and the
#           gateway; wait until the gateway reports every service ready; print the URLs.
#           Whatever already runs is left running.
#   down    stop the gateway, the services and the infrastructure; no process is left
#           behind. The data (databases, topics, secrets) stays for the next `up`.
#   logs    follow the logs: all of them, or the named ones (gateway, gateway-2, user-service,
#           user-service-2, product-service, …, order-service, payment-service, postgres,
#           kafka, consul, jaeger)
#   status  what runs, and where
#   purge   `down`, then delete the stack's data: databases, topics, secrets and logs
#
# Every role runs twice by default (AGORA_UP_REPLICAS), so that losing any one process loses
# no service: every process registers with the stack's Consul agent (a gRPC health check per
# service, on its plaintext health port, an HTTP one for the gateway) and finds the others
# there, and the gateways share one port (--reuse-port), so clients keep one address. Every service gets its own database
# in the stack's PostgreSQL (agora_user, agora_product, ...; a role's instances share theirs;
# one relay at a time publishes its outbox) and the events go through the stack's Kafka. The
# roles speak mutual TLS with one another (AGORA_UP_TLS). The token secret, and the admin
# password unless AGORA_ADMIN_PASSWORD gives it, are generated once into
# $AGORA_CACHE/up/NAME/secrets.
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
#   AGORA_ADMIN_PASSWORD its password when the admin account is created (default: one generated
#                        once and kept in $AGORA_CACHE/up/NAME/secrets/admin-password)
#   AGORA_UP_TLS         1 = the roles speak mutual TLS with one another, each with a certificate
#                        of the stack's development CA (`agora certs`, renewed on every `up`),
#                        Consul checking the services on plaintext health ports; 0 = plaintext
#                        (default: 1)
#   AGORA_UP_TOPOLOGY    ha or single (above; default: ha); a stack keeps the topology it was
#                        made with until `purge`
#   AGORA_UP_REPLICAS    instances of every role, 1 to 9 (default: 2); `up` with more starts
#                        the missing ones, `down` stops them all
#   PRODUCT_REPLICAS     product-service instances, 1 to 9 (default: AGORA_UP_REPLICAS)
#   AGORA_UP_NETFAULTS   1 = every network path of the services through a proxy of the
#                        stack's Toxiproxy (scripts/toxiproxy.sh), so faults can be put on it:
#                        each process's connections to each PostgreSQL server (NAME.db.N) and
#                        to Consul (NAME.consul), every call to a service instance
#                        (NAME.in: it registers the proxy's address in Consul), and (ha)
#                        to each Kafka node (NAME.kafka.N) and between the nodes
#                        (kafka.N-M.peer, kafka.N-M.raft: kafka-cluster.sh). Kept until
#                        purge, like the topology (default: 0; `make chaos` sets it)
#   AGORA_UP_FAKETIME    NAME=OFFSET ...: start process NAME with its wall clock OFFSET off
#                        (libfaketime from Debian, installed if missing; e.g.
#                        order-service-2=+5m). Its monotonic clock is left alone
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"

# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

# --- Configuration ----------------------------------------------------------

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
REPLICAS="${AGORA_UP_REPLICAS:-2}"
[[ "$REPLICAS" =~ ^[1-9]$ ]] || die "AGORA_UP_REPLICAS must be a number from 1 to 9, not '$REPLICAS'"
PRODUCT_REPLICAS="${PRODUCT_REPLICAS:-$REPLICAS}"
[[ "$PRODUCT_REPLICAS" =~ ^[1-9]$ ]] || die "PRODUCT_REPLICAS must be a number from 1 to 9, not '$PRODUCT_REPLICAS'"

TLS="${AGORA_UP_TLS:-1}"
[[ "$TLS" == 0 || "$TLS" == 1 ]] || die "AGORA_UP_TLS must be 0 or 1, not '$TLS'"
TLS_DIR="$UP_DIR/tls"

# The topology the stack was made with wins over the variable (until purge).
TOPOLOGY_FILE="$UP_DIR/topology"
TOPOLOGY="${AGORA_UP_TOPOLOGY:-ha}"
if [[ -f "$TOPOLOGY_FILE" ]]; then
  made="$(cat "$TOPOLOGY_FILE")"
  if [[ -n "${AGORA_UP_TOPOLOGY:-}" && "$AGORA_UP_TOPOLOGY" != "$made" ]]; then
    die "stack $INSTANCE was made with AGORA_UP_TOPOLOGY=$made; to change it: $0 purge (deletes its data)"
  fi
  TOPOLOGY="$made"
fi
[[ "$TOPOLOGY" == ha || "$TOPOLOGY" == single ]] || die "AGORA_UP_TOPOLOGY must be ha or single, not '$TOPOLOGY'"
# Likewise whether its paths go through proxies.
NETFAULTS_FILE="$UP_DIR/netfaults"
BIN_FILE="$UP_DIR/bin"
NETFAULTS="${AGORA_UP_NETFAULTS:-0}"
if [[ -f "$NETFAULTS_FILE" ]]; then NETFAULTS="$(cat "$NETFAULTS_FILE")"; fi
[[ "$NETFAULTS" == 0 || "$NETFAULTS" == 1 ]] || die "AGORA_UP_NETFAULTS must be 0 or 1, not '$NETFAULTS'"

# Every component script runs the stack's instance (or cluster), beside any `dev` or `test` one.
export AGORA_PG_INSTANCE="$INSTANCE" AGORA_PG_DURABLE=1
export AGORA_KAFKA_INSTANCE="$INSTANCE" AGORA_CONSUL_INSTANCE="$INSTANCE" AGORA_JAEGER_INSTANCE="$INSTANCE"
export AGORA_PG_CLUSTER="$INSTANCE" AGORA_KAFKA_CLUSTER="$INSTANCE" AGORA_CONSUL_CLUSTER="$INSTANCE"
export AGORA_TOXIPROXY_INSTANCE="$INSTANCE"

# How many instances of each role; a role's extra instances are ROLE-2, ROLE-3, ...
declare -A REPLICAS_OF=(
  [user-service]="$REPLICAS" [product-service]="$PRODUCT_REPLICAS" [order-service]="$REPLICAS"
  [payment-service]="$REPLICAS" [gateway]="$REPLICAS"
)
# Every instance of ROLE: ROLE, ROLE-2, ...
instances_of() {
  local replica
  printf '%s\n' "$1"
  for ((replica = 2; replica <= REPLICAS_OF[$1]; replica++)); do printf '%s-%s\n' "$1" "$replica"; done
}
# The services' processes in start order (the gateways go last). Their usual ports and
# databases follow.
PROCESSES=()
for role in user-service product-service order-service payment-service; do
  mapfile -t -O "${#PROCESSES[@]}" PROCESSES < <(instances_of "$role")
done
mapfile -t GATEWAYS < <(instances_of gateway)
declare -A USUAL_PORT=(
  [user-service]=50051 [product-service]=50052 [order-service]=50053 [payment-service]=50054
  [gateway]=8080
)
# Each service serves Prometheus metrics on a port of its own; the gateway at /metrics.
declare -A USUAL_METRICS_PORT=(
  [user-service]=9101 [product-service]=9102 [order-service]=9103 [payment-service]=9104
)
declare -A DATABASE=(
  [user-service]=agora_user [product-service]=agora_product
  [order-service]=agora_order [payment-service]=agora_payment
)
# The infrastructure's scripts, in start order (Patroni keeps its state in Consul).
if [[ "$TOPOLOGY" == ha ]]; then
  INFRA=(consul-cluster pg-cluster kafka-cluster jaeger)
else
  INFRA=(postgres kafka consul jaeger)
fi
# The proxies start first and stop last.
if [[ "$NETFAULTS" == 1 ]]; then INFRA=(toxiproxy "${INFRA[@]}"); fi

# The ports processes had before they stopped (NAME and NAME.metrics), filled by `up`.
declare -A PREVIOUS_PORT=()

START_TIMEOUT_SECS=90
STOP_TIMEOUT_SECS=15  # more than a service's 10 s drain

# --- Helpers ----------------------------------------------------------------

# $1 if nothing uses it, else 0 (the component script then picks a free port, or keeps the
# one its running instance has).
usual() {
  if [[ "$FREE_PORTS" == 1 ]] || port_busy "$1"; then printf '0\n'; else printf '%s\n' "$1"; fi
}

# The role a process runs: product-service-2 runs product-service.
role_of() {
  printf '%s\n' "${1%-[0-9]*}"
}

# The port recorded for a running process (NAME), or for its metrics (NAME.metrics).
role_port() {
  [[ -f "$PORTS_FILE" ]] || return 1
  sed -n "s/^$1=//p" "$PORTS_FILE" | tail -n 1
}

# Where a running process serves its metrics (the gateways on their shared port).
metrics_url() {
  if [[ "$(role_of "$1")" == gateway ]]; then
    printf 'http://127.0.0.1:%s/metrics\n' "$(role_port gateway)"
  else
    printf 'http://127.0.0.1:%s/metrics\n' "$(role_port "$1.metrics")"
  fi
}

role_pid() {
  daemon_pid "$PID_DIR/$1.pid" "$AGORA_BIN $(role_of "$1")"
}

# Every process of the stack: the expected ones, and any other with a pid file (instances
# of an earlier, larger PRODUCT_REPLICAS).
all_processes() {
  local -A seen=()
  local name file
  for name in "${GATEWAYS[@]}" "${PROCESSES[@]}"; do seen[$name]=1; printf '%s\n' "$name"; done
  for file in "$PID_DIR"/*.pid; do
    [[ -e "$file" ]] || continue
    name="$(basename "$file" .pid)"
    [[ -n "${seen[$name]:-}" ]] || printf '%s\n' "$name"
  done
}

# The roles with fewer passing instances in Consul than they run ("gateway 1/2 …"), or nothing.
roles_short() {
  local role passing out=""
  for role in "${!REPLICAS_OF[@]}"; do
    passing="$(passing_instances "$role")"
    ((passing >= REPLICAS_OF[$role])) || out+="$role $passing/${REPLICAS_OF[$role]} "
  done
  printf '%s' "${out% }"
}

# "2 instances of each role" or, where they differ, each role's count.
instances_line() {
  local role out=""
  for role in gateway user-service product-service order-service payment-service; do
    out+="$role ×${REPLICAS_OF[$role]}, "
  done
  printf '%s passing' "${out%, }"
}

# Waits (up to 10 s) until something accepts connections on port $1.
wait_listening() {
  local i
  for ((i = 0; i < 100; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1 after 10 s (log: $LOG_DIR/gateway.log)"
}

# Passing instances of a service in the stack's Consul.
passing_instances() {
  curl -fsS --max-time 2 "$(consul_url)/v1/health/service/$1?passing=true" 2>/dev/null \
    | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || printf '0\n'
}

# The infrastructure's addresses, in either topology.
consul_script() { if [[ "$TOPOLOGY" == ha ]]; then echo consul-cluster; else echo consul; fi; }
consul_url() { bash "$SCRIPT_DIR/$(consul_script).sh" url; }
consul_addr() { bash "$SCRIPT_DIR/$(consul_script).sh" addr; }
kafka_brokers() {
  if [[ "$TOPOLOGY" == ha ]]; then bash "$SCRIPT_DIR/kafka-cluster.sh" brokers; else bash "$SCRIPT_DIR/kafka.sh" url; fi
}
# database_url DB [TARGET]: a service's database URL (ha: both servers, for the primary or,
# with TARGET prefer-standby, a standby).
database_url() {
  local url
  if [[ "$TOPOLOGY" == ha ]]; then
    url="$(bash "$SCRIPT_DIR/pg-cluster.sh" url)"
    url="${url/\/postgres\?/\/$1?}"
    printf '%s\n' "${url/read-write/${2:-read-write}}"
  else
    url="$(bash "$SCRIPT_DIR/postgres.sh" url)"
    printf '%s/%s\n' "${url%/postgres}" "$1"
  fi
}

# The skewed clock process $1 gets (AGORA_UP_FAKETIME), as environment lines; none if not named.
faketime_env() {
  local entry
  for entry in ${AGORA_UP_FAKETIME:-}; do
    [[ "${entry%%=*}" == "$1" ]] || continue
    local offset="${entry#*=}" lib
    [[ "$offset" =~ ^[+-][0-9]+[smhd]?$ ]] || die "AGORA_UP_FAKETIME: '$entry' is not NAME=+N[smhd] or NAME=-N[smhd]"
    if ! lib="$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketimeMT\.so\.1$')"; then
      log "installing libfaketime (Debian) for AGORA_UP_FAKETIME"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null \
        || die "cannot install libfaketime"
      lib="$(dpkg -L libfaketime | grep -m1 '/libfaketimeMT\.so\.1$')" || die "libfaketime has no libfaketimeMT.so.1"
    fi
    printf '%s\n' "LD_PRELOAD=$lib" "FAKETIME=$offset" FAKETIME_DONT_FAKE_MONOTONIC=1
  done
}

# via NAME.KIND ADDRESS: the address process NAME reaches ADDRESS (host:port) at: the stack's
# proxy NAME.KIND to it with AGORA_UP_NETFAULTS=1, else ADDRESS itself.
via() {
  if [[ "$NETFAULTS" == 1 ]]; then bash "$SCRIPT_DIR/toxiproxy.sh" proxy "$1" "$2"; else printf '%s\n' "$2"; fi
}

# via_url NAME URL: a database URL whose servers process NAME reaches through its proxies
# (NAME.db.1, NAME.db.2, ... in the URL's order).
via_url() {
  local name="$1" url="$2" servers n=0 host list=""
  [[ "$NETFAULTS" == 1 ]] || { printf '%s\n' "$url"; return 0; }
  servers="${url#*@}"
  servers="${servers%%/*}"
  for host in ${servers//,/ }; do
    n=$((n + 1))
    list+="$(via "$name.db.$n" "$host"),"
  done
  printf '%s@%s/%s\n' "${url%%@*}" "${list%,}" "${url#*@*/}"
}

# Starts the infrastructure: the usual ports (single), or the clusters (ha: Kafka's three JVMs
# start while Consul and PostgreSQL do).
infra_up() {
  if [[ "$NETFAULTS" == 1 ]]; then AGORA_TOXIPROXY_PORT="$(usual 8474)" bash "$SCRIPT_DIR/toxiproxy.sh" start; fi
  if [[ "$TOPOLOGY" == ha ]]; then
    local kafka_log="$LOG_DIR/kafka-cluster-start.log" kafka_pid
    mkdir -p "$LOG_DIR"
    # With the network faults, each service process reaches the nodes through proxies of its
    # own, and the nodes each other through theirs (kafka-cluster.sh, "Proxied").
    local proxied=none
    if [[ "$NETFAULTS" == 1 ]]; then proxied="${PROCESSES[*]}"; fi
    AGORA_KAFKA_PROXIED="$proxied" bash "$SCRIPT_DIR/kafka-cluster.sh" start >"$kafka_log" 2>&1 9>&- &
    kafka_pid=$!
    bash "$SCRIPT_DIR/consul-cluster.sh" start
    AGORA_PG_CONSUL="$(consul_addr)" bash "$SCRIPT_DIR/pg-cluster.sh" start
    bash "$SCRIPT_DIR/pg-cluster.sh" create-db "${DATABASE[@]}"
    wait "$kafka_pid" || { cat "$kafka_log" >&2; die "the Kafka cluster did not start"; }
    cat "$kafka_log" >&2
  else
    AGORA_PG_PORT="$(usual 5432)" bash "$SCRIPT_DIR/postgres.sh" start
    bash "$SCRIPT_DIR/postgres.sh" create-db "${DATABASE[@]}"
    AGORA_KAFKA_PORT="$(usual 9092)" AGORA_KAFKA_CONTROLLER_PORT="$(usual 9093)" bash "$SCRIPT_DIR/kafka.sh" start
    # Consul's other listeners (server, serf) take free ports; DNS and gRPC are not used.
    AGORA_CONSUL_HTTP_PORT="$(usual 8500)" AGORA_CONSUL_SERVER_PORT=0 AGORA_CONSUL_SERF_LAN_PORT=0 \
      AGORA_CONSUL_SERF_WAN_PORT=0 AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1 \
      bash "$SCRIPT_DIR/consul.sh" start
  fi
  AGORA_JAEGER_UI_PORT="$(usual 16686)" AGORA_JAEGER_OTLP_GRPC_PORT="$(usual 4317)" \
    AGORA_JAEGER_OTLP_HTTP_PORT="$(usual 4318)" AGORA_JAEGER_QUERY_GRPC_PORT=0 AGORA_JAEGER_HEALTH_PORT=0 \
    bash "$SCRIPT_DIR/jaeger.sh" start
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

# Starts process NAME (`agora ROLE`) with VAR=VALUE... in its environment, unless it runs
# already.
start_role() {
  local name="$1" role
  role="$(role_of "$1")"
  shift
  if role_pid "$name" >/dev/null; then
    log "$name already runs on 127.0.0.1:$(role_port "$name")"
    return 0
  fi
  # A process started again gets its last port back while that is free, so clients (and a
  # load test) keep their address across a crash and restart.
  local port="${PREVIOUS_PORT[$name]:-0}" shared
  if [[ "$role" == gateway ]] && shared="$(running_gateway_port)"; then
    port="$shared"  # the gateways share the port of the one that runs (SO_REUSEPORT)
  elif [[ "$port" != 0 ]] && port_busy "$port"; then port=0; fi
  if [[ "$port" == 0 && -n "${USUAL_PORT[$name]:-}" ]]; then port="$(usual "${USUAL_PORT[$name]}")"; fi
  if [[ "$port" == 0 ]]; then port="$(free_port)"; fi
  DAEMON_TAKEN_PORTS+="$port "
  local -a metrics=() advertise=() skew=()
  local skew_lines
  skew_lines="$(faketime_env "$name")"
  if [[ -n "$skew_lines" ]]; then mapfile -t skew <<<"$skew_lines"; fi
  if ((${#skew[@]})); then log "$name runs with its clock ${skew[1]#FAKETIME=} off (libfaketime)"; fi
  if [[ "$role" != gateway && "$NETFAULTS" == 1 ]]; then
    advertise=(AGORA_ADVERTISE_ADDR="$(via "$name.in" "127.0.0.1:$port")")
  fi
  local -a tls=()
  if [[ "$TLS" == 1 ]]; then
    tls=(AGORA_TLS_CERT="$TLS_DIR/$role.pem" AGORA_TLS_KEY="$TLS_DIR/$role-key.pem" AGORA_TLS_CA="$TLS_DIR/ca.pem")
    if [[ "$role" != gateway ]]; then
      # Consul's agent holds no certificate: it asks the plaintext health port (through a proxy
      # of its own with AGORA_UP_NETFAULTS=1, so a cut-off instance goes critical).
      local health_port
      health_port="$(free_port)"
      DAEMON_TAKEN_PORTS+="$health_port "
      tls+=(AGORA_HEALTH_LISTEN="127.0.0.1:$health_port")
      if [[ "$NETFAULTS" == 1 ]]; then
        tls+=(AGORA_HEALTH_ADVERTISE_ADDR="$(via "$name.health" "127.0.0.1:$health_port")")
      fi
    fi
  fi
  if [[ "$role" != gateway ]]; then
    local metrics_port="${PREVIOUS_PORT[$name.metrics]:-0}"
    if [[ "$metrics_port" != 0 ]] && port_busy "$metrics_port"; then metrics_port=0; fi
    if [[ "$metrics_port" == 0 && -n "${USUAL_METRICS_PORT[$name]:-}" ]]; then
      metrics_port="$(usual "${USUAL_METRICS_PORT[$name]}")"
    fi
    if [[ "$metrics_port" == 0 ]]; then metrics_port="$(free_port)"; fi
    DAEMON_TAKEN_PORTS+="$metrics_port "
    metrics=(AGORA_METRICS_LISTEN="127.0.0.1:$metrics_port")
  fi
  mkdir -p "$LOG_DIR" "$PID_DIR"
  # Secrets go through the environment, never the command line (which `ps` shows).
  daemon_launch "$PID_DIR/$name.pid" "$LOG_DIR/$name.log" \
    env AGORA_LISTEN="127.0.0.1:$port" AGORA_LOG_FORMAT=pretty "${metrics[@]}" "${advertise[@]}" "${tls[@]}" "$@" "${skew[@]}" \
    "$AGORA_BIN" "$role"
  printf '%s=%s\n' "$name" "$port" >>"$PORTS_FILE"
  if ((${#metrics[@]})); then printf '%s.metrics=%s\n' "$name" "$metrics_port" >>"$PORTS_FILE"; fi
  log "$name starting on 127.0.0.1:$port (pid $DAEMON_LAUNCHED_PID, log: $LOG_DIR/$name.log)"
}

# The port of a gateway that runs, which the others share.
running_gateway_port() {
  local name
  for name in "${GATEWAYS[@]}"; do
    if role_pid "$name" >/dev/null; then role_port "$name"; return 0; fi
  done
  return 1
}

gateway_url() {
  printf 'http://127.0.0.1:%s\n' "$(role_port gateway)"
}

# --- Subcommands ------------------------------------------------------------

cmd_up() {
  daemon_lock "$UP_DIR/.lock" 900

  if [[ -z "${AGORA_UP_BIN:-}" ]]; then
    log "building agora (release; the first build takes minutes)"
    bash "$SCRIPT_DIR/build-deps.sh"
    (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked -p agora --bin agora) \
      || die "cargo build failed"
  fi
  [[ -x "$AGORA_BIN" ]] || die "no agora binary at $AGORA_BIN"

  mkdir -p "$UP_DIR"
  printf '%s\n' "$TOPOLOGY" >"$TOPOLOGY_FILE"
  printf '%s\n' "$NETFAULTS" >"$NETFAULTS_FILE"
  printf '%s\n' "$AGORA_BIN" >"$BIN_FILE"
  infra_up

  local brokers otlp consul jwt_secret admin_password replication=1
  brokers="$(kafka_brokers)"
  otlp="$(bash "$SCRIPT_DIR/jaeger.sh" otlp-grpc)"
  consul="$(consul_addr)"
  if [[ "$TOPOLOGY" == ha ]]; then replication=3; fi
  jwt_secret="$(secret jwt-secret)"
  # The same rule as `agora all`: the variable when given, else one generated and kept.
  local admin_where
  if [[ -n "${AGORA_ADMIN_PASSWORD:-}" ]]; then
    admin_password="$AGORA_ADMIN_PASSWORD"
    admin_where="as AGORA_ADMIN_PASSWORD gave it"
  else
    admin_password="$(secret admin-password)"
    admin_where="password in $SECRETS_DIR/admin-password"
  fi
  if [[ "$TLS" == 1 ]]; then
    # Issued (and the CA made) once, renewed on every `up`: running roles read them again.
    "$AGORA_BIN" certs --dir "$TLS_DIR" --gateway-hosts '' >"$UP_DIR/certs.log" 2>&1 \
      || { cat "$UP_DIR/certs.log" >&2; die "agora certs failed"; }
    log "mutual TLS between the roles: certificates in $TLS_DIR"
  fi

  # Keep the ports of running processes; those of processes that no longer run are offered
  # back to them when they start again.
  if [[ -f "$PORTS_FILE" ]]; then
    local kept="" name
    while read -r name; do
      if role_pid "$name" >/dev/null; then
        kept+="$name=$(role_port "$name")"$'\n'
        if [[ -n "$(role_port "$name.metrics")" ]]; then kept+="$name.metrics=$(role_port "$name.metrics")"$'\n'; fi
      else
        PREVIOUS_PORT[$name]="$(role_port "$name")"
        PREVIOUS_PORT[$name.metrics]="$(role_port "$name.metrics")"
      fi
    done < <(all_processes)
    printf '%s' "$kept" >"$PORTS_FILE"
  fi

  # Everyone registers with Consul and finds the others there: no addresses to pass.
  local -a common=(AGORA_EVENTS=kafka AGORA_KAFKA_BROKERS="$brokers" AGORA_KAFKA_REPLICATION="$replication"
    OTEL_EXPORTER_OTLP_ENDPOINT="$otlp" AGORA_DISCOVERY=consul)
  local name role
  # A role's instances share its database; the first instance seeds it (the admin account,
  # the demo catalog), so that two seeders never race.
  for name in "${PROCESSES[@]}"; do
    role="$(role_of "$name")"
    # What runs keeps running (start_role says so); its addresses need no looking up.
    if role_pid "$name" >/dev/null; then start_role "$name"; continue; fi
    local -a own=(AGORA_DATABASE_URL="$(via_url "$name" "$(database_url "${DATABASE[$role]}")")"
      AGORA_CONSUL_ADDR="$(via "$name.consul" "$consul")")
    if [[ "$TOPOLOGY" == ha && "$NETFAULTS" == 1 ]]; then
      own+=(AGORA_KAFKA_BROKERS="$(bash "$SCRIPT_DIR/kafka-cluster.sh" brokers "$name")")
    fi
    case "$role" in
      user-service)
        own+=(AGORA_JWT_SECRET="$jwt_secret")
        if [[ "$name" == user-service ]]; then
          own+=(AGORA_ADMIN_EMAIL="$ADMIN_EMAIL" AGORA_ADMIN_PASSWORD="$admin_password")
        fi
        ;;
      product-service)
        own+=(AGORA_SEED_DEMO="$([[ "$name" == product-service ]] && echo true || echo false)")
        if [[ "$TOPOLOGY" == ha ]]; then
          own+=(AGORA_DATABASE_READ_URL="$(via_url "$name" "$(database_url agora_product prefer-standby)")")
        fi
        ;;
    esac
    start_role "$name" "${common[@]}" "${own[@]}"
  done
  # The first gateway binds the port before the others join it.
  for name in "${GATEWAYS[@]}"; do
    if role_pid "$name" >/dev/null; then start_role "$name"; continue; fi
    start_role "$name" "${common[@]}" AGORA_CONSUL_ADDR="$(via "$name.consul" "$consul")" \
      AGORA_JWT_SECRET="$jwt_secret" AGORA_REUSE_PORT=true
    [[ "$name" != gateway ]] || wait_listening "$(role_port gateway)"
  done

  # Ready: the gateway reaches every service, and Consul lists every instance as passing.
  local url deadline=$((SECONDS + START_TIMEOUT_SECS)) short=""
  url="$(gateway_url)"
  until curl -fsS --max-time 2 -o /dev/null "$url/readyz" 2>/dev/null && short="$(roles_short)" && [[ -z "$short" ]]; do
    for name in "${PROCESSES[@]}" "${GATEWAYS[@]}"; do
      role_pid "$name" >/dev/null || { tail -n 30 "$LOG_DIR/$name.log" >&2 || true; die "$name exited (log: $LOG_DIR/$name.log); see above, then: $0 down"; }
    done
    if ((SECONDS >= deadline)); then
      curl -sS --max-time 2 "$url/readyz" >&2 || true
      die "not ready after ${START_TIMEOUT_SECS}s: gateway /readyz above; short of passing instances in Consul: ${short:-?} (logs: $LOG_DIR); run: $0 down"
    fi
    sleep 0.5
  done

  local metrics_lines="" label="Metrics"
  for name in "${GATEWAYS[@]}" "${PROCESSES[@]}"; do
    metrics_lines+="$(printf '  %-11s %-18s %s' "$label" "$name" "$(metrics_url "$name")")"$'\n'
    label=""
  done
  metrics_lines="${metrics_lines%$'\n'}"

  cat <<EOF

Agora is up: the gateway and four services as separate processes on PostgreSQL and Kafka,
found through Consul ($(instances_line)); topology $TOPOLOGY$([[ "$TOPOLOGY" == ha ]] && printf ': 3 Consul servers, PostgreSQL primary + synchronous standby (Patroni), 3 Kafka nodes' || true).

  Gateway     $url          (OpenAPI: $url/openapi.json)
  Jaeger UI   $(bash "$SCRIPT_DIR/jaeger.sh" url)   (query API; read traces with the command below)
  Traces      $AGORA_BIN trace --jaeger $(bash "$SCRIPT_DIR/jaeger.sh" url)
  Consul UI   $(consul_url)/ui
$metrics_lines
  Kafka       $brokers
  PostgreSQL  $(database_url DB)
  Admin       $ADMIN_EMAIL, $admin_where
  Mutual TLS  $([[ "$TLS" == 1 ]] && printf 'between the roles, certificates in %s (AGORA_UP_TLS=0: plaintext)' "$TLS_DIR" || printf 'off (AGORA_UP_TLS=0)')

  Try:        curl $url/v1/products
  Logs:       make logs          Stop:  make down

EOF
}

cmd_down() {
  daemon_lock "$UP_DIR/.lock" 900
  local name
  while read -r name; do
    log "$name:"
    daemon_stop "$PID_DIR/$name.pid" "$AGORA_BIN $(role_of "$name")" "$STOP_TIMEOUT_SECS"
  done < <(all_processes)
  rm -f "$PORTS_FILE"
  local i
  # In reverse start order: PostgreSQL's members leave Consul before Consul stops.
  for ((i = ${#INFRA[@]} - 1; i >= 0; i--)); do bash "$SCRIPT_DIR/${INFRA[i]}.sh" stop; done
}

cmd_purge() {
  cmd_down
  local component
  for component in "${INFRA[@]}"; do
    [[ "$component" == postgres ]] || bash "$SCRIPT_DIR/$component.sh" reset
  done
  log "deleting the stack's databases and files"
  rm -rf "$CACHE_DIR/postgres/$INSTANCE" "$UP_DIR"
}

log_file() {
  case "$1" in
    postgres) printf '%s\n' "$CACHE_DIR/postgres/$INSTANCE/postgres.log" ;;
    kafka) printf '%s\n' "$CACHE_DIR/kafka/instances/$INSTANCE/data/server.log" ;;
    consul) printf '%s\n' "$CACHE_DIR/consul/$INSTANCE/consul.log" ;;
    pg-cluster) printf '%s\n' "$CACHE_DIR"/patroni/"$INSTANCE"-[0-9]/patroni.log ;;
    kafka-cluster) printf '%s\n' "$CACHE_DIR"/kafka/instances/"$INSTANCE"-[0-9]/data/server.log ;;
    consul-cluster) printf '%s\n' "$CACHE_DIR"/consul/"$INSTANCE"-[0-9a]*/consul.log ;;
    jaeger) printf '%s\n' "$CACHE_DIR/jaeger/$INSTANCE/jaeger.log" ;;
    toxiproxy) printf '%s\n' "$CACHE_DIR/toxiproxy/$INSTANCE/toxiproxy.log" ;;
    gateway | gateway-[0-9] | user-service | user-service-[0-9] | product-service | product-service-[0-9] | \
      order-service | order-service-[0-9] | payment-service | payment-service-[0-9])
      printf '%s\n' "$LOG_DIR/$1.log" ;;
    *) die "no log named '$1'; names: ${GATEWAYS[*]} ${PROCESSES[*]} ${INFRA[*]}" ;;
  esac
}

cmd_logs() {
  local -a names=("$@") files=()
  ((${#names[@]})) || mapfile -t names < <(all_processes; printf '%s\n' "${INFRA[@]}")
  local name file
  for name in "${names[@]}"; do
    while read -r file; do
      if [[ -f "$file" ]]; then files+=("$file"); fi
    done < <(log_file "$name")
  done
  ((${#files[@]})) || die "no logs yet; run: $0 up"
  exec tail -n 20 -F "${files[@]}"
}

cmd_status() {
  local name pid down=0
  while read -r name; do
    if pid="$(role_pid "$name")"; then
      log "$name: running on 127.0.0.1:$(role_port "$name") (pid $pid), metrics $(metrics_url "$name")"
    else
      log "$name: not running"
      down=1
    fi
  done < <(all_processes)
  local component
  for component in "${INFRA[@]}"; do
    bash "$SCRIPT_DIR/$component.sh" status || down=1
  done
  return "$down"
}

main() {
  # `down`, `status` and `logs` look for the processes of the binary `up` started (recorded in
  # $BIN_FILE), unless AGORA_UP_BIN names one: stopping a stack started from a debug build
  # must not need the variable again.
  if [[ "${1:-}" != up && -z "${AGORA_UP_BIN:-}" && -s "$BIN_FILE" ]]; then AGORA_BIN="$(cat "$BIN_FILE")"; fi
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
