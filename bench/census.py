"""Where a process's system calls and context switches go, per request (bench/run.sh's census).

    python3 bench/census.py NAME CONNECTIONS WRK_OUTPUT PERF_STAT PERF_SCRIPT PID THREADS UPSTREAM_PID

PERF_STAT: `perf stat --per-thread -x,` of the process during the load (system calls counted
by the kernel's tracepoints, per thread). PERF_SCRIPT: `perf script -F pid,tid,comm,event,trace`
of `perf record -a -e sched:sched_waking,sched:sched_switch` over the same load. THREADS: "tid
name" of the process's threads. Prints one JSON object: per request, by thread name, the write
family (write, writev, sendto, sendmsg) and the other calls counted, who woke the process's
threads (a thread of its own, the upstream, the load generator, an interrupt on an idle core)
and how its threads left the CPU (to sleep, or preempted while runnable).
"""

import collections
import json
import re
import sys

name, conns, wrk_file, stat_file, script_file, pid, threads_file, upstream_pid = sys.argv[1:9]
requests = max(int(re.search(r"(\d+) requests in", open(wrk_file).read()).group(1)), 1)
names = dict(line.split(None, 1) for line in open(threads_file) if line.strip())
names = {tid: n.strip() for tid, n in names.items()}

# perf stat -x, --per-thread: "name-tid,count,unit,event,..."
calls = collections.defaultdict(lambda: collections.Counter())
for line in open(stat_file):
    fields = line.strip().split(",")
    if len(fields) < 4 or line.startswith("#") or not fields[1].strip().isdigit():
        continue
    thread = fields[0].rsplit("-", 1)[0]
    event = fields[3].split(":")[-1].replace("sys_enter_", "")
    calls[thread][event] += int(fields[1])

wakes = collections.Counter()
leaves = collections.Counter()
line_re = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+sched:(\w+):\s*(.*)")
for line in open(script_file):
    m = line_re.match(line)
    if not m:
        continue
    comm, wpid, wtid, event, trace = m.groups()
    if event == "sched_waking":
        t = re.search(r"comm=(.+?) pid=(\d+)", trace)
        if not t or t.group(2) not in names:
            continue
        if wpid == pid:
            waker = comm
        elif wpid == upstream_pid:
            waker = f"upstream ({comm})"
        elif wpid == "0":
            waker = "interrupt on an idle core"
        else:
            waker = re.sub(r"/\d+$", "", comm)
        wakes[(waker, names[t.group(2)])] += 1
    elif event == "sched_switch":
        t = re.search(r"prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+)", trace)
        if t and t.group(1) in names:
            how = "preempted" if t.group(2).startswith("R") else "slept"
            leaves[(names[t.group(1)], how)] += 1

write_family = ("write", "writev", "sendto", "sendmsg")
out = {
    "name": name,
    "connections": int(conns),
    "requests": requests,
    "syscalls": {
        thread: {
            **{k: round(counter[k] / requests, 4) for k in sorted(counter)},
            "write_family": round(sum(counter[k] for k in write_family) / requests, 4),
        }
        for thread, counter in sorted(calls.items())
    },
    "wakeups": [
        {"waker": w, "thread": t, "per_request": round(v / requests, 4)}
        for (w, t), v in sorted(wakes.items(), key=lambda kv: -kv[1])
        if v / requests >= 0.001
    ],
    "switches": [
        {"thread": t, "how": h, "per_request": round(v / requests, 4)}
        for (t, h), v in sorted(leaves.items(), key=lambda kv: -kv[1])
        if v / requests >= 0.001
    ],
}
print(json.dumps(out))
