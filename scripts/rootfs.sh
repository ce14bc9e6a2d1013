#!/usr/bin/env bash
# Assembles the image's root filesystem: BINARY at /usr/local/bin/agora, exactly the shared
# libraries it links (at their paths), CA certificates, and passwd/group entries for the
# non-root user 65532. The Dockerfile's runtime stage is this directory on an empty base;
# `make test` runs the binary chrooted into it, so a missing library shows without Docker.
#
# Usage: scripts/rootfs.sh BINARY DIR
set -euo pipefail

[[ $# -eq 2 ]] || { sed -n '7s/^# //p' "$0" >&2; exit 2; }
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/libs.sh"
binary="$1" dir="$2"
[[ -x "$binary" ]] || { printf '[rootfs] error: no executable at %s\n' "$binary" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp"
cp "$binary" "$dir/usr/local/bin/agora"
copy_libs "$dir" "$binary"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
fi
printf 'agora:x:65532:65532:agora:/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'agora:x:65532:\n' >"$dir/etc/group"
chmod 1777 "$dir/tmp"
