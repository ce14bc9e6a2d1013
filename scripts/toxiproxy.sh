#!/usr/bin/env bash
# Network faults between two parts of a local stack: Toxiproxy (a TCP proxy, built from the Go
# module proxy) in front of each path, and iptables rules on a proxy's port for what only the
# kernel can do to packets.
#
# Usage: scripts/toxiproxy.sh COMMAND [ARGS]
#
#   install | start | stop | kill | status | ports | reset
#                      the daemon's life cycle (scripts/lib/daemon.sh); stop and reset also
#                      remove every iptables rule this instance added
#   api                print the API's URL
#   proxy NAME UPSTREAM [NAME UPSTREAM]...
#                      a proxy NAME to UPSTREAM (host:port) on a free loopback port, kept on
#                      that port for good (a restart of Toxiproxy brings it back); an
#                      existing NAME keeps its port and gets the new upstream. Prints its
#                      address (127.0.0.1:PORT), a line per proxy
#   address NAME       print proxy NAME's address
#   fault NAME KIND [ARG...]
#                      a fault on the path through proxy NAME (a glob such as 'order-*.db.*'
#                      names several), until healed:
#                        latency MS JITTER   each answer delayed MS ± JITTER ms
#                        bandwidth KBPS      answers at most KBPS KB/s
#                        reset               every connection reset (RST) as soon as bytes flow
#                        blackhole           bytes accepted, nothing delivered either way;
#                                            connections stay open (Toxiproxy's timeout toxic)
#                        partition           every packet to and from the proxy's port dropped
#                                            (iptables): connects and open connections time out
#                        oneway              only the packets towards the proxy's port dropped
#                                            (the caller's requests vanish; the other way flows)
#                        loss PERCENT        that share of packets either way dropped at random
#                                            (iptables statistic): TCP retransmits
#   heal NAME|all      remove the faults on NAME (a glob), or on every proxy
#   list               every proxy: name, address, upstream, faults
#
# Why Toxiproxy and iptables, not `tc netem`: this machine's kernel is built without
# sch_netem (CONFIG_NET_SCH_NETEM is not set), so delay and loss cannot be queued on an
# interface. Toxiproxy delays, throttles, resets and blackholes a TCP stream; the kernel's
# own packet filter drops packets (partitions, one way or both, and random loss), which
# Toxiproxy, a stream proxy, cannot. The iptables rules live in a chain of this instance's
# own (AGORA-NF-INSTANCE, jumped to from INPUT), removed by heal all, stop and reset.
#
# Environment:
#   AGORA_CACHE               cache root            (default: $HOME/.cache/agora)
#   AGORA_TOXIPROXY_INSTANCE  instance name         (default: dev)
#   AGORA_TOXIPROXY_PORT      the API's port        (default: 8474; 0 = any free port)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"

port_declare api AGORA_TOXIPROXY_PORT 8474
instance_init toxiproxy "${AGORA_TOXIPROXY_INSTANCE:-dev}" AGORA_TOXIPROXY_INSTANCE "$CACHE_DIR/toxiproxy"
# The proxies, as Toxiproxy's -config file: created again at every start.
PROXIES="$INSTANCE_ROOT/proxies.json"
INSTANCE_PATTERN="-config $PROXIES"
CHAIN="AGORA-NF-${INSTANCE_NAME:0:20}"

instance_where() { printf 'http://%s:%s\n' "$DAEMON_HOST" "${PORTS[api]}"; }
INSTANCE_NOT_READY="its API does not answer"
instance_ready() { curl -fsS --max-time 2 -o /dev/null "http://$DAEMON_HOST:${PORTS[api]}/version" 2>/dev/null; }
instance_config() {
  mkdir -p "$INSTANCE_ROOT"
  [[ -s "$PROXIES" ]] || printf '[]\n' >"$PROXIES"
}
instance_launch() {
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" "$1" -host "$DAEMON_HOST" -port "${PORTS[api]}" -config "$PROXIES"
}
instance_stopped() { packet_rules_clear; }

# --- API --------------------------------------------------------------------

