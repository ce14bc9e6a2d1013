#!/usr/bin/env bash
# Throwaway local PostgreSQL for Agora's development and tests.
#
# Usage: scripts/postgres.sh {install|start|stop|kill|status|url|ca|ports|reset|create-db NAME...|reset-test-dbs}
#
#   install         install the distro PostgreSQL server if no initdb is found
#   start           init (once) and start a private cluster; no-op if running
#   stop            fast-stop the cluster (SIGKILL after 30s); no-op if not running
#   kill            SIGKILL it, as a crash would (for fault tests); no-op if not running
#   status          report whether the cluster runs and answers (0 = yes, 3 = not running,
#                   1 = its process runs but it does not answer)
#   url             print the admin connection URL; with TLS it ends in
#                   ?sslmode=verify-full&sslrootcert=CA (the CA's absolute path)
#   ca              print the path of the instance's CA certificate (PEM); fails when TLS is off
#   ports           print its port, as a key=port line
#   reset           stop the cluster and delete its files (data included)
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
# AGORA_PG_TLS=1 makes TCP TLS-only: the server gets ssl=on and a certificate for the listen
# address and localhost, signed by the instance's own CA (scripts/lib/tls.sh; all of it in
# INSTANCE/tls/, made once, the server's certificate again when the address changes), and
# pg_hba.conf has hostssl lines only (same methods: trust for this machine's addresses,
# scram-sha-256 for AGORA_PG_CLIENTS), so plaintext TCP is refused; the unix socket stays
# trusted. A start records the mode in INSTANCE/mode, and while the server runs `url`, `ca`,
# create-db etc. follow that record, whatever the variable says. A stopped instance follows
# the variable on its next start; `start` on a running one asked for the other mode fails
# (stop it first).
#
# Environment:
#   AGORA_CACHE        cache root                                (default: $HOME/.cache/agora)
#   AGORA_PG_INSTANCE  instance name; lives in $AGORA_CACHE/postgres/NAME  (default: test)
#   AGORA_PG_PORT      TCP port to listen on, 0 = any free one   (default: 55432)
#   AGORA_PG_DURABLE   1 = fsync and synchronous commits on      (default: 0)
#   AGORA_BIND_HOST    the address to listen on, one of this machine's (default: 127.0.0.1)
#   AGORA_PG_CLIENTS   a CIDR of clients admitted with a password (default: none)
#   AGORA_PG_PASSWORD  the superuser's password for them (required with AGORA_PG_CLIENTS)
#   AGORA_PG_TLS       1 = TLS only over TCP (hostssl)          (default: 0)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/pg.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/tls.sh"

# --- Configuration ----------------------------------------------------------

PG_HOST="$DAEMON_HOST"
port_declare pg AGORA_PG_PORT 55432
PG_CLIENTS="${AGORA_PG_CLIENTS:-}"
[[ -z "$PG_CLIENTS" || "$PG_CLIENTS" =~ ^[0-9.]+/[0-9]+$ ]] \
  || die "AGORA_PG_CLIENTS must be an IPv4 CIDR, e.g. 10.241.0.0/24"
[[ -z "$PG_CLIENTS" || -n "${AGORA_PG_PASSWORD:-}" ]] \
  || die "AGORA_PG_CLIENTS needs AGORA_PG_PASSWORD (the password they sign in with)"
PG_DURABLE="${AGORA_PG_DURABLE:-0}"
PG_SUPERUSER="agora"
PG_TLS_REQ="${AGORA_PG_TLS:-0}"
[[ "$PG_TLS_REQ" =~ ^[01]$ ]] || die "AGORA_PG_TLS='$PG_TLS_REQ': use 1 (TLS only) or 0 (plaintext)"

instance_init postgres "${AGORA_PG_INSTANCE:-test}" AGORA_PG_INSTANCE "$CACHE_DIR/postgres"
PG_DATA="$INSTANCE_ROOT/data"
PG_SOCKET_DIR="$INSTANCE_ROOT/run"  # keep it short: unix socket paths max ~107 bytes
PG_TLS_DIR="$INSTANCE_ROOT/tls"     # the CA and the server's certificate (AGORA_PG_TLS=1)
PG_MODE="$INSTANCE_ROOT/mode"       # AGORA_PG_TLS=0|1 of the last start
# What our server's command line contains (the data directory is per instance).
INSTANCE_PATTERN="bin/postgres -D $PG_DATA "
INSTANCE_NOT_READY="does not accept connections"
INSTANCE_START_TIMEOUT_SECS=30
INSTANCE_STOP_TIMEOUT_SECS=30
INSTANCE_STOP_SIGNAL=INT  # fast shutdown: roll back open transactions, then stop cleanly

