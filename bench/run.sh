#!/usr/bin/env bash
# Benchmark: the connector against a plain pass-through forwarder, in one run, on loopback.
#
#   bash bench/run.sh           full run: 5 runs x 10 s per point, checks the budget (exit 1 if missed)
#   bash bench/run.sh --smoke   1 run x 2 s per point, no thresholds (CI keeps the harness working;
#                               with BENCH_PROFILE=dev it runs the debug build the tests made)
#
# Upstream: the connector's own WTL simulator (`nsps-wtl-connector simulator`), with the test
# IMSI inserted first so every `update` succeeds. Load: wrk (Debian package) POSTing the fixture
# tests/fixtures/sim-updated-open.json (one WTL update per event). Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true
if $smoke; then runs=1 duration=2 starts=3 census_seconds=1; else
  runs=${BENCH_RUNS:-5} duration=${BENCH_SECONDS:-10} starts=10 census_seconds=${BENCH_CENSUS_SECONDS:-3}
fi

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need wrk wrk

build_bench forwarder

# The simulator, the main connector (as an operator runs it, the redelivery memory off) and the
# forwarder.
start_pair
sleep 1
idle_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$conn_pid/status")

event_script "$work/post.lua"

# The baseline forwards bytes without reading them, so it is sent the very body the connector
# sends WTL for this event: the upstream then does the same work (a real update) for both.
baseline_script "$work/post-baseline.lua"

ticks_per_second=$(getconf CLK_TCK)

# load NAME URL CONNECTIONS: appends to runs.txt, per run, "name conns rps p50_ms p99_ms non2xx
# cpu_us writes switches voluntary nonvoluntary threads_ended requests", where cpu_us is the CPU time the
# connector (or the forwarder) spent per request, writes its write system calls per request
# (/proc's syscw) and switches its context switches per request (voluntary + nonvoluntary,
# summed over its threads' /proc/<pid>/task/*/status), then, for a connector, its async runtime's
# worker parks and busy µs per request (GET /metrics; "nan" for the forwarder); and to threads.txt
# one line per thread name: "name conns thread_name threads writes voluntary nonvoluntary cpu_us",
# per request.
# runtime_figures URL: "busy_seconds parks" of a connector's async runtime from its GET /metrics,
# or "- -" without a URL (the forwarder) or a readable answer (then reported as unread). The
# series it names are checked against GET /metrics by tests/monitoring/check.py.
runtime_figures() {
  [ -n "$1" ] || { echo "- -"; return; }
  { curl -sf -H "Authorization: Bearer $BENCH_TOKEN" "$1" || true; } |
    awk '$1 == "tokio_worker_busy_seconds_total" { b = $2 } $1 == "tokio_worker_parks_total" { p = $2 }
         END { print (b == "" ? "-" : b), (p == "" ? "-" : p) }'
}

