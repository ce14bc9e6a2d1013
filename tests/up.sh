#!/usr/bin/env bash
# `make up` and `make down` as a user runs them, on a private stack (its own PostgreSQL,
# Kafka, Consul and Jaeger instances, free ports, the debug binary cargo test built):
#   - up prints the gateway's and Jaeger's URLs, and the gateway serves the seeded catalog;
#   - an order placed through the gateway is paid across the processes;
#   - every role runs twice (the default), every process is registered and passing in Consul
#     (the services on their plaintext health ports), and the two gateways share one port;
#   - the roles speak mutual TLS: a service port refuses plaintext and a client without a
#     certificate, and answers one with a certificate of the stack's CA;
#   - AGORA_ADMIN_PASSWORD sets the admin's password, which then signs in;
#   - every role's certificate renewed, then the CA rotated, while `agora loadgen` runs through
#     the gateway: every request served, and the roles serve the new CA's certificates;
#   - Jaeger holds spans from the gateway and the four services, and `agora trace` lists them;
#   - every process serves Prometheus metrics at the URL the banner gives;
#   - a second up restarts nothing;
#   - down leaves no process behind, and the next up still has the order (durable data);
#   - purge deletes the stack.
# Run by scripts/test.sh after `cargo test`; needs curl (Consul, Jaeger, metrics) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agora/target}"
export AGORA_UP_INSTANCE="uptest-$$" AGORA_UP_FREE_PORTS=1
# The admin's password as the user gives it (the rule `agora all` follows too).
export AGORA_ADMIN_PASSWORD="up-test-admin-$$-$RANDOM$RANDOM"
# The roles read their certificates every 2 s (10 by default), so a renewal shows soon.
export AGORA_TLS_RELOAD_SECS=2
export AGORA_UP_BIN="$CARGO_TARGET_DIR/debug/agora"
CACHE_DIR="$(realpath -m "${AGORA_CACHE:-$HOME/.cache/agora}")"
STATE="$CACHE_DIR/up/$AGORA_UP_INSTANCE"

fail() { printf '[up test] FAILED: %s\n' "$*" >&2; exit 1; }
pass() { printf '[up test] ok: %s\n' "$*" >&2; }
trap 'bash scripts/up.sh purge >/dev/null 2>&1 || true' EXIT

[[ -x "$AGORA_UP_BIN" ]] || fail "no debug agora binary at $AGORA_UP_BIN (run cargo build first)"

# JSON field from stdin: json PATH (e.g. products.0.id); prints "" when missing.
json() {
  python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[int(key)] if isinstance(value, list) else value.get(key, "")
print(len(value) if isinstance(value, list) else value)' "$1"
}

