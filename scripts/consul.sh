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
#   AGORA_BIND_HOST             the address to listen on, one of this machine's (default: 127.0.0.1)
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
INSTANCE_TOOL=consul
INSTANCE_NAME="${AGORA_CONSUL_INSTANCE:-dev}"

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
INSTANCE_ROOT="$CACHE_DIR/consul/$INSTANCE_NAME"
CONSUL_CONF="$INSTANCE_ROOT/consul.hcl"  # rewritten on every start (while stopped)
CONSUL_DATA="$INSTANCE_ROOT/data"        # -dev keeps the state in memory; holds the node id
INSTANCE_LOG="$INSTANCE_ROOT/consul.log"   # one per run; the previous one is consul.log.prev
INSTANCE_PID="$INSTANCE_ROOT/consul.pid"
INSTANCE_STATE="$INSTANCE_ROOT/ports"      # the ports in use, written at start
INSTANCE_LOCK="$INSTANCE_ROOT/.lock"
# What our agent's command line contains (the config path is per instance).
INSTANCE_PATTERN="agent -dev -config-file=$CONSUL_CONF"

CURL_TIMEOUT_SECS=2

# --- Helpers ----------------------------------------------------------------

log() { printf '[consul] %s\n' "$*" >&2; }
die() { printf '[consul] error: %s\n' "$*" >&2; exit 1; }

[[ "$INSTANCE_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
  || die "AGORA_CONSUL_INSTANCE='$INSTANCE_NAME': use letters, digits, '_', '.', '-'"

# Where it listens, from PORTS as they are (no lookup).
instance_where() { printf 'http://%s:%s\n' "$CONSUL_HOST" "${PORTS[http]}"; }
INSTANCE_NOT_READY="has no leader on its HTTP port"

# True if our agent answers on its HTTP port and is the leader: in dev mode it is the only
# server, so the leader must be itself (its own server port; proves it is ours, too).
instance_ready() {
  local leader
  leader="$(curl -fsS --max-time "$CURL_TIMEOUT_SECS" \
    "http://$CONSUL_HOST:${PORTS[http]}/v1/status/leader" 2>/dev/null)" || return 1
  [[ "$leader" == "\"$CONSUL_HOST:${PORTS[server]}\"" ]]
}

# The agent's config (PORTS resolved). The rest of -dev's settings are kept.
instance_config() {
  mkdir -p "$INSTANCE_ROOT"
  cat >"$CONSUL_CONF.tmp" <<EOF
# Generated by scripts/consul.sh on each start; edits are overwritten.
node_name = "agora-$INSTANCE_NAME"
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
  mkdir -p "$CONSUL_DATA"
}

instance_launch() {
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" \
    "$1" agent -dev -config-file="$CONSUL_CONF" -bind="$CONSUL_HOST" -client="$CONSUL_HOST"
}

# --- Subcommands (scripts/lib/daemon.sh) -----------------------------------

main() {
  case "${1:-}" in
    install) instance_install ;;
    start) instance_start ;;
    stop) instance_stop ;;
    status) instance_status ;;
    url) instance_endpoint http http:// "" ;;
    addr) instance_endpoint http "" "" ;;
    dns) instance_endpoint dns "" "" ;;
    grpc) instance_endpoint grpc "" "" ;;
    ports) instance_ports ;;
    reset) instance_reset ;;
    *) usage ;;
  esac
}

main "$@"
