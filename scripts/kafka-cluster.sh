#!/usr/bin/env bash
# A local Apache Kafka cluster of several KRaft nodes, for Agora's development and tests.
#
# Usage: scripts/kafka-cluster.sh {start|stop|status|brokers [CLIENT]|busiest|kill N|start-member N|reset}
#
#   start           start every node (side by side: a node answers only once a majority of
#                   the controllers runs); no-op for the nodes that run already
#   stop            stop every node
#   status          each node's status (0 = all answer, 3 = none runs, 1 = some do not)
#   brokers [CLIENT]
#                   print the bootstrap list, host:port,host:port,… (CLIENT's own proxies when
#                   the cluster is proxied)
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
# Proxied (AGORA_KAFKA_PROXIED): every path to a node and between two nodes goes through a
# proxy of the stack's Toxiproxy (scripts/toxiproxy.sh, instance AGORA_TOXIPROXY_INSTANCE), so
# faults can be put on one path:
#   CLIENT.kafka.N   client process CLIENT to node N: node N has a listener of CLIENT's own,
#                    advertised at this proxy, so CLIENT's metadata names only its own proxies
#   kafka.N-M.peer   node N to node M (replication): node N reaches the others on a listener
#                    of its own (PEER_N), advertised at these proxies
#   kafka.N-M.raft   node N to node M's controller (votes, heartbeats): node N's voter list
# The plain listener (tools, the readiness check) stays direct. The clients' listeners' ports
# are chosen once and kept in the cluster's directory, like the nodes' own.
#
# Environment:
#   AGORA_CACHE          cache root                              (default: $HOME/.cache/agora)
#   AGORA_KAFKA_PROXIED  the client processes to give paths of their own (space-separated),
#                        or "none"; kept with the cluster once given   (default: as kept, none)
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

# Every node formats its storage with the same cluster id (Kafka's 22-character form). Like
# Kafka's own, never one that starts with '-', which kafka-storage would read as an option (one
# in 64 did, and failed a test run).
cluster_new() {
  printf 'CLUSTER_ID=%s\n' "$(python3 -c '
import base64, uuid
id = "-"
while id.startswith("-"):
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
print(id)')"
}

member() {
  local n="$1"
  shift
  local voters extra="" inter=PLAINTEXT
  voters="$(member_list controller "%s@$DAEMON_HOST:%s")"
  # The proxied paths are worked out (and their proxies made) where a node starts.
  if [[ "$1" == start && -n "$(proxied)" ]]; then
    proxied_paths "$n"
    voters="$PROXIED_VOTERS" extra="$PROXIED_LISTENERS" inter="PEER_$n"
  fi
  AGORA_KAFKA_INSTANCE="$CLUSTER-$n" AGORA_KAFKA_NODE_ID="$n" AGORA_KAFKA_PORT="$(member_port client "$n")" \
    AGORA_KAFKA_CONTROLLER_PORT="$(member_port controller "$n")" AGORA_KAFKA_VOTERS="$voters" \
    AGORA_KAFKA_LISTENERS_EXTRA="$extra" AGORA_KAFKA_INTER_BROKER_LISTENER="$inter" \
    AGORA_KAFKA_CLUSTER_ID="$CLUSTER_ID" AGORA_KAFKA_REPLICATION="$REPLICATION" \
    bash "$SCRIPT_DIR/kafka.sh" "$@"
}

# --- Proxied paths (AGORA_KAFKA_PROXIED) ---------------------------------------

# The client processes with paths of their own (empty: not proxied), as kept.
proxied() {
  if [[ -f "$CLUSTER_ROOT/proxied" ]]; then cat "$CLUSTER_ROOT/proxied"; fi
}

# Keeps AGORA_KAFKA_PROXIED with the cluster and chooses the ports of its listeners, once,
# before the nodes start side by side (which then only read them).
proxied_prepare() {
  [[ -n "${AGORA_KAFKA_PROXIED:-}" ]] || return 0
  mkdir -p "$CLUSTER_ROOT"
  if [[ "$AGORA_KAFKA_PROXIED" == none ]]; then : >"$CLUSTER_ROOT/proxied.tmp"; else
    printf '%s\n' "$AGORA_KAFKA_PROXIED" >"$CLUSTER_ROOT/proxied.tmp"
  fi
  mv -f "$CLUSTER_ROOT/proxied.tmp" "$CLUSTER_ROOT/proxied"
  local n m client
  for ((n = 1; n <= MEMBERS; n++)); do
    for client in $(proxied); do proxied_port "$client" "$n" >/dev/null; done
    for ((m = 1; m <= MEMBERS; m++)); do proxied_port "peer-$m" "$n" >/dev/null; done
  done
}

