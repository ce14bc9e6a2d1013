#!/usr/bin/env bash
# The agora container image without a Docker engine: the root filesystem the Dockerfile's
# runtime stage copies (scripts/rootfs.sh), written as a single-layer OCI archive
# (scripts/lib/oci_image.py) with the Dockerfile's user, entrypoint, command and ports, named
# agora.local/agora and tagged with the chart's appVersion (push it under any name you like:
# `skopeo copy oci-archive:FILE docker://REGISTRY/agora:TAG`). If the test cluster runs (scripts/kube.sh), the image is
# loaded into its node.
#
# Usage: scripts/image.sh {build [TAG]|path [TAG]|binary|tag}
#
#   build [TAG]  build agora.local/agora:TAG (default: the chart's appVersion) into $AGORA_CACHE/images
#                and load it into the running test cluster
#   path [TAG]   print the archive's path
#   binary       print the agora binary the image ships (built first when it is not current)
#   tag          print the default tag (the chart's appVersion)
#
# Environment:
#   AGORA_CACHE      cache root                                   (default: $HOME/.cache/agora)
#   AGORA_IMAGE_BIN  the agora binary to ship (default: a release build, made here with cargo)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"
OUT_DIR="$CACHE_DIR/images"
# The image's name: a domain of our own, never a registry's (nothing is pulled from it).
REPOSITORY=agora.local/agora

app_version() { sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT_DIR/helm/agora/Chart.yaml"; }

binary() {
  if [[ -n "${AGORA_IMAGE_BIN:-}" ]]; then
    [[ -x "$AGORA_IMAGE_BIN" ]] || die "AGORA_IMAGE_BIN=$AGORA_IMAGE_BIN is not an executable"
    printf '%s\n' "$AGORA_IMAGE_BIN"
    return
  fi
  local target="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"
  log "cargo build --release -p agora (the image ships the release binary)"
  bash "$SCRIPT_DIR/build-deps.sh"
  (cd "$ROOT_DIR" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p agora --bin agora >&2)
  printf '%s\n' "$target/release/agora"
}

# The runtime stage's settings, as the Dockerfile states them: one place of truth for both.
dockerfile_settings() {
  local user expose entrypoint cmd
  user="$(awk '$1 == "USER" { print $2 }' "$ROOT_DIR/Dockerfile" | tail -n 1)"
  expose="$(awk '$1 == "EXPOSE" { $1 = ""; print }' "$ROOT_DIR/Dockerfile" | tail -n 1)"
  entrypoint="$(sed -n 's/^ENTRYPOINT //p' "$ROOT_DIR/Dockerfile" | tail -n 1)"
  cmd="$(sed -n 's/^CMD //p' "$ROOT_DIR/Dockerfile" | tail -n 1)"
  [[ -n "$user" && -n "$entrypoint" ]] || die "no USER or ENTRYPOINT in the Dockerfile's runtime stage"
  SETTINGS=(--user "$user" --entrypoint "$entrypoint")
  [[ -z "$cmd" ]] || SETTINGS+=(--cmd "$cmd")
  local port
  for port in $expose; do SETTINGS+=(--expose "$port"); done
}

cmd_build() {
  local tag="${1:-$(app_version)}"
  [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not an image tag"
  mkdir -p "$OUT_DIR"
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  bash "$SCRIPT_DIR/rootfs.sh" "$(binary)" "$work/rootfs"
  dockerfile_settings
  python3 "$SCRIPT_DIR/lib/oci_image.py" --rootfs "$work/rootfs" --name "$REPOSITORY:$tag" \
    --out "$OUT_DIR/agora-$tag.tar" "${SETTINGS[@]}" >&2
  if bash "$SCRIPT_DIR/kube.sh" status >/dev/null 2>&1; then
    bash "$SCRIPT_DIR/kube.sh" load "$OUT_DIR/agora-$tag.tar"
  else
    log "no test cluster runs; load it later with: scripts/kube.sh load $OUT_DIR/agora-$tag.tar"
  fi
  printf '%s\n' "$OUT_DIR/agora-$tag.tar"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  path) printf '%s/agora-%s.tar\n' "$OUT_DIR" "${2:-$(app_version)}" ;;
  binary) binary ;;
  tag) app_version ;;
  *) sed -n '9,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
