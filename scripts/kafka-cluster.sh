#!/usr/bin/env bash
# A local Apache Kafka cluster of several KRaft nodes, for Agora's development and tests.
#
# Usage: scripts/kafka-cluster.sh {start|stop|status|brokers|kill N|start-node N|reset}
#
#   start         start every node (in parallel: a node answers only once a majority of the
#                 controllers runs); no-op for the nodes that run already
#   stop          stop every node
#   status        each node's status (0 = all answer, 3 = none runs, 1 = some do not answer)
#   brokers       print the bootstrap list, host:port,host:port,…
#   kill N        SIGKILL node N, as a crash or a machine loss would
#   start-node N  start node N again (after kill or stop) where it was
#   reset         stop every node and delete the cluster's files
#
# Each node is a scripts/kafka.sh instance NAME-1 … NAME-N that is broker and controller at
# once: on one machine that is one JVM per node rather than one per role, and three of them
# form the controller quorum (a majority, 2, keeps it working). Topics get a replica on
# every node up to three, and a write is acknowledged once a majority of its replicas has it
# (min.insync.replicas), so losing any one node loses no acknowledged event and stops no
# producer. The nodes' ports are chosen free once and kept, so a restarted node comes back
# where the others and the clients expect it.
#
# Environment:
#   AGORA_CACHE          cache root                              (default: $HOME/.cache/agora)
#   AGORA_KAFKA_CLUSTER  the cluster's name                      (default: ha)
#   AGORA_KAFKA_NODES    nodes, 1 to 9                           (default: 3)
#   AGORA_BIND_HOST      the address to listen on, one of this machine's (default: 127.0.0.1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

CLUSTER="${AGORA_KAFKA_CLUSTER:-ha}"
[[ "$CLUSTER" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
  || die "AGORA_KAFKA_CLUSTER='$CLUSTER': use letters, digits, '_', '.', '-'"
NODES="${AGORA_KAFKA_NODES:-3}"
[[ "$NODES" =~ ^[1-9]$ ]] || die "AGORA_KAFKA_NODES='$NODES' is not 1 to 9"
REPLICATION=$((NODES < 3 ? NODES : 3))
CLUSTER_ROOT="$CACHE_DIR/kafka/clusters/$CLUSTER"
STATE="$CLUSTER_ROOT/cluster"  # cluster id and every node's ports, chosen at the first start

# The cluster's id and ports: read from STATE, or chosen now and written there.
load_or_choose() {
  if [[ -f "$STATE" ]]; then
    # shellcheck source=/dev/null
    source "$STATE"
    [[ "${#CLIENT_PORTS[@]}" == "$NODES" ]] \
      || die "cluster $CLUSTER was made with ${#CLIENT_PORTS[@]} nodes, not $NODES; run: $0 reset"
    return 0
  fi
  mkdir -p "$CLUSTER_ROOT"
  CLUSTER_ID="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  CLIENT_PORTS=() CONTROLLER_PORTS=()
  local i port
  for ((i = 1; i <= NODES; i++)); do
    port="$(free_port)" || die "no free port on $DAEMON_HOST"
    DAEMON_TAKEN_PORTS+="$port "
    CLIENT_PORTS+=("$port")
    port="$(free_port)" || die "no free port on $DAEMON_HOST"
    DAEMON_TAKEN_PORTS+="$port "
    CONTROLLER_PORTS+=("$port")
  done
  {
    printf 'CLUSTER_ID=%s\n' "$CLUSTER_ID"
    printf 'CLIENT_PORTS=(%s)\n' "${CLIENT_PORTS[*]}"
    printf 'CONTROLLER_PORTS=(%s)\n' "${CONTROLLER_PORTS[*]}"
  } >"$STATE.tmp"
  mv -f "$STATE.tmp" "$STATE"
}

voters() {
  local i out=()
  for ((i = 1; i <= NODES; i++)); do out+=("$i@$DAEMON_HOST:${CONTROLLER_PORTS[i - 1]}"); done
  (IFS=,; printf '%s\n' "${out[*]}")
}

# node N ARGS...: scripts/kafka.sh ARGS... as node N of the cluster.
node() {
  local n="$1"
  shift
  [[ "$n" =~ ^[1-9]$ ]] && ((n <= NODES)) || die "node '$n': the cluster has nodes 1 to $NODES"
  AGORA_KAFKA_INSTANCE="$CLUSTER-$n" AGORA_KAFKA_NODE_ID="$n" AGORA_KAFKA_PORT="${CLIENT_PORTS[n - 1]}" \
    AGORA_KAFKA_CONTROLLER_PORT="${CONTROLLER_PORTS[n - 1]}" AGORA_KAFKA_VOTERS="$(voters)" \
    AGORA_KAFKA_CLUSTER_ID="$CLUSTER_ID" AGORA_KAFKA_REPLICATION="$REPLICATION" \
    bash "$SCRIPT_DIR/kafka.sh" "$@" 9>&-
}

# every ARGS...: `node N ARGS...` for every node at once; fails if any of them failed.
every() {
  local i failed=0
  local -a pids=()
  for ((i = 1; i <= NODES; i++)); do
    node "$i" "$@" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[i]}" || { log "node $((i + 1)): kafka.sh $1 failed"; failed=1; }
  done
  return "$failed"
}

cmd_start() {
  daemon_lock "$CLUSTER_ROOT/.lock" 900
  load_or_choose
  # Installed once before the nodes start side by side.
  bash "$SCRIPT_DIR/kafka.sh" install 9>&-
  log "starting cluster $CLUSTER: $NODES nodes, replication $REPLICATION, on $(brokers)"
  every start || die "cluster $CLUSTER did not start (logs: $CACHE_DIR/kafka/instances/$CLUSTER-*/)"
  log "ready: $(brokers)"
}

brokers() {
  local i out=()
  for ((i = 1; i <= NODES; i++)); do out+=("$DAEMON_HOST:${CLIENT_PORTS[i - 1]}"); done
  (IFS=,; printf '%s\n' "${out[*]}")
}

cmd_status() {
  [[ -f "$STATE" ]] || { log "cluster $CLUSTER does not exist"; return 3; }
  load_or_choose
  local i rc answering=0 running=0
  for ((i = 1; i <= NODES; i++)); do
    rc=0
    node "$i" status || rc=$?
    ((rc == 0)) && answering=$((answering + 1))
    ((rc != 3)) && running=$((running + 1))
  done
  ((answering == NODES)) && return 0
  ((running == 0)) && return 3
  return 1
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) [[ -f "$STATE" ]] || { log "cluster $CLUSTER does not exist"; exit 0; }; load_or_choose; every stop ;;
    status) cmd_status ;;
    brokers) [[ -f "$STATE" ]] || die "cluster $CLUSTER does not exist; run: $0 start"; load_or_choose; brokers ;;
    kill) load_or_choose; node "${2:?kill needs a node number}" kill ;;
    start-node) load_or_choose; node "${2:?start-node needs a node number}" start ;;
    reset)
      if [[ -f "$STATE" ]]; then load_or_choose; every reset; fi
      log "deleting cluster $CLUSTER ($CLUSTER_ROOT)"
      rm -rf "$CLUSTER_ROOT"
      ;;
    *) usage ;;
  esac
}

main "$@"