# --- Helpers ----------------------------------------------------------------

# Set PG_BIN, failing with a hint if PostgreSQL is not installed.
require_bin_dir() {
  PG_BIN="$(pg_bin_dir)" || die "PostgreSQL server not installed; run: $0 install"
}

# psql as the superuser against the admin database, over TCP (with TLS, verifying the
# server's certificate as clients do).
psql_() {
  local -a tls=()
  if [[ "$PG_TLS" == 1 ]]; then tls=(PGSSLMODE=verify-full PGSSLROOTCERT="$PG_TLS_DIR/ca.pem"); fi
  env "${tls[@]}" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "${PORTS[pg]}" -U "$PG_SUPERUSER" -d postgres "$@"
}

# PG_TLS: the running instance's AGORA_PG_TLS (its record), else the one asked for.
mode_load() { PG_TLS="$(instance_mode AGORA_PG_TLS)"; }

# Before `start`, under the instance's lock: a running instance keeps its mode.
mode_check_start() {
  instance_mode_check_start AGORA_PG_TLS AGORA_PG_INSTANCE
  mode_load
}

# Percent-encode $1 for a URL's query (all but unreserved characters and '/'), byte by byte.
url_encode() {
  local LC_ALL=C s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9._~/-]) out+="$c" ;;
      *) printf -v c '%%%02X' "'$c"; out+="$c" ;;
    esac
  done
  printf '%s\n' "$out"
}

# The CA, and the server's certificate for PG_HOST and localhost (issued again when PG_HOST is
# not among its names), its key owned by the server's account and 0600 as PostgreSQL demands.
tls_material() {
  local dir="$PG_TLS_DIR"
  tls_server "$dir" server server "$PG_HOST"
  chmod 755 "$dir"  # the server's account must reach its files; the CA's key stays 0600
  chmod 600 "$dir/server-key.pem"
  if is_root; then chown "$PG_OS_USER:$PG_OS_USER" "$dir/server.pem" "$dir/server-key.pem"; fi
  as_pg test -r "$dir/server-key.pem" -a -r "$dir/server.pem" \
    || die "the server's account cannot read $dir/server-key.pem (or server.pem)"
}

# PG_BIN and the running server's PORTS, or die.
require_running() {
  require_bin_dir
  instance_load_ports
  instance_running_pid >/dev/null && instance_ready \
    || die "instance $INSTANCE_NAME is not running; run: AGORA_PG_INSTANCE=$INSTANCE_NAME $0 start"
}

# --- The instance (scripts/lib/daemon.sh) -----------------------------------

instance_install() { pg_install; }

# The server binary, once PostgreSQL is installed.
instance_binary() {
  pg_bin_dir >/dev/null || instance_install >&2
  printf '%s/postgres\n' "$(pg_bin_dir)"
}

instance_where() { printf '%s:%s\n' "$PG_HOST" "${PORTS[pg]}"; }

# True if the server accepts connections on its port (resolve_ports made sure no other
# server had it).
instance_ready() {
  [[ -n "${PG_BIN:-}" ]] || PG_BIN="$(pg_bin_dir)" || return 1
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "${PORTS[pg]}" -U "$PG_SUPERUSER" -d postgres -t 1 \
    >/dev/null 2>&1
}

# The cluster, created once, and who may connect (while stopped).
instance_config() {
  require_bin_dir
  pg_prepare_user "$INSTANCE_ROOT"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    log "initialising cluster in $PG_DATA"
    rm -rf "$PG_DATA"  # leftovers of an interrupted initdb
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust --username="$PG_SUPERUSER" \
      --encoding=UTF8 --locale=C >"$INSTANCE_ROOT/initdb.log" 2>&1 \
      || { tail -n 20 "$INSTANCE_ROOT/initdb.log" >&2; die "initdb failed (log: $INSTANCE_ROOT/initdb.log)"; }
  fi
  as_pg mkdir -p "$PG_SOCKET_DIR"
  if [[ "$PG_TLS" == 1 ]]; then tls_material; fi
  write_hba
  printf 'AGORA_PG_TLS=%s\n' "$PG_TLS" >"$PG_MODE"
}

