#!/usr/bin/env bash
# Throwaway local Jaeger v2 (all-in-one, in-memory storage) for Agora's development and tests.
#
# Usage: scripts/jaeger.sh {install|start|stop|kill|status|url|api|otlp-grpc|otlp-http|query-grpc|health|ca|ports|reset}
#
#   install     build the pinned jaeger binary (scripts/go-tools.sh install jaeger)
#   start       install and start Jaeger; no-op if it runs already; returns once its health
#               check reports OK and its query API answers
#   stop        SIGTERM Jaeger (SIGKILL after 20s); no-op if not running
#   kill        SIGKILL it, as a crash would (for fault tests); no-op if not running
#   status      report whether Jaeger runs and answers (0 = yes, 3 = not running,
#               1 = its process runs but it does not answer)
#   url         print the UI URL (http://127.0.0.1:PORT)
#   api         print the query HTTP API's base URL (http://127.0.0.1:PORT/api), e.g.
#               "$(scripts/jaeger.sh api)/services"
#   otlp-grpc   print the OTLP/gRPC endpoint (http://127.0.0.1:PORT; https:// with OTLP TLS),
#               e.g. for OTEL_EXPORTER_OTLP_ENDPOINT
#   otlp-http   print the OTLP/HTTP endpoint (http://127.0.0.1:PORT; https:// with OTLP TLS;
#               traces go to /v1/traces)
#   query-grpc  print the query gRPC address (127.0.0.1:PORT; api_v2 and api_v3)
#   health      print the health check URL (http://127.0.0.1:PORT/status)
#   ca          print the path of the CA certificate (PEM) that signed the OTLP receivers'
#               certificate, e.g. for OTEL_EXPORTER_OTLP_CERTIFICATE; fails when OTLP TLS is off
#   ports       print every listener's port, as key=port lines
#   reset       stop Jaeger and delete the instance's files (config, logs); traces are only
#               ever in memory, so every start begins empty anyway
#
# Jaeger is private to Agora: the `jaeger` binary (Jaeger v2, an OpenTelemetry Collector
# distribution) run with a config generated into $AGORA_CACHE/jaeger/INSTANCE/, in which
# every listener is explicit and bound to 127.0.0.1: OTLP receivers (gRPC and HTTP; no
# Jaeger-thrift or Zipkin receivers), query (UI, HTTP API, gRPC API) and health check. The
# collector's own metrics endpoint and the query service's self-tracing are off. Every port
# is configurable, so instances (e.g. `make up`'s and a test run's) can run side by side. A
# port of 0 means any free port, chosen at start; the printers then report the chosen one
# while Jaeger runs. Built from source, the binary has no UI assets: the UI port serves a
# placeholder page, but the HTTP API under /api works.
#
# AGORA_JAEGER_OTLP_TLS=1 makes both OTLP receivers (gRPC and HTTP) TLS-only, with a server
# certificate for the listen address and localhost signed by the instance's own CA
# (scripts/lib/tls.sh; all of it in INSTANCE/tls/, made once, the certificate again when the
# address changes); no client certificate is asked for. The query API, UI and health check
# stay plain HTTP. A start records the mode in INSTANCE/mode, and while Jaeger runs
# `otlp-grpc`, `otlp-http` and `ca` follow that record, whatever the variable says. A stopped
# instance follows the variable on its next start; `start` on a running one asked for the
# other mode fails (stop it first).
#
# Jaeger's version is pinned in scripts/versions.env.
#
# Environment:
#   AGORA_CACHE                   cache root                (default: $HOME/.cache/agora)
#   AGORA_JAEGER_INSTANCE         instance name             (default: dev)
#   AGORA_BIND_HOST             the address to listen on, one of this machine's (default: 127.0.0.1)
#   AGORA_JAEGER_OTLP_GRPC_PORT   OTLP/gRPC receiver        (default: 4317)
#   AGORA_JAEGER_OTLP_HTTP_PORT   OTLP/HTTP receiver        (default: 4318)
#   AGORA_JAEGER_UI_PORT          UI and query HTTP API     (default: 16686)
#   AGORA_JAEGER_QUERY_GRPC_PORT  query gRPC API            (default: 16685)
#   AGORA_JAEGER_HEALTH_PORT      health check (HTTP)       (default: 13133)
#   AGORA_JAEGER_MAX_TRACES       traces kept in memory     (default: 100000)
#   AGORA_JAEGER_OTLP_TLS         1 = OTLP over TLS         (default: 0)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/daemon.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/tls.sh"

