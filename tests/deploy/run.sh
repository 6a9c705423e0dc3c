#!/usr/bin/env bash
# Tests the deploy scripts end to end without a cloud: stand-ins for `gcloud`, `aws`, `docker`
# and `curl` (tests/deploy/fakes/) record every call, its arguments and the bodies it hands over,
# and answer from a small state model, so each scenario starts from a fresh or an existing
# project and asserts what the script did to it. Then shellcheck, and the scripts run with the
# real CLIs against a local recording stand-in (tests/deploy/standin/) where that is set up.
# Four parts (gcp, aws, clis, standin) run side by side, each in a sandbox of its own and stopped
# after DEPLOY_TESTS_TIMEOUT seconds (1200); one part alone: `bash tests/deploy/run.sh gcp`. Ends
# with "N passed, M failed".
# ok and bad always succeed, so `test && ok || bad` is a proper if-then-else here.
# shellcheck disable=SC2015
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

# The stand-ins run on the Python that has JMESPath (the scenarios get a bare PATH). When python3
# on PATH is a version manager's shim rather than that Python, the Python's own folder goes first
# (python3, and the aws CLI installed beside it): pyenv's shim runs a few shells before each Python
# it starts (~90 ms of CPU), and a run starts about 1 500 (a fifth of its time went to the shims).
# A system Python (/usr/bin) is left where it is, so nothing else on PATH changes.
python_bin=$(python3 -c 'import sys; print(sys.executable)')
python_dir=$(dirname "$python_bin")
if [ "$(readlink -f "$(command -v python3)")" != "$(readlink -f "$python_bin")" ]; then
  export PATH="$python_dir:$PATH"
fi

# The AWS stand-in evaluates --query with JMESPath and the checks read YAML: both come with awscli
# (required). The real-CLI checks run its aws CLI too (they skip without it). Installed by the run,
# not by each of its parts (DEPLOY_TESTS_PART is set for those).
if [ -z "${DEPLOY_TESTS_PART:-}" ]; then
  if ! python3 -c 'import jmespath, yaml' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check awscli >/dev/null
  elif ! command -v aws >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check awscli >/dev/null 2>&1 ||
      echo "note: awscli could not be installed; the checks with the real aws CLI will be skipped"
  fi
fi

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { # expect DESCRIPTION PATTERN (grep -E on the call log)
  if grep -qE -- "$2" "$log"; then ok "$1"; else bad "$1 (no call matches: $2)"; fi
}
times() { # times DESCRIPTION PATTERN N: exactly N calls match
  local n; n=$(grep -cE -- "$2" "$log" || true)
  if [ "$n" -eq "$3" ]; then ok "$1"; else bad "$1 ($n calls match $2, expected $3)"; fi
}
refuse() { # refuse DESCRIPTION PATTERN
  if grep -qE -- "$2" "$log"; then bad "$1 (unexpected: $(grep -m1 -E -- "$2" "$log"))"; else ok "$1"; fi
}
said() { # said DESCRIPTION PATTERN (grep -E on the script's output)
  if grep -qE -- "$2" "$sandbox/out"; then ok "$1"; else bad "$1 (output lacks: $2)"; fi
}
exits() { # exits DESCRIPTION CODE ("nonzero" for any failure)
  if { [ "$2" = nonzero ] && [ "$status" -ne 0 ]; } || [ "$status" = "$2" ]; then ok "$1"; else
    bad "$1 (exit $status, expected $2)"; sed 's/^/     | /' "$sandbox/out" | tail -25
  fi
}
py() { python3 - "$@"; } # py ARGS <<'PY' ... : an assertion in Python; exit 0 = holds
edited() { # edited STATE-JSON PYTHON: the state after the Python statements changed it (`st`)
  python3 -c 'import json, sys; st = json.loads(sys.argv[1]); exec(sys.argv[2]); print(json.dumps(st))' "$1" "$2"
}
called() { sed -n 's/^\(aws [^ ]* [^ ]*\).*/\1/p' "$log"; } # the aws commands of the last run, in order
state() { cat "$FAKE_STATE/state.json"; }
check_py() { # check_py DESCRIPTION ARGS... <<'PY': ok when the Python assertion holds
  local what=$1; shift
  if py "$@" 2>"$sandbox/py.err"; then ok "$what"; else bad "$what: $(tail -3 "$sandbox/py.err" | tr '\n' ' ')"; fi
}

sandbox=$(mktemp -d)
trap 'rm -rf "$sandbox"' EXIT
fakes="$root/tests/deploy/fakes"
export FAKE_LOG="$sandbox/calls.log" FAKE_STATE="$sandbox/state" PYTHONPATH="$fakes"
log=$FAKE_LOG
secret_token="nsps-token-$RANDOM-do-not-print"
wtl_secret="wtl-secret-$RANDOM-value"
redis_password="redis-pw-$RANDOM"
regex='^(00101|00102)\d{2,5},x'"'"'y'
key_pem=$'-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKeyMaterialForTheDeployTestsOnly0000000\n-----END PRIVATE KEY-----'

# scenario NAME SCRIPT ARGS...: a fresh call log and the state in $GIVEN (JSON; {} = a fresh
# project or account); runs the script with the stand-ins first on PATH and nothing else of the
# caller's environment. Every scenario checks that no secret value was printed or put on a
# command line.
GIVEN='{}' SMOKE_FAILS=""
EXTRA_ENV=()
scenario() {
  local name=$1 script=$2; shift 2
  : >"$log"; rm -rf "$FAKE_STATE"; mkdir -p "$FAKE_STATE"
  printf '%s' "$GIVEN" >"$FAKE_STATE/state.json"
  [ -z "$SMOKE_FAILS" ] || echo "$SMOKE_FAILS" >"$FAKE_STATE/smoke-fails"
  echo "--- $name"
  set +e
  (cd "$root" && env -i PATH="$fakes:$python_dir:/usr/bin:/bin" HOME="$sandbox" FAKE_LOG="$FAKE_LOG" FAKE_STATE="$FAKE_STATE" \
    PYTHONPATH="$fakes" IAM_RETRY_DELAYS="0 0 0" METRIC_RETRY_DELAYS="0 0 0" EGRESS_RETRY_DELAYS="0 0 0" POLL_SECONDS=0 \
    GCP_PROJECT_ID=proj-1 GCP_REGION=europe-west1 AWS_REGION=eu-central-1 \
    API_TOKEN="$secret_token" WTL_API_URL=https://hlr.example.com/wtl WTL_IMSI_REGEXP="$regex" \
    WTL_API_TOKEN="$wtl_secret" "${EXTRA_ENV[@]}" bash "$script" "$@") >"$sandbox/out" 2>&1 </dev/null
  status=$?
  set -e
  local value leaked=""
  for value in "$secret_token" "$wtl_secret" "$redis_password" "KeyMaterialForTheDeployTests"; do
    grep -qF -- "$value" "$sandbox/out" && leaked+=" printed:$value"
    grep -qF -- "$value" "$log" && leaked+=" argv:$value"
  done
  [ -z "$leaked" ] && ok "$name: no secret printed or on a command line" || bad "$name: secret leaked:$leaked"
}

# A serving Cloud Run service with N revisions, the last one serving.
gcp_existing() {
  py "${1:-1}" <<'PY'
import json, sys
n = int(sys.argv[1])
name = "nsps-wtl-connector"
revs = [{"name": f"{name}-{i:05d}-x{i}", "image": f"europe-west1-docker.pkg.dev/proj-1/nsps-wtl-connector/{name}:old{i}",
         "created": f"2026-12-04T10:{i:02d}:00Z", "flags": {}} for i in range(1, n + 1)]
print(json.dumps({"services": {name: {"url": f"https://{name}-abc.a.run.app", "revisions": revs,
     "traffic": [{"revisionName": revs[-1]["name"], "percent": 100}]}},
     "accounts": [f"{name}-run@proj-1.iam.gserviceaccount.com"], "repos": ["nsps-wtl-connector"]}))
PY
}
serving() { py "$FAKE_STATE/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["services"]["nsps-wtl-connector"]
print(max(s["traffic"], key=lambda t: t.get("percent", 0))["revisionName"])
PY
}

# secrets_again CLOUD SCRIPT STORE-PATTERN KEPT-LINE: a second --secrets run from the state the
# last scenario left, with API_TOKEN changed: only its secret gets a new version; the others are
# read back, found equal and left alone, and the run says so.
secrets_again() {
  GIVEN=$(state); EXTRA_ENV=("${all_vars[@]}" "API_TOKEN=$secret_token,next-$secret_token")
  scenario "$1: --secrets again, one value changed" "$2" --secrets --yes; GIVEN='{}'; EXTRA_ENV=()
  exits "$1: the second --secrets run exits 0" 0
  check_py "$1: a new version of the changed secret only" "$FAKE_STATE/state.json" "$secret_token" <<'PY'
import json, sys
token = sys.argv[2]
versions = {name.lower().replace("_", "-").replace("/", "-"): s["versions"] if isinstance(s, dict) else s
            for name, s in json.load(open(sys.argv[1]))["secrets"].items()}
assert versions.pop("nsps-wtl-connector-api-token") == [token, f"{token},next-{token}"]
assert versions and all(len(v) == 1 for v in versions.values()), {k: len(v) for k, v in versions.items()}
PY
  times "$1 stores exactly one value" "$3" 1
  said "$1 says which secrets already held their value" "$4"
}

# Every variable the connector reads (but PORT, the platform's) is set to a value of its own.
all_vars=()
while read -r name kind; do
  case "$name" in API_TOKEN|WTL_API_URL|WTL_API_TOKEN|WTL_IMSI_REGEXP) continue ;; esac
  case "$kind" in secret-file|platform) continue ;; esac
  if [ "$kind" = secret ]; then all_vars+=("$name=$name-$redis_password"); else all_vars+=("$name=value-of-$name"); fi
done <_deploy-common/variables.txt
# The log-based metrics --monitoring defines, on either cloud.
monitored=(events event_latency wtl_failures auth_failures store_unavailable http_5xx)

