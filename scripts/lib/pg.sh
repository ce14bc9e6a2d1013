# shellcheck shell=bash
# What the scripts that run PostgreSQL servers share (postgres.sh: one server; patroni.sh: one
# member of a replicated cluster): the distro's server binaries, installed once, and the system
# account the servers run as when we are root (PostgreSQL refuses to run as root).
#
#   pg_bin_dir            print the bin dir of the newest installed major version, or fail
#   pg_install            install the distro server unless one is installed (needs root)
#   pg_prepare_user DIR   create the account and let it reach and own DIR (root only)
#   as_pg CMD...          run CMD as that account (as ourselves when not root), from /
#   pg_create_dbs PSQL NAME...
#                         create each named database that does not exist yet, through the
#                         function PSQL (psql on the server's admin database)
#   PG_OS_USER            the account

PG_OS_USER="agora-pg"

is_root() { [[ "$(id -u)" -eq 0 ]]; }

pg_bin_dir() {
  local dir
  dir="$(
    for d in /usr/lib/postgresql/*/bin; do
      [[ -x "$d/initdb" ]] && printf '%s\n' "$d"
    done | sort -V | tail -n 1
  )"
  [[ -n "$dir" ]] || return 1
  printf '%s\n' "$dir"
}

pg_install() {
  if pg_bin_dir >/dev/null; then
    log "PostgreSQL already installed ($(pg_bin_dir))"
    return 0
  fi
  is_root || die "PostgreSQL is not installed and installing needs root; run: sudo $0 install"
  log "PostgreSQL not found; installing the distro package"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
  pg_bin_dir >/dev/null || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
  log "installed PostgreSQL ($(pg_bin_dir))"
}

# From "/" so the server never trips over a current directory it cannot read, and with the
# lock fd closed so a long-lived server never inherits (and holds) the start lock.
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

# setpriv's prefix that makes a daemon run as the account (execs, so the pid stays the
# daemon's), or nothing when we are not root.
pg_as_user_prefix() {
  if is_root; then printf '%s\n' setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups --; fi
}

pg_prepare_user() {
  is_root || return 0
  local root="$1"

  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER"
    useradd --system --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi

  mkdir -p "$root"

  # The server must be able to traverse every ancestor of its data dir (e.g. /root is
  # usually 0700). Grant search-only access where it is missing: via an ACL for just this
  # user if setfacl exists, else o+x (no listing).
  local path="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${root#/}"
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

  chown "$PG_OS_USER:$PG_OS_USER" "$root"
}

pg_create_dbs() {
  local psql="$1" name
  shift
  for name in "$@"; do
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name '$name' must be lowercase letters, digits and _"
    # Each failure returns (callers may try again, where set -e does not apply).
    local found
    found="$("$psql" -At -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" || return 1
    if [[ -z "$found" ]]; then
      "$psql" -c "CREATE DATABASE $name" || return 1
      log "created database $name"
    fi
  done
}
