#!/usr/bin/env bash
# Instructions per event, by function: the connector under callgrind, serving the fixture event.
#
#   bash bench/profile.sh            15 s of load at 4 connections (about 10 000 events under valgrind)
#   PROFILE_SECONDS=30 bash bench/profile.sh
#   bash bench/profile.sh --otel     the same with spans exported to a local OTLP sink
#   bash bench/profile.sh --forwarder  the bench's bare forwarder instead, sent the body the
#                                    connector sends WTL: the baseline's instructions per request
#
# callgrind counts instructions, not time, so the figure repeats from run to run whatever else the
# machine is doing: it shows whether a change made the per-event work smaller. The release
# build gets line tables (in its own target folder) so the report names functions and files.
# Output: bench/results/callgrind.out (callgrind-forwarder.out with --forwarder; open with
# callgrind_annotate or kcachegrind) and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${PROFILE_SECONDS:-15}
mode=${1:-connector}
case "$mode" in
  connector | --otel | --forwarder) ;;
  *) echo "usage: bash bench/profile.sh [--otel | --forwarder]" >&2; exit 2 ;;
esac

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need valgrind valgrind
apt_need wrk wrk

# The release build with line tables, in a target folder of its own (the forwarder's too).
export CARGO_TARGET_DIR=$root/target/profiling CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  CARGO_PROFILE_RELEASE_STRIP=false
BENCH_PROFILE=release
if [ "$mode" = connector ]; then build_bench connector; else build_bench forwarder; fi

start_simulator "$bin"
conn_port=$(free_port)
export_settings=()
if [ "$mode" = --otel ]; then
  sink_port=$(free_port)
  "$sink" "$sink_port" "$work/spans.txt" >"$work/sink.log" 2>&1 &
  pids+=($!)
  export_settings=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port")
fi

mkdir -p bench/results
case "$mode" in
  --forwarder) out=$root/bench/results/callgrind-forwarder.out ;;
  *) out=$root/bench/results/callgrind.out ;;
esac
launch=(valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$work/valgrind.log")
if [ "$mode" = --forwarder ]; then
  start_forwarder "$conn_port"
  url="http://127.0.0.1:$conn_port/"
  # The forwarder answers every request 202, whatever the upstream said (it has no /health): a
  # GET shows it is up, and wrk's non-2xx count below cannot see an upstream failure.
  up=$url
  baseline_script "$work/post.lua"
else
  start_connector "$bin" "$conn_port" "$work/connector.log" "${export_settings[@]}"
  url="http://127.0.0.1:$conn_port/process-event"
  up="http://127.0.0.1:$conn_port/health"
  event_script "$work/post.lua"
fi
vg=$started
wait_http "$up" 3000

wrk -t1 -c4 -d"${seconds}s" -s "$work/post.lua" "$url" >"$work/wrk.txt"
kill -TERM "$vg"
wait "$vg" || true

non2xx=$(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' "$work/wrk.txt" || echo 0)
[ "$non2xx" = 0 ] || { echo "error: $non2xx answers were not 2xx" >&2; exit 1; }
# Requests served: the connector's access lines; the forwarder writes none, so wrk's count.
if [ "$mode" = --forwarder ]; then
  served=$(grep -oP '^\s*\K[0-9]+(?= requests in)' "$work/wrk.txt" || echo 0)
else
  served=$(grep -c '"message":"request completed"' "$work/connector.log" || true)
fi
total=$(grep -oP 'Collected : \K[0-9]+' "$work/valgrind.log" || echo 0)
[ "${served:-0}" -gt 0 ] || { echo "error: no request was served" >&2; exit 1; }
echo "requests served: $served"
echo "instructions per request (start-up included): $((total / served))"
echo "top functions by instructions (inclusive), per request:"
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
' "$served"
echo "full profile: $out"
