#!/usr/bin/env bash
# One member of a replicated PostgreSQL cluster: a PostgreSQL server run by Patroni, which keeps
# the cluster's state in Consul and promotes a synchronous standby when the primary is lost.
# scripts/pg-cluster.sh runs the members side by side; this script is one of them.
#
# Usage: scripts/patroni.sh {install|start|stop|kill|status|ports|reset|role}
#
#   install  install PostgreSQL (Debian's) and Patroni (PyPI, in a private virtualenv)
#   start    init (the first member to start) or clone the primary (the others), and run;
#            returns once its PostgreSQL answers; no-op if it runs already
#   stop     SIGTERM Patroni, which stops its PostgreSQL cleanly and, if it led, hands the
#            lead to the synchronous standby at once
#   kill     SIGKILL Patroni and its PostgreSQL at once, as the loss of their machine would
#   status   0 = its PostgreSQL runs and answers, 3 = not running, 1 = runs but does not answer
#   ports    print its ports (pg, api) as key=port lines
#   reset    stop it and delete its files (data included)
#   role     print what Patroni says it is: primary, replica, or down
#
# Every member listens on one address (127.0.0.1 or AGORA_BIND_HOST); its REST API (port api)
# answers the health checks (/health, /primary, /replica, /sync). The cluster's settings are
# those of the first bootstrap (written to Consul), among them:
#   synchronous_mode   a commit is acknowledged only once the synchronous standby has it, and
#                      only that standby may be promoted: a failover loses no acknowledged commit
#                      (and while no standby is synchronous, as just after one rejoined, a lost
#                      primary is not replaced: availability yields to durability)
#   ttl 20, loop_wait 1, retry_timeout 5
#                      the leader lock is a Consul session; Patroni's floor for its TTL is 20 s
# The session is also bound to a Consul TTL check that a heartbeat passes each second while
# this member's Patroni runs, and Consul ends a session whose check fails at once: a lost
# primary's lock goes within the check's 3 s TTL, and the standby takes the lead at its next
# loop. Measured here: the new primary leads 4.2 to 4.5 s after the kill; a stopped primary
# hands over at once. A member that comes back rewinds (pg_rewind) and follows in about 1.5 s.
# Unless AGORA_PG_DURABLE=1 the servers skip fsync (kills lose nothing: the kernel keeps what a
# killed process wrote), which fits disposable data only.
#
# Environment:
#   AGORA_CACHE              cache root                              (default: $HOME/.cache/agora)
#   AGORA_PATRONI_INSTANCE   the member's name; its files live in $AGORA_CACHE/patroni/NAME (default: agora-1)
#   AGORA_PATRONI_SCOPE      the cluster's name, shared by its members (default: agora)
#   AGORA_PATRONI_CONSUL     HOST:PORT of the Consul agent that keeps the cluster's state (required)
#   AGORA_PATRONI_PG_PORT    PostgreSQL's port, 0 = any free one      (default: 0)
#   AGORA_PATRONI_API_PORT   Patroni's REST API port, 0 = any free one (default: 0)
#   AGORA_PG_DURABLE         1 = fsync on                             (default: 0)
#   AGORA_BIND_HOST          the address to listen on, one of this machine's (default: 127.0.0.1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/pg.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"