run_no=0
load() {
  local name=$1 url=$2 c=$3 threads=1 out script="$work/post.lua" pid=$conn_pid before after snap
  local runtime_url="${url%/*}/metrics" runtime_before runtime_after
  [ "$c" -gt 1 ] && threads=2
  [ "$name" = baseline ] && script="$work/post-baseline.lua" pid=$fwd_pid runtime_url=""
  [ "$name" = memory_local ] && script="$work/fresh.lua" pid=$local_pid
  [ "$name" = memory_redis ] && script="$work/fresh.lua" pid=$shared_pid
  [ "$name" = otel_sink ] && pid=$otel_pid
  [ "$name" = otel_down ] && pid=$down_pid
  run_no=$((run_no + 1))
  snap="$work/snap-$name-$c-$run_no"
  runtime_before=$(runtime_figures "$runtime_url")
  before=$(cpu_ticks "$pid")
  thread_snapshot "$pid" >"$snap.before"
  out=$("${peer[@]}" wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$script" "$url")
  thread_snapshot "$pid" >"$snap.after"
  after=$(cpu_ticks "$pid")
  runtime_after=$(runtime_figures "$runtime_url")
  # Figures against an upstream that is gone would measure retries, not the connector.
  kill -0 "$sim_pid" 2>/dev/null || { echo "error: the WTL simulator ended during the load ($name)" >&2; cat "$work/sim.log" >&2; exit 1; }
  python3 - "$name" "$c" "$out" "$((after - before))" "$ticks_per_second" "$snap" "$work/threads.txt" \
    "$runtime_before" "$runtime_after" >>"$work/runs.txt" <<'PY'
import re, sys
name, conns, text, ticks, hz, snap, threads_file, runtime_before, runtime_after = sys.argv[1:10]
ticks, hz = int(ticks), int(hz)
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n if u == "ms" else n * 1000 if u == "s" else n * 60000
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
requests = max(int(re.search(r"(\d+) requests in", text).group(1)), 1)
cpu_us = ticks / hz * 1e6 / requests
def read(path):
    threads, process_writes = {}, 0
    for line in open(path):
        tid, thread, writes, vol, nonvol, cpu = line.split()
        if tid == "process":
            process_writes = int(writes)
        else:
            threads[tid] = (thread, int(writes), int(vol), int(nonvol), int(cpu))
    return threads, process_writes
before, writes_before = read(snap + ".before")
after, writes_after = read(snap + ".after")
by_name = {}
for tid, (thread, w, v, n, t) in after.items():
    _, w0, v0, n0, t0 = before.get(tid, (thread, 0, 0, 0, 0))  # a thread started during the run counts from 0
    row = by_name.setdefault(thread, [0, 0, 0, 0, 0])
    row[0] += 1; row[1] += w - w0; row[2] += v - v0; row[3] += n - n0; row[4] += t - t0
# A thread that ended during the run takes its switches with it (its writes stay in the process's count).
ended = len(set(before) - set(after))
vol = sum(r[2] for r in by_name.values())
nonvol = sum(r[3] for r in by_name.values())
with open(threads_file, "a") as f:
    for thread, (count, w, v, n, t) in sorted(by_name.items()):
        f.write(f"{name} {conns} {thread} {count} {w / requests:.4f} {v / requests:.4f} {n / requests:.4f} "
                f"{t / hz * 1e6 / requests:.2f}\n")
# The runtime's busy seconds and parks, before and after ("- -" where there is no GET /metrics).
try:
    (busy0, parks0), (busy1, parks1) = ([float(v) for v in r.split()] for r in (runtime_before, runtime_after))
    parks, busy_us = f"{(parks1 - parks0) / requests:.4f}", f"{(busy1 - busy0) * 1e6 / requests:.2f}"
except ValueError:
    parks, busy_us = "nan", "nan"
print(name, conns, rps, p50, p99, non2xx.group(1) if non2xx else 0, f"{cpu_us:.2f}",
      f"{(writes_after - writes_before) / requests:.4f}", f"{(vol + nonvol) / requests:.4f}",
      f"{vol / requests:.4f}", f"{nonvol / requests:.4f}", ended, requests, parks, busy_us)
PY
}

# The redelivery memory's cost per event, in process and shared through Redis, measured in the
# same run: two more connectors with the memory on (duplicates and per-IMSI locks), sent
# SIM/Deleted events with a fresh event id and IMSI each (a delete of an IMSI WTL does not hold
# is a success, so every event makes its one call and none waits for another).
apt_need redis-server redis-server
redis_port=$(free_port)
(cd "$work" && exec "${peer[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no) >"$work/redis.log" 2>&1 &
pids+=($!)
local_port=$(free_port) shared_port=$(free_port)
# start_connector turns the memory off; `env -u` gives it back its defaults.
memory_on=(-u EVENT_DEDUP_TTL -u STALE_EVENT_CHECK)
start_connector "$bin" "$local_port" "$work/local.log" "${memory_on[@]}"
local_pid=$started
start_connector "$bin" "$shared_port" "$work/shared.log" "${memory_on[@]}" REDIS_URL="redis://127.0.0.1:$redis_port"
shared_pid=$started
wait_http "http://127.0.0.1:$local_port/health"
wait_http "http://127.0.0.1:$shared_port/ready"

# OpenTelemetry export's cost, in the same run: the main connector's settings plus an OTLP
# endpoint, once a local sink that takes every export (200), once a collector that is down.
sink_port=$(free_port) otel_port=$(free_port) down_port=$(free_port) dead_port=$(free_port)
# The sink (bench/forwarder's bench-otlp-sink) counts the spans it is sent (into $work/spans.txt),
# so that the report shows spans per event: a processor that drops spans under load would look
# cheap. It costs little per span: it shares the two cores the exporting connector is measured on.
"${peer[@]}" "$sink" "$sink_port" "$work/spans.txt" >"$work/sink.log" 2>&1 &
pids+=($!)
for point in "otel:$otel_port:$sink_port" "down:$down_port:$dead_port"; do
  IFS=: read -r kind port collector <<<"$point"
  start_connector "$bin" "$port" "$work/$kind.log" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$collector"
  if [ "$kind" = otel ]; then otel_pid=$started; else down_pid=$started; fi
  wait_http "http://127.0.0.1:$port/health"
done
cat >"$work/fresh.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
-- Globals: setup() runs in the main state and hands each thread its own seed, and the run its
-- own tag, so event ids never repeat from one run to the next (a repeat would be a duplicate).
-- The IMSIs (MCC 001, MNC 9x) stay clear of the fixture's 00101..., which the main load updates.
n = 0
seed = 0
math.randomseed(os.time())
tag = math.random(1, 1000000000)
function setup(thread) seed = seed + 1; thread:set("seed", seed); thread:set("tag", tag) end
function request()
  n = n + 1
  local id = string.format("bench-%d-%d-%d", tag, seed, n)
  local imsi = string.format("0019%d%010d", seed, n)
  local body = string.format('{"event_id":"%s","data":{"event_type":"SIM/Deleted"},"pb_data":{"sim_info":{"imsi":"%s"}}}', id, imsi)
  return wrk.format(nil, nil, nil, body)
end
LUA

echo "load: $runs run(s) x ${duration}s per point"
: >"$work/runs.txt"
for c in 1 64; do
  for _ in $(seq 1 "$runs"); do
    load connector "http://127.0.0.1:$conn_port/process-event" "$c"
    load baseline "http://127.0.0.1:$fwd_port/process-event" "$c"
    load memory_local "http://127.0.0.1:$local_port/process-event" "$c"
    load memory_redis "http://127.0.0.1:$shared_port/process-event" "$c"
    load otel_sink "http://127.0.0.1:$otel_port/process-event" "$c"
    load otel_down "http://127.0.0.1:$down_port/process-event" "$c"
  done
done
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$conn_pid/status")
# The exporting connector flushes its last spans when stopped; then the sink's count is final.
kill -TERM "$otel_pid"
wait "$otel_pid" || true
spans_exported=$(cat "$work/spans.txt" 2>/dev/null || echo 0)

# Census, after the timed runs and not in their figures: where the connector's and the
# forwarder's system calls and context switches go, with perf (Debian's linux-perf; skipped
# when perf cannot read the kernel's tracepoints here). One more load of $census_seconds per
# point, under `perf stat` (every write-family call by its kind, per thread) and
# `perf record -a` of the scheduler's wake-ups and switches (who wakes which thread; switches
# to sleep or preempted). perf's own cost shifts these counts a little: they explain the timed
# figures above, they do not replace them.
census_events="syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg"
census_events+=",syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex"
command -v perf >/dev/null 2>&1 || apt_need perf linux-perf >/dev/null 2>&1 || true
census_ok=false
if perf stat -e "$census_events,sched:sched_waking" -- true >/dev/null 2>&1; then census_ok=true; fi
census() {
  local name=$1 pid=$2 url=$3 script=$4 c=$5 threads=1 base="$work/census-$1-$5" stat t
  [ "$c" -gt 1 ] && threads=2
  for t in /proc/"$pid"/task/*; do echo "${t##*/} $(cat "$t/comm")"; done >"$base.threads"
  perf stat --per-thread -x, -e "$census_events" -p "$pid" -o "$base.stat" &
  stat=$!
  sleep 0.3
  perf record -q -a -e sched:sched_waking,sched:sched_switch -o "$base.data" -- \
    "${peer[@]}" wrk -t"$threads" -c"$c" -d"${census_seconds}s" -s "$script" "$url" >"$base.wrk" 2>/dev/null
  kill -INT "$stat"
  wait "$stat" || true
  perf script -i "$base.data" -F pid,tid,comm,event,trace >"$base.script" 2>/dev/null
  python3 bench/census.py "$name" "$c" "$base.wrk" "$base.stat" "$base.script" "$pid" "$base.threads" "$sim_pid" \
    >>"$work/census.jsonl"
  rm -f "$base.data" "$base.script"
}
: >"$work/census.jsonl"
if $census_ok; then
  echo "census: ${census_seconds}s per point under perf"
  for c in 1 64; do
    census connector "$conn_pid" "http://127.0.0.1:$conn_port/process-event" "$work/post.lua" "$c"
    census baseline "$fwd_pid" "http://127.0.0.1:$fwd_port/process-event" "$work/post-baseline.lua" "$c"
  done
else
  echo "census skipped: perf cannot count system calls and scheduler events here"
fi

# Cold start: process spawn to the first 200 on /health, polled every millisecond.
cold=$(python3 - "$bin" "$starts" <<'PY'
import os, socket, statistics, subprocess, sys, tempfile, time
binary, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = {"PATH": os.environ.get("PATH", ""), "PORT": str(port), "API_TOKEN": "t",
           "WTL_API_URL": "http://127.0.0.1:9", "LOG_LEVEL": "ERROR"}
    start = time.perf_counter()
    p = subprocess.Popen([binary], env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = None
    while time.perf_counter() - start < 5:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if c.recv(16).startswith(b"HTTP/1.1 200"):
                ready = time.perf_counter() - start
                c.close()
                break
            c.close()
        except OSError:
            time.sleep(0.001)
    p.terminate(); p.wait()
    if ready is not None:
        times.append(ready * 1000)
print(f"{statistics.median(times):.1f}" if times else "nan")
PY
)
size_bytes=$(stat -c %s "$bin")

mkdir -p bench/results
PEERS=$peers_class python3 - "$work/runs.txt" "$idle_rss_kb" "$peak_rss_kb" "$cold" "$size_bytes" "$smoke" "$runs" "$duration" \
  "$work/threads.txt" "$work/census.jsonl" "$spans_exported" <<'PY'
import json, os, platform, statistics, sys
runs_file, idle_kb, peak_kb, cold, size, smoke, runs, duration, threads_file, census_file, spans = sys.argv[1:12]
rows = [l.split() for l in open(runs_file) if l.strip()]
thread_rows = [l.split() for l in open(threads_file) if l.strip()]
census = [json.loads(l) for l in open(census_file) if l.strip()]
def med(name, c, i):
    vals = [float(r[i]) for r in rows if r[0] == name and r[1] == c]
    return statistics.median(vals)
def med_known(name, c, i):
    """The median of a column some processes do not have ("nan"): None for those."""
    vals = [float(r[i]) for r in rows if r[0] == name and r[1] == c and len(r) > i and r[i] != "nan"]
    return statistics.median(vals) if vals else None
res = {}
for name in ("connector", "baseline", "memory_local", "memory_redis", "otel_sink", "otel_down"):
    for c in ("1", "64"):
        res[f"{name}_{c}"] = {"rps": med(name, c, 2), "p50_ms": med(name, c, 3), "p99_ms": med(name, c, 4),
                              "cpu_us_per_request": med(name, c, 6),
                              "writes_per_request": med(name, c, 7), "switches_per_request": med(name, c, 8),
                              "voluntary_per_request": med(name, c, 9), "nonvoluntary_per_request": med(name, c, 10),
                              "runtime_parks_per_request": med_known(name, c, 13),
                              "runtime_busy_us_per_request": med_known(name, c, 14),
                              "threads_ended": sum(int(r[11]) for r in rows if r[0] == name and r[1] == c),
                              "non2xx": sum(int(r[5]) for r in rows if r[0] == name and r[1] == c)}
        # By thread name: medians over the runs of each thread's writes and switches per request.
        by_thread = {}
        for r in thread_rows:
            if r[0] == name and r[1] == c:
                by_thread.setdefault(r[2], []).append(r[3:])
        res[f"{name}_{c}"]["threads"] = {
            t: {"threads": int(statistics.median(int(v[0]) for v in vals)),
                "writes": statistics.median(float(v[1]) for v in vals),
                "voluntary": statistics.median(float(v[2]) for v in vals),
                "nonvoluntary": statistics.median(float(v[3]) for v in vals),
                "cpu_us": statistics.median(float(v[4]) for v in vals)}
            for t, vals in sorted(by_thread.items())}
profile = os.environ.get("BENCH_PROFILE", "release")
binary_label = "stripped release binary" if profile == "release" else f"binary ({profile} profile: not what ships)"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
machine = f"{os.cpu_count()} cores, {cpu}, {mem_kb // 1024 // 1024} GiB, Linux {platform.release()}"
summary = {
    "machine": machine, "mode": "smoke" if smoke == "true" else "full", "runs": int(runs), "seconds": int(duration),
    "points": res, "idle_rss_mb": int(idle_kb) / 1024, "peak_rss_mb": int(peak_kb) / 1024,
    "cold_start_ms": float(cold), "binary_mb": int(size) / 1e6, "census": census, "peers_class": os.environ["PEERS"],
}
# An event makes 3 spans here: the request, the store's `admit` (the in-process memory records
# its outcome without a span) and the WTL call.
otel_events = sum(int(r[12]) for r in rows if r[0] == "otel_sink")
summary["otel_spans_per_event"] = int(spans) / max(otel_events, 1)
c64, b64 = res["connector_64"], res["baseline_64"]
c1, b1 = res["connector_1"], res["baseline_1"]
cpu_ratio = c64["cpu_us_per_request"] / max(b64["cpu_us_per_request"], 1e-9)
p50_extra_us = (c1["p50_ms"] - b1["p50_ms"]) * 1000
extra = {c: {"writes": res[f"connector_{c}"]["writes_per_request"] - res[f"baseline_{c}"]["writes_per_request"],
             "switches": res[f"connector_{c}"]["switches_per_request"] - res[f"baseline_{c}"]["switches_per_request"]}
         for c in ("1", "64")}
summary["extra_per_request"] = extra
def paired(a, b, c):
    """The median over the rounds of a's CPU per request over b's in the same round (the rows come
    in round order): within a round the two were measured at most four loads apart, so the host's
    drift over the run, which moves both, cancels. Reported beside the budget's ratios of medians."""
    cpu = lambda name: [float(r[6]) for r in rows if r[0] == name and r[1] == c]
    return statistics.median(x / max(y, 1e-9) for x, y in zip(cpu(a), cpu(b), strict=True))
summary["paired_ratios"] = {f"{label}_{c}": paired(a, b, c) for c in ("1", "64")
                            for label, a, b in (("cpu", "connector", "baseline"), ("export", "otel_sink", "connector"))}
checks = [
    ("CPU per event at 64 connections <= 3x baseline", cpu_ratio, "<= 3", cpu_ratio <= 3),
    ("p50 at 1 connection <= baseline + 100 us (extra us)", p50_extra_us, "<= 100", p50_extra_us <= 100),
    ("extra write syscalls per event at 1 connection <= 0.25", extra["1"]["writes"], "<= 0.25", extra["1"]["writes"] <= 0.25),
    ("extra write syscalls per event at 64 connections <= 0.25", extra["64"]["writes"], "<= 0.25", extra["64"]["writes"] <= 0.25),
    ("extra context switches per event at 1 connection <= 0.3", extra["1"]["switches"], "<= 0.3", extra["1"]["switches"] <= 0.3),
    ("extra context switches per event at 64 connections <= 0.3", extra["64"]["switches"], "<= 0.3", extra["64"]["switches"] <= 0.3),
    ("p99 at 64 connections <= 1.5x baseline", c64["p99_ms"] / b64["p99_ms"], "<= 1.5", c64["p99_ms"] <= 1.5 * b64["p99_ms"]),
    ("idle RSS <= 10 MB", summary["idle_rss_mb"], "<= 10", summary["idle_rss_mb"] <= 10),
    ("peak RSS <= 40 MB", summary["peak_rss_mb"], "<= 40", summary["peak_rss_mb"] <= 40),
    ("ready <= 50 ms after start", summary["cold_start_ms"], "<= 50", summary["cold_start_ms"] <= 50),
    ("binary <= 15 MB", summary["binary_mb"], "<= 15", summary["binary_mb"] <= 15),
    ("CPU per event at 64 connections, export on <= 1.25x off", res["otel_sink_64"]["cpu_us_per_request"] / c64["cpu_us_per_request"],
     "<= 1.25", res["otel_sink_64"]["cpu_us_per_request"] <= 1.25 * c64["cpu_us_per_request"]),
    ("p50 at 1 connection, collector down <= export off + 100 us (extra us)",
     (res["otel_down_1"]["p50_ms"] - c1["p50_ms"]) * 1000, "<= 100", (res["otel_down_1"]["p50_ms"] - c1["p50_ms"]) * 1000 <= 100),
]
summary["budget"] = [{"check": n, "value": round(v, 3), "limit": l, "ok": ok} for n, v, l, ok in checks]
lines = [f"Machine: {machine}", f"Mode: {summary['mode']}, {profile} build, medians of {runs} run(s) of {duration} s per point",
         f"Peers (wrk, the simulator, Redis, the OTLP sink): {summary['peers_class']}", "",
         "| load | connector req/s | baseline req/s | ratio | connector p50 / p99 (ms) | baseline p50 / p99 (ms) | CPU µs per request, connector / baseline |",
         "|---|---|---|---|---|---|---|"]
for c in ("1", "64"):
    a, b = res[f"connector_{c}"], res[f"baseline_{c}"]
    lines.append(f"| {c} connection{'s' if c != '1' else ''} | {a['rps']:.0f} | {b['rps']:.0f} | {a['rps'] / b['rps']:.2f} | "
                 f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
                 f"{a['cpu_us_per_request']:.1f} / {b['cpu_us_per_request']:.1f} |")
lines += ["", "Write system calls (/proc syscw: write, writev, pwrite) and context switches (voluntary + nonvoluntary, "
          "summed over the threads' /proc/<pid>/task/*/status) per request; extra = connector - baseline",
          "", "| load | writes connector / baseline | extra writes | switches connector / baseline | extra switches | voluntary / nonvoluntary, connector | voluntary / nonvoluntary, baseline |",
          "|---|---|---|---|---|---|---|"]
for c in ("1", "64"):
    a, b = res[f"connector_{c}"], res[f"baseline_{c}"]
    lines.append(f"| {c} connection{'s' if c != '1' else ''} | {a['writes_per_request']:.2f} / {b['writes_per_request']:.2f} | "
                 f"{extra[c]['writes']:+.2f} | {a['switches_per_request']:.2f} / {b['switches_per_request']:.2f} | "
                 f"{extra[c]['switches']:+.2f} | {a['voluntary_per_request']:.2f} / {a['nonvoluntary_per_request']:.2f} | "
                 f"{b['voluntary_per_request']:.2f} / {b['nonvoluntary_per_request']:.2f} |")
lines += ["", "By thread name, per request (threads of that name): writes, voluntary / nonvoluntary switches, "
          "CPU µs (/proc/<pid>/task/*/stat, clock ticks)",
          "", "| load | process | thread | writes | voluntary | nonvoluntary | CPU µs |", "|---|---|---|---|---|---|---|"]
for c in ("1", "64"):
    for name, shown in (("connector", "connector"), ("baseline", "forwarder")):
        for t, v in res[f"{name}_{c}"]["threads"].items():
            lines.append(f"| {c} | {shown} | {t} (x{v['threads']}) | {v['writes']:.3f} | {v['voluntary']:.3f} | "
                         f"{v['nonvoluntary']:.3f} | {v['cpu_us']:.1f} |")
lines += ["", "The connectors' async runtime (GET /metrics), per request: worker parks (a worker with no task "
          "to run goes to sleep; the next task wakes it) and the workers' busy time (wall time spent running tasks: "
          "a worker preempted in the middle of one still counts as busy), beside the process's CPU time",
          "", "| load | connector | worker parks | busy µs | CPU µs |", "|---|---|---|---|---|"]
for c in ("1", "64"):
    for name in ("connector", "memory_local", "memory_redis", "otel_sink", "otel_down"):
        p = res[f"{name}_{c}"]
        if p["runtime_parks_per_request"] is None:
            lines.append(f"| {c} | {name} | unread (GET /metrics did not answer) | | {p['cpu_us_per_request']:.1f} |")
        else:
            lines.append(f"| {c} | {name} | {p['runtime_parks_per_request']:.3f} | "
                         f"{p['runtime_busy_us_per_request']:.1f} | {p['cpu_us_per_request']:.1f} |")
ended = sum(p["threads_ended"] for p in res.values())
if ended:
    lines += ["", f"note: {ended} thread(s) ended during a run; their context switches are not counted"]
lines += ["", "Redelivery memory on (fresh event id and IMSI per event, SIM/Deleted): in process and shared through Redis",
          "", "| load | in-process req/s | Redis req/s | in-process p50 (ms) | Redis p50 (ms) | CPU µs per request, in-process / Redis | Redis cost per event | writes / switches per request, in-process / Redis |",
          "|---|---|---|---|---|---|---|---|"]
for c in ("1", "64"):
    a, b = res[f"memory_local_{c}"], res[f"memory_redis_{c}"]
    lines.append(f"| {c} connection{'s' if c != '1' else ''} | {a['rps']:.0f} | {b['rps']:.0f} | {a['p50_ms']:.2f} | {b['p50_ms']:.2f} | "
                 f"{a['cpu_us_per_request']:.1f} / {b['cpu_us_per_request']:.1f} | "
                 f"+{(b['p50_ms'] - a['p50_ms']) * 1000:.0f} µs p50, +{b['cpu_us_per_request'] - a['cpu_us_per_request']:.1f} µs CPU | "
                 f"{a['writes_per_request']:.2f} / {a['switches_per_request']:.2f}, {b['writes_per_request']:.2f} / {b['switches_per_request']:.2f} |")
lines += ["", "OpenTelemetry export (the main load): off / on, to a local OTLP sink / on, the collector down",
          "", "| load | p50 ms off / sink / down | CPU µs per request off / sink / down | CPU with export on |",
          "|---|---|---|---|"]
for c in ("1", "64"):
    off, on, down = res[f"connector_{c}"], res[f"otel_sink_{c}"], res[f"otel_down_{c}"]
    lines.append(f"| {c} connection{'s' if c != '1' else ''} | {off['p50_ms']:.2f} / {on['p50_ms']:.2f} / {down['p50_ms']:.2f} | "
                 f"{off['cpu_us_per_request']:.1f} / {on['cpu_us_per_request']:.1f} / {down['cpu_us_per_request']:.1f} | "
                 f"{on['cpu_us_per_request'] / max(off['cpu_us_per_request'], 1e-9):.2f}x |")
lines += ["", f"Spans the sink received per event sent to the exporting connector: {summary['otel_spans_per_event']:.2f} "
          "(fewer than the spans an event makes means spans were dropped)"]
pr = summary["paired_ratios"]
lines += ["", "The same ratios as medians of the rounds' ratios (each pair measured in one round; the budget "
          "lines below take the ratio of the medians): CPU per event, connector / forwarder "
          f"{pr['cpu_1']:.2f} at 1 connection, {pr['cpu_64']:.2f} at 64; export on / off "
          f"{pr['export_1']:.2f} at 1 connection, {pr['export_64']:.2f} at 64"]
if census:
    lines += ["", "Census (perf, one more untimed load per point): write-family calls by kind and thread, per request",
              "", "| load | process | thread | write | writev | sendto | sendmsg | futex | epoll_wait |", "|---|---|---|---|---|---|---|---|---|"]
    for k in census:
        for t, v in k["syscalls"].items():
            lines.append(f"| {k['connections']} | {'forwarder' if k['name'] == 'baseline' else k['name']} | {t} | "
                         + " | ".join(f"{v.get(x, 0):.3f}" for x in ("write", "writev", "sendto", "sendmsg", "futex", "epoll_wait")) + " |")
    lines += ["", "Census: who wakes the process's threads, and how they leave the CPU, per request",
              "", "| load | process | waker -> thread | per request |", "|---|---|---|---|"]
    for k in census:
        who = "forwarder" if k["name"] == "baseline" else k["name"]
        for w in k["wakeups"]:
            lines.append(f"| {k['connections']} | {who} | {w['waker']} -> {w['thread']} | {w['per_request']:.3f} |")
        for sw in k["switches"]:
            lines.append(f"| {k['connections']} | {who} | {sw['thread']} {sw['how']} | {sw['per_request']:.3f} |")
lines += ["", "| measure | value |", "|---|---|",
          f"| idle RSS after start-up | {summary['idle_rss_mb']:.1f} MB |",
          f"| peak RSS under load | {summary['peak_rss_mb']:.1f} MB |",
          f"| start to first 200 on /health (median) | {summary['cold_start_ms']:.1f} ms |",
          f"| {binary_label} | {summary['binary_mb']:.1f} MB |", "",
          "| budget | value | limit | |", "|---|---|---|---|"]
lines += [f"| {n} | {v:.2f} | {l} | {'ok' if ok else 'MISSED'} |" for n, v, l, ok in checks]
errors = sum(p["non2xx"] for p in res.values())
if errors:
    lines += ["", f"warning: {errors} non-2xx answers during the load"]
text = "\n".join(lines) + "\n"
open("bench/results/latest.md", "w").write(text)
json.dump(summary, open("bench/results/latest.json", "w"), indent=2)
print(text)
missed = [n for n, _, _, ok in checks if not ok]
if smoke != "true" and (missed or errors):
    print("budget missed: " + ", ".join(missed) if missed else "load produced errors", file=sys.stderr)
    sys.exit(1)
PY