# ================= Google Cloud Run =================
# The Cloud Run script against the fake gcloud.
gcp_scenarios() {
EXTRA_ENV=("${all_vars[@]}")
scenario "gcp: fresh project, --secrets --check" _gcp-deploy/deploy.sh --secrets --check --yes
EXTRA_ENV=()
exits "gcp fresh project deploys" 0
expect "gcp enables Secret Manager and IAM with the rest" '^gcloud services enable run.googleapis.com artifactregistry.googleapis.com iam.googleapis.com cloudbuild.googleapis.com secretmanager.googleapis.com --project proj-1'
expect "gcp creates the runtime service account" '^gcloud iam service-accounts create nsps-wtl-connector-run --project proj-1'
expect "gcp creates the Artifact Registry repository" '^gcloud artifacts repositories create nsps-wtl-connector --project proj-1 --location europe-west1 --repository-format docker'
expect "gcp builds with Cloud Build" '^gcloud builds submit .* --tag europe-west1-docker.pkg.dev/proj-1/nsps-wtl-connector/nsps-wtl-connector:'
expect "gcp runs the service as its own account" '^gcloud run deploy nsps-wtl-connector .*--service-account nsps-wtl-connector-run@proj-1.iam.gserviceaccount.com'
refuse "gcp: a new service is created with its traffic (--no-traffic is for updates)" 'run deploy .*--no-traffic'
expect "gcp deploy: port 8000" 'run deploy .*--port 8000'
expect "gcp deploy: public (the connector checks its token)" 'run deploy .*--allow-unauthenticated'
expect "gcp deploy: scale to zero, bounded instances" 'run deploy .*--min-instances 0 --max-instances 3 --concurrency 80'
expect "gcp runs check as a job with the service's image, identity and settings" '^gcloud run jobs deploy nsps-wtl-connector-check .*--image europe-west1-docker.pkg.dev/proj-1/.* --args check --service-account nsps-wtl-connector-run@proj-1.iam.gserviceaccount.com .*--env-vars-file .*--set-secrets '
expect "gcp waits for the check" '^gcloud run jobs execute nsps-wtl-connector-check .*--wait'
expect "gcp smoke-tests the service" '^curl .*https://nsps-wtl-connector-abc.a.run.app/health'
said "gcp prints the NSPS handler URL" 'NSPS handler URL: https://nsps-wtl-connector-abc.a.run.app/process-event'
said "gcp says where the logs are" 'logs: gcloud run services logs read nsps-wtl-connector'
check_py "gcp: every variable the connector reads reaches the service (settings as env, secrets from Secret Manager)" \
  "$FAKE_STATE/env.yaml" "$FAKE_STATE/state.json" "$regex" <<'PY'
import json, sys, yaml
env = yaml.safe_load(open(sys.argv[1]))
state = json.load(open(sys.argv[2]))
deploy = state["services"]["nsps-wtl-connector"]["revisions"][-1]["flags"]
refs = dict(item.split("=", 1) for item in deploy["--set-secrets"].split(","))
kinds = dict(line.split() for line in open("_deploy-common/variables.txt"))
for name, kind in kinds.items():
    if kind == "platform":
        assert name not in env, f"{name} is Cloud Run's"
    elif kind == "secret":
        assert name not in env, f"{name} is a plain variable"
        slug = name.lower().replace("_", "-")
        if name + "_FILE" in kinds:
            path = f"/secrets/{slug}/{slug}"
            assert env[name + "_FILE"] == path, (name, env.get(name + "_FILE"))
            assert refs.get(path) == f"nsps-wtl-connector-{slug}:latest", (name, refs)
        else:
            assert refs.get(name) == f"nsps-wtl-connector-{slug}:latest", (name, refs)
    elif kind == "platform":
        assert name not in env, f"{name} is the platform's"
    elif kind == "secret-file":
        continue
    else:
        assert name in env, f"{name} did not reach the service"
assert env["WTL_DRY_RUN"] == "value-of-WTL_DRY_RUN"
assert env["WTL_IMSI_REGEXP"] == sys.argv[3], env["WTL_IMSI_REGEXP"]
PY
check_py "gcp: the runtime account may read exactly its own secrets" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
sa = "serviceAccount:nsps-wtl-connector-run@proj-1.iam.gserviceaccount.com"
granted = sorted(s for s, member, role in st["bindings"] if member == sa and role == "roles/secretmanager.secretAccessor")
assert granted == sorted(st["secrets"]), (granted, sorted(st["secrets"]))
assert len(granted) == sum(1 for l in open("_deploy-common/variables.txt") if l.split()[1] == "secret"), granted
PY
grep -qF "$secret_token" "$FAKE_STATE/secret-stdin" && ok "gcp: secret values reach Secret Manager through stdin" || bad "gcp: secret values through stdin"

secrets_again gcp _gcp-deploy/deploy.sh '^gcloud secrets versions add ' \
  '^secret nsps-wtl-connector-wtl-api-token: its latest version holds the value of WTL_API_TOKEN already; no new version$'

GIVEN=$(gcp_existing 1); scenario "gcp: existing service, safe rollout" _gcp-deploy/deploy.sh --yes; GIVEN='{}'
exits "gcp update exits 0" 0
expect "gcp deploys the new revision with no traffic, tagged candidate" '^gcloud run deploy nsps-wtl-connector --project proj-1 --region europe-west1 --no-traffic --tag candidate '
expect "gcp smoke-tests the candidate's own URL" '^curl .*https://candidate---nsps-wtl-connector-abc.a.run.app/health'
expect "gcp moves traffic only then" '^gcloud run services update-traffic nsps-wtl-connector --project proj-1 --region europe-west1 --to-revisions nsps-wtl-connector-00002-x2=100'
expect "gcp tags the revision that served until then previous" 'update-traffic .*--to-revisions nsps-wtl-connector-00002-x2=100 --update-tags previous=nsps-wtl-connector-00001-x1$'
[ "$(serving)" = nsps-wtl-connector-00002-x2 ] && ok "gcp: the new revision serves" || bad "gcp: serving $(serving)"
check_py "gcp: the smoke test ran before the traffic moved" "$log" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
smoke = next(i for i, l in enumerate(lines) if l.startswith("curl") and "candidate---" in l)
move = next(i for i, l in enumerate(lines) if "update-traffic" in l)
assert smoke < move
PY

GIVEN=$(gcp_existing 1); GIVEN=${GIVEN%\}}', "check_fails": true}'
scenario "gcp: the check fails" _gcp-deploy/deploy.sh --check --yes; GIVEN='{}'
exits "gcp: a failing check exits non-zero" nonzero
refuse "gcp: a failing check moves no traffic" 'update-traffic'
[ "$(serving)" = nsps-wtl-connector-00001-x1 ] && ok "gcp: traffic stays on the serving revision" || bad "gcp: serving $(serving)"
said "gcp says the traffic stayed" 'traffic stays on nsps-wtl-connector-00001-x1'

GIVEN=$(gcp_existing 1); SMOKE_FAILS=https://candidate---
scenario "gcp: the smoke test fails" _gcp-deploy/deploy.sh --yes; GIVEN='{}'; SMOKE_FAILS=
exits "gcp: a failing smoke test exits non-zero" nonzero
refuse "gcp: a failing smoke test moves no traffic" 'update-traffic'
[ "$(serving)" = nsps-wtl-connector-00001-x1 ] && ok "gcp: traffic stays where it was" || bad "gcp: serving $(serving)"

GIVEN=$(gcp_existing 3)
scenario "gcp: rollback" _gcp-deploy/deploy.sh --rollback; GIVEN='{}'
exits "gcp rollback exits 0" 0
expect "gcp rollback sends traffic to the revision before the serving one" '^gcloud run services update-traffic nsps-wtl-connector .*--to-revisions nsps-wtl-connector-00002-x2=100'
expect "gcp rollback smoke-tests" '^curl .*/health'
refuse "gcp rollback builds and deploys nothing" 'builds submit|run deploy'

# Revision 2 was a candidate that failed its checks (never served); 1 served before 3.
GIVEN=$(edited "$(gcp_existing 3)" 'svc = st["services"]["nsps-wtl-connector"]
svc["traffic"] += [{"revisionName": "nsps-wtl-connector-00001-x1", "percent": 0, "tag": "previous"},
                   {"revisionName": "nsps-wtl-connector-00002-x2", "percent": 0, "tag": "candidate"}]')
scenario "gcp: rollback past a candidate that never served" _gcp-deploy/deploy.sh --rollback; GIVEN='{}'
exits "gcp rollback (tag previous) exits 0" 0
expect "gcp rollback goes to the revision tagged previous, not to the newer failed candidate" 'update-traffic .*--to-revisions nsps-wtl-connector-00001-x1=100 --update-tags previous=nsps-wtl-connector-00003-x3$'
[ "$(serving)" = nsps-wtl-connector-00001-x1 ] && ok "gcp: the previous revision serves again" || bad "gcp: serving $(serving)"
check_py "gcp: the revision rolled back from is tagged previous (a second --rollback undoes the first)" "$FAKE_STATE/state.json" <<'PY'
import json, sys
traffic = json.load(open(sys.argv[1]))["services"]["nsps-wtl-connector"]["traffic"]
assert {t["tag"]: t["revisionName"] for t in traffic if t.get("tag")}["previous"] == "nsps-wtl-connector-00003-x3", traffic
PY

GIVEN=$(edited "$(gcp_existing 2)" 'st["services"]["nsps-wtl-connector"]["traffic"].append({"revisionName": "nsps-wtl-connector-00002-x2", "percent": 0, "tag": "previous"})')
scenario "gcp: rollback when previous is the serving revision" _gcp-deploy/deploy.sh --rollback; GIVEN='{}'
exits "gcp rollback to the serving revision exits non-zero" nonzero
refuse "gcp rollback to the serving revision changes nothing" 'update-traffic'
said "gcp says the target serves already" 'is the serving revision already'

GIVEN=$(gcp_existing 2)
EXTRA_ENV=(ROLLBACK_REVISION=nsps-wtl-connector-00001-x1)
scenario "gcp: rollback to a named revision" _gcp-deploy/deploy.sh --rollback; GIVEN='{}'; EXTRA_ENV=()
expect "gcp rollback to ROLLBACK_REVISION" 'update-traffic .*--to-revisions nsps-wtl-connector-00001-x1=100'

GIVEN=$(gcp_existing 1)
scenario "gcp: rollback with nothing earlier" _gcp-deploy/deploy.sh --rollback; GIVEN='{}'
exits "gcp rollback without an earlier revision exits non-zero" nonzero
refuse "gcp rollback without an earlier revision changes nothing" 'update-traffic'

GIVEN='{"iam_lag": 2}'
scenario "gcp: IAM still propagating" _gcp-deploy/deploy.sh --secrets --yes; GIVEN='{}'
exits "gcp survives IAM's propagation delay" 0
said "gcp says it waits for IAM" 'waiting .* for IAM to propagate'
GIVEN='{"iam_lag": 50}'
scenario "gcp: IAM never propagates" _gcp-deploy/deploy.sh --secrets --yes; GIVEN='{}'
exits "gcp gives up after a bounded wait" nonzero
refuse "gcp deploys nothing when the secrets cannot be granted" 'run deploy'

EXTRA_ENV=(SERVICE_NAME=nsps-wtl-connector-operator-emea-prod-a1)
scenario "gcp: a long service name" _gcp-deploy/deploy.sh --secrets --yes; EXTRA_ENV=()
exits "gcp: a 38-character service name deploys (service account id within 30 characters)" 0
expect "gcp: the runtime account id is cut and hashed" '^gcloud iam service-accounts create nsps-wtl-connector-op-[0-9a-f]{8} '

EXTRA_ENV=(WTL_CA_SECRET=operator-wtl-ca WTL_CLIENT_KEY_FILE="$key_pem" WTL_CLIENT_CERT_SECRET=operator-wtl-cert
  VPC_CONNECTOR=conn-1 HTTPS_PROXY=http://laptop-proxy:3128 WTL_PROXY=http://egress.internal:3128)
scenario "gcp: TLS material and a VPC connector" _gcp-deploy/deploy.sh --secrets --yes; EXTRA_ENV=()
exits "gcp TLS deploy exits 0" 0
expect "gcp mounts the operator's CA secret as a file" 'run deploy .*--set-secrets [^ ]*/secrets/wtl-ca/wtl-ca.pem=operator-wtl-ca:latest'
expect "gcp keeps an inline private key in Secret Manager and mounts it" 'run deploy .*--set-secrets [^ ]*/secrets/wtl-client-key/wtl-client-key.pem=nsps-wtl-connector-wtl-client-key-file:latest'
expect "gcp reaches the private network through the connector" 'run deploy .*--vpc-connector conn-1 --vpc-egress private-ranges-only'
expect "gcp grants the runtime account the operator's secrets too" '^gcloud secrets add-iam-policy-binding operator-wtl-ca '
check_py "gcp tells the connector where the PEM files are, passes WTL_PROXY, not the shell's HTTPS_PROXY" "$FAKE_STATE/env.yaml" <<'PY'
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))
assert env["WTL_CA_FILE"] == "/secrets/wtl-ca/wtl-ca.pem", env
assert env["WTL_CLIENT_CERT_FILE"] == "/secrets/wtl-client-cert/wtl-client-cert.pem", env
assert env["WTL_CLIENT_KEY_FILE"] == "/secrets/wtl-client-key/wtl-client-key.pem", env
assert env["WTL_PROXY"] == "http://egress.internal:3128"
assert "HTTPS_PROXY" not in env
PY

