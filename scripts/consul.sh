#!/usr/bin/env bash
# Throwaway local Consul agent (dev mode) for Agora's development and tests.
#
# Usage: scripts/consul.sh {install|start|stop|kill|status|url|addr|dns|grpc|token|ports|reset}
#
#   install  build the pinned consul binary (scripts/go-tools.sh install consul)
#   start    install and start the agent; no-op if it runs already; returns once it has
#            elected itself leader (answers /v1/status/leader)
#   stop     SIGTERM the agent (SIGKILL after 20s); no-op if not running
#   kill     SIGKILL it, as a crash would (for fault tests); no-op if not running
#   status   report whether the agent runs and has a leader (0 = yes, 3 = not running,
#            1 = its process runs but it does not answer)
#   url      print the HTTP API URL (http://127.0.0.1:PORT)
#   addr     print the HTTP API address (127.0.0.1:PORT), as CONSUL_HTTP_ADDR wants it
#   dns      print the DNS address (127.0.0.1:PORT)
#   grpc     print the gRPC address (127.0.0.1:PORT)
#   token    print the management token (ACLs on); fails when ACLs are off
#   ports    print every listener's port, as key=port lines (-1 = disabled)
#   reset    stop the agent and delete the instance's files (data, config, logs)
#
# The agent is private to Agora: `consul agent -dev` (a single server that is its own
# leader, state in memory, UI on the HTTP port) bound to 127.0.0.1 only, with its config,
# log and data dir under $AGORA_CACHE/consul/INSTANCE/. Every port is configurable, so
# instances (e.g. `make up`'s and a test run's) can run side by side. A port of 0 means any
# free port, chosen at start; the printers then report the chosen one while the agent runs.
# Dev mode: no TLS, no ACLs (unless asked for), and everything is lost on stop; for
# disposable data only.
#
# AGORA_CONSUL_ACL=1 (a dev agent only) turns ACLs on with default_policy "deny": a
# management token, a UUID made once and kept 0600 in INSTANCE/token (until reset), is the
# config's initial_management token and the agent's own token (its anti-entropy sync), so only
# callers that send it (X-Consul-Token header, or CONSUL_HTTP_TOKEN for the consul command)
# may register or read anything; DNS answers nothing. This script's own calls send it. A start
# records the mode in INSTANCE/mode, and while the agent runs `status` and `token` follow that
# record, whatever the variable says. A stopped instance follows the variable on its next
# start; `start` on a running one asked for the other mode fails (stop it first).
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
#   AGORA_CONSUL_ACL            1 = ACLs on, default deny (dev only) (default: 0)
# A member of a cluster (scripts/consul-cluster.sh sets these) instead of a dev agent:
#   AGORA_CONSUL_ROLE           dev, server or client                (default: dev)
#   AGORA_CONSUL_SERVERS        with server: how many servers the cluster waits for
#   AGORA_CONSUL_JOIN           with server or client: HOST:SERF_LAN_PORT,… to join (retried)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

# --- Configuration ----------------------------------------------------------

CONSUL_HOST="$DAEMON_HOST"

port_declare http AGORA_CONSUL_HTTP_PORT 8500
port_declare dns AGORA_CONSUL_DNS_PORT 8600 off
port_declare server AGORA_CONSUL_SERVER_PORT 8300
port_declare serf_lan AGORA_CONSUL_SERF_LAN_PORT 8301
port_declare serf_wan AGORA_CONSUL_SERF_WAN_PORT 8302
port_declare grpc AGORA_CONSUL_GRPC_PORT 8502 off
port_declare grpc_tls AGORA_CONSUL_GRPC_TLS_PORT -1 off

CONSUL_ROLE="${AGORA_CONSUL_ROLE:-dev}"
case "$CONSUL_ROLE" in
  dev) ;;
  server)
    [[ "${AGORA_CONSUL_SERVERS:-}" =~ ^[1-9]$ ]] || die "AGORA_CONSUL_ROLE=server needs AGORA_CONSUL_SERVERS, 1 to 9"
    ;&
  client) [[ -n "${AGORA_CONSUL_JOIN:-}" ]] || die "AGORA_CONSUL_ROLE=$CONSUL_ROLE needs AGORA_CONSUL_JOIN" ;;
  *) die "AGORA_CONSUL_ROLE='$CONSUL_ROLE': use dev, server or client" ;;