# --- Configuration ----------------------------------------------------------

JAEGER_HOST="$DAEMON_HOST"
JAEGER_MAX_TRACES="${AGORA_JAEGER_MAX_TRACES:-100000}"
JAEGER_TLS_REQ="${AGORA_JAEGER_OTLP_TLS:-0}"

port_declare otlp_grpc AGORA_JAEGER_OTLP_GRPC_PORT 4317
port_declare otlp_http AGORA_JAEGER_OTLP_HTTP_PORT 4318
port_declare ui AGORA_JAEGER_UI_PORT 16686
port_declare query_grpc AGORA_JAEGER_QUERY_GRPC_PORT 16685
port_declare health AGORA_JAEGER_HEALTH_PORT 13133

instance_init jaeger "${AGORA_JAEGER_INSTANCE:-dev}" AGORA_JAEGER_INSTANCE "$CACHE_DIR/jaeger"
JAEGER_CONF="$INSTANCE_ROOT/config.yaml"  # rewritten on every start (while stopped)
JAEGER_TLS_DIR="$INSTANCE_ROOT/tls"       # the CA and the OTLP receivers' certificate
JAEGER_MODE="$INSTANCE_ROOT/mode"         # AGORA_JAEGER_OTLP_TLS=0|1 of the last start
# What our Jaeger's command line contains (the config path is per instance).
INSTANCE_PATTERN="--config=file:$JAEGER_CONF"

CURL_TIMEOUT_SECS=2

# --- Helpers ----------------------------------------------------------------

[[ "$JAEGER_MAX_TRACES" =~ ^[1-9][0-9]*$ ]] \
  || die "AGORA_JAEGER_MAX_TRACES='$JAEGER_MAX_TRACES' is not a positive number"
[[ "$JAEGER_TLS_REQ" =~ ^[01]$ ]] \
  || die "AGORA_JAEGER_OTLP_TLS='$JAEGER_TLS_REQ': use 1 (OTLP over TLS) or 0 (plaintext)"

# JAEGER_TLS: the running instance's AGORA_JAEGER_OTLP_TLS (its record), else the one asked for.
mode_load() { JAEGER_TLS="$(instance_mode AGORA_JAEGER_OTLP_TLS)"; }

# Before `start`, under the instance's lock: a running instance keeps its mode.
mode_check_start() {
  instance_mode_check_start AGORA_JAEGER_OTLP_TLS AGORA_JAEGER_INSTANCE
  mode_load
}

# The CA, and the OTLP receivers' certificate for JAEGER_HOST and localhost (issued again when
# JAEGER_HOST is not among its names).
tls_material() { tls_server "$JAEGER_TLS_DIR" server server "$JAEGER_HOST"; }

# The lines that follow an OTLP receiver's endpoint line: its tls block (with OTLP TLS; none
# without), each line after a newline.
otlp_tls_config() {
  [[ "$JAEGER_TLS" == 1 ]] || return 0
  printf '\n        tls:\n          cert_file: %s\n          key_file: %s' \
    "$JAEGER_TLS_DIR/server.pem" "$JAEGER_TLS_DIR/server-key.pem"
}

# The OTLP endpoints' scheme.
otlp_scheme() { if [[ "$JAEGER_TLS" == 1 ]]; then printf 'https://'; else printf 'http://'; fi; }

