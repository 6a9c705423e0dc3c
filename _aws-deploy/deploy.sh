#!/usr/bin/env bash
# Deploys the NSPS -> WTL HLR/HSS connector to AWS App Runner (image in ECR).
#
#   bash _aws-deploy/deploy.sh [--env-file FILE] [--env-only | --test-only | --destroy]
#                              [--force-deploy] [--secrets] [--purge-images] [--yes] [--dry-run]
#
# Settings come from the environment and from .env (or --env-file); see _aws-deploy/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash _aws-deploy/deploy.sh [options]

  (no option)      build and push the image, create or update the App Runner service,
                   wait until it is RUNNING, then smoke-test it
  --force-deploy   also start a new deployment when the service configuration did not change
  --env-only       only update the service's runtime settings (no build)
  --test-only      only run the smoke test against the running service
  --destroy        delete the App Runner service (asks first unless --yes)
  --purge-images   with --destroy: also delete the ECR repository and its images
  --secrets        keep the secret settings in AWS Secrets Manager (RuntimeEnvironmentSecrets)
  --env-file FILE  read settings from FILE (default: .env in the repository root, if present)
  --yes            do not ask for confirmation
  --dry-run        print every cloud command instead of running it
  -h, --help       this text

Settings (environment or env file):
  required  AWS_REGION, API_TOKEN, WTL_API_URL
  optional  SERVICE_NAME (nsps-wtl-connector), ECR_REPOSITORY (nsps-wtl-connector),
            IMAGE_TAG (git commit + time), APPRUNNER_CPU (0.25 vCPU), APPRUNNER_MEMORY (0.5 GB),
            APPRUNNER_ACCESS_ROLE_ARN (default: create AppRunnerECRAccessRole),
            WAIT_TIMEOUT (900 s), and every connector setting of .env.example.
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

mode=deploy force=false secrets=false purge=false yes=false dry_run=false
env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --env-only) mode="env" ;;
    --test-only) mode="test" ;;
    --destroy) mode=destroy ;;
    --force-deploy) force=true ;;
    --secrets) secrets=true ;;
    --purge-images) purge=true ;;
    --yes|-y) yes=true ;;
    --dry-run) dry_run=true ;;
    --env-file) env_file=${2:?--env-file needs a path}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

APP_VARS=(API_TOKEN WTL_API_URL WTL_API_TOKEN WTL_AUTH WTL_API_USERNAME WTL_API_PASSWORD
  WTL_OAUTH_TOKEN_URL WTL_OAUTH_CLIENT_ID WTL_OAUTH_CLIENT_SECRET WTL_OAUTH_SCOPE
  WTL_DEFAULT_CS_PROFILE WTL_DEFAULT_EPS_PROFILE WTL_HTTP_REQUESTS_TIMEOUT WTL_CONNECT_TIMEOUT
  WTL_TOTAL_TIMEOUT WTL_MAX_RETRIES WTL_RETRY_BASE_MS WTL_RETRY_AFTER_MAX WTL_RATE_LIMIT
  WTL_IMSI_REGEXP WTL_EVENT_ACTIONS EVENTS_PATH MAX_BODY_BYTES SHUTDOWN_TIMEOUT
  HEADER_READ_TIMEOUT REQUEST_TIMEOUT MAX_IN_FLIGHT EVENT_DEDUP_TTL EVENT_DEDUP_MAX
  STALE_EVENT_CHECK METRICS_PUBLIC LOG_LEVEL LOG_FORMAT RUST_LOG APP_NAME DEBUG
  WTL_CA_FILE WTL_CLIENT_CERT_FILE WTL_CLIENT_KEY_FILE WTL_PROXY
  REDIS_URL REDIS_KEY_PREFIX REDIS_TIMEOUT REDIS_CA_FILE REDIS_FAIL_OPEN STALE_EVENT_TTL)