port_declare pg AGORA_PATRONI_PG_PORT 0
port_declare api AGORA_PATRONI_API_PORT 0
SCOPE="${AGORA_PATRONI_SCOPE:-agora}"
[[ "$SCOPE" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "AGORA_PATRONI_SCOPE='$SCOPE': use lowercase letters, digits and '-'"
PG_SUPERUSER="agora"

instance_init patroni "${AGORA_PATRONI_INSTANCE:-$SCOPE-1}" AGORA_PATRONI_INSTANCE "$CACHE_DIR/patroni"
VENV="$CACHE_DIR/patroni/venv"
PATRONI="$VENV/bin/patroni"
# Records what is installed, so a changed pin installs again.
VENV_STAMP="$VENV/.agora-requirements"
REQUIREMENT="patroni[consul,psycopg2-binary]==$PATRONI_VERSION"
PATRONI_CONF="$INSTANCE_ROOT/patroni.yml"
PG_DATA="$INSTANCE_ROOT/data"
PG_SOCKET_DIR="$INSTANCE_ROOT/run"
INSTANCE_PATTERN="$PATRONI_CONF"
INSTANCE_NOT_READY="its PostgreSQL does not answer"
# A member that starts after the primary first copies it (pg_basebackup).
INSTANCE_START_TIMEOUT_SECS=120
INSTANCE_STOP_TIMEOUT_SECS=40

# --- Installation -----------------------------------------------------------

instance_install() {
  pg_install
  [[ -x "$PATRONI" && "$(cat "$VENV_STAMP" 2>/dev/null)" == "$REQUIREMENT" ]] && return 0
  python3 -c 'import ensurepip, venv' 2>/dev/null || {
    is_root || die "python3 lacks the venv module; install Debian's python3-venv (needs root)"
    log "installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  }
  log "installing $REQUIREMENT in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$REQUIREMENT" >&2 \
    || die "pip could not install $REQUIREMENT"
  [[ -x "$PATRONI" ]] || die "pip finished but $PATRONI is missing"
  printf '%s' "$REQUIREMENT" >"$VENV_STAMP"
}

instance_binary() {
  instance_install >&2
  printf '%s\n' "$PATRONI"
}

# --- The member -------------------------------------------------------------

instance_where() { printf '%s:%s (API %s)\n' "$DAEMON_HOST" "${PORTS[pg]}" "${PORTS[api]}"; }

api() { curl -fsS --max-time 2 "http://$DAEMON_HOST:${PORTS[api]}$1"; }

# Its PostgreSQL runs (as primary or as a replica that streams or replays).
instance_ready() { api /health >/dev/null 2>&1; }

instance_config() {
  [[ -n "${AGORA_PATRONI_CONSUL:-}" ]] || die "AGORA_PATRONI_CONSUL is not set: the HOST:PORT of a Consul agent"
  local bin_dir fsync=on
  bin_dir="$(pg_bin_dir)" || die "PostgreSQL server not installed; run: $0 install"
  [[ "${AGORA_PG_DURABLE:-0}" == 1 ]] || fsync=off
  pg_prepare_user "$INSTANCE_ROOT"
  as_pg mkdir -p "$PG_SOCKET_DIR"
  as_pg tee "$PATRONI_CONF" >/dev/null <<EOF
# Generated by scripts/patroni.sh on each start; edits are overwritten.
scope: $SCOPE
name: $INSTANCE_NAME
log:
  level: INFO
restapi:
  listen: $DAEMON_HOST:${PORTS[api]}
  connect_address: $DAEMON_HOST:${PORTS[api]}
consul:
  host: $AGORA_PATRONI_CONSUL
  # The leader session lives only while this member's liveness check passes.
  checks: [$(liveness_check_id)]
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    synchronous_mode: true
    postgresql:
      # A lost primary that comes back rewinds to the new primary's timeline, or, if it
      # cannot, copies it again: the commits it alone had were never acknowledged.
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        max_connections: 300
        wal_log_hints: 'on'
        synchronous_commit: 'on'
        fsync: '$fsync'
        full_page_writes: '$fsync'
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: $DAEMON_HOST:${PORTS[pg]}
  connect_address: $DAEMON_HOST:${PORTS[pg]}
  data_dir: $PG_DATA
  bin_dir: $bin_dir
  pgpass: $INSTANCE_ROOT/pgpass
  authentication:
    superuser:
      username: $PG_SUPERUSER
    replication:
      username: replicator
    rewind:
      username: $PG_SUPERUSER
  parameters:
    unix_socket_directories: '$PG_SOCKET_DIR'
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all $DAEMON_HOST/32 trust
    - host replication replicator $DAEMON_HOST/32 trust
EOF
}

# The Consul check that Patroni's session is bound to: a TTL check that a heartbeat passes each
# second while this member's Patroni process lives. Consul ends a session whose check turns
# critical at once, so a lost member's leader lock is released within the check's 3 s TTL, not
# when the session's own TTL runs out (20 s at least, Patroni's floor, doubled by Consul). The
# check cannot be Patroni's REST API: Patroni takes its session before it serves that API.
liveness_check_id() { printf 'agora-patroni-%s\n' "$INSTANCE_NAME"; }

register_liveness_check() {
  curl -fsS --max-time 5 -X PUT "http://$AGORA_PATRONI_CONSUL/v1/agent/check/register" -d @- >/dev/null <<EOF \
    || die "cannot register the liveness check with the Consul agent at $AGORA_PATRONI_CONSUL"
{"ID": "$(liveness_check_id)", "Name": "Patroni $INSTANCE_NAME runs", "TTL": "3s", "Status": "passing"}
EOF
}

# The heartbeat: passes the check each second until process $1 (Patroni) is gone.
start_heartbeat() {
  local pass="http://$AGORA_PATRONI_CONSUL/v1/agent/check/pass/$(liveness_check_id)"
  # shellcheck disable=SC2016  # expanded by the inner shell
  daemon_launch "$INSTANCE_ROOT/heartbeat.pid" "$INSTANCE_ROOT/heartbeat.log" bash -c \
    'while kill -0 "$1" 2>/dev/null; do curl -fsS --max-time 1 -X PUT "$2" >/dev/null || true; sleep 1; done' \
    agora-patroni-heartbeat "$1" "$pass"
}

instance_launch() {
  register_liveness_check
  local -a as_user
  mapfile -t as_user < <(pg_as_user_prefix)
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" "${as_user[@]}" "$1" "$PATRONI_CONF"
  local patroni="$DAEMON_LAUNCHED_PID"
  start_heartbeat "$patroni"
  DAEMON_LAUNCHED_PID="$patroni"
}

# The postmaster Patroni started, if it runs: Patroni gives it a session of its own, so the
# signals that reach Patroni's process group miss it.
postmaster_pid() {
  local pid
  pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PG_DATA" || return 1
  printf '%s\n' "$pid"
}

# After Patroni is gone (daemon.sh's hook): its heartbeat stops, and a postmaster it left
# behind gets the same signal (a stopped Patroni stops its own; a killed one cannot).
instance_stopped() {
  local pid signal="$1"
  daemon_stop "$INSTANCE_ROOT/heartbeat.pid" agora-patroni-heartbeat 5 >/dev/null 2>&1 || true
  pid="$(postmaster_pid)" || return 0
  [[ "$signal" == KILL ]] || signal=INT  # PostgreSQL's fast shutdown
  log "stopping the PostgreSQL Patroni left (pid $pid, SIG$signal)"
  kill -"$signal" -- "-$pid" 2>/dev/null || kill -"$signal" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while pid_alive "$pid"; do
    ((SECONDS < deadline)) || die "PostgreSQL (pid $pid) still runs after 30 s"
    sleep 0.1
  done
}

role() {
  instance_load_ports
  local said
  said="$(api /patroni 2>/dev/null)" || { printf 'down\n'; return 0; }
  python3 -c 'import json, sys; r = json.load(sys.stdin).get("role", "down"); print("primary" if r in ("primary", "master") else r)' <<<"$said"
}

instance_command() {
  case "$1" in
    role) role ;;
    *) usage ;;
  esac
}

instance_main "$@"
