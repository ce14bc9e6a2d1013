#!/bin/sh
# Entrypoint of agora.local/dev/postgresql (scripts/dev-images.sh): Debian's PostgreSQL with the
# interface the Helm chart's dev PostgreSQL uses: POSTGRES_PASSWORD (the superuser's password,
# required on first start), PGDATA (the cluster's folder), and the *.sql files of
# /docker-entrypoint-initdb.d run once, when the cluster is created. Then the server runs in
# the foreground, listening on every address, password (scram-sha-256) required over TCP; the
# container's arguments are the server's (e.g. -c max_connections=200).
set -eu

log() { printf '[postgresql] %s\n' "$*" >&2; }

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "error: POSTGRES_PASSWORD is empty; set it to the superuser's password (first start only)"
    exit 1
  fi
  # Created beside PGDATA and renamed into place when complete: an interrupted first start
  # leaves no half-made cluster that a restart would take for a real one.
  new="$PGDATA.new"
  rm -rf "$new"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  log "creating the cluster in $PGDATA"
  initdb -D "$new" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C >/dev/null
  rm -f "$pwfile"
  printf '# Every address, with a password (scram-sha-256).\nhost all all all scram-sha-256\n' \
    >>"$new/pg_hba.conf"
  # Init scripts run against a server that listens on its socket only.
  pg_ctl -D "$new" -w -s -o "-c listen_addresses=" start
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    log "running $f"
    psql -q -v ON_ERROR_STOP=1 -U postgres -d postgres -f "$f"
  done
  pg_ctl -D "$new" -w -s -m fast stop
  mv "$new" "$PGDATA"
fi

log "starting PostgreSQL on $PGDATA"
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
