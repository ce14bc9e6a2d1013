#!/usr/bin/env bash
# A local replicated PostgreSQL, a primary and a synchronous standby that Patroni fails over,
# for Agora's development and tests.
#
# Usage: scripts/pg-cluster.sh {start|stop|status|url|primary|list|kill N|start-member N|create-db NAME...|reset}
#
#   start           start the members side by side (the first to start initialises the cluster,
#                   the others copy it) and wait until one leads and a synchronous standby follows
#   stop            stop every member
#   status          each member's status (0 = all answer, 3 = none runs, 1 = some do not)
#   url             print the cluster's URL: every member's address, and
#                   target_session_attrs=read-write, which Agora's services (and libpq) read as
#                   "whichever of these accepts writes"
#   primary         print the number of the member that leads now
#   list            print each member's number, address and role
#   kill N          SIGKILL member N, Patroni and PostgreSQL at once, as a machine loss would
#   start-member N  start member N again where it was (it rejoins as a standby)
#   create-db NAME  create each named database that does not exist yet (on the primary)
#   reset           stop every member and delete the cluster's files
#
# Members are scripts/patroni.sh instances NAME-1 … NAME-N, sharing the scope agora-NAME in the
# Consul agent AGORA_PG_CONSUL. Synchronous mode: a commit is acknowledged once the synchronous
# standby has it, and only that standby is promoted, so a failover loses no acknowledged commit.
#
# Environment:
#   AGORA_CACHE       cache root                                   (default: $HOME/.cache/agora)
#   AGORA_PG_CLUSTER  the cluster's name                           (default: ha)
#   AGORA_PG_MEMBERS  members, 2 or 3                              (default: 2)
#   AGORA_PG_CONSUL   HOST:PORT of the Consul agent Patroni uses (required by the first start,
#                     which records it: later commands default to the agent recorded)
#   AGORA_BIND_HOST   the address to listen on, one of this machine's (default: 127.0.0.1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER_OF=patroni CLUSTER="${AGORA_PG_CLUSTER:-ha}" MEMBER_PORTS=(pg api)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/cluster.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/pg.sh"

MEMBERS="${AGORA_PG_MEMBERS:-2}"
[[ "$MEMBERS" =~ ^[23]$ ]] || die "AGORA_PG_MEMBERS='$MEMBERS': use 2 or 3 (a primary and its standbys)"
SCOPE="agora-${CLUSTER,,}"
PG_SUPERUSER=agora

# A new cluster records its Consul agent.
cluster_new() {
  [[ -n "${AGORA_PG_CONSUL:-}" ]] || die "AGORA_PG_CONSUL is not set: the HOST:PORT of the Consul agent that keeps the cluster's state"
  printf 'CLUSTER_CONSUL=%s\n' "$AGORA_PG_CONSUL"
}

consul_agent() { printf '%s\n' "${AGORA_PG_CONSUL:-${CLUSTER_CONSUL:-}}"; }

member() {
  local n="$1"
  shift
  AGORA_PATRONI_INSTANCE="$CLUSTER-$n" AGORA_PATRONI_SCOPE="$SCOPE" AGORA_PATRONI_CONSUL="$(consul_agent)" \
    AGORA_PATRONI_PG_PORT="$(member_port pg "$n")" AGORA_PATRONI_API_PORT="$(member_port api "$n")" \
    bash "$SCRIPT_DIR/patroni.sh" "$@"
}

# member_is N PATH: true if member N's REST API answers PATH with 200 (/primary, /sync, …).
member_is() {
  curl -fsS -o /dev/null --max-time 2 "http://$DAEMON_HOST:$(member_port api "$1")$2" 2>/dev/null
}

# The number of the member that leads now, or fail.
primary() {
  local n
  for ((n = 1; n <= MEMBERS; n++)); do
    member_is "$n" /primary && { printf '%s\n' "$n"; return 0; }
  done
  return 1
}

# True if a member is the synchronous standby.
sync_standby() {
  local n
  for ((n = 1; n <= MEMBERS; n++)); do
    member_is "$n" /sync && return 0
  done
  return 1
}

# Writes are durable once a primary leads and a synchronous standby follows it.
cluster_started() {
  local deadline=$((SECONDS + 120))
  until primary >/dev/null && sync_standby; do
    ((SECONDS < deadline)) || die "no primary with a synchronous standby within 120 s (logs: $CACHE_DIR/patroni/$CLUSTER-*/patroni.log)"
    sleep 0.5
  done
  log "member $(primary) leads; a synchronous standby follows"
}

url() {
  printf 'postgres://%s@%s/postgres?target_session_attrs=read-write\n' "$PG_SUPERUSER" \
    "$(member_list pg "$DAEMON_HOST:%.0s%s")"
}

list() {
  local n
  for ((n = 1; n <= MEMBERS; n++)); do
    printf '%s %s:%s %s\n' "$n" "$DAEMON_HOST" "$(member_port pg "$n")" "$(member "$n" role 2>/dev/null || echo down)"
  done
}

# psql as the superuser on the primary's admin database (PRIMARY: its member number).
psql_primary() {
  "$(pg_bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$DAEMON_HOST" -p "$(member_port pg "$PRIMARY")" \
    -U "$PG_SUPERUSER" -d postgres "$@"
}

# On the member that leads; again for up to 30 s while none does or the one that did stops
# leading under our feet (a demotion after the DCS was out of reach, a failover).
create_db() {
  local tries
  for ((tries = 1; ; tries++)); do
    if PRIMARY="$(primary)" && pg_create_dbs psql_primary "$@"; then return 0; fi
    ((tries < 30)) || die "no member led long enough to create the databases (30 s)"
    sleep 1
  done
}

# Patroni keeps the cluster's state in Consul (under service/SCOPE/) and each member's liveness
# check in the agent: a cluster made again under the same name starts from nothing.
cluster_forget() {
  local n consul
  consul="http://$(consul_agent)"
  curl -fsS --max-time 5 -X DELETE "$consul/v1/kv/service/$SCOPE?recurse" >/dev/null 2>&1 \
    || { log "cannot reach Consul at ${consul#http://}: the cluster's keys there stay"; return 0; }
  for ((n = 1; n <= MEMBERS; n++)); do
    curl -fsS --max-time 5 -X PUT "$consul/v1/agent/check/deregister/agora-patroni-$CLUSTER-$n" >/dev/null 2>&1 || true
  done
  log "deleted the cluster's state in Consul (service/$SCOPE)"
}

cluster_command() {
  case "$1" in
    url) cluster_existing; url ;;
    primary) cluster_existing; primary || die "no member leads now" ;;
    list) cluster_existing; list ;;
    create-db) shift; cluster_existing; create_db "$@" ;;
    *) usage ;;
  esac
}

cluster_main "$@"
