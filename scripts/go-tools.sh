#!/usr/bin/env bash
# Go-built tools for Agora's development and tests (grpcurl, helm, consul, jaeger), built from
# source at the versions pinned in scripts/versions.env into a private bin directory.
#
# Usage: scripts/go-tools.sh {install [TOOL...]|path TOOL}
#
#   install [TOOL...]  build the given tools (default: all); each is skipped when its pinned
#                      version is already in the bin directory
#   path TOOL          print the absolute path of TOOL's binary (installs it first)
#
# Tools: grpcurl, helm, consul, jaeger (Jaeger v2, the all-in-one `jaeger` binary), toxiproxy
# (the TCP proxy `make chaos` injects network faults with: scripts/toxiproxy.sh), and for
# the test cluster (scripts/kube.sh): coredns (cluster DNS, static: it runs in an image of its
# own), kube-router (only its NetworkPolicy controller runs) and local-path-provisioner (the
# default StorageClass's volumes).

#
# Modules without replace directives are built with `go install MODULE/PKG@VERSION`. Modules
# whose go.mod has replace directives (consul, jaeger) refuse that, so they are built from a
# generated wrapper module under $AGORA_CACHE/build/TOOL that requires the pinned release,
# starts from its go.sum, copies its go version, excludes and module-to-module replaces, and
# lets its directory replaces (./api, ./sdk, ...) resolve to the published submodule versions
# the release's go.mod requires. Modules come through the Go module proxy as configured for
# `go`; a cold build of consul or jaeger takes minutes.
#
# Binaries are stamped with bin/.TOOL-VERSION, so a warm `install` takes a moment. Progress
# goes to stderr; the full go output of a build is kept in $AGORA_CACHE/build/TOOL.log.
#
# Environment:
#   AGORA_CACHE    cache root                    (default: $HOME/.cache/agora)
#   AGORA_VERBOSE  1 to stream go's build output (default: only shown on failure)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"

ALL_TOOLS=(grpcurl helm consul jaeger toxiproxy coredns kube-router local-path-provisioner)

# Absolute (need not exist yet), because `path` prints paths built from it.
BIN_DIR="$CACHE_DIR/bin"
BUILD_ROOT="$CACHE_DIR/build"
LOCK="$CACHE_DIR/.go-tools.lock"

# Build with the Go that is installed: a newer `go` line in some go.mod must fail loudly
# rather than fetch another toolchain behind our back. No workspace may leak into the builds.
export GOTOOLCHAIN=local GOWORK=off
# The module and build caches live with the rest of the cache (GBs; scripts/kube.sh shares them).
export GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build"

verbose() { [[ "${AGORA_VERBOSE:-0}" == 1 ]]; }

# --- Tool table -------------------------------------------------------------

# Set, for tool $1: T_VERSION (what the stamp records), T_MODULE and T_MODVER (the Go module
# and its version tag), T_PKG (the main package), T_LDX (-X flags that make the binary
# report its version, as the projects' own release builds do) and T_CGO (CGO_ENABLED; 0 for
# a binary that must run in an image with no C library).
tool_spec() {
  T_CGO=1
  case "$1" in
    grpcurl)
      T_VERSION="${GRPCURL_VERSION:?missing in versions.env}"
      T_MODULE="github.com/fullstorydev/grpcurl"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE/cmd/grpcurl"
      T_LDX="-X main.version=v$T_VERSION"
      ;;
    helm)
      T_VERSION="${HELM_VERSION:?missing in versions.env}"
      T_MODULE="helm.sh/helm/v${T_VERSION%%.*}"  # major-version module path (v3 or v4)
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE/cmd/helm"
      T_LDX="-X $T_MODULE/internal/version.version=v$T_VERSION"
      ;;
    consul)
      T_VERSION="${CONSUL_VERSION:?missing in versions.env}"
      T_MODULE="github.com/hashicorp/consul"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE"
      T_LDX=""  # the version comes from the release's embedded version/VERSION file
      ;;
    jaeger)
      T_VERSION="${JAEGER_VERSION:?missing in versions.env}"
      T_MODULE="github.com/jaegertracing/jaeger"
      T_MODVER="v${JAEGER_MODULE_VERSION:?missing in versions.env}"
      T_PKG="$T_MODULE/cmd/jaeger"
      T_LDX="-X $T_MODULE/internal/version.latestVersion=v$T_VERSION"
      ;;
    toxiproxy)
      T_VERSION="${TOXIPROXY_VERSION:?missing in versions.env}"
      T_MODULE="github.com/Shopify/toxiproxy/v${T_VERSION%%.*}"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE/cmd/server"
      T_LDX="-X $T_MODULE.Version=$T_VERSION"
      ;;
    coredns)
      T_VERSION="${COREDNS_VERSION:?missing in versions.env}"
      T_MODULE="github.com/coredns/coredns"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE"
      T_LDX=""
      T_CGO=0
      ;;
    kube-router)
      T_VERSION="${KUBE_ROUTER_VERSION:?missing in versions.env}"
      T_MODULE="github.com/cloudnativelabs/kube-router/v${T_VERSION%%.*}"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE/cmd/kube-router"
      T_LDX="-X $T_MODULE/pkg/version.Version=v$T_VERSION"
      T_CGO=0
      ;;
    local-path-provisioner)
      T_VERSION="${LOCAL_PATH_PROVISIONER_VERSION:?missing in versions.env}"
      T_MODULE="github.com/rancher/local-path-provisioner"
      T_MODVER="v$T_VERSION"
      T_PKG="$T_MODULE"
      T_LDX="-X main.VERSION=v$T_VERSION"
      T_CGO=0
      ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

