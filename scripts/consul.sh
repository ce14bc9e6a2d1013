#!/usr/bin/env bash
# Throwaway local Consul agent (dev mode) for Agora's development and tests.
#
# Usage: scripts/consul.sh {install|start|stop|status|url|addr|dns|grpc|ports|reset}
#
#   install  build the pinned consul binary (scripts/go-tools.sh install consul)
#   start    install and start the agent; no-op if it runs already; returns once it has
#            elected itself leader (answers /v1/status/leader)
#   stop     SIGTERM the agent (SIGKILL after 20s); no-op if not running
#   status   report whether the agent runs and has a leader (0 = yes, 3 = not running,
#            1 = its process runs but it does not answer)
#   url      print the HTTP API URL (http://127.0.0.1:PORT)
#   addr     print the HTTP API address (127.0.0.1:PORT), as CONSUL_HTTP_ADDR wants it
#   dns      print the DNS address (127.0.0.1:PORT)
#   grpc     print the gRPC address (127.0.0.1:PORT)
#   ports    print every listener's port, as key=port lines (-1 = disabled)
#   reset    stop the agent and delete the instance's files (data, config, logs)
#
# The agent is private to Agora: `consul agent -dev` (a single server that is its own
# leader, state in memory, UI on the HTTP port) bound to 127.0.0.1 only, with its config,
# log and data dir under $AGORA_CACHE/consul/INSTANCE/. Every port is configurable, so
# instances (e.g. `make up`'s and a test run's) can run side by side. A port of 0 means any
# free port, chosen at start; the printers then report the chosen one while the agent runs.
# Dev mode: no ACLs, no TLS, and everything is lost on stop; for disposable data only.
#
# Consul's version is pinned in scripts/versions.env.
#
# Environment:
#   AGORA_CACHE                 cache root                           (default: $HOME/.cache/agora)
#   AGORA_CONSUL_INSTANCE       instance name                        (default: dev)
#   AGORA_CONSUL_HTTP_PORT      HTTP API and UI                      (default: 8500)
#   AGORA_CONSUL_DNS_PORT       DNS, TCP and UDP; -1 = disabled      (default: 8600)
#   AGORA_CONSUL_SERVER_PORT    server RPC                           (default: 8300)
#   AGORA_CONSUL_SERF_LAN_PORT  LAN gossip, TCP and UDP              (default: 8301)
#   AGORA_CONSUL_SERF_WAN_PORT  WAN gossip, TCP and UDP              (default: 8302)
#   AGORA_CONSUL_GRPC_PORT      gRPC (xDS, peering); -1 = disabled   (default: 8502)
#   AGORA_CONSUL_GRPC_TLS_PORT  gRPC with TLS; -1 = disabled         (default: -1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

# --- Configuration ----------------------------------------------------------

CONSUL_HOST="$DAEMON_HOST"
CONSUL_INSTANCE="${AGORA_CONSUL_INSTANCE:-dev}"

PORT_KEYS=(http dns server serf_lan serf_wan grpc grpc_tls)
PORT_ENV=(
  [http]=AGORA_CONSUL_HTTP_PORT [dns]=AGORA_CONSUL_DNS_PORT
  [server]=AGORA_CONSUL_SERVER_PORT [serf_lan]=AGORA_CONSUL_SERF_LAN_PORT
  [serf_wan]=AGORA_CONSUL_SERF_WAN_PORT [grpc]=AGORA_CONSUL_GRPC_PORT
  [grpc_tls]=AGORA_CONSUL_GRPC_TLS_PORT
)
PORT_REQ=(
  [http]="${AGORA_CONSUL_HTTP_PORT:-8500}" [dns]="${AGORA_CONSUL_DNS_PORT:-8600}"
  [server]="${AGORA_CONSUL_SERVER_PORT:-8300}" [serf_lan]="${AGORA_CONSUL_SERF_LAN_PORT:-8301}"
  [serf_wan]="${AGORA_CONSUL_SERF_WAN_PORT:-8302}" [grpc]="${AGORA_CONSUL_GRPC_PORT:-8502}"
  [grpc_tls]="${AGORA_CONSUL_GRPC_TLS_PORT:--1}"
)
PORT_OFF_OK=([dns]=1 [grpc]=1 [grpc_tls]=1)