printf '%s\n' "$secret_token-from-file" >"$sandbox/token-file"
EXTRA_ENV=(API_TOKEN= API_TOKEN_FILE="$sandbox/token-file")
scenario "gcp: API_TOKEN_FILE on the deploying machine" _gcp-deploy/deploy.sh --secrets --yes; EXTRA_ENV=()
exits "gcp takes a secret from its _FILE form" 0
grep -qF "$secret_token-from-file" "$FAKE_STATE/secret-stdin" && ok "gcp stores the file's content in Secret Manager" || bad "gcp _FILE content"
check_py "gcp gives the service the mounted file, not the deploying machine's path" "$FAKE_STATE/env.yaml" <<'PY'
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))
assert env["API_TOKEN_FILE"] == "/secrets/api-token/api-token", env
PY
EXTRA_ENV=(API_TOKEN_FILE="$sandbox/token-file")
scenario "gcp: API_TOKEN and API_TOKEN_FILE" _gcp-deploy/deploy.sh --secrets --yes; EXTRA_ENV=()
exits "gcp refuses both forms of a secret" 2
said "gcp names both forms" 'set either API_TOKEN or API_TOKEN_FILE, not both'

scenario "gcp: one egress address" _gcp-deploy/deploy.sh --static-egress-ip --yes
exits "gcp --static-egress-ip exits 0" 0
expect "gcp enables Compute Engine" '^gcloud services enable .*compute.googleapis.com'
expect "gcp creates the network" '^gcloud compute networks create nsps-wtl-connector-egress --project proj-1 --subnet-mode custom'
expect "gcp creates the subnet" '^gcloud compute networks subnets create nsps-wtl-connector-egress .*--network nsps-wtl-connector-egress --range 10.124.0.0/26'
expect "gcp reserves the address" '^gcloud compute addresses create nsps-wtl-connector-egress-ip --project proj-1 --region europe-west1'
expect "gcp creates the Cloud Router" '^gcloud compute routers create nsps-wtl-connector-egress .*--network nsps-wtl-connector-egress'
expect "gcp creates Cloud NAT on that address only" '^gcloud compute routers nats create nsps-wtl-connector-egress .*--router nsps-wtl-connector-egress --nat-external-ip-pool nsps-wtl-connector-egress-ip --nat-custom-subnet-ip-ranges nsps-wtl-connector-egress'
expect "gcp sends all traffic through the VPC" 'run deploy .*--network nsps-wtl-connector-egress --subnet nsps-wtl-connector-egress --vpc-egress all-traffic'
said "gcp prints the egress address" 'egress address \(allow it in the HLR.s firewall\): 34.0.2.15'
gcp_egress=$(state)

GIVEN=$gcp_egress
scenario "gcp: destroy keeps the egress network" _gcp-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "gcp destroy with an egress network exits 0" 0
said "gcp destroy says the egress address and NAT are kept, and billed" '^kept: the egress address nsps-wtl-connector-egress-ip \(34.0.2.15\), the Cloud Router nsps-wtl-connector-egress with its Cloud NAT, the subnet nsps-wtl-connector-egress, the network nsps-wtl-connector-egress \(the address and the NAT are billed by the hour while they exist; --purge-egress\)'
refuse "gcp destroy leaves the egress network alone" '^gcloud compute .* delete'

GIVEN=$gcp_egress
scenario "gcp: destroy --purge-egress" _gcp-deploy/deploy.sh --destroy --purge-egress --yes
exits "gcp destroy --purge-egress exits 0" 0
said "gcp names the egress network among what it deleted" '^deleted: the service nsps-wtl-connector; the Cloud Router nsps-wtl-connector-egress with its Cloud NAT; the egress address nsps-wtl-connector-egress-ip \(34.0.2.15\); the subnet nsps-wtl-connector-egress; the network nsps-wtl-connector-egress$'
check_py "gcp deletes the service, then the router (its NAT with it), the address, the subnet and the network; nothing is left" "$log" "$FAKE_STATE/state.json" <<'PY'
import json, re, sys
deletions = [re.match(r"gcloud (.*?) delete", l).group(1) for l in open(sys.argv[1]) if re.match(r"gcloud .* delete ", l)]
assert deletions == ["run services", "compute routers", "compute addresses", "compute networks subnets", "compute networks"], deletions
assert not any(json.load(open(sys.argv[2]))["compute"].values())
PY
GIVEN=$(state)
scenario "gcp: destroy --purge-egress again" _gcp-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "gcp second destroy --purge-egress exits 0" 0
said "gcp: nothing left to delete" '^nothing deleted: '
refuse "gcp deletes nothing a second time" ' delete '

GIVEN=${gcp_egress%\}}', "subnet_in_use": true}'
scenario "gcp: destroy --purge-egress while Cloud Run holds the subnet" _gcp-deploy/deploy.sh --destroy --purge-egress --yes
exits "gcp destroy with the subnet held exits 0" 0
expect "gcp releases the address all the same" '^gcloud compute addresses delete nsps-wtl-connector-egress-ip '
refuse "gcp does not try the network while its subnet stays" '^gcloud compute networks delete '
said "gcp says the subnet and network stay, why, and what to run later" '^kept: the subnet nsps-wtl-connector-egress and the network nsps-wtl-connector-egress, free of charge: Cloud Run frees its addresses in the subnet 1-2 hours after the service is gone; run --destroy --purge-egress again then'
GIVEN=$(state); GIVEN=${GIVEN/\"subnet_in_use\": true/\"subnet_in_use\": false}
scenario "gcp: destroy --purge-egress once the subnet is free" _gcp-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "gcp later destroy --purge-egress exits 0" 0
said "gcp deletes what was left" '^deleted: the subnet nsps-wtl-connector-egress; the network nsps-wtl-connector-egress$'
check_py "gcp: nothing of the egress network is left" "$FAKE_STATE/state.json" <<'PY'
import json, sys
assert not any(json.load(open(sys.argv[1]))["compute"].values())
PY

GIVEN=$gcp_egress
scenario "gcp: destroy --purge-egress, dry run" _gcp-deploy/deploy.sh --destroy --purge-egress --dry-run --yes; GIVEN='{}'
exits "gcp dry-run destroy --purge-egress exits 0" 0
said "gcp dry run prints the network deletion" '^\+ gcloud compute networks delete nsps-wtl-connector-egress --project proj-1 --quiet'
refuse "gcp dry run deletes nothing" '^gcloud .* delete '

GIVEN=$(gcp_existing 1); GIVEN=${GIVEN%\}}', "compute_disabled": true}'
scenario "gcp: destroy in a project without Compute Engine" _gcp-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "gcp destroy without Compute Engine exits 0" 0
said "gcp deletes the service" '^deleted: the service nsps-wtl-connector$'
refuse "gcp deletes no network there" '^gcloud compute .* delete'

GIVEN='{"compute_disabled": true}'
scenario "gcp: dry run of --static-egress-ip before Compute Engine is on" _gcp-deploy/deploy.sh --static-egress-ip --dry-run --yes; GIVEN='{}'
exits "gcp dry run with Compute Engine off exits 0" 0
said "gcp dry run plans the egress network" '^\+ gcloud compute routers nats create nsps-wtl-connector-egress '

GIVEN=${gcp_egress%\}}', "compute_describe_refused": true}'
scenario "gcp: --static-egress-ip when a network look-up is refused" _gcp-deploy/deploy.sh --static-egress-ip --yes; GIVEN='{}'
exits "gcp stops when it cannot look at the egress network" 3
said "gcp shows the refusal" 'PERMISSION_DENIED'
refuse "gcp creates no network it could not look for, and deploys nothing" 'compute .* create|run deploy'

scenario "gcp: --purge-egress without --destroy" _gcp-deploy/deploy.sh --purge-egress --yes
exits "gcp refuses --purge-egress without --destroy" 2
said "gcp says --purge-egress goes with --destroy" 'goes with --destroy'

