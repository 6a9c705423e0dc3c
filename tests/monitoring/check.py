#!/usr/bin/env python3
"""The monitoring definitions against the real connector (run by tests/monitoring/run.sh).

Starts the built binary three times in empty folders: `demo` (an event processed, one ignored, one
unreadable, one refused with 401, and GET /metrics), against a stand-in WTL that answers 500 with
WTL_MAX_RETRIES=0 (a WTL failure, answered 500), and with REDIS_URL on a closed port (the redelivery
store unavailable, answered 503). Every request carries its own X-Request-Id, logged as
`unique_id`, so the lines each request wrote are known. Then:

  (a) against the metric names GET /metrics exposes: every one monitoring/grafana-dashboard.json
      queries is exposed, the README's Metrics section names exactly those exposed, and every
      series bench/run.sh reads is exposed;
  (b) each definition in monitoring/log-metrics.json matches exactly the lines it is meant for;
  (c) the Cloud Logging filter, label and value extractors, and the CloudWatch Logs pattern,
      dimensions and value generated from it do the same, read by small evaluators of those two
      syntaxes (over the LogEntry Cloud Logging makes of a line, and over the line for CloudWatch);
  (d) the generated bodies are accepted by the request models of the CLIs that send them
      (gcloud's generated API messages, botocore's service models), and the aws CLI parses each
      call as the deploy script makes it, where those are installed.

Prints ok / FAIL lines and ends with "N passed, M failed".
"""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Importing the generator must leave no __pycache__ in the repository.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "_deploy-common"))
import monitoring as mon  # noqa: E402

SERVICE = "nsps-wtl-connector"
TOKEN = "monitoring-test-token"
passed = failed = 0


def ok(what):
    global passed
    passed += 1
    print(f"ok   {what}")


def bad(what):
    global failed
    failed += 1
    print(f"FAIL {what}")


def check(condition, what, detail=""):
    if condition:
        ok(what)
    else:
        bad(f"{what}{': ' + detail if detail else ''}")
    return condition


# ---- the binary -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Connector:
    """The binary in an empty folder with only the given variables; its stdout lines collected."""

    def __init__(self, binary, args, env):
        self.dir = tempfile.mkdtemp(prefix="nsps-monitoring-")
        self.port = free_port()
        full = {"PATH": os.environ.get("PATH", ""), "PORT": str(self.port), "API_TOKEN": TOKEN, "LOG_LEVEL": "INFO"}
        full.update(env)
        self.proc = subprocess.Popen([binary, *args], cwd=self.dir, env=full, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"the connector exited with {self.proc.returncode}: {args} {env}")
            time.sleep(0.1)
        raise RuntimeError("the connector did not answer /health within 30 s")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def request(self, method, path, token=None, body=None, tag=None, content_type="application/json"):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if tag:
            headers["X-Request-Id"] = tag
        data = None
        if body is not None:
            data = body.encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


class FailingWtl(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"error":"stand-in WTL failure"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


def event(event_id, event_type, imsi="001010000020349"):
    return json.dumps({"event_id": event_id, "data": {"event_type": event_type},
                       "pb_data": {"sim_info": {"imsi": imsi}}})


def exercise(binary):
    """Runs the three connectors; returns (tags, parsed lines, /metrics text, problems)."""
    run = uuid.uuid4().hex[:8]
    tags = {name: f"mon-{name}-{run}" for name in
            ("processed", "ignored", "invalid", "unauth", "metrics", "wtlfail", "storefail")}
    statuses, lines, metrics_text = {}, [], ""
    wtl = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailingWtl)
    threading.Thread(target=wtl.serve_forever, daemon=True).start()
    closed = free_port()  # nothing listens there: Redis "does not answer"
    started = []
    try:
        demo = Connector(binary, ["demo"], {})
        started.append(demo)
        statuses["processed"] = demo.request("POST", "/process-event", TOKEN, event("mon-1", "SIM/Created"), tags["processed"])[0]
        statuses["ignored"] = demo.request("POST", "/process-event", TOKEN, event("mon-2", "Account/Unblocked"), tags["ignored"])[0]
        statuses["invalid"] = demo.request("POST", "/process-event", TOKEN, "{not json", tags["invalid"])[0]
        statuses["unauth"] = demo.request("POST", "/process-event", "not-the-token", event("mon-3", "SIM/Created"), tags["unauth"])[0]
        statuses["metrics"], metrics_text = demo.request("GET", "/metrics", TOKEN, tag=tags["metrics"])
        failing = Connector(binary, [], {"WTL_API_URL": f"http://127.0.0.1:{wtl.server_address[1]}", "WTL_MAX_RETRIES": "0"})
        started.append(failing)
        statuses["wtlfail"] = failing.request("POST", "/process-event", TOKEN, event("mon-4", "SIM/Created"), tags["wtlfail"])[0]
        storeless = Connector(binary, [], {"WTL_API_URL": f"http://127.0.0.1:{wtl.server_address[1]}",
                                           "REDIS_URL": f"redis://127.0.0.1:{closed}", "REDIS_TIMEOUT": "0.5"})
        started.append(storeless)
        statuses["storefail"] = storeless.request("POST", "/process-event", TOKEN, event("mon-5", "SIM/Created"), tags["storefail"])[0]
        time.sleep(0.5)  # the lines of the last answers reach stdout
    finally:
        for c in started:
            c.stop()
            lines.extend(c.lines)
        wtl.shutdown()
    parsed, unreadable = [], []
    for raw in lines:
        try:
            parsed.append(json.loads(raw))
        except ValueError:
            unreadable.append(raw)
    return tags, statuses, parsed, unreadable, metrics_text