# Where it listens, from PORTS as they are (no lookup).
instance_where() {
  local tls=""
  [[ "$JAEGER_TLS" != 1 ]] || tls=", both over TLS"
  printf 'http://%s:%s, OTLP gRPC :%s, OTLP HTTP :%s%s\n' "$JAEGER_HOST" "${PORTS[ui]}" \
    "${PORTS[otlp_grpc]}" "${PORTS[otlp_http]}" "$tls"
}
INSTANCE_NOT_READY="its health check or query API does not answer"

# True if the health check reports every component OK (200; 503 while starting or after
# a component failed) and the query API answers.
instance_ready() {
  curl -fsS --max-time "$CURL_TIMEOUT_SECS" -o /dev/null \
    "http://$JAEGER_HOST:${PORTS[health]}/status" 2>/dev/null \
    && curl -fsS --max-time "$CURL_TIMEOUT_SECS" -o /dev/null \
      "http://$JAEGER_HOST:${PORTS[ui]}/api/services" 2>/dev/null
}

# The complete collector config (PORTS resolved); replaces the binary's built-in
# all-in-one config, whose listeners default to localhost or all interfaces.
instance_config() {
  mkdir -p "$INSTANCE_ROOT"
  if [[ "$JAEGER_TLS" == 1 ]]; then tls_material; fi
  cat >"$JAEGER_CONF.tmp" <<EOF
# Generated by scripts/jaeger.sh on each start; edits are overwritten.
# Every listener is explicit and on $JAEGER_HOST.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    # The collector's own metrics (a Prometheus endpoint, :8888 by default): off.
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $JAEGER_MAX_TRACES

  jaeger_query:
    storage:
      traces: memstore
    # Self-tracing would export to the OTLP default localhost:4317, i.e. possibly to
    # another instance; off.
    enable_tracing: false
    http:
      endpoint: $JAEGER_HOST:${PORTS[ui]}
    grpc:
      endpoint: $JAEGER_HOST:${PORTS[query_grpc]}

  healthcheckv2:
    use_v2: true
    # HTTP only (status at /status); no "grpc" key, so no gRPC health server.
    http:
      endpoint: $JAEGER_HOST:${PORTS[health]}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $JAEGER_HOST:${PORTS[otlp_grpc]}$(otlp_tls_config)
      http:
        endpoint: $JAEGER_HOST:${PORTS[otlp_http]}$(otlp_tls_config)

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
  mv -f "$JAEGER_CONF.tmp" "$JAEGER_CONF"
  printf 'AGORA_JAEGER_OTLP_TLS=%s\n' "$JAEGER_TLS" >"$JAEGER_MODE"
}

instance_launch() {
  daemon_launch "$INSTANCE_PID" "$INSTANCE_LOG" "$1" --config="file:$JAEGER_CONF"
}

# --- Subcommands (scripts/lib/daemon.sh) -----------------------------------

cmd_ca() {
  [[ "$JAEGER_TLS" == 1 ]] \
    || die "OTLP TLS is off for instance $INSTANCE_NAME (start it with AGORA_JAEGER_OTLP_TLS=1)"
  [[ -s "$JAEGER_TLS_DIR/ca.pem" ]] \
    || die "no CA yet in $JAEGER_TLS_DIR; run: AGORA_JAEGER_OTLP_TLS=1 $0 start"
  printf '%s\n' "$JAEGER_TLS_DIR/ca.pem"
}

instance_command() {
  case "$1" in
    url) instance_endpoint ui http:// "" ;;
    api) instance_endpoint ui http:// /api ;;
    otlp-grpc) instance_endpoint otlp_grpc "$(otlp_scheme)" "" ;;
    otlp-http) instance_endpoint otlp_http "$(otlp_scheme)" "" ;;
    query-grpc) instance_endpoint query_grpc "" "" ;;
    health) instance_endpoint health http:// /status ;;
    ca) cmd_ca ;;
    *) usage ;;
  esac
}

mode_load
[[ "${1:-}" != start ]] || mode_check_start
instance_main "$@"