scenario "gcp: --tracing runs a collector beside the connector" _gcp-deploy/deploy.sh --tracing --yes
exits "gcp --tracing exits 0" 0
expect "gcp --tracing enables Cloud Trace" '^gcloud services enable .*cloudtrace.googleapis.com'
expect "gcp --tracing lets the runtime account write traces" '^gcloud projects add-iam-policy-binding proj-1 --member serviceAccount:nsps-wtl-connector-run@proj-1.iam.gserviceaccount.com --role roles/cloudtrace.agent'
expect "gcp --tracing deploys two containers, the connector taking requests" 'run deploy .* --container connector --image europe-west1-docker.pkg.dev/[^ ]* --port 8000 .* --container otel-collector --image otel/opentelemetry-collector-contrib:[0-9.]+ .*--args=--config=env:OTEL_COLLECTOR_CONFIG --env-vars-file '
check_py "gcp --tracing: the connector sends its spans to the collector, which sends them to Cloud Trace" \
  "$FAKE_STATE/env.yaml" "$FAKE_STATE/env-otel-collector.yaml" <<'PY'
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))
assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318", env
config = yaml.safe_load(yaml.safe_load(open(sys.argv[2]))["OTEL_COLLECTOR_CONFIG"])
assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "localhost:4318"
assert config["service"]["pipelines"]["traces"]["exporters"] == ["googlecloud"]
PY
EXTRA_ENV=(OTEL_EXPORTER_OTLP_ENDPOINT=http://collector.example:4318)
scenario "gcp: --tracing beside an endpoint of one's own" _gcp-deploy/deploy.sh --tracing --yes; EXTRA_ENV=()
exits "gcp --tracing refuses a second collector" 2
refuse "gcp --tracing refusal runs nothing" '^(gcloud|docker|curl) .*(deploy|create|enable)'

scenario "gcp: public access without allUsers" _gcp-deploy/deploy.sh --no-invoker-iam-check --yes
expect "gcp --no-invoker-iam-check replaces the allUsers binding" 'run deploy .*--no-invoker-iam-check'
refuse "gcp --no-invoker-iam-check asks for no allUsers binding" '--allow-unauthenticated'

GIVEN=$(gcp_existing 1)
EXTRA_ENV=(WTL_DRY_RUN=true)
scenario "gcp: env-only" _gcp-deploy/deploy.sh --env-only; GIVEN='{}'; EXTRA_ENV=()
exits "gcp env-only exits 0" 0
refuse "gcp env-only builds nothing" 'builds submit|docker build'
expect "gcp env-only redeploys the running image, with no traffic first" '^gcloud run deploy nsps-wtl-connector .*--no-traffic --tag candidate .*--image europe-west1-docker.pkg.dev/proj-1/nsps-wtl-connector/nsps-wtl-connector:old1( |$)'
grep -qxF "WTL_DRY_RUN: 'true'" "$FAKE_STATE/env.yaml" && ok "gcp env-only passes WTL_DRY_RUN (the dry-run week)" || bad "gcp env-only WTL_DRY_RUN"
expect "gcp env-only clears secrets the env file no longer names" 'run deploy .*--clear-secrets'

# After a rollback the service's template still names the newer image; the serving revision's counts.
GIVEN=$(edited "$(gcp_existing 2)" 'st["services"]["nsps-wtl-connector"]["traffic"] = [{"revisionName": "nsps-wtl-connector-00001-x1", "percent": 100}]')
scenario "gcp: env-only after a rollback" _gcp-deploy/deploy.sh --env-only; GIVEN='{}'
exits "gcp env-only after a rollback exits 0" 0
expect "gcp env-only redeploys the serving revision's image, not the newest one's" '^gcloud run deploy nsps-wtl-connector .*--image europe-west1-docker.pkg.dev/proj-1/nsps-wtl-connector/nsps-wtl-connector:old1( |$)'
refuse "gcp env-only after a rollback does not bring back the rolled-back image" 'run deploy .*:old2( |$)'

scenario "gcp: dry run on a fresh project" _gcp-deploy/deploy.sh --secrets --dry-run --yes
exits "gcp dry run exits 0" 0
check_py "gcp dry run asks the cloud only read-only questions" "$log" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if line.startswith("gcloud"):
        assert re.search(r" (describe|list|get-value)( |$)", line), line
    assert not line.startswith(("docker", "curl")), line
PY
said "gcp dry run plans the runtime account a first deploy creates" '^\+ gcloud iam service-accounts create nsps-wtl-connector-run'
said "gcp dry run plans the secrets" '^\+ gcloud secrets create nsps-wtl-connector-api-token'
said "gcp dry run plans the repository" '^\+ gcloud artifacts repositories create nsps-wtl-connector'
said "gcp dry run plans the deploy" '^\+ gcloud run deploy nsps-wtl-connector'

# ---- monitoring (GCP) ----
EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "gcp: fresh project, --monitoring" _gcp-deploy/deploy.sh --monitoring --yes; EXTRA_ENV=()
exits "gcp --monitoring deploys, then monitors" 0
expect "gcp enables Cloud Logging and Cloud Monitoring" '^gcloud services enable logging.googleapis.com monitoring.googleapis.com --project proj-1$'
for m in "${monitored[@]}"; do
  expect "gcp creates the log-based metric $m" "^gcloud logging metrics create nsps-wtl-connector_$m --project proj-1 --config-from-file /"
done
expect "gcp creates the dashboard from a file" '^gcloud monitoring dashboards create --project proj-1 --config-from-file /'
expect "gcp creates the alert policies (gcloud alpha: the only release that has them)" '^gcloud alpha monitoring policies create --project proj-1 --policy-from-file /'
expect "gcp creates the e-mail notification channel from a file" '^gcloud beta monitoring channels create --project proj-1 --channel-content-from-file /'
said "gcp prints where the dashboard is" 'monitoring dashboard: https://console.cloud.google.com/monitoring/dashboards/custom/1\?project=proj-1'
check_py "gcp: the monitoring comes after the deploy passed its smoke test" "$log" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
smoke = max(i for i, l in enumerate(lines) if l.startswith("curl"))
first = min(i for i, l in enumerate(lines) if " monitoring " in l or "logging metrics" in l or "logging.googleapis" in l)
assert smoke < first, (smoke, first)
PY
check_py "gcp: six log-based metrics, one dashboard, four policies e-mailing ALERT_EMAIL, no events for 60 min" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
names = ["events", "event_latency", "wtl_failures", "auth_failures", "store_unavailable", "http_5xx"]
assert sorted(st["log_metrics"]) == sorted("nsps-wtl-connector_" + n for n in names), sorted(st["log_metrics"])
wtl = st["log_metrics"]["nsps-wtl-connector_wtl_failures"]["config"]
assert 'resource.labels.service_name="nsps-wtl-connector"' in wtl["filter"], wtl["filter"]
assert 'jsonPayload.message="WTL call failed"' in wtl["filter"], wtl["filter"]
assert wtl["labelExtractors"]["kind"] == "EXTRACT(jsonPayload.outcome)", wtl
assert 'httpRequest.status>=500' in st["log_metrics"]["nsps-wtl-connector_http_5xx"]["config"]["filter"]
latency = st["log_metrics"]["nsps-wtl-connector_event_latency"]["config"]
assert latency["valueExtractor"] == "EXTRACT(jsonPayload.latency_ms)" and latency["metricDescriptor"]["valueType"] == "DISTRIBUTION"
mon = st["monitoring"]
assert len(mon["dashboards"]) == 1 and len(mon["policies"]) == 4 and len(mon["channels"]) == 1, {k: len(v) for k, v in mon.items()}
channel = mon["channels"][0]
assert channel["labels"]["email_address"] == "oncall@example.com"
assert all(p["notificationChannels"] == [channel["name"]] for p in mon["policies"])
absent = [c["conditionAbsent"] for p in mon["policies"] for c in p["conditions"] if "conditionAbsent" in c]
assert len(absent) == 1 and absent[0]["duration"] == "3600s", absent
assert sorted(p["displayName"] for p in mon["policies"]) == sorted("nsps-wtl-connector: " + t for t in
    ["5xx answers", "WTL failures", "Redelivery store unavailable", "No events"])
PY
gcp_monitored=$(state)

GIVEN='{"metric_lag": 2}'
scenario "gcp: --monitoring while alerting does not know the new metrics yet" _gcp-deploy/deploy.sh --monitoring --yes; GIVEN='{}'
exits "gcp --monitoring waits for the new metrics instead of failing a deployed service" 0
said "gcp says what it waits for" 'waiting 0s for the new log-based metrics to reach alerting'
check_py "gcp: every alert policy made once the metrics are known" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
assert len(st["monitoring"]["policies"]) == 4, [p["displayName"] for p in st["monitoring"]["policies"]]
PY

GIVEN=${gcp_monitored%\}}', "monitoring_list_fails": true}'
EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "gcp: --monitoring-only while Cloud Monitoring cannot list" _gcp-deploy/deploy.sh --monitoring-only; GIVEN='{}'; EXTRA_ENV=()
exits "gcp --monitoring-only stops when a look-up fails" nonzero
refuse "gcp makes no second channel, dashboard or policy it could not look for" 'monitoring [a-z]+ create'
said "gcp shows the look-up's error" 'UNAVAILABLE'

GIVEN=$gcp_monitored
EXTRA_ENV=(ALERT_EMAIL=oncall@example.com NO_EVENTS_ALERT_MINUTES=30)
scenario "gcp: --monitoring-only on a monitored project" _gcp-deploy/deploy.sh --monitoring-only; GIVEN='{}'; EXTRA_ENV=()
exits "gcp --monitoring-only exits 0" 0
refuse "gcp: a second run creates nothing" '^gcloud (logging metrics|(alpha |beta )?monitoring [a-z]+) create'
refuse "gcp --monitoring-only builds, deploys and smoke-tests nothing" 'run deploy|builds submit|^curl '
for m in "${monitored[@]}"; do
  expect "gcp updates the log-based metric $m" "^gcloud logging metrics update nsps-wtl-connector_$m --project proj-1 --config-from-file /"
done
expect "gcp updates the dashboard it found by its name" '^gcloud monitoring dashboards update projects/proj-1/dashboards/1 --project proj-1 --config-from-file /'
expect "gcp updates the policies it found by their names" '^gcloud alpha monitoring policies update projects/proj-1/alertPolicies/4 --project proj-1 --policy-from-file /'
check_py "gcp: still one of each, every one updated once, the no-events window now 30 min" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
mon = st["monitoring"]
assert len(st["log_metrics"]) == 6 and all(m["updates"] == 1 for m in st["log_metrics"].values()), st["log_metrics"]
assert len(mon["dashboards"]) == 1 and mon["dashboards"][0]["updates"] == 1
assert len(mon["policies"]) == 4 and all(p["updates"] == 1 for p in mon["policies"])
assert len(mon["channels"]) == 1
absent = [c["conditionAbsent"] for p in mon["policies"] for c in p["conditions"] if "conditionAbsent" in c]
assert absent[0]["duration"] == "1800s", absent
PY

EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "gcp: dry run of --monitoring-only on a fresh project" _gcp-deploy/deploy.sh --monitoring-only --dry-run; EXTRA_ENV=()
exits "gcp monitoring dry run exits 0" 0
check_py "gcp monitoring dry run only reads" "$log" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    assert re.search(r" (describe|list|get-value)( |$)", line), line
PY
said "gcp monitoring dry run plans the metrics" '^\+ gcloud logging metrics create nsps-wtl-connector_events '
said "gcp monitoring dry run plans the channel" '^\+ gcloud beta monitoring channels create '
said "gcp monitoring dry run plans the policies" '^\+ gcloud alpha monitoring policies create '
GIVEN=$gcp_monitored
scenario "gcp: dry run of --monitoring-only on a monitored project" _gcp-deploy/deploy.sh --monitoring-only --dry-run; GIVEN='{}'
said "gcp monitoring dry run plans updates where things exist" '^\+ gcloud monitoring dashboards update projects/proj-1/dashboards/1 '
refuse "gcp monitoring dry run changes nothing" ' (create|update|enable) '

EXTRA_ENV=(NO_EVENTS_ALERT_MINUTES=1 ALERT_EMAIL="a@b.c, d@e.f")
scenario "gcp: --monitoring with bad settings" _gcp-deploy/deploy.sh --monitoring --yes; EXTRA_ENV=()
exits "gcp refuses NO_EVENTS_ALERT_MINUTES out of range and a list of addresses" 2
said "gcp names NO_EVENTS_ALERT_MINUTES" 'NO_EVENTS_ALERT_MINUTES must be a number of minutes from 2 to 1440'
said "gcp names ALERT_EMAIL" 'ALERT_EMAIL must be one e-mail address'
refuse "gcp runs nothing with bad monitoring settings" '^(gcloud|docker|curl) '

GIVEN=$(gcp_existing 1); GIVEN=${GIVEN%\}}', "jobs": ["nsps-wtl-connector-check"]}'
scenario "gcp: destroy" _gcp-deploy/deploy.sh --destroy --yes; GIVEN='{}'
expect "gcp destroy deletes the service" '^gcloud run services delete nsps-wtl-connector --project proj-1 --region europe-west1 --quiet'
expect "gcp destroy deletes the check job" '^gcloud run jobs delete nsps-wtl-connector-check '
refuse "gcp destroy deploys nothing" 'run deploy|builds submit'

GIVEN='{"jobs": ["nsps-wtl-connector-check"]}'
scenario "gcp: destroy with the service already gone" _gcp-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "gcp destroy of what is left exits 0" 0
refuse "gcp destroy deletes no service that is not there" 'run services delete'
expect "gcp destroy still deletes the check job" '^gcloud run jobs delete nsps-wtl-connector-check '
said "gcp destroy names what it deleted" '^deleted: the check job nsps-wtl-connector-check$'
said "gcp destroy names what it kept" '^kept: the images in nsps-wtl-connector, the secrets, nsps-wtl-connector-run@proj-1.iam.gserviceaccount.com and the monitoring'

GIVEN=$(gcp_existing 1); GIVEN=${GIVEN%\}}', "describe_fails": true}'
scenario "gcp: destroy when the look-up fails" _gcp-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "gcp destroy stops when it cannot look" nonzero
refuse "gcp destroy deletes nothing it could not look at" 'delete'
said "gcp destroy shows the look-up's error" 'PERMISSION_DENIED'
grep -q '^deleted' "$sandbox/out" && bad "gcp destroy claims a deletion it did not make" || ok "gcp destroy claims no deletion"

