#!/usr/bin/env bash
# The tools `make bench` measures with, built from the registries at the versions pinned in
# scripts/versions.env, into $AGORA_CACHE/bin.
#
# Usage: scripts/bench-tools.sh {install [TOOL...]|path TOOL}
#
#   install [TOOL...]  install the given tools (default: all); each one already there at its
#                      pinned version is left alone
#   path TOOL          print the absolute path of TOOL's binary (installs it first)
#
# Tools:
#   oha                  the HTTP load generator that drives both gateways (cargo install)
#   inferno              perf samples to flame-graph SVGs: inferno-collapse-perf and
#                        inferno-flamegraph (cargo install)
#   perf                 the kernel's sampling profiler (Debian: linux-perf)
#   grpc-gateway-peer    grpc-gateway v2 generated from Agora's protos (bench/grpc-gateway):
#                        protoc (Debian) with protoc-gen-go, protoc-gen-go-grpc and
#                        protoc-gen-grpc-gateway (Go module proxy), then `go build`
#
# Progress goes to stderr; the full output of a build is kept in $AGORA_CACHE/build/TOOL.log.
#
# Environment:
#   AGORA_CACHE    cache root (default: $HOME/.cache/agora)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"

ALL_TOOLS=(oha inferno perf grpc-gateway-peer)
BIN_DIR="$CACHE_DIR/bin"
BUILD_ROOT="$CACHE_DIR/build"
PEER_BIN="$BIN_DIR/agora-grpc-gateway-peer"

export GOTOOLCHAIN=local GOWORK=off GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Run a build step of tool $1, its output kept in the tool's log; on failure show the tail.
quietly() {
  local tool="$1"
  shift
  local build_log="$BUILD_ROOT/$tool.log"
  printf '+ %s\n' "$*" >>"$build_log"
  "$@" >>"$build_log" 2>&1 || { tail -n 40 "$build_log" >&2; die "'$*' failed (log: $build_log)"; }
}

# Debian packages $2... for tool $1, installed if any is missing.
apt_packages() {
  local tool="$1" missing=()
  shift
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt-get)"
  quietly "$tool" apt-get update
  DEBIAN_FRONTEND=noninteractive quietly "$tool" apt-get install -y --no-install-recommends "${missing[@]}"
}

# A Rust binary from cargo's registry: crate $1 at version $2, whose binaries $3... land in $BIN_DIR.
cargo_tool() {
  local crate="$1" version="$2"
  shift 2
  local stamp="$BIN_DIR/.$crate-$version" bin
  if [[ -f "$stamp" ]]; then
    for bin in "$@"; do [[ -x "$BIN_DIR/$bin" ]] || rm -f "$stamp"; done
  fi
  [[ -f "$stamp" ]] && return 0
  log "building $crate $version (cargo install; the first build takes minutes)"
  local started=$SECONDS root="$BUILD_ROOT/$crate-root"
  rm -rf "$root"
  # Its own target directory: the build shares nothing with the workspace's.
  CARGO_TARGET_DIR="$BUILD_ROOT/$crate-target" quietly "$crate" \
    cargo install --locked --quiet --root "$root" --version "$version" "$crate"
  for bin in "$@"; do
    [[ -x "$root/bin/$bin" ]] || die "$crate $version installed no $bin"
    mv -f "$root/bin/$bin" "$BIN_DIR/$bin"
  done
  rm -rf "$root" "$BUILD_ROOT/$crate-target"
  touch "$stamp"
  log "installed $crate $version in $((SECONDS - started))s"
}