# --- Helpers ----------------------------------------------------------------

stamp_of() { printf '%s/.%s-%s\n' "$BIN_DIR" "$1" "$T_VERSION"; }

# True if tool $1 (tool_spec already called) is installed at its pinned version.
is_installed() { [[ -x "$BIN_DIR/$1" && -f "$(stamp_of "$1")" ]]; }

# Run a go command for tool $1's build, its output appended to the tool's log (and streamed to
# stderr if verbose); on failure show the log's tail.
run_go() {
  local tool="$1"
  shift
  local build_log="$BUILD_ROOT/$tool.log"
  printf '+ %s\n' "$*" >>"$build_log"
  if verbose; then
    "$@" 2>&1 | tee -a "$build_log" >&2 || { die "'$*' failed (log: $build_log)"; }
  else
    "$@" >>"$build_log" 2>&1 || { tail -n 40 "$build_log" >&2; die "'$*' failed (log: $build_log)"; }
  fi
}

# Print, one per line, the `go mod edit` flags that carry over the directives of go.mod file $1
# which only take effect in a main module: -go (so the release's GODEBUG defaults apply),
# -exclude, and -replace for module-to-module replaces. Directory replaces (=> ./x) are left
# out: they cannot leave the upstream repository.
upstream_edits() {
  go mod edit -print "$1" | awk '
    { sub(/[ \t]*\/\/.*$/, "") }                   # comments
    /^[a-z]+ \($/ { block = $1; next }
    /^\)$/ { block = ""; next }
    {
      kind = block
      line = $0
      if (kind == "") { kind = $1; sub(/^[a-z]+[ \t]+/, "", line) }
      sub(/^[ \t]+/, "", line)
    }
    kind == "go" { print "-go=" line }
    kind == "exclude" { split(line, f, /[ \t]+/); print "-exclude=" f[1] "@" f[2] }
    kind == "replace" {
      split(line, sides, /[ \t]*=>[ \t]*/)
      n_old = split(sides[1], old, /[ \t]+/)
      if (split(sides[2], new, /[ \t]+/) != 2) next  # directory replacement
      print "-replace=" old[1] (n_old == 2 ? "@" old[2] : "") "=" new[1] "@" new[2]
    }'
}

