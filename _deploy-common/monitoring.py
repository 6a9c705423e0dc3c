#!/usr/bin/env python3
"""What `--monitoring` creates, from the one definition in monitoring/log-metrics.json.

    monitoring.py gcp OUTDIR --service S --project P [--no-events-minutes N] [--channel NAME]
    monitoring.py gcp-channel FILE --service S --email ADDRESS
    monitoring.py aws OUTDIR --service S --region R --account A --log-group G
                      [--topic-arn ARN] [--no-events-minutes N]
    monitoring.py find KEY=VALUE... --print FIELD...     (a JSON list on stdin)
    monitoring.py with-etag FILE ETAG

`gcp` writes the Cloud Logging log-based metrics (LogMetric), the Cloud Monitoring dashboard and
alert policies; `aws` writes the CloudWatch Logs metric transformations, the CloudWatch dashboard
body and the PutMetricAlarm inputs. Both print a manifest on stdout, one tab-separated line per
thing to create or update (kind, name, file, and for a metric filter its pattern), which the
deploy scripts read. Python 3 standard library only: the
deploy scripts run wherever bash and python3 do.
"""
import argparse
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFINITIONS = os.path.join(HERE, "..", "monitoring", "log-metrics.json")

COMPARISONS = (">=", ">", "<=", "<")
NAME = re.compile(r"[a-z][a-z0-9_]*")
# CloudWatch Logs allows three dimensions per metric filter.
MAX_LABELS = 3


class DefinitionError(Exception):
    pass


# ---- the definitions ---------------------------------------------------------------------------

def load(path=DEFINITIONS):
    with open(path) as f:
        defs = json.load(f)
    check(defs)
    return defs


def check(defs):
    """Refuses a definition either cloud would refuse or read differently, before anything is sent."""
    seen = set()
    for m in defs["metrics"]:
        where = f"metric {m.get('name')!r}"
        if not NAME.fullmatch(m.get("name", "")) or m["name"] in seen:
            raise DefinitionError(f"{where}: a unique name of [a-z0-9_] is required")
        seen.add(m["name"])
        if m.get("kind") not in ("counter", "distribution"):
            raise DefinitionError(f"{where}: kind must be counter or distribution")
        if not m.get("match"):
            raise DefinitionError(f"{where}: match must name at least one field")
        for key, want in m["match"].items():
            if isinstance(want, dict):
                if len(want) != 1 or next(iter(want)) not in COMPARISONS + ("exists",):
                    raise DefinitionError(f"{where}: {key}: one of {COMPARISONS} or exists")
                op, bound = next(iter(want.items()))
                if op == "exists" and bound is not True:
                    raise DefinitionError(f"{where}: {key}: exists takes true")
                if op != "exists" and not is_number(bound):
                    raise DefinitionError(f"{where}: {key}: {op} takes a number")
            elif isinstance(want, str):
                # Kept out so that both query syntaxes take the value literally.
                if any(c in want for c in '"*\\'):
                    raise DefinitionError(f"{where}: {key}: a value may not hold \", * or \\")
            elif not is_number(want):
                raise DefinitionError(f"{where}: {key}: a string, a number or an operator object")
        labels = m.get("labels", {})
        if len(labels) > MAX_LABELS or not all(NAME.fullmatch(k) for k in labels):
            raise DefinitionError(f"{where}: at most {MAX_LABELS} labels named [a-z0-9_]")
        if m["kind"] == "distribution" and not (m.get("value") and m.get("buckets")):
            raise DefinitionError(f"{where}: a distribution needs value and buckets")
    for a in defs.get("alerts", []):
        if a.get("metric") not in seen:
            raise DefinitionError(f"alert {a.get('name')!r}: unknown metric {a.get('metric')!r}")
        if a.get("when") not in ("above", "absent"):
            raise DefinitionError(f"alert {a['name']!r}: when is above or absent")


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def field(line, path):
    """(present, value) of a dotted path in a parsed log line."""
    value = line
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def matches(metric, line):
    """Whether a parsed log line counts for the metric: the meaning both generated forms carry."""
    conditions = dict(metric["match"])
    if metric["kind"] == "distribution":
        conditions[metric["value"]] = {"exists": True}
    for key, want in conditions.items():
        present, value = field(line, key)
        if not present:
            return False
        if isinstance(want, dict):
            op, bound = next(iter(want.items()))
            if op == "exists":
                continue
            if not is_number(value) or not compare(value, op, bound):
                return False
        elif is_number(want):
            if not is_number(value) or value != want:
                return False
        elif value != want:
            return False
    if metric["kind"] == "distribution" and not is_number(field(line, metric["value"])[1]):
        return False
    return True


