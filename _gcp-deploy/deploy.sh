#!/usr/bin/env bash
# Deploys the NSPS -> WTL HLR/HSS connector to Google Cloud Run.
#
#   bash _gcp-deploy/deploy.sh [--env-file FILE] [--env-only | --test-only | --destroy]
#                              [--force-deploy] [--secrets] [--local-build] [--check] [--yes] [--dry-run]
#
# First run: enables the APIs, creates the Artifact Registry repository, builds and pushes the
# image (Cloud Build, or Docker with --local-build), deploys the service and smoke-tests it.
# Settings come from the environment and from .env (or --env-file); see _gcp-deploy/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash _gcp-deploy/deploy.sh [options]

  (no option)      build the image for the current commit (skipped when it already exists),
                   deploy or update the Cloud Run service, then smoke-test it
  --force-deploy   build a fresh image and deploy it even when nothing changed
  --env-only       only update the service's settings (no build, no new image)
  --test-only      only run the smoke test against the deployed service
  --destroy        delete the Cloud Run service (asks first unless --yes)
  --secrets        keep the secret settings in Secret Manager (--set-secrets), not as env vars
  --local-build    build and push with the local Docker instead of Cloud Build
  --check          also run the connector's own `check` (configuration, DNS, connection, TLS,
                   token, Redis; no /prov call) as a Cloud Run job with the service's image,
                   settings, secrets and network, before the smoke test
  --env-file FILE  read settings from FILE (default: .env in the repository root, if present)
  --yes            do not ask for confirmation
  --dry-run        print every cloud command instead of running it
  -h, --help       this text

Settings (environment or env file):
  required  GCP_PROJECT_ID (or gcloud's configured project), API_TOKEN, WTL_API_URL
  optional  GCP_REGION (europe-west1), SERVICE_NAME (nsps-wtl-connector),
            AR_REPOSITORY (nsps-wtl-connector), IMAGE_TAG (git commit), MIN_INSTANCES (0),
            MAX_INSTANCES (1), CONCURRENCY (80), CPU (1), MEMORY (256Mi),
            and every connector setting of .env.example (passed to the service).
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

mode=deploy force=false secrets=false local_build=false yes=false dry_run=false precheck=false
env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --env-only) mode="env" ;;
    --test-only) mode="test" ;;
    --destroy) mode=destroy ;;
    --force-deploy) force=true ;;
    --secrets) secrets=true ;;
    --local-build) local_build=true ;;
    --check) precheck=true ;;
    --yes|-y) yes=true ;;
    --dry-run) dry_run=true ;;
    --env-file) env_file=${2:?--env-file needs a path}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# The connector's own settings, passed to the service. PORT is Cloud Run's to set.
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

# Values from the env file fill in what the environment does not already set.
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

GCP_PROJECT_ID=${GCP_PROJECT_ID:-}
if [ -z "$GCP_PROJECT_ID" ] && ! $dry_run && command -v gcloud >/dev/null 2>&1; then
  GCP_PROJECT_ID=$(gcloud config get-value project 2>/dev/null || true)
fi
GCP_REGION=${GCP_REGION:-europe-west1}
SERVICE_NAME=${SERVICE_NAME:-nsps-wtl-connector}
AR_REPOSITORY=${AR_REPOSITORY:-nsps-wtl-connector}
MIN_INSTANCES=${MIN_INSTANCES:-0}
# One instance keeps the redelivery memory whole; with REDIS_URL it is shared, so several can run.
if [ -n "${REDIS_URL:-}" ]; then MAX_INSTANCES=${MAX_INSTANCES:-3}; else MAX_INSTANCES=${MAX_INSTANCES:-1}; fi
CONCURRENCY=${CONCURRENCY:-80}
CPU=${CPU:-1}
MEMORY=${MEMORY:-256Mi}
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo nogit)
IMAGE_TAG=${IMAGE_TAG:-$git_rev}
$force && IMAGE_TAG="$IMAGE_TAG-$(date +%Y%m%d%H%M%S)"

# Everything is checked before any cloud command runs.
missing=0
require() { if [ -z "${!1:-}" ]; then echo "error: $1 is required ($2)" >&2; missing=1; fi; }
require GCP_PROJECT_ID "the Google Cloud project; or run: gcloud config set project ID"
if [ "$mode" = deploy ] || [ "$mode" = env ] || [ "$mode" = test ]; then
  require API_TOKEN "the Bearer token NSPS sends"
fi
if [ "$mode" = deploy ] || [ "$mode" = env ]; then
  require WTL_API_URL "the WTL API base URL"