api_url() { instance_endpoint api http:// ""; }

# api METHOD PATH [JSON]: the reply's body; dies with Toxiproxy's message on an error.
api() {
  local reply code
  reply="$(curl -sS --max-time 5 -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} \
    -w '\n%{http_code}' "$(api_url)$2")" || die "Toxiproxy's API does not answer (is it running? $0 start)"
  code="${reply##*$'\n'}"
  reply="${reply%$'\n'*}"
  [[ "$code" == 2* ]] || die "Toxiproxy: $1 $2 answered $code: $reply"
  printf '%s\n' "$reply"
}

require_running() { instance_running_pid >/dev/null || die "not running (instance $INSTANCE_NAME): $0 start"; }

# Proxy names matching glob $1, one per line (none: die).
matching() {
  local names
  names="$(api GET /proxies | python3 -c '
import fnmatch, json, sys
print("\n".join(sorted(n for n in json.load(sys.stdin) if fnmatch.fnmatchcase(n, sys.argv[1]))))' "$1")"
  [[ -n "$names" ]] || die "no proxy matches '$1' ($0 list shows them)"
  printf '%s\n' "$names"
}

# The port proxy $1 listens on.
listen_port() {
  api GET "/proxies/$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["listen"].rsplit(":", 1)[1])'
}

# Rewrites the -config file from the running proxies (so a restart brings them back).
save_proxies() {
  api GET /proxies | python3 -c '
import json, sys
proxies = json.load(sys.stdin)
print(json.dumps([{"name": p["name"], "listen": p["listen"], "upstream": p["upstream"], "enabled": True}
                  for p in sorted(proxies.values(), key=lambda p: p["name"])], indent=1))' >"$PROXIES.tmp"
  mv -f "$PROXIES.tmp" "$PROXIES"
}

# cmd_proxy NAME UPSTREAM [NAME UPSTREAM]...: each proxy made or pointed at its upstream (one
# lock and one listing for all), then each one's address, a line each.
cmd_proxy() {
  local -a pairs=("$@")
  local i name upstream current port
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    [[ "${pairs[i]}" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "proxy name '${pairs[i]}': use letters, digits, '_', '.', '-'"
    [[ "${pairs[i + 1]}" =~ ^[^:]+:[0-9]+$ ]] || die "upstream '${pairs[i + 1]}' is not HOST:PORT"
  done
  require_running
  daemon_lock "$INSTANCE_LOCK" 60
  # name listen-port upstream, for every proxy there is.
  local -A listen=() upstreams=()
  while read -r name port upstream; do
    listen[$name]="$port"
    upstreams[$name]="$upstream"
  done < <(api GET /proxies | python3 -c '
import json, sys
for p in json.load(sys.stdin).values():
    print(p["name"], p["listen"].rsplit(":", 1)[1], p["upstream"])')
  local changed=0 out=()
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    name="${pairs[i]}" upstream="${pairs[i + 1]}"
    port="${listen[$name]:-}"
    if [[ -z "$port" ]]; then
      port="$(free_port)"
      DAEMON_TAKEN_PORTS+="$port "
      api POST /proxies "{\"name\": \"$name\", \"listen\": \"$DAEMON_HOST:$port\", \"upstream\": \"$upstream\", \"enabled\": true}" >/dev/null
      changed=1
    elif [[ "${upstreams[$name]}" != "$upstream" ]]; then
      api POST "/proxies/$name" "{\"upstream\": \"$upstream\", \"enabled\": true}" >/dev/null
      changed=1
    fi
    out+=("$DAEMON_HOST:$port")
  done
  if ((changed)); then save_proxies; fi
  printf '%s\n' "${out[@]}"
}

# --- Packet rules (iptables) ------------------------------------------------

packet_rules_ready() {
  command -v iptables >/dev/null || die "iptables is needed for partition, oneway and loss (apt-get install iptables)"
  iptables -w -n -L "$CHAIN" >/dev/null 2>&1 || iptables -w -N "$CHAIN"
  iptables -w -C INPUT -j "$CHAIN" 2>/dev/null || iptables -w -I INPUT -j "$CHAIN"
}

packet_rules_clear() {
  command -v iptables >/dev/null || return 0
  while iptables -w -D INPUT -j "$CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$CHAIN" 2>/dev/null || true
  iptables -w -X "$CHAIN" 2>/dev/null || true
}

# packet_drop PORT DIRECTION [PROBABILITY]: drop packets on loopback to (to) or from (from)
# PORT, or both, all or at random. Each rule carries the port in its comment, for heal.
packet_drop() {
  local port="$1" direction="$2" probability="${3:-}" match
  local -a random=()
  [[ -z "$probability" ]] || random=(-m statistic --mode random --probability "$probability")
  packet_rules_ready
  for match in to from; do
    [[ "$direction" == both || "$direction" == "$match" ]] || continue
    local flag=--dport
    [[ "$match" == to ]] || flag=--sport
    iptables -w -A "$CHAIN" -i lo -p tcp "$flag" "$port" "${random[@]}" -m comment --comment "agora-nf:$port" -j DROP
  done
}

# Removes the packet rules of PORT.
packet_heal() {
  local port="$1" rule
  iptables -w -n -L "$CHAIN" >/dev/null 2>&1 || return 0
  while rule="$(iptables -w -S "$CHAIN" | grep -m1 -- "--comment \"\?agora-nf:$port\"\? ")"; do
    # shellcheck disable=SC2086 # the rule's words, as iptables -S printed them
    eval "iptables -w ${rule/-A /-D }"
  done
}

# --- Faults -----------------------------------------------------------------

number() { [[ "$1" =~ ^[0-9]+$ ]] || die "$2 must be a whole number, not '$1'"; }

cmd_fault() {
  local glob="$1" kind="$2" name port
  shift 2
  require_running
  for name in $(matching "$glob"); do
    port="$(listen_port "$name")"
    case "$kind" in
      latency)
        number "${1:-}" MS; number "${2:-0}" JITTER
        api POST "/proxies/$name/toxics" \
          "{\"name\": \"latency\", \"type\": \"latency\", \"stream\": \"downstream\", \"attributes\": {\"latency\": $1, \"jitter\": ${2:-0}}}" >/dev/null ;;
      bandwidth)
        number "${1:-}" KBPS
        api POST "/proxies/$name/toxics" \
          "{\"name\": \"bandwidth\", \"type\": \"bandwidth\", \"stream\": \"downstream\", \"attributes\": {\"rate\": $1}}" >/dev/null ;;
      reset)
        api POST "/proxies/$name/toxics" \
          "{\"name\": \"reset\", \"type\": \"reset_peer\", \"stream\": \"upstream\", \"attributes\": {\"timeout\": 0}}" >/dev/null ;;
      blackhole)
        local stream
        for stream in upstream downstream; do
          api POST "/proxies/$name/toxics" \
            "{\"name\": \"blackhole-$stream\", \"type\": \"timeout\", \"stream\": \"$stream\", \"attributes\": {\"timeout\": 0}}" >/dev/null
        done ;;
      partition) packet_drop "$port" both ;;
      oneway) packet_drop "$port" to ;;
      loss)
        number "${1:-}" PERCENT
        ((${1} > 0 && ${1} <= 100)) || die "loss PERCENT must be 1 to 100"
        packet_drop "$port" both "$(python3 -c "print($1 / 100)")" ;;
      *) die "unknown fault '$kind' (latency, bandwidth, reset, blackhole, partition, oneway, loss)" ;;
    esac
    log "fault on $name ($DAEMON_HOST:$port): $kind${*:+ $*}"
  done
}

