#!/usr/bin/env bash
# Runs the two deploy scripts end to end with the REAL gcloud and aws, pointed at the local cloud
# stand-in (env.sh, cloud.py): every flag the scripts pass goes through the real CLIs' parsers and
# every request body they build is recorded and checked here. Only `docker` and `curl` are the
# stand-ins of tests/deploy/fakes/ (curl answers 200 for /health and 202 for /process-event).
# Prints "ok ..." or "FAIL ..." per check and ends with "N passed, M failed" (exit 1 on a
# failure). A half whose CLI is missing is skipped with a "skip" line, not failed.
#
#   bash tests/deploy/standin/real-cli.sh [gcp|aws]   (default: both)
#
# REALCLI_KEEP=1 keeps the records, the stand-ins' state and every run's output (they are kept
# anyway when a check fails).
#
# Scenarios, each with a stand-in (and state directory) of its own, side by side:
#   gcp-fresh     a fresh project: --secrets --check --static-egress-ip --monitoring
#   gcp-rollout   an existing service: the candidate revision, then the traffic; a failing check
#   gcp-rollback  --rollback after two deploys (with --tracing: two containers per revision)
#   aws-ecs       a fresh account: ECS Express with --secrets --check --monitoring
#   aws-apprunner an App Runner service that exists (with --tracing): updated; an update that rolls back;
#                 one egress address; --destroy --purge-egress
#
# What no secret value may reach is checked after every run: the script's output, the command
# lines of docker and curl (their fakes' log), gcloud's own log of the arguments it ran with, the
# command line of every Python process (aws, the scripts' python3: a sitecustomize that only
# records /proc/self/cmdline), and every recorded request body but those that store the value.
# shellcheck disable=SC2030,SC2031  # the counters are per scenario subshell, added up from files
# shellcheck source-path=SCRIPTDIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
only=${1:-all}

# shellcheck source=harness.sh
. "$here/harness.sh"

work=$(mktemp -d)
started=$SECONDS

# ---- the CLIs -----------------------------------------------------------------------------------

have_gcloud=false have_aws=false
if command -v gcloud >/dev/null 2>&1; then have_gcloud=true; fi
if [ "$only" != gcp ] && ! command -v aws >/dev/null 2>&1; then
  echo "installing awscli (pip)"
  python3 -m pip install --quiet awscli >/dev/null 2>&1 || true
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # pyenv's shim for the new command
  hash -r
fi
aws_cmd=()
if command -v aws >/dev/null 2>&1; then have_aws=true
elif python3 -c 'import awscli' 2>/dev/null; then have_aws=true aws_cmd=(python3 -m awscli)  # where PATH does not look
fi

# ---- what every run gets --------------------------------------------------------------------------

# A directory with only the fakes of docker and curl, first on PATH.
fakebin="$work/fakebin"
mkdir -p "$fakebin"
ln -s "$root/tests/deploy/fakes/docker" "$fakebin/docker"
ln -s "$root/tests/deploy/fakes/curl" "$fakebin/curl"
# The command line of every Python process of a run, for the secrets check (it changes nothing).
mkdir -p "$work/pyhook"
cat >"$work/pyhook/sitecustomize.py" <<'PY'
import os
_log = os.environ.get("REALCLI_ARGV_LOG")
if _log:
    try:
        with open("/proc/self/cmdline", "rb") as _f:
            _argv = _f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        with open(_log, "a") as _f:
            _f.write(_argv + "\n")
    except OSError:
        pass
PY

# The test's values. Secrets are passed in the environment only.
api_token="nsps-token-$RANDOM$RANDOM-do-not-print"
wtl_token="wtl-token-$RANDOM$RANDOM-do-not-print"
wtl_url=https://hlr.example.com/wtl
regex='^(00101|00102)\d{2,5},x'"'"'y'
alert_email=oncall@example.com
# The env file: settings that are not secrets (it also keeps the repository's own .env out).
cat >"$work/test.env" <<EOF
# real-cli.sh
WTL_DRY_RUN=true
WTL_IMSI_REGEXP='$regex'
EOF

# The Python that evaluates a run's checks, all at once (one process per run, not per check): each
# a Python expression over the calls recorded since the run began (calls), all calls (every), the
# stand-in's state (state), the run's output (output), its lines of the docker and curl log
# (fakelog), with the helpers below. Each check prints "ok   ..." or "FAIL ... (why)".
#   check.py batch RECORD SINCE STATE OUTPUT FAKE_LOG FAKE_SINCE QUEUE
#   check.py value RECORD SINCE STATE EXPRESSION     (prints the expression's value)
cat >"$work/check.py" <<'PY'
import base64, json, re, sys
mode, record, since, state_file = sys.argv[1:5]
every = [json.loads(line) for line in open(record) if line.strip()]
calls = every[int(since):]
try:
    state = json.load(open(state_file))
except (OSError, ValueError):
    state = {}


def read(path, skip=0):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[skip:])
    except OSError:
        return ""


def ok_calls(op, path=None, within=None):
    """The successful calls to OP (whose path matches the regex PATH), in order."""
    return [c for c in (calls if within is None else within)
            if c.get("op") == op and 200 <= c.get("status", 0) < 300 and (path is None or re.search(path, c["path"]))]


def bodies(op, path=None):
    return [c["body"] for c in ok_calls(op, path)]


def last(op, path=None):
    found = bodies(op, path)
    if not found:
        raise LookupError("no successful call to %s%s in this run" % (op, " " + path if path else ""))
    return found[-1]


def tmpl(body):  # a Cloud Run service's (or job's task's) template spec
    spec = body["spec"]["template"]["spec"]
    return spec["template"]["spec"] if "template" in spec else spec


def ctr(body):
    return tmpl(body)["containers"][0]


def env(container):  # a Cloud Run container's env by name
    return {e["name"]: e for e in container.get("env", [])}


def aws_env(pairs):  # an ECS container's environment as a dict
    return {e["name"]: e["value"] for e in pairs}


def traffic(body):  # a Cloud Run service body's traffic: revision -> percent (latest: "LATEST")
    out = {}
    for t in body.get("spec", {}).get("traffic", []):
        key = "LATEST" if t.get("latestRevision") else t.get("revisionName")
        out[key] = out.get(key, 0) + t.get("percent", 0)
    return out


def entries(body):  # a Cloud Run service body's traffic entries: a set of (revision, percent, tag)
    found = [(t.get("revisionName", "LATEST"), t.get("percent", 0), t.get("tag")) for t in body.get("spec", {}).get("traffic", [])]
    return set(found) if len(set(found)) == len(found) else found