# Build tool $1 (tool_spec already called) to the file $2.
build_tool() {
  local tool="$1" out="$2"
  local ldflags="-s -w${T_LDX:+ $T_LDX}"
  export CGO_ENABLED="$T_CGO"

  # The release's own go.mod decides how it can be built.
  local info gomod srcdir
  info="$(go mod download -json "$T_MODULE@$T_MODVER" 2>&1)" \
    || { printf '%s\n' "$info" >&2; die "cannot download $T_MODULE@$T_MODVER"; }
  gomod="$(awk -F'"' '$2 == "GoMod" { print $4 }' <<<"$info")"
  srcdir="$(awk -F'"' '$2 == "Dir" { print $4 }' <<<"$info")"
  [[ -f "$gomod" && -d "$srcdir" ]] || die "no go.mod downloaded for $T_MODULE@$T_MODVER"

  if ! grep -qE '^replace([ (]|$)' "$gomod"; then
    local tmp_bin="$BUILD_ROOT/$tool.gobin"
    rm -rf "$tmp_bin"
    mkdir -p "$tmp_bin"
    GOBIN="$tmp_bin" run_go "$tool" go install -trimpath -ldflags="$ldflags" "$T_PKG@$T_MODVER"
    mv -f "$tmp_bin/$(basename "$T_PKG")" "$out"
    rm -rf "$tmp_bin"
    return 0
  fi

  # Wrapper module: requires the release, copies its go version, excludes and module replaces,
  # declares the binary as a tool (so tidy keeps everything it imports), then builds it.
  local dir="$BUILD_ROOT/$tool"
  log "$T_MODULE has replace directives; building through wrapper module $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    run_go "$tool" go mod init "agora.local/go-tools/$tool"
    # Start from the release's go.sum: it came inside the checksum-verified module zip, and it
    # vouches for the very dependency versions the release requires, so those need no further
    # checksum-database lookups.
    if [[ -f "$srcdir/go.sum" ]]; then cp "$srcdir/go.sum" go.sum; chmod u+w go.sum; fi
    local -a edits
    mapfile -t edits < <(upstream_edits "$gomod")
    # The tool directive needs go >= 1.24 in the wrapper; older releases get that instead.
    local i
    for i in "${!edits[@]}"; do
      if [[ "${edits[i]}" == -go=* && "$(printf '%s\n' "${edits[i]#-go=}" 1.24 | sort -V | head -n 1)" != 1.24 ]]; then
        edits[i]=-go=1.24
      fi
    done
    run_go "$tool" go mod edit -require="$T_MODULE@$T_MODVER" -tool="$T_PKG" "${edits[@]}"
    run_go "$tool" go mod tidy
    # Tidy must not have moved the release itself (e.g. a dependency requiring a newer one).
    local got
    got="$(go list -m -f '{{.Version}}' "$T_MODULE")"
    [[ "$got" == "$T_MODVER" ]] || die "wrapper resolved $T_MODULE $got, not $T_MODVER"
    run_go "$tool" go build -trimpath -ldflags="$ldflags" -o "$out" "$T_PKG"
  )
}

# Install tool $1 unless its pinned version is already there. Caller holds the lock.
install_one() {
  local tool="$1"
  tool_spec "$tool"
  if is_installed "$tool"; then
    log "$tool $T_VERSION already installed"
    return 0
  fi

  mkdir -p "$BIN_DIR" "$BUILD_ROOT"
  : >"$BUILD_ROOT/$tool.log"
  log "building $tool $T_VERSION ($T_MODULE@$T_MODVER); the first build can take minutes"
  local start=$SECONDS tmp_out="$BIN_DIR/.$tool.tmp"
  rm -f "$tmp_out"
  build_tool "$tool" "$tmp_out"

  # Swap in the binary, then record its version (a stale stamp never outlives its binary).
  rm -f "$BIN_DIR/.$tool-"*
  mv -f "$tmp_out" "$BIN_DIR/$tool"
  touch "$(stamp_of "$tool")"
  log "installed $tool $T_VERSION in $((SECONDS - start))s: $BIN_DIR/$tool"
}

# Serialise installs: two runs must not build into the same wrapper dir or bin files. A build
# legitimately takes many minutes, so the wait is unbounded but announced.
take_lock() {
  mkdir -p "$CACHE_DIR"
  exec 9>>"$LOCK"
  if ! flock -n 9; then
    log "waiting for another go-tools.sh run to finish (lock: $LOCK)"
    flock 9
  fi
}

# --- Subcommands ------------------------------------------------------------

cmd_install() {
  local tools=("$@") tool
  ((${#tools[@]})) || tools=("${ALL_TOOLS[@]}")
  for tool in "${tools[@]}"; do tool_spec "$tool"; done  # reject unknown names up front

  # Fast path without the lock when everything is there already.
  local missing=()
  for tool in "${tools[@]}"; do
    tool_spec "$tool"
    is_installed "$tool" || missing+=("$tool")
  done
  if ((${#missing[@]} == 0)); then
    log "up to date: ${tools[*]}"
    return 0
  fi

  command -v go >/dev/null || die "go not found; install Go (>= 1.26) first"
  command -v flock >/dev/null || die "flock not found (util-linux)"
  take_lock
  for tool in "${missing[@]}"; do install_one "$tool"; done
}

cmd_path() {
  [[ $# -eq 1 ]] || die "usage: $0 path TOOL"
  tool_spec "$1"
  is_installed "$1" || cmd_install "$1"
  printf '%s\n' "$BIN_DIR/$1"
}

usage() {
  # Print the header comment (everything after the shebang up to the code).
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    install) cmd_install "$@" ;;
    path) cmd_path "$@" ;;
    *) usage ;;
  esac
}

main "$@"