fi
for tool in gcloud curl; do
  if ! $dry_run && ! command -v "$tool" >/dev/null 2>&1; then echo "error: $tool is not installed" >&2; missing=1; fi
done
if $local_build && ! $dry_run && ! command -v docker >/dev/null 2>&1; then
  echo "error: --local-build needs docker" >&2; missing=1
fi
[ "$missing" -eq 0 ] || exit 2

image="$GCP_REGION-docker.pkg.dev/$GCP_PROJECT_ID/$AR_REPOSITORY/$SERVICE_NAME:$IMAGE_TAG"

# TLS files for reaching WTL, kept in Secret Manager and mounted as files (each in a directory
# of its own, as Cloud Run requires); the connector is told where they are.
TLS_MOUNTS=()
mount_tls() { # mount_tls SECRET_VAR FILE_VAR PATH
  local secret=${!1:-}
  [ -n "$secret" ] || return 0
  TLS_MOUNTS+=("$3=$secret:latest")
  printf -v "$2" '%s' "$3"
  export "${2?}"
}
mount_tls WTL_CA_SECRET WTL_CA_FILE /secrets/wtl-ca/ca.pem
mount_tls WTL_CLIENT_CERT_SECRET WTL_CLIENT_CERT_FILE /secrets/wtl-client-cert/client.pem
mount_tls WTL_CLIENT_KEY_SECRET WTL_CLIENT_KEY_FILE /secrets/wtl-client-key/client.key
mount_tls REDIS_CA_SECRET REDIS_CA_FILE /secrets/redis-ca/ca.pem

# Reaching a private network (an HLR or a Redis on it): a Serverless VPC connector, or Direct
# VPC egress (a network and subnet).
network_flags=()
if [ -n "${VPC_CONNECTOR:-}" ]; then
  network_flags=(--vpc-connector "$VPC_CONNECTOR" --vpc-egress "${VPC_EGRESS:-private-ranges-only}")
elif [ -n "${VPC_NETWORK:-}" ]; then
  network_flags=(--network "$VPC_NETWORK" --subnet "${VPC_SUBNET:-$VPC_NETWORK}" --vpc-egress "${VPC_EGRESS:-private-ranges-only}")
fi

