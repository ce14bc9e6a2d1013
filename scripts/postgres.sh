#!/usr/bin/env bash
# Throwaway local PostgreSQL for Agora's development and tests.
#
# Usage: scripts/postgres.sh {install|start|stop|status|url|create-db NAME...|reset-test-dbs}
#
#   install         install the distro PostgreSQL server if no initdb is found
#   start           init (once) and start a private cluster; no-op if running
#   stop            fast-stop the cluster; no-op if not running
#   status          report whether the cluster runs (exit 0 = running, 3 = not)
#   url             print the admin connection URL
#   create-db NAME  create each named database that does not exist yet
#   reset-test-dbs  drop every database named agora_test_*
#
# The cluster is private to Agora: it lives under the cache directory, listens
# only on 127.0.0.1 (or AGORA_BIND_HOST), keeps its unix socket in the cache
# directory, and uses trust auth with the superuser "agora" for this machine's own
# connections. AGORA_PG_CLIENTS admits a range of other clients (the test cluster's
# pods) with the password AGORA_PG_PASSWORD. Named instances run side by side: `make test`
# uses `test` (the default), `make up` uses `up`. Unless AGORA_PG_DURABLE=1 it is
# tuned for speed (no fsync), fit only for disposable test data.
#
# Environment:
#   AGORA_CACHE        cache root                                (default: $HOME/.cache/agora)
#   AGORA_PG_INSTANCE  instance name; lives in $AGORA_CACHE/postgres/NAME  (default: test)
#   AGORA_PG_PORT      TCP port to listen on, 0 = any free one   (default: 55432)
#   AGORA_PG_DURABLE   1 = fsync and synchronous commits on      (default: 0)
#   AGORA_BIND_HOST    the address to listen on, one of this machine's (default: 127.0.0.1)
#   AGORA_PG_CLIENTS   a CIDR of clients admitted with a password (default: none)
#   AGORA_PG_PASSWORD  the superuser's password for them (required with AGORA_PG_CLIENTS)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"  # free_port

# --- Configuration ----------------------------------------------------------

PG_PORT="${AGORA_PG_PORT:-55432}"
PG_HOST="${AGORA_BIND_HOST:-127.0.0.1}"
PG_CLIENTS="${AGORA_PG_CLIENTS:-}"
[[ -z "$PG_CLIENTS" || "$PG_CLIENTS" =~ ^[0-9.]+/[0-9]+$ ]] \
  || { echo "[postgres] error: AGORA_PG_CLIENTS must be an IPv4 CIDR, e.g. 10.241.0.0/24" >&2; exit 2; }
[[ -z "$PG_CLIENTS" || -n "${AGORA_PG_PASSWORD:-}" ]] \
  || { echo "[postgres] error: AGORA_PG_CLIENTS needs AGORA_PG_PASSWORD (the password they sign in with)" >&2; exit 2; }
PG_INSTANCE="${AGORA_PG_INSTANCE:-test}"
[[ "$PG_INSTANCE" =~ ^[a-zA-Z0-9_-]+$ ]] \
  || { echo "[postgres] error: AGORA_PG_INSTANCE must be letters, digits, - or _" >&2; exit 2; }
PG_DURABLE="${AGORA_PG_DURABLE:-0}"
PG_SUPERUSER="agora"
# PostgreSQL refuses to run as root; when we are root we run the server as
# this dedicated system account instead.
PG_OS_USER="agora-pg"

PG_ROOT="$CACHE_DIR/postgres/$PG_INSTANCE"
PG_DATA="$PG_ROOT/data"
PG_SOCKET_DIR="$PG_ROOT/run"  # keep it short: unix socket paths max ~107 bytes
PG_LOG="$PG_ROOT/postgres.log"
PG_LOCK="$PG_ROOT/.lock"
PG_PORT_FILE="$PG_ROOT/port"  # the running server's port (chosen at start when 0)

START_TIMEOUT_SECS=30

# --- Helpers ----------------------------------------------------------------


