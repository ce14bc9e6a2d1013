#!/usr/bin/env bash
# A local Consul cluster, three servers and the agent the platform's processes talk to, for
# Agora's development and tests.
#
# Usage: scripts/consul-cluster.sh {start|stop|status|addr|url|leader|kill N|start-member N|reset}
#
#   start           start the servers and the agent (side by side: the servers elect a leader
#                   once a majority of them runs); no-op for the members that run already
#   stop            stop every member
#   status          each member's status (0 = all answer, 3 = none runs, 1 = some do not)
#   addr, url       print the agent's HTTP address (HOST:PORT) or URL: what processes use
#   leader          print the number of the server that leads now
#   kill N          SIGKILL member N (1 … servers: a server; the last: the agent)
#   start-member N  start member N again where it was
#   reset           stop every member and delete the cluster's files
#
# Members 1 … N are scripts/consul.sh instances NAME-1 … NAME-N in server mode: they keep
# the catalog in Raft, so it survives the loss of any minority of them, and a lost leader is
# replaced by an election among the others within seconds. Member N+1, NAME-agent, is a
# client agent: services register with it, as they would with the agent on their machine,
# and it forwards to whichever server leads. Nothing re-registers when a server dies.
#
# Environment:
#   AGORA_CACHE           cache root                             (default: $HOME/.cache/agora)
#   AGORA_CONSUL_CLUSTER  the cluster's name                     (default: ha)
#   AGORA_CONSUL_SERVERS  servers, 1 to 7, odd                   (default: 3)
#   AGORA_BIND_HOST       the address to listen on, one of this machine's (default: 127.0.0.1)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER_OF=consul CLUSTER="${AGORA_CONSUL_CLUSTER:-ha}" MEMBER_PORTS=(http server serf_lan serf_wan)
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/cluster.sh"

SERVERS="${AGORA_CONSUL_SERVERS:-3}"
[[ "$SERVERS" =~ ^[1357]$ ]] || die "AGORA_CONSUL_SERVERS='$SERVERS': use 1, 3, 5 or 7 (a majority must survive)"
MEMBERS=$((SERVERS + 1))  # the servers, then the agent

member() {
  local n="$1" name role
  shift
  if ((n <= SERVERS)); then name="$CLUSTER-$n" role=server; else name="$CLUSTER-agent" role=client; fi
  AGORA_CONSUL_INSTANCE="$name" AGORA_CONSUL_ROLE="$role" AGORA_CONSUL_SERVERS="$SERVERS" \
    AGORA_CONSUL_JOIN="$(member_list serf_lan "$DAEMON_HOST:%.0s%s")" \
    AGORA_CONSUL_HTTP_PORT="$(member_port http "$n")" AGORA_CONSUL_SERVER_PORT="$(member_port server "$n")" \
    AGORA_CONSUL_SERF_LAN_PORT="$(member_port serf_lan "$n")" AGORA_CONSUL_SERF_WAN_PORT="$(member_port serf_wan "$n")" \
    AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1 \
    bash "$SCRIPT_DIR/consul.sh" "$@"
}

# The number of the server whose server port the agent names as the leader's.
leader() {
  local said n
  said="$(curl -fsS --max-time 2 "http://$DAEMON_HOST:$(member_port http "$MEMBERS")/v1/status/leader")" \
    || die "the agent does not answer"
  for ((n = 1; n <= SERVERS; n++)); do
    [[ "$said" == "\"$DAEMON_HOST:$(member_port server "$n")\"" ]] && { printf '%s\n' "$n"; return 0; }
  done
  die "no server leads now (the agent says $said)"
}

cluster_command() {
  case "$1" in
    addr) cluster_existing; printf '%s:%s\n' "$DAEMON_HOST" "$(member_port http "$MEMBERS")" ;;
    url) cluster_existing; printf 'http://%s:%s\n' "$DAEMON_HOST" "$(member_port http "$MEMBERS")" ;;
    leader) cluster_existing; leader ;;
    *) usage ;;
  esac
}

cluster_main "$@"