# HTTPS_PROXY and its kin are not passed on: in the shell that deploys they describe that
# machine's network, not the service's. WTL_PROXY sets the service's proxy.
SECRET_VARS=(API_TOKEN WTL_API_TOKEN WTL_API_PASSWORD WTL_OAUTH_CLIENT_SECRET REDIS_URL)

load_env_file() {
  local file=$1 line key value
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\'(.*)\'$ ]] || [[ $value =~ ^\"(.*)\"$ ]]; then value=${BASH_REMATCH[1]}; fi
    [ -n "${!key+x}" ] || export "$key=$value"
  done <"$file"
}
if [ -n "$env_file" ]; then
  [ -f "$env_file" ] || { echo "error: env file $env_file not found" >&2; exit 2; }
  load_env_file "$env_file"
elif [ -f "$root/.env" ]; then
  load_env_file "$root/.env"
fi

AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
SERVICE_NAME=${SERVICE_NAME:-nsps-wtl-connector}
ECR_REPOSITORY=${ECR_REPOSITORY:-nsps-wtl-connector}
APPRUNNER_CPU=${APPRUNNER_CPU:-0.25 vCPU}
APPRUNNER_MEMORY=${APPRUNNER_MEMORY:-0.5 GB}
# One instance keeps the redelivery memory whole; with REDIS_URL it is shared, so several can run.
if [ -n "${REDIS_URL:-}" ]; then MAX_INSTANCES=${MAX_INSTANCES:-3}; else MAX_INSTANCES=${MAX_INSTANCES:-1}; fi
MIN_INSTANCES=${MIN_INSTANCES:-1}
CONCURRENCY=${CONCURRENCY:-100}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-900}
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo nogit)
IMAGE_TAG=${IMAGE_TAG:-$git_rev-$(date +%Y%m%d%H%M%S)}

missing=0
require() { if [ -z "${!1:-}" ]; then echo "error: $1 is required ($2)" >&2; missing=1; fi; }
require AWS_REGION "the AWS region, e.g. eu-central-1"
if [ "$mode" != destroy ]; then require API_TOKEN "the Bearer token NSPS sends"; fi
if [ "$mode" = deploy ] || [ "$mode" = env ]; then require WTL_API_URL "the WTL API base URL"; fi
tools=(aws curl python3)
[ "$mode" = deploy ] && tools+=(docker)
for tool in "${tools[@]}"; do
  if ! $dry_run && ! command -v "$tool" >/dev/null 2>&1; then echo "error: $tool is not installed" >&2; missing=1; fi
done
[ "$missing" -eq 0 ] || exit 2

mask() {
  local text=$* name
  for name in "${SECRET_VARS[@]}"; do
    if [ -n "${!name:-}" ]; then text=${text//"${!name}"/***}; fi
  done
  printf '%s\n' "$text"
}
run() {
  echo "+ $(mask "$@")"
  $dry_run || "$@"
}
query() {
  local placeholder=$1; shift
  if $dry_run; then echo "+ $(mask "$@")" >&2; echo "$placeholder"; return 0; fi
  "$@"
}
confirm() {
  $yes && return 0
  if [ ! -t 0 ]; then echo "error: $1: pass --yes to confirm without a terminal" >&2; exit 2; fi
  read -r -p "$1 [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || { echo "cancelled"; exit 1; }
}
is_secret() { local v; for v in "${SECRET_VARS[@]}"; do [ "$v" = "$1" ] && return 0; done; return 1; }

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
reg=(--region "$AWS_REGION")

service_arn() {
  query "arn:aws:apprunner:$AWS_REGION:000000000000:service/$SERVICE_NAME/dryrun" aws apprunner list-services "${reg[@]}" \
    --query "ServiceSummaryList[?ServiceName=='$SERVICE_NAME'].ServiceArn | [0]" --output text
}
service_url() {
  local host
  host=$(query "$SERVICE_NAME.dryrun.awsapprunner.com" aws apprunner describe-service "${reg[@]}" \
    --service-arn "$1" --query Service.ServiceUrl --output text)
  echo "https://$host"
}

wait_running() {
  local arn=$1 waited=0 status
  $dry_run && { echo "(dry run: not waiting for RUNNING)"; return 0; }
  while :; do
    status=$(aws apprunner describe-service "${reg[@]}" --service-arn "$arn" --query Service.Status --output text)
    case "$status" in
      RUNNING) echo "service is RUNNING"; return 0 ;;
      CREATE_FAILED|DELETE_FAILED|DELETED|PAUSED) echo "error: service status $status" >&2; return 1 ;;
    esac
    if [ "$waited" -ge "$WAIT_TIMEOUT" ]; then echo "error: not RUNNING after ${WAIT_TIMEOUT}s ($status)" >&2; return 1; fi
    sleep 10; waited=$((waited + 10))
  done
}