def rev(body):  # the revision a Cloud Run service body names (gcloud names it when it tags it)
    return body["spec"]["template"]["metadata"]["name"]


def serving():  # the revision with the traffic, from the stand-in's state
    svc = next(iter(state.get("run_services", {}).values()))
    return max(svc["status"]["traffic"], key=lambda t: t.get("percent", 0))["revisionName"]


def secret_arns():
    return {name.split("/", 1)[1]: s["ARN"] for name, s in state.get("sm_secrets", {}).items()}


scope = dict(calls=calls, every=every, state=state, ok_calls=ok_calls, bodies=bodies, last=last, tmpl=tmpl, ctr=ctr,
             env=env, aws_env=aws_env, traffic=traffic, entries=entries, rev=rev, serving=serving,
             secret_arns=secret_arns, json=json, re=re, base64=base64)
if mode == "value":
    print(eval(sys.argv[5], scope))
    sys.exit()
output_file, fake_log, fake_since, queue = sys.argv[5:9]
scope.update(output=read(output_file), fakelog=read(fake_log, int(fake_since)))
for item in read(queue).split("\x1e")[:-1]:
    desc, expr, *pairs = item.split("\x1f")
    try:
        good, why = eval("(" + expr + "\n)", dict(scope, **dict(p.split("=", 1) for p in pairs))), "does not hold"
    except Exception as e:
        good, why = False, "%s: %s" % (type(e).__name__, str(e)[:1500])
    print("ok   " + desc if good else "FAIL %s (%s)" % (desc, why))
PY

# ---- a scenario's plumbing (each runs in a subshell with a stand-in of its own) --------------------

# check DESCRIPTION PYTHON-EXPRESSION [NAME=VALUE...]: holds for the last run (queued; evaluated
# by flush, before the next run and at the scenario's end).
check() {
  local desc=$1 expr=$2 pair
  shift 2
  printf '%s\x1f%s' "$desc" "$expr" >>"$queue"
  for pair in "$@"; do printf '\x1f%s' "$pair" >>"$queue"; done
  printf '\x1e' >>"$queue"
}
said() { check "$1" 're.search(rx, output, re.M)' "rx=$2"; } # said DESCRIPTION REGEX: the last run printed it
flush() {
  [ -s "$queue" ] || return 0
  local line
  while IFS= read -r line; do
    case "$line" in
      "ok   "*) ok "${line#ok   }" ;;
      "FAIL "*) bad "${line#FAIL }" ;;
      *) bad "check.py: $line" ;;
    esac
  done < <(python3 "$work/check.py" batch "$STANDIN_RECORD" "$run_since" "$STANDIN_STATE_DIR/state.json" "$run_out" \
    "$FAKE_LOG" "$run_fake_since" "$queue" 2>&1)
  : >"$queue"
}
value() { # value PYTHON-EXPRESSION: its value now, over all the calls
  python3 "$work/check.py" value "$STANDIN_RECORD" 0 "$STANDIN_STATE_DIR/state.json" "$1"
}

