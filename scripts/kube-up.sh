#!/usr/bin/env bash
# Agora on the test cluster: the cluster (scripts/kube.sh), the agora image built without
# Docker (scripts/image.sh), PostgreSQL, Kafka, Consul and Jaeger on this machine at the node's
# address (the way a production user brings managed services), and `helm install` of
# helm/agora pointed at them.
#
# Usage: scripts/kube-up.sh {up|down|status|values|infra-url NAME}
#
#   up      start whatever is not running, install or upgrade the release, wait until every
#           Deployment is available, and print where everything is
#   down    uninstall the release, stop the infrastructure and the cluster (host settings
#           restored); the cluster's state and the databases stay for the next `up`
#   status  the release's pods and the infrastructure
#   values  print the Helm values `up` installs with (the infrastructure must run)
#   infra-url {postgres|kafka|consul|jaeger}
#           where the host's component listens: PostgreSQL's base URL (add /DATABASE), the
#           Kafka bootstrap address, Consul's HTTP API, Jaeger's UI and query API
#
# Environment:
#   AGORA_CACHE            cache root                             (default: $HOME/.cache/agora)
#   AGORA_KUBE_NAMESPACE   the release's namespace                (default: agora)
#   AGORA_KUBE_RELEASE     the release's name                     (default: agora)
#   AGORA_KUBE_NODE_PORT   the gateway's NodePort                 (default: 30080)
#   AGORA_IMAGE_BIN        the agora binary the image ships       (default: a release build)
#   AGORA_KUBE_HELM_ARGS   extra arguments for helm install/upgrade, e.g. "--set logLevel=debug"
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(dirname "$SCRIPT_DIR")"
# shellcheck source-path=SCRIPTDIR
source "$SCRIPT_DIR/lib/common.sh"

NAMESPACE="${AGORA_KUBE_NAMESPACE:-agora}"
RELEASE="${AGORA_KUBE_RELEASE:-agora}"
NODE_PORT="${AGORA_KUBE_NODE_PORT:-30080}"
UP_DIR="$CACHE_DIR/kube-up"
INSTANCE=kube  # the infrastructure's instance name in each component script

kube() { bash "$SCRIPT_DIR/kube.sh" "$@"; }
kubectl_() { kube kubectl "$@"; }
helm_() { KUBECONFIG="$(kube kubeconfig)" "$(bash "$SCRIPT_DIR/go-tools.sh" path helm)" "$@"; }

NODE_IP="$(bash "$SCRIPT_DIR/kube.sh" node-ip)"
POD_CIDR="${AGORA_KUBE_POD_CIDR:-10.241.0.0/24}"

# The infrastructure listens on the node's address, on free ports (so it never collides with
# `make up`'s or a test run's instances on 127.0.0.1) below the NodePort range: the policy
# engine lets every pod reach the node's NodePorts, so a database there would be open to all.
infra_env=(AGORA_BIND_HOST="$NODE_IP" AGORA_PORT_MAX=29999
  AGORA_PG_INSTANCE="$INSTANCE" AGORA_PG_PORT=0 AGORA_PG_CLIENTS="$POD_CIDR"
  AGORA_KAFKA_INSTANCE="$INSTANCE" AGORA_KAFKA_PORT=0 AGORA_KAFKA_CONTROLLER_PORT=0
  AGORA_CONSUL_INSTANCE="$INSTANCE" AGORA_CONSUL_HTTP_PORT=0 AGORA_CONSUL_SERVER_PORT=0
  AGORA_CONSUL_SERF_LAN_PORT=0 AGORA_CONSUL_SERF_WAN_PORT=0 AGORA_CONSUL_DNS_PORT=-1 AGORA_CONSUL_GRPC_PORT=-1
  AGORA_JAEGER_INSTANCE="$INSTANCE" AGORA_JAEGER_UI_PORT=0 AGORA_JAEGER_OTLP_GRPC_PORT=0
  AGORA_JAEGER_OTLP_HTTP_PORT=0 AGORA_JAEGER_QUERY_GRPC_PORT=0 AGORA_JAEGER_HEALTH_PORT=0)