smoke_test() {
  local url=$1 status body
  echo "smoke test: $url"
  if $dry_run; then
    echo "+ curl $url/health"
    echo "+ curl -X POST $url/process-event -H 'Authorization: Bearer ***' (Account/Unblocked event)"
    return 0
  fi
  status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 "$url/health" || true)
  [ "$status" = 200 ] || { echo "error: GET /health answered $status" >&2; return 1; }
  body="{\"event_id\":\"smoke-$(date +%s)\",\"data\":{\"event_type\":\"Account/Unblocked\"}}"
  # The token goes in a private header file, so it never shows on a command line (ps).
  (umask 077; printf 'Authorization: Bearer %s\n' "${API_TOKEN%%,*}" >"$workdir/auth-header")
  status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -X POST "$url/process-event" \
    -H @"$workdir/auth-header" -H 'Content-Type: application/json' -d "$body" || true)
  [ "$status" = 202 ] || { echo "error: the authenticated smoke event answered $status (expected 202)" >&2; return 1; }
  echo "smoke test passed: /health 200, authenticated event 202"
}

# Secrets Manager: one secret per setting; the value goes through a private file, never argv.
store_secrets() {
  local name sname file
  for name in "${SECRET_VARS[@]}"; do
    [ -n "${!name:-}" ] || continue
    sname="$SERVICE_NAME/$name"
    echo "+ aws secretsmanager put-secret-value --secret-id $sname --secret-string file://... (value from $name)"
    $dry_run && continue
    file="$workdir/$name"; (umask 077; printf '%s' "${!name}" >"$file")
    if ! aws secretsmanager describe-secret "${reg[@]}" --secret-id "$sname" >/dev/null 2>&1; then
      aws secretsmanager create-secret "${reg[@]}" --name "$sname" --secret-string "file://$file" >/dev/null
    else
      aws secretsmanager put-secret-value "${reg[@]}" --secret-id "$sname" --secret-string "file://$file" >/dev/null
    fi
  done
}

# The ImageConfiguration JSON (settings as RuntimeEnvironmentVariables), written by python3 so
# every value is escaped correctly (a regex with commas, backslashes and quotes survives).
image_configuration() {
  local names=() secret_names=() name
  for name in "${APP_VARS[@]}"; do
    [ -n "${!name:-}" ] || continue
    if $secrets && is_secret "$name"; then secret_names+=("$name"); else names+=("$name"); fi
  done
  SECRET_PREFIX="arn:aws:secretsmanager:$AWS_REGION:${ACCOUNT_ID:-000000000000}:secret:$SERVICE_NAME/" \
    python3 - "${#names[@]}" "${names[@]}" "${secret_names[@]}" <<'PY'
import json, os, sys
count = int(sys.argv[1])
plain, secret = sys.argv[2:2 + count], sys.argv[2 + count:]
cfg = {"Port": "8000", "RuntimeEnvironmentVariables": {n: os.environ[n] for n in plain}}
refs = {n: os.environ["SECRET_PREFIX"] + n for n in secret}
# TLS material for reaching WTL: App Runner has no file mounts, so each PEM is a secret whose
# value is the PEM itself, handed over as the setting (the connector takes inline PEM).
for setting, ref in (("WTL_CA_FILE", "WTL_CA_SECRET_ARN"), ("WTL_CLIENT_CERT_FILE", "WTL_CLIENT_CERT_SECRET_ARN"),
                     ("WTL_CLIENT_KEY_FILE", "WTL_CLIENT_KEY_SECRET_ARN")):
    if os.environ.get(ref):
        refs[setting] = os.environ[ref]
        cfg["RuntimeEnvironmentVariables"].pop(setting, None)
if refs:
    cfg["RuntimeEnvironmentSecrets"] = refs
print(json.dumps(cfg))
PY
}