def compare(value, op, bound):
    return {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]


def label_values(metric, line):
    out = {}
    for label, path in metric.get("labels", {}).items():
        present, value = field(line, path)
        out[label] = "" if not present or value is None else str(value)
    return out


def alert_minutes(alert, override):
    minutes = override if (override is not None and alert.get("minutes_setting")) else alert["minutes"]
    minutes = int(minutes)
    # Cloud Monitoring's absence needs at least 120 s; a CloudWatch alarm looks back at most a day.
    if not 2 <= minutes <= 1440:
        raise DefinitionError(f"{alert.get('minutes_setting') or alert['name']}: {minutes} is not between 2 and 1440 minutes")
    return minutes


# ---- Google Cloud -------------------------------------------------------------------------------

# Cloud Logging moves these keys of a JSON line out of jsonPayload into the LogEntry itself
# ("Special fields in structured payloads"); the rest stays under jsonPayload.
GCP_LIFTED = ("httpRequest",)
GCP_RESOURCE = "cloud_run_revision"


def gcp_metric_id(service, metric):
    return f"{service}_{metric['name']}"


def gcp_path(path):
    return path if path.split(".")[0] in GCP_LIFTED else "jsonPayload." + path


def gcp_literal(value):
    if is_number(value):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gcp_filter(metric, service):
    """The Logging query language filter of a log-based metric."""
    terms = [f"resource.type={gcp_literal(GCP_RESOURCE)}", f"resource.labels.service_name={gcp_literal(service)}"]
    conditions = dict(metric["match"])
    if metric["kind"] == "distribution":
        conditions.setdefault(metric["value"], {"exists": True})
    for key, want in conditions.items():
        if isinstance(want, dict):
            op, bound = next(iter(want.items()))
            terms.append(f"{gcp_path(key)}:*" if op == "exists" else f"{gcp_path(key)}{op}{gcp_literal(bound)}")
        else:
            terms.append(f"{gcp_path(key)}={gcp_literal(want)}")
    return " AND ".join(terms)


def gcp_log_metric(metric, service):
    """A LogMetric (logging v2) for `gcloud logging metrics create|update --config-from-file`."""
    labels = metric.get("labels", {})
    descriptor = {
        "metricKind": "DELTA",
        "valueType": "DISTRIBUTION" if metric["kind"] == "distribution" else "INT64",
        "unit": metric.get("unit", "1"),
        "displayName": f"{service}: {metric['name']}",
    }
    if labels:
        descriptor["labels"] = [{"key": k, "valueType": "STRING", "description": f"the line's {v}"}
                                for k, v in labels.items()]
    out = {
        "name": gcp_metric_id(service, metric),
        "description": metric["description"],
        "filter": gcp_filter(metric, service),
        "metricDescriptor": descriptor,
    }
    if labels:
        out["labelExtractors"] = {k: f"EXTRACT({gcp_path(v)})" for k, v in labels.items()}
    if metric["kind"] == "distribution":
        out["valueExtractor"] = f"EXTRACT({gcp_path(metric['value'])})"
        out["bucketOptions"] = {"explicitBuckets": {"bounds": metric["buckets"]}}
    return out


def gcp_series(service, metric):
    return (f'metric.type="logging.googleapis.com/user/{gcp_metric_id(service, metric)}" '
            f'AND resource.type="{GCP_RESOURCE}"')


