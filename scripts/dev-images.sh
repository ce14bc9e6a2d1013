#!/usr/bin/env bash
# Images of the Helm chart's dev components (PostgreSQL, Kafka, Consul, Jaeger), made without a
# Docker engine or a registry from what this project already installs: Debian's PostgreSQL,
# Apache Kafka's jars (Maven) on a Java runtime linked from the installed JDK, and Consul and
# Jaeger built from their Go modules (scripts/go-tools.sh). Each is a single-layer OCI archive
# (scripts/lib/oci_image.py) named agora.local/dev/COMPONENT:VERSION, with busybox (Debian's
# busybox-static) for the entrypoint scripts of scripts/dev-images/. They keep the interface the
# chart's dev components use (the same environment, paths, users and ports as the public images
# the chart's values can name instead), so the chart works with either. If the test cluster runs
# (scripts/kube.sh), each image is loaded into its node.
#
# Usage: scripts/dev-images.sh {build [COMPONENT...]|name COMPONENT|path COMPONENT}
#
#   build [COMPONENT...]  build the images (default: all) into $AGORA_CACHE/images, each only
#                         when its inputs changed, and load them into the running test cluster
#   name COMPONENT        print the image's name (as the chart's values spell it)
#   path COMPONENT        print the archive's path
#
# Components: postgresql, kafka, consul, jaeger.
#
# Environment:
#   AGORA_CACHE  cache root (default: $HOME/.cache/agora)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/versions.env"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/debian.sh"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/libs.sh"

OUT_DIR="$CACHE_DIR/images"
WORK="$OUT_DIR/build"
FILES="$SCRIPT_DIR/dev-images"
DEBS="$CACHE_DIR/debian"  # unpacked Debian packages, shared with scripts/kube.sh
COMPONENTS=(postgresql kafka consul jaeger)

image_name() {
  case "$1" in
    postgresql) printf 'agora.local/dev/postgresql:%s\n' "$DEV_POSTGRESQL_VERSION" ;;
    kafka) printf 'agora.local/dev/kafka:%s\n' "$KAFKA_VERSION" ;;
    consul) printf 'agora.local/dev/consul:%s\n' "$CONSUL_VERSION" ;;
    jaeger) printf 'agora.local/dev/jaeger:%s\n' "$JAEGER_VERSION" ;;
    *) die "unknown component '$1' (known: ${COMPONENTS[*]})" ;;
  esac
}

archive_path() {
  local name
  name="$(image_name "$1")"
  printf '%s/dev-%s-%s.tar\n' "$OUT_DIR" "$1" "${name##*:}"
}

# --- Root filesystems -------------------------------------------------------

# FILE at DEST (default: its own path) under ROOT, with its shared libraries.
add_program() {
  local root="$1" file="$2" dest="${3:-$2}"
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$file" "$root$dest"
  copy_libs "$root" "$file"
}

# The base every image shares: busybox with its applets in /bin (for the entrypoint scripts),
# a world-writable /tmp, and one user (NAME:UID:GID) in /etc/passwd and /etc/group.
base_rootfs() {
  local root="$1" user="$2" name uid gid applet
  IFS=: read -r name uid gid <<<"$user"
  local busybox="$DEBS/x-busybox-static/bin/busybox"
  [[ -x "$busybox" ]] || debian_extract "$DEBS" busybox-static
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/usr/local/bin"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s:%s:/nonexistent:/bin/sh\n' "$name" "$uid" "$gid" "$name" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$name" "$gid" >"$root/etc/group"
}

# Fails (with the output) unless COMMAND... runs inside ROOT: a missing file shows here, not
# in a pod.
check_runs() {
  local root="$1" out
  shift
  out="$(chroot "$root" "$@" 2>&1)" || die "'$*' does not run in the image's root: $out"
}

