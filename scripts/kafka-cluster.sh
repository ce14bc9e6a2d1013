#!/usr/bin/env bash
# A local Apache Kafka cluster of several KRaft nodes, for Agora's development and tests.
#
# Usage: scripts/kafka-cluster.sh {start|stop|status|brokers|busiest|kill N|start-member N|reset}
#
#   start           start every node (side by side: a node answers only once a majority of
#                   the controllers runs); no-op for the nodes that run already
#   stop            stop every node
#   status          each node's status (0 = all answer, 3 = none runs, 1 = some do not)
#   brokers         print the bootstrap list, host:port,host:port,…
#   busiest         print the number of the node that leads the most partitions (all topics)
#   kill N          SIGKILL node N, as a crash or a machine loss would
#   start-member N  start node N again (after kill or stop) where it was
#   reset           stop every node and delete the cluster's files
#
# Each node is a scripts/kafka.sh instance NAME-1 … NAME-N that is broker and controller at
# once: on one machine that is one JVM per node rather than one per role, and three of them
# form the controller quorum (a majority, 2, keeps it working). Topics get a replica on
# every node up to three, and a write is acknowledged once a majority of its replicas has it
# (min.insync.replicas), so losing any one node loses no acknowledged event and stops no
# producer for longer than the fencing of a silent broker (3 s).
#
# Environment:
#   AGORA_CACHE          cache root                              (default: $HOME/.cache/agora)
#   AGORA_KAFKA_CLUSTER  the cluster's name                      (default: ha)
#   AGORA_KAFKA_NODES    nodes, 1 to 9                           (default: 3)
#   AGORA_BIND_HOST      the address to listen on, one of this machine's (default: 127.0.0.1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER_OF=kafka CLUSTER="${AGORA_KAFKA_CLUSTER:-ha}" MEMBER_PORTS=(client controller)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/cluster.sh"

MEMBERS="${AGORA_KAFKA_NODES:-3}"
[[ "$MEMBERS" =~ ^[1-9]$ ]] || die "AGORA_KAFKA_NODES='$MEMBERS' is not 1 to 9"
REPLICATION=$((MEMBERS < 3 ? MEMBERS : 3))

# Every node formats its storage with the same cluster id (Kafka's 22-character form).
cluster_new() {
  printf 'CLUSTER_ID=%s\n' \
    "$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
}

member() {
  local n="$1"
  shift
  AGORA_KAFKA_INSTANCE="$CLUSTER-$n" AGORA_KAFKA_NODE_ID="$n" AGORA_KAFKA_PORT="$(member_port client "$n")" \
    AGORA_KAFKA_CONTROLLER_PORT="$(member_port controller "$n")" \
    AGORA_KAFKA_VOTERS="$(member_list controller "%s@$DAEMON_HOST:%s")" \
    AGORA_KAFKA_CLUSTER_ID="$CLUSTER_ID" AGORA_KAFKA_REPLICATION="$REPLICATION" \
    bash "$SCRIPT_DIR/kafka.sh" "$@"
}

# The node that leads the most partitions, as the first node that answers describes them.
busiest() {
  local n described=""
  for ((n = 1; n <= MEMBERS; n++)); do
    described="$(member "$n" topics --describe 2>/dev/null)" && break
  done
  [[ -n "$described" ]] || die "no node describes the topics"
  grep -o 'Leader: [0-9]*' <<<"$described" | awk '{ print $2 }' | sort | uniq -c | sort -rn | awk 'NR == 1 { print $2 }'
}

cluster_command() {
  case "$1" in
    brokers) cluster_existing; member_list client "$DAEMON_HOST:%.0s%s" ;;
    busiest) cluster_existing; busiest ;;
    *) usage ;;
  esac
}

cluster_main "$@"