GIVEN=$(gcp_existing 1); GIVEN=${GIVEN%\}}', "describe_fails": true}'
scenario "gcp: deploy when the service look-up fails" _gcp-deploy/deploy.sh --yes; GIVEN='{}'
exits "gcp deploy stops when it cannot look at the service" nonzero
refuse "gcp does not take a service it could not look at for a new one (no deploy straight to traffic)" 'run deploy'
said "gcp deploy shows the look-up's error" 'PERMISSION_DENIED'
GIVEN=$(gcp_existing 1)
scenario "gcp: destroy without --yes and no terminal" _gcp-deploy/deploy.sh --destroy; GIVEN='{}'
exits "gcp destroy refuses without confirmation" nonzero
refuse "gcp unconfirmed destroy deletes nothing" 'delete'
said "gcp asks about what it found" 'Delete Cloud Run service nsps-wtl-connector in proj-1/europe-west1\?: pass --yes'
scenario "gcp: destroy with nothing there, without --yes" _gcp-deploy/deploy.sh --destroy
exits "gcp destroy of nothing needs no confirmation" 0
said "gcp says there was nothing to delete" '^nothing deleted: no service nsps-wtl-connector and no job nsps-wtl-connector-check'
refuse "gcp destroy of nothing deletes nothing" 'delete'

EXTRA_ENV=(API_TOKEN=)
scenario "gcp: a missing setting" _gcp-deploy/deploy.sh --yes; EXTRA_ENV=()
exits "gcp refuses a missing setting" 2
said "gcp names the missing setting" 'API_TOKEN is required'
refuse "gcp runs nothing before the settings are complete" '^(gcloud|docker|curl) '
scenario "gcp: help" _gcp-deploy/deploy.sh --help
exits "gcp --help exits 0" 0
said "gcp --help lists --rollback" '--rollback'
scenario "gcp: an unknown option" _gcp-deploy/deploy.sh --frobnicate
exits "gcp rejects an unknown option" 2
}

# ================= AWS =================
# The AWS script against the fake aws.
aws_scenarios() {
EXTRA_ENV=("${all_vars[@]}")
scenario "aws: fresh account, --secrets --check (ECS Express Mode)" _aws-deploy/deploy.sh --secrets --check --yes
EXTRA_ENV=()
exits "aws fresh account deploys" 0
said "aws chooses ECS where App Runner has no such service" 'target: ecs'
expect "aws creates the ECR repository" '^aws ecr create-repository --region eu-central-1 --repository-name nsps-wtl-connector'
expect "aws builds for linux/amd64 and pushes" '^docker push 123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:'
expect "aws creates the execution role with the task execution policy" '^aws iam attach-role-policy --role-name nsps-wtl-connector-execution --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy'
expect "aws creates the infrastructure role with Express Mode's policy" '^aws iam attach-role-policy --role-name nsps-wtl-connector-infrastructure --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSInfrastructureRoleforExpressGatewayServices'
expect "aws creates the service" '^aws ecs create-express-gateway-service --region eu-central-1 --service-name nsps-wtl-connector --cluster default --infrastructure-role-arn arn:aws:iam::123456789012:role/nsps-wtl-connector-infrastructure --execution-role-arn arn:aws:iam::123456789012:role/nsps-wtl-connector-execution'
expect "aws: health check /health, scaling" 'create-express-gateway-service .*--health-check-path /health .*--scaling-target minTaskCount=1,maxTaskCount=3,'
expect "aws runs check as a one-off task of the service" '^aws ecs run-task --region eu-central-1 --cluster default --launch-type FARGATE --task-definition arn:aws:ecs:eu-central-1:123456789012:task-definition/connector:3'
expect "aws smoke-tests the service URL" '^curl .*https://nsps-wtl-connector.ecs.eu-central-1.on.aws/health'
said "aws says where the logs are" 'logs: aws logs tail /ecs/nsps-wtl-connector'
check_py "aws: trust policies name the right services" "$FAKE_STATE/state.json" <<'PY'
import json, sys
roles = json.load(open(sys.argv[1]))["roles"]
principal = lambda r: roles[r]["trust"]["Statement"][0]["Principal"]["Service"]
assert principal("nsps-wtl-connector-execution") == "ecs-tasks.amazonaws.com"
assert principal("nsps-wtl-connector-infrastructure") == "ecs.amazonaws.com"
PY
check_py "aws: every variable reaches the container; secrets by the full ARN Secrets Manager returned" \
  "$FAKE_STATE/container.json" "$FAKE_STATE/state.json" "$regex" <<'PY'
import json, sys
container = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
state = json.load(open(sys.argv[2]))
env = {e["name"]: e["value"] for e in container["environment"]}
secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
arns = {s["Name"].split("/", 1)[1]: s["ARN"] for s in state["secrets"].values()}
kinds = dict(line.split() for line in open("_deploy-common/variables.txt"))
for name, kind in kinds.items():
    if kind == "platform":
        assert name not in env
    elif kind == "secret":
        assert name not in env and secrets[name] == arns[name], (name, secrets.get(name))
        assert secrets[name].rsplit("-", 1)[1].isalpha() and len(secrets[name].rsplit("-", 1)[1]) == 6, secrets[name]
    elif kind == "secret-file":
        assert name not in env, f"{name} names a file of the deploying machine"
    else:
        assert name in env, f"{name} did not reach the service"
assert env["WTL_IMSI_REGEXP"] == sys.argv[3]
assert container["containerPort"] == 8000 and container["awsLogsConfiguration"]["logGroup"] == "/ecs/nsps-wtl-connector"
PY
check_py "aws: the execution role may read exactly the service's secrets" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
policy = st["roles"]["nsps-wtl-connector-execution"]["inline"]["read-own-secrets"]["Statement"][0]
assert policy["Action"] == "secretsmanager:GetSecretValue"
assert sorted(policy["Resource"]) == sorted(s["ARN"] for s in st["secrets"].values()), policy
PY
check_py "aws: the check task runs \`check\` in the service's network" "$FAKE_STATE/overrides.json" "$FAKE_STATE/task-network.json" <<'PY'
import json, sys
overrides = json.loads(open(sys.argv[1]).read())
assert overrides["containerOverrides"][0]["command"] == ["check"], overrides
network = json.loads(open(sys.argv[2]).read())
assert network["awsvpcConfiguration"]["subnets"] == ["subnet-1"], network
PY

secrets_again aws _aws-deploy/deploy.sh '^aws secretsmanager (put-secret-value|create-secret) ' \
  '^secret nsps-wtl-connector/WTL_API_TOKEN: its current version holds the value of WTL_API_TOKEN already; no new version$'

GIVEN='{"check_fails": true}'
scenario "aws: the check fails" _aws-deploy/deploy.sh --check --yes; GIVEN='{}'
exits "aws: a failing check exits non-zero" nonzero
said "aws says where the check's lines are" 'check failed .*aws logs tail /ecs/nsps-wtl-connector'

GIVEN='{"ecs_rolls_back": true}'
scenario "aws: ECS rolls the deployment back" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: a rolled-back ECS deployment exits non-zero" nonzero
said "aws says it rolled back" 'ROLLBACK_SUCCESSFUL'
refuse "aws: no smoke test after a rollback" '^curl '

GIVEN='{"ecs_stalls": true}'; EXTRA_ENV=(WAIT_TIMEOUT=2 POLL_SECONDS=1)
scenario "aws: an ECS deployment that never ends" _aws-deploy/deploy.sh --yes; GIVEN='{}'; EXTRA_ENV=()
exits "aws: a deployment still running at WAIT_TIMEOUT exits non-zero" nonzero
said "aws says the deployment is not finished, and its status" 'deployment is not finished after 2s \(IN_PROGRESS'
times "aws polls the deployment until WAIT_TIMEOUT (once a POLL_SECONDS)" '^aws ecs describe-service-deployments ' 3
refuse "aws: no smoke test of a deployment still running" '^curl '

GIVEN='{"iam_lag": 2}'
scenario "aws: IAM still propagating (ECS)" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws survives IAM's propagation delay" 0
said "aws says it waits for IAM" 'waiting .* for IAM to propagate'

# ecs_existing [STATUS] [MORE]: the state with an ECS service (ACTIVE, DRAINING or INACTIVE) and
# its roles; MORE: further members of the state (", \"key\": value").
ecs_existing() {
  printf '{"ecs": {"arn:aws:ecs:eu-central-1:123456789012:service/default/nsps-wtl-connector": {"serviceArn": "arn:aws:ecs:eu-central-1:123456789012:service/default/nsps-wtl-connector", "serviceName": "nsps-wtl-connector", "status": "%s", "deployments": [{"arn": "d0", "status": "SUCCESSFUL"}], "configuration": {"serviceRevisionArn": "r0", "primaryContainer": {"image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:old"}, "ingressPaths": [{"accessType": "PUBLIC", "endpoint": "nsps-wtl-connector.ecs.eu-central-1.on.aws"}]}}}, "roles": {"nsps-wtl-connector-execution": {}, "nsps-wtl-connector-infrastructure": {}}%s}' "${1:-ACTIVE}" "${2:-}"
}
GIVEN=$(ecs_existing)
scenario "aws: ECS env-only" _aws-deploy/deploy.sh --env-only
exits "aws ECS env-only exits 0" 0
expect "aws ECS env-only updates the service" '^aws ecs update-express-gateway-service --region eu-central-1 --service-arn arn:aws:ecs:eu-central-1:123456789012:service/default/nsps-wtl-connector'
refuse "aws ECS env-only builds nothing" '^docker (build|push)'
refuse "aws ECS update creates no roles" 'iam create-role'
expect "aws attaches a role's policy that an earlier run did not" '^aws iam attach-role-policy --role-name nsps-wtl-connector-execution --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy'
check_py "aws ECS env-only keeps the running image" "$FAKE_STATE/container.json" <<'PY'
import json, sys
assert json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["image"].endswith(":old")
PY
EXTRA_ENV=(IMAGE_TAG=abc1234-20261101120000); GIVEN=${GIVEN%\}}', "image_tags": ["abc1234-20261101120000"]}'
scenario "aws: ECS back to an earlier image" _aws-deploy/deploy.sh --yes; EXTRA_ENV=()
exits "aws deploys an earlier image" 0
refuse "aws does not rebuild an image already in ECR" '^docker (build|push)'
expect "aws deploys the earlier tag" '^aws ecs update-express-gateway-service '
check_py "aws: the container runs the earlier image" "$FAKE_STATE/container.json" <<'PY'
import json, sys
assert json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["image"].endswith(":abc1234-20261101120000")
PY
scenario "aws: ECS test-only" _aws-deploy/deploy.sh --test-only
expect "aws test-only smoke-tests the ECS service" '^curl .*https://nsps-wtl-connector.ecs.eu-central-1.on.aws/health'
refuse "aws test-only changes nothing" 'create|update|docker'

scenario "aws: App Runner test-only with no service" _aws-deploy/deploy.sh --target apprunner --test-only
exits "aws test-only without a service exits non-zero" nonzero
said "aws test-only says there is no service" 'error: no apprunner service nsps-wtl-connector in eu-central-1'
scenario "aws: ECS destroy" _aws-deploy/deploy.sh --destroy --yes; GIVEN='{}'
expect "aws destroy deletes the ECS service" '^aws ecs delete-express-gateway-service --region eu-central-1 --service-arn arn:aws:ecs:eu-central-1:123456789012:service/default/nsps-wtl-connector'
GIVEN=$(state)
scenario "aws: ECS destroy again while the deletion runs" _aws-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "aws: a second destroy exits 0" 0
said "aws: it says the service is being deleted" 'is being deleted already'
refuse "aws: it deletes nothing a second time" 'delete-express-gateway-service'

