#!/bin/sh
# Entrypoint of agora.local/dev/kafka (scripts/dev-images.sh): Apache Kafka's jars on a Java
# runtime, configured the way the Helm chart's dev Kafka configures it: every KAFKA_FOO_BAR
# variable becomes the broker setting foo.bar (a double underscore stands for "_", a triple one
# for "-"), except KAFKA_HEAP_OPTS and KAFKA_JVM_OPTS (the JVM's heap flags, and its collector and
# compiler flags: by default the serial collector and the quick compiler only, light for a
# development broker) and the KAFKA_PORT* and
# KAFKA_SERVICE_* variables Kubernetes sets for a Service named kafka. On first start the storage in
# log.dirs is formatted with CLUSTER_ID (or a new id); then the broker runs in the foreground.
set -eu

log() { printf '[kafka] %s\n' "$*" >&2; }

conf=/tmp/kafka
mkdir -p "$conf"
props="$conf/server.properties"
{
  printf '# Generated from the KAFKA_* environment by the entrypoint.\n'
  env | grep '^KAFKA_' | grep -v -e '^KAFKA_HEAP_OPTS=' -e '^KAFKA_JVM_OPTS=' -e '^KAFKA_PORT' -e '^KAFKA_SERVICE_' | sort | while IFS='=' read -r name value; do
    key="$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')"
    printf '%s=%s\n' "$key" "$value"
  done
} >"$props"
grep -q '^process\.roles=' "$props" || { log "error: KAFKA_PROCESS_ROLES is not set"; exit 1; }

java_tool() {
  java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/kafka/config/log4j2-tools.properties \
    -cp '/opt/kafka/libs/*' "$@"
}

log_dirs="$(sed -n 's/^log\.dirs=//p' "$props")"
first_dir="${log_dirs%%,*}"
if [ -z "$first_dir" ] || [ ! -f "$first_dir/meta.properties" ]; then
  cluster_id="${CLUSTER_ID:-$(java_tool kafka.tools.StorageTool random-uuid)}"
  log "formatting storage ${log_dirs:-(default log.dirs)} (cluster id $cluster_id)"
  java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$props" --ignore-formatted >/dev/null
fi

log "starting the broker"
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS and KAFKA_JVM_OPTS hold several flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} ${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1} -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