infra() { env "${infra_env[@]}" AGORA_PG_PASSWORD="$(pg_password)" bash "$SCRIPT_DIR/$1.sh" "${@:2}"; }

# The password pods sign in to PostgreSQL with: generated once, kept with the databases.
pg_password() {
  mkdir -p "$UP_DIR"
  [[ -s "$UP_DIR/postgres-password" ]] || (umask 077 && openssl rand -hex 16 >"$UP_DIR/postgres-password")
  cat "$UP_DIR/postgres-password"
}

start_infra() {
  # Independent of each other: started together (Kafka's JVM is the slowest).
  local pids=() name failed=0
  for name in postgres kafka consul jaeger; do
    infra "$name" start >"$UP_DIR/$name-start.log" 2>&1 &
    pids+=($!)
  done
  for name in 0 1 2 3; do
    wait "${pids[name]}" || failed=1
  done
  if ((failed)); then
    tail -n 20 "$UP_DIR"/*-start.log >&2
    die "infrastructure did not start (logs above)"
  fi
  infra postgres create-db agora_user agora_product agora_order agora_payment
}

# Mutual TLS between the roles: a development CA and a certificate per role (`agora certs`, the
# image's binary), each in the Secret the chart mounts, <fullname>-<role>-mtls. Renewed on every
# up: the kubelet updates the mounted files and the roles read them again.
mtls_secrets() {
  local dir="$UP_DIR/mtls" full="$RELEASE" role
  [[ "$RELEASE" == *agora* ]] || full="$RELEASE-agora"
  "$(bash "$SCRIPT_DIR/image.sh" binary)" certs --dir "$dir" --gateway-hosts '' >/dev/null \
    || die "agora certs could not issue the roles' certificates in $dir"
  # The namespace and the five Secrets in one apply (each kubectl start costs a second here).
  {
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$NAMESPACE"
    for role in gateway user-service product-service order-service payment-service; do
      printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\ntype: Opaque\ndata:\n' \
        "$full-$role-mtls" "$NAMESPACE"
      printf '  tls.crt: %s\n  tls.key: %s\n  ca.crt: %s\n' "$(base64 -w0 <"$dir/$role.pem")" \
        "$(base64 -w0 <"$dir/$role-key.pem")" "$(base64 -w0 <"$dir/ca.pem")"
    done
  } | kubectl_ apply -f - >/dev/null || die "cannot create the roles' mutual-TLS Secrets in namespace $NAMESPACE"
}

# The chart's values for this cluster: no dev components, the host's infrastructure instead.
values() {
  local pg kafka consul otlp pw
  pg="$(infra postgres url)"
  pg="${pg#postgres://agora@}"
  pg="${pg%/postgres}"
  kafka="$(infra kafka url)"
  consul="$(infra consul addr)"
  otlp="$(infra jaeger otlp-grpc)"
  pw="$(pg_password)"
  cat <<EOF
# Generated by scripts/kube-up.sh: Agora on the test cluster, infrastructure on the host.

postgresql: {enabled: false}
kafka: {enabled: false}
consul: {enabled: false}
jaeger: {enabled: false}
externalKafka: {brokers: "$kafka"}
externalConsul: {address: "$consul", port: ${consul##*:}}
otlp: {endpoint: "$otlp"}
# The roles speak mutual TLS, their certificates in the Secrets mtls_secrets made.
mtls: {enabled: true}
service: {type: NodePort, nodePort: $NODE_PORT}
networkPolicy:
  externalDatabasePort: ${pg##*:}
  # Consul runs on the node: its health checks come from the node's addresses.
  consulCheckFrom: [{ipBlock: {cidr: "$NODE_IP/32"}}]
roles:
  gateway: {autoscaling: {enabled: false}}
  user-service: {autoscaling: {enabled: false}, database: {url: "postgres://agora:$pw@$pg/agora_user"}}
  product-service: {autoscaling: {enabled: false}, database: {url: "postgres://agora:$pw@$pg/agora_product"}}
  order-service: {autoscaling: {enabled: false}, database: {url: "postgres://agora:$pw@$pg/agora_order"}}
  payment-service: {autoscaling: {enabled: false}, database: {url: "postgres://agora:$pw@$pg/agora_payment"}}
EOF
}

cmd_up() {
  local begin=$SECONDS
  mkdir -p "$UP_DIR"
  kube start
  pg_password >/dev/null  # made once, before the parallel starts below read it
  log "cluster ready at $((SECONDS - begin))s; building the image and starting the infrastructure"
  start_infra &
  local infra_pid=$!
  bash "$SCRIPT_DIR/image.sh" build >/dev/null
  wait "$infra_pid" || die "infrastructure did not start"
  mtls_secrets
  values >"$UP_DIR/values.yaml"
  chmod 600 "$UP_DIR/values.yaml"
  log "helm upgrade --install $RELEASE (infrastructure and image ready at $((SECONDS - begin))s)"
  # shellcheck disable=SC2086  # extra arguments split as a shell would
  helm_ upgrade --install "$RELEASE" "$ROOT_DIR/helm/agora" --namespace "$NAMESPACE" --create-namespace \
    -f "$UP_DIR/values.yaml" --wait --timeout 5m ${AGORA_KUBE_HELM_ARGS:-} >/dev/null \
    || { kubectl_ -n "$NAMESPACE" get pods -o wide >&2 || true; die "helm install did not finish; see the pods above (kubectl: scripts/kube.sh kubectl -n $NAMESPACE ...)"; }
  local url="http://$NODE_IP:$NODE_PORT"
  local deadline=$((SECONDS + 60))
  until curl -fsS --max-time 2 -o /dev/null "$url/readyz" 2>/dev/null; do
    ((SECONDS < deadline)) || die "the gateway's NodePort $url/readyz does not answer"
    sleep 0.5
  done
  cat <<EOF

Agora runs on the test cluster (ready in $((SECONDS - begin))s): release $RELEASE in namespace $NAMESPACE,
the gateway and four services as pods, on PostgreSQL, Kafka, Consul and Jaeger run on this
machine at the node's address.

  Gateway     $url          (OpenAPI: $url/openapi.json)
  kubectl     export KUBECONFIG=$(kube kubeconfig)
              kubectl -n $NAMESPACE get pods      (or: scripts/kube.sh kubectl -n $NAMESPACE get pods)
  Jaeger UI   $(infra jaeger url)
  Admin       $(helm_ get values "$RELEASE" -n "$NAMESPACE" -a -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["adminEmail"])'), password:
              scripts/kube.sh kubectl -n $NAMESPACE get secret $RELEASE -o jsonpath='{.data.admin-password}' | base64 -d

  Try:        curl $url/v1/products
  Stop:       make kube-down

EOF
}

cmd_down() {
  if kube status >/dev/null 2>&1; then
    if helm_ uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 2m >/dev/null 2>&1; then
      log "uninstalled $RELEASE"
    else
      log "no release $RELEASE to uninstall"
    fi
  fi
  local name
  for name in jaeger consul kafka postgres; do
    infra "$name" stop || true
  done
  kube stop
}

cmd_status() {
  kube status || true
  if kube status >/dev/null 2>&1; then
    kubectl_ -n "$NAMESPACE" get pods -o wide 2>/dev/null || true
  fi
  local name
  for name in postgres kafka consul jaeger; do
    infra "$name" status 2>&1 | sed "s/^/$name: /" || true
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  values) values ;;
  infra-url)
    case "${2:-}" in
      postgres) url="$(infra postgres url)" && printf '%s\n' "${url%/postgres}" ;;
      kafka) infra kafka url ;;
      consul) infra consul url ;;
      jaeger) infra jaeger url ;;
      *) die "usage: $0 infra-url {postgres|kafka|consul|jaeger}" ;;
    esac
    ;;
  *) sed -n '7,18s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
