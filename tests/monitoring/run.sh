#!/usr/bin/env bash
# Checks what is monitored against the connector itself: the Grafana dashboard's queries against
# the names GET /metrics really exposes, and every log-metric definition (monitoring/
# log-metrics.json), with the Cloud Logging filters and CloudWatch Logs patterns made from it,
# against the JSON lines the built binary really writes. A message or field renamed in the code
# fails here rather than leaving a metric that silently counts nothing. Ends with
# "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --locked -q
# The PutMetricFilter / PutMetricAlarm / PutDashboard models come with botocore (awscli).
if ! python3 -c 'import botocore' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check awscli >/dev/null 2>&1 || true
fi
exec python3 tests/monitoring/check.py "${CARGO_TARGET_DIR:-target}/debug/nsps-wtl-connector"
