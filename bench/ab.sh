#!/usr/bin/env bash
# Two builds of the connector side by side: CPU time per request of build A, of build B and of
# the bare forwarder, in turn, round after round, so that the machine's drift (which moves a
# figure by more than most changes do) touches all three alike. Reports each one's median and
# the medians of the rounds' ratios.
#
#   bash bench/ab.sh A-BINARY B-BINARY      e.g. a copy of target/release/nsps-wtl-connector
#                                           built before a change, and one built after
#   AB_ROUNDS=7 AB_SECONDS=5 AB_CONNECTIONS=64 (the defaults)
#
# Both builds serve the fixture event with INFO logs and the redelivery memory off, like the
# main connector of bench/run.sh, against one WTL simulator (build A's).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
  echo "usage: bash bench/ab.sh A-BINARY B-BINARY (two connector builds)" >&2
  exit 2
fi
declare -A build=([A]=$(realpath "$1") [B]=$(realpath "$2"))
rounds=${AB_ROUNDS:-7} seconds=${AB_SECONDS:-5} connections=${AB_CONNECTIONS:-64}

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need wrk wrk
build_bench forwarder
bin=${build[A]}

start_simulator "$bin"
declare -A port pid
for who in A B; do
  port[$who]=$(free_port)
  start_connector "${build[$who]}" "${port[$who]}" "$work/$who.log"
  pid[$who]=$started
  wait_http "http://127.0.0.1:${port[$who]}/health"
done
port[F]=$(free_port)
start_forwarder "${port[F]}"
pid[F]=$started
sleep 0.5
event_script "$work/post.lua"
baseline_script "$work/post-baseline.lua"

threads=1
[ "$connections" -gt 1 ] && threads=2
: >"$work/rounds"
for round in $(seq 1 "$rounds"); do
  for who in A B F; do
    script=$work/post.lua
    [ "$who" = F ] && script=$work/post-baseline.lua
    before=$(cpu_ticks "${pid[$who]}")
    "${peer[@]}" wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$script" "http://127.0.0.1:${port[$who]}/process-event" >"$work/wrk.out"
    after=$(cpu_ticks "${pid[$who]}")
    echo "$who $round $((after - before)) $(grep -oP '\d+(?= requests in)' "$work/wrk.out")" >>"$work/rounds"
  done
done

echo "Peers (wrk, the simulator): $peers_class"
python3 - "$work/rounds" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
hz = int(sys.argv[2])
cpu = {}
for line in open(sys.argv[1]):
    who, _, ticks, requests = line.split()
    cpu.setdefault(who, []).append(int(ticks) / hz * 1e6 / max(int(requests), 1))
for who, name in (("A", "build A"), ("B", "build B"), ("F", "forwarder")):
    print(f"{name}: median {statistics.median(cpu[who]):.1f} µs per request "
          f"(rounds {', '.join(f'{v:.1f}' for v in cpu[who])})")
ratio = lambda x, y: statistics.median(a / b for a, b in zip(cpu[x], cpu[y]))
print(f"medians of the rounds' ratios: A / forwarder {ratio('A', 'F'):.2f}, B / forwarder {ratio('B', 'F'):.2f}, "
      f"B / A {ratio('B', 'A'):.3f}")
PY
