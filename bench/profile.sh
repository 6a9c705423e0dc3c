#!/usr/bin/env bash
# Instructions per event, by function: the connector under callgrind, serving the fixture event.
#
#   bash bench/profile.sh            15 s of load at 4 connections (about 10 000 events under valgrind)
#   PROFILE_SECONDS=30 bash bench/profile.sh
#   bash bench/profile.sh --otel     the same with spans exported to a local OTLP sink
#
# callgrind counts instructions, not time, so the figure repeats from run to run whatever else the
# machine is doing: it shows whether a change made the per-event work smaller. The release
# build gets line tables (in its own target folder) so the report names functions and files.
# Output: bench/results/callgrind.out (open with callgrind_annotate or kcachegrind) and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${PROFILE_SECONDS:-15}
otel=false
[ "${1:-}" = "--otel" ] && otel=true

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need valgrind valgrind
apt_need wrk wrk

target=$root/target/profiling
echo "building (release with line tables)..."
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=false \
  cargo build --release --locked --quiet --target-dir "$target"
bin=$target/release/nsps-wtl-connector

start_simulator "$bin"
conn_port=$(free_port)
export_settings=()
if $otel; then
  sink_port=$(free_port)
  python3 bench/otlp_sink.py "$sink_port" "$work/spans.txt" >"$work/sink.log" 2>&1 &
  pids+=($!)
  export_settings=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port")
fi

mkdir -p bench/results
out=$root/bench/results/callgrind.out
(cd "$work" && PORT=$conn_port API_TOKEN=$BENCH_TOKEN WTL_API_URL="http://127.0.0.1:$sim_port" \
  EVENT_DEDUP_TTL=0 STALE_EVENT_CHECK=false LOG_LEVEL=INFO \
  exec env "${export_settings[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" "$bin") >"$work/connector.log" 2>"$work/valgrind.log" &
vg=$!
pids+=("$vg")
wait_http "http://127.0.0.1:$conn_port/health" 3000

event_script "$work/post.lua"
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