is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Print the bin dir of the highest installed PostgreSQL major version that has
# an initdb, or nothing (and fail) if there is none.
find_bin_dir() {
  local dir
  dir="$(
    for d in /usr/lib/postgresql/*/bin; do
      [[ -x "$d/initdb" ]] && printf '%s\n' "$d"
    done | sort -V | tail -n 1
  )"
  [[ -n "$dir" ]] || return 1
  printf '%s\n' "$dir"
}

# Set PG_BIN, failing with a hint if PostgreSQL is not installed.
require_bin_dir() {
  PG_BIN="$(find_bin_dir)" || die "PostgreSQL server not installed; run: $0 install"
}

# Run a command as the OS user that owns the cluster. From "/" so the server
# never trips over a current directory it cannot read, and with the lock fd
# closed so a long-lived postmaster never inherits (and holds) the start lock.
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

# Same-user pg_ctl wrapper.
pg_ctl_() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"; }

# psql as the superuser against the admin database, over TCP.
psql_() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres "$@"
}


# When our server runs, its port is the one it was started on (see cmd_start).
use_running_port() {
  if is_running && [[ -s "$PG_PORT_FILE" ]]; then PG_PORT="$(<"$PG_PORT_FILE")"; fi
}

# True if our cluster's postmaster is running.
is_running() {
  [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
  pg_ctl_ status >/dev/null 2>&1
}

# True if something (anything) accepts PostgreSQL connections on our port.
port_answers() {
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -t 1 \
    >/dev/null 2>&1
}

# Serialise concurrent starts (two test runs must not both initdb/start).
# Bounded wait, so a stuck holder gives an error instead of a hang.
take_start_lock() {
  exec 9>>"$PG_LOCK"
  flock -w "$START_TIMEOUT_SECS" 9 \
    || die "another 'start' still holds $PG_LOCK after ${START_TIMEOUT_SECS}s"
}

# As root: make sure the system account exists and can reach $PG_ROOT.
prepare_os_user() {
  is_root || return 0

  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER"
    useradd --system --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi

  mkdir -p "$PG_ROOT"

  # The server must be able to traverse every ancestor of its data dir (e.g.
  # /root is usually 0700). Grant search-only access where it is missing:
  # via an ACL for just this user if setfacl exists, else o+x (no listing).
  local path="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${PG_ROOT#/}"
  for part in "${parts[@]:0:${#parts[@]}-1}"; do
    path="$path/$part"
    if ! runuser -u "$PG_OS_USER" -- test -x "$path"; then
      if command -v setfacl >/dev/null 2>&1; then
        log "granting $PG_OS_USER search access to $path (ACL)"
        setfacl -m "u:$PG_OS_USER:x" "$path"
      else
        log "granting search (o+x) access to $path so $PG_OS_USER can reach its data"
        chmod o+x "$path"
      fi
    fi
  done

  chown "$PG_OS_USER:$PG_OS_USER" "$PG_ROOT"
}

# --- Subcommands ------------------------------------------------------------

cmd_install() {
  if PG_BIN="$(find_bin_dir)"; then
    log "PostgreSQL already installed ($PG_BIN)"
    return 0
  fi
  is_root || die "PostgreSQL is not installed and installing needs root; run: sudo $0 install"
  log "PostgreSQL not found; installing the distro package"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
  PG_BIN="$(find_bin_dir)" || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
  log "installed PostgreSQL ($PG_BIN)"
}

cmd_start() {
  find_bin_dir >/dev/null || cmd_install
  require_bin_dir

  prepare_os_user
  mkdir -p "$PG_ROOT"
  take_start_lock

  if is_running; then
    local asked="$PG_PORT"
    use_running_port
    if [[ "$asked" != 0 && "$asked" != "$PG_PORT" ]]; then
      die "instance $PG_INSTANCE already runs on port $PG_PORT, not $asked; run: AGORA_PG_INSTANCE=$PG_INSTANCE $0 stop"
    fi
    set_password
    log "already running on $PG_HOST:$PG_PORT ($PG_DATA)"
    return 0
  fi
  if [[ "$PG_PORT" == 0 ]]; then PG_PORT="$(free_port)"; fi

  # Refuse to start if some other server already owns the port: our pg_ctl
  # would fail, and tests would silently talk to the wrong database.
  if port_answers; then
    die "another server already answers on $PG_HOST:$PG_PORT; stop it or set AGORA_PG_PORT"
  fi

  # One-time cluster creation.
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    log "initialising cluster in $PG_DATA"
    rm -rf "$PG_DATA"  # leftovers of an interrupted initdb
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust --username="$PG_SUPERUSER" \
      --encoding=UTF8 --locale=C >"$PG_ROOT/initdb.log" 2>&1 \
      || { tail -n 20 "$PG_ROOT/initdb.log" >&2; die "initdb failed (log: $PG_ROOT/initdb.log)"; }
  fi

  as_pg mkdir -p "$PG_SOCKET_DIR"
  write_hba

  # Server options: loopback only, private socket dir, and (unless durable)
  # throughput over durability (fine for disposable test data).
  local opts
  opts="-c listen_addresses=$PG_HOST -p $PG_PORT -k '$PG_SOCKET_DIR'"
  if [[ "$PG_DURABLE" != 1 ]]; then
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  opts+=" -c max_connections=300"

  log "starting instance $PG_INSTANCE on $PG_HOST:$PG_PORT (log: $PG_LOG)"
  printf '%s\n' "$PG_PORT" >"$PG_PORT_FILE"
  # One log per server run, so a failure's log tail is about this run only.
  if [[ -f "$PG_LOG" ]]; then mv -f "$PG_LOG" "$PG_LOG.prev"; fi
  if ! pg_ctl_ start -w -t "$START_TIMEOUT_SECS" -l "$PG_LOG" -o "$opts" >/dev/null; then
    tail -n 30 "$PG_LOG" >&2 || true
    die "pg_ctl start failed (log: $PG_LOG)"
  fi

  # pg_ctl -w waits for the socket; also wait until TCP accepts connections.
  local deadline=$((SECONDS + START_TIMEOUT_SECS))
  until port_answers; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$PG_LOG" >&2 || true
      die "server did not accept connections on $PG_HOST:$PG_PORT within ${START_TIMEOUT_SECS}s (log: $PG_LOG)"
    fi
    sleep 0.2
  done
  set_password
  log "ready: $(cmd_url)"
}

# The password AGORA_PG_CLIENTS sign in with (set on every start, so it follows the variable).
set_password() {
  [[ -n "$PG_CLIENTS" ]] || return 0
  # Through stdin, so the password shows in no process list.
  printf "ALTER ROLE %s PASSWORD '%s'\n" "$PG_SUPERUSER" "${AGORA_PG_PASSWORD//\'/\'\'}" | psql_ >/dev/null
}

# Who may connect, rewritten on every start: this machine's own connections (socket,
# loopback, the listen address) trusted; AGORA_PG_CLIENTS with the password.
write_hba() {
  {
    printf '# Generated by scripts/postgres.sh on each start; edits are overwritten.\n'
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
    [[ "$PG_HOST" == 127.0.0.1 ]] || printf 'host all all %s/32 trust\n' "$PG_HOST"
    [[ -z "$PG_CLIENTS" ]] || printf 'host all all %s scram-sha-256\n' "$PG_CLIENTS"
  } | as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null
}

cmd_stop() {
  if ! PG_BIN="$(find_bin_dir)" || [[ ! -d "$PG_ROOT" ]]; then
    log "not running"
    return 0
  fi
  if ! is_running; then
    log "not running"
    return 0
  fi
  log "stopping"
  pg_ctl_ stop -m fast -w -t "$START_TIMEOUT_SECS" >/dev/null
  log "stopped"
}

cmd_status() {
  if PG_BIN="$(find_bin_dir)" && is_running; then
    use_running_port
    log "running on $PG_HOST:$PG_PORT (data: $PG_DATA)"
    return 0
  fi
  log "not running"
  return 3  # same convention as pg_ctl status
}

cmd_url() {
  if PG_BIN="$(find_bin_dir)"; then use_running_port; fi
  [[ "$PG_PORT" != 0 ]] || die "instance $PG_INSTANCE is not running, so it has no port yet; run: $0 start"
  printf 'postgres://%s@%s:%s/postgres\n' "$PG_SUPERUSER" "$PG_HOST" "$PG_PORT"
}

cmd_create_db() {
  require_bin_dir
  use_running_port
  port_answers || die "not running on $PG_HOST:$PG_PORT; run: $0 start"
  local name
  for name in "$@"; do
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name '$name' must be lowercase letters, digits and _"
    if [[ -z "$(psql_ -At -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]]; then
      psql_ -c "CREATE DATABASE $name"
      log "created database $name"
    fi
  done
}

cmd_reset_test_dbs() {
  require_bin_dir
  use_running_port
  port_answers || die "not running on $PG_HOST:$PG_PORT; run: $0 start"

  local dbs
  dbs="$(psql_ -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'agora\_test\_%' ORDER BY 1")"
  if [[ -z "$dbs" ]]; then
    log "no agora_test_* databases to drop"
    return 0
  fi
  log "dropping $(wc -l <<<"$dbs") leftover test database(s)"
  # WITH (FORCE) also kicks out connections left over from crashed tests.
  psql_ <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
FROM pg_database
WHERE datname LIKE 'agora\_test\_%'
\gexec
SQL
}

main() {
  case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    create-db) shift; cmd_create_db "$@" ;;
    reset-test-dbs) cmd_reset_test_dbs ;;
    *) usage ;;
  esac
}

main "$@"
