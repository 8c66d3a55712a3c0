#!/usr/bin/env bash
# A bounded schemathesis run against the engine's own /openapi.json, once with the operator's
# token and once with a tenant's: 0 server errors, 0 schema mismatches, 0 undocumented status
# codes, 0 wrong content types. Usage: tests/schemathesis/run.sh [path/to/wasmhook]
# `tests/schemathesis/run.sh --install` only installs the pinned schemathesis (scripts/test runs
# it in the background while cargo builds).
#
# The engine runs with `http.egress_allow_cidrs_only` and only 127.0.0.1/32 allowed, so whatever
# endpoints and events the fuzzer invents, no delivery (nor any DNS lookup) leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:-target/debug/wasmhook}
version=4.32.5
venv=$PWD/target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi
[ "$binary" = --install ] && exit 0

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin=schemathesis-admin-token-0123456789
cat > "$work/config.toml" <<TOML
[http]
allow_cidrs = ["127.0.0.1/32"]
egress_allow_cidrs_only = true
[plugins]
require_auth_and_security = false
TOML
WASMHOOK_ADMIN_TOKEN=$admin RUST_LOG=warn "$binary" serve --config "$work/config.toml" \
    --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/engine.log" 2>&1 &
engine=$!
trap 'kill $engine 2>/dev/null; wait $engine 2>/dev/null; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -fsS "$base/healthz" > /dev/null 2>&1 && break
    sleep 0.2
done
tenant_token=$(curl -fsS -XPOST "$base/v1/tenants" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"id": "fuzz", "name": "Fuzz"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

status=0
passed=0
failed=0
for who in operator tenant; do
    token=$admin
    [ "$who" = tenant ] && token=$tenant_token
    echo "schemathesis as the $who"
    # From the temporary directory: schemathesis keeps its cache (.schemathesis/) in the cwd.
    if ! (cd "$work" && "$venv/bin/schemathesis" run "$base/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --phases examples,coverage,fuzzing --max-examples 30 --max-time 90 --seed 1 \
        --workers 2 --generation-database none --suppress-health-check all --no-color \
        --request-timeout 10); then
        status=1
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done
if ! kill -0 $engine 2>/dev/null; then
    echo "the engine died during the run:"; tail -50 "$work/engine.log"; status=1
fi
if grep -q "panicked" "$work/engine.log"; then
    echo "the engine panicked:"; grep -A5 panicked "$work/engine.log" | head -40; status=1
fi
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
echo "schemathesis result: $passed passed; $failed failed"
exit $status