# Processes of this stack: the component instances (and the members of its clusters: NAME-1,
# NAME-2, ..., NAME-agent) by their paths, Patroni's heartbeats, and the agora roles: the
# binary with this stack's name in its environment (make test runs an `agora all` of the same
# binary meanwhile).
stack_processes() {
  local pid
  pgrep -af "/$AGORA_UP_INSTANCE(-[0-9]+|-agent)?/|agora-patroni-$AGORA_UP_INSTANCE-" | grep -v pgrep || true
  for pid in $(pgrep -f "^$AGORA_UP_BIN " || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "AGORA_UP_INSTANCE=$AGORA_UP_INSTANCE"; then
      ps -o pid=,args= -p "$pid" || true
    fi
  done
}

banner="$(bash scripts/up.sh up)"
printf '%s\n' "$banner"
gateway="$(sed -n 's/^ *Gateway *\(http:[^ ]*\).*/\1/p' <<<"$banner")"
jaeger="$(sed -n 's/^ *Jaeger UI *\(http:[^ ]*\).*/\1/p' <<<"$banner")"
consul="$(sed -n 's/^ *Consul UI *\(http:[^ ]*\)\/ui.*/\1/p' <<<"$banner")"
[[ -n "$gateway" && -n "$jaeger" && -n "$consul" ]] || fail "the banner lacks the gateway, Jaeger or Consul URL"
pass "up printed gateway $gateway, Jaeger $jaeger, Consul $consul"
# The default topology is replicated: the services' PostgreSQL URL names two servers (Patroni's
# primary and standby), Kafka's bootstrap list three nodes.
pg_servers="$(sed -n 's|^ *PostgreSQL *postgres://[^@]*@\([^/]*\)/.*|\1|p' <<<"$banner" | tr ',' '\n' | grep -c .)"
kafka_nodes="$(sed -n 's/^ *Kafka *\([^ ]*\).*/\1/p' <<<"$banner" | tr ',' '\n' | grep -c .)"
[[ "$pg_servers" == 2 && "$kafka_nodes" == 3 ]] \
  || fail "expected PostgreSQL on 2 servers and Kafka on 3 nodes (topology ha), got $pg_servers and $kafka_nodes"
pass "the stack is replicated: PostgreSQL on $pg_servers servers, Kafka on $kafka_nodes nodes"

# The REST calls go through `agora client`, as a user of the platform would make them.
client() { "$AGORA_UP_BIN" client --gateway "$gateway" "$@"; }
products="$(client products)"
[[ "$(json products <<<"$products")" == 5 ]] || fail "expected the 5 demo products, got: $products"
mug="$(python3 -c 'import json,sys; print(next(p["id"] for p in json.load(sys.stdin)["products"] if p["name"] == "Ceramic mug"))' <<<"$products")"
pass "the gateway serves the seeded catalog"
"$AGORA_UP_BIN" check --gateway "$gateway" >/dev/null || fail "agora check failed against $gateway"
pass "agora check passes against the running stack"

grep -q 'Admin .*as AGORA_ADMIN_PASSWORD gave it' <<<"$banner" || fail "the banner does not say the admin password came from AGORA_ADMIN_PASSWORD"
admin_token="$(client --get accessToken sign-in --email admin@agora.local --password "$AGORA_ADMIN_PASSWORD")" \
  || fail "the admin cannot sign in with AGORA_ADMIN_PASSWORD"
client --token "$admin_token" create-product --name "Up test tray" --price-minor 900 --stock 3 >/dev/null \
  || fail "the admin signed in with AGORA_ADMIN_PASSWORD cannot create a product"
[[ ! -e "$STATE/secrets/admin-password" ]] || fail "a password was generated although AGORA_ADMIN_PASSWORD gave one"
pass "AGORA_ADMIN_PASSWORD sets the admin's password: it signs in and acts as the admin"

client sign-up --email ada@example.com --password "correct horse battery" --name Ada >/dev/null
token="$(client --get accessToken sign-in --email ada@example.com --password "correct horse battery")"
order_id="$(client --token "$token" --get id order "$mug:2" --idempotency-key up-1)"
status="$(client --token "$token" --get status get-order "$order_id" --wait 60)" || fail "order $order_id did not settle"
[[ "$status" == ORDER_STATUS_PAID ]] || fail "order $order_id ended $status, not PAID"
pass "an order through the gateway is paid across the processes"

[[ "$(curl -fsS "$consul/v1/status/leader")" == \"127.0.0.1:* ]] || fail "Consul has no leader"
count() { python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
for service in gateway user-service product-service order-service payment-service; do
  want=2
  # Each check's first run comes within one interval (5 s) of registering.
  for _ in $(seq 1 40); do
    passing="$(curl -fsS "$consul/v1/health/service/$service?passing=true" | count)"
    [[ "$passing" == "$want" ]] && break
    sleep 0.25
  done
  [[ "$passing" == "$want" ]] || fail "Consul lists $passing passing $service instance(s), not $want"
done
pass "every process is passing in Consul (two instances of every role)"

# Mutual TLS between the roles: a service's port takes only a client with a certificate of the
# stack's CA. (curl checks no SPIFFE identity, hence -k; the roles do.)
grep -q '^ *Mutual TLS *between the roles' <<<"$banner" || fail "the banner does not say the roles speak mutual TLS"
product_port="$(sed -n 's/^product-service=//p' "$STATE/ports" | tail -n 1)"
# health_check SCHEME CURL-OPTION...: a grpc.health.v1 Check of product-service; prints the
# HTTP status, fails when no answer came.
health_check() {
  local scheme="$1"
  shift
  printf '\0\0\0\0\0' | curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$@" \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
    "$scheme://127.0.0.1:$product_port/grpc.health.v1.Health/Check" 2>/dev/null
}
if health_check http --http2-prior-knowledge >/dev/null; then fail "product-service answered plaintext gRPC"; fi
if health_check https --http2 -k >/dev/null; then fail "product-service answered a TLS client without a certificate"; fi
answered="$(health_check https --http2 -k --cert "$STATE/tls/gateway.pem" --key "$STATE/tls/gateway-key.pem")" \
  || fail "product-service refused a client with the gateway's certificate"
[[ "$answered" == 200 ]] || fail "product-service answered $answered to the gateway's certificate"
pass "mutual TLS: a service refuses plaintext and a client without a certificate, and answers the stack's"

# Under load through the gateway, every certificate renewed, then the CA itself rotated the way
# docs/security.md says (trust both, renew everything from the new one, drop the old one): no
# request may fail. The roles read their files every 2 s (AGORA_TLS_RELOAD_SECS).
served_serial() {
  openssl s_client -connect "127.0.0.1:$product_port" -cert "$STATE/tls/gateway.pem" -key "$STATE/tls/gateway-key.pem" \
    </dev/null 2>/dev/null | openssl x509 -noout -serial
}
# put FILE DEST: DEST replaced whole (a reader never sees half a file).
put() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }
serial_before="$(served_serial)"
loadgen_out="$(mktemp)"
new_ca="$(mktemp -d)"
"$AGORA_UP_BIN" loadgen --gateway "$gateway" --rate 12 --duration 22s --users 2 --products 2 --json -q >"$loadgen_out" &
loadgen_pid=$!
sleep 3
"$AGORA_UP_BIN" certs --dir "$STATE/tls" --gateway-hosts '' >/dev/null || fail "agora certs could not renew the stack's certificates"
sleep 4
"$AGORA_UP_BIN" certs --dir "$new_ca" --gateway-hosts '' >/dev/null || fail "agora certs could not make a new CA"
cat "$STATE/tls/ca.pem" "$new_ca/ca.pem" >"$new_ca/bundle.pem"
put "$new_ca/bundle.pem" "$STATE/tls/ca.pem"
sleep 4
for role in gateway user-service product-service order-service payment-service; do
  put "$new_ca/$role-key.pem" "$STATE/tls/$role-key.pem"
  put "$new_ca/$role.pem" "$STATE/tls/$role.pem"
done
sleep 4
put "$new_ca/ca-key.pem" "$STATE/tls/ca-key.pem"
put "$new_ca/ca.pem" "$STATE/tls/ca.pem"
wait "$loadgen_pid" || fail "agora loadgen failed while the certificates and the CA were rotated"
python3 - "$loadgen_out" <<'PY' || fail "requests failed while every certificate and the CA were rotated: $(cat "$loadgen_out")"
import json, sys
summary = json.load(open(sys.argv[1]))
bad = {status: n for status, n in summary["status"].items() if not status[:1] in "234"}
assert summary["requests"] >= 150 and summary["served"] == 1.0 and not bad, (summary["requests"], summary["served"], bad)
print(f"[up test] loadgen: {summary['requests']} requests, all served, statuses {summary['status']}")
PY
rm -rf "$loadgen_out" "$new_ca"
serial_now=""
for _ in $(seq 1 20); do
  serial_now="$(served_serial)"
  [[ "$serial_now" == "$(openssl x509 -in "$STATE/tls/product-service.pem" -noout -serial)" ]] && break
  sleep 0.5
done
[[ "$serial_now" == "$(openssl x509 -in "$STATE/tls/product-service.pem" -noout -serial)" && "$serial_now" != "$serial_before" ]] \
  || fail "product-service does not serve its certificate of the new CA ($serial_before, now $serial_now)"
pass "every certificate renewed and the CA rotated under agora loadgen through the gateway: no request failed"

# The order's spans reached Jaeger from every process.
services=""
for _ in $(seq 1 40); do
  services="$(curl -fsS "$jaeger/api/services" | python3 -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin)["data"] or [])))')"
  [[ "$services" == "gateway order-service payment-service product-service user-service" ]] && break
  sleep 0.5
done
[[ "$services" == "gateway order-service payment-service product-service user-service" ]] \
  || fail "Jaeger has spans from '$services', not from the gateway and the four services"
pass "Jaeger has the order's spans from the gateway and the four services"
# The gateway exports in batches: the order's span may come a few seconds after the others.
for _ in $(seq 1 40); do
  listed="$("$AGORA_UP_BIN" trace --jaeger "$jaeger" --limit 50)" || fail "agora trace could not list the gateway's traces"
  grep -q 'POST /v1/orders: ' <<<"$listed" && break
  sleep 0.5
done
grep -q 'POST /v1/orders: ' <<<"$listed" || fail "agora trace lists no POST /v1/orders trace:"$'\n'"$listed"
pass "agora trace lists the order's trace"


# Every process serves Prometheus metrics where the banner says; they counted the order.
metrics_urls="$(grep -o 'http://[^ ]*/metrics' <<<"$banner")"
[[ "$(wc -l <<<"$metrics_urls")" == 10 ]] || fail "the banner lists $(wc -l <<<"$metrics_urls") metrics endpoints, not 10"
for url in $metrics_urls; do
  # The two gateways share one port (SO_REUSEPORT), so a scrape lands on either, and one that
  # has served no request yet has no samples: a few scrapes reach the other.
  for _ in $(seq 1 10); do
    scraped="$(curl -fsS "$url")" || fail "cannot scrape $url"
    grep -q '^agora_' <<<"$scraped" && break
  done
  grep -q '^agora_' <<<"$scraped" || fail "$url serves no agora_ series"
done
# Either order-service instance may have placed it.
created=0
for url in $(grep -E ' order-service(-[0-9])? ' <<<"$banner" | grep -o 'http://[^ ]*/metrics'); do
  n="$(curl -fsS "$url" \
    | sed -n 's/^agora_rpc_server_calls_total{service="agora.order.v1.OrderService",method="CreateOrder",code="OK"} //p')"
  created=$((created + ${n:-0}))
done
[[ "$created" -ge 1 ]] || fail "no order-service instance's metrics count a CreateOrder"
pass "every process serves metrics that counted the order"

pids_before="$(cat "$STATE"/pids/*.pid | sort)"
bash scripts/up.sh up >/dev/null
[[ "$(cat "$STATE"/pids/*.pid | sort)" == "$pids_before" ]] || fail "a second up restarted processes"
pass "a second up restarts nothing"

# One instance of every role lost at once, as if its machine died: the stack still takes and
# pays an order, through the same gateway address.
for name in gateway user-service product-service order-service payment-service; do
  kill -KILL "$(cat "$STATE/pids/$name.pid")"
done
order_id="$(client --token "$token" --get id order "$mug:1" --idempotency-key up-2)" \
  || fail "no order taken with one instance of every role killed"
status="$(client --token "$token" --get status get-order "$order_id" --wait 60)" || fail "order $order_id did not settle"
[[ "$status" == ORDER_STATUS_PAID ]] || fail "with one instance of every role killed, order $order_id ended $status"
pass "one instance of every role SIGKILLed: an order is still taken and paid"
bash scripts/up.sh up >/dev/null
pass "up starts the killed instances again"

bash scripts/up.sh down
left="$(stack_processes)"
[[ -z "$left" ]] || fail "down left processes behind:"$'\n'"$left"
pass "down leaves no process behind"

banner="$(bash scripts/up.sh up)"
gateway="$(sed -n 's/^ *Gateway *\(http:[^ ]*\).*/\1/p' <<<"$banner")"
token="$(client --get accessToken sign-in --email ada@example.com --password "correct horse battery")"
status="$(client --token "$token" --get status get-order "$order_id")"
[[ "$status" == ORDER_STATUS_PAID ]] || fail "after down and up, order $order_id is '$status'"
pass "down and up keep the data"

# No secret in any log line of the whole run: the generated ones, a user's password, a token.
secrets=("correct horse battery" "$token" "$AGORA_ADMIN_PASSWORD")
for file in "$STATE"/secrets/*; do secrets+=("$(cat "$file")"); done
for secret in "${secrets[@]}"; do
  [[ ${#secret} -ge 8 ]] || fail "a secret to look for is too short to mean anything: '$secret'"
  leaked="$(grep -rlF -- "$secret" "$STATE/logs" || true)"
  [[ -z "$leaked" ]] || fail "a secret (${secret:0:4}...) is in: $leaked"
done
[[ -n "$(cat "$STATE"/logs/*.log)" ]] || fail "no logs to scan in $STATE/logs"
pass "no password, secret or token in the logs (${#secrets[@]} looked for)"

bash scripts/up.sh purge
[[ -z "$(stack_processes)" && ! -d "$STATE" ]] || fail "purge left processes or $STATE"
trap - EXIT
pass "purge removes the stack"