# deploy LABEL EXPECT SCRIPT ARGS...: runs a deploy script with a clean environment: the stand-in's
# settings, the fakes first on PATH, the test's values and those in $scenario_env. EXPECT: 0 or
# nonzero. Then checks that no secret value was printed, on a command line or in a request body.
deploy() {
  local label=$1 expect=$2 script=$3 status t0=$SECONDS
  shift 3
  flush
  run_since=$(wc -l <"$STANDIN_RECORD")
  run_out="$scenario_dir/${label//[^A-Za-z0-9-]/_}.out"
  run_fake_since=$(wc -l <"$FAKE_LOG")
  local argv_log="${run_out%.out}.argv" mark="${run_out%.out}.start"
  : >"$argv_log"
  touch "$mark"  # gcloud's log files of this run are the newer ones
  local pass_env=() name
  for name in HOME USER LANG LC_ALL TMPDIR PYENV_ROOT PYENV_VERSION; do
    [ -n "${!name+x}" ] && pass_env+=("$name=${!name}")
  done
  while IFS= read -r name; do pass_env+=("$name=${!name}"); done \
    < <(compgen -e | grep -E '^(CLOUDSDK_|AWS_|STANDIN_)')
  if [ ${#aws_cmd[@]} -gt 0 ]; then pass_env+=("BASH_FUNC_aws%%=() { python3 -m awscli \"\$@\"; }"); fi
  (cd "$root" && env -i "${pass_env[@]}" PATH="$fakebin:$PATH" FAKE_LOG="$FAKE_LOG" FAKE_STATE="$FAKE_STATE" \
    PYTHONPATH="$work/pyhook" REALCLI_ARGV_LOG="$argv_log" \
    IAM_RETRY_DELAYS="1 1" POLL_SECONDS=0 API_TOKEN="$api_token" WTL_API_URL="$wtl_url" WTL_API_TOKEN="$wtl_token" \
    "${scenario_env[@]}" bash "$script" --env-file "$work/test.env" "$@") >"$run_out" 2>&1 </dev/null
  status=$?
  local took=$((SECONDS - t0))
  if { [ "$expect" = 0 ] && [ "$status" -eq 0 ]; } || { [ "$expect" = nonzero ] && [ "$status" -ne 0 ]; }; then
    ok "$label: bash $script $* exits $status (${took}s)"
  else
    bad "$label: bash $script $* exits $status, expected $expect; its last lines:"
    tail -n 25 "$run_out" | sed "s/$api_token/<API_TOKEN>/g; s/$wtl_token/<WTL_API_TOKEN>/g; s/^/     | /"
  fi
  local var value line leaks="" gcloud_logs=()
  mapfile -t gcloud_logs < <(find "$CLOUDSDK_CONFIG/logs" -type f -newer "$mark" 2>/dev/null)
  for var in API_TOKEN WTL_API_TOKEN; do
    if [ "$var" = API_TOKEN ]; then value=$api_token; else value=$wtl_token; fi
    grep -qF -- "$value" "$run_out" && leaks+=" $var's value in the output;"
    tail -n +"$((run_fake_since + 1))" "$FAKE_LOG" | grep -qF -- "$value" && leaks+=" $var's value on a docker or curl command line;"
    if grep -qF -- "$value" "$argv_log"; then
      line=$(grep -F -- "$value" "$argv_log" | head -n 1)
      line=${line//"$value"/"<$var>"}
      leaks+=" $var's value on a Python command line (aws, python3): ${line:0:240};"
    fi
    if [ ${#gcloud_logs[@]} -gt 0 ] && grep -qF -- "$value" "${gcloud_logs[@]}"; then
      leaks+=" $var's value in gcloud's log of the arguments it ran with;"
    fi
  done
  if [ -z "$leaks" ]; then ok "$label: no secret value printed or on a command line"
  else bad "$label: a secret value leaked:$leaks"; fi
  # In a request body, a secret value may only be the payload that stores it.
  check "$label: no secret value in a request body but the ones that store it" '
    not [c["op"] for c in calls
         if c["op"] not in ("secretmanager.versions.add", "secretmanager.versions.access", "secretsmanager.CreateSecret",
                            "secretsmanager.PutSecretValue")
         and any(v in json.dumps(c) for v in (a, w, base64.b64encode(a.encode()).decode(), base64.b64encode(w.encode()).decode()))]' \
    a="$api_token" w="$wtl_token"
}

# scenario NAME FUNCTION: runs FUNCTION in a subshell with a stand-in of its own; leaves its lines
# in $work/NAME.log and its counts in $work/NAME.counts.
scenario() {
  local name=$1 fn=$2
  (
    passed=0 failed=0 SECONDS=0
    scenario_dir="$work/$name"
    mkdir -p "$scenario_dir/fake"
    export FAKE_LOG="$scenario_dir/fake.log" FAKE_STATE="$scenario_dir/fake"
    : >"$FAKE_LOG"
    scenario_env=() queue="$scenario_dir/queue" run_since=0 run_out=/dev/null run_fake_since=0
    : >"$queue"
    # shellcheck source=env.sh
    if ! source "$here/env.sh" "$scenario_dir/standin" ""; then
      bad "$name: the stand-in starts"; echo "$passed $failed 0" >"$work/$name.counts"; exit
    fi
    trap standin_stop EXIT
    "$fn"
    flush
    if [ -z "$(standin_unhandled)" ]; then ok "$name: every request had a handler in the stand-in"
    else bad "$name: requests the stand-in had no handler for:"; standin_unhandled | sed 's/^/     | /'; fi
    if [ -s "$STANDIN_STATE_DIR/cloud.log" ]; then bad "$name: the stand-in logged errors: $(head -c 1500 "$STANDIN_STATE_DIR/cloud.log")"
    else ok "$name: the stand-in logged no error"; fi
    echo "$passed $failed $SECONDS" >"$work/$name.counts"
  ) >"$work/$name.log" 2>&1
}

# ---- Google Cloud Run -------------------------------------------------------------------------

project=nsps-realcli
gcp_env=("GCP_PROJECT_ID=$project" GCP_REGION=europe-west1)
runtime_sa="nsps-wtl-connector-run@$project.iam.gserviceaccount.com"

# The service and its check job: settings, secrets as files of their latest version, identity, network.
gcp_service_checks() { # gcp_service_checks LABEL OP
  local label=$1 op=$2
  check "$label: $op body: the env file's settings and WTL_API_URL, as plain variables" '
    {k: v.get("value") for k, v in env(ctr(last(op))).items() if k in ("WTL_API_URL", "WTL_DRY_RUN", "WTL_IMSI_REGEXP", "GOOGLE_CLOUD_PROJECT")}
    == {"WTL_API_URL": url, "WTL_DRY_RUN": "true", "WTL_IMSI_REGEXP": rx, "GOOGLE_CLOUD_PROJECT": p}' \
    op="$op" url="$wtl_url" rx="$regex" p="$project"
  check "$label: $op body: no secret as a variable; API_TOKEN_FILE and WTL_API_TOKEN_FILE name the mounted files" '
    not {"API_TOKEN", "WTL_API_TOKEN"} & set(env(ctr(last(op))))
    and env(ctr(last(op)))["API_TOKEN_FILE"] == {"name": "API_TOKEN_FILE", "value": "/secrets/api-token/api-token"}
    and env(ctr(last(op)))["WTL_API_TOKEN_FILE"]["value"] == "/secrets/wtl-api-token/wtl-api-token"' op="$op"
  check "$label: $op body: each secret a volume of its latest version, mounted at its folder" '
    {v["secret"]["secretName"]: (v["secret"]["items"], [m["mountPath"] for m in ctr(last(op))["volumeMounts"] if m["name"] == v["name"]])
     for v in tmpl(last(op))["volumes"]}
    == {"nsps-wtl-connector-api-token": ([{"key": "latest", "path": "api-token"}], ["/secrets/api-token"]),
        "nsps-wtl-connector-wtl-api-token": ([{"key": "latest", "path": "wtl-api-token"}], ["/secrets/wtl-api-token"])}' op="$op"
  check "$label: $op body: runs as $runtime_sa" 'tmpl(last(op))["serviceAccountName"] == sa' op="$op" sa="$runtime_sa"
  check "$label: $op body: Direct VPC egress of all traffic through the egress network and subnet" '
    last(op)["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/vpc-access-egress"] == "all-traffic"
    and json.loads(last(op)["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/network-interfaces"])
        == [{"network": "nsps-wtl-connector-egress", "subnetwork": "nsps-wtl-connector-egress"}]' op="$op"
}

gcp_fresh() {
  scenario_env=("${gcp_env[@]}" "ALERT_EMAIL=$alert_email")
  deploy "gcp fresh project" 0 _gcp-deploy/deploy.sh --secrets --check --static-egress-ip --monitoring --yes
  local image="europe-west1-docker.pkg.dev/$project/nsps-wtl-connector/nsps-wtl-connector"
  check "services enable: Run, Artifact Registry, IAM, Cloud Build, Secret Manager, Compute" '
    set(bodies("serviceusage.services.batchEnable")[0]["serviceIds"]) == {"run.googleapis.com", "artifactregistry.googleapis.com",
      "iam.googleapis.com", "cloudbuild.googleapis.com", "secretmanager.googleapis.com", "compute.googleapis.com"}'
  check "the runtime service account is created" 'last("iam.serviceAccounts.create")["accountId"] == "nsps-wtl-connector-run"'
  check "Secret Manager: both secrets created with automatic replication" '
    sorted(c["query"]["secretId"] for c in ok_calls("secretmanager.secrets.create"))
      == ["nsps-wtl-connector-api-token", "nsps-wtl-connector-wtl-api-token"]
    and all(b["replication"] == {"automatic": {}} for b in bodies("secretmanager.secrets.create"))'
  check "Secret Manager: a version of each, its payload the value (sent in the body, from stdin)" '
    {c["path"].split("/")[-1].split(":")[0]: base64.b64decode(c["body"]["payload"]["data"]).decode()
     for c in ok_calls("secretmanager.versions.add")}
    == {"nsps-wtl-connector-api-token": a, "nsps-wtl-connector-wtl-api-token": w}' a="$api_token" w="$wtl_token"
  check "IAM: the runtime account may read exactly these two secrets (secretAccessor)" '
    sorted(c["path"].split("/")[-1].split(":")[0] for c in ok_calls("secretmanager.setIamPolicy")
           if {"members": ["serviceAccount:" + sa], "role": "roles/secretmanager.secretAccessor"} in c["body"]["policy"]["bindings"])
    == ["nsps-wtl-connector-api-token", "nsps-wtl-connector-wtl-api-token"]' sa="$runtime_sa"
  check "egress: network (custom subnets), subnet 10.124.0.0/26, a reserved address, a router" '
    last("compute.insert", "/global/networks$")["autoCreateSubnetworks"] is False
    and last("compute.insert", "/subnetworks$")["ipCidrRange"] == "10.124.0.0/26"
    and last("compute.insert", "/addresses$")["name"] == "nsps-wtl-connector-egress-ip"
    and last("compute.insert", "/routers$")["network"].endswith("/global/networks/nsps-wtl-connector-egress")'
  check "egress: Cloud NAT on the subnet with only the reserved address" '
    [(n["natIpAllocateOption"], [i.split("/")[-1] for i in n["natIps"]], n["sourceSubnetworkIpRangesToNat"],
      [s["name"].split("/")[-1] for s in n["subnetworks"]]) for n in last("compute.patch", "/routers/")["nats"]]
    == [("MANUAL_ONLY", ["nsps-wtl-connector-egress-ip"], "LIST_OF_SUBNETWORKS", ["nsps-wtl-connector-egress"])]'
  check "Artifact Registry repository (DOCKER), then Cloud Build builds the commit's image" '
    last("artifactregistry.repositories.create")["format"] == "DOCKER"
    and re.fullmatch(re.escape(img) + r":[0-9a-z]+", last("cloudbuild.builds.create")["images"][0])' img="$image"
  check "the service is created (run.services.create), with the built image, port 8000, 1 CPU, 256Mi, 60 s" '
    ctr(last("run.services.create"))["image"] == last("cloudbuild.builds.create")["images"][0]
    and ctr(last("run.services.create"))["ports"] == [{"containerPort": 8000}]
    and ctr(last("run.services.create"))["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
    and tmpl(last("run.services.create"))["timeoutSeconds"] == 60
    and tmpl(last("run.services.create"))["containerConcurrency"] == 80
    and last("run.services.create")["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"] == "1"'
  gcp_service_checks "gcp fresh project" run.services.create
  check "the service is public (allUsers run.invoker): the connector checks the token itself" '
    {"members": ["allUsers"], "role": "roles/run.invoker"} in last("run.setIamPolicy")["policy"]["bindings"]'
  check "the check job: args [check], the service's image, settings, secrets, account and network" '
    ctr(last("run.jobs.create"))["args"] == ["check"]
    and ctr(last("run.jobs.create"))["image"] == ctr(last("run.services.create"))["image"]
    and ctr(last("run.jobs.create"))["env"] == ctr(last("run.services.create"))["env"]
    and [v["secret"] for v in tmpl(last("run.jobs.create"))["volumes"]] == [v["secret"] for v in tmpl(last("run.services.create"))["volumes"]]
    and tmpl(last("run.jobs.create"))["serviceAccountName"] == sa and tmpl(last("run.jobs.create"))["maxRetries"] == 0
    and last("run.jobs.create")["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/vpc-access-egress"] == "all-traffic"' \
    sa="$runtime_sa"
  check "the check job is executed" 'len(ok_calls("run.jobs.run")) == 1'
  check "monitoring: Logging and Monitoring enabled" '
    {"logging.googleapis.com", "monitoring.googleapis.com"} <= set(bodies("serviceusage.services.batchEnable")[-1]["serviceIds"])'
  check "monitoring: six log-based metrics on the service's lines" '
    sorted(b["name"] for b in bodies("logging.metrics.create")) == sorted("nsps-wtl-connector_" + m for m in
      ("events", "event_latency", "wtl_failures", "auth_failures", "store_unavailable", "http_5xx"))
    and all("resource.labels.service_name=\"nsps-wtl-connector\"" in b["filter"] for b in bodies("logging.metrics.create"))'
  check "monitoring: an e-mail notification channel for ALERT_EMAIL" '
    last("monitoring.create", "/notificationChannels$")["type"] == "email"
    and last("monitoring.create", "/notificationChannels$")["labels"] == {"email_address": mail}' mail="$alert_email"
  check "monitoring: one dashboard" '
    len(bodies("monitoring.create", "/dashboards$")) == 1
    and last("monitoring.create", "/dashboards$")["displayName"] == "NSPS WTL connector: nsps-wtl-connector"'
  check "monitoring: four alert policies, each to the channel" '
    sorted(b["displayName"] for b in bodies("monitoring.create", "/alertPolicies$")) == sorted("nsps-wtl-connector: " + n
      for n in ("5xx answers", "WTL failures", "Redelivery store unavailable", "No events"))
    and all(len(b["notificationChannels"]) == 1 and "/notificationChannels/" in b["notificationChannels"][0]
            for b in bodies("monitoring.create", "/alertPolicies$"))'
  said "the smoke test passed" 'smoke test passed'
  said "the egress address is printed" "egress address \\(allow it in the HLR's firewall\\): [0-9.]+"
  check "curl: /health, then an event with the token from a header file, at the service's URL" '
    re.search(r"^curl .*https://nsps-wtl-connector-[0-9a-f]+-ew\.a\.run\.app/health$", fakelog, re.M)
    and re.search(r"^curl .* -X POST https://nsps-wtl-connector-[0-9a-f]+-ew\.a\.run\.app/process-event -H @\S+ ", fakelog, re.M)'
}

gcp_rollout() {
  scenario_env=("${gcp_env[@]}")
  deploy "gcp first deploy" 0 _gcp-deploy/deploy.sh --secrets --check --static-egress-ip --yes
  check "gcp first deploy: the service is created" 'len(ok_calls("run.services.create")) == 1'
  local first
  first=$(value 'serving()')
  deploy "gcp second deploy" 0 _gcp-deploy/deploy.sh --secrets --check --static-egress-ip --yes
  check "second deploy: no new service, a replaceService of it" '
    not ok_calls("run.services.create") and len(ok_calls("run.services.replace")) >= 2'
  check "second deploy: both secrets read back, found unchanged, given no new version" '
    not ok_calls("secretmanager.versions.add") and sorted(c["path"].split("/")[-3] for c in ok_calls("secretmanager.versions.access"))
      == ["nsps-wtl-connector-api-token", "nsps-wtl-connector-wtl-api-token"]'
  said "second deploy: says the secrets kept their values" "^secret nsps-wtl-connector-api-token: its latest version holds the value of API_TOKEN already"
  check "second deploy: its replaceService names the new revision, gives it no traffic under the tag candidate; 100% stays on the first" '
    entries(bodies("run.services.replace")[0])
    == {(old, 100, None), (rev(bodies("run.services.replace")[0]), 0, "candidate")}
    and rev(bodies("run.services.replace")[0]) != old' old="$first"
  gcp_service_checks "gcp second deploy" run.services.replace
  check "second deploy: the check job ran (with the candidate's image) before the traffic moved" '
    ctr(last("run.jobs.replace"))["image"] == ctr(bodies("run.services.replace")[0])["image"] and
    [c["op"] for c in calls if c["op"] in ("run.jobs.run", "run.services.replace") and 200 <= c["status"] < 300][-2:]
    == ["run.jobs.run", "run.services.replace"]'
  check "second deploy: update-traffic (the last replaceService) sends 100% to the new revision, none to the first, which is tagged previous; the candidate tag stays" '
    len(ok_calls("run.services.replace")) == 2
    and entries(last("run.services.replace")) == {(new, 100, None), (new, 0, "candidate"), (old, 0, "previous")} and serving() == new' old="$first" \
    new="$(python3 "$work/check.py" value "$STANDIN_RECORD" "$run_since" "$STANDIN_STATE_DIR/state.json" 'rev(bodies("run.services.replace")[0])' 2>/dev/null)"
  check "second deploy: the smoke test ran against the candidate's tag URL" '
    re.search(r"^curl .*https://candidate---nsps-wtl-connector-[0-9a-f]+-ew\.a\.run\.app/health$", fakelog, re.M)
    and not re.search(r"^curl .*https://nsps-wtl-connector-", fakelog, re.M)'
  said "second deploy: says where the traffic went" "traffic moved from $first to nsps-wtl-connector-"

  local second
  second=$(value 'serving()')
  touch "$STANDIN_STATE_DIR/check-fails"
  deploy "gcp deploy with a failing check" nonzero _gcp-deploy/deploy.sh --secrets --check --static-egress-ip --yes
  rm -f "$STANDIN_STATE_DIR/check-fails"
  check "failing check: the candidate revision was deployed without traffic, then the job ran" '
    [c["op"] for c in calls if c["op"] in ("run.jobs.run", "run.services.replace") and 200 <= c["status"] < 300]
    == ["run.services.replace", "run.jobs.run"]
    and entries(last("run.services.replace")) == {(cur, 100, None), (rev(last("run.services.replace")), 0, "candidate"), (prev, 0, "previous")}' \
    cur="$second" prev="$first"
  check "failing check: no traffic change recorded (no update-traffic; the serving revision keeps 100%)" '
    len(ok_calls("run.services.replace")) == 1 and serving() == cur' cur="$second"
  said "failing check: says the traffic stays" "traffic stays on $second"

  deploy "gcp destroy --purge-egress" 0 _gcp-deploy/deploy.sh --destroy --purge-egress --yes
  check "destroy: the service, the job, then the router, the address, the subnet and the network, each deleted once" '
    [c["op"] for c in calls if c["op"] in ("run.services.delete", "run.jobs.delete", "compute.delete") and 200 <= c["status"] < 300]
    == ["run.services.delete", "run.jobs.delete"] + ["compute.delete"] * 4
    and [c["path"].split("/")[-2] for c in ok_calls("compute.delete")] == ["routers", "addresses", "subnetworks", "networks"]'
  check "destroy: no egress network is left in the project" 'not state.get("compute")'
  said "destroy: says what it deleted" "^deleted: the service nsps-wtl-connector; the check job nsps-wtl-connector-check; the Cloud Router nsps-wtl-connector-egress with its Cloud NAT; the egress address nsps-wtl-connector-egress-ip \\([0-9.]+\\); the subnet nsps-wtl-connector-egress; the network nsps-wtl-connector-egress$"
}

# Two deploys with --tracing (two containers: the connector and an OpenTelemetry collector; the
# second deploy's --no-traffic and --tag must reach gcloud as service flags), then --rollback.
gcp_rollback() {
  scenario_env=("${gcp_env[@]}")
  deploy "gcp deploy 1 (--tracing)" 0 _gcp-deploy/deploy.sh --secrets --tracing --yes
  check "tracing: Cloud Trace enabled; the runtime account may write traces (project IAM policy)" '
    "cloudtrace.googleapis.com" in bodies("serviceusage.services.batchEnable")[0]["serviceIds"]
    and {"members": ["serviceAccount:" + sa], "role": "roles/cloudtrace.agent"} in last("cloudresourcemanager.setIamPolicy")["policy"]["bindings"]' \
    sa="$runtime_sa"
  check "tracing: the connector (port 8000) sends its spans to the collector on localhost:4318" '
    [c["name"] for c in tmpl(last("run.services.create"))["containers"]] == ["connector", "otel-collector"]
    and ctr(last("run.services.create"))["ports"] == [{"containerPort": 8000}]
    and env(ctr(last("run.services.create")))["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://localhost:4318"
    and env(ctr(last("run.services.create")))["API_TOKEN_FILE"]["value"] == "/secrets/api-token/api-token"'
  check "tracing: the collector: its image, its config from OTEL_COLLECTOR_CONFIG (OTLP in, Cloud Trace out), no port" '
    tmpl(last("run.services.create"))["containers"][1]["image"].startswith("otel/opentelemetry-collector-contrib:")
    and tmpl(last("run.services.create"))["containers"][1]["args"] == ["--config=env:OTEL_COLLECTOR_CONFIG"]
    and "googlecloud" in env(tmpl(last("run.services.create"))["containers"][1])["OTEL_COLLECTOR_CONFIG"]["value"]
    and "localhost:4318" in env(tmpl(last("run.services.create"))["containers"][1])["OTEL_COLLECTOR_CONFIG"]["value"]
    and not tmpl(last("run.services.create"))["containers"][1].get("ports")'
  local first second
  first=$(value 'serving()')
  deploy "gcp deploy 2 (--tracing)" 0 _gcp-deploy/deploy.sh --secrets --tracing --yes
  check "deploy 2: the candidate revision, both containers, no traffic, tag candidate; then 100% to it" '
    [c["name"] for c in tmpl(bodies("run.services.replace")[0])["containers"]] == ["connector", "otel-collector"]
    and entries(bodies("run.services.replace")[0]) == {(old, 100, None), (rev(bodies("run.services.replace")[0]), 0, "candidate")}
    and {r: p for r, p in traffic(last("run.services.replace")).items() if p} == {rev(bodies("run.services.replace")[0]): 100}' \
    old="$first"
  second=$(value 'serving()')
  if [ -n "$second" ] && [ "$second" != "$first" ]; then ok "two deploys: $first, then $second serves"
  else bad "two deploys: serving $first, then $second"; fi
  deploy "gcp --rollback" 0 _gcp-deploy/deploy.sh --rollback
  check "rollback: one replaceService (update-traffic), 100% of the traffic to the revision tagged previous, which tags the one left" '
    len(ok_calls("run.services.replace")) == 1 and {r: p for r, p in traffic(last("run.services.replace")).items() if p} == {old: 100}
    and (cur, 0, "previous") in entries(last("run.services.replace")) and serving() == old' old="$first" cur="$second"
  check "rollback: nothing built or deployed, no new revision" '
    not ok_calls("cloudbuild.builds.create") and not ok_calls("run.services.create") and len(state["run_revisions"]) == 2'
  said "rollback: says where the traffic went" "traffic moved from $second back to $first"
  said "rollback: then the smoke test" 'smoke test passed'
}

# ---- AWS ----------------------------------------------------------------------------------------

account=123456789012
aws_env=(AWS_REGION=eu-central-1)

aws_ecs() {
  scenario_env=("${aws_env[@]}" "ALERT_EMAIL=$alert_email")
  deploy "aws fresh account" 0 _aws-deploy/deploy.sh --secrets --check --monitoring --yes
  said "aws fresh account: the target is ECS" '^target: ecs'
  check "Secrets Manager: both secrets created, the value in the body (from a private file)" '
    {b["Name"]: b["SecretString"] for b in bodies("secretsmanager.CreateSecret")}
    == {"nsps-wtl-connector/API_TOKEN": a, "nsps-wtl-connector/WTL_API_TOKEN": w}' a="$api_token" w="$wtl_token"
  check "ECR: the repository, scanned on push" '
    last("ecr.CreateRepository") == {"repositoryName": "nsps-wtl-connector", "imageScanningConfiguration": {"scanOnPush": True}}'
  check "IAM: the execution role, trusted by ecs-tasks.amazonaws.com, with the task execution policy" '
    [json.loads(b["AssumeRolePolicyDocument"])["Statement"] for b in bodies("iam.CreateRole") if b["RoleName"] == "nsps-wtl-connector-execution"]
    == [[{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]]
    and {"RoleName": "nsps-wtl-connector-execution", "PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}
        in [{k: b[k] for k in ("RoleName", "PolicyArn")} for b in bodies("iam.AttachRolePolicy")]'
  check "IAM: the infrastructure role, trusted by ecs.amazonaws.com, with the Express infrastructure policy" '
    [json.loads(b["AssumeRolePolicyDocument"])["Statement"] for b in bodies("iam.CreateRole") if b["RoleName"] == "nsps-wtl-connector-infrastructure"]
    == [[{"Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}, "Action": "sts:AssumeRole"}]]
    and {"RoleName": "nsps-wtl-connector-infrastructure",
         "PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSInfrastructureRoleforExpressGatewayServices"}
        in [{k: b[k] for k in ("RoleName", "PolicyArn")} for b in bodies("iam.AttachRolePolicy")]'
  check "IAM: put-role-policy lets the execution role read exactly the two secret ARNs" '
    last("iam.PutRolePolicy")["RoleName"] == "nsps-wtl-connector-execution"
    and last("iam.PutRolePolicy")["PolicyName"] == "read-own-secrets"
    and [(s["Effect"], s["Action"], sorted(s["Resource"])) for s in json.loads(last("iam.PutRolePolicy")["PolicyDocument"])["Statement"]]
        == [("Allow", "secretsmanager:GetSecretValue", sorted(secret_arns().values()))]
    and len(secret_arns()) == 2'
  check "logs: the service's log group, kept 30 days" '
    last("logs.CreateLogGroup") == {"logGroupName": "/ecs/nsps-wtl-connector"}
    and last("logs.PutRetentionPolicy")["retentionInDays"] == 30'
  local svc="CreateExpressGatewayService"
  check "$svc: environment: WTL_API_URL and the env file's settings, no secret" '
    aws_env(last("ecs.'$svc'")["primaryContainer"]["environment"])
    == {"WTL_API_URL": url, "WTL_DRY_RUN": "true", "WTL_IMSI_REGEXP": rx}' url="$wtl_url" rx="$regex"
  check "$svc: secrets by the full ARNs Secrets Manager returned" '
    {s["name"]: s["valueFrom"] for s in last("ecs.'$svc'")["primaryContainer"]["secrets"]}
    == {"API_TOKEN": secret_arns()["API_TOKEN"], "WTL_API_TOKEN": secret_arns()["WTL_API_TOKEN"]}
    and all(re.fullmatch(r"arn:aws:secretsmanager:eu-central-1:\d{12}:secret:nsps-wtl-connector/\w+-[A-Za-z0-9]{6}", a)
            for a in secret_arns().values())'
  check "$svc: image in ECR, port 8000, logs to the log group, health check /health" '
    re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-central-1\.amazonaws\.com/nsps-wtl-connector:\S+", last("ecs.'$svc'")["primaryContainer"]["image"])
    and last("ecs.'$svc'")["primaryContainer"]["containerPort"] == 8000
    and last("ecs.'$svc'")["primaryContainer"]["awsLogsConfiguration"]["logGroup"] == "/ecs/nsps-wtl-connector"
    and last("ecs.'$svc'")["healthCheckPath"] == "/health"'
  check "$svc: the roles, cluster, size and scaling" '
    last("ecs.'$svc'")["executionRoleArn"] == "arn:aws:iam::%s:role/nsps-wtl-connector-execution" % acct
    and last("ecs.'$svc'")["infrastructureRoleArn"] == "arn:aws:iam::%s:role/nsps-wtl-connector-infrastructure" % acct
    and last("ecs.'$svc'")["serviceName"] == "nsps-wtl-connector" and last("ecs.'$svc'")["cluster"] == "default"
    and (last("ecs.'$svc'")["cpu"], last("ecs.'$svc'")["memory"]) == ("256", "512")
    and last("ecs.'$svc'")["scalingTarget"] == {"minTaskCount": 1, "maxTaskCount": 1,
        "autoScalingMetric": "REQUEST_COUNT_PER_TARGET", "autoScalingTargetValue": 100}' acct="$account"
  check "the deployment is waited for (describe-service-deployments)" 'len(ok_calls("ecs.DescribeServiceDeployments")) >= 1'
  check "RunTask: the service's task definition, Fargate, overrides command [check] on its container" '
    last("ecs.RunTask")["overrides"] == {"containerOverrides": [{"name": "Main", "command": ["check"]}]}
    and last("ecs.RunTask")["launchType"] == "FARGATE" and last("ecs.RunTask")["cluster"] == "default"
    and last("ecs.RunTask")["taskDefinition"] == last("ecs.DescribeTaskDefinition")["taskDefinition"]
    and "awsvpcConfiguration" in last("ecs.RunTask")["networkConfiguration"]'
  check "the check task's exit code is read (describe-tasks)" 'len(ok_calls("ecs.DescribeTasks")) >= 1'
  check "SNS: the alerts topic, ALERT_EMAIL subscribed by e-mail" '
    last("sns.CreateTopic")["Name"] == "nsps-wtl-connector-alerts"
    and (last("sns.Subscribe")["Protocol"], last("sns.Subscribe")["Endpoint"]) == ("email", mail)' mail="$alert_email"
  check "metric filters: six on /ecs/nsps-wtl-connector, in the NSPS/nsps-wtl-connector namespace" '
    sorted(b["filterName"] for b in bodies("logs.PutMetricFilter")) == sorted("nsps-wtl-connector-" + m for m in
      ("events", "event_latency", "wtl_failures", "auth_failures", "store_unavailable", "http_5xx"))
    and all(b["logGroupName"] == "/ecs/nsps-wtl-connector" and b["filterPattern"].startswith("{")
            and b["metricTransformations"][0]["metricNamespace"] == "NSPS/nsps-wtl-connector" for b in bodies("logs.PutMetricFilter"))'
  check "alarms: four, each to the topic" '
    sorted(b["AlarmName"] for b in bodies("cloudwatch.PutMetricAlarm")) == sorted("nsps-wtl-connector-" + a
      for a in ("http_5xx", "wtl_failures", "store_unavailable", "no_events"))
    and all(b["AlarmActions"] == [topic] for b in bodies("cloudwatch.PutMetricAlarm"))' \
    topic="arn:aws:sns:eu-central-1:$account:nsps-wtl-connector-alerts"
  check "dashboard: put, its body JSON with widgets" '
    last("cloudwatch.PutDashboard")["DashboardName"] == "nsps-wtl-connector"
    and len(json.loads(last("cloudwatch.PutDashboard")["DashboardBody"])["widgets"]) >= 6'
  said "aws fresh account: the smoke test passed" 'smoke test passed'
  check "docker: login with the password on stdin, then build and push the image to ECR" '
    [l.split()[1] for l in fakelog.splitlines() if l.startswith("docker ")] == ["login", "build", "push"]
    and re.search(r"^docker login --username AWS --password-stdin \d{12}\.dkr\.ecr\.eu-central-1\.amazonaws\.com$", fakelog, re.M)
    and re.search(r"^docker push \d{12}\.dkr\.ecr\.eu-central-1\.amazonaws\.com/nsps-wtl-connector:\S+$", fakelog, re.M)'
}

# An App Runner service made by the script, then updated by it (the target found by itself), then
# an update that App Runner rolls back. With --tracing: X-Ray through an observability configuration.
aws_apprunner() {
  scenario_env=("${aws_env[@]}")
  deploy "aws App Runner create" 0 _aws-deploy/deploy.sh --target apprunner --secrets --tracing --yes
  local cfg='last("apprunner.CreateService")["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]'
  check "CreateService: the settings, and the connector sends its spans to App Runner's collector (OTLP gRPC)" \
    "$cfg"'["RuntimeEnvironmentVariables"] == {"WTL_API_URL": url, "WTL_DRY_RUN": "true", "WTL_IMSI_REGEXP": rx,
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}' url="$wtl_url" rx="$regex"
  check "CreateService: secrets by the full ARNs Secrets Manager returned" "$cfg"'["RuntimeEnvironmentSecrets"] == secret_arns()
    and len(secret_arns()) == 2'
  check "CreateService: ECR image, port 8000, the access and instance roles, /health" '
    re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-central-1\.amazonaws\.com/nsps-wtl-connector:\S+",
                 last("apprunner.CreateService")["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"])
    and '"$cfg"'["Port"] == "8000" and last("apprunner.CreateService")["ServiceName"] == "nsps-wtl-connector"
    and last("apprunner.CreateService")["SourceConfiguration"]["AuthenticationConfiguration"]["AccessRoleArn"]
        == "arn:aws:iam::%s:role/nsps-wtl-connector-apprunner-ecr" % acct
    and last("apprunner.CreateService")["InstanceConfiguration"]["InstanceRoleArn"]
        == "arn:aws:iam::%s:role/nsps-wtl-connector-apprunner-instance" % acct
    and last("apprunner.CreateService")["HealthCheckConfiguration"]["Path"] == "/health"' acct="$account"
  check "IAM: the instance role trusted by tasks.apprunner.amazonaws.com, may write to X-Ray and read exactly the secrets" '
    [json.loads(b["AssumeRolePolicyDocument"])["Statement"][0]["Principal"] for b in bodies("iam.CreateRole")
     if b["RoleName"] == "nsps-wtl-connector-apprunner-instance"] == [{"Service": "tasks.apprunner.amazonaws.com"}]
    and {"RoleName": "nsps-wtl-connector-apprunner-instance", "PolicyArn": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"}
        in [{k: b[k] for k in ("RoleName", "PolicyArn")} for b in bodies("iam.AttachRolePolicy")]
    and last("iam.PutRolePolicy")["RoleName"] == "nsps-wtl-connector-apprunner-instance"
    and sorted(json.loads(last("iam.PutRolePolicy")["PolicyDocument"])["Statement"][0]["Resource"]) == sorted(secret_arns().values())'
  check "tracing: an X-Ray observability configuration, enabled on the service" '
    last("apprunner.CreateObservabilityConfiguration")
      == {"ObservabilityConfigurationName": "nsps-wtl-connector-xray", "TraceConfiguration": {"Vendor": "AWSXRAY"}}
    and last("apprunner.CreateService")["ObservabilityConfiguration"] == {"ObservabilityEnabled": True,
      "ObservabilityConfigurationArn": state["apprunner_observability"]["nsps-wtl-connector-xray"][0]["ObservabilityConfigurationArn"]}'
  check "the scaling configuration: 1 to 1 instances, 100 requests each" '
    (last("apprunner.CreateAutoScalingConfiguration")["MinSize"], last("apprunner.CreateAutoScalingConfiguration")["MaxSize"],
     last("apprunner.CreateAutoScalingConfiguration")["MaxConcurrency"]) == (1, 1, 100)
    and last("apprunner.CreateService")["AutoScalingConfigurationArn"].split("/")[1]
        == last("apprunner.CreateAutoScalingConfiguration")["AutoScalingConfigurationName"]'
  local arn
  arn=$(value 'next(iter(state["apprunner_services"]))')
  deploy "aws App Runner update" 0 _aws-deploy/deploy.sh --secrets --tracing --yes
  said "update: the target is App Runner, where the service runs" '^target: apprunner'
  check "update: UpdateService of the existing service, no CreateService" '
    not ok_calls("apprunner.CreateService") and last("apprunner.UpdateService")["ServiceArn"] == arn' arn="$arn"
  check "update: the secrets read back (get-secret-value), found unchanged and not stored again; the same ARNs in the service" '
    not ok_calls("secretsmanager.CreateSecret") and not ok_calls("secretsmanager.PutSecretValue")
    and sorted(b["SecretId"] for b in bodies("secretsmanager.GetSecretValue")) == sorted(secret_arns().values())
    and last("apprunner.UpdateService")["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]["RuntimeEnvironmentSecrets"]
        == secret_arns()'
  check "update: a new image, the instance role, the same observability configuration (found, not made again)" '
    last("apprunner.UpdateService")["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
      != ok_calls("apprunner.CreateService", within=every)[0]["body"]["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
    and last("apprunner.UpdateService")["InstanceConfiguration"]["InstanceRoleArn"].endswith("/nsps-wtl-connector-apprunner-instance")
    and not ok_calls("apprunner.CreateObservabilityConfiguration")
    and last("apprunner.UpdateService")["ObservabilityConfiguration"]
        == ok_calls("apprunner.CreateService", within=every)[0]["body"]["ObservabilityConfiguration"]'
  check "update: the operation is waited for (list-operations)" 'len(ok_calls("apprunner.ListOperations")) >= 1'
  said "update: the smoke test passed" 'smoke test passed'
  touch "$STANDIN_STATE_DIR/rollback"
  deploy "aws App Runner update that rolls back" nonzero _aws-deploy/deploy.sh --secrets --tracing --yes
  rm -f "$STANDIN_STATE_DIR/rollback"
  check "rollback: the update was sent" 'len(ok_calls("apprunner.UpdateService")) == 1'
  said "rollback: names ROLLBACK_SUCCEEDED" 'ROLLBACK_SUCCEEDED'
  check "rollback: no smoke test after it" 'not re.search(r"^curl ", fakelog, re.M)'

  deploy "aws App Runner with one egress address" 0 _aws-deploy/deploy.sh --secrets --tracing --static-egress-ip --yes
  check "egress: the service goes out through a VPC connector on the egress VPC" '
    last("apprunner.UpdateService")["NetworkConfiguration"]["EgressConfiguration"]["EgressType"] == "VPC"
    and len(ok_calls("ec2.CreateNatGateway")) == 1 and len(ok_calls("apprunner.CreateVpcConnector")) == 1'
  deploy "aws App Runner destroy --purge-egress" 0 _aws-deploy/deploy.sh --destroy --purge-egress --yes
  check "destroy: the service, then (once it is DELETED) its VPC connector, then the network in the order EC2 accepts" '
    [c["op"].split(".")[1] for c in calls if re.match(r"\w+\.(Delete|Release|Detach)", c["op"]) and 200 <= c["status"] < 300]
    == ["DeleteService", "DeleteVpcConnector", "DeleteNatGateway", "ReleaseAddress"] + ["DeleteSubnet"] * 4
       + ["DeleteRouteTable"] * 2 + ["DetachInternetGateway", "DeleteInternetGateway", "DeleteSecurityGroup", "DeleteVpc"]'
  check "destroy: every deletion was accepted the first time" '
    not [c for c in calls if re.match(r"\w+\.(Delete|Release|Detach)", c["op"]) and c["status"] >= 300]'
  check "destroy: nothing of the egress network is left but the deleted NAT gateway (EC2 shows it for a while)" '
    all(k.startswith("nat-") and v["state"] == "deleted" for k, v in state.get("ec2", {}).items())'
  said "destroy: says what it deleted" '^deleted: the App Runner service nsps-wtl-connector; the egress VPC vpc-[0-9a-f]+ with its NAT gateway and Elastic IP [0-9.]+$'
}

# ---- run ----------------------------------------------------------------------------------------

scenarios=()
if [ "$only" = all ] || [ "$only" = gcp ]; then
  if $have_gcloud; then scenarios+=(gcp-fresh gcp-rollout gcp-rollback)
  else echo "skip the Google Cloud half: gcloud is not installed"; fi
fi
if [ "$only" = all ] || [ "$only" = aws ]; then
  if $have_aws; then scenarios+=(aws-ecs aws-apprunner)
  else echo "skip the AWS half: aws is not installed (pip install awscli failed)"; fi
fi
case "$only" in all|gcp|aws) ;; *) bad "no such half: $only (gcp, aws)" ;; esac

run_scenario() { scenario "$1" "${1//-/_}"; }
side_by_side scenario run_scenario "${scenarios[@]}"

echo "real CLIs: $((SECONDS - started))s in all"
if [ "$failed" -eq 0 ] && [ -z "${REALCLI_KEEP:-}" ]; then rm -rf "$work"
else echo "(the stand-ins' records, state and outputs are kept in $work)"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
