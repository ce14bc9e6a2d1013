# shellcheck shell=bash
# A cluster of several members, each an instance of one component script (kafka-cluster.sh
# runs kafka.sh nodes, consul-cluster.sh consul.sh servers and an agent): their ports, chosen
# free once and kept so that a restarted member comes back where the others expect it, and
# the subcommands that act on every member or on one.
#
# The sourcing script sets, before sourcing it (it sources lib/daemon.sh),
#   CLUSTER_OF       the component (kafka, consul): the cluster lives in
#                    $AGORA_CACHE/CLUSTER_OF/clusters/NAME (its state file and its lock)
#   CLUSTER          the cluster's name (checked here)
#   MEMBER_PORTS     the listeners of each member, e.g. (client controller)
# then MEMBERS, how many members, and defines
#   member N ARGS...    the component script's ARGS... as member N (ports: member_port KEY N)
#   cluster_new         prints extra KEY=VALUE state lines for a new cluster (optional: a
#                       cluster id)
#   cluster_started     runs after every member started (optional)
#   cluster_forget      runs when the cluster is reset, after its members (optional: state it
#                       keeps elsewhere, as Patroni's in Consul)
# Each member is an instance of scripts/CLUSTER_OF.sh, which `start` installs once first.
#   cluster_command     its own subcommands (cluster_existing loads the state); ends in
#                       `*) usage`

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

[[ "$CLUSTER" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
  || die "cluster name '$CLUSTER': use letters, digits, '_', '.', '-'"
CLUSTER_ROOT="$CACHE_DIR/$CLUSTER_OF/clusters/$CLUSTER"
CLUSTER_STATE="$CLUSTER_ROOT/cluster"

# The cluster's state (member ports, and cluster_new's lines): read, or chosen now and saved.
cluster_state() {
  if [[ -f "$CLUSTER_STATE" ]]; then
    # shellcheck source=/dev/null
    source "$CLUSTER_STATE"
    [[ "${CLUSTER_MEMBERS:-}" == "$MEMBERS" ]] \
      || die "cluster $CLUSTER was made with ${CLUSTER_MEMBERS:-?} members, not $MEMBERS; run: $0 reset"
    return 0
  fi
  mkdir -p "$CLUSTER_ROOT"
  local key i port
  local -a chosen
  {
    printf 'CLUSTER_MEMBERS=%s\n' "$MEMBERS"
    for key in "${MEMBER_PORTS[@]}"; do
      chosen=()
      for ((i = 1; i <= MEMBERS; i++)); do
        port="$(free_port)" || die "no free port on $DAEMON_HOST"
        DAEMON_TAKEN_PORTS+="$port "
        chosen+=("$port")
      done
      printf 'CLUSTER_PORTS_%s=(%s)\n' "$key" "${chosen[*]}"
    done
    if declare -F cluster_new >/dev/null; then cluster_new; fi
  } >"$CLUSTER_STATE.tmp"
  mv -f "$CLUSTER_STATE.tmp" "$CLUSTER_STATE"
  # shellcheck source=/dev/null
  source "$CLUSTER_STATE"
}

# member_port KEY N: member N's port for listener KEY.
member_port() {
  local -n ports="CLUSTER_PORTS_$1"
  printf '%s\n' "${ports[$2 - 1]}"
}

# member_list KEY FORMAT: FORMAT (printf, with %s for the member's number and %s for its
# port) for every member, joined by commas.
member_list() {
  local i out=()
  for ((i = 1; i <= MEMBERS; i++)); do
    # shellcheck disable=SC2059  # the format is the caller's
    out+=("$(printf "$2" "$i" "$(member_port "$1" "$i")")")
  done
  (IFS=,; printf '%s\n' "${out[*]}")
}

# valid_member N: dies unless N is one of the members.
valid_member() {
  [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= MEMBERS)) || die "member '$1': the cluster has 1 to $MEMBERS"
}

# cluster_every ARGS...: `member N ARGS...` for every member at once; fails if any failed.
cluster_every() {
  local i failed=0
  local -a pids=()
  for ((i = 1; i <= MEMBERS; i++)); do
    member "$i" "$@" 9>&- &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[i]}" || { log "member $((i + 1)): $1 failed"; failed=1; }
  done
  return "$failed"
}

cluster_start() {
  daemon_lock "$CLUSTER_ROOT/.lock" 900
  cluster_state
  # Installed once, before the members start side by side.
  bash "$(dirname "${BASH_SOURCE[0]}")/../$CLUSTER_OF.sh" install 9>&-
  log "starting cluster $CLUSTER ($MEMBERS members)"
  # Side by side: a member answers only once a majority of the members runs.
  cluster_every start || die "cluster $CLUSTER did not start (see the members' logs above)"
  if declare -F cluster_started >/dev/null; then cluster_started; fi
  log "cluster $CLUSTER ready"
}

# 0 = every member answers, 3 = none runs, 1 = some do not answer.
cluster_status() {
  [[ -f "$CLUSTER_STATE" ]] || { log "cluster $CLUSTER does not exist"; return 3; }
  cluster_state
  local i rc answering=0 running=0
  for ((i = 1; i <= MEMBERS; i++)); do
    rc=0
    member "$i" status || rc=$?
    ((rc == 0)) && answering=$((answering + 1))
    ((rc != 3)) && running=$((running + 1))
  done
  ((answering == MEMBERS)) && return 0
  ((running == 0)) && return 3
  return 1
}

cluster_reset() {
  if [[ -f "$CLUSTER_STATE" ]]; then
    cluster_state
    cluster_every reset || true
    if declare -F cluster_forget >/dev/null; then cluster_forget || true; fi
  fi
  log "deleting cluster $CLUSTER ($CLUSTER_ROOT)"
  rm -rf "$CLUSTER_ROOT"
}

# cluster_main ARGS...: start, stop, status, kill N, start-member N, reset; any other goes
# to cluster_command.
cluster_main() {
  case "${1:-}" in
    start) cluster_start ;;
    stop)
      [[ -f "$CLUSTER_STATE" ]] || { log "cluster $CLUSTER does not exist"; return 0; }
      cluster_state
      cluster_every stop
      ;;
    status) cluster_status ;;
    kill | start-member)
      cluster_state
      valid_member "${2:-}"
      member "$2" "${1/start-member/start}"
      ;;
    reset) cluster_reset ;;
    *) cluster_command "$@" ;;
  esac
}

# The state of a cluster that must exist (for cluster_command's printers).
cluster_existing() {
  [[ -f "$CLUSTER_STATE" ]] || die "cluster $CLUSTER does not exist; run: $0 start"
  cluster_state
}
