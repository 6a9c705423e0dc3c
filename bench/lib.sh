#!/usr/bin/env bash
# Helpers shared by the bench scripts (sourced, not run). Sourcing creates a
# scratch folder ($work) and a process list ($pids) that are cleaned up when the script exits.

root=${root:?set root to the repository folder before sourcing bench/lib.sh}
work=$(mktemp -d)
pids=()
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

# apt_need COMMAND PACKAGE: installs PACKAGE from Debian's packages when COMMAND is missing.
apt_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# build_bench connector|forwarder: builds the connector (with `forwarder`, the bench's own servers
# too: the bare forwarder and the OTLP sink) with the cargo profile BENCH_PROFILE, release unless
# set: full runs measure what ships. CI's smoke runs set dev, which the test run has built
# already; they keep the harness working and measure nothing (a full run refuses another
# profile). Sets $bin (and $fwd, $sink).
build_bench() {
  local profile=${BENCH_PROFILE:-release} dir target_dir=${CARGO_TARGET_DIR:-$root/target}
  # Cargo's folder for a profile: dev and test build into debug/, bench into release/.
  case "$profile" in dev|test) dir=debug ;; bench) dir=release ;; *) dir=$profile ;; esac
  # The benchmarks start the binary from a scratch folder: a relative target folder is made absolute.
  case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
  if [ "$profile" != release ] && ! ${smoke:-false}; then
    echo "error: a full run measures the release build; BENCH_PROFILE=$profile is for --smoke runs" >&2
    exit 2
  fi
  echo "building ($profile)..."
  cargo build --profile "$profile" --locked --quiet
  # shellcheck disable=SC2034  # $bin and $fwd are the sourcing script's
  bin="$target_dir/$dir/nsps-wtl-connector"
  [ "$1" = forwarder ] || return 0
  cargo build --profile "$profile" --locked --quiet --manifest-path "$root/bench/forwarder/Cargo.toml"
  # The forwarder is a crate of its own: its own target folder unless CARGO_TARGET_DIR names one.
  [ -n "${CARGO_TARGET_DIR:-}" ] || target_dir=$root/bench/forwarder/target
  # shellcheck disable=SC2034  # $fwd and $sink are the sourcing script's
  fwd="$target_dir/$dir/bench-forwarder" sink="$target_dir/$dir/bench-otlp-sink"
}

# The peers (wrk, the simulator, and Redis and the OTLP sink where a script runs them) start
# through $peer: in the kernel's SCHED_BATCH class unless BENCH_PEERS=normal, so that a peer woken
# by the measured process's socket write does not preempt it (why: docs/performance.md, "The
# bench's peers"). $peers_class says which class they got.
# shellcheck disable=SC2034  # $peers_class is the sourcing script's
case "${BENCH_PEERS:-batch}" in
  batch) peer=(chrt --batch 0) peers_class=SCHED_BATCH ;;
  normal) peer=() peers_class=normal ;;
  *) echo "error: BENCH_PEERS is batch or normal, not '$BENCH_PEERS'" >&2; exit 2 ;;