# Absolute path (need not exist yet): the agent runs from another directory.
CACHE_DIR="$(realpath -m "${AGORA_CACHE:-$HOME/.cache/agora}")"
CONSUL_ROOT="$CACHE_DIR/consul/$CONSUL_INSTANCE"
CONSUL_CONF="$CONSUL_ROOT/consul.hcl"  # rewritten on every start (while stopped)
CONSUL_DATA="$CONSUL_ROOT/data"        # -dev keeps the state in memory; holds the node id
CONSUL_LOG="$CONSUL_ROOT/consul.log"   # one per run; the previous one is consul.log.prev
CONSUL_PID="$CONSUL_ROOT/consul.pid"
CONSUL_STATE="$CONSUL_ROOT/ports"      # the ports in use, written at start
CONSUL_LOCK="$CONSUL_ROOT/.lock"
# What our agent's command line contains (the config path is per instance).
CONSUL_CMD_PATTERN="agent -dev -config-file=$CONSUL_CONF"

START_TIMEOUT_SECS=60
STOP_TIMEOUT_SECS=20
CURL_TIMEOUT_SECS=2
# A cold install builds consul from source (minutes), so a second caller may wait that long.
LOCK_TIMEOUT_SECS=900

# --- Helpers ----------------------------------------------------------------

log() { printf '[consul] %s\n' "$*" >&2; }
die() { printf '[consul] error: %s\n' "$*" >&2; exit 1; }