esac
CONSUL_ACL_REQ="${AGORA_CONSUL_ACL:-0}"
[[ "$CONSUL_ACL_REQ" =~ ^[01]$ ]] || die "AGORA_CONSUL_ACL='$CONSUL_ACL_REQ': use 1 (ACLs on) or 0 (off)"

instance_init consul "${AGORA_CONSUL_INSTANCE:-dev}" AGORA_CONSUL_INSTANCE "$CACHE_DIR/consul"
CONSUL_CONF="$INSTANCE_ROOT/consul.hcl"  # rewritten on every start (while stopped)
CONSUL_DATA="$INSTANCE_ROOT/data"        # a server's Raft log; -dev keeps its state in memory
CONSUL_TOKEN="$INSTANCE_ROOT/token"      # the management token (AGORA_CONSUL_ACL=1), made once
CONSUL_MODE="$INSTANCE_ROOT/mode"        # AGORA_CONSUL_ACL=0|1 of the last start
# What our agent's command line contains (the config path is per instance).
INSTANCE_PATTERN="-config-file=$CONSUL_CONF"

CURL_TIMEOUT_SECS=2

# --- Helpers ----------------------------------------------------------------

# Where it listens, from PORTS as they are (no lookup).
instance_where() { printf 'http://%s:%s\n' "$CONSUL_HOST" "${PORTS[http]}"; }
INSTANCE_NOT_READY="has no leader on its HTTP port"

# CONSUL_ACL: the running instance's AGORA_CONSUL_ACL (its record), else the one asked for.
mode_load() { CONSUL_ACL="$(instance_mode AGORA_CONSUL_ACL)"; }

# Before `start`, under the instance's lock: a running instance keeps its mode.
mode_check_start() {
  # Every member of a cluster would need the same token (and the agents tokens of their own).
  [[ "$CONSUL_ACL_REQ" != 1 || "$CONSUL_ROLE" == dev ]] \
    || die "AGORA_CONSUL_ACL=1 is for a dev agent only, not AGORA_CONSUL_ROLE=$CONSUL_ROLE"
  instance_mode_check_start AGORA_CONSUL_ACL AGORA_CONSUL_INSTANCE
  mode_load
}

# The management token, made once (a random UUID), readable by the owner only.
token_ensure() {
  [[ -s "$CONSUL_TOKEN" ]] && return 0
  local token
  token="$(cat /proc/sys/kernel/random/uuid)" || die "cannot read /proc/sys/kernel/random/uuid"
  [[ "$token" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] \
    || die "/proc/sys/kernel/random/uuid gave '$token', not a UUID"
  mkdir -p "$INSTANCE_ROOT"
  (umask 077 && printf '%s\n' "$token" >"$CONSUL_TOKEN.tmp")
  mv -f "$CONSUL_TOKEN.tmp" "$CONSUL_TOKEN"
}

# curl ARGS...: with ACLs, sending the management token (as a header file on a pipe, so it
# shows in no process list).
consul_curl() {
  [[ "$CONSUL_ACL" == 1 ]] || { curl "$@"; return; }
  local token
  token="$(cat "$CONSUL_TOKEN" 2>/dev/null)" || return 1
  curl -H @<(printf 'X-Consul-Token: %s\n' "$token") "$@"
}

# True if our agent answers on its HTTP port and knows the leader: in dev mode it is the
# only server, so the leader must be itself (its own server port; proves it is ours, too); in
# a cluster, any server, once a quorum has elected one. With ACLs, the management token must
# work too (the leader makes it from the config once elected).
instance_ready() {
  local leader
  leader="$(consul_curl -fsS --max-time "$CURL_TIMEOUT_SECS" \
    "http://$CONSUL_HOST:${PORTS[http]}/v1/status/leader" 2>/dev/null)" || return 1
  case "$CONSUL_ROLE" in
    dev) [[ "$leader" == "\"$CONSUL_HOST:${PORTS[server]}\"" ]] || return 1 ;;
    *) [[ "$leader" =~ ^\"[^\"]+:[0-9]+\"$ ]] || return 1 ;;
  esac
  [[ "$CONSUL_ACL" != 1 ]] || consul_curl -fsS --max-time "$CURL_TIMEOUT_SECS" -o /dev/null \
    "http://$CONSUL_HOST:${PORTS[http]}/v1/acl/token/self" 2>/dev/null
}

# The config lines of its role: a server waits for AGORA_CONSUL_SERVERS servers before the
# first election and keeps Raft's fastest timing (a lost leader is replaced within seconds).
role_config() {
  local join
  join="$(sed 's/[^,]*/"&"/g' <<<"${AGORA_CONSUL_JOIN:-}")"
  case "$CONSUL_ROLE" in
    dev) ;;
    server) printf 'server = true\nbootstrap_expect = %s\nretry_join = [%s]\nperformance { raft_multiplier = 1 }\nui_config { enabled = true }\n' \
      "$AGORA_CONSUL_SERVERS" "$join" ;;
    client) printf 'server = false\nretry_join = [%s]\nui_config { enabled = true }\n' "$join" ;;
  esac
}