esac
# Where chrt is missing or the kernel refuses the class (a sandbox without sched_setscheduler),
# the peers run in the normal class and the results say so.
if [ ${#peer[@]} -gt 0 ] && ! "${peer[@]}" true 2>/dev/null; then
  echo "warning: chrt --batch is missing or refused here; the peers run in the normal class" >&2
  # shellcheck disable=SC2034
  peer=() peers_class="normal (SCHED_BATCH refused)"
fi

# The token every connector of the benchmarks is started with; wrk's scripts read it from the
# environment (os.getenv), so it is written only here.
export BENCH_TOKEN=bench-token

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_http URL [TRIES]: polls every 10 ms until URL answers 2xx (a server under valgrind needs more tries).
wait_http() {
  for _ in $(seq 1 "${2:-500}"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "error: $1 did not come up" >&2; return 1
}

# start_simulator BINARY: the connector's WTL simulator on a free port ($sim_port, process
# $sim_pid), with the fixture's IMSI inserted so that every `update` of the benchmark succeeds.
start_simulator() {
  sim_port=$(free_port)
  (cd "$work" && SIMULATOR_PORT=$sim_port LOG_LEVEL=ERROR exec "${peer[@]}" "$1" simulator) >"$work/sim.log" 2>&1 &
  sim_pid=$!
  pids+=("$sim_pid")
  wait_http "http://127.0.0.1:$sim_port/health"
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$sim_port/prov" -H 'content-type: application/json' \
    -d '{"imsi":"001010000020349","subscriber_status":"operatorDeterminedBarring","cs_profile":"default","eps_profile":"default","msisdn":[],"action":"insert"}'
}

# event_script FILE: a wrk script POSTing the SIM/Updated fixture with the benchmark's token.
event_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$root/tests/fixtures/sim-updated-open.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
}

# The command the measured processes are started under, when a script sets it (bench/profile.sh:
# valgrind); empty, they run as they are.
launch=()

# start_connector BINARY PORT LOG [ENV_ARG...]: the connector as an operator runs it (INFO logs,
# to the file LOG) in front of the simulator, with the redelivery memory off so that every request
# makes its WTL call, plus any settings given as env's arguments (VAR=VALUE, or -u VAR to drop
# one of these); its pid in $started (and in $pids).
start_connector() {
  local binary=$1 port=$2 log=$3
  shift 3
  (cd "$work" && PORT=$port API_TOKEN=$BENCH_TOKEN WTL_API_URL="http://127.0.0.1:$sim_port" \
    EVENT_DEDUP_TTL=0 STALE_EVENT_CHECK=false LOG_LEVEL=INFO exec env "$@" "${launch[@]}" "$binary") >"$log" 2>&1 &
  started=$!
  pids+=("$started")
}

# start_forwarder PORT: the bare forwarder ($fwd) in front of the simulator; its pid in $started.
start_forwarder() {
  (LISTEN="127.0.0.1:$1" UPSTREAM="http://127.0.0.1:$sim_port/prov" exec "${launch[@]}" "$fwd") >"$work/fwd.log" 2>&1 &
  started=$!
  pids+=("$started")
}

# start_pair: the simulator, then the main connector ($bin, as start_connector runs it; log in
# $work/connector.log) and the forwarder ($fwd) in front of it, each on a free port: $conn_port and
# $conn_pid, $fwd_port and $fwd_pid. Returns once the connector answers /health.
# shellcheck disable=SC2034  # $conn_pid and $fwd_pid are the sourcing script's
start_pair() {
  start_simulator "$bin"
  conn_port=$(free_port) fwd_port=$(free_port)
  start_connector "$bin" "$conn_port" "$work/connector.log"
  conn_pid=$started
  start_forwarder "$fwd_port"
  fwd_pid=$started
  wait_http "http://127.0.0.1:$conn_port/health"
}

# cpu_ticks PID: the CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# baseline_script FILE: a wrk script POSTing to the forwarder the body the connector sends WTL
# for the fixture (from `$bin plan`), so that the upstream does the same work (a real update)
# behind both.
baseline_script() {
  local body
  body=$("$bin" plan "$root/tests/fixtures/sim-updated-open.json" |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["calls"][0]["body"], separators=(",", ":")))')
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA
}

# thread_snapshot PID: the kernel's counters of every thread of PID, one line each:
# "tid name write_syscalls voluntary_switches nonvoluntary_switches cpu_ticks", then one line
# "process - write_syscalls - - -" with the process-wide write count (it keeps the counts of
# threads that have ended). cpu_ticks is the thread's user + system time in clock ticks. Write system calls are /proc's `syscw` (write, writev, pwrite*; a
# socket write through send/sendto/sendmsg is not in it: bench/run.sh's census counts those).
# Thread names with spaces get `_`. A thread ending while it is read is skipped.
thread_snapshot() {
  local t name
  for t in /proc/"$1"/task/*; do
    {
      read -r name <"$t/comm"
      echo "${t##*/} ${name// /_} $(awk '/^syscw/ {print $2}' "$t/io") $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status") $(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
    } 2>/dev/null || true
  done
  echo "process - $(awk '/^syscw/ {print $2}' "/proc/$1/io") - - -"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
