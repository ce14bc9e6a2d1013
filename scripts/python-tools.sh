#!/usr/bin/env bash
# Python tools that Agora's checks use, kept in a private virtualenv so that they never touch
# the system's Python packages and survive between runs on the same machine.
#
# Usage: scripts/python-tools.sh {install|path|python|validate FILE...}
#
#   install         create the virtualenv and install the tools; no-op if already there
#   path            print the absolute path of openapi-spec-validator (installs first)
#   python          print the absolute path of the virtualenv's python (installs first)
#   validate FILE   run openapi-spec-validator on each FILE (installs first)
#
# Tools: openapi-spec-validator (the gateway's OpenAPI document), schemathesis (its `st`
# fuzzes a running gateway against that document: tests/api-fuzz.sh), and for the Helm
# chart's checks kubernetes-validate (Kubernetes' own schemas), PyYAML and pytest.
#
# Everything except the answer of `path` and the validator's own report goes to stderr, and
# only progress lines unless AGORA_VERBOSE=1 lets pip speak.
#
# Environment:
#   AGORA_CACHE    cache root            (default: $HOME/.cache/agora)
#   AGORA_VERBOSE  1 to show pip's output (default: quiet)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"

# Pinned to a minor series: 0.7 added OpenAPI 3.1 detection, and a new minor may change the
# checks and so turn a green build red without any change here.
VALIDATOR_REQUIREMENT="openapi-spec-validator==0.9.*"
# kubernetes-validate ships the schemas of each Kubernetes release; pinned for the same reason.
# schemathesis likewise: a new minor adds checks and changes generation, so the same seed
# would fuzz differently.
REQUIREMENTS=("$VALIDATOR_REQUIREMENT" "kubernetes-validate==1.37.*" "PyYAML==6.0.*" "pytest==8.*"
  "schemathesis==4.32.*")

# Absolute (need not exist yet), because `path` prints paths built from it.
VENV="$CACHE_DIR/venv"
VALIDATOR="$VENV/bin/openapi-spec-validator"
SCHEMATHESIS="$VENV/bin/st"
LOCK="$CACHE_DIR/.python-tools.lock"
# Records the requirements installed, so a changed list installs again.
STAMP="$VENV/.agora-requirements"

is_root() { [[ "$(id -u)" -eq 0 ]]; }

verbose() { [[ "${AGORA_VERBOSE:-0}" == 1 ]]; }

# Run a command with its stdout moved to stderr, and silenced as well unless verbose, so that
# stdout carries nothing but the answers.
quietly() {
  if verbose; then
    "$@" >&2
  else
    local out
    # On failure the chatter is the diagnosis, so show it then.
    out="$("$@" 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
  fi
}

# Debian splits venv's pip bootstrap (ensurepip) into python3-venv; without it `python3 -m venv`
# leaves a venv without pip.
ensure_venv_module() {
  python3 -c 'import ensurepip, venv' 2>/dev/null && return 0
  is_root || die "python3 lacks the venv module; install Debian's python3-venv (needs root)"
  log "installing python3-venv"
  quietly apt-get update
  DEBIAN_FRONTEND=noninteractive quietly apt-get install -y python3-venv
  python3 -c 'import ensurepip, venv' 2>/dev/null || die "python3 still lacks the venv module after installing python3-venv"
}

ensure_venv() {
  # A venv whose python does not run (an interrupted creation, or a python3 that was upgraded
  # or removed since) is rebuilt rather than patched.
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 not found"
  ensure_venv_module
  log "creating virtualenv at $VENV"
  rm -rf "$VENV"
  quietly python3 -m venv "$VENV"
}

installed() {
  [[ -x "$VALIDATOR" && -x "$SCHEMATHESIS" && -f "$STAMP" && "$(cat "$STAMP")" == "${REQUIREMENTS[*]}" ]]
}

install() {
  installed && return 0
  mkdir -p "$CACHE_DIR"
  # Two checks starting at once would otherwise both build the venv in the same place.
  exec 9>"$LOCK"
  if command -v flock >/dev/null; then
    flock 9
  fi
  if ! installed; then
    ensure_venv
    log "installing ${REQUIREMENTS[*]}"
    quietly "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input "${REQUIREMENTS[@]}"
    [[ -x "$VALIDATOR" ]] || die "pip finished but $VALIDATOR is missing"
    [[ -x "$SCHEMATHESIS" ]] || die "pip finished but $SCHEMATHESIS is missing"
    printf '%s' "${REQUIREMENTS[*]}" >"$STAMP"
  fi
  exec 9>&-
}

usage() {
  sed -n '5,9s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

case "${1:-}" in
  install)
    install
    ;;
  path)
    install
    printf '%s\n' "$VALIDATOR"
    ;;
  python)
    install
    printf '%s\n' "$VENV/bin/python"
    ;;
  validate)
    shift
    [[ $# -gt 0 ]] || usage
    install
    "$VALIDATOR" "$@"
    ;;
  *)
    usage
    ;;
esac