# Prints a command with every secret value masked, then runs it (unless --dry-run).
mask() {
  local text=$*
  local name
  for name in "${SECRET_VARS[@]}"; do
    if [ -n "${!name:-}" ]; then text=${text//"${!name}"/***}; fi
  done
  printf '%s\n' "$text"
}
run() {
  echo "+ $(mask "$@")"
  $dry_run || "$@"
}
# A read-only query whose answer the script needs; in --dry-run it answers "$1" instead.
query() {
  local placeholder=$1; shift
  if $dry_run; then echo "+ $(mask "$@")" >&2; echo "$placeholder"; return 0; fi
  "$@"
}

is_secret() { local v; for v in "${SECRET_VARS[@]}"; do [ "$v" = "$1" ] && return 0; done; return 1; }
secret_name() { echo "$SERVICE_NAME-$1" | tr '[:upper:]_' '[:lower:]-'; }

# The service's settings as a YAML file for --env-vars-file: single-quoted values survive commas,
# backslashes and quotes (a regex such as ^(00101|00102)\d{10}$ arrives intact).
env_vars_file() {
  local file=$1 name value
  : >"$file"
  for name in "${APP_VARS[@]}"; do
    value=${!name:-}
    [ -n "$value" ] || continue
    if $secrets && is_secret "$name"; then continue; fi
    printf "%s: '%s'\n" "$name" "${value//\'/\'\'}" >>"$file"
  done
}

# The --set-secrets / --update-secrets list: secret settings (with --secrets) and TLS file mounts.
secret_flags() {
  local name flags="" mount
  if $secrets; then
    for name in "${SECRET_VARS[@]}"; do
      [ -n "${!name:-}" ] || continue
      flags+="${flags:+,}$name=$(secret_name "$name"):latest"
    done
  fi
  for mount in "${TLS_MOUNTS[@]}"; do flags+="${flags:+,}$mount"; done
  echo "$flags"
}

# Stores each secret setting in Secret Manager; the value goes through stdin, never argv.
store_secrets() {
  local name sname
  for name in "${SECRET_VARS[@]}"; do
    [ -n "${!name:-}" ] || continue
    sname=$(secret_name "$name")
    echo "+ gcloud secrets versions add $sname --data-file=- (value from $name)"
    $dry_run && continue
    if ! gcloud secrets describe "$sname" --project "$GCP_PROJECT_ID" >/dev/null 2>&1; then
      gcloud secrets create "$sname" --project "$GCP_PROJECT_ID" --replication-policy automatic >/dev/null
    fi
    printf '%s' "${!name}" | gcloud secrets versions add "$sname" --project "$GCP_PROJECT_ID" --data-file=- >/dev/null
  done
}

service_url() {
  query "https://$SERVICE_NAME-dryrun.a.run.app" gcloud run services describe "$SERVICE_NAME" \
    --project "$GCP_PROJECT_ID" --region "$GCP_REGION" --format 'value(status.url)'
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

# `nsps-wtl-connector check` as a Cloud Run job, with the service's own image, settings, secrets
# and network: it reaches WTL, the token endpoint and Redis from where the service runs. Its exit
# code (0 when every check passes) is the job's.
run_check_job() {
  local image=$1 job="$SERVICE_NAME-check"
  echo "check: running \`nsps-wtl-connector check\` as the Cloud Run job $job"
  run gcloud run jobs deploy "$job" "${project[@]}" "${region[@]}" --image "$image" --args check \
    --max-retries 0 --task-timeout 120 --env-vars-file "$workdir/env.yaml" "${extra[@]}" "${network_flags[@]}"
  if ! run gcloud run jobs execute "$job" "${project[@]}" "${region[@]}" --wait; then
    echo "error: check failed; see the job's log (gcloud run jobs executions list --job $job)" >&2
    return 1
  fi
}

confirm() {
  $yes && return 0
  if [ ! -t 0 ]; then echo "error: $1: pass --yes to confirm without a terminal" >&2; exit 2; fi
  read -r -p "$1 [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || { echo "cancelled"; exit 1; }
}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
project=(--project "$GCP_PROJECT_ID")
region=(--region "$GCP_REGION")

case "$mode" in
  destroy)
    confirm "Delete Cloud Run service $SERVICE_NAME in $GCP_PROJECT_ID/$GCP_REGION?"
    run gcloud run services delete "$SERVICE_NAME" "${project[@]}" "${region[@]}" --quiet
    echo "deleted $SERVICE_NAME (images stay in Artifact Registry $AR_REPOSITORY)"
    exit 0
    ;;
  test)
    smoke_test "$(service_url)"
    exit 0
    ;;
  env)
    env_vars_file "$workdir/env.yaml"
    extra=()
    $secrets && store_secrets
    [ -n "$(secret_flags)" ] && extra=(--update-secrets "$(secret_flags)")
    run gcloud run services update "$SERVICE_NAME" "${project[@]}" "${region[@]}" \
      --env-vars-file "$workdir/env.yaml" "${extra[@]}" "${network_flags[@]}"
    smoke_test "$(service_url)"
    exit 0
    ;;
esac

# ---- deploy ----
run gcloud services enable run.googleapis.com artifactregistry.googleapis.com cloudbuild.googleapis.com "${project[@]}"
if ! query "" gcloud artifacts repositories describe "$AR_REPOSITORY" "${project[@]}" --location "$GCP_REGION" >/dev/null 2>&1; then
  run gcloud artifacts repositories create "$AR_REPOSITORY" "${project[@]}" --location "$GCP_REGION" \
    --repository-format docker --description "NSPS WTL connector images"
fi
if ! $force && ! $dry_run && gcloud artifacts docker images describe "$image" >/dev/null 2>&1; then
  echo "image $image already exists: not rebuilt (use --force-deploy to rebuild)"
elif $local_build; then
  run gcloud auth configure-docker "$GCP_REGION-docker.pkg.dev" --quiet
  run docker build --platform linux/amd64 -t "$image" "$root"
  run docker push "$image"
else
  run gcloud builds submit "$root" "${project[@]}" --region "$GCP_REGION" --tag "$image"
fi

env_vars_file "$workdir/env.yaml"
extra=()
$secrets && store_secrets
[ -n "$(secret_flags)" ] && extra=(--set-secrets "$(secret_flags)")
# Cloud Run gives an instance 10 s after SIGTERM; the connector drains within SHUTDOWN_TIMEOUT
# (8 s by default). The connector checks the Bearer token itself, hence --allow-unauthenticated.
run gcloud run deploy "$SERVICE_NAME" "${project[@]}" "${region[@]}" \
  --image "$image" --platform managed --port 8000 --allow-unauthenticated \
  --min-instances "$MIN_INSTANCES" --max-instances "$MAX_INSTANCES" --concurrency "$CONCURRENCY" \
  --cpu "$CPU" --memory "$MEMORY" --timeout 60 \
  --env-vars-file "$workdir/env.yaml" "${extra[@]}" "${network_flags[@]}"

url=$(service_url)
echo "service URL: $url"
echo "NSPS handler URL: $url/process-event"
if $precheck; then run_check_job "$image"; fi
smoke_test "$url"