GIVEN=$(ecs_existing ACTIVE ', "describe_fails": true')
scenario "aws: ECS deploy when the service look-up fails" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: a deploy stops when it cannot look at the service" nonzero
said "aws: it shows the look-up's error" 'AccessDeniedException'
refuse "aws: it stores, builds and deploys nothing when it could not look at the service" 'create-express|update-express|docker|secretsmanager (create|put)'
GIVEN=$(ecs_existing ACTIVE ', "describe_fails": true')
scenario "aws: ECS destroy when the look-up fails" _aws-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "aws: destroy stops when it cannot look" nonzero
refuse "aws: destroy deletes nothing it could not look at" 'delete'
grep -q '^no ECS service' "$sandbox/out" && bad "aws destroy claims there is no service" || ok "aws destroy claims nothing about the service"

GIVEN=$(ecs_existing DRAINING)
scenario "aws: ECS deploy while the service is being deleted" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: a deploy into a deletion exits non-zero" nonzero
said "aws: it says to wait for the deletion" 'is being deleted \(DRAINING\); run again once it is gone'
refuse "aws: it changes no service" 'create-express|update-express|docker'
GIVEN=$(ecs_existing INACTIVE)
scenario "aws: ECS deploy after the service was deleted" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: a deploy after a deletion exits 0" 0
expect "aws: a deleted service is made again" '^aws ecs create-express-gateway-service '
refuse "aws: a deleted service is not updated" 'update-express-gateway-service'
GIVEN=$(ecs_existing INACTIVE)
scenario "aws: ECS destroy of a deleted service" _aws-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "aws: destroy of a deleted service exits 0" 0
said "aws: it says there is no service" '^no ECS service nsps-wtl-connector in eu-central-1'
refuse "aws: it deletes nothing" 'delete-express-gateway-service'

GIVEN='{"apprunner_refuses": true}'
scenario "aws: no --target, App Runner refuses the account" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: the deploy goes to ECS" 0
said "aws: it says why it chose ECS" "App Runner could not be asked for a service nsps-wtl-connector \(An error occurred \(AccessDeniedException\).*; using ECS"
expect "aws: it deploys to ECS" '^aws ecs create-express-gateway-service '
GIVEN='{"apprunner_refuses": true}'
scenario "aws: --target apprunner, App Runner refuses the account" _aws-deploy/deploy.sh --target apprunner --yes; GIVEN='{}'
exits "aws: the deploy stops" nonzero
said "aws: it shows App Runner's refusal" 'AccessDeniedException'
refuse "aws: it makes no App Runner service" 'apprunner (create|update)-service|docker'

apprunner_given='{"apprunner": {"arn:aws:apprunner:eu-central-1:123456789012:service/nsps-wtl-connector/svc1": {"ServiceName": "nsps-wtl-connector", "ServiceUrl": "abc123.eu-central-1.awsapprunner.com", "Status": "RUNNING", "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:old"}}}}, "repos": ["nsps-wtl-connector"]'
GIVEN="$apprunner_given}"
scenario "aws: existing App Runner service, --secrets" _aws-deploy/deploy.sh --secrets --yes
exits "aws App Runner update exits 0" 0
said "aws keeps App Runner where the service runs there" 'target: apprunner'
expect "aws updates the App Runner service" '^aws apprunner update-service --region eu-central-1 --service-arn arn:aws:apprunner:eu-central-1:123456789012:service/nsps-wtl-connector/svc1'
expect "aws waits for the update operation" "^aws apprunner list-operations .*Id=='op-1'"
expect "aws creates an instance role for the secrets" '^aws iam create-role --role-name nsps-wtl-connector-apprunner-instance '
expect "aws: the service reads its secrets with that role" 'update-service .*--instance-configuration Cpu=0.25 vCPU,Memory=0.5 GB,InstanceRoleArn=arn:aws:iam::123456789012:role/nsps-wtl-connector-apprunner-instance'
refuse "aws: App Runner deploys no ECS service" 'express-gateway'
check_py "aws App Runner: secrets by full ARN, settings intact, the instance role trusted and limited" \
  "$FAKE_STATE/source.json" "$FAKE_STATE/state.json" "$regex" <<'PY'
import json, sys
source = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
st = json.load(open(sys.argv[2]))
cfg = source["ImageRepository"]["ImageConfiguration"]
arns = {s["Name"].split("/", 1)[1]: s["ARN"] for s in st["secrets"].values()}
assert cfg["RuntimeEnvironmentSecrets"] == {"API_TOKEN": arns["API_TOKEN"], "WTL_API_TOKEN": arns["WTL_API_TOKEN"]}, cfg
assert "API_TOKEN" not in cfg["RuntimeEnvironmentVariables"]
assert cfg["RuntimeEnvironmentVariables"]["WTL_IMSI_REGEXP"] == sys.argv[3]
role = st["roles"]["nsps-wtl-connector-apprunner-instance"]
assert role["trust"]["Statement"][0]["Principal"]["Service"] == "tasks.apprunner.amazonaws.com"
assert sorted(role["inline"]["read-own-secrets"]["Statement"][0]["Resource"]) == sorted(arns.values())
PY

GIVEN="$apprunner_given, \"apprunner_rolls_back\": true}"
scenario "aws: App Runner rolls the update back" _aws-deploy/deploy.sh --yes; GIVEN='{}'
exits "aws: an App Runner update that rolled back exits non-zero" nonzero
said "aws names the rollback" 'ROLLBACK_SUCCEEDED'
refuse "aws: no smoke test after a rollback" '^curl '

GIVEN="$apprunner_given, \"apprunner_stalls\": true}"; EXTRA_ENV=(WAIT_TIMEOUT=0)
scenario "aws: an App Runner update that never ends" _aws-deploy/deploy.sh --yes; GIVEN='{}'; EXTRA_ENV=()
exits "aws: an App Runner operation still running at WAIT_TIMEOUT exits non-zero" nonzero
said "aws names the operation that is not finished" 'App Runner operation op-1 is not finished after 0s \(IN_PROGRESS\)'
refuse "aws: no smoke test of an update still running" '^curl '

EXTRA_ENV=(SERVICE_NAME=nsps-wtl-connector-operator-emea-prod-01 MAX_INSTANCES=4)
scenario "aws: App Runner, a 40-character service name" _aws-deploy/deploy.sh --target apprunner --secrets --yes; EXTRA_ENV=()
exits "aws: a 40-character service name deploys on App Runner" 0
expect "aws: the scaling configuration name fits 32 characters" '^aws apprunner create-auto-scaling-configuration .*--auto-scaling-configuration-name nsps-wtl-connector-oper-[0-9a-f]{8} --min-size 1 --max-size 4'
expect "aws creates the App Runner service" '^aws apprunner create-service --region eu-central-1 --service-name nsps-wtl-connector-operator-emea-prod-01 '

GIVEN="$apprunner_given}"
scenario "aws: App Runner with --tracing" _aws-deploy/deploy.sh --tracing --yes; GIVEN='{}'
exits "aws App Runner --tracing exits 0" 0
expect "aws --tracing creates an X-Ray observability configuration" '^aws apprunner create-observability-configuration --region eu-central-1 --observability-configuration-name nsps-wtl-connector-xray --trace-configuration Vendor=AWSXRAY'
expect "aws --tracing turns it on for the service" 'update-service .*--observability-configuration ObservabilityEnabled=true,ObservabilityConfigurationArn=arn:aws:apprunner:eu-central-1:123456789012:observabilityconfiguration/nsps-wtl-connector-xray/1/abc'
expect "aws --tracing: the instance role may write to X-Ray" '^aws iam attach-role-policy --role-name nsps-wtl-connector-apprunner-instance --policy-arn arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess'
check_py "aws --tracing: the connector sends its spans to App Runner's collector" "$FAKE_STATE/source.json" <<'PY'
import json, sys
env = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["ImageRepository"]["ImageConfiguration"]["RuntimeEnvironmentVariables"]
assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4317" and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc", env
PY
scenario "aws: --tracing on ECS" _aws-deploy/deploy.sh --tracing --yes
exits "aws --tracing on ECS Express Mode says why it cannot" 2
said "aws names the way to trace on ECS" 'OTEL_EXPORTER_OTLP_ENDPOINT'

scenario "aws: one egress address (ECS)" _aws-deploy/deploy.sh --static-egress-ip --yes
exits "aws --static-egress-ip exits 0" 0
expect "aws allocates an Elastic IP" '^aws ec2 allocate-address --region eu-central-1 --domain vpc'
expect "aws creates the NAT gateway with it" '^aws ec2 create-nat-gateway --region eu-central-1 --subnet-id subnet-0001 --allocation-id eipalloc-0001'
expect "aws routes the private subnets through the NAT gateway" '^aws ec2 create-route .*--destination-cidr-block 0.0.0.0/0 --nat-gateway-id nat-0001'
expect "aws runs the service in those subnets" 'create-express-gateway-service .*--network-configuration subnets=subnet-0002,subnet-0004,subnet-0001,subnet-0003,securityGroups=sg-0001'
said "aws prints the egress address" 'egress address \(allow it in the HLR.s firewall\): 3.120.0.7'
egress_ecs=$(state)

