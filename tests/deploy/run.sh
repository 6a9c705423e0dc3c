#!/usr/bin/env bash
# Tests the deploy scripts without a cloud: fake `gcloud`, `aws`, `docker` and `curl` on PATH
# record their arguments; each scenario asserts the commands and flags a script runs.
# Also runs shellcheck on the scripts. Ends with "N passed, M failed".
# ok and bad always succeed, so `test && ok || bad` is a proper if-then-else here.
# shellcheck disable=SC2015
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { # expect DESCRIPTION PATTERN (grep -E on the command log)
  if grep -qE -- "$2" "$log"; then ok "$1"; else bad "$1 (no match for: $2)"; fi
}
refuse() { # refuse DESCRIPTION PATTERN
  if grep -qE -- "$2" "$log"; then bad "$1 (unexpected: $2)"; else ok "$1"; fi
}

sandbox=$(mktemp -d)
trap 'rm -rf "$sandbox"' EXIT
fakes="$sandbox/bin"
mkdir -p "$fakes"

cat >"$fakes/gcloud" <<'EOF'
#!/usr/bin/env bash
echo "gcloud $*" >>"$FAKE_LOG"
args=" $* "
case "$args" in
  *" config get-value project "*) echo fake-project ;;
  *" run services describe "*) echo "https://nsps-wtl-connector-abc.a.run.app" ;;
  *" artifacts repositories describe "*) [ -z "${FAKE_FIRST:-}" ] || exit 1 ;;
  *" artifacts docker images describe "*) exit 1 ;;
  *" secrets describe "*) exit 1 ;;
  *" secrets versions add "*) cat >>"$FAKE_STATE/secret-stdin" ;;
esac
# Keep a copy of the settings file the script hands over (it deletes its own on exit).
prev=""
for a in "$@"; do
  if [ "$prev" = "--env-vars-file" ]; then cp "$a" "$FAKE_STATE/env.yaml"; fi
  prev=$a
done
exit 0
EOF

cat >"$fakes/aws" <<'EOF'
#!/usr/bin/env bash
echo "aws $*" >>"$FAKE_LOG"
args=" $* "
case "$args" in
  *" sts get-caller-identity "*) echo 123456789012 ;;
  *" apprunner list-services "*)
    if [ -f "$FAKE_STATE/service" ]; then echo "arn:aws:apprunner:eu-central-1:123456789012:service/nsps-wtl-connector/1"; else echo None; fi ;;
  *" apprunner create-service "*) touch "$FAKE_STATE/service"; echo '{}' ;;
  *" list-auto-scaling-configurations "*) echo None ;;
  *" create-auto-scaling-configuration "*) echo "arn:aws:apprunner:eu-central-1:123456789012:autoscalingconfiguration/scaling/1" ;;
  *" Service.Status "*) echo RUNNING ;;
  *" Service.ServiceUrl "*) echo "abc123.eu-central-1.awsapprunner.com" ;;
  *ImageIdentifier*) echo "123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:old" ;;
  *AccessRoleArn*) echo "arn:aws:iam::123456789012:role/AppRunnerECRAccessRole" ;;
  *" ecr describe-repositories "*) [ -z "${FAKE_FIRST:-}" ] || exit 1 ;;
  *" ecr get-login-password "*) echo fake-password ;;
  *" iam get-role "*) [ -z "${FAKE_FIRST:-}" ] || exit 1 ;;
esac
for a in "$@"; do
  case "$a" in file://*/source.json) cp "${a#file://}" "$FAKE_STATE/source.json" ;; esac
done
exit 0
EOF

cat >"$fakes/docker" <<'EOF'
#!/usr/bin/env bash
echo "docker $*" >>"$FAKE_LOG"
case " $* " in *" login "*) cat >/dev/null ;; esac
exit 0
EOF

cat >"$fakes/curl" <<'EOF'
#!/usr/bin/env bash
echo "curl $*" >>"$FAKE_LOG"
case " $* " in
  *"/health "*) printf 200 ;;
  *"/process-event "*) printf 202 ;;
  *) printf 000 ;;