# proxied_port KEY N: the port of node N's listener KEY (a client process, or peer-M),
# chosen free once and kept.
proxied_port() {
  local ports="$CLUSTER_ROOT/proxied-ports" port
  port="$(awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3 }' "$ports" 2>/dev/null || true)"
  if [[ -z "$port" ]]; then
    port="$(free_port)" || die "no free port on $DAEMON_HOST"
    DAEMON_TAKEN_PORTS+="$port "
    printf '%s %s %s\n' "$1" "$2" "$port" >>"$ports"
  fi
  printf '%s\n' "$port"
}

# A listener name for a client process: order-service-2 -> C_ORDER_SERVICE_2.
listener_of() { local name="${1^^}"; printf 'C_%s\n' "${name//[^A-Z0-9]/_}"; }

# proxied_paths N: node N's extra listeners (PROXIED_LISTENERS) and voter list
# (PROXIED_VOTERS), with the proxies they name made in one call:
#   C_CLIENT  per client process, advertised at CLIENT.kafka.N;
#   PEER_M    per node M, advertised at kafka.M-N.peer (node M reaches node N there; node
#             N's own is direct, and is the listener it reaches the others on);
#   voters    the other nodes' controllers through kafka.N-M.raft, its own direct.
proxied_paths() {
  local n="$1" m client port
  local -a pairs=() listeners=() voters=() addresses
  for client in $(proxied); do
    port="$(proxied_port "$client" "$n")"
    listeners+=("$(listener_of "$client")=$port@")
    pairs+=("$client.kafka.$n" "$DAEMON_HOST:$port")
  done
  for ((m = 1; m <= MEMBERS; m++)); do
    port="$(proxied_port "peer-$m" "$n")"
    if ((m == n)); then
      listeners+=("PEER_$m=$port@$DAEMON_HOST:$port")
    else
      listeners+=("PEER_$m=$port@")
      pairs+=("kafka.$m-$n.peer" "$DAEMON_HOST:$port")
    fi
  done
  for ((m = 1; m <= MEMBERS; m++)); do
    if ((m == n)); then
      voters+=("$m@$DAEMON_HOST:$(member_port controller "$m")")
    else
      voters+=("$m@")
      pairs+=("kafka.$n-$m.raft" "$DAEMON_HOST:$(member_port controller "$m")")
    fi
  done
  mapfile -t addresses < <(bash "$SCRIPT_DIR/toxiproxy.sh" proxy "${pairs[@]}")
  ((${#addresses[@]} == ${#pairs[@]} / 2)) || die "could not make node $n's proxies"
  # The entries that end in @ take the proxies' addresses, in order.
  local i next=0
  for i in "${!listeners[@]}"; do
    if [[ "${listeners[i]}" == *@ ]]; then listeners[i]+="${addresses[next]}"; next=$((next + 1)); fi
  done
  for i in "${!voters[@]}"; do
    if [[ "${voters[i]}" == *@ ]]; then voters[i]+="${addresses[next]}"; next=$((next + 1)); fi
  done
  PROXIED_LISTENERS="${listeners[*]}"
  PROXIED_VOTERS="$(IFS=,; printf '%s' "${voters[*]}")"
}

# brokers CLIENT: CLIENT's own bootstrap list when proxied (its proxies made if missing), else
# the plain one.
brokers_of() {
  local client="$1" n pairs=()
  if [[ -z "$client" || " $(proxied | tr '\n' ' ') " != *" $client "* ]]; then
    member_list client "$DAEMON_HOST:%.0s%s"
    return 0
  fi
  for ((n = 1; n <= MEMBERS; n++)); do
    pairs+=("$client.kafka.$n" "$DAEMON_HOST:$(proxied_port "$client" "$n")")
  done
  bash "$SCRIPT_DIR/toxiproxy.sh" proxy "${pairs[@]}" | paste -sd, -
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
    brokers) cluster_existing; brokers_of "${2:-}" ;;
    busiest) cluster_existing; busiest ;;
    *) usage ;;
  esac
}

case "${1:-}" in start | start-member) proxied_prepare ;; esac
cluster_main "$@"
