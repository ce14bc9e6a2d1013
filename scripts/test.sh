#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: the tools the tests call (curl, the OpenAPI
# validator), a private PostgreSQL, Kafka broker, Consul agent and Jaeger (installed and
# started here if needed), then formatting, lints, every test on SQLite, PostgreSQL, Kafka,
# Consul and Jaeger, then side by side a `make up` / `make down` cycle, schemathesis against
# the OpenAPI document and the Helm chart's checks (lint, Kubernetes schemas, switches, k8s/
# drift), then a short chaos run with its reconciliation, the image's root filesystem and the
# image made without Docker, and the platform installed with Helm on a real single-node
# Kubernetes (tests/kube.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agora/target}"
# A clean clone's sources are all newer than the cache, so the workspace's crates are built
# again; rustc's incremental state is keyed by crate, not by checkout, and a clone at another
# path finds none it can use: building it costs more than a plain build (test build: 115 s
# against 77 s here). A developer's own checkout keeps it.
if [[ "${CI:-}" == true ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
# Each step's time is kept, and the table printed at the end (the CI budget is minutes).
step_times=""
step_started=$SECONDS
step() {
  step_done
  current_step="$*"
  step_started=$SECONDS
  printf '\n==> %s\n' "$*"
}
step_done() {
  if [[ -n "${current_step:-}" ]]; then
    step_times+="$(printf '%6ss  %s' "$((SECONDS - step_started))" "$current_step")"$'\n'
  fi
}
# What a failing step has to say (tests/kube.sh writes here), printed again as the run's last
# lines, after the infrastructure's stop messages: that end of the output is what CI shows.
AGORA_TEST_SUMMARY="$(mktemp)"
export AGORA_TEST_SUMMARY

step "toolchain"
# A minimal rustup profile lacks these; installing them is a no-op when present.
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
# OpenSSL's headers, for librdkafka's TLS and SASL.
bash scripts/build-deps.sh

step "test tools"
# The one-command test runs the README's curl commands as printed; the chaos run skews a
# process's clock with libfaketime.
missing=()
command -v curl >/dev/null || missing+=(curl)
dpkg -s libfaketime >/dev/null 2>&1 || missing+=(libfaketime)
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# openapi-spec-validator checks the gateway's /openapi.json (a private virtualenv).
bash scripts/python-tools.sh install

step "PostgreSQL"
# The suite's instances of the infrastructure. Each is stopped again only if this run started
# it: a developer's running instance stays up, and CI leaves no process behind (the trap is set
# first, so a start that fails half-way is undone). Entries: "SCRIPT VAR=VALUE...".
started_here=()
cleanup() {
  local rc=$?
  local pid
  for pid in "${kube_install_pid:-}" "${up_test_pid:-}" "${chart_test_pid:-}"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -- "-$pid" || true; fi
  done
  for pid in "${up_test_pid:-}" "${chart_test_pid:-}"; do
    if [[ -n "$pid" ]]; then wait "$pid" 2>/dev/null || true; fi
  done
  stop_started_here
  if ((rc != 0)); then
    printf '\n==> make test FAILED (exit %s) in step: %s\n' "$rc" "${current_step:-?}" >&2
    cat "$AGORA_TEST_SUMMARY" >&2
  else
    step_done
    printf '\n==> make test passed in %s s; the steps:\n%s' "$SECONDS" "$step_times"
  fi
  rm -f "$AGORA_TEST_SUMMARY"
}
trap cleanup EXIT

# The instances this run started, stopped in the reverse order (once: the list is emptied).
stop_started_here() {
  local i entry
  for ((i = ${#started_here[@]} - 1; i >= 0; i--)); do
    read -r -a entry <<<"${started_here[i]}"
    env "${entry[@]:1}" bash "scripts/${entry[0]}" stop || true
  done
  started_here=()
}

# instance SCRIPT [VAR=VALUE...]: the instance the settings name, started unless it runs.
instance() {
  local script="$1"
  shift
  if ! env "$@" bash "scripts/$script" status >/dev/null 2>&1; then
    started_here+=("$script $*")
    env "$@" bash "scripts/$script" start
  fi
}

step "cluster pieces"
# The test cluster's packages now (apt must not run beside the other installs), its binaries and
# images (scripts/kube.sh install) in the background: a no-op when cached, a 15-20 minute Go
# build on a fresh machine, so it runs at low priority beside the rest and the Kubernetes step
# at the end waits for it.
bash scripts/kube.sh install-packages
KUBE_INSTALL_LOG="${AGORA_CACHE:-$HOME/.cache/agora}/kube/install.log"
setsid nice -n 19 bash scripts/kube.sh install >"$KUBE_INSTALL_LOG" 2>&1 &
kube_install_pid=$!
# The suite's infrastructure is secured as a managed one would be, so every test that uses it
# goes over TLS: PostgreSQL takes only TLS (verify-full against its own CA), Kafka only SASL_SSL
# with SCRAM-SHA-512 and a client certificate, Consul denies anything without a token, and
# Jaeger takes OTLP over TLS (docs/security.md).
pg_env=(AGORA_PG_TLS=1)
instance postgres.sh "${pg_env[@]}"
env "${pg_env[@]}" bash scripts/postgres.sh reset-test-dbs
AGORA_TEST_POSTGRES_URL="$(env "${pg_env[@]}" bash scripts/postgres.sh url)"
export AGORA_TEST_POSTGRES_URL

step "Kafka"
# The suite's own broker instance on free ports, beside a developer's `dev` or `make up` one.
export AGORA_KAFKA_INSTANCE=test AGORA_KAFKA_PORT=0 AGORA_KAFKA_CONTROLLER_PORT=0
kafka_env=(AGORA_KAFKA_INSTANCE=test AGORA_KAFKA_SECURITY=sasl-ssl)
# Its data is disposable: an instance set up for another protocol (as the recorded mode says)
# starts afresh.
# (Read whole: grep -q would close the pipe early, and pipefail would call it a mismatch.)
kafka_mode="$(bash scripts/kafka.sh client-env 2>/dev/null || true)"
[[ $'\n'"$kafka_mode"$'\n' == *$'\nAGORA_KAFKA_SECURITY=sasl-ssl\n'* ]] || bash scripts/kafka.sh reset
instance kafka.sh "${kafka_env[@]}"
AGORA_TEST_KAFKA_BROKERS="$(bash scripts/kafka.sh url)"
export AGORA_TEST_KAFKA_BROKERS
# What a client needs (AGORA_KAFKA_SECURITY, _SASL_*, _TLS_*), as AGORA_TEST_KAFKA_*: the tests
# hand them to the roles they start (agora_kit::testing::kafka_client_env).
kafka_client="$(env "${kafka_env[@]}" bash scripts/kafka.sh client-env)"
while IFS='=' read -r name value; do
  [[ "$name" == AGORA_KAFKA_* ]] || continue
  export "AGORA_TEST_KAFKA_${name#AGORA_KAFKA_}=$value"
done <<<"$kafka_client"

step "Consul"
# The suite's own agent on free ports (DNS and gRPC off: the tests use its HTTP API only).
consul_env=(AGORA_CONSUL_INSTANCE=test AGORA_CONSUL_HTTP_PORT=0 AGORA_CONSUL_SERVER_PORT=0
  AGORA_CONSUL_SERF_LAN_PORT=0 AGORA_CONSUL_SERF_WAN_PORT=0 AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1
  AGORA_CONSUL_ACL=1)
instance consul.sh "${consul_env[@]}"
AGORA_TEST_CONSUL_ADDR="$(env "${consul_env[@]}" bash scripts/consul.sh addr)"
AGORA_TEST_CONSUL_TOKEN="$(env "${consul_env[@]}" bash scripts/consul.sh token)"
export AGORA_TEST_CONSUL_ADDR AGORA_TEST_CONSUL_TOKEN

step "Jaeger"
# The suite's own collector and query API on free ports, for the trace tests.
jaeger_env=(AGORA_JAEGER_INSTANCE=test AGORA_JAEGER_UI_PORT=0 AGORA_JAEGER_OTLP_GRPC_PORT=0
  AGORA_JAEGER_OTLP_HTTP_PORT=0 AGORA_JAEGER_QUERY_GRPC_PORT=0 AGORA_JAEGER_HEALTH_PORT=0
  AGORA_JAEGER_OTLP_TLS=1)
instance jaeger.sh "${jaeger_env[@]}"
AGORA_TEST_JAEGER_URL="$(env "${jaeger_env[@]}" bash scripts/jaeger.sh url)"
AGORA_TEST_OTLP_ENDPOINT="$(env "${jaeger_env[@]}" bash scripts/jaeger.sh otlp-grpc)"
AGORA_TEST_OTLP_CA="$(env "${jaeger_env[@]}" bash scripts/jaeger.sh ca)"
export AGORA_TEST_JAEGER_URL AGORA_TEST_OTLP_ENDPOINT AGORA_TEST_OTLP_CA

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "layers"
# ARCHITECTURE.md's layers against cargo metadata and the use lines (after a self-test that
# plants one violation of each rule).
python3 scripts/check-layers.py --self-test

step "cargo test"
# Built once, then the test binaries run in three lanes side by side (they mostly wait on
# Kafka, PostgreSQL and Consul): the slowest binaries are spread first (scripts/lib/test-lanes.py).
cargo test --workspace --all-targets --no-run
cargo test --workspace --all-targets --no-run --message-format=json 2>/dev/null \
  | python3 scripts/lib/test-lanes.py --lanes 3 --heavy agora-events:it --heavy agora:it \
    --heavy agora-tests:failover --heavy agora-tests:discovery

step "make up / make down, API fuzzing (schemathesis) and the roles started from the chart, side by side"
# A private stack (own instances, free ports) run by the debug binary cargo test built: most
# of its time is spent waiting for JVMs, Patroni and Consul to come up, so it runs in the
# background while schemathesis works, and its output follows schemathesis's. So does each
# role started from its rendered Deployment on the suite's infrastructure (the last that needs
# it). The chart's rendering checks run in the Kubernetes step, whose CPU is half idle.
UP_TEST_LOG="$(mktemp)"
setsid bash tests/up.sh >"$UP_TEST_LOG" 2>&1 &
up_test_pid=$!
CHART_TEST_LOG="$(mktemp)"
setsid bash scripts/chart.sh check tests/chart/test_roles_start.py >"$CHART_TEST_LOG" 2>&1 &
chart_test_pid=$!
# Every operation of /openapi.json, generated valid and invalid, alone and in chains, as a
# user, another user and the admin, against a throwaway `agora all`: no 5xx, every answer as
# documented, no panic or error in the platform's log.
AGORA_FUZZ_BIN="$CARGO_TARGET_DIR/debug/agora" AGORA_FUZZ_MAX_EXAMPLES="${AGORA_FUZZ_MAX_EXAMPLES:-100}" \
  bash tests/api-fuzz.sh
up_test_rc=0
wait "$up_test_pid" || up_test_rc=$?
up_test_pid=""
printf '\n--- make up / make down (tests/up.sh) ---\n'
cat "$UP_TEST_LOG"
rm -f "$UP_TEST_LOG"
chart_test_rc=0
wait "$chart_test_pid" || chart_test_rc=$?
chart_test_pid=""
printf '\n--- the roles started from the chart (tests/chart/test_roles_start.py) ---\n'
cat "$CHART_TEST_LOG"
rm -f "$CHART_TEST_LOG"
((up_test_rc == 0)) || { printf 'tests/up.sh failed (exit %s)\n' "$up_test_rc" >&2; exit 1; }
((chart_test_rc == 0)) || { printf 'tests/chart/test_roles_start.py failed (exit %s)\n' "$chart_test_rc" >&2; exit 1; }

step "the suite's infrastructure stopped"
# Nothing after this uses it (each later step runs its own), and the chaos run's fault windows
# are measured on a machine with nothing else idling on it.
stop_started_here

step "chaos (quick)"
# The distributed stack under load while roles are killed, Kafka and PostgreSQL restarted,
# a backend hangs and the gateway restarts; then every order, payment, debit and unit of
# stock is reconciled (`make chaos` is the longer run).
AGORA_CHAOS_BIN="$CARGO_TARGET_DIR/debug/agora" bash scripts/chaos.sh --quick

step "image root filesystem"
# The Dockerfile's runtime stage without Docker: the binary chrooted into what
# scripts/rootfs.sh assembles, as the image's non-root user.
if [[ "$(id -u)" -eq 0 ]]; then
  rootfs="$(mktemp -d)"
  bash scripts/rootfs.sh "$CARGO_TARGET_DIR/debug/agora" "$rootfs/fs"
  chroot --userspec=65532:65532 "$rootfs/fs" /usr/local/bin/agora --version
  if out="$(chroot --userspec=65532:65532 "$rootfs/fs" /usr/local/bin/agora check --gateway http://127.0.0.1:9 2>&1)" \
    || [[ "$out" != *"cannot reach http://127.0.0.1:9/readyz"* ]]; then
    printf 'the chrooted binary did not fail as expected: %s\n' "$out" >&2
    exit 1
  fi
  rm -rf "$rootfs"
elif [[ "${CI:-}" == true ]]; then
  printf 'chroot needs root; CI must run this check\n' >&2
  exit 1
else
  printf 'skipped: chroot needs root\n'
fi

step "image without Docker"
# scripts/image.sh's OCI archive holds what the Dockerfile's image holds, and says what it says.
AGORA_BIN="$CARGO_TARGET_DIR/debug/agora" "$(bash scripts/python-tools.sh python)" -m pytest -q -p no:cacheprovider tests/image

step "Kubernetes, and the Helm chart's rendering checks beside it"
# A real single-node cluster (scripts/kube.sh), the image loaded into it, `helm install` on
# PostgreSQL, Kafka, Consul and Jaeger at the node's address; then install, helm test, an order
# and its trace, enforced NetworkPolicies, hardened containers, upgrade / pod deletion /
# eviction under load with every order reconciled, uninstall and reinstall. Everything is
# stopped and every host setting restored afterwards.
if ! wait "$kube_install_pid"; then
  tail -n 30 "$KUBE_INSTALL_LOG" >&2
  printf 'scripts/kube.sh install failed (log: %s)\n' "$KUBE_INSTALL_LOG" >&2
  exit 1
fi
kube_install_pid=""
# The chart's rendering checks beside it: helm lint --strict, every rendered object against
# Kubernetes' schemas, the switches, k8s/ up to date with the chart (CPU, while the cluster
# mostly waits for rollouts).
CHART_TEST_LOG="$(mktemp)"
setsid bash scripts/chart.sh check tests/chart/test_chart.py >"$CHART_TEST_LOG" 2>&1 &
chart_test_pid=$!
kube_rc=0
AGORA_KUBE_TEST_BIN="$CARGO_TARGET_DIR/debug/agora" bash tests/kube.sh || kube_rc=$?
chart_test_rc=0
wait "$chart_test_pid" || chart_test_rc=$?
chart_test_pid=""
printf '\n--- Helm chart and k8s/ (scripts/chart.sh check tests/chart/test_chart.py) ---\n'
cat "$CHART_TEST_LOG"
rm -f "$CHART_TEST_LOG"
((kube_rc == 0)) || exit "$kube_rc"
((chart_test_rc == 0)) || { printf 'scripts/chart.sh check failed (exit %s)\n' "$chart_test_rc" >&2; exit 1; }