esac
EOF
chmod +x "$fakes"/*

export FAKE_LOG="$sandbox/calls.log" FAKE_STATE="$sandbox/state"
log=$FAKE_LOG
secret_token="nsps-token-$RANDOM-do-not-print"
regex='^(00101|00102)\d{2,5},x'"'"'y'

# scenario NAME SCRIPT ARGS... : fresh log and state; runs the script with the fakes first on PATH.
scenario() {
  local name=$1 script=$2; shift 2
  : >"$log"; rm -rf "$FAKE_STATE"; mkdir -p "$FAKE_STATE"
  [ -n "${KEEP_SERVICE:-}" ] && touch "$FAKE_STATE/service"
  echo "--- $name"
  set +e
  (cd "$root" && env -i PATH="$fakes:/usr/bin:/bin" HOME="$sandbox" FAKE_LOG="$FAKE_LOG" FAKE_STATE="$FAKE_STATE" \
    FAKE_FIRST="${FAKE_FIRST:-}" GCP_PROJECT_ID=proj-1 GCP_REGION=europe-west1 AWS_REGION=eu-central-1 \
    API_TOKEN="$secret_token" WTL_API_URL=https://hlr.example.com/wtl WTL_IMSI_REGEXP="$regex" \
    WTL_API_TOKEN=wtl-secret-value "${EXTRA_ENV[@]}" bash "$script" "$@") >"$sandbox/out" 2>&1
  status=$?
  set -e
  if grep -q -- "$secret_token" "$sandbox/out"; then bad "$name: the API token was printed"; else ok "$name: the API token was not printed"; fi
  if grep -q -- "wtl-secret-value" "$sandbox/out"; then bad "$name: the WTL token was printed"; else ok "$name: the WTL token was not printed"; fi
}
EXTRA_ENV=()

# ---------------- Google Cloud Run ----------------
FAKE_FIRST=1 scenario "gcp first deploy" _gcp-deploy/deploy.sh --yes
[ "$status" -eq 0 ] && ok "gcp first deploy exits 0" || { bad "gcp first deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "gcp enables the APIs" '^gcloud services enable run.googleapis.com artifactregistry.googleapis.com'
expect "gcp creates the Artifact Registry repository" '^gcloud artifacts repositories create nsps-wtl-connector --project proj-1 --location europe-west1 --repository-format docker'
expect "gcp builds with Cloud Build" '^gcloud builds submit .* --tag europe-west1-docker.pkg.dev/proj-1/nsps-wtl-connector/nsps-wtl-connector:'
expect "gcp deploys the service" '^gcloud run deploy nsps-wtl-connector --project proj-1 --region europe-west1 --image europe-west1-docker.pkg.dev/'
expect "gcp deploy: port 8000, public ingress (the connector checks its token)" 'run deploy .*--port 8000 --allow-unauthenticated'
expect "gcp deploy: scale to zero, bounded instances, concurrency" 'run deploy .*--min-instances 0 --max-instances 1 --concurrency 80'
expect "gcp deploy: settings through --env-vars-file" 'run deploy .*--env-vars-file '
expect "gcp smoke-tests /health" '^curl .*https://nsps-wtl-connector-abc.a.run.app/health'
expect "gcp smoke-tests an authenticated event" '^curl .*-X POST https://nsps-wtl-connector-abc.a.run.app/process-event'
if grep -qxF "WTL_IMSI_REGEXP: '^(00101|00102)\\d{2,5},x''y'" "$FAKE_STATE/env.yaml"; then
  ok "gcp env file keeps a regex with commas, backslashes and quotes intact"
else
  bad "gcp env file regex: $(grep WTL_IMSI_REGEXP "$FAKE_STATE/env.yaml" || echo missing)"
fi
if grep -q '^PORT:' "$FAKE_STATE/env.yaml"; then bad "gcp env file must not set PORT"; else ok "gcp env file leaves PORT to Cloud Run"; fi
if python3 -c "import sys,yaml" 2>/dev/null; then
  python3 - "$FAKE_STATE/env.yaml" "$regex" <<'PY' && ok "gcp env file parses as YAML to the exact values" || bad "gcp env file YAML"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["WTL_IMSI_REGEXP"] == sys.argv[2], d["WTL_IMSI_REGEXP"]
assert d["WTL_API_URL"] == "https://hlr.example.com/wtl"
PY
fi

scenario "gcp env-only" _gcp-deploy/deploy.sh --env-only
[ "$status" -eq 0 ] && ok "gcp env-only exits 0" || bad "gcp env-only exits 0 ($status)"
expect "gcp env-only updates the settings" '^gcloud run services update nsps-wtl-connector --project proj-1 --region europe-west1 --env-vars-file '
refuse "gcp env-only builds nothing" 'builds submit|docker build|run deploy'

scenario "gcp secrets" _gcp-deploy/deploy.sh --secrets --yes
expect "gcp secrets: --set-secrets names Secret Manager secrets" 'run deploy .*--set-secrets API_TOKEN=nsps-wtl-connector-api-token:latest,WTL_API_TOKEN=nsps-wtl-connector-wtl-api-token:latest'
if grep -q 'API_TOKEN' "$FAKE_STATE/env.yaml"; then bad "gcp secrets: the token is still a plain env var"; else ok "gcp secrets: secrets are not plain env vars"; fi
if grep -q -- "$secret_token" "$FAKE_STATE/secret-stdin" && ! grep -q -- "$secret_token" "$log"; then
  ok "gcp secrets: values go through stdin, never the command line"
else bad "gcp secrets: value handling"; fi

EXTRA_ENV=(WTL_CA_SECRET=wtl-ca WTL_CLIENT_CERT_SECRET=wtl-cert WTL_CLIENT_KEY_SECRET=wtl-key VPC_CONNECTOR=conn-1
  HTTPS_PROXY=http://laptop-proxy:3128 WTL_PROXY=http://egress.internal:3128)
scenario "gcp TLS files and a VPC connector" _gcp-deploy/deploy.sh --yes
EXTRA_ENV=()
[ "$status" -eq 0 ] && ok "gcp TLS deploy exits 0" || { bad "gcp TLS deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "gcp mounts the TLS secrets as files" 'run deploy .*--set-secrets /secrets/wtl-ca/ca.pem=wtl-ca:latest,/secrets/wtl-client-cert/client.pem=wtl-cert:latest,/secrets/wtl-client-key/client.key=wtl-key:latest'
expect "gcp deploy reaches the private network through the connector" 'run deploy .*--vpc-connector conn-1 --vpc-egress private-ranges-only'
grep -qxF "WTL_CA_FILE: '/secrets/wtl-ca/ca.pem'" "$FAKE_STATE/env.yaml" && grep -qxF "WTL_CLIENT_KEY_FILE: '/secrets/wtl-client-key/client.key'" "$FAKE_STATE/env.yaml" \
  && ok "gcp tells the connector where the TLS files are" || bad "gcp TLS file settings: $(cat "$FAKE_STATE/env.yaml")"
grep -qxF "WTL_PROXY: 'http://egress.internal:3128'" "$FAKE_STATE/env.yaml" && ok "gcp passes WTL_PROXY" || bad "gcp passes WTL_PROXY"
if grep -q 'laptop-proxy' "$FAKE_STATE/env.yaml"; then bad "gcp passed the deploying shell's HTTPS_PROXY"; else ok "gcp leaves the deploying shell's HTTPS_PROXY behind"; fi

EXTRA_ENV=(VPC_NETWORK=net-1 VPC_SUBNET=sub-1)
scenario "gcp Direct VPC egress" _gcp-deploy/deploy.sh --yes
EXTRA_ENV=()
expect "gcp Direct VPC egress names the network and subnet" 'run deploy .*--network net-1 --subnet sub-1 --vpc-egress private-ranges-only'
refuse "gcp without TLS secrets mounts nothing" 'set-secrets'

EXTRA_ENV=(REDIS_URL=redis://:redis-pw-in-deploy@10.0.0.5:6379 REDIS_CA_SECRET=memorystore-ca VPC_CONNECTOR=conn-1)
scenario "gcp with REDIS_URL" _gcp-deploy/deploy.sh --secrets --yes
EXTRA_ENV=()
[ "$status" -eq 0 ] && ok "gcp REDIS_URL deploy exits 0" || { bad "gcp REDIS_URL deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "gcp with a shared memory lifts the one-instance default" 'run deploy .*--max-instances 3 '
expect "gcp keeps REDIS_URL in Secret Manager" 'run deploy .*--set-secrets .*REDIS_URL=nsps-wtl-connector-redis-url:latest'
expect "gcp mounts the Redis CA" 'run deploy .*/secrets/redis-ca/ca.pem=memorystore-ca:latest'
if grep -q 'redis-pw-in-deploy' "$sandbox/out" "$log"; then bad "gcp printed the Redis password"; else ok "gcp never prints the Redis password"; fi
grep -q 'redis-pw-in-deploy' "$FAKE_STATE/secret-stdin" && ok "gcp stores REDIS_URL through stdin" || bad "gcp stores REDIS_URL through stdin"

