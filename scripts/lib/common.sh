# shellcheck shell=bash
# What every script here starts with: its messages (log, die) and the cache root.
#
#   log MSG...   progress/info line on stderr, prefixed with [NAME]
#   die MSG...   error line on stderr, then exit 1
#   CACHE_DIR    $AGORA_CACHE (default: $HOME/.cache/agora) as an absolute path, which need
#                not exist yet (daemons run from another directory)
#
# NAME is the script's file name without .sh, or SCRIPT_NAME if the script sets it before
# sourcing.

SCRIPT_NAME="${SCRIPT_NAME:-$(basename "$0" .sh)}"
log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

CACHE_DIR="$(realpath -m "${AGORA_CACHE:-$HOME/.cache/agora}")"