# CPU and memory, and the instance role (INSTANCE_ROLE_ARN) the service reads its secrets with.
instance_configuration() {
  local cfg="Cpu=$APPRUNNER_CPU,Memory=$APPRUNNER_MEMORY"
  [ -n "${INSTANCE_ROLE_ARN:-}" ] && cfg+=",InstanceRoleArn=$INSTANCE_ROLE_ARN"
  echo "$cfg"
}

# Reaching a private network (an HLR or a Redis on it) through an App Runner VPC connector.
network_flags=()
if [ -n "${VPC_CONNECTOR_ARN:-}" ]; then
  network_flags=(--network-configuration "EgressConfiguration={EgressType=VPC,VpcConnectorArn=$VPC_CONNECTOR_ARN}")
fi

source_configuration() {
  local image=$1 role=$2 image_cfg
  image_cfg=$(image_configuration)
  python3 - "$image" "$role" "$image_cfg" <<'PY'
import json, sys
image, role, image_cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(json.dumps({
    "ImageRepository": {"ImageIdentifier": image, "ImageRepositoryType": "ECR", "ImageConfiguration": image_cfg},
    "AutoDeploymentsEnabled": False,
    "AuthenticationConfiguration": {"AccessRoleArn": role},
}))
PY
}

case "$mode" in
  destroy)
    arn=$(service_arn)
    if [ -z "$arn" ] || [ "$arn" = None ]; then echo "no service $SERVICE_NAME in $AWS_REGION"; else
      confirm "Delete App Runner service $SERVICE_NAME in $AWS_REGION?"
      run aws apprunner delete-service "${reg[@]}" --service-arn "$arn"
    fi
    if $purge; then
      confirm "Delete ECR repository $ECR_REPOSITORY and every image in it?"
      run aws ecr delete-repository "${reg[@]}" --repository-name "$ECR_REPOSITORY" --force
    fi
    exit 0
    ;;
  test)
    arn=$(service_arn)
    if [ -z "$arn" ] || [ "$arn" = None ]; then echo "error: no service $SERVICE_NAME in $AWS_REGION" >&2; exit 1; fi
    smoke_test "$(service_url "$arn")"
    exit 0
    ;;
esac

ACCOUNT_ID=$(query 000000000000 aws sts get-caller-identity --query Account --output text)
registry="$ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com"
arn=$(service_arn)
$secrets && store_secrets

if [ "$mode" = env ]; then
  if [ -z "$arn" ] || [ "$arn" = None ]; then echo "error: no service $SERVICE_NAME to update; deploy first" >&2; exit 1; fi
  current_image=$(query "$registry/$ECR_REPOSITORY:current" aws apprunner describe-service "${reg[@]}" --service-arn "$arn" \
    --query Service.SourceConfiguration.ImageRepository.ImageIdentifier --output text)
  role=$(query "arn:aws:iam::$ACCOUNT_ID:role/AppRunnerECRAccessRole" aws apprunner describe-service "${reg[@]}" --service-arn "$arn" \
    --query Service.SourceConfiguration.AuthenticationConfiguration.AccessRoleArn --output text)
  source_configuration "$current_image" "$role" >"$workdir/source.json"
  run aws apprunner update-service "${reg[@]}" --service-arn "$arn" --source-configuration "file://$workdir/source.json"
  wait_running "$arn"
  smoke_test "$(service_url "$arn")"
  exit 0
fi

