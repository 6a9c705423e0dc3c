#!/usr/bin/env bash
# Memory: what the redelivery memory costs, in Redis and in process, and the connector's RSS
# after a mixed soak. Every figure comes from real events sent to the connector's HTTP API, which
# calls the connector's own WTL simulator (`nsps-wtl-connector simulator`).
#
#   bash bench/memory.sh                       the three parts below, full sizes
#   bash bench/memory.sh --smoke               the three parts, small sizes, no thresholds (CI)
#   bash bench/memory.sh --redis [--smoke]     Redis: bytes per IMSI and per key kind
#   bash bench/memory.sh --tables [--smoke]    in process: bytes per table entry at the caps
#   bash bench/memory.sh --soak [--smoke]      RSS after a mixed soak
#
# Sizes: BENCH_IMSIS (Redis: distinct IMSIs, 1 000 000; smoke 20 000), BENCH_TABLE_EVENTS
# (in process: events sent, 1.5 x the cap; the cap is EVENT_DEDUP_MAX's default, 100 000, or
# 20 000 in smoke), BENCH_SOAK_SECONDS (360; smoke 15), BENCH_SOAK_IMSIS (200 000; smoke 4 000),
# BENCH_SOAK_CONNECTIONS (32). Results: bench/results/{redis-memory,tables,soak}.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

smoke=false parts=()
for arg in "$@"; do
  case $arg in
    --smoke) smoke=true ;;
    --redis | --tables | --soak) parts+=("${arg#--}") ;;
    *) echo "usage: bash bench/memory.sh [--redis] [--tables] [--soak] [--smoke]" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=(redis tables soak)
if $smoke; then
  imsis=${BENCH_IMSIS:-20000} cap=20000 soak_seconds=${BENCH_SOAK_SECONDS:-15} soak_imsis=${BENCH_SOAK_IMSIS:-4000}
else
  imsis=${BENCH_IMSIS:-1000000} cap=100000 soak_seconds=${BENCH_SOAK_SECONDS:-360} soak_imsis=${BENCH_SOAK_IMSIS:-200000}
fi
table_events=${BENCH_TABLE_EVENTS:-$((cap * 3 / 2))}
soak_connections=${BENCH_SOAK_CONNECTIONS:-32}

# shellcheck source=bench/lib.sh
. bench/lib.sh
apt_need wrk wrk

build_bench connector
start_simulator "$bin"
mkdir -p bench/results

