#!/usr/bin/env bash
# The cluster tests, as `make test` runs them: the test cluster and the platform on it
# (`scripts/kube-up.sh up`, the image made from the binary cargo test built, the dev component
# images), then tests/kube against it, then everything stopped and every host setting
# restored, whatever happened. Needs root (the cluster's network devices and iptables).

#
# Environment:
#   AGORA_KUBE_TEST_BIN  the agora binary the image ships and the tests run (loadgen, reconcile)
#                        (default: $CARGO_TARGET_DIR/debug/agora)
#   AGORA_KUBE_KEEP=1    leave the cluster and the platform running afterwards (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="$(realpath -m "${AGORA_CACHE:-$HOME/.cache/agora}")"
TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"
BIN="$(realpath -m "${AGORA_KUBE_TEST_BIN:-$TARGET_DIR/debug/agora}")"
[[ -x "$BIN" ]] || { printf '[kube-test] error: no agora binary at %s (cargo build first)\n' "$BIN" >&2; exit 1; }
if [[ "$(id -u)" -ne 0 ]]; then
  [[ "${CI:-}" == true ]] && { printf '[kube-test] error: the cluster needs root; CI must run these tests\n' >&2; exit 1; }
  printf '[kube-test] skipped: the cluster needs root\n' >&2
  exit 0
fi

began=$SECONDS
# What the steps print also goes to a log, so that a failure can be summed up after the stop's
# own lines: CI shows the end of the output, which the stop would otherwise fill.
LOG="$CACHE_DIR/kube/test.log"
mkdir -p "${LOG%/*}"
: >"$LOG"
logged() { "$@" 2>&1 | tee -a "$LOG"; }
cleanup() {
  local rc=$?
  if [[ "${AGORA_KUBE_KEEP:-0}" == 1 ]]; then
    printf '[kube-test] AGORA_KUBE_KEEP=1: the cluster stays up (make kube-down stops it)\n' >&2
  else
    bash scripts/kube-up.sh down >&2 || rc=1
    # The guard chain is gone with the cluster; nothing may be left of it either.
    if iptables -S 2>/dev/null | grep -qE 'KUBE-|AGORA-KUBE|CNI-'; then
      printf '[kube-test] error: iptables rules of the cluster survived its stop:\n' >&2
      iptables -S | grep -E 'KUBE-|AGORA-KUBE|CNI-' >&2
      rc=1
    fi
    if pgrep -f "$CACHE_DIR/kube/" >/dev/null; then
      printf '[kube-test] error: processes of the cluster survived its stop:\n' >&2
      pgrep -af "$CACHE_DIR/kube/" >&2
      rc=1
    fi
  fi
  printf '[kube-test] done in %ss\n' "$((SECONDS - began))" >&2
  if ((rc != 0)); then
    {
      printf '[kube-test] FAILED (exit %s); the last lines before the stop (whole log: %s):\n' "$rc" "$LOG"
      tail -n 25 "$LOG"
    } | tee -a "${AGORA_TEST_SUMMARY:-/dev/null}" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT

export AGORA_IMAGE_BIN="$BIN"
logged bash scripts/kube-up.sh up
# The upgrade test moves the release to another tag of the same build.
logged bash scripts/image.sh build 0.0.0-upgrade
# k8s/agora.yaml runs the chart's dev components from these.
logged bash scripts/dev-images.sh build


drops_before="$(bash scripts/kube.sh guard-drops)"
logged env AGORA_KUBECTL="$CACHE_DIR/kube/bin/kube kubectl" \
  KUBECONFIG="$(bash scripts/kube.sh kubeconfig)" \
  AGORA_HELM="$(bash scripts/go-tools.sh path helm)" \
  AGORA_BIN="$BIN" \
  AGORA_KUBE_CHART="$PWD/helm/agora" \
  AGORA_KUBE_NAMESPACE=agora AGORA_KUBE_RELEASE=agora \
  AGORA_KUBE_GATEWAY="http://$(bash scripts/kube.sh node-ip):${AGORA_KUBE_NODE_PORT:-30080}" \
  AGORA_KUBE_PG="$(bash scripts/kube-up.sh infra-url postgres)" \
  AGORA_KUBE_KAFKA="$(bash scripts/kube-up.sh infra-url kafka)" \
  AGORA_KUBE_JAEGER="$(bash scripts/kube-up.sh infra-url jaeger)" \
  "$(bash scripts/python-tools.sh python)" -m pytest -q -s -rfE --durations=0 -p no:cacheprovider tests/kube

drops="$(bash scripts/kube.sh guard-drops)"
# Cluster traffic never left the machine: the guard dropped nothing on the way out.
[[ "$drops" == "$drops_before" ]] \
  || { printf '[kube-test] error: the guard dropped %s packet(s) of cluster traffic leaving the machine\n' "$((drops - drops_before))" | tee -a "$LOG" >&2; exit 1; }
printf '[kube-test] guard: 0 packets of cluster traffic tried to leave the machine\n' >&2