# ---- deploy ----
image="$registry/$ECR_REPOSITORY:$IMAGE_TAG"
if ! query "" aws ecr describe-repositories "${reg[@]}" --repository-names "$ECR_REPOSITORY" >/dev/null 2>&1; then
  run aws ecr create-repository "${reg[@]}" --repository-name "$ECR_REPOSITORY" --image-scanning-configuration scanOnPush=true
fi
echo "+ aws ecr get-login-password --region $AWS_REGION | docker login --username AWS --password-stdin $registry"
$dry_run || aws ecr get-login-password "${reg[@]}" | docker login --username AWS --password-stdin "$registry"
run docker build --platform linux/amd64 -t "$image" "$root"
run docker push "$image"

role=${APPRUNNER_ACCESS_ROLE_ARN:-}
if [ -z "$role" ]; then
  role="arn:aws:iam::$ACCOUNT_ID:role/AppRunnerECRAccessRole"
  if ! query "" aws iam get-role --role-name AppRunnerECRAccessRole >/dev/null 2>&1; then
    cat >"$workdir/trust.json" <<'JSON'
{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"build.apprunner.amazonaws.com"},"Action":"sts:AssumeRole"}]}
JSON
    run aws iam create-role --role-name AppRunnerECRAccessRole --assume-role-policy-document "file://$workdir/trust.json"
    run aws iam attach-role-policy --role-name AppRunnerECRAccessRole \
      --policy-arn arn:aws:iam::aws:policy/service-role/AWSAppRunnerServicePolicyForECRAccess
  fi
fi
source_configuration "$image" "$role" >"$workdir/source.json"

# The instance count, as an auto-scaling configuration named after it (App Runner's default
# would allow 25 instances).
scaling_name="$SERVICE_NAME-$MIN_INSTANCES-$MAX_INSTANCES-$CONCURRENCY"
scaling=$(query "arn:aws:apprunner:$AWS_REGION:000000000000:autoscalingconfiguration/$scaling_name/1" \
  aws apprunner list-auto-scaling-configurations "${reg[@]}" --auto-scaling-configuration-name "$scaling_name" \
  --query "AutoScalingConfigurationSummaryList[0].AutoScalingConfigurationArn" --output text)
if [ -z "$scaling" ] || [ "$scaling" = None ]; then
  scaling=$(query "arn:aws:apprunner:$AWS_REGION:000000000000:autoscalingconfiguration/$scaling_name/1" \
    aws apprunner create-auto-scaling-configuration "${reg[@]}" --auto-scaling-configuration-name "$scaling_name" \
    --min-size "$MIN_INSTANCES" --max-size "$MAX_INSTANCES" --max-concurrency "$CONCURRENCY" \
    --query AutoScalingConfiguration.AutoScalingConfigurationArn --output text)
fi

if [ -z "$arn" ] || [ "$arn" = None ]; then
  run aws apprunner create-service "${reg[@]}" --service-name "$SERVICE_NAME" \
    --source-configuration "file://$workdir/source.json" \
    --instance-configuration "$(instance_configuration)" "${network_flags[@]}" \
    --auto-scaling-configuration-arn "$scaling" \
    --health-check-configuration "Protocol=HTTP,Path=/health,Interval=10,Timeout=5,HealthyThreshold=1,UnhealthyThreshold=3"
  arn=$(service_arn)
else
  run aws apprunner update-service "${reg[@]}" --service-arn "$arn" \
    --source-configuration "file://$workdir/source.json" \
    --instance-configuration "$(instance_configuration)" "${network_flags[@]}" \
    --auto-scaling-configuration-arn "$scaling" \
    --health-check-configuration "Protocol=HTTP,Path=/health,Interval=10,Timeout=5,HealthyThreshold=1,UnhealthyThreshold=3"
  if $force; then
    wait_running "$arn"
    run aws apprunner start-deployment "${reg[@]}" --service-arn "$arn"
  fi
fi
wait_running "$arn"
url=$(service_url "$arn")
echo "service URL: $url"
echo "NSPS handler URL: $url/process-event"
smoke_test "$url"
