#!/usr/bin/env bash
# What building agora needs from the system beyond Rust and a C compiler: librdkafka (built
# from source, linked statically) speaks TLS and SASL through the system's OpenSSL, so cargo
# wants its headers and pkg-config. Installed with apt-get when missing (root or sudo); a
# no-op when present. Every make target that builds runs it first.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"

command -v pkg-config >/dev/null && pkg-config --exists openssl && exit 0
missing=()
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
((${#missing[@]})) || die "pkg-config does not find OpenSSL (pkg-config --exists openssl) although libssl-dev is installed"
command -v apt-get >/dev/null || die "install ${missing[*]} (OpenSSL's headers and pkg-config) with your package manager"
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || die "installing ${missing[*]} needs root: run as root or install them (apt-get install ${missing[*]})"
  sudo=(sudo)
fi
log "installing ${missing[*]} (apt-get)"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
