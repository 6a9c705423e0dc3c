#!/usr/bin/env bash
# Contract test with an outside tool: schemathesis generates requests from openapi.json and
# checks the connector's answers against it. The connector runs in demo mode (with the embedded
# WTL simulator) on loopback. Passes only with no failure: no 5xx, every answer documented and
# matching its schema.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v st >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
if ! command -v openapi-spec-validator >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<1'
fi
st --version

# The document itself is valid OpenAPI (unique operation ids, resolvable references, ...).
openapi-spec-validator openapi.json

cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/nsps-wtl-connector"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
token="contract-$(date +%s)"
log=$(mktemp)
workdir=$(mktemp -d)   # no .env there
(cd "$workdir" && PORT="$port" API_TOKEN="$token" exec "$bin" demo) >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$workdir" "$log"' EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null

# Every check on answers. Not `negative_data_rejection`: by design an event whose type is not
# mapped is answered 202 "Event ignored" whatever its pb_data holds (NSPS sends every event type
# to the handler, and an ignored event must not be redelivered for a month), so invalid data in
# an ignored event is correctly accepted.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,unsupported_method,ignored_auth

st run openapi.json \
  --url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer $token" \
  --checks "${CONTRACT_CHECKS:-$checks}" \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-60}" \
  --request-timeout 10 \
  --generation-deterministic

# The connector itself must not have logged a panic while under fire.
if grep -q '"panic"' "$log"; then
  echo "the connector logged a panic during the contract run" >&2
  exit 1
fi