scenario "aws: one egress address (App Runner)" _aws-deploy/deploy.sh --target apprunner --static-egress-ip --yes
exits "aws App Runner --static-egress-ip exits 0" 0
expect "aws creates the App Runner VPC connector in the private subnets" '^aws apprunner create-vpc-connector --region eu-central-1 --vpc-connector-name nsps-wtl-connector-egress --subnets subnet-0002 subnet-0004 --security-groups sg-0001 '
expect "aws sends the service's egress through it" 'create-service .*--network-configuration EgressConfiguration=\{EgressType=VPC,VpcConnectorArn=arn:aws:apprunner:eu-central-1:123456789012:vpcconnector/nsps-wtl-connector-egress/1/abc\}'
GIVEN=$(state)
scenario "aws: one egress address (App Runner), second run" _aws-deploy/deploy.sh --target apprunner --static-egress-ip --yes; GIVEN='{}'
exits "aws App Runner --static-egress-ip runs again" 0
refuse "aws: the second run creates no second VPC connector (one per name)" 'create-vpc-connector'
expect "aws: the second run reuses the connector" 'update-service .*VpcConnectorArn=arn:aws:apprunner:eu-central-1:123456789012:vpcconnector/nsps-wtl-connector-egress/1/abc\}'
refuse "aws: the second run builds no second egress network" 'create-vpc |allocate-address|create-nat-gateway'
refuse "aws: the second run attaches no role policy again" 'attach-role-policy'
egress_apprunner=$(state)
GIVEN=$(edited "$egress_apprunner" 'st["vpc_connectors"][0]["Subnets"] = ["subnet-gone-a", "subnet-gone-b"]')
scenario "aws: an App Runner VPC connector into other subnets" _aws-deploy/deploy.sh --target apprunner --static-egress-ip --yes; GIVEN='{}'
exits "aws refuses a VPC connector that leads elsewhere" 1
said "aws says where the connector leads and where the egress VPC is" 'VPC connector nsps-wtl-connector-egress uses subnets subnet-gone-a,subnet-gone-b and security group sg-0001; the egress VPC.s private subnets are subnet-0002,subnet-0004 and its security group sg-0001'
said "aws says how to replace it" 'aws apprunner delete-vpc-connector --region eu-central-1 --vpc-connector-arn arn:aws:apprunner:eu-central-1:123456789012:vpcconnector/nsps-wtl-connector-egress/1/abc'
refuse "aws deploys nothing through a connector that leads elsewhere" 'apprunner (create|update)-service|create-vpc-connector'
GIVEN=$(edited "$egress_apprunner" 'st["ec2"].pop("nat", None)
st["ec2"].pop("eip", None)')
scenario "aws: an egress VPC a run left half-built" _aws-deploy/deploy.sh --target apprunner --static-egress-ip --yes; GIVEN='{}'
exits "aws refuses a half-built egress VPC" nonzero
said "aws names what the egress VPC lacks" 'egress VPC vpc-0001 \(tagged nsps-wtl-connector-egress\) is incomplete.*lacks: the Elastic IP tagged nsps-wtl-connector-egress, an available NAT gateway'
refuse "aws deploys nothing into a half-built egress VPC" 'apprunner (create|update)-service|create-vpc-connector'

GIVEN='{"vpc_lookup_refused": true}'
scenario "aws: --static-egress-ip when the VPC look-up is refused" _aws-deploy/deploy.sh --static-egress-ip --yes; GIVEN='{}'
exits "aws stops when it cannot look for the egress VPC" 3
said "aws shows the refusal" 'UnauthorizedOperation'
refuse "aws builds no second egress VPC and deploys nothing" 'create-vpc|(create|update)-express-gateway-service'

GIVEN=$egress_ecs
scenario "aws: destroy keeps the egress VPC" _aws-deploy/deploy.sh --destroy --yes; GIVEN='{}'
exits "aws destroy with an egress VPC exits 0" 0
said "aws destroy names what it deleted" '^deleted: the ECS service nsps-wtl-connector$'
said "aws destroy says the egress VPC and its cost are kept" '^kept: .*the egress VPC vpc-0001 with its NAT gateway and Elastic IP 3.120.0.7, billed by the hour while they exist \(--purge-egress\)'
said "aws destroy says the images are kept" '^kept: the ECR repository nsps-wtl-connector \(--purge-images\)'
refuse "aws destroy leaves the egress network alone" 'ec2 (delete|release|detach)-'

GIVEN=${egress_ecs%\}}', "eni_lingers": 2}'
scenario "aws: destroy --purge-egress (ECS)" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws destroy --purge-egress exits 0" 0
said "aws waits while the service's network interfaces linger" 'waiting 0s for network interfaces to leave the subnet: .*DependencyViolation'
said "aws names the egress VPC among what it deleted" '^deleted: the ECS service nsps-wtl-connector; the egress VPC vpc-0001 with its NAT gateway and Elastic IP 3.120.0.7$'
check_py "aws deletes the service, waits for it, then the egress network in the order EC2 allows" "$(called)" "$FAKE_STATE/state.json" <<'PY'
import json, re, sys
calls = sys.argv[1].splitlines()
changes = [c for c in calls if re.match(r"aws \S+ (delete|release|detach)-", c)]
assert changes == ["aws ecs delete-express-gateway-service", "aws ec2 delete-nat-gateway", "aws ec2 release-address"] + \
                  ["aws ec2 delete-subnet"] * 6 + ["aws ec2 delete-route-table"] * 2 + \
                  ["aws ec2 detach-internet-gateway", "aws ec2 delete-internet-gateway", "aws ec2 delete-security-group",
                   "aws ec2 delete-vpc"], changes
# the service was seen gone (INACTIVE) before the first network deletion; the NAT gateway seen deleted before its address went
first_net = calls.index("aws ec2 delete-nat-gateway")
assert calls[:first_net].count("aws ecs describe-express-gateway-service") >= 3, calls[:first_net]
assert "aws ec2 describe-nat-gateways" in calls[first_net:calls.index("aws ec2 release-address")]
ec2 = json.load(open(sys.argv[2]))["ec2"]
left = {k: [i["id"] for i in v if not i.get("deleted")] for k, v in ec2.items() if k in ("vpc", "subnet", "igw", "rtb", "eip", "nat", "sg")}
assert not any(left.values()), left
PY
refuse "aws leaves the main route table and the default security group to the VPC's deletion" '--route-table-id rtb-main|--group-id sg-default'

GIVEN=${egress_ecs%\}}', "describe_fails_after": 2}'
scenario "aws: destroy --purge-egress, the look-up fails while waiting" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: destroy stops when it cannot see the service go" 3
said "aws: it shows the look-up's error" 'AccessDeniedException'
refuse "aws: it deletes no egress network it could not see freed" 'ec2 (delete|release|detach)-'

GIVEN=$egress_apprunner
scenario "aws: destroy --purge-egress (App Runner)" _aws-deploy/deploy.sh --target apprunner --destroy --purge-egress --yes; GIVEN='{}'
exits "aws App Runner destroy --purge-egress exits 0" 0
check_py "aws waits for the App Runner service to be deleted, then deletes its VPC connector before the subnets" "$(called)" "$FAKE_STATE/state.json" <<'PY'
import json, sys
calls = sys.argv[1].splitlines()
i = calls.index("aws apprunner delete-service")
j = calls.index("aws apprunner delete-vpc-connector")
assert "aws apprunner describe-service" in calls[i:j], calls[i:j]
assert j < calls.index("aws ec2 delete-subnet")
assert [c["Status"] for c in json.load(open(sys.argv[2]))["vpc_connectors"]] == ["INACTIVE"]
PY

GIVEN=$(edited "$egress_apprunner" 'st["apprunner"] = {}  # an earlier --destroy deleted the service; its connector stays')
scenario "aws: destroy --purge-egress after the App Runner service is gone (no --target)" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: purge without the service exits 0" 0
said "aws: the target is ECS, as App Runner has no service" '^target: ecs'
expect "aws: App Runner's connector is deleted all the same" '^aws apprunner delete-vpc-connector '
check_py "aws: the connector goes before the subnets, and nothing is left" "$(called)" "$FAKE_STATE/state.json" <<'PY'
import json, sys
calls = sys.argv[1].splitlines()
assert calls.index("aws apprunner delete-vpc-connector") < calls.index("aws ec2 delete-subnet")
st = json.load(open(sys.argv[2]))
assert [c["Status"] for c in st["vpc_connectors"]] == ["INACTIVE"]
assert not [i for k, v in st["ec2"].items() if k in ("vpc", "subnet", "nat", "eip") for i in v if not i.get("deleted")]
PY

GIVEN=${egress_ecs%\}}', "apprunner_refuses": true}'
scenario "aws: destroy --purge-egress when App Runner cannot be asked" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: purge stops when App Runner cannot be asked" 3
said "aws: it says what to pass" 'pass --target ecs if this account has no App Runner'
refuse "aws: it deletes nothing" 'delete|release|detach'
GIVEN=${egress_ecs%\}}', "apprunner_refuses": true}'
scenario "aws: destroy --purge-egress --target ecs where App Runner refuses the account" _aws-deploy/deploy.sh --target ecs --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: purge with --target ecs exits 0" 0
expect "aws: the VPC is deleted" '^aws ec2 delete-vpc '

GIVEN=$(edited "$egress_ecs" 'st["ecs"], st["no_cluster"] = {}, True')
scenario "aws: destroy --purge-egress with a cluster that is not there" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: purge stops when the cluster is not there" 1
said "aws: it names ECS_CLUSTER" 'ECS has no cluster default in eu-central-1 \(ECS_CLUSTER\), so no service could be seen gone'
refuse "aws: it deletes no network" 'ec2 (delete|release|detach)'

GIVEN=$(edited "$egress_ecs" 'st["ecs"] = {}
st["ec2"]["nat"][0]["state"] = "deleting"  # left by an interrupted deletion')
scenario "aws: destroy --purge-egress after an interrupted one" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: the second purge exits 0" 0
refuse "aws: a NAT gateway being deleted is not deleted again" 'delete-nat-gateway'
check_py "aws: it waits for that NAT gateway before releasing its address" "$log" <<'PY'
import sys
calls = [l for l in open(sys.argv[1]) if l.startswith("aws ")]
release = next(i for i, l in enumerate(calls) if l.startswith("aws ec2 release-address"))
assert any("--nat-gateway-ids nat-0001" in l for l in calls[:release]), calls[:release]
PY

GIVEN=${egress_ecs%\}}', "sg_vanishes": ["sg-0001"]}'
scenario "aws: destroy --purge-egress while ECS removes a security group itself" _aws-deploy/deploy.sh --destroy --purge-egress --yes; GIVEN='{}'
exits "aws: a security group already gone does not stop the purge" 0
said "aws: it says the group was gone" 'already gone: .*InvalidGroup.NotFound'
expect "aws: the VPC is deleted" '^aws ec2 delete-vpc '

GIVEN=$egress_ecs
scenario "aws: destroy --purge-egress, dry run" _aws-deploy/deploy.sh --destroy --purge-egress --dry-run --yes; GIVEN='{}'
exits "aws dry-run destroy --purge-egress exits 0" 0
said "aws dry run prints the egress deletions" '^\+ aws ec2 delete-vpc --region eu-central-1 --vpc-id vpc-0001'
check_py "aws dry-run destroy changes nothing" "$log" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if line.startswith("aws"):
        assert re.match(r"aws \S+ (describe|list|get)-", line), line
PY

scenario "aws: --purge-egress without --destroy" _aws-deploy/deploy.sh --purge-egress --yes
exits "aws refuses --purge-egress without --destroy" 2
said "aws says --purge-egress goes with --destroy" 'go with --destroy'

scenario "aws: dry run on a fresh account" _aws-deploy/deploy.sh --secrets --dry-run --yes
exits "aws dry run exits 0" 0
check_py "aws dry run asks the cloud only read-only questions" "$log" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if line.startswith("aws"):
        assert re.match(r"aws \S+ (describe|list|get)-", line), line
    assert not line.startswith(("docker", "curl")), line
PY
said "aws dry run plans the roles" '^\+ aws iam create-role --role-name nsps-wtl-connector-execution'
said "aws dry run plans the secrets" 'create-secret --name nsps-wtl-connector/API_TOKEN'
said "aws dry run plans the service" '^\+ aws ecs create-express-gateway-service'

# ---- monitoring (AWS) ----
EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "aws: fresh account, --monitoring (ECS)" _aws-deploy/deploy.sh --monitoring --yes; EXTRA_ENV=()
exits "aws --monitoring deploys, then monitors" 0
for m in "${monitored[@]}"; do
  expect "aws puts the metric filter $m on the service's log group" "^aws logs put-metric-filter --region eu-central-1 --log-group-name /ecs/nsps-wtl-connector --filter-name nsps-wtl-connector-$m --filter-pattern \{ .* \} --metric-transformations file:///"