def gcp_dashboard(defs, service, project):
    tiles, y = [], 0
    for i, m in enumerate(defs["metrics"]):
        x = 0 if i % 2 == 0 else 24
        if m["kind"] == "distribution":
            data = [{"timeSeriesQuery": {"timeSeriesFilter": {"filter": gcp_series(service, m), "aggregation": {
                "alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_DELTA", "crossSeriesReducer": f"REDUCE_PERCENTILE_{p}"}}},
                "plotType": "LINE", "legendTemplate": f"p{p}"} for p in ("50", "95", "99")]
            axis = f"{m.get('unit', '')}"
        else:
            aggregation = {"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_DELTA", "crossSeriesReducer": "REDUCE_SUM"}
            if m.get("labels"):
                aggregation["groupByFields"] = [f"metric.label.{k}" for k in m["labels"]]
            data = [{"timeSeriesQuery": {"timeSeriesFilter": {"filter": gcp_series(service, m), "aggregation": aggregation}},
                     "plotType": "STACKED_BAR"}]
            axis = "per minute"
        tiles.append({"xPos": x, "yPos": y, "width": 24, "height": 16, "widget": {
            "title": m["description"], "xyChart": {"dataSets": data, "yAxis": {"label": axis, "scale": "LINEAR"}}}})
        if x == 24:
            y += 16
    if len(defs["metrics"]) % 2:
        y += 16
    tiles.append({"xPos": 0, "yPos": y, "width": 48, "height": 20, "widget": {
        "title": "Warnings and errors",
        "logsPanel": {"filter": f'resource.type="{GCP_RESOURCE}" AND resource.labels.service_name="{service}" AND severity>=WARNING',
                      "resourceNames": [f"projects/{project}"]}}})
    return {"displayName": gcp_dashboard_name(service), "mosaicLayout": {"columns": 48, "tiles": tiles}}


def gcp_dashboard_name(service):
    return f"NSPS WTL connector: {service}"


def gcp_policy_name(service, alert):
    return f"{service}: {alert['title']}"


def gcp_policies(defs, service, minutes_override, channels):
    metrics = {m["name"]: m for m in defs["metrics"]}
    out = []
    for a in defs.get("alerts", []):
        m = metrics[a["metric"]]
        series = gcp_series(service, m)
        if a["when"] == "absent":
            minutes = alert_minutes(a, minutes_override)
            condition = {"displayName": f"no {m['name']} data for {minutes} min", "conditionAbsent": {
                "filter": series,
                "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_DELTA",
                                  "crossSeriesReducer": "REDUCE_COUNT"}],
                "duration": f"{minutes * 60}s", "trigger": {"count": 1}}}
        else:
            minutes = alert_minutes(a, None)
            condition = {"displayName": f"{m['name']} above {a['threshold']} in {minutes} min", "conditionThreshold": {
                "filter": series,
                "aggregations": [{"alignmentPeriod": f"{minutes * 60}s", "perSeriesAligner": "ALIGN_DELTA",
                                  "crossSeriesReducer": "REDUCE_SUM"}],
                "comparison": "COMPARISON_GT", "thresholdValue": a["threshold"], "duration": "0s",
                "trigger": {"count": 1}}}
        policy = {
            "displayName": gcp_policy_name(service, a),
            "documentation": {"content": a["documentation"], "mimeType": "text/markdown"},
            "userLabels": {"service": service},
            "combiner": "OR",
            "conditions": [condition],
            "alertStrategy": {"autoClose": "604800s"},
            "enabled": True,
        }
        if channels:
            policy["notificationChannels"] = channels
        out.append((a, policy))
    return out


def gcp_channel(service, email):
    return {"type": "email", "displayName": f"{service} alerts", "labels": {"email_address": email},
            "description": f"Alerts of the NSPS WTL connector {service}", "enabled": True}


# ---- AWS ------------------------------------------------------------------------------------------

def aws_namespace(service):
    return f"NSPS/{service}"


def aws_literal(value):
    return repr(value) if is_number(value) else f'"{value}"'


def aws_pattern(metric):
    """The CloudWatch Logs JSON filter pattern of a metric filter."""
    terms = []
    conditions = dict(metric["match"])
    if metric["kind"] == "distribution":
        # A value published from a field must be matched by the pattern, if only as `= *`.
        conditions.setdefault(metric["value"], {"exists": True})
    for key, want in conditions.items():
        if isinstance(want, dict):
            op, bound = next(iter(want.items()))
            terms.append(f"$.{key} = *" if op == "exists" else f"$.{key} {op} {aws_literal(bound)}")
        else:
            terms.append(f"$.{key} = {aws_literal(want)}")
    return "{ " + " && ".join(terms) + " }"