[[ "$CONSUL_INSTANCE" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
  || die "AGORA_CONSUL_INSTANCE='$CONSUL_INSTANCE': use letters, digits, '_', '.', '-'"

take_lock() { daemon_lock "$CONSUL_LOCK" "$LOCK_TIMEOUT_SECS"; }

running_pid() { daemon_pid "$CONSUL_PID" "$CONSUL_CMD_PATTERN"; }

# PORTS of the running agent (from its state file), else as requested (0 = unknown).
load_ports() {
  if running_pid >/dev/null && ports_load "$CONSUL_STATE"; then return 0; fi
  ports_requested
}

# The HTTP API URL from PORTS as they are (no lookup).
http_url() { printf 'http://%s:%s\n' "$CONSUL_HOST" "${PORTS[http]}"; }

# True if our agent answers on its HTTP port and is the leader: in dev mode it is the only
# server, so the leader must be itself (its own server port; proves it is ours, too).
agent_ready() {
  local leader
  leader="$(curl -fsS --max-time "$CURL_TIMEOUT_SECS" \
    "http://$CONSUL_HOST:${PORTS[http]}/v1/status/leader" 2>/dev/null)" || return 1
  [[ "$leader" == "\"$CONSUL_HOST:${PORTS[server]}\"" ]]
}

# The agent's config (PORTS resolved). The rest of -dev's settings are kept.
write_config() {
  mkdir -p "$CONSUL_ROOT"
  cat >"$CONSUL_CONF.tmp" <<EOF
# Generated by scripts/consul.sh on each start; edits are overwritten.
node_name = "agora-$CONSUL_INSTANCE"
data_dir = "$CONSUL_DATA"
log_level = "INFO"

# Loopback only: cluster traffic, what it advertises, and the client APIs.
bind_addr = "$CONSUL_HOST"
advertise_addr = "$CONSUL_HOST"
advertise_addr_wan = "$CONSUL_HOST"
client_addr = "$CONSUL_HOST"

# No calls home (update check, anonymous signature).
disable_update_check = true
disable_anonymous_signature = true

# -1 = disabled.
ports {
  http = ${PORTS[http]}
  https = -1
  dns = ${PORTS[dns]}
  server = ${PORTS[server]}
  serf_lan = ${PORTS[serf_lan]}
  serf_wan = ${PORTS[serf_wan]}
  grpc = ${PORTS[grpc]}
  grpc_tls = ${PORTS[grpc_tls]}
}
EOF
  mv -f "$CONSUL_CONF.tmp" "$CONSUL_CONF"
}

# --- Subcommands ------------------------------------------------------------

cmd_install() {
  bash "$SCRIPT_DIR/go-tools.sh" install consul 9>&-
}

cmd_start() {
  take_lock
  local bin
  bin="$(bash "$SCRIPT_DIR/go-tools.sh" path consul 9>&-)"

  local pid
  if pid="$(running_pid)"; then
    # Ours already runs (perhaps still starting): it must have the ports asked for.
    ports_load "$CONSUL_STATE" || die "running (pid $pid) but $CONSUL_STATE is missing; run: $0 stop"
    ports_match_request \
      || die "already running (pid $pid) with other ports than asked for ($CONSUL_STATE); run: $0 stop"
    daemon_wait_ready "$pid" "$CONSUL_PID" "$CONSUL_LOG" "$START_TIMEOUT_SECS" agent_ready
    log "already running on $(http_url) (pid $pid)"
    return 0
  fi

  # Fixed ports must be free (else our agent would fail to bind, or tests would talk to
  # somebody else's); 0 becomes a free port.
  resolve_ports
  write_config
  ports_save "$CONSUL_STATE"
  mkdir -p "$CONSUL_DATA"

  log "starting consul (instance $CONSUL_INSTANCE) on $(http_url) (log: $CONSUL_LOG)"
  daemon_launch "$CONSUL_PID" "$CONSUL_LOG" \
    "$bin" agent -dev -config-file="$CONSUL_CONF" -bind="$CONSUL_HOST" -client="$CONSUL_HOST"
  pid="$DAEMON_LAUNCHED_PID"
  daemon_wait_ready "$pid" "$CONSUL_PID" "$CONSUL_LOG" "$START_TIMEOUT_SECS" agent_ready
  log "ready: $(http_url) (pid $pid)"
}

cmd_stop() {
  [[ -d "$CONSUL_ROOT" ]] || { log "not running"; return 0; }
  take_lock
  daemon_stop "$CONSUL_PID" "$CONSUL_CMD_PATTERN" "$STOP_TIMEOUT_SECS"
}

cmd_status() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running (instance $CONSUL_INSTANCE)"
    return 3
  fi
  if ports_load "$CONSUL_STATE" && agent_ready; then
    log "running on $(http_url) (instance $CONSUL_INSTANCE, pid $pid)"
    return 0
  fi
  log "process $pid runs but has no leader on its HTTP port (log: $CONSUL_LOG)"
  return 1
}

cmd_url() {
  load_ports
  local port
  port="$(port_of http)"
  printf 'http://%s:%s\n' "$CONSUL_HOST" "$port"
}

# The address (host:port) of listener $1.
cmd_addr() {
  load_ports
  local port
  port="$(port_of "$1")"
  printf '%s:%s\n' "$CONSUL_HOST" "$port"
}

cmd_ports() {
  load_ports
  local k
  for k in "${PORT_KEYS[@]}"; do printf '%s=%s\n' "$k" "${PORTS[$k]}"; done
}

cmd_reset() {
  take_lock
  daemon_stop "$CONSUL_PID" "$CONSUL_CMD_PATTERN" "$STOP_TIMEOUT_SECS"
  log "deleting the files of instance $CONSUL_INSTANCE in $CONSUL_ROOT"
  # Everything but the lock file, which other runs may be waiting on.
  find "$CONSUL_ROOT" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
}

usage() {
  # Print the header comment (everything after the shebang up to the code).
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

main() {
  case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    addr) cmd_addr http ;;
    dns) cmd_addr dns ;;
    grpc) cmd_addr grpc ;;
    ports) cmd_ports ;;
    reset) cmd_reset ;;
    *) usage ;;
  esac
}

main "$@"