done
expect "aws: the WTL failures pattern" '--filter-name nsps-wtl-connector-wtl_failures --filter-pattern \{ \$\.message = "WTL call failed" \} '
expect "aws: the 5xx pattern" '--filter-name nsps-wtl-connector-http_5xx --filter-pattern \{ \$\.message = "request completed" && \$\.httpRequest\.status >= 500 \} '
expect "aws puts the dashboard from a file" '^aws cloudwatch put-dashboard --region eu-central-1 --dashboard-name nsps-wtl-connector --dashboard-body file:///'
expect "aws puts the alarms from files" '^aws cloudwatch put-metric-alarm --region eu-central-1 --alarm-name nsps-wtl-connector-no_events --cli-input-json file:///'
expect "aws creates the SNS topic" '^aws sns create-topic --region eu-central-1 --name nsps-wtl-connector-alerts$'
expect "aws subscribes ALERT_EMAIL" '^aws sns subscribe --region eu-central-1 --topic-arn arn:aws:sns:eu-central-1:123456789012:nsps-wtl-connector-alerts --protocol email --notification-endpoint oncall@example.com$'
said "aws says the subscription needs confirming" 'confirmation link'
said "aws prints where the dashboard is" 'monitoring dashboard: https://eu-central-1.console.aws.amazon.com/cloudwatch/home\?region=eu-central-1#dashboards/dashboard/nsps-wtl-connector'
check_py "aws: the monitoring comes after the deploy passed its smoke test" "$log" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
smoke = max(i for i, l in enumerate(lines) if l.startswith("curl"))
first = min(i for i, l in enumerate(lines) if l.startswith(("aws sns", "aws cloudwatch", "aws logs put-metric")))
assert smoke < first, (smoke, first)
PY
check_py "aws: six filters, the dashboard, four alarms to the topic; no events treated as breaching" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
filters = st["metric_filters"]["/ecs/nsps-wtl-connector"]
assert len(filters) == 6, sorted(filters)
events = filters["nsps-wtl-connector-events"]["metricTransformations"][0]
assert events["dimensions"] == {"outcome": "$.outcome", "event_type": "$.event_type"} and "defaultValue" not in events, events
assert events["metricNamespace"] == "NSPS/nsps-wtl-connector"
latency = filters["nsps-wtl-connector-event_latency"]["metricTransformations"][0]
assert latency["metricValue"] == "$.latency_ms" and latency["unit"] == "Milliseconds", latency
alarms = st["alarms"]
topic = "arn:aws:sns:eu-central-1:123456789012:nsps-wtl-connector-alerts"
assert sorted(alarms) == sorted("nsps-wtl-connector-" + a for a in ["http_5xx", "wtl_failures", "store_unavailable", "no_events"])
assert all(a["AlarmActions"] == [topic] and a["OKActions"] == [topic] for a in alarms.values())
quiet = alarms["nsps-wtl-connector-no_events"]
assert quiet["TreatMissingData"] == "breaching" and quiet["EvaluationPeriods"] == 12 and quiet["Statistic"] == "SampleCount", quiet
assert "SELECT SUM(wtl_failures)" in alarms["nsps-wtl-connector-wtl_failures"]["Metrics"][0]["Expression"]
assert len(st["dashboards"]["nsps-wtl-connector"]["body"]["widgets"]) >= 6
assert len(st["topics"][topic]["subscriptions"]) == 1
PY
aws_monitored=$(state)

GIVEN=$aws_monitored
EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "aws: --monitoring-only on a monitored account" _aws-deploy/deploy.sh --monitoring-only; GIVEN='{}'; EXTRA_ENV=()
exits "aws --monitoring-only exits 0" 0
refuse "aws: a second run makes no topic, subscription or log group" 'sns (create-topic|subscribe)|create-log-group'
refuse "aws --monitoring-only builds, deploys and smoke-tests nothing" '^docker|express-gateway-service --|^curl '
said "aws says it updates what exists" 'metric filter nsps-wtl-connector-events: updated|filter nsps-wtl-connector-events: updated'
said "aws says the alarms are updated" 'alarm nsps-wtl-connector-no_events: updated'
check_py "aws: still six filters, one dashboard, four alarms, one subscription; each put twice" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
filters = st["metric_filters"]["/ecs/nsps-wtl-connector"]
assert len(filters) == 6 and all(f["puts"] == 2 for f in filters.values()), filters
assert len(st["dashboards"]) == 1 and st["dashboards"]["nsps-wtl-connector"]["puts"] == 2
assert len(st["alarms"]) == 4 and all(a["puts"] == 2 for a in st["alarms"].values())
assert len(st["topics"]) == 1 and all(len(t["subscriptions"]) == 1 for t in st["topics"].values())
PY

EXTRA_ENV=(ALERT_EMAIL=oncall@example.com)
scenario "aws: dry run of --monitoring-only on a fresh account" _aws-deploy/deploy.sh --monitoring-only --dry-run; EXTRA_ENV=()
exits "aws monitoring dry run exits 0" 0
check_py "aws monitoring dry run only reads" "$log" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    assert re.match(r"aws \S+ (describe|list|get)-", line), line
PY
said "aws monitoring dry run plans the filters" '^\+ aws logs put-metric-filter --region eu-central-1 --log-group-name /ecs/nsps-wtl-connector '
said "aws monitoring dry run plans the alarms" '^\+ aws cloudwatch put-metric-alarm '
said "aws monitoring dry run plans the topic" '^\+ aws sns create-topic '

GIVEN="$apprunner_given}"
scenario "aws: --monitoring-only on App Runner" _aws-deploy/deploy.sh --monitoring-only; GIVEN='{}'
exits "aws App Runner monitoring exits 0" 0
expect "aws watches App Runner's application log group" '^aws logs put-metric-filter --region eu-central-1 --log-group-name /aws/apprunner/nsps-wtl-connector/svc1/application --filter-name nsps-wtl-connector-events '
refuse "aws: no topic without ALERT_EMAIL" '^aws sns '
check_py "aws App Runner: alarms without actions when no address is given" "$FAKE_STATE/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
assert len(st["alarms"]) == 4 and not any("AlarmActions" in a for a in st["alarms"].values())
PY
scenario "aws: --monitoring-only where App Runner has no such service" _aws-deploy/deploy.sh --target apprunner --monitoring-only
exits "aws refuses to monitor an App Runner service that is not there" 1

EXTRA_ENV=(WTL_API_URL=)
scenario "aws: a missing setting" _aws-deploy/deploy.sh --yes; EXTRA_ENV=()
exits "aws refuses a missing setting" 2
said "aws names the missing setting" 'WTL_API_URL is required'
refuse "aws runs nothing before the settings are complete" '^(aws|docker|curl) '
scenario "aws: an unknown option" _aws-deploy/deploy.sh --frobnicate
exits "aws rejects an unknown option" 2
scenario "aws: an unknown target" _aws-deploy/deploy.sh --target lambda
exits "aws rejects an unknown target" 2
}

# ================= what leaves the machine, shellcheck, the real CLIs =================
# The upload list by the real gcloud, shellcheck, and the scripts run by the real CLIs.
cli_checks() {
# ---- what leaves the machine
# `gcloud builds submit` uploads the checkout to Cloud Build minus .gcloudignore; the real gcloud
# lists what it would upload from a tree of the ignore files, source and decoy env files.
if command -v gcloud >/dev/null 2>&1; then
  upload="$sandbox/upload"
  mkdir -p "$upload/src" "$upload/target/release" "$upload/ops"
  cp .gcloudignore .dockerignore "$upload/"
  for f in src/main.rs .env.example .env .env.prod prod.env ops/emea.env target/release/nsps-wtl-connector; do
    echo "API_TOKEN=$secret_token" >"$upload/$f"
  done
  listed=$(cd "$upload" && gcloud meta list-files-for-upload . 2>/dev/null | sort | tr '\n' ' ')
  if [[ " $listed " == *" src/main.rs "* && " $listed " == *" .env.example "* && " $listed " != *".env "* &&
    " $listed " != *"prod"* && " $listed " != *"emea"* && " $listed " != *"target"* ]]; then
    ok "gcloud uploads the source but no env file and no build output (.gcloudignore)"
  else bad "gcloud would upload: $listed"; fi
else
  echo "skip the upload check: gcloud is not on PATH"
fi

# ---- shellcheck
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck -x _gcp-deploy/deploy.sh _aws-deploy/deploy.sh _deploy-common/lib.sh tests/deploy/run.sh \
    tests/deploy/check-dockerfile.sh tests/deploy/standin/*.sh tests/monitoring/run.sh tests/run.sh \
    bench/run.sh bench/profile.sh bench/memory.sh bench/split.sh bench/ab.sh bench/lib.sh; then
    ok "shellcheck is clean"
  else bad "shellcheck"; fi
else
  bad "shellcheck is not installed (apt-get install shellcheck)"
fi

# ---- the real CLIs against a local stand-in
if [ -f tests/deploy/standin/real-cli.sh ]; then
  if bash tests/deploy/standin/real-cli.sh; then ok "the real gcloud and aws accept every call and body"; else bad "real CLIs"; fi
fi
}

# ================= the stand-in =================
# The stand-in itself, where both CLIs are on PATH (real-cli.sh installs awscli when missing):
# the real CLIs' own calls, answered as the clouds answer them.
standin_checks() {
if command -v gcloud >/dev/null 2>&1 && command -v aws >/dev/null 2>&1; then
  if bash tests/deploy/standin/selftest.sh >"$sandbox/selftest.out" 2>&1; then
    ok "the stand-in answers the real CLIs as the clouds do ($(tail -1 "$sandbox/selftest.out"))"
  else bad "the stand-in's self-test:"; grep -E '^FAIL' "$sandbox/selftest.out" | sed 's/^/     | /'; fi
else
  echo "skip the stand-in's self-test: gcloud or aws is not on PATH"
fi
}

# run_parts PART...: the parts side by side, each a run of this script with its own sandbox,
# their outputs shown in order, the counts added up. A part that ends without its count line
# (killed, or a bug of its own) counts as a failure.
run_parts() {
  local part pids=() total_passed=0 total_failed=0 counts status
  for part in "$@"; do
    # A part that hangs is stopped (status 124) and counted as failed, so CI ends with a report.
    DEPLOY_TESTS_PART=$part timeout --kill-after=10 "${DEPLOY_TESTS_TIMEOUT:-1200}" \
      bash "$root/tests/deploy/run.sh" "$part" >"$sandbox/part-$part.out" 2>&1 &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null; exit 130' INT TERM
  for part in "$@"; do
    if wait "${pids[0]}"; then status=0; else status=$?; fi
    pids=("${pids[@]:1}")
    echo "=== $part"
    cat "$sandbox/part-$part.out"
    counts=$(tail -1 "$sandbox/part-$part.out")
    if [[ $counts =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]] && { [ "$status" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ]; }; then
      total_passed=$((total_passed + BASH_REMATCH[1])) total_failed=$((total_failed + BASH_REMATCH[2]))
    else
      total_failed=$((total_failed + 1)); echo "FAIL the $part part ended (status $status) without its count"
    fi
  done
  echo
  echo "$total_passed passed, $total_failed failed"
  [ "$total_failed" -eq 0 ]
}

# bash tests/deploy/run.sh [PART]: one part, or (no argument) all of them side by side: the
# fake-CLI scenarios run one process at a time, so two cores take two parts at once.
parts=(gcp:gcp_scenarios aws:aws_scenarios clis:cli_checks standin:standin_checks)
part_names=("${parts[@]%%:*}")
if [ $# -eq 0 ]; then
  run_parts "${part_names[@]}"
  exit
fi
chosen=""
for p in "${parts[@]}"; do
  [ "$1" = "${p%%:*}" ] && chosen=${p#*:}
done
if [ -z "$chosen" ]; then
  echo "usage: bash tests/deploy/run.sh [$(IFS='|'; echo "${part_names[*]}")]" >&2
  exit 2
fi
"$chosen" # not inside a condition, so `set -e` holds in the part as it does at the top level
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