def aws_filter_name(service, metric):
    return f"{service}-{metric['name']}"


def aws_transformations(metric, service):
    t = {"metricName": metric["name"], "metricNamespace": aws_namespace(service)}
    if metric["kind"] == "distribution":
        t["metricValue"] = f"$.{metric['value']}"
        t["unit"] = {"ms": "Milliseconds", "s": "Seconds"}.get(metric.get("unit"), "None")
    else:
        t["metricValue"] = "1"
        t["unit"] = "Count"
    if metric.get("labels"):
        # No defaultValue: CloudWatch Logs refuses it beside dimensions.
        t["dimensions"] = {k: f"$.{v}" for k, v in metric["labels"].items()}
    return [t]


def aws_insights(metric, service, group_by=()):
    """A Metrics Insights query summing every dimension combination of a metric."""
    query = f'SELECT SUM({metric["name"]}) FROM "{aws_namespace(service)}"'
    if group_by:
        query += " GROUP BY " + ", ".join(group_by)
    return query


def aws_alarm_name(service, alert):
    return f"{service}-{alert['name']}"


def aws_alarms(defs, service, minutes_override, topic_arn):
    metrics = {m["name"]: m for m in defs["metrics"]}
    out = []
    for a in defs.get("alerts", []):
        m = metrics[a["metric"]]
        alarm = {"AlarmName": aws_alarm_name(service, a), "AlarmDescription": a["documentation"][:1024],
                 "ActionsEnabled": True}
        if topic_arn:
            alarm["AlarmActions"] = [topic_arn]
            alarm["OKActions"] = [topic_arn]
        if a["when"] == "absent":
            minutes = alert_minutes(a, minutes_override)
            periods = math.ceil(minutes / 5)
            alarm.update({"EvaluationPeriods": periods, "DatapointsToAlarm": periods, "Threshold": 1,
                          "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching"})
            stat = "SampleCount"
        else:
            minutes = alert_minutes(a, None)
            periods = 1
            alarm.update({"EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": a["threshold"],
                          "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"})
            stat = "Sum"
        period = 300 if a["when"] == "absent" else minutes * 60
        if m.get("labels"):
            # An alarm watches one series; Metrics Insights sums the dimensioned ones (it reads
            # the last three hours only).
            if period * periods > 3 * 3600:
                raise DefinitionError(f"alert {a['name']}: a labelled metric can be watched over 3 hours at most")
            if stat != "Sum":
                raise DefinitionError(f"alert {a['name']}: a labelled metric is watched through its sum")
            alarm["Metrics"] = [{"Id": "q1", "Expression": aws_insights(m, service), "Period": period,
                                 "ReturnData": True, "Label": a["title"]}]
        else:
            alarm.update({"Namespace": aws_namespace(service), "MetricName": m["name"], "Statistic": stat,
                          "Period": period})
        out.append((a, alarm))
    return out