# ---- (a) the Grafana dashboard against GET /metrics ----------------------------------------------

def exposed_names(text):
    names, histograms = set(), set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                histograms.add(m.group(1))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[^{\s]+", line).group(0))
    for h in histograms:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names, histograms


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "inf", "nan"}


def promql_metric_names(expr):
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def readme_metric_names():
    """The metric names the README's Metrics section lists (labels in braces left off), or None
    when the README has no such section."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    parts = text.split("\n### Metrics\n", 1)
    if len(parts) < 2:
        return None
    section = re.split(r"\n#{1,3} ", parts[1], maxsplit=1)[0]
    return {m.group(1) for m in re.finditer(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?:\{[^}`]*\})?`", section)}


def check_readme(metrics_text):
    exposed, histograms = exposed_names(metrics_text)
    families = {n for n in exposed if not any(n == h + s for h in histograms for s in ("_bucket", "_sum", "_count"))}
    listed = readme_metric_names()
    check(listed is not None, "README: a '### Metrics' section lists the metrics")
    listed = listed or set()
    check(families - listed == set(), "README: every metric GET /metrics exposes is in the Metrics section",
          f"missing: {sorted(families - listed)}")
    check(listed - families == set(), "README: every metric the Metrics section names is exposed by GET /metrics",
          f"not exposed: {sorted(listed - families)}")


def bench_metric_names():
    """The metric series bench/run.sh reads from GET /metrics (its awk tests `$1 == "name"`)."""
    with open(os.path.join(ROOT, "bench", "run.sh")) as f:
        return set(re.findall(r'\$1 == "([a-z][a-z0-9_]*)"', f.read()))


def check_bench(metrics_text):
    exposed, _ = exposed_names(metrics_text)
    read = bench_metric_names()
    check(bool(read), "bench/run.sh names the metric series it reads from GET /metrics")
    check(read <= exposed, "bench/run.sh: every metric series it reads is exposed by GET /metrics",
          f"not exposed: {sorted(read - exposed)}")


def check_grafana(metrics_text):
    with open(os.path.join(ROOT, "monitoring", "grafana-dashboard.json")) as f:
        dash = json.load(f)
    exposed, histograms = exposed_names(metrics_text)
    check(len(histograms) >= 2, "GET /metrics exposes the histograms", f"{sorted(histograms)}")
    used = {}
    for p in panels_of(dash):
        for t in p.get("targets", []):
            for name in promql_metric_names(t["expr"]):
                used.setdefault(name, []).append(p["title"])
            for q in re.findall(r"histogram_quantile\([^,]+,(.*)", t["expr"]):
                inner = promql_metric_names(q)
                check(inner and all(n.endswith("_bucket") for n in inner),
                      f"grafana: {p['title']!r} takes histogram_quantile over _bucket series", f"{inner}")
        if p.get("type") != "row":
            check(p.get("datasource", {}).get("uid") == "${datasource}",
                  f"grafana: {p['title']!r} reads the Prometheus data source variable")
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.match(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,", query)
            check(m is not None, f"grafana: variable {var['name']} lists a label of a metric", query)
            if m:
                used.setdefault(m.group(1), []).append(f"variable {var['name']}")
    check(any(v["type"] == "datasource" and v.get("query") == "prometheus" for v in dash["templating"]["list"]),
          "grafana: the Prometheus data source is a variable")
    for name, where in sorted(used.items()):
        check(name in exposed, f"grafana: {name} is exposed by GET /metrics",
              f"used by {sorted(set(where))}; /metrics has {sorted(exposed)}")
    def family(n):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and n[:-len(suffix)] in histograms:
                return n[:-len(suffix)]
        return n
    families, shown = {family(n) for n in exposed}, {family(n) for n in used}
    wanted = ["nsps_events_total", "nsps_event_duration_seconds", "wtl_calls_total", "wtl_retries_total",
              "wtl_call_duration_seconds", "nsps_shed_total", "redelivery_store_operation_duration_seconds",
              "redelivery_store_errors_total", "wtl_token_requests_total", "http_requests_in_flight"]
    for name in wanted:
        check(name in shown, f"grafana: a panel shows {name}")
    for name in sorted(families - shown):
        print(f"note {name} is exposed but on no Grafana panel")


# ---- (c) evaluators of the two generated syntaxes -------------------------------------------------

class Unsupported(Exception):
    pass


# Keys Cloud Logging moves out of a structured line into the LogEntry ("Special fields in
# structured payloads", Cloud Logging agent / Cloud Run structured logging).
GCP_SPECIAL = {"severity": "severity", "httpRequest": "httpRequest", "logging.googleapis.com/trace": "trace",
               "logging.googleapis.com/spanId": "spanId", "logging.googleapis.com/trace_sampled": "traceSampled",
               "logging.googleapis.com/insertId": "insertId", "logging.googleapis.com/labels": "labels",
               "logging.googleapis.com/operation": "operation",
               "logging.googleapis.com/sourceLocation": "sourceLocation"}


def gcp_log_entry(line):
    payload = dict(line)
    entry = {"resource": {"type": "cloud_run_revision",
                          "labels": {"service_name": SERVICE, "revision_name": f"{SERVICE}-00001-abc",
                                     "location": "europe-west1", "configuration_name": SERVICE}},
             "logName": "projects/proj-1/logs/run.googleapis.com%2Fstdout"}
    for key, target in GCP_SPECIAL.items():
        if key in payload:
            entry[target] = payload.pop(key)
    if isinstance(payload.get("timestamp"), dict):
        entry["timestamp"] = payload.pop("timestamp")
    elif isinstance(payload.get("time"), str):
        entry["timestamp"] = payload.pop("time")
    if list(payload) == ["message"]:
        entry["textPayload"] = payload["message"]
    else:
        entry["jsonPayload"] = payload
    return entry


def resolve(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return False, None
        obj = obj[part]
    return True, obj


GCP_TERM = re.compile(r'(?P<path>[A-Za-z_][A-Za-z0-9_.]*)(?P<op>:|!=|>=|<=|=|>|<)'
                      r'(?P<value>"(?:[^"\\]|\\.)*"|\*|-?\d+(?:\.\d+)?)')


def gcp_matches(query, entry):
    """The Logging query language, as far as the generated filters use it: comparisons joined by AND."""
    for term in query.split(" AND "):
        m = GCP_TERM.fullmatch(term.strip())
        if not m:
            raise Unsupported(f"Logging query term {term!r}")
        present, value = resolve(entry, m["path"])
        op, literal = m["op"], m["value"]
        if op == ":":
            if literal != "*":
                raise Unsupported(f"has operator with {literal!r}")
            if not present:
                return False
            continue
        if not present or isinstance(value, (dict, list)):
            return False
        if literal.startswith('"'):
            want = json.loads(literal)
            # String comparisons in the Logging query language ignore case.
            got, want = str(value).lower(), want.lower()
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    return False
            got, want = value, float(literal)
        if not {"=": got == want, "!=": got != want, ">=": got >= want, "<=": got <= want,
                ">": got > want, "<": got < want}[op]:
            return False
    return True


def gcp_extract(expression, entry):
    m = re.fullmatch(r"EXTRACT\(([A-Za-z_][A-Za-z0-9_.]*)\)", expression)
    if not m:
        raise Unsupported(f"extractor {expression!r}")
    present, value = resolve(entry, m.group(1))
    return value if present else None


AWS_TERM = re.compile(r'\$\.(?P<sel>[A-Za-z0-9_\-.]+)\s*(?:(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>"[^"]*"|\*|[+-]?\d+(?:\.\d+)?)'
                      r'|\s+(?P<word>IS NULL|NOT EXISTS|IS TRUE|IS FALSE))')


def aws_matches(pattern, line):
    """CloudWatch Logs JSON filter patterns, as far as the generated ones use them: `{ a && b }`."""
    p = pattern.strip()
    if not (p.startswith("{") and p.endswith("}")) or "||" in p or "(" in p:
        raise Unsupported(f"pattern {pattern!r}")
    for term in p[1:-1].split("&&"):
        m = AWS_TERM.fullmatch(term.strip())
        if not m:
            raise Unsupported(f"pattern term {term!r}")
        present, value = resolve(line, m["sel"])
        if m["word"]:
            result = {"IS NULL": present and value is None, "NOT EXISTS": not present,
                      "IS TRUE": value is True, "IS FALSE": value is False}[m["word"]]
            if not result:
                return False
            continue
        # A selector must end on a value node (a string or a number).
        if not present or isinstance(value, (dict, list)) or value is None or isinstance(value, bool):
            return False
        op, literal = m["op"], m["value"]
        if literal == "*":
            if op != "=":
                raise Unsupported(f"{op} *")
            continue
        if literal.startswith('"'):
            if op not in ("=", "!=") or not isinstance(value, str):
                return False
            want = literal[1:-1]
            regex = "^" + ".*".join(re.escape(part) for part in want.split("*")) + "$"
            hit = re.match(regex, value) is not None
            if hit != (op == "="):
                return False
            continue
        if not isinstance(value, (int, float)):
            return False
        want = float(literal)
        if not {"=": value == want, "!=": value != want, ">=": value >= want, "<=": value <= want,
                ">": value > want, "<": value < want}[op]:
            return False
    return True


def aws_field(reference, line):
    if not reference.startswith("$."):
        return reference
    present, value = resolve(line, reference[2:])
    return value if present else None


# ---- (b) and (c) the log-metric definitions against the lines ----------------------------------

# Which lines each definition is for: the request (by its tag) and the line's message. Stated here
# independently of the definitions, from what each request is known to do.
EXPECTED = {
    "events": [(t, "request completed") for t in ("processed", "ignored", "invalid", "wtlfail", "storefail")],
    "event_latency": [(t, "request completed") for t in ("processed", "ignored", "invalid", "wtlfail", "storefail")],
    "wtl_failures": [("wtlfail", "WTL call failed")],
    "auth_failures": [("unauth", "event refused: authentication failed")],
    "store_unavailable": [("storefail", "event refused: the redelivery store is unavailable")],
    "http_5xx": [("wtlfail", "request completed"), ("storefail", "request completed")],
}
LABELS = {
    ("events", "processed"): {"outcome": "processed", "event_type": "SIM/Created"},
    ("events", "ignored"): {"outcome": "ignored", "event_type": "Account/Unblocked"},
    ("events", "wtlfail"): {"outcome": "failed", "event_type": "SIM/Created"},
    ("events", "storefail"): {"outcome": "store_unavailable", "event_type": "SIM/Created"},
    ("wtl_failures", "wtlfail"): {"kind": "server_error", "action": "insert"},
    ("http_5xx", "wtlfail"): {"status": "500", "path": "/process-event"},
    ("http_5xx", "storefail"): {"status": "503", "path": "/process-event"},
}
STATUSES = {"processed": 202, "ignored": 202, "invalid": 422, "unauth": 401, "metrics": 200, "wtlfail": 500,
            "storefail": 503}


def describe(lines, indexes):
    return "; ".join(f"{lines[i].get('message')!r} ({lines[i].get('unique_id', '-')})" for i in sorted(indexes)) or "none"


def check_definitions(defs, tags, lines):
    by_tag = {v: k for k, v in tags.items()}
    check(sorted(EXPECTED) == sorted(m["name"] for m in defs["metrics"]),
          "every definition has its expected lines in this test (and no more)",
          f"definitions {sorted(m['name'] for m in defs['metrics'])}, test {sorted(EXPECTED)}")
    entries = [gcp_log_entry(line) for line in lines]
    for m in defs["metrics"]:
        name = m["name"]
        if name not in EXPECTED:
            continue
        want, missing = set(), []
        for tag, message in EXPECTED[name]:
            found = [i for i, line in enumerate(lines) if line.get("unique_id") == tags[tag] and line.get("message") == message]
            if len(found) != 1:
                missing.append(f"{len(found)} lines {message!r} for the {tag} request")
            want.update(found)
        if not check(not missing, f"{name}: the connector writes the lines it is meant to count", "; ".join(missing)):
            continue
        # (b) the definition itself
        got = {i for i, line in enumerate(lines) if mon.matches(m, line)}
        check(got == want, f"{name}: the definition matches its lines and no other",
              f"extra: {describe(lines, got - want)}; missed: {describe(lines, want - got)}")
        # (c) Cloud Logging: filter, label and value extractors over the LogEntry
        log_metric = mon.gcp_log_metric(m, SERVICE)
        try:
            got = {i for i, e in enumerate(entries) if gcp_matches(log_metric["filter"], e)}
            check(got == want, f"{name}: the Cloud Logging filter matches the same lines",
                  f"{log_metric['filter']}; extra: {describe(lines, got - want)}; missed: {describe(lines, want - got)}")
        except Unsupported as e:
            bad(f"{name}: the Cloud Logging filter uses syntax this test cannot read: {e}")
        # (c) CloudWatch Logs: pattern, dimensions and value over the line
        pattern = mon.aws_pattern(m)
        transformation = mon.aws_transformations(m, SERVICE)[0]
        try:
            got = {i for i, line in enumerate(lines) if aws_matches(pattern, line)}
            check(got == want, f"{name}: the CloudWatch Logs pattern matches the same lines",
                  f"{pattern}; extra: {describe(lines, got - want)}; missed: {describe(lines, want - got)}")
        except Unsupported as e:
            bad(f"{name}: the CloudWatch Logs pattern uses syntax this test cannot read: {e}")
        for i in sorted(want):
            tag = by_tag.get(lines[i].get("unique_id"))
            expected_labels = LABELS.get((name, tag))
            if expected_labels is not None:
                check(mon.label_values(m, lines[i]) == expected_labels, f"{name}: labels of the {tag} line",
                      f"{mon.label_values(m, lines[i])} != {expected_labels}")
                gcp_labels = {k: str(gcp_extract(x, entries[i])) for k, x in log_metric.get("labelExtractors", {}).items()}
                check(gcp_labels == expected_labels, f"{name}: Cloud Logging labels of the {tag} line", f"{gcp_labels}")
                aws_dims = {k: str(aws_field(x, lines[i])) for k, x in transformation.get("dimensions", {}).items()}
                check(aws_dims == expected_labels, f"{name}: CloudWatch dimensions of the {tag} line", f"{aws_dims}")
            if m["kind"] == "distribution":
                value = gcp_extract(log_metric["valueExtractor"], entries[i])
                check(isinstance(value, (int, float)) and value >= 0, f"{name}: Cloud Logging value of the {tag} line", f"{value!r}")
                value = aws_field(transformation["metricValue"], lines[i])
                check(isinstance(value, (int, float)) and value >= 0, f"{name}: CloudWatch value of the {tag} line", f"{value!r}")
            else:
                check(transformation["metricValue"] == "1", f"{name}: CloudWatch counts 1 for the {tag} line")


# ---- (d) the bodies against the CLIs' own request models ---------------------------------------------

def gcloud_messages():
    sdk = shutil.which("gcloud")
    if not sdk:
        return None
    try:
        root = subprocess.run(["gcloud", "info", "--format", "value(installation.sdk_root)"], capture_output=True,
                              text=True, timeout=60).stdout.strip()
        sys.path[:0] = [os.path.join(root, "lib"), os.path.join(root, "lib", "third_party")]
        from googlecloudsdk.api_lib.util import apis  # noqa: F401
        from apitools.base.py import encoding  # noqa: F401
        return apis, encoding
    except Exception as e:  # an SDK without its Python libraries: nothing to check against
        print(f"skip gcloud's API messages are not importable ({e})")
        return None


def unrecognized(message, path=""):
    from apitools.base.protorpclite import messages as pm
    out = [f"{path}.{f}" for f in message.all_unrecognized_fields()]
    for f in message.all_fields():
        value = message.get_assigned_value(f.name)
        for item in (value if f.repeated else [value]) if value is not None else []:
            if isinstance(item, pm.Message):
                out += unrecognized(item, f"{path}.{f.name}")
    return out


def check_gcp_models(defs):
    loaded = gcloud_messages()
    if loaded is None:
        print("skip gcloud is not installed: the Google bodies are not checked against its API messages")
        return
    apis, encoding = loaded
    bodies = [(f"log-based metric {m['name']}", "logging", "v2", "LogMetric", mon.gcp_log_metric(m, SERVICE))
              for m in defs["metrics"]]
    bodies.append(("dashboard", "monitoring", "v1", "Dashboard", mon.gcp_dashboard(defs, SERVICE, "proj-1")))
    for a, policy in mon.gcp_policies(defs, SERVICE, 60, ["projects/proj-1/notificationChannels/1"]):
        bodies.append((f"alert policy {a['name']}", "monitoring", "v3", "AlertPolicy", policy))
    bodies.append(("e-mail channel", "monitoring", "v3", "NotificationChannel", mon.gcp_channel(SERVICE, "a@example.com")))
    for what, api, version, kind, body in bodies:
        message = encoding.DictToMessage(body, getattr(apis.GetMessagesModule(api, version), kind))
        unknown = unrecognized(message)
        same = encoding.MessageToDict(message) == body
        check(not unknown and same, f"gcloud's {api} {version} {kind} takes the {what} as written",
              f"unknown fields or values: {unknown}" if unknown else "the body does not survive a round trip")


def botocore_problems(params, shape, path="", seen=None):
    """botocore's parameter validation, plus the patterns and enums of the model it leaves out."""
    problems = []
    if shape.type_name == "structure" and isinstance(params, dict):
        for key, value in params.items():
            if key in shape.members:
                problems += botocore_problems(value, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(params, list):
        for i, value in enumerate(params):
            problems += botocore_problems(value, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(params, dict):
        for key, value in params.items():
            problems += botocore_problems(key, shape.key, f"{path}.<key>")
            problems += botocore_problems(value, shape.value, f"{path}.{key}")
    elif shape.type_name == "string" and isinstance(params, str):
        pattern = shape.metadata.get("pattern")
        if pattern and not re.fullmatch(pattern, params):
            problems.append(f"{path}: {params!r} does not match {pattern}")
        if shape.enum and params not in shape.enum:
            problems.append(f"{path}: {params!r} is not one of {shape.enum}")
    return problems


def check_aws_models(defs):
    try:
        import botocore.session
        from botocore.validate import ParamValidator
    except ImportError:
        print("skip botocore is not installed: the AWS bodies are not checked against its service models")
        return
    session = botocore.session.get_session()
    logs, cloudwatch = session.get_service_model("logs"), session.get_service_model("cloudwatch")
    topic = f"arn:aws:sns:eu-central-1:123456789012:{SERVICE}-alerts"
    calls = [(f"metric filter {m['name']}", logs, "PutMetricFilter", {
        "logGroupName": f"/ecs/{SERVICE}", "filterName": mon.aws_filter_name(SERVICE, m),
        "filterPattern": mon.aws_pattern(m), "metricTransformations": mon.aws_transformations(m, SERVICE)})
        for m in defs["metrics"]]
    alarms = mon.aws_alarms(defs, SERVICE, 60, topic)
    calls += [(f"alarm {a['name']}", cloudwatch, "PutMetricAlarm", alarm) for a, alarm in alarms]
    body = mon.aws_dashboard(defs, SERVICE, "eu-central-1", "123456789012", f"/ecs/{SERVICE}",
                             [al["AlarmName"] for _, al in alarms])
    calls.append(("dashboard", cloudwatch, "PutDashboard", {"DashboardName": SERVICE, "DashboardBody": json.dumps(body)}))
    for what, model, operation, params in calls:
        shape = model.operation_model(operation).input_shape
        report = ParamValidator().validate(params, shape)
        problems = ([report.generate_report()] if report.has_errors() else []) + botocore_problems(params, shape)
        check(not problems, f"botocore's {operation} model takes the {what}", "; ".join(problems))
    for t in (mon.aws_transformations(m, SERVICE)[0] for m in defs["metrics"]):
        check(len(t.get("dimensions", {})) <= 3 and not ("dimensions" in t and "defaultValue" in t),
              f"metric filter {t['metricName']}: at most three dimensions and no default value beside them")
    check(all(len(w["properties"].get("metrics", [])) > 0 for w in body["widgets"] if w["type"] == "metric"),
          "CloudWatch dashboard: every metric widget has a metric")


def check_aws_cli():
    """The real aws CLI parses each call as the deploy script makes it (file:// bodies included):
    `--generate-cli-skeleton output` validates the input against the service model, sends nothing."""
    if not shutil.which("aws"):
        print("skip the aws CLI is not installed: its parsing of the calls is not checked")
        return
    out = tempfile.mkdtemp(prefix="nsps-monitoring-aws-")
    try:
        group = f"/ecs/{SERVICE}"
        made = subprocess.run([sys.executable, os.path.join(ROOT, "_deploy-common", "monitoring.py"), "aws", out,
                               "--service", SERVICE, "--region", "eu-central-1", "--account", "123456789012",
                               "--log-group", group, "--topic-arn", f"arn:aws:sns:eu-central-1:123456789012:{SERVICE}-alerts"],
                              capture_output=True, text=True)
        if not check(made.returncode == 0, "monitoring.py aws writes the bodies and the manifest", made.stderr.strip()):
            return
        env = dict(os.environ, AWS_ACCESS_KEY_ID="not-used", AWS_SECRET_ACCESS_KEY="not-used",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        region = ["--region", "eu-central-1"]
        for row in made.stdout.splitlines():
            kind, name, path, *rest = row.split("\t")
            if kind == "filter":
                argv = ["logs", "put-metric-filter", *region, "--log-group-name", group, "--filter-name", name,
                        "--filter-pattern", rest[0], "--metric-transformations", f"file://{path}"]
            elif kind == "dashboard":
                argv = ["cloudwatch", "put-dashboard", *region, "--dashboard-name", name, "--dashboard-body", f"file://{path}"]
            else:
                argv = ["cloudwatch", "put-metric-alarm", *region, "--alarm-name", name, "--cli-input-json", f"file://{path}"]
            run = subprocess.run(["aws", *argv, "--generate-cli-skeleton", "output"], capture_output=True, text=True,
                                 env=env, timeout=120)
            check(run.returncode == 0, f"the aws CLI takes `aws {argv[0]} {argv[1]}` for {name}", run.stderr.strip()[-300:])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check_alert_settings(defs):
    for minutes, good in ((1, False), (2, True), (60, True), (1440, True), (1441, False)):
        try:
            mon.gcp_policies(defs, SERVICE, minutes, [])
            mon.aws_alarms(defs, SERVICE, minutes, None)
            result = True
        except mon.DefinitionError:
            result = False
        check(result == good, f"NO_EVENTS_ALERT_MINUTES={minutes} is {'taken' if good else 'refused'}")
    absent = [al for a, al in mon.aws_alarms(defs, SERVICE, 45, None) if a["when"] == "absent"]
    check(len(absent) == 1 and absent[0]["TreatMissingData"] == "breaching" and absent[0]["EvaluationPeriods"] * absent[0]["Period"] == 2700,
          "the CloudWatch no-events alarm treats missing data as breaching over NO_EVENTS_ALERT_MINUTES", f"{absent}")
    policies = [p for _, p in mon.gcp_policies(defs, SERVICE, 45, [])]
    durations = [c["conditionAbsent"]["duration"] for p in policies for c in p["conditions"] if "conditionAbsent" in c]
    check(durations == ["2700s"], "the Cloud Monitoring no-events policy is a metric-absence condition over NO_EVENTS_ALERT_MINUTES",
          f"{durations}")


def main():
    binary = os.path.abspath(sys.argv[1])
    defs = mon.load()
    ok("monitoring/log-metrics.json reads and passes its own checks")
    try:
        tags, statuses, lines, unreadable, metrics_text = exercise(binary)
    except (OSError, RuntimeError) as e:
        bad(f"running the connector: {e}")
        print(f"\n{passed} passed, {failed} failed")
        return 1
    for tag, want in STATUSES.items():
        check(statuses.get(tag) == want, f"the {tag} request is answered {want}", f"answered {statuses.get(tag)}")
    check(not unreadable, "every stdout line of the connector is one JSON object", f"{unreadable[:3]}")
    print(f"     ({len(lines)} log lines from three runs of {os.path.relpath(binary, ROOT)})")
    check_grafana(metrics_text)
    check_readme(metrics_text)
    check_bench(metrics_text)
    check_definitions(defs, tags, lines)
    check_alert_settings(defs)
    check_gcp_models(defs)
    check_aws_models(defs)
    check_aws_cli()
    print()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