# What the peer is built from: its sources, the protos it is generated from, the versions.
peer_inputs_hash() {
  cat "$ROOT_DIR"/bench/grpc-gateway/{main.go,go.mod,go.sum} "$ROOT_DIR"/proto/agora/{api,type,product}/v1/*.proto \
    "$ROOT_DIR"/proto/google/api/*.proto
  printf '%s %s %s\n' "$GRPC_GATEWAY_VERSION" "$PROTOBUF_GO_VERSION" "$PROTOC_GEN_GO_GRPC_VERSION"
}

install_peer() {
  local stamp hash
  hash="$(peer_inputs_hash | sha256sum | cut -c1-16)"
  stamp="$BIN_DIR/.agora-grpc-gateway-peer-$hash"
  [[ -x "$PEER_BIN" && -f "$stamp" ]] && return 0
  apt_packages grpc-gateway-peer protobuf-compiler libprotobuf-dev
  local started=$SECONDS dir="$BUILD_ROOT/grpc-gateway-peer"
  log "building the grpc-gateway peer (grpc-gateway $GRPC_GATEWAY_VERSION, generated from proto/)"
  rm -rf "$dir"
  mkdir -p "$dir/plugins" "$dir/src/gen"
  # The code generators, at the versions the peer's go.mod requires of their modules.
  local plugin
  for plugin in "google.golang.org/protobuf/cmd/protoc-gen-go@v$PROTOBUF_GO_VERSION" \
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v$PROTOC_GEN_GO_GRPC_VERSION" \
    "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v$GRPC_GATEWAY_VERSION"; do
    GOBIN="$dir/plugins" quietly grpc-gateway-peer go install "$plugin"
  done
  cp "$ROOT_DIR"/bench/grpc-gateway/{main.go,go.mod,go.sum} "$dir/src/"

  # Each proto file's Go package: ours under the module's gen/, Google's HTTP rules from
  # genproto (the package grpc-gateway itself uses).
  local maps="module=agora-peer"
  maps+=",Magora/api/v1/options.proto=agora-peer/gen/apiv1"
  maps+=",Magora/type/v1/money.proto=agora-peer/gen/typev1"
  maps+=",Magora/product/v1/product.proto=agora-peer/gen/productv1"
  maps+=",Mgoogle/api/annotations.proto=google.golang.org/genproto/googleapis/api/annotations"
  maps+=",Mgoogle/api/http.proto=google.golang.org/genproto/googleapis/api/annotations"
  PATH="$dir/plugins:$PATH" quietly grpc-gateway-peer protoc -I "$ROOT_DIR/proto" -I /usr/include \
    --go_out="$dir/src" --go_opt="$maps" \
    --go-grpc_out="$dir/src" --go-grpc_opt="$maps" \
    --grpc-gateway_out="$dir/src" --grpc-gateway_opt="$maps" \
    agora/api/v1/options.proto agora/type/v1/money.proto agora/product/v1/product.proto
  (cd "$dir/src" && quietly grpc-gateway-peer go build -trimpath -ldflags="-s -w" -o "$PEER_BIN.tmp" .)
  mv -f "$PEER_BIN.tmp" "$PEER_BIN"
  rm -f "$BIN_DIR"/.agora-grpc-gateway-peer-*
  touch "$stamp"
  log "built the grpc-gateway peer in $((SECONDS - started))s: $PEER_BIN"
}

install_tool() {
  case "$1" in
    oha) cargo_tool oha "${OHA_VERSION:?missing in versions.env}" oha ;;
    inferno) cargo_tool inferno "${INFERNO_VERSION:?missing in versions.env}" inferno-collapse-perf inferno-flamegraph ;;
    perf) apt_packages perf linux-perf ;;
    grpc-gateway-peer) install_peer ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

tool_path() {
  case "$1" in
    oha) printf '%s\n' "$BIN_DIR/oha" ;;
    inferno) printf '%s\n' "$BIN_DIR/inferno-flamegraph" ;;
    perf) command -v perf ;;
    grpc-gateway-peer) printf '%s\n' "$PEER_BIN" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

mkdir -p "$BIN_DIR" "$BUILD_ROOT"
case "${1:-}" in
  install)
    shift
    (($#)) || set -- "${ALL_TOOLS[@]}"
    for tool in "$@"; do install_tool "$tool"; done
    ;;
  path)
    [[ $# -eq 2 ]] || die "usage: $0 path TOOL"
    install_tool "$2"
    tool_path "$2"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
