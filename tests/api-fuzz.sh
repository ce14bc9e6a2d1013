#!/usr/bin/env bash
# Fuzzes a running gateway against its own /openapi.json with schemathesis (`st run`):
#   - every phase: the schema's examples, coverage (boundary and invalid values of each
#     parameter, undeclared methods), fuzzing, and stateful (call chains linked by the
#     identifiers responses return; schemathesis infers the links, the document has none);
#   - positive and negative data (`--mode all`);
#   - every check but positive_data_acceptance (see config below): no 5xx, documented status
#     codes, content types, headers and response schemas, invalid data refused, undeclared
#     methods 405 with Allow, a deleted resource gone, a created one reachable, auth enforced,
#     one user unable to read another's objects;
#   - two runs, with identities it signs up or logs in first: every operation as a fresh user,
#     alice, whose reads are replayed as a second one, bob (object_level_authorization), and
#     the admin-only operations as the admin. alice and bob each place an order first, so the
#     order routes have something to find.
# Exits non-zero when schemathesis reports a failure, and ends with a one-line summary.
#
# Usage: tests/api-fuzz.sh [GATEWAY_URL]
#
# Without a URL (as `make test` runs it) it starts a throwaway `agora all` of its own (the
# binary in AGORA_FUZZ_BIN, by default the debug build) on free ports with its limits off,
# and afterwards also fails if that process logged a panic or an error.
#
# A gateway given by URL must have its rate limits off, or the 429s would hide the API (the run fails
# when any request was rate-limited), and should be a throwaway one: the admin identity
# creates and edits products, and users and orders pile up. For example:
#
#   AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0 AGORA_ADMIN_PASSWORD=fuzz-admin-1 \
#     agora all --data-dir "$(mktemp -d)" --listen 127.0.0.1:18080 &
#   AGORA_ADMIN_PASSWORD=fuzz-admin-1 tests/api-fuzz.sh http://127.0.0.1:18080
#
# About a minute on two cores against the debug binary (1 min 45 s with AGORA_FUZZ_MAX_EXAMPLES=300).
# schemathesis comes from scripts/python-tools.sh; needs python3 and the agora binary.
#
# Environment:
#   AGORA_FUZZ_URL           gateway base URL, when not given as the argument
#   AGORA_FUZZ_BIN           the agora binary: its `client` signs the users up, and without
#                            a URL it is the platform started
#                            (default: $CARGO_TARGET_DIR/debug/agora)
#   AGORA_ADMIN_EMAIL        admin account                       (default: admin@agora.local)
#   AGORA_ADMIN_PASSWORD     its password; unset: no admin identity, the admin routes are only
#                            checked to refuse the users
#   AGORA_FUZZ_REPORT_DIR    where the JUnit and JSON reports go (default: a new temp dir)
#   AGORA_FUZZ_MAX_EXAMPLES  test cases per operation and phase  (default: 200)
#   AGORA_FUZZ_SEED          schemathesis seed                   (default: 20261121)
#   AGORA_FUZZ_STRICT        1 to add positive_data_acceptance   (default: 0)
#   AGORA_CACHE              tool cache root                     (default: $HOME/.cache/agora)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[api-fuzz] %s\n' "$*" >&2; }
die() { printf '[api-fuzz] error: %s\n' "$*" >&2; exit 2; }

URL="${1:-${AGORA_FUZZ_URL:-}}"
ADMIN_EMAIL="${AGORA_ADMIN_EMAIL:-admin@agora.local}"
ADMIN_PASSWORD="${AGORA_ADMIN_PASSWORD:-}"
MAX_EXAMPLES="${AGORA_FUZZ_MAX_EXAMPLES:-200}"
SEED="${AGORA_FUZZ_SEED:-20261121}"
REPORT_DIR="${AGORA_FUZZ_REPORT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/agora-api-fuzz.XXXXXX")}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(realpath "$REPORT_DIR")"

