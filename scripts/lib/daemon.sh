# shellcheck shell=bash
# Shared helpers for the scripts that run Agora's private local daemons: loopback ports
# (all of them), a pid file guarded against pid reuse, detached launch, readiness wait, stop,
# an instance lock, and the whole start/stop/status/reset life cycle of one named instance of
# a daemon (consul.sh, jaeger.sh, kafka.sh).
#
# Source it from a script that runs under `set -euo pipefail`:
#   source "$SCRIPT_DIR/lib/daemon.sh"
# It sources lib/common.sh (log, die, CACHE_DIR).
#
# Everything here is about one address, 127.0.0.1 unless AGORA_BIND_HOST names another of
# this machine's addresses (the test cluster's node IP, so that pods can reach the daemons; see
# scripts/kube.sh). File descriptor 9 is the lock (see daemon_lock); daemons and helper commands
# never inherit it.

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DAEMON_HOST="${AGORA_BIND_HOST:-127.0.0.1}"
[[ "$DAEMON_HOST" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || { printf 'error: AGORA_BIND_HOST=%s is not an IPv4 address\n' "$DAEMON_HOST" >&2; exit 2; }

# --- Ports ------------------------------------------------------------------

# True if anything accepts TCP connections on $DAEMON_HOST:$1.
port_open() {
  # shellcheck disable=SC2016  # expanded by the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$DAEMON_HOST" "$1" 2>/dev/null
}

# True if port $1 is in use: something accepts TCP connections on $DAEMON_HOST:$1, or (when
# `ss` is available) any TCP listener or UDP socket on any address is bound to it.
port_busy() {
  port_open "$1" && return 0
  command -v ss >/dev/null 2>&1 || return 1
  [[ -n "$(ss -Htuln "sport = :$1" 2>/dev/null)" ]]
}

# Ports given out by this run (fixed and chosen), so no two listeners get the same one.
DAEMON_TAKEN_PORTS=" "

# Print a port that is free on $DAEMON_HOST right now and not yet given out by this run.
#
# It is picked below the kernel's ephemeral range (ip_local_port_range), where no outgoing
# connection takes its local port: a port from that range, free when picked, could become
# the local end of some test's connection before a slow starter (Kafka's JVM) binds it, and
# the daemon would then fail with "Address already in use". Another listener could still
# take the port first; start then fails with the daemon's bind error. AGORA_PORT_MAX lowers the
# ceiling (the test cluster keeps 30000-32767 for its NodePorts, which its policy engine lets
# every pod reach on the node).
free_port() {
  local port i low=10000 high
  high="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true)"
  high=$((${high:-32768} - 1))
  if [[ -n "${AGORA_PORT_MAX:-}" ]] && ((AGORA_PORT_MAX < high)); then high="$AGORA_PORT_MAX"; fi
  for ((i = 0; i < 100; i++)); do
    if ((high - low >= 1000)); then
      port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    else
      # No room below the ephemeral range: ask the kernel for one of its ports.
      port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null)" \
        || port=$((49152 + RANDOM % 16384))
    fi
    [[ "$port" =~ ^[0-9]+$ ]] || continue
    [[ "$DAEMON_TAKEN_PORTS" == *" $port "* ]] && continue
    port_busy "$port" && continue
    printf '%s\n' "$port"
    return 0
  done
  return 1
}

# The port table. The sourcing script fills it with port_declare, before calling
# resolve_ports / ports_load:
#   PORT_KEYS=(k...)   the listeners, in order; also the keys of the state file
#   PORT_ENV[k]        the environment variable that sets k (named in error messages)
#   PORT_REQ[k]        the requested value: N = that port, 0 = any free port chosen at
#                      start, -1 = disabled (only where PORT_OFF_OK[k] is 1)
#   PORT_OFF_OK[k]     1 if k may be disabled
# PORTS[k] is the port in use (-1 = disabled): filled by resolve_ports at start, or by
# ports_load from the state file of a running instance.
declare -a PORT_KEYS=()
declare -A PORT_ENV=() PORT_REQ=() PORT_OFF_OK=() PORTS=()

# port_declare KEY ENV_VAR DEFAULT [off]: one listener of the table, requested by $ENV_VAR
# (DEFAULT when unset); `off` lets -1 disable it.
port_declare() {
  PORT_KEYS+=("$1")
  PORT_ENV[$1]="$2"
  PORT_REQ[$1]="${!2:-$3}"
  if [[ "${4:-}" == off ]]; then PORT_OFF_OK[$1]=1; fi
}

# Die unless every PORT_REQ value is a valid port, 0, or (where allowed) -1.
ports_validate() {
  local k v
  for k in "${PORT_KEYS[@]}"; do
    v="${PORT_REQ[$k]}"
    if [[ "$v" == -1 ]]; then
      [[ "${PORT_OFF_OK[$k]:-0}" == 1 ]] || die "${PORT_ENV[$k]}=-1: this listener cannot be disabled"
    elif ! [[ "$v" =~ ^[0-9]+$ ]] || ((10#$v > 65535)); then
      die "${PORT_ENV[$k]}='$v' is not a port (1-65535, or 0 for any free port)"
    fi
  done
}

# Fill PORTS from PORT_REQ: fixed ports must be free (else die naming the variable to
# change), then every 0 gets a free port.
resolve_ports() {
  ports_validate
  PORTS=()
  DAEMON_TAKEN_PORTS=" "
  local k v
  for k in "${PORT_KEYS[@]}"; do
    v="${PORT_REQ[$k]}"
    [[ "$v" == -1 ]] && { PORTS[$k]=-1; continue; }
    ((10#$v)) || continue
    v=$((10#$v))
    [[ "$DAEMON_TAKEN_PORTS" == *" $v "* ]] \
      && die "${PORT_ENV[$k]}=$v: port $v is also asked for another listener; set ${PORT_ENV[$k]} to another port (0 = any free port)"
    port_busy "$v" \
      && die "port $v is already in use by something else; stop it or set ${PORT_ENV[$k]} to another port (0 = any free port)"
    PORTS[$k]="$v"
    DAEMON_TAKEN_PORTS+="$v "
  done
  for k in "${PORT_KEYS[@]}"; do
    [[ -n "${PORTS[$k]:-}" ]] && continue
    v="$(free_port)" || die "found no free port on $DAEMON_HOST for ${PORT_ENV[$k]}"
    PORTS[$k]="$v"
    DAEMON_TAKEN_PORTS+="$v "
  done
}

# True if the running instance's PORTS agree with every non-zero PORT_REQ value.
ports_match_request() {
  ports_validate
  local k req
  for k in "${PORT_KEYS[@]}"; do
    req="${PORT_REQ[$k]}"
    [[ "$req" == 0 ]] && continue
    [[ "$req" == -1 ]] || req=$((10#$req))
    [[ "${PORTS[$k]:-}" == "$req" ]] || return 1
  done
}

# Fill PORTS from PORT_REQ as they are (0 stays 0: not known before start).
ports_requested() {
  ports_validate
  PORTS=()
  local k v
  for k in "${PORT_KEYS[@]}"; do
    v="${PORT_REQ[$k]}"
    [[ "$v" == -1 ]] || v=$((10#$v))
    PORTS[$k]="$v"
  done
}

# Write PORTS to state file $1 (key=port lines), atomically.
ports_save() {
  local k
  for k in "${PORT_KEYS[@]}"; do printf '%s=%s\n' "$k" "${PORTS[$k]}"; done >"$1.tmp"
  mv -f "$1.tmp" "$1"
}

# Fill PORTS from state file $1; fail if it is missing or lacks a key.
ports_load() {
  [[ -f "$1" ]] || return 1
  local k v
  PORTS=()
  while IFS='=' read -r k v; do
    [[ "$v" =~ ^-?[0-9]+$ ]] && PORTS[$k]="$v"
  done <"$1"
  for k in "${PORT_KEYS[@]}"; do [[ -n "${PORTS[$k]:-}" ]] || return 1; done
}

# Print PORTS[$1] or die: disabled, or chosen at start while the daemon is not running.
port_of() {
  local v="${PORTS[$1]:-}"
  case "$v" in
    -1) die "${PORT_ENV[$1]}=-1: that listener is disabled" ;;
    0 | "") die "not running, and ${PORT_ENV[$1]}=0 means the port is chosen at start; run: $0 start" ;;
  esac
  printf '%s\n' "$v"
}

# --- Processes --------------------------------------------------------------

# True if pid $1 is a live process. An exited process not yet reaped by its parent (a
# zombie, which `kill -0` still accepts) counts as gone.
pid_alive() {
  local stat
  # Not `$(<file)`: under `set -e`, bash 5.2 exits the whole script when that redirection
  # fails, even where the status is tested (a pid file left by a killed process).
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"  # fields after "(comm)"; the first is the state
  [[ "${stat%% *}" != Z ]]
}

# Print the pid in pid file $1 if that process runs and its command line (arguments
# joined by spaces) contains the fixed string $2: guards against a stale pid file whose
# pid now belongs to another process.
daemon_pid() {
  local pidfile="$1" pattern="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  printf '%s\n' "$pid"
}

# daemon_launch PIDFILE LOG CMD...: start CMD in the background, detached: own session
# (no terminal; survives the caller; its pid is its process group), cwd /, stdin from
# /dev/null, stdout and stderr to LOG (the previous run's log is kept as LOG.prev), fd 9
# closed. The launcher shell writes its pid and then becomes CMD, so the pid file holds the
# daemon's pid. Sets DAEMON_LAUNCHED_PID.
daemon_launch() {
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  if [[ -f "$logfile" ]]; then mv -f "$logfile" "$logfile.prev"; fi
  (
    cd /
    # shellcheck disable=SC2016  # expanded by the inner shell
    setsid nohup bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$pidfile" "$@" \
      </dev/null >"$logfile" 2>&1 9>&- &
  )
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$pidfile" ]] && break
    sleep 0.1
  done
  [[ -s "$pidfile" ]] || die "the launcher did not write $pidfile (log: $logfile)"
  # shellcheck disable=SC2034  # read by the sourcing script
  DAEMON_LAUNCHED_PID="$(<"$pidfile")"
}

# Logs beside the daemon's own output that a failed start shows too (Kafka's server.log).
declare -a DAEMON_MORE_LOGS=()

# daemon_wait_ready PID PIDFILE LOG TIMEOUT CHECK...: poll until the command CHECK...
# succeeds. If the daemon exits first, or TIMEOUT seconds pass, show the logs' tails and die.
daemon_wait_ready() {
  local pid="$1" pidfile="$2" logfile="$3" timeout="$4"
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! pid_alive "$pid"; then
      tail -n 30 "$logfile" "${DAEMON_MORE_LOGS[@]}" >&2 2>/dev/null || true
      # A JVM logs pages of its shutdown after the error that ended it: the first errors too.
      grep -h -m 5 -E 'ERROR|FATAL|Exception' "$logfile" "${DAEMON_MORE_LOGS[@]}" >&2 2>/dev/null || true
      rm -f "$pidfile"
      die "exited during start-up (log: $logfile ${DAEMON_MORE_LOGS[*]})"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$logfile" "${DAEMON_MORE_LOGS[@]}" >&2 2>/dev/null || true
      die "pid $pid not ready within ${timeout}s; try: $0 stop (log: $logfile ${DAEMON_MORE_LOGS[*]})"
    fi
    sleep 0.2
  done
}

# daemon_stop PIDFILE PATTERN TIMEOUT [SIGNAL]: SIGNAL (default TERM) to the daemon's process
# group, SIGKILL it after TIMEOUT seconds, wait until the daemon is gone, remove the pid file.
# No-op (logs "not running") if daemon_pid finds no daemon.
daemon_stop() {
  local pidfile="$1" pattern="$2" timeout="$3" signal="${4:-TERM}" pid
  if ! pid="$(daemon_pid "$pidfile" "$pattern")"; then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  if [[ "$signal" == TERM ]]; then log "stopping (pid $pid)"; else log "stopping (pid $pid, SIG$signal)"; fi
  # The daemon leads its own process group (setsid), so this also reaches any children.
  kill -"$signal" -- "-$pid" 2>/dev/null || kill -"$signal" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "still running after ${timeout}s; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while pid_alive "$pid"; do
        ((SECONDS < deadline)) || die "pid $pid survives SIGKILL"
        sleep 0.1
      done
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
  log "stopped"
}

# --- Lock -------------------------------------------------------------------

# daemon_lock LOCKFILE TIMEOUT: take an exclusive lock on fd 9 (serialises start, stop and
# reset of one instance), waiting at most TIMEOUT seconds. Taken at most once per run; it
# is released when the script exits.
DAEMON_LOCK_HELD=0
daemon_lock() {
  ((DAEMON_LOCK_HELD)) && return 0
  mkdir -p "$(dirname "$1")"
  exec 9>>"$1"
  flock -w "$2" 9 || die "another run still holds $1 after ${2}s"
  DAEMON_LOCK_HELD=1
}

# --- One named instance of a daemon (consul.sh, jaeger.sh, kafka.sh) --------
#
# The subcommands every such script has, written once. The sourcing script calls
#   instance_init TOOL NAME NAME_VAR PARENT
# (TOOL: the go-tools.sh tool name, also in messages; NAME: the instance's name, checked, from
# the variable NAME_VAR; its directory INSTANCE_ROOT is PARENT/NAME and holds INSTANCE_PID,
# INSTANCE_LOG (the daemon's output), INSTANCE_STATE (its ports) and INSTANCE_LOCK), fills the
# port table,
# sets
#   INSTANCE_PATTERN  what the daemon's command line contains (daemon_pid's guard)
# and defines
#   instance_ready        true once the daemon answers (PORTS set)
#   instance_config       writes the config for PORTS (called while stopped)
#   instance_launch BIN   daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" BIN ARGS...
#   instance_where        one line saying where it listens (PORTS set), for messages
#   INSTANCE_NOT_READY    what `status` says when the process runs but does not answer
# A daemon that is not a Go tool redefines instance_install (install it; idempotent) and
# instance_binary (install it and print what instance_launch runs). It may define
#   instance_started      run once the daemon answers, on every start (PostgreSQL's password)
#   instance_stopped SIG  run after the daemon is gone (stop, kill, reset), with the signal it
#                         got: children that run in sessions of their own (Patroni's
#                         PostgreSQL) are stopped here
# and set INSTANCE_STOP_SIGNAL (PostgreSQL's fast shutdown is INT).

INSTANCE_START_TIMEOUT_SECS=60
INSTANCE_STOP_TIMEOUT_SECS=20
INSTANCE_STOP_SIGNAL=TERM
# A cold install builds the tool from source (minutes), so a second caller may wait that long.
INSTANCE_LOCK_TIMEOUT_SECS=900

instance_init() {
  INSTANCE_TOOL="$1"
  INSTANCE_NAME="$2"
  [[ "$INSTANCE_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
    || die "$3='$INSTANCE_NAME': use letters, digits, '_', '.', '-'"
  INSTANCE_ROOT="$4/$INSTANCE_NAME"
  INSTANCE_LOG="$INSTANCE_ROOT/$INSTANCE_TOOL.log"  # one per run; the previous one is .prev
  INSTANCE_PID="$INSTANCE_ROOT/$INSTANCE_TOOL.pid"
  INSTANCE_STATE="$INSTANCE_ROOT/ports"  # the ports in use, written at start
  INSTANCE_LOCK="$INSTANCE_ROOT/.lock"
}

instance_running_pid() { daemon_pid "$INSTANCE_PID" "$INSTANCE_PATTERN"; }

# A 0/1 switch an instance is started with (AGORA_PG_TLS, AGORA_CONSUL_ACL, ...): the script
# writes VAR=VALUE to INSTANCE_ROOT/mode when it starts the daemon. While the daemon runs, its
# commands follow that record, not the variable; no record means 0 (an instance started before
# the switch existed).
#   instance_mode VAR                  the running instance's value, else the variable's (0 unset)
#   instance_mode_check_start VAR NAME_VAR
#                                      before start, under the instance's lock: a running instance
#                                      started the other way is refused, saying how to stop it
instance_mode() {
  local value="${!1:-0}"
  if instance_running_pid >/dev/null; then
    value="$(sed -n "s/^$1=//p" "$INSTANCE_ROOT/mode" 2>/dev/null || true)"
    [[ "$value" == 1 ]] || value=0
  fi
  printf '%s\n' "$value"
}

instance_mode_check_start() {
  daemon_lock "$INSTANCE_LOCK" "$INSTANCE_LOCK_TIMEOUT_SECS"
  local running
  running="$(instance_mode "$1")"
  [[ "$running" == "${!1:-0}" ]] \
    || die "instance $INSTANCE_NAME runs with $1=$running; to start it with $1=${!1:-0}, run: $2=$INSTANCE_NAME $0 stop"
}

# PORTS of the running instance (from its state file), else as requested (0 = unknown).
instance_load_ports() {
  if instance_running_pid >/dev/null && ports_load "$INSTANCE_STATE"; then return 0; fi
  ports_requested
}

instance_install() {
  bash "$SCRIPT_DIR/go-tools.sh" install "$INSTANCE_TOOL" 9>&-
}

instance_binary() {
  bash "$SCRIPT_DIR/go-tools.sh" path "$INSTANCE_TOOL" 9>&-
}

instance_start() {
  daemon_lock "$INSTANCE_LOCK" "$INSTANCE_LOCK_TIMEOUT_SECS"
  local bin pid
  bin="$(instance_binary)"
  if pid="$(instance_running_pid)"; then
    # Ours already runs (perhaps still starting): it must have the ports asked for.
    ports_load "$INSTANCE_STATE" || die "running (pid $pid) but $INSTANCE_STATE is missing; run: $0 stop"
    ports_match_request \
      || die "already running (pid $pid) with other ports than asked for ($INSTANCE_STATE); run: $0 stop"
    # AGORA_RUNNING_IS_READY=1: a caller that checks readiness end to end itself (make chaos
    # restarting what a fault stopped) takes a running instance as it is; Kafka's check starts
    # a JVM, seconds on a busy machine.
    if [[ "${AGORA_RUNNING_IS_READY:-0}" == 1 ]]; then
      log "already running on $(instance_where) (pid $pid)"
      return 0
    fi
    daemon_wait_ready "$pid" "$INSTANCE_PID" "$INSTANCE_LOG" "$INSTANCE_START_TIMEOUT_SECS" instance_ready
    if declare -F instance_started >/dev/null; then instance_started; fi
    log "already running on $(instance_where) (pid $pid)"
    return 0
  fi
  # Fixed ports must be free (else the daemon would fail to bind, or tests would talk to
  # somebody else's); 0 becomes a free port.
  resolve_ports
  instance_config
  ports_save "$INSTANCE_STATE"
  log "starting $INSTANCE_TOOL (instance $INSTANCE_NAME) on $(instance_where) (log: $INSTANCE_LOG)"
  instance_launch "$bin"
  pid="$DAEMON_LAUNCHED_PID"
  daemon_wait_ready "$pid" "$INSTANCE_PID" "$INSTANCE_LOG" "$INSTANCE_START_TIMEOUT_SECS" instance_ready
  if declare -F instance_started >/dev/null; then instance_started; fi
  log "ready: $(instance_where) (pid $pid)"
}

instance_stop() {
  [[ -d "$INSTANCE_ROOT" ]] || { log "not running"; return 0; }
  daemon_lock "$INSTANCE_LOCK" "$INSTANCE_LOCK_TIMEOUT_SECS"
  instance_stop_as "$INSTANCE_STOP_TIMEOUT_SECS" "$INSTANCE_STOP_SIGNAL"
}

# instance_stop_as TIMEOUT SIGNAL: daemon_stop, then the instance_stopped hook.
instance_stop_as() {
  daemon_stop "$INSTANCE_PID" "$INSTANCE_PATTERN" "$1" "$2"
  if declare -F instance_stopped >/dev/null; then instance_stopped "$2"; fi
}

# SIGKILL, as a crash or a machine loss would: no shutdown, whatever was in flight is lost
# to the daemon (not to its disk). No-op if not running.
instance_kill() {
  instance_stop_as 10 KILL
}

# 0 = running and answering, 3 = not running, 1 = running but not answering.
instance_status() {
  local pid
  if ! pid="$(instance_running_pid)"; then
    log "not running (instance $INSTANCE_NAME)"
    return 3
  fi
  if ports_load "$INSTANCE_STATE" && instance_ready; then
    log "running on $(instance_where) (instance $INSTANCE_NAME, pid $pid)"
    return 0
  fi
  log "process $pid runs but $INSTANCE_NOT_READY (log: $INSTANCE_LOG)"
  return 1
}

# instance_endpoint KEY PREFIX SUFFIX: print PREFIX, $DAEMON_HOST:port of listener KEY, SUFFIX.
instance_endpoint() {
  instance_load_ports
  local port
  port="$(port_of "$1")"
  printf '%s%s:%s%s\n' "$2" "$DAEMON_HOST" "$port" "$3"
}

instance_ports() {
  instance_load_ports
  local k
  for k in "${PORT_KEYS[@]}"; do printf '%s=%s\n' "$k" "${PORTS[$k]}"; done
}

instance_reset() {
  daemon_lock "$INSTANCE_LOCK" "$INSTANCE_LOCK_TIMEOUT_SECS"
  instance_stop_as "$INSTANCE_STOP_TIMEOUT_SECS" "$INSTANCE_STOP_SIGNAL"
  log "deleting the files of instance $INSTANCE_NAME in $INSTANCE_ROOT"
  # Everything but the lock file, which other runs may be waiting on.
  find "$INSTANCE_ROOT" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
}

# instance_main ARGS...: the life-cycle subcommands (install, start, stop, kill, status,
# ports, reset); any other goes to the sourcing script's instance_command, which ends in
# `*) usage`.
instance_main() {
  case "${1:-}" in
    install) instance_install ;;
    start) instance_start ;;
    stop) instance_stop ;;
    kill) instance_kill ;;
    status) instance_status ;;
    ports) instance_ports ;;
    reset) instance_reset ;;
    *) instance_command "$@" ;;
  esac
}

# Print the sourcing script's header comment (after the shebang, up to the code); exit 2.
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}