# connector NAME VAR=value...: starts a connector with the benchmark's token and upstream plus
# the settings given; sets $port and $pid. It logs at INFO as in production, to /dev/null (a soak
# would write gigabytes; the answers are counted by the load scripts instead).
connector() {
  local name=$1
  shift
  port=$(free_port)
  (cd "$work" && exec env PORT="$port" API_TOKEN="$BENCH_TOKEN" WTL_API_URL="http://127.0.0.1:$sim_port" \
    LOG_LEVEL=INFO "$@" "$bin") >/dev/null 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$port/ready" 1000
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The fill: SIM/Deleted events, each with a UUID-shaped event id and a 15-digit IMSI of its own
# (a delete of an IMSI WTL does not hold is a success, so each one is recorded: its event id as
# processed, its IMSI's time as applied). Each wrk thread sends exactly its quota, then asks
# /health until it is stopped; it counts the answers and leaves them in a marker file.
cat >"$work/fill.lua" <<'LUA'
local quota = tonumber(os.getenv("FILL_QUOTA"))
local markers = os.getenv("FILL_MARKERS")
local tag = tonumber(os.getenv("FILL_TAG"))
local event = '{"event_id":"%08x-%04x-4000-8000-%012x","data":{"event_type":"SIM/Deleted"},'
  .. '"pb_data":{"sim_info":{"imsi":"001%02d%010d"}},'
  .. '"created_at":"2025-03-12T18:00:00+00:00","updated_at":"2025-03-12T18:00:01+00:00"}'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
seed = 0
function setup(thread) seed = seed + 1; thread:set("seed", seed) end
sent, ok, failed, stopped, verified = 0, 0, 0, false, false
function request()
  -- wrk asks the first thread's script for one request before the run, to check it, and never
  -- sends it: that call gets /health, so that no event is counted as sent that was not.
  if seed == 1 and not verified then verified = true; return wrk.format("GET", "/health") end
  if sent >= quota then return wrk.format("GET", "/health") end
  sent = sent + 1
  return wrk.format(nil, nil, nil, string.format(event, tag, seed, sent, seed, sent))
end
function response(status)
  if status == 200 then return end -- /health, after the quota
  if status == 202 then ok = ok + 1 else failed = failed + 1 end
  if not stopped and ok + failed >= quota then
    stopped = true
    local f = io.open(markers .. "/" .. seed, "w")
    f:write(ok, " ", failed, "\n")
    f:close()
    wrk.thread:stop()
  end
end
LUA

# fill NAME PORT PID COUNT: sends COUNT distinct events at 64 connections (2 wrk threads) and
# waits for every answer (at most COUNT/200 + 300 s); prints "answered_202 other seconds".
fill() {
  local name=$1 port=$2 target=$3 count=$4 threads=2 markers="$work/markers-$1" w start
  mkdir -p "$markers"
  start=$(date +%s.%N)
  FILL_QUOTA=$((count / threads)) FILL_MARKERS=$markers FILL_TAG=$((RANDOM * 32768 + RANDOM)) \
    wrk -t"$threads" -c64 -d"$((count / 200 + 300))s" -s "$work/fill.lua" "http://127.0.0.1:$port/process-event" >"$work/$name.wrk" 2>&1 &
  w=$!
  while [ "$(find "$markers" -type f | wc -l)" -lt "$threads" ]; do
    kill -0 "$w" 2>/dev/null || { echo "error: wrk ended early ($name)" >&2; cat "$work/$name.wrk" >&2; return 1; }
    kill -0 "$target" 2>/dev/null || { echo "error: the connector ended ($name)" >&2; cat "$work/$name.err" >&2; return 1; }
    kill -0 "$sim_pid" 2>/dev/null || { echo "error: the WTL simulator ended ($name)" >&2; cat "$work/sim.log" >&2; return 1; }
    sleep 0.2
  done
  kill -INT "$w"
  wait "$w" || true
  cat "$markers"/* | awk -v s="$start" -v e="$(date +%s.%N)" '{ok += $1; bad += $2} END {printf "%d %d %.1f\n", ok, bad, e - s}'
}

# ---------------------------------------------------------------------------------------------
# Redis: the shared memory's keys for BENCH_IMSIS distinct IMSIs, written by the connector
# through real events, measured with INFO memory on a real redis-server (Debian's package). Two
# phases on the same server, emptied in between: the stale-event guard alone (EVENT_DEDUP_TTL=0:
# `applied:<imsi>` keys only), then the defaults (duplicate detection too: one `done:<event_id>`
# per event beside it). The difference is what the event ids cost.
redis_part() {
  apt_need redis-server redis-server
  local redis_port phase settings result
  redis_port=$(free_port)
  (cd "$work" && exec redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no) >"$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$redis_port" INFO server | tr -d '\r' | awk -F: '$1 == "redis_version" {print $2}' >"$work/redis.version"
  : >"$work/redis.jsonl"
  for phase in guard defaults; do
    redis-cli -p "$redis_port" FLUSHALL SYNC >/dev/null
    settings=(STALE_EVENT_CHECK=true "REDIS_URL=redis://127.0.0.1:$redis_port")
    [ "$phase" = guard ] && settings+=(EVENT_DEDUP_TTL=0)
    connector "redis-$phase" "${settings[@]}"
    sleep 0.5
    redis-cli -p "$redis_port" INFO memory | tr -d '\r' >"$work/redis-$phase.before"
    redis-cli -p "$redis_port" DBSIZE >"$work/redis-$phase.dbsize-before"
    echo "redis, $phase: $imsis events for distinct IMSIs..."
    result=$(fill "redis-$phase" "$port" "$pid" "$imsis")
    sleep 1
    redis-cli -p "$redis_port" INFO memory | tr -d '\r' >"$work/redis-$phase.after"
    redis-cli -p "$redis_port" DBSIZE >"$work/redis-$phase.dbsize-after"
    redis-cli -p "$redis_port" MEMORY STATS | tr -d '\r' >"$work/redis-$phase.stats"
    # Every key, counted by kind (`<prefix><kind>:<id>`), and the first 1 000 of each kind (in
    # SCAN's hash order, so a spread sample) sized with MEMORY USAGE.
    redis-cli -p "$redis_port" --scan >"$work/redis-$phase.keys"
    awk -F: '{n[$2]++; if (n[$2] <= 1000) print "MEMORY USAGE " $0 " SAMPLES 0"}' "$work/redis-$phase.keys" |
      redis-cli -p "$redis_port" >"$work/redis-$phase.usage"
    awk -F: 'NR <= 5000 {n[$2]++; if (n[$2] <= 1000) print "PTTL " $0}' "$work/redis-$phase.keys" |
      redis-cli -p "$redis_port" >"$work/redis-$phase.pttl"
    python3 - "$phase" "$work/redis-$phase" "$imsis" "$result" >>"$work/redis.jsonl" <<'PY'
import collections, json, sys
phase, base, sent, result = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
imsis = int(result[0])  # each event answered 202 recorded its IMSI
def info(path):
    return dict(l.split(":", 1) for l in open(path).read().splitlines() if ":" in l and not l.startswith("#"))
before, after = info(base + ".before"), info(base + ".after")
# MEMORY STATS, flattened by redis-cli one element a line: a name, then its value.
stats_lines = open(base + ".stats").read().split("\n")
stats = {l: stats_lines[i + 1] for i, l in enumerate(stats_lines[:-1]) if l.startswith("overhead.hashtable.")}
keys = [l for l in open(base + ".keys").read().split("\n") if l]
kinds = collections.Counter(k.split(":")[1] for k in keys)
usage = [int(v) for v in open(base + ".usage").read().split()]
# The usage answers are in the order of the sample: the first 1 000 keys of each kind, in key order.
per_kind, seen, i = collections.defaultdict(list), collections.Counter(), 0
for k in keys:
    kind = k.split(":")[1]
    seen[kind] += 1
    if seen[kind] <= 1000:
        per_kind[kind].append(usage[i]); i += 1
pttl = [int(v) for v in open(base + ".pttl").read().split()]
delta = int(after["used_memory"]) - int(before["used_memory"])
db_after, db_before = int(open(base + ".dbsize-after").read()), int(open(base + ".dbsize-before").read())
key_len = {kind: round(sum(len(k) for k in keys if k.split(":")[1] == kind) / n, 1) for kind, n in kinds.items()}
print(json.dumps({
    "phase": phase, "events_sent": sent, "imsis": imsis, "answered_202": int(result[0]), "other_answers": int(result[1]), "seconds": float(result[2]),
    "used_memory_before": int(before["used_memory"]), "used_memory_after": int(after["used_memory"]),
    "used_memory_delta": delta, "used_memory_rss_after": int(after["used_memory_rss"]),
    "used_memory_dataset_after": int(after["used_memory_dataset"]), "used_memory_overhead_after": int(after["used_memory_overhead"]),
    "hashtable_main": int(stats.get("overhead.hashtable.main", 0)), "hashtable_expires": int(stats.get("overhead.hashtable.expires", 0)),
    "keys": db_after - db_before, "keys_by_kind": dict(kinds), "key_length_by_kind": key_len,
    "memory_usage_mean_by_kind": {k: round(sum(v) / len(v), 1) for k, v in per_kind.items()},
    "keys_with_ttl_in_sample": sum(1 for t in pttl if t > 0), "sample_pttl": len(pttl),
    "bytes_per_imsi": round(delta / imsis, 1), "bytes_per_key": round(delta / max(db_after - db_before, 1), 1),
}))
PY
    stop "$pid"
  done
  python3 - "$work/redis.jsonl" "$(cat "$work/redis.version")" "$smoke" <<'PY'
import json, sys
phases = {p["phase"]: p for p in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
version, smoke = sys.argv[2], sys.argv[3] == "true"
g, d = phases["guard"], phases["defaults"]
n = g["imsis"]
per_event_id = (d["used_memory_delta"] - g["used_memory_delta"]) / n
lines = [f"Redis {version} (redis-server, no persistence), {n} distinct IMSIs, one SIM/Deleted event each, through the connector's HTTP API",
         "", "| phase | keys by kind | used_memory growth | bytes per IMSI | bytes per key | hash tables (main + expires) | answers 202 / other | events/s |",
         "|---|---|---|---|---|---|---|---|"]
for p in (g, d):
    shown = "guard only (EVENT_DEDUP_TTL=0)" if p["phase"] == "guard" else "defaults (dedup 600 s, stale 35 days)"
    lines.append(f"| {shown} | {', '.join(f'{k} {v}' for k, v in sorted(p['keys_by_kind'].items()))} | "
                 f"{p['used_memory_delta'] / 1e6:.1f} MB | {p['bytes_per_imsi']:.1f} | {p['bytes_per_key']:.1f} | "
                 f"{(p['hashtable_main'] + p['hashtable_expires']) / 1e6:.1f} MB | {p['answered_202']} / {p['other_answers']} | "
                 f"{p['imsis'] / max(p['seconds'], 1e-9):.0f} |")
lines += ["", "| key kind (defaults) | keys | key length (bytes) | MEMORY USAGE, mean of up to 1 000 keys (bytes) |", "|---|---|---|---|"]
for kind in sorted(d["keys_by_kind"]):
    lines.append(f"| {kind} | {d['keys_by_kind'][kind]} | {d['key_length_by_kind'][kind]} | {d['memory_usage_mean_by_kind'][kind]} |")
lines += ["", f"Keys with a time to live: {d['keys_with_ttl_in_sample']} of {d['sample_pttl']} sampled."]
lines += ["", "| figure | value |", "|---|---|",
          f"| stale-event guard (`applied:<imsi>`), bytes per IMSI | {g['bytes_per_imsi']:.1f} |",
          f"| an event id (`done:<event_id>`), bytes each (defaults - guard) | {per_event_id:.1f} |",
          f"| 10 million IMSIs within STALE_EVENT_TTL | {g['bytes_per_imsi'] * 10e6 / 1e9:.2f} GB |",
          f"| 1 million event ids within EVENT_DEDUP_TTL | {per_event_id * 1e6 / 1e6:.0f} MB |",
          "",
          "used_memory is Redis's own allocation count (INFO memory), after minus before each phase; "
          "MEMORY USAGE counts a key, its value and its entry but not the expires table or the hash "
          "tables' bucket arrays, which the used_memory growth includes."]
text = "\n".join(lines) + "\n"
open("bench/results/redis-memory.md", "w").write(text)
json.dump({"redis_version": version, "smoke": smoke, "phases": phases, "bytes_per_imsi_guard": g["bytes_per_imsi"],
           "bytes_per_event_id": round(per_event_id, 1)}, open("bench/results/redis-memory.json", "w"), indent=2)
print(text)
PY
}

# ---------------------------------------------------------------------------------------------
# In process: two connectors side by side, one with the redelivery memory at its defaults (both
# tables capped at EVENT_DEDUP_MAX), one with it off, sent the same BENCH_TABLE_EVENTS distinct
# events (more than the cap, so both tables end full). Bytes per entry two ways: (RSS after −
# RSS idle) / entries, and (RSS after − the memory-off connector's RSS after the same events)
# / entries, which leaves out what the traffic itself leaves behind (allocator pages, buffers).
tables_part() {
  local on_pid on_port off_pid off_port on_idle off_idle on_result off_result
  local on_settings=()
  $smoke && on_settings+=("EVENT_DEDUP_MAX=$cap")
  connector tables-on "${on_settings[@]}"
  on_pid=$pid on_port=$port
  connector tables-off EVENT_DEDUP_TTL=0 STALE_EVENT_CHECK=false
  off_pid=$pid off_port=$port
  sleep 1
  on_idle=$(rss_kb "$on_pid") off_idle=$(rss_kb "$off_pid")
  echo "in process: $table_events distinct events to each connector (cap $cap)..."
  on_result=$(fill tables-on "$on_port" "$on_pid" "$table_events")
  off_result=$(fill tables-off "$off_port" "$off_pid" "$table_events")
  sleep 2
  python3 - "$cap" "$table_events" "$on_idle" "$(rss_kb "$on_pid")" "$(hwm_kb "$on_pid")" "$off_idle" \
    "$(rss_kb "$off_pid")" "$(hwm_kb "$off_pid")" "$on_result" "$off_result" "$smoke" <<'PY'
import json, sys
cap, events, on_idle, on_after, on_hwm, off_idle, off_after, off_hwm = map(int, sys.argv[1:9])
on_result, off_result, smoke = sys.argv[9].split(), sys.argv[10].split(), sys.argv[11] == "true"
ok = int(on_result[0])
entries = 2 * min(ok, cap)  # the processed event ids and the IMSIs' times, each table at most the cap
per_idle = (on_after - on_idle) * 1024 / max(entries, 1)
per_off = (on_after - off_after) * 1024 / max(entries, 1)
r = {"cap": cap, "events": events, "answered_202": ok, "other_answers": int(on_result[1]), "entries": entries,
     "rss_kb": {"on_idle": on_idle, "on_after": on_after, "on_peak": on_hwm, "off_idle": off_idle, "off_after": off_after, "off_peak": off_hwm},
     "bytes_per_entry_vs_idle": round(per_idle, 1), "bytes_per_entry_vs_memory_off": round(per_off, 1), "smoke": smoke,
     "events_per_second": round(events / max(float(on_result[2]), 1e-9))}
lines = [f"In-process redelivery memory: {events} distinct SIM/Deleted events (cap {cap} per table, so {entries} entries: "
         f"{min(ok, cap)} event ids + {min(ok, cap)} IMSIs); {ok} answered 202, {int(on_result[1])} otherwise",
         "", "| connector | RSS idle | RSS after the events | peak RSS |", "|---|---|---|---|",
         f"| memory on (defaults) | {on_idle / 1024:.1f} MB | {on_after / 1024:.1f} MB | {on_hwm / 1024:.1f} MB |",
         f"| memory off (EVENT_DEDUP_TTL=0, STALE_EVENT_CHECK=false) | {off_idle / 1024:.1f} MB | {off_after / 1024:.1f} MB | {off_hwm / 1024:.1f} MB |",
         "", "| bytes per entry | value |", "|---|---|",
         f"| (RSS after - RSS idle) / entries | {per_idle:.0f} |",
         f"| (RSS after - memory-off RSS after the same events) / entries | {per_off:.0f} |"]
text = "\n".join(lines) + "\n"
open("bench/results/tables.md", "w").write(text)
json.dump(r, open("bench/results/tables.json", "w"), indent=2)
print(text)
PY
  stop "$on_pid"
  stop "$off_pid"
}

# ---------------------------------------------------------------------------------------------
# Soak: the connector at its defaults (in-process memory on) under a mix for BENCH_SOAK_SECONDS
# at BENCH_SOAK_CONNECTIONS: per pair of IMSIs a and b (BENCH_SOAK_IMSIS of them, split between
# the wrk threads), in sweeps over all pairs, step by step: created a, created b, updated a, the
# same update again (a duplicate), a replaced by b, updated b, deleted a, deleted b; and in the
# same sweeps an update of an IMSI WTL does not hold (404), a delete of one (a success), a
# malformed body and a wrong token. Event times move forward per thread. RSS is sampled along.
soak_part() {
  local idle fds_idle threads_idle w samples=() every i
  connector soak
  sleep 1
  idle=$(rss_kb "$pid")
  fds_idle=$(find "/proc/$pid/fd" -mindepth 1 | wc -l)
  threads_idle=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)
  cat >"$work/soak.lua" <<LUA
local fixtures = "$root/tests/fixtures/"
local pairs_per_thread = math.max(1, math.floor($soak_imsis / 4))
LUA
  cat >>"$work/soak.lua" <<'LUA'
-- A fixture with its event id, IMSIs and event time replaced by @1@, @2@, ...
local function template(file, literals)
  local f = assert(io.open(fixtures .. file))
  local text = f:read("*a")
  f:close()
  for i, literal in ipairs(literals) do
    local out, from = {}, 1
    while true do
      local a, b = text:find(literal, from, true)
      if not a then break end
      out[#out + 1] = text:sub(from, a - 1) .. "@" .. i .. "@"
      from = b + 1
    end
    assert(#out > 0, literal)
    text = table.concat(out) .. text:sub(from)
  end
  return text
end
local created = template("sim-created.json", {"a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d", "001010000020350", "2025-03-12T17:00:01+00:00"})
local updated = template("sim-updated-open.json", {"3e84c79f-ab6f-4546-8e27-0b6ab866f1fb", "001010000020349", "2025-03-12T16:47:36.585885+00:00"})
local deleted = template("sim-deleted.json", {"b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "001010000020350", "2025-03-12T18:00:01+00:00"})
local replaced = template("sim-replaced.json", {"d4c3b2a1-f6e5-4d7c-9b8a-7f6e5d4c3b2a", "001010000020351", "001010000020349", "2025-03-12T16:47:36.585885+00:00"})
local good = {["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"), ["Content-Type"] = "application/json"}
local wrong = {["Authorization"] = "Bearer not-the-token", ["Content-Type"] = "application/json"}
local base = os.time() - 86400
seed, n, tag = 0, 0, 0
statuses, nonjson = {}, 0
threads = {}
function setup(thread)
  seed = seed + 1
  thread:set("seed", seed)
  thread:set("tag", math.random(0, 2 ^ 31))
  table.insert(threads, thread)
end
local function id(k) return string.format("%08x-%04x-4000-8000-%012x", tag, seed, k) end
local function stamp(k)
  return os.date("!%Y-%m-%dT%H:%M:%S", base + math.floor(k / 1000)) .. string.format(".%03d000+00:00", k % 1000)
end
local function imsi(kind, i) return string.format("001%02d%d%09d", seed, kind, i) end
local function fill(t, values) return (t:gsub("@(%d)@", values)) end
function request()
  n = n + 1
  local P = pairs_per_thread
  local i, step = n % P, math.floor(n / P) % 12
  local a, b = imsi(0, i), imsi(1, i)
  local body
  if step == 0 then body = fill(created, {["1"] = id(n), ["2"] = a, ["3"] = stamp(n)})
  elseif step == 1 then body = fill(created, {["1"] = id(n), ["2"] = b, ["3"] = stamp(n)})
  elseif step == 2 then body = fill(updated, {["1"] = id(n), ["2"] = a, ["3"] = stamp(n)})
  elseif step == 3 then body = fill(updated, {["1"] = id(n - P), ["2"] = a, ["3"] = stamp(n - P)}) -- the same event again
  elseif step == 4 then body = fill(replaced, {["1"] = id(n), ["2"] = b, ["3"] = a, ["4"] = stamp(n)})
  elseif step == 5 then body = fill(updated, {["1"] = id(n), ["2"] = b, ["3"] = stamp(n)})
  elseif step == 6 then body = fill(deleted, {["1"] = id(n), ["2"] = a, ["3"] = stamp(n)})
  elseif step == 7 then body = fill(deleted, {["1"] = id(n), ["2"] = b, ["3"] = stamp(n)})
  elseif step == 8 then body = fill(updated, {["1"] = id(n), ["2"] = imsi(2, n), ["3"] = stamp(n)}) -- unknown to WTL
  elseif step == 9 then body = fill(deleted, {["1"] = id(n), ["2"] = imsi(3, n), ["3"] = stamp(n)})
  elseif step == 10 then
    body = fill(updated, {["1"] = id(n), ["2"] = a, ["3"] = stamp(n)})
    body = body:sub(1, math.floor(#body / 2)) -- malformed
  else
    return wrk.format("POST", nil, wrong, fill(updated, {["1"] = id(n), ["2"] = a, ["3"] = stamp(n)}))
  end
  return wrk.format("POST", nil, good, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if not body:match("^%s*{") then nonjson = nonjson + 1 end
end
function done()
  local total, bad = {}, 0
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + count end
    bad = bad + t:get("nonjson")
  end
  for status, count in pairs(total) do io.write("status ", status, " ", count, "\n") end
  io.write("nonjson ", bad, "\n")
end
LUA
  echo "soak: ${soak_seconds}s at $soak_connections connections, $soak_imsis IMSIs..."
  wrk -t2 -c"$soak_connections" -d"${soak_seconds}s" -s "$work/soak.lua" "http://127.0.0.1:$port/process-event" >"$work/soak.wrk" 2>&1 &
  w=$!
  every=$(((soak_seconds + 11) / 12))
  for i in $(seq 1 12); do
    sleep "$every"
    kill -0 "$w" 2>/dev/null || break
    samples+=("$((i * every)):$(rss_kb "$pid")")
  done
  wait "$w" || true
  sleep 1
  python3 - "$work/soak.wrk" "$soak_seconds" "$soak_connections" "$soak_imsis" "$idle" "$(rss_kb "$pid")" "$(hwm_kb "$pid")" \
    "$fds_idle" "$(find "/proc/$pid/fd" -mindepth 1 | wc -l)" "$threads_idle" "$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)" \
    "$smoke" "${samples[@]}" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
seconds, conns, imsis, idle, end, peak, fds0, fds1, th0, th1 = map(int, sys.argv[2:12])
smoke, samples = sys.argv[12] == "true", [tuple(map(int, s.split(":"))) for s in sys.argv[13:]]
requests = int(re.search(r"(\d+) requests in", text).group(1))
statuses = {int(s): int(c) for s, c in re.findall(r"^status (\d+) (\d+)$", text, re.M)}
nonjson = int(re.search(r"^nonjson (\d+)$", text, re.M).group(1))
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()))) if errors else {}
r = {"seconds": seconds, "connections": conns, "imsis": imsis, "requests": requests, "statuses": statuses,
     "non_json_answers": nonjson, "socket_errors": socket_errors, "rss_kb": {"idle": idle, "end": end, "peak": peak},
     "rss_kb_along": samples, "fds": {"idle": fds0, "end": fds1}, "threads": {"idle": th0, "end": th1}, "smoke": smoke}
lines = [f"Mixed soak: {requests} requests in {seconds} s at {conns} connections over {imsis} IMSIs (in-process memory at its defaults)",
         "", "| measure | value |", "|---|---|",
         f"| RSS idle / at the end / peak | {idle / 1024:.1f} / {end / 1024:.1f} / {peak / 1024:.1f} MB |",
         f"| RSS along the soak (s: MB) | {', '.join(f'{t}: {kb / 1024:.1f}' for t, kb in samples)} |",
         f"| answers by status | {', '.join(f'{s}: {c}' for s, c in sorted(statuses.items()))} |",
         f"| answers that are not JSON | {nonjson} |",
         f"| socket errors | {', '.join(f'{k} {v}' for k, v in socket_errors.items()) or 'none'} |",
         f"| open file descriptors idle / at the end | {fds0} / {fds1} |",
         f"| threads idle / at the end | {th0} / {th1} |"]
text_out = "\n".join(lines) + "\n"
open("bench/results/soak.md", "w").write(text_out)
json.dump(r, open("bench/results/soak.json", "w"), indent=2)
print(text_out)
PY
  stop "$pid"
}

for part in "${parts[@]}"; do "${part}_part"; done