def aws_dashboard(defs, service, region, account, log_group, alarm_names):
    ns = aws_namespace(service)
    widgets = []
    for i, m in enumerate(defs["metrics"]):
        props = {"title": m["description"], "region": region, "view": "timeSeries", "period": 60}
        if m["kind"] == "distribution":
            props["metrics"] = [[ns, m["name"], {"stat": p, "label": p}] for p in ("p50", "p95", "p99")]
        elif m.get("labels"):
            props["metrics"] = [[{"expression": aws_insights(m, service, list(m["labels"])), "id": "q1",
                                  "label": ""}]]
            props["stacked"] = True
        else:
            props["metrics"] = [[ns, m["name"], {"stat": "Sum", "label": m["name"]}]]
        widgets.append({"type": "metric", "x": 0 if i % 2 == 0 else 12, "y": (i // 2) * 6, "width": 12, "height": 6,
                        "properties": props})
    y = ((len(defs["metrics"]) + 1) // 2) * 6
    widgets.append({"type": "alarm", "x": 0, "y": y, "width": 24, "height": 3, "properties": {
        "title": "Alarms", "alarms": [f"arn:aws:cloudwatch:{region}:{account}:alarm:{n}" for n in alarm_names]}})
    query = (f"SOURCE '{log_group}' | fields @timestamp, level, message, event_id, event_type, outcome, imsi, error"
             ' | filter level = "WARNING" or level = "ERROR" | sort @timestamp desc | limit 100')
    widgets.append({"type": "log", "x": 0, "y": y + 3, "width": 24, "height": 8, "properties": {
        "title": "Warnings and errors", "region": region, "query": query, "view": "table"}})
    return {"start": "-PT6H", "widgets": widgets}


# ---- command line ----------------------------------------------------------------------------------

def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
    return path


def manifest(*fields):
    print("\t".join(str(f) for f in fields))


def cmd_gcp(args):
    defs = load(args.definitions)
    for m in defs["metrics"]:
        manifest("metric", gcp_metric_id(args.service, m),
                 write(os.path.join(args.outdir, f"metric-{m['name']}.json"), gcp_log_metric(m, args.service)))
    manifest("dashboard", gcp_dashboard_name(args.service),
             write(os.path.join(args.outdir, "dashboard.json"), gcp_dashboard(defs, args.service, args.project)))
    for a, policy in gcp_policies(defs, args.service, args.no_events_minutes, args.channel):
        manifest("policy", policy["displayName"], write(os.path.join(args.outdir, f"policy-{a['name']}.json"), policy))


def cmd_gcp_channel(args):
    write(os.path.abspath(args.file), gcp_channel(args.service, args.email))


def cmd_aws(args):
    defs = load(args.definitions)
    for m in defs["metrics"]:
        manifest("filter", aws_filter_name(args.service, m),
                 write(os.path.join(args.outdir, f"filter-{m['name']}.json"), aws_transformations(m, args.service)),
                 aws_pattern(m))
    alarms = aws_alarms(defs, args.service, args.no_events_minutes, args.topic_arn)
    body = aws_dashboard(defs, args.service, args.region, args.account, args.log_group, [al["AlarmName"] for _, al in alarms])
    manifest("dashboard", args.service, write(os.path.join(args.outdir, "dashboard.json"), body))
    for a, alarm in alarms:
        manifest("alarm", alarm["AlarmName"], write(os.path.join(args.outdir, f"alarm-{a['name']}.json"), alarm))


def cmd_find(args):
    """The first item of a JSON list (stdin) whose dotted KEYs equal the VALUEs: its FIELDs."""
    items = json.load(sys.stdin) or []
    wanted = [w.split("=", 1) for w in args.where]
    for item in items:
        if all(str(field(item, k)[1]) == v and field(item, k)[0] for k, v in wanted):
            print("\t".join(str(field(item, f)[1] or "") for f in args.print))
            return


def cmd_with_etag(args):
    with open(args.file) as f:
        value = json.load(f)
    value["etag"] = args.etag
    write(os.path.abspath(args.file), value)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--definitions", default=DEFINITIONS)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gcp")
    g.add_argument("outdir")
    g.add_argument("--service", required=True)
    g.add_argument("--project", required=True)
    g.add_argument("--no-events-minutes", type=int)
    g.add_argument("--channel", action="append", default=[])
    g.set_defaults(run=cmd_gcp)
    c = sub.add_parser("gcp-channel")
    c.add_argument("file")
    c.add_argument("--service", required=True)
    c.add_argument("--email", required=True)
    c.set_defaults(run=cmd_gcp_channel)
    a = sub.add_parser("aws")
    a.add_argument("outdir")
    a.add_argument("--service", required=True)
    a.add_argument("--region", required=True)
    a.add_argument("--account", required=True)
    a.add_argument("--log-group", required=True)
    a.add_argument("--topic-arn")
    a.add_argument("--no-events-minutes", type=int)
    a.set_defaults(run=cmd_aws)
    f = sub.add_parser("find")
    f.add_argument("where", nargs="+")
    f.add_argument("--print", nargs="+", required=True)
    f.set_defaults(run=cmd_find)
    e = sub.add_parser("with-etag")
    e.add_argument("file")
    e.add_argument("etag")
    e.set_defaults(run=cmd_with_etag)
    args = p.parse_args(argv)
    try:
        args.run(args)
    except DefinitionError as e:
        print(f"error: monitoring: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