rootfs_postgresql() {
  local root="$1" pg="/usr/lib/postgresql/$DEV_POSTGRESQL_VERSION"
  if [[ ! -x "$pg/bin/postgres" ]]; then
    bash "$SCRIPT_DIR/postgres.sh" install >&2
    [[ -x "$pg/bin/postgres" ]] || die "no PostgreSQL $DEV_POSTGRESQL_VERSION at $pg (Debian's is $(ls /usr/lib/postgresql 2>/dev/null | tr '\n' ' ')); set DEV_POSTGRESQL_VERSION in scripts/versions.env"
  fi
  base_rootfs "$root" postgres:999:999
  local prog lib
  for prog in postgres initdb pg_ctl pg_isready psql; do
    add_program "$root" "$pg/bin/$prog"
  done
  # Procedural languages and extensions the server loads at run time (not the JIT: it would
  # bring LLVM, and the server runs without it).
  for lib in "$pg"/lib/*.so; do
    [[ "$(basename "$lib")" == llvmjit* ]] && continue
    add_program "$root" "$lib"
  done
  mkdir -p "$root/usr/share/postgresql" "$root/var/lib/postgresql/data" "$root/var/run/postgresql" \
    "$root/docker-entrypoint-initdb.d"
  cp -r "/usr/share/postgresql/$DEV_POSTGRESQL_VERSION" "$root/usr/share/postgresql/"
  cp -rL /usr/share/zoneinfo "$root/usr/share/zoneinfo"
  install -m 755 "$FILES/postgresql-entrypoint.sh" "$root/usr/local/bin/postgresql-entrypoint"
  check_runs "$root" "$pg/bin/postgres" --version
  IMAGE_SETTINGS=(--user 999:999 --entrypoint '["/usr/local/bin/postgresql-entrypoint"]' --expose 5432
    --env "PATH=$pg/bin:/bin" --env PGDATA=/var/lib/postgresql/data --env TZ=UTC)
}

rootfs_kafka() {
  local root="$1"
  bash "$SCRIPT_DIR/kafka.sh" install >&2
  local libs="$CACHE_DIR/kafka/$KAFKA_VERSION/libs" java_home
  [[ -d "$libs" ]] || die "no Kafka jars at $libs after scripts/kafka.sh install"
  java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  [[ -x "$java_home/bin/jlink" && -d "$java_home/jmods" ]] \
    || die "the JDK at $java_home has no jlink or jmods; install openjdk-17-jdk-headless"
  base_rootfs "$root" appuser:1000:1000
  # A runtime of the Java SE modules and the JDK ones Kafka uses (Unsafe, management, EC TLS).
  mkdir -p "$root/opt"
  "$java_home/bin/jlink" --add-modules java.se,jdk.unsupported,jdk.management,jdk.crypto.ec,jdk.zipfs \
    --strip-debug --no-header-files --no-man-pages --output "$root/opt/java"
  local file
  while IFS= read -r file; do
    copy_libs "$root" "$file"
  done < <(find "$root/opt/java" -type f \( -name '*.so' -o -path '*/bin/*' \))
  # The runtime's own libraries (libjli, libjvm) come from /opt/java, found through the
  # image's loader cache (the host finds the JDK's through its own).
  rm -rf "$root/usr/lib/jvm"
  printf '/opt/java/lib\n/opt/java/lib/server\n' >"$root/etc/ld.so.conf"
  ldconfig -r "$root"
  mkdir -p "$root/opt/kafka/config" "$root/var/lib/kafka/data"
  cp -r "$libs" "$root/opt/kafka/libs"
  cp "$FILES/kafka-log4j2.properties" "$root/opt/kafka/config/log4j2.properties"
  cp "$FILES/kafka-log4j2-tools.properties" "$root/opt/kafka/config/log4j2-tools.properties"
  install -m 755 "$FILES/kafka-entrypoint.sh" "$root/usr/local/bin/kafka-entrypoint"
  check_runs "$root" /opt/java/bin/java -version
  IMAGE_SETTINGS=(--user 1000:1000 --entrypoint '["/usr/local/bin/kafka-entrypoint"]' --expose 9092
    --env PATH=/opt/java/bin:/bin --env KAFKA_LOG_DIRS=/var/lib/kafka/data)
}

rootfs_consul() {
  local root="$1"
  base_rootfs "$root" consul:100:1000
  add_program "$root" "$(bash "$SCRIPT_DIR/go-tools.sh" path consul)" /bin/consul
  mkdir -p "$root/consul/data"
  check_runs "$root" /bin/consul version
  IMAGE_SETTINGS=(--user 100:1000 --entrypoint '["/bin/consul"]' --cmd '["agent","-dev","-client=0.0.0.0"]'
    --expose 8500 --env PATH=/bin)
}

rootfs_jaeger() {
  local root="$1"
  base_rootfs "$root" jaeger:10001:10001
  add_program "$root" "$(bash "$SCRIPT_DIR/go-tools.sh" path jaeger)" /usr/local/bin/jaeger
  mkdir -p "$root/etc/jaeger"
  cp "$FILES/jaeger.yaml" "$root/etc/jaeger/config.yaml"
  check_runs "$root" /usr/local/bin/jaeger version
  IMAGE_SETTINGS=(--user 10001:10001 --entrypoint '["/usr/local/bin/jaeger"]'
    --cmd '["--config=file:/etc/jaeger/config.yaml"]' --expose 16686 --expose 4317 --expose 4318
    --expose 13133 --env PATH=/bin)
}

# --- Subcommands ------------------------------------------------------------

# What an image is made from, besides the installed programs its version pins: this script,
# its libraries and the component's own files in scripts/dev-images. A change rebuilds it.
inputs_sum() {
  local files=("$0" "$SCRIPT_DIR/lib/oci_image.py" "$SCRIPT_DIR/lib/libs.sh") file
  for file in "$FILES/$1"*; do
    [[ -e "$file" ]] && files+=("$file")  # consul has none
  done
  cat "${files[@]}" | sha256sum | cut -c1-16
}

build_one() {
  local component="$1" name out sum
  name="$(image_name "$component")"
  out="$(archive_path "$component")"
  sum="$(inputs_sum "$component")"
  if [[ -f "$out" && "$(cat "$out.inputs" 2>/dev/null)" == "$sum" ]]; then
    log "$name is up to date ($out)"
  else
    log "building $name"
    local root="$WORK/rootfs-$component"
    IMAGE_SETTINGS=()
    "rootfs_$component" "$root"
    rm -f "$OUT_DIR"/dev-"$component"-*.tar "$OUT_DIR"/dev-"$component"-*.tar.inputs
    python3 "$SCRIPT_DIR/lib/oci_image.py" --rootfs "$root" --name "$name" --out "$out" "${IMAGE_SETTINGS[@]}" >&2
    printf '%s\n' "$sum" >"$out.inputs"
    rm -rf "$root"
  fi
  LOAD+=("$out")
}

cmd_build() {
  [[ "$(id -u)" -eq 0 ]] || die "building the images needs root (chroot checks, apt)"
  (($# > 0)) || set -- "${COMPONENTS[@]}"
  mkdir -p "$OUT_DIR" "$WORK"
  local component
  LOAD=()
  for component in "$@"; do
    image_name "$component" >/dev/null
    build_one "$component"
  done
  if bash "$SCRIPT_DIR/kube.sh" status >/dev/null 2>&1; then
    local tar
    for tar in "${LOAD[@]}"; do bash "$SCRIPT_DIR/kube.sh" load "$tar"; done
  fi
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  name) [[ $# -eq 2 ]] || die "usage: $0 name COMPONENT"; image_name "$2" ;;
  path) [[ $# -eq 2 ]] || die "usage: $0 path COMPONENT"; archive_path "$2" ;;
  *) sed -n '13,20s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