command -v python3 >/dev/null || die "python3 not found"
python="$(bash scripts/python-tools.sh python)"
st="$(dirname "$python")/st"
[[ -x "$st" ]] || die "scripts/python-tools.sh installed no $st"

# The auth file holds bearer tokens: private, and removed at the end. Also the working
# directory of `st`, which writes a .hypothesis directory there, and of the platform this
# script starts, if any.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/agora-api-fuzz-work.XXXXXX")"
PLATFORM_PID=""
cleanup() {
  if [[ -n "$PLATFORM_PID" ]]; then kill -TERM "$PLATFORM_PID" 2>/dev/null && wait "$PLATFORM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The binary signs the fuzzing identities up (`agora client`) and, without a URL, is the
# platform under test.
bin="${AGORA_FUZZ_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/agora/target}/debug/agora}"
[[ -x "$bin" ]] || die "no agora binary at $bin (build it: cargo build -p agora; or set AGORA_FUZZ_BIN)"
if [[ -z "$URL" ]]; then
  # shellcheck source-path=SCRIPTDIR/../scripts
  source scripts/lib/daemon.sh
  port="$(free_port)"
  ADMIN_PASSWORD="fuzz-admin-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
  AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0 AGORA_ADMIN_EMAIL="$ADMIN_EMAIL" \
    AGORA_ADMIN_PASSWORD="$ADMIN_PASSWORD" AGORA_DATA_DIR="$WORK/data" AGORA_LISTEN="127.0.0.1:$port" \
    AGORA_USER_ADDR=127.0.0.1:0 AGORA_PRODUCT_ADDR=127.0.0.1:0 AGORA_ORDER_ADDR=127.0.0.1:0 \
    AGORA_PAYMENT_ADDR=127.0.0.1:0 "$bin" all >"$WORK/agora.log" 2>&1 &
  PLATFORM_PID=$!
  URL="http://127.0.0.1:$port"
  log "started agora all at $URL (pid $PLATFORM_PID, log $WORK/agora.log)"
fi
URL="${URL%/}"

# The gateway's answer (or one field of it, with --get) to an `agora client` call; dies
# with the gateway's message unless it is a 2xx.
client() {
  "$bin" client --gateway "$URL" "$@" || die "agora client ${*:1:3}... was refused (a 429: run the gateway with AGORA_RATE_LIMIT_PER_SECOND=0 AGORA_SIGN_IN_LIMIT_PER_MINUTE=0)"
}

log "waiting for the gateway at $URL to pass agora check"
for _ in $(seq 1 60); do
  "$bin" check --gateway "$URL" >/dev/null 2>&1 && break
  sleep 0.5
done
"$bin" check --gateway "$URL" >/dev/null || die "agora check fails against $URL: is the gateway running, with its backends?"

# Fresh users each run, so a reused gateway gives the same starting point.
password="fuzz-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
run_id="$(date +%s)-$$"
declare -A token user_id
for name in alice bob; do
  email="fuzz-$name-$run_id@example.com"
  user_id[$name]="$(AGORA_CLIENT_PASSWORD="$password" client --get id sign-up --email "$email" --name "$name")"
  token[$name]="$(AGORA_CLIENT_PASSWORD="$password" client --get accessToken sign-in --email "$email")"
  [[ -n "${token[$name]}" ]] || die "no access token for $name"
done
identities=(alice bob)
if [[ -n "$ADMIN_PASSWORD" ]]; then
  token[admin]="$(AGORA_CLIENT_PASSWORD="$ADMIN_PASSWORD" client --get accessToken sign-in --email "$ADMIN_EMAIL")"
  identities+=(admin)
else
  log "AGORA_ADMIN_PASSWORD is unset: no admin identity, the admin routes are only checked to refuse users"
fi

# Something for the order and payment routes to find: one order each, which the signup
# credit (100.00) pays.
products="$(client products)"
product_ids="$(python3 -c 'import json, sys; print(json.dumps([p["id"] for p in json.load(sys.stdin)["products"]]))' <<<"$products")"
[[ "$product_ids" != "[]" ]] || die "the catalog is empty: start the gateway with the demo catalog (--seed-demo true)"
first_product="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["products"][0]["id"])' <<<"$products")"
order_ids=()
for name in alice bob; do
  order_ids+=("$(client --token "${token[$name]}" --get id order "$first_product")")
done
log "signed up alice (${user_id[alice]}) and bob (${user_id[bob]}), each with an order"

# WFC auth document: one entry per identity.
python3 - "$WORK/auth.json" "${identities[@]}" <<PY
import json, sys
tokens = {"alice": "${token[alice]}", "bob": "${token[bob]}", "admin": "${token[admin]:-}"}
auth = [{"name": n, "fixedHeaders": [{"name": "Authorization", "value": "Bearer " + tokens[n]}]} for n in sys.argv[2:]]
json.dump({"schemaVersion": "0.2.0", "auth": auth}, open(sys.argv[1], "w"))
PY
chmod 600 "$WORK/auth.json"

user_ids="[\"${user_id[alice]}\", \"${user_id[bob]}\"]"
order_ids_json="[\"${order_ids[0]}\", \"${order_ids[1]}\"]"
any_ids="$(python3 -c 'import json, sys; print(json.dumps(sum((json.loads(a) for a in sys.argv[1:]), [])))' \
  "$product_ids" "$user_ids" "$order_ids_json")"
# Fresh addresses to sign up with, and alice's to log in with (the password pool is hers).
emails="$(python3 -c 'import json, sys; print(json.dumps([f"fuzz-{i:03}-{sys.argv[1]}@example.com" for i in range(200)] + [sys.argv[2]]))' \
  "$run_id" "fuzz-alice-$run_id@example.com")"
positive_data_acceptance=false
[[ "${AGORA_FUZZ_STRICT:-0}" == 1 ]] && positive_data_acceptance=true

# config IDENTITY [PEERS]: the schemathesis.toml of a run as IDENTITY.
config() {
  cat <<TOML
# Reproducible: no example database nor cache carried over from an earlier run.
[cache]
enabled = false

# Rate-limited requests say nothing about the API; with limits on, the run is void.
[warnings]
fail-on = ["rate_limited"]

[auth.wfc]
path = "$WORK/auth.json"
user = "$1"
${2:+peers = $2}

# Every check is on by default. positive_data_acceptance fails on most operations today and
# says little: the document has the proto's types but none of the services' rules (required
# fields, UUID ids, e-mail addresses, ISO currency codes, page sizes, item counts), so
# schema-valid data is mostly refused with a 400. AGORA_FUZZ_STRICT=1 turns it on.
[checks.positive_data_acceptance]
enabled = $positive_data_acceptance

# /v1/orders/{id}:cancel is also /v1/orders/{id} with id "…:cancel" (the gateway's routes
# overlap there, as google.api.http's do), so its 405 rightly allows GET as well as POST.
[[operations]]
include-path = "/v1/orders/{id}:cancel"
checks.allow_header_conformance.enabled = false

# The document has types but no formats or patterns, so random strings would almost never be
# a real id, an e-mail address or a currency code and never get past validation. These pools
# are drawn from part of the time; the rest stays random.
[dictionaries.ids]
values = $any_ids
[dictionaries.product-ids]
values = $product_ids
[dictionaries.order-ids]
values = $order_ids_json
[dictionaries.user-ids]
values = $user_ids
[dictionaries.emails]
values = $emails
[dictionaries.passwords]
values = ["$password"]
[dictionaries.names]
values = ["Fuzz", "Fuzzed product"]
[dictionaries.currencies]
values = ["USD"]
[dictionaries.amounts]
values = [1, 250, 9999]
[dictionaries.quantities]
values = [1, 2, 3]

[parameters]
"path.id" = { dictionary = "ids", probability = 0.5 }
"query.order_id" = { dictionary = "order-ids", probability = 0.5 }
"query.user_id" = { dictionary = "user-ids", probability = 0.5 }
"body.userId" = { dictionary = "user-ids", probability = 0.5 }
"body.email" = { dictionary = "emails", probability = 0.7 }
"body.password" = { dictionary = "passwords", probability = 0.7 }
"body.name" = { dictionary = "names", probability = 0.5 }
"body.stock" = { dictionary = "quantities", probability = 0.5 }
"body.items[*].productId" = { dictionary = "product-ids", probability = 0.7 }
"body.items[*].quantity" = { dictionary = "quantities", probability = 0.7 }
"body.price.currencyCode" = { dictionary = "currencies", probability = 0.7 }
"body.amount.currencyCode" = { dictionary = "currencies", probability = 0.7 }
"body.price.amountMinor" = { dictionary = "amounts", probability = 0.5 }
"body.amount.amountMinor" = { dictionary = "amounts", probability = 0.5 }
TOML
}

options=(
  --phases "examples,coverage,fuzzing,stateful"
  --mode all
  --max-examples "$MAX_EXAMPLES"
  --seed "$SEED"
  --generation-database none
  --workers 1
  --continue-on-failure
  --request-timeout 10
  --wait-for-schema 30
  --report "junit,json"
)
log "st run $URL/openapi.json ${options[*]} --report-dir $REPORT_DIR/RUN"

# run NAME IDENTITY PEERS [st options]: one schemathesis run; its exit status in statuses.
statuses=()
runs=()
run() {
  local name="$1" identity="$2" peers="$3" status=0
  shift 3
  config "$identity" "$peers" >"$WORK/$name.toml"
  log "run $name: as $identity${peers:+, peers $peers} $*"
  (cd "$WORK" && "$st" --config-file "$WORK/$name.toml" run "$URL/openapi.json" "${options[@]}" \
    --report-dir "$REPORT_DIR/$name" "$@") || status=$?
  statuses+=("$status")
  runs+=("$name")
}

# Every operation as alice, with bob as the peer whose objects alice must not see (and the
# admin routes refusing her).
run users alice '["alice", "bob"]'
# The admin routes as the admin.
if [[ -n "${token[admin]:-}" ]]; then
  run admin admin '' --include-by '/x-agora-access == "admin"'
fi

status=0
for s in "${statuses[@]}"; do
  (( s == 0 )) || status="$s"
done
summary="$(python3 - "$REPORT_DIR" "${runs[@]}" <<'PY'
import glob, json, os, sys
ops = cases = failed = errors = 0
per_run, found, limited, missing = [], [], [], []
for run in sys.argv[2:]:
    reports = sorted(glob.glob(os.path.join(sys.argv[1], run, "json-*.json")))
    if not reports:
        missing.append(run)
        continue
    r = json.load(open(reports[-1]))
    ops += r["operations"]["tested"]
    per_run.append(f"{run} {r['operations']['tested']}")
    cases += r["test_cases"]["generated"]
    failed += r["test_cases"]["unique_failures"]
    errors += len(r["errors"])
    found += [f"{run}: {f['code']} {f['title']}: {', '.join(f['operations'])}" for f in r["failures"]]
    limited += r["warnings"].get("rate_limited") or []
line = f"{ops} operations tested ({', '.join(per_run)}), {cases} test cases generated, {failed} failures"
line += f" ({'; '.join(found)})" if found else ""
line += f", {errors} errors"
line += f", rate-limited: {', '.join(limited)} (turn the gateway's limits off)" if limited else ""
line += f", no report from: {', '.join(missing)}" if missing else ""
print(line)
PY
)"
if [[ -n "$PLATFORM_PID" ]]; then
  # What the platform itself said while being fuzzed: a panic or an error is a bug even
  # when every answer looked right.
  if grep -nE 'panicked|ERROR' "$WORK/agora.log" | head -n 20 >&2; then
    log "agora all logged the panics or errors above while being fuzzed"
    status=1
  fi
fi
printf '[api-fuzz] %s %s; reports in %s\n' "$([[ $status == 0 ]] && echo ok: || echo FAILED:)" "$summary" "$REPORT_DIR"
exit "$status"