# The ACL block (AGORA_CONSUL_ACL=1): deny by default; the management token is the agent's too.
acl_config() {
  local token
  token="$(cat "$CONSUL_TOKEN")"
  cat <<EOF

# AGORA_CONSUL_ACL=1: nothing without a token. The management token (the instance's token
# file) is the agent's own too, so its anti-entropy sync (node and services) is allowed.
acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = "$token"
    agent = "$token"
  }
}
EOF
}

# The agent's config (PORTS resolved). A dev agent keeps the rest of -dev's settings. With
# ACLs it holds the token, so it is the owner's only.
instance_config() {
  mkdir -p "$INSTANCE_ROOT"
  rm -f "$CONSUL_CONF.tmp"
  if [[ "$CONSUL_ACL" == 1 ]]; then
    token_ensure
    (umask 077 && : >"$CONSUL_CONF.tmp")
  fi
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

$(role_config)

# Sessions as short as 1 s (Consul's floor is 10 s otherwise): Patroni's leader session lapses
# within its 10 s TTL, so a lost PostgreSQL primary is replaced that soon (scripts/patroni.sh).
session_ttl_min = "1s"

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
  if [[ "$CONSUL_ACL" == 1 ]]; then acl_config >>"$CONSUL_CONF.tmp"; fi
  mv -f "$CONSUL_CONF.tmp" "$CONSUL_CONF"
  mkdir -p "$CONSUL_DATA"
  printf 'AGORA_CONSUL_ACL=%s\n' "$CONSUL_ACL" >"$CONSUL_MODE"
}

instance_launch() {
  local -a dev=()
  [[ "$CONSUL_ROLE" != dev ]] || dev=(-dev)
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" \
    "$1" agent "${dev[@]}" -config-file="$CONSUL_CONF" -bind="$CONSUL_HOST" -client="$CONSUL_HOST"
}

# --- Subcommands (scripts/lib/daemon.sh) -----------------------------------

cmd_token() {
  [[ "$CONSUL_ACL" == 1 ]] \
    || die "ACLs are off for instance $INSTANCE_NAME (start it with AGORA_CONSUL_ACL=1)"
  [[ -s "$CONSUL_TOKEN" ]] || die "no token yet in $CONSUL_TOKEN; run: AGORA_CONSUL_ACL=1 $0 start"
  cat "$CONSUL_TOKEN"
}

instance_command() {
  case "$1" in
    url) instance_endpoint http http:// "" ;;
    addr) instance_endpoint http "" "" ;;
    dns) instance_endpoint dns "" "" ;;
    grpc) instance_endpoint grpc "" "" ;;
    token) cmd_token ;;
    *) usage ;;
  esac
}

mode_load
[[ "${1:-}" != start ]] || mode_check_start
instance_main "$@"