scenario "gcp with the connector's check" _gcp-deploy/deploy.sh --check --yes
[ "$status" -eq 0 ] && ok "gcp --check deploy exits 0" || { bad "gcp --check deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "gcp runs check as a Cloud Run job with the service's image and settings" '^gcloud run jobs deploy nsps-wtl-connector-check .*--image europe-west1-docker.pkg.dev/proj-1/.* --args check .*--env-vars-file '
expect "gcp waits for the check job" '^gcloud run jobs execute nsps-wtl-connector-check .*--wait'

scenario "gcp destroy" _gcp-deploy/deploy.sh --destroy --yes
expect "gcp destroy deletes the service" '^gcloud run services delete nsps-wtl-connector --project proj-1 --region europe-west1 --quiet'
refuse "gcp destroy deploys nothing" 'run deploy|builds submit'

scenario "gcp destroy without --yes and no terminal" _gcp-deploy/deploy.sh --destroy </dev/null
[ "$status" -ne 0 ] && ok "gcp destroy refuses without confirmation" || bad "gcp destroy without --yes"
refuse "gcp unconfirmed destroy deletes nothing" 'services delete'

scenario "gcp dry run" _gcp-deploy/deploy.sh --dry-run --yes
[ "$status" -eq 0 ] && ok "gcp dry run exits 0" || bad "gcp dry run exits 0 ($status)"
refuse "gcp dry run runs no cloud command" '^(gcloud|docker|curl) '
grep -q '^+ gcloud run deploy nsps-wtl-connector' "$sandbox/out" && ok "gcp dry run prints the deploy command" || bad "gcp dry run prints the deploy command"

EXTRA_ENV=(API_TOKEN=)
scenario "gcp missing setting" _gcp-deploy/deploy.sh --yes
EXTRA_ENV=()
[ "$status" -ne 0 ] && ok "gcp refuses a missing setting" || bad "gcp refuses a missing setting"
grep -q 'API_TOKEN is required' "$sandbox/out" && ok "gcp names the missing setting" || bad "gcp names the missing setting"
refuse "gcp runs nothing before the settings are complete" '^(gcloud|docker|curl) '

scenario "gcp help" _gcp-deploy/deploy.sh --help
[ "$status" -eq 0 ] && grep -q -- '--env-only' "$sandbox/out" && ok "gcp --help" || bad "gcp --help"

# ---------------- AWS App Runner ----------------
FAKE_FIRST=1 scenario "aws first deploy" _aws-deploy/deploy.sh --yes
[ "$status" -eq 0 ] && ok "aws first deploy exits 0" || { bad "aws first deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "aws creates the ECR repository" '^aws ecr create-repository --region eu-central-1 --repository-name nsps-wtl-connector'
expect "aws logs docker in to ECR" '^docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-central-1.amazonaws.com'
expect "aws builds for linux/amd64" '^docker build --platform linux/amd64 -t 123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:'
expect "aws pushes the image" '^docker push 123456789012.dkr.ecr.eu-central-1.amazonaws.com/nsps-wtl-connector:'
expect "aws creates the ECR access role" '^aws iam create-role --role-name AppRunnerECRAccessRole'
expect "aws creates the service" '^aws apprunner create-service --region eu-central-1 --service-name nsps-wtl-connector --source-configuration file://'
expect "aws health check on /health" 'create-service .*--health-check-configuration Protocol=HTTP,Path=/health'
expect "aws waits for RUNNING" 'apprunner describe-service .*--query Service.Status'
expect "aws smoke-tests /health" '^curl .*https://abc123.eu-central-1.awsapprunner.com/health'
expect "aws smoke-tests an authenticated event" '^curl .*-X POST https://abc123.eu-central-1.awsapprunner.com/process-event'
if python3 - "$FAKE_STATE/source.json" "$regex" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cfg = d["ImageRepository"]["ImageConfiguration"]
assert cfg["Port"] == "8000"
assert cfg["RuntimeEnvironmentVariables"]["WTL_IMSI_REGEXP"] == sys.argv[2]
assert "PORT" not in cfg["RuntimeEnvironmentVariables"]
assert d["AuthenticationConfiguration"]["AccessRoleArn"].endswith("role/AppRunnerECRAccessRole")
PY
then ok "aws source configuration carries the settings intact (regex with commas and quotes)"; else bad "aws source configuration"; fi

EXTRA_ENV=(WTL_CA_SECRET_ARN=arn:aws:secretsmanager:eu-central-1:123456789012:secret:wtl-ca
  WTL_CLIENT_KEY_SECRET_ARN=arn:aws:secretsmanager:eu-central-1:123456789012:secret:wtl-key
  WTL_CA_FILE=/ignored.pem INSTANCE_ROLE_ARN=arn:aws:iam::123456789012:role/connector
  VPC_CONNECTOR_ARN=arn:aws:apprunner:eu-central-1:123456789012:vpcconnector/hlr/1)
FAKE_FIRST=1 scenario "aws TLS secrets and a VPC connector" _aws-deploy/deploy.sh --yes
EXTRA_ENV=()
[ "$status" -eq 0 ] && ok "aws TLS deploy exits 0" || { bad "aws TLS deploy exits 0 ($status)"; cat "$sandbox/out"; }
if python3 - "$FAKE_STATE/source.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))["ImageRepository"]["ImageConfiguration"]
refs = cfg["RuntimeEnvironmentSecrets"]
assert refs["WTL_CA_FILE"].endswith(":secret:wtl-ca"), refs
assert refs["WTL_CLIENT_KEY_FILE"].endswith(":secret:wtl-key"), refs
assert "WTL_CA_FILE" not in cfg["RuntimeEnvironmentVariables"]
PY
then ok "aws hands the TLS PEMs over as secrets"; else bad "aws TLS secrets"; fi
expect "aws instance role for the secrets" 'create-service .*--instance-configuration Cpu=.*Memory=.*,InstanceRoleArn=arn:aws:iam::123456789012:role/connector'
expect "aws VPC connector for the private network" 'create-service .*--network-configuration EgressConfiguration=\{EgressType=VPC,VpcConnectorArn=arn:aws:apprunner:eu-central-1:123456789012:vpcconnector/hlr/1\}'

EXTRA_ENV=(REDIS_URL=rediss://:redis-pw-in-deploy@cache.example:6379)
FAKE_FIRST=1 scenario "aws with REDIS_URL" _aws-deploy/deploy.sh --secrets --yes
EXTRA_ENV=()
[ "$status" -eq 0 ] && ok "aws REDIS_URL deploy exits 0" || { bad "aws REDIS_URL deploy exits 0 ($status)"; cat "$sandbox/out"; }
expect "aws with a shared memory allows three instances" 'create-auto-scaling-configuration .*--min-size 1 --max-size 3 '
expect "aws service uses that scaling" 'create-service .*--auto-scaling-configuration-arn arn:aws:apprunner:eu-central-1:123456789012:autoscalingconfiguration/scaling/1'
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert 'REDIS_URL' in d['ImageRepository']['ImageConfiguration']['RuntimeEnvironmentSecrets']" "$FAKE_STATE/source.json" \
  && ok "aws keeps REDIS_URL as a secret" || bad "aws keeps REDIS_URL as a secret"
if grep -q 'redis-pw-in-deploy' "$sandbox/out" "$log"; then bad "aws printed the Redis password"; else ok "aws never prints the Redis password"; fi

FAKE_FIRST=1 scenario "aws without REDIS_URL" _aws-deploy/deploy.sh --yes
expect "aws without a shared memory runs one instance" 'create-auto-scaling-configuration .*--min-size 1 --max-size 1 '

KEEP_SERVICE=1 scenario "aws update with force" _aws-deploy/deploy.sh --force-deploy --yes
expect "aws updates the existing service" '^aws apprunner update-service --region eu-central-1 --service-arn arn:aws:apprunner:'
expect "aws --force-deploy starts a deployment" '^aws apprunner start-deployment --region eu-central-1 --service-arn '
refuse "aws update does not create a second service" 'create-service'

KEEP_SERVICE=1 scenario "aws env-only" _aws-deploy/deploy.sh --env-only
[ "$status" -eq 0 ] && ok "aws env-only exits 0" || { bad "aws env-only exits 0 ($status)"; cat "$sandbox/out"; }
expect "aws env-only updates the service settings" '^aws apprunner update-service --region eu-central-1 --service-arn .* --source-configuration file://'
refuse "aws env-only builds nothing" '^docker (build|push)'
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['ImageRepository']['ImageIdentifier'].endswith(':old')" "$FAKE_STATE/source.json" \
  && ok "aws env-only keeps the running image" || bad "aws env-only keeps the running image"

KEEP_SERVICE=1 scenario "aws test-only" _aws-deploy/deploy.sh --test-only
[ "$status" -eq 0 ] && ok "aws test-only exits 0" || bad "aws test-only exits 0 ($status)"
expect "aws test-only smoke-tests" '^curl .*/health'
refuse "aws test-only changes nothing" 'update-service|create-service|docker'

KEEP_SERVICE=1 scenario "aws destroy" _aws-deploy/deploy.sh --destroy --purge-images --yes
expect "aws destroy deletes the service" '^aws apprunner delete-service --region eu-central-1 --service-arn arn:aws:apprunner:'
expect "aws --purge-images deletes the repository" '^aws ecr delete-repository --region eu-central-1 --repository-name nsps-wtl-connector --force'

scenario "aws dry run" _aws-deploy/deploy.sh --dry-run --yes
[ "$status" -eq 0 ] && ok "aws dry run exits 0" || { bad "aws dry run exits 0 ($status)"; cat "$sandbox/out"; }
refuse "aws dry run runs no cloud command" '^(aws|docker|curl) '
grep -q '^+ docker build --platform linux/amd64' "$sandbox/out" && ok "aws dry run prints the build" || bad "aws dry run prints the build"

EXTRA_ENV=(WTL_API_URL=)
scenario "aws missing setting" _aws-deploy/deploy.sh --yes
EXTRA_ENV=()
[ "$status" -ne 0 ] && grep -q 'WTL_API_URL is required' "$sandbox/out" && ok "aws names a missing setting" || bad "aws names a missing setting"
refuse "aws runs nothing before the settings are complete" '^(aws|docker|curl) '

scenario "aws unknown flag" _aws-deploy/deploy.sh --frobnicate
[ "$status" -eq 2 ] && ok "aws rejects an unknown flag" || bad "aws rejects an unknown flag"

# ---------------- shellcheck ----------------
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck -x _gcp-deploy/deploy.sh _aws-deploy/deploy.sh tests/deploy/run.sh tests/deploy/check-dockerfile.sh tests/run.sh \
    bench/run.sh bench/profile.sh bench/lib.sh; then
    ok "shellcheck is clean"
  else bad "shellcheck"; fi
else
  bad "shellcheck is not installed (apt-get install shellcheck)"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