cmd_heal() {
  local glob="$1" name toxic
  require_running
  if [[ "$glob" == all ]]; then
    # Every toxic gone, every proxy enabled, in one call.
    api POST /reset >/dev/null
    packet_rules_clear
    log "healed: all"
    return 0
  fi
  for name in $(matching "$glob"); do
    for toxic in $(api GET "/proxies/$name/toxics" | python3 -c 'import json, sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))'); do
      api DELETE "/proxies/$name/toxics/$toxic" >/dev/null
    done
    packet_heal "$(listen_port "$name")"
  done
  log "healed: $1"
}

cmd_list() {
  require_running
  local rules=""
  rules="$(iptables -w -S "$CHAIN" 2>/dev/null || true)"
  api GET /proxies | python3 -c '
import json, re, sys
rules = sys.argv[1]
for p in sorted(json.load(sys.stdin).values(), key=lambda p: p["name"]):
    port = p["listen"].rsplit(":", 1)[1]
    faults = [t["type"] + ("" if t["type"] != "latency" else " %(latency)s±%(jitter)s ms" % t["attributes"]) for t in p["toxics"]]
    for line in rules.splitlines():
        if f"agora-nf:{port}" in line:
            m = re.search(r"--probability ([0-9.]+)", line)
            way = "to" if "--dport" in line else "from"
            faults.append(f"drop {way}" + (f" {float(m.group(1)) * 100:g}%" if m else ""))
    print("%-36s %-22s -> %-22s %s" % (p["name"], p["listen"], p["upstream"], ", ".join(faults) or "-"))' "$rules"
}

instance_command() {
  case "${1:-}" in
    api) api_url ;;
    proxy) (($# >= 3 && $# % 2 == 1)) || usage; shift; cmd_proxy "$@" ;;
    address) (($# == 2)) || usage; printf '%s:%s\n' "$DAEMON_HOST" "$(listen_port "$2")" ;;
    fault) (($# >= 3)) || usage; shift; cmd_fault "$@" ;;
    heal) (($# == 2)) || usage; cmd_heal "$2" ;;
    list) cmd_list ;;
    *) usage ;;
  esac
}

instance_main "$@"