# The server itself (as PG_OS_USER when we are root; setpriv execs, so the pid is the
# postmaster's): one address, a private socket dir, and (unless durable) throughput over
# durability, fine for disposable test data; with TLS, ssl=on and the instance's certificate.
instance_launch() {
  local -a as_user durability=() tls=()
  mapfile -t as_user < <(pg_as_user_prefix)
  if [[ "$PG_DURABLE" != 1 ]]; then durability=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off); fi
  if [[ "$PG_TLS" == 1 ]]; then
    tls=(-c ssl=on -c ssl_cert_file="$PG_TLS_DIR/server.pem" -c ssl_key_file="$PG_TLS_DIR/server-key.pem")
  fi
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" "${as_user[@]}" "$1" -D "$PG_DATA" \
    -c listen_addresses="$PG_HOST" -p "${PORTS[pg]}" -k "$PG_SOCKET_DIR" -c max_connections=300 \
    "${durability[@]}" "${tls[@]}"
}

# The password AGORA_PG_CLIENTS sign in with (set on every start, so it follows the variable).
instance_started() {
  [[ -n "$PG_CLIENTS" ]] || return 0
  require_bin_dir
  # Through stdin, so the password shows in no process list.
  printf "ALTER ROLE %s PASSWORD '%s'\n" "$PG_SUPERUSER" "${AGORA_PG_PASSWORD//\'/\'\'}" | psql_ >/dev/null
}

# Who may connect, rewritten on every start: this machine's own connections (socket,
# loopback, the listen address) trusted; AGORA_PG_CLIENTS with the password. With TLS every
# TCP line is hostssl: a plaintext connection matches none and is refused.
write_hba() {
  local tcp=host
  [[ "$PG_TLS" != 1 ]] || tcp=hostssl
  {
    printf '# Generated by scripts/postgres.sh on each start; edits are overwritten.\n'
    [[ "$PG_TLS" != 1 ]] || printf '# AGORA_PG_TLS=1: TCP only with TLS (hostssl), no plaintext.\n'
    printf 'local all all trust\n%s all all 127.0.0.1/32 trust\n%s all all ::1/128 trust\n' "$tcp" "$tcp"
    [[ "$PG_HOST" == 127.0.0.1 ]] || printf '%s all all %s/32 trust\n' "$tcp" "$PG_HOST"
    [[ -z "$PG_CLIENTS" ]] || printf '%s all all %s scram-sha-256\n' "$tcp" "$PG_CLIENTS"
  } | as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null
}

# --- Databases --------------------------------------------------------------

cmd_create_db() {
  require_running
  pg_create_dbs psql_ "$@"
}

cmd_reset_test_dbs() {
  require_running
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

# The admin URL; with TLS, verifying the server's certificate against the instance's CA.
cmd_url() {
  local query=""
  [[ "$PG_TLS" != 1 ]] || query="?sslmode=verify-full&sslrootcert=$(url_encode "$PG_TLS_DIR/ca.pem")"
  instance_endpoint pg "postgres://$PG_SUPERUSER@" "/postgres$query"
}

cmd_ca() {
  [[ "$PG_TLS" == 1 ]] \
    || die "TLS is off for instance $INSTANCE_NAME (start it with AGORA_PG_TLS=1)"
  [[ -s "$PG_TLS_DIR/ca.pem" ]] || die "no CA yet in $PG_TLS_DIR; run: AGORA_PG_TLS=1 $0 start"
  printf '%s\n' "$PG_TLS_DIR/ca.pem"
}

instance_command() {
  case "$1" in
    url) cmd_url ;;
    ca) cmd_ca ;;
    create-db) shift; cmd_create_db "$@" ;;
    reset-test-dbs) cmd_reset_test_dbs ;;
    *) usage ;;
  esac
}

mode_load
[[ "${1:-}" != start ]] || mode_check_start
instance_main "$@"
