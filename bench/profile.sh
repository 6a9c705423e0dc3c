#!/usr/bin/env bash
# Instructions per event, by function: the connector under callgrind, serving the fixture event.
#
#   bash bench/profile.sh            15 s of load at 4 connections (about 10 000 events under valgrind)
#   PROFILE_SECONDS=30 bash bench/profile.sh
#
# callgrind counts instructions, not time, so the figure repeats from run to run whatever else the
# machine is doing: it shows whether a change made the per-event work smaller. The release
# build gets line tables (in its own target folder) so the report names functions and files.
# Output: bench/results/callgrind.out (open with callgrind_annotate or kcachegrind) and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${PROFILE_SECONDS:-15}

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need valgrind valgrind
need wrk wrk

target=$root/target/profiling
echo "building (release with line tables)..."
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=false \
  cargo build --release --locked --quiet --target-dir "$target"
bin=$target/release/nsps-wtl-connector

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {
  for _ in $(seq 1 3000); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "error: $1 did not come up" >&2; return 1
}

sim_port=$(free_port) conn_port=$(free_port)
(cd "$work" && SIMULATOR_PORT=$sim_port LOG_LEVEL=ERROR exec "$bin" simulator) >/dev/null 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/health"
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$sim_port/prov" -H 'content-type: application/json' \
  -d '{"imsi":"001010000020349","subscriber_status":"operatorDeterminedBarring","cs_profile":"default","eps_profile":"default","msisdn":[],"action":"insert"}'

mkdir -p bench/results
out=$root/bench/results/callgrind.out
(cd "$work" && PORT=$conn_port API_TOKEN=bench-token WTL_API_URL="http://127.0.0.1:$sim_port" \
  EVENT_DEDUP_TTL=0 STALE_EVENT_CHECK=false LOG_LEVEL=INFO \
  exec valgrind --tool=callgrind --callgrind-out-file="$out" "$bin") >"$work/connector.log" 2>"$work/valgrind.log" &
vg=$!
pids+=("$vg")
wait_http "http://127.0.0.1:$conn_port/health"

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$root/tests/fixtures/sim-updated-open.json", "r")
wrk.body = f:read("*a")
f:close()
EOF
wrk -t1 -c4 -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$conn_port/process-event" >/dev/null
kill -TERM "$vg"
wait "$vg" || true

events=$(grep -c '"message":"request completed"' "$work/connector.log" || true)
total=$(grep -oP 'Collected : \K[0-9]+' "$work/valgrind.log" || echo 0)
[ "${events:-0}" -gt 0 ] || { echo "error: no event was served" >&2; exit 1; }
echo "events served: $events"
echo "instructions per event (start-up included): $((total / events))"
echo "top functions by instructions (inclusive), per event:"
callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null | python3 -c '
import re, sys
n = int(sys.argv[1])
best = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\S+?:(.*?)( \[.*)?$", line)
    if m:
        count, name = int(m.group(1).replace(",", "")), m.group(2).strip()[:120]
        best[name] = max(best.get(name, 0), count)
for name, count in sorted(best.items(), key=lambda kv: -kv[1])[:40]:
    print(f"{count / n:9.0f}  {name}")
' "$events"
echo "full profile: $out"
