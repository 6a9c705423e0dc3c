#!/usr/bin/env bash
# Where the CPU time of a request goes, for the connector and for the bare forwarder, at 64
# connections on loopback: perf samples the process's time (the cpu-clock software event, which
# needs no hardware counters, so it works inside a VM) while wrk loads it, and each sample is put
# in one of these by its kernel call chain:
#
#   waking a reader   inside a socket write, waking the process that reads the other end (wrk or
#                     the upstream): the kernel does this in the writer's time
#   switching         the context switch itself (the scheduler's switch path)
#   interrupts        the return to user space after an interrupt (timer ticks, the other
#                     core's reschedule requests)
#   other kernel      the rest of the system calls (TCP, epoll, ...)
#   user              the process's own code and its libraries
#
# and the process's CPU time per request (/proc/<pid>/stat over the same window) is divided in
# the same shares. Under virtualisation, time spent with interrupts off lands on the point where
# they are turned on again, which is inside the wake-up and switch paths above.
#
#   bash bench/split.sh                 5 s per process (SPLIT_SECONDS)
#
# Output: a table on stdout and bench/results/split.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${SPLIT_SECONDS:-5}

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need wrk wrk
command -v perf >/dev/null 2>&1 || apt_need perf linux-perf
build_bench forwarder

start_pair
event_script "$work/post.lua"
baseline_script "$work/post-baseline.lua"

# sample NAME PID URL SCRIPT: one warm-up second, then the load under perf; appends
# "NAME requests cpu_us_per_request" to $work/totals and leaves $work/NAME.script.
sample() {
  local name=$1 pid=$2 url=$3 script=$4 before after out
  "${peer[@]}" wrk -t2 -c64 -d1s -s "$script" "$url" >/dev/null
  before=$(cpu_ticks "$pid")
  perf record -q -g -F 999 -e cpu-clock -p "$pid" -o "$work/$name.data" -- \
    "${peer[@]}" wrk -t2 -c64 -d"${seconds}s" -s "$script" "$url" >"$work/$name.wrk" 2>/dev/null
  after=$(cpu_ticks "$pid")
  out=$(grep -oP '\d+(?= requests in)' "$work/$name.wrk")
  echo "$name $out $((after - before))" >>"$work/totals"
  perf script -i "$work/$name.data" -F comm,ip,sym,dso >"$work/$name.script" 2>/dev/null
}
: >"$work/totals"
sample connector "$conn_pid" "http://127.0.0.1:$conn_port/process-event" "$work/post.lua"
sample forwarder "$fwd_pid" "http://127.0.0.1:$fwd_port/process-event" "$work/post-baseline.lua"

mkdir -p bench/results
PEERS=$peers_class python3 - "$work" "$(getconf CLK_TCK)" <<'PY' | tee bench/results/split.md
import collections, os, sys
work, hz = sys.argv[1], int(sys.argv[2])
KINDS = ["waking a reader", "switching", "interrupts", "other kernel", "user"]

def kind(frames):
    """frames: (symbol, dso) from the sampled instruction outwards."""
    symbols = [s for s, _ in frames]
    if any(s == "sock_def_readable" for s in symbols):
        return "waking a reader"
    if any(s in ("__schedule", "schedule") or s.startswith("finish_task_switch") for s in symbols):
        return "switching"
    if symbols and (symbols[0].startswith("irqentry_exit") or any(s.startswith("asm_sysvec") for s in symbols)):
        return "interrupts"
    if frames and "kernel" in frames[0][1]:
        return "other kernel"
    return "user"

def samples(path):
    frames = []
    for line in open(path, errors="replace"):
        if not line.strip():
            if frames:
                yield frames
            frames = []
        elif line[0] in " \t":
            parts = line.split()
            if len(parts) >= 2:
                frames.append((parts[1].split("+")[0], parts[-1]))
    if frames:
        yield frames

rows = {}
for line in open(f"{work}/totals"):
    name, requests, ticks = line.split()
    counts = collections.Counter(kind(f) for f in samples(f"{work}/{name}.script"))
    total = sum(counts.values()) or 1
    cpu_us = int(ticks) / hz * 1e6 / max(int(requests), 1)
    rows[name] = (cpu_us, {k: cpu_us * counts[k] / total for k in KINDS}, total)

print(f"CPU µs per request at 64 connections, by where it goes (perf cpu-clock samples); "
      f"peers (wrk, the simulator): {os.environ['PEERS']}\n")
print("| | " + " | ".join(KINDS) + " | all | samples |")
print("|---|" + "---|" * (len(KINDS) + 2))
for name, (cpu, parts, n) in rows.items():
    print(f"| {name} | " + " | ".join(f"{parts[k]:.1f}" for k in KINDS) + f" | {cpu:.1f} | {n} |")
if {"connector", "forwarder"} <= rows.keys():
    c, f = rows["connector"], rows["forwarder"]
    loopback = ("waking a reader", "switching", "interrupts")
    extra = sum(c[1][k] - f[1][k] for k in loopback)
    print(f"\nconnector / forwarder: {c[0] / f[0]:.2f} x; the three loopback rows cost the connector "
          f"{extra:+.1f} µs more than the forwarder; without that difference {(c[0] - extra) / f[0]:.2f} x")
PY
