#!/usr/bin/env bash
# Deploys the NSPS -> WTL HLR/HSS connector to Google Cloud Run, from an empty project to a
# verified service. See _gcp-deploy/README.md.
#
#   bash _gcp-deploy/deploy.sh [--env-file FILE] [--env-only | --test-only | --rollback
#        | --destroy [--purge-egress] | --monitoring-only] [--secrets] [--check] [--static-egress-ip] [--no-invoker-iam-check]
#        [--monitoring] [--force-deploy] [--local-build] [--yes] [--dry-run]
set -euo pipefail
# mapfile, and empty arrays under `set -u`, need bash 4.4 (macOS ships 3.2: brew install bash).
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "error: bash 4.4 or newer is needed; this is $BASH_VERSION" >&2
  exit 2
fi

usage() {
  cat <<'EOF'
usage: bash _gcp-deploy/deploy.sh [options]

  (no option)      build the image for the current commit (skipped when it already exists) and
                   deploy it. A new service is created and smoke-tested. An existing service gets
                   the new revision with no traffic under the tag `candidate`; the checks run
                   against that revision's own URL, and traffic moves to it only when they pass
  --env-only       the same rollout with the serving revision's image and the env file's settings
  --test-only      only run the smoke test against the service
  --rollback       send all traffic back to the revision that served before the current one
                   (tagged `previous` when traffic moved; or ROLLBACK_REVISION), then smoke-test
  --destroy        delete the service and its check job (asks first unless --yes), and say
                   what it kept
  --purge-egress   with --destroy: also delete the egress network --static-egress-ip built
                   (its Cloud NAT, router and reserved address, the one the HLR's firewall
                   allows: a later --static-egress-ip run reserves another; and its own network)
  --monitoring     after a successful deploy, create or update the monitoring: log-based
                   metrics from the connector's lines, a Cloud Monitoring dashboard and alert
                   policies (5xx answers, WTL failures, redelivery store unavailable, no events),
                   e-mailed to ALERT_EMAIL when set (see monitoring/log-metrics.json)
  --monitoring-only
                   only create or update the monitoring (no build, no deploy)
  --secrets        keep the secret settings (API_TOKEN, WTL_API_TOKEN, WTL_API_PASSWORD,
                   WTL_OAUTH_CLIENT_SECRET, REDIS_URL, inline private keys) in Secret Manager,
                   mounted as files of their latest version (a new version rotates the running
                   service without a deploy); the runtime service account may read exactly these
  --check          also run the connector's own `check` (configuration, DNS, connection, TLS,
                   token, Redis; no /prov call) as a Cloud Run job with the new revision's image,
                   settings, secrets, identity and network, before any traffic moves
  --static-egress-ip
                   send all outbound traffic through one reserved address (Direct VPC egress,
                   Cloud Router, Cloud NAT) and print it, for the HLR's firewall
  --no-invoker-iam-check
                   make the service public without an allUsers IAM binding (for projects whose
                   organisation policy refuses allUsers; see the README)
  --tracing        run an OpenTelemetry collector beside the connector in the same service
                   (OTEL_COLLECTOR_IMAGE) that sends the connector's spans to Cloud Trace; the
                   runtime account may write traces (roles/cloudtrace.agent)
  --force-deploy   build a fresh image even when one exists for this commit
  --local-build    build and push with the local Docker instead of Cloud Build
  --env-file FILE  read settings from FILE (default: .env in the repository root, if present)
  --yes            do not ask for confirmation
  --dry-run        print every command that would change something instead of running it
                   (read-only look-ups still run, so the plan matches what a real run would do)
  -h, --help       this text

Settings (environment or env file):
  required  GCP_PROJECT_ID (or gcloud's configured project), API_TOKEN, WTL_API_URL
  optional  GCP_REGION (europe-west1), SERVICE_NAME (nsps-wtl-connector), AR_REPOSITORY
            (nsps-wtl-connector), IMAGE_TAG (git commit), MIN_INSTANCES (0), MAX_INSTANCES
            (1; 3 with REDIS_URL), CONCURRENCY (80), CPU (1), MEMORY (256Mi),
            RUNTIME_SERVICE_ACCOUNT (default <SERVICE_NAME>-run, created when absent),
            WTL_CA_SECRET / WTL_CLIENT_CERT_SECRET / WTL_CLIENT_KEY_SECRET / REDIS_CA_SECRET
            (Secret Manager secrets mounted as the PEM files), VPC_CONNECTOR, VPC_NETWORK,
            VPC_SUBNET, VPC_EGRESS, EGRESS_SUBNET_RANGE (10.124.0.0/26), ROLLBACK_REVISION,
            ALERT_EMAIL and NO_EVENTS_ALERT_MINUTES (60) with --monitoring,
            OTEL_COLLECTOR_IMAGE (otel/opentelemetry-collector-contrib:0.120.0) with --tracing, and every
            variable the connector reads (`nsps-wtl-connector variables`; all are passed to
            the service when set, PORT excepted).
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=SCRIPTDIR/../_deploy-common/lib.sh
. "$root/_deploy-common/lib.sh"

mode=deploy force=false secrets=false local_build=false yes=false dry_run=false precheck=false
static_egress=false purge_egress=false invoker_check=true monitoring=false tracing=false env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --env-only) mode="env" ;;
    --test-only) mode="test" ;;
    --rollback) mode=rollback ;;
    --destroy) mode=destroy ;;
    --purge-egress) purge_egress=true ;;
    --monitoring) monitoring=true ;;
    --monitoring-only) mode=monitoring monitoring=true ;;
    --force-deploy) force=true ;;
    --secrets) secrets=true ;;
    --local-build) local_build=true ;;
    --check) precheck=true ;;
    --static-egress-ip) static_egress=true ;;
    --tracing) tracing=true ;;
    --no-invoker-iam-check) invoker_check=false ;;
    --yes|-y) yes=true ;;
    --dry-run) dry_run=true ;;
    --env-file) env_file=${2:?--env-file needs a path}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
load_settings "$env_file" "$root"

GCP_PROJECT_ID=${GCP_PROJECT_ID:-}
if [ -z "$GCP_PROJECT_ID" ] && command -v gcloud >/dev/null 2>&1; then
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
# Lines of a traced request carry Cloud Logging's trace name, which needs the project id.
export GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT:-$GCP_PROJECT_ID}

# Everything is checked before any cloud command runs.
missing=0
require() { if [ -z "${!1:-}" ]; then echo "error: $1 is required ($2)" >&2; missing=1; fi; }
require GCP_PROJECT_ID "the Google Cloud project; or run: gcloud config set project ID"
case "$mode" in deploy|env|test) require API_TOKEN "the Bearer token NSPS sends" ;; esac
case "$mode" in deploy|env) require WTL_API_URL "the WTL API base URL" ;; esac
for tool in gcloud curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; missing=1; }
done
if $local_build && ! $dry_run && ! command -v docker >/dev/null 2>&1; then
  echo "error: --local-build needs docker" >&2; missing=1
fi
if $purge_egress && [ "$mode" != destroy ]; then
  echo "error: --purge-egress goes with --destroy" >&2; missing=1
fi
if $static_egress && [ -n "${VPC_CONNECTOR:-}" ]; then
  echo "error: --static-egress-ip uses Direct VPC egress; unset VPC_CONNECTOR" >&2; missing=1
fi
if [[ ! $SERVICE_NAME =~ ^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$ ]]; then
  echo "error: SERVICE_NAME must be lower-case letters, digits and hyphens, start with a letter, at most 49 characters" >&2; missing=1
fi
if $monitoring && ! check_monitoring_settings; then missing=1; fi
OTEL_COLLECTOR_IMAGE=${OTEL_COLLECTOR_IMAGE:-otel/opentelemetry-collector-contrib:0.120.0}
if $tracing && [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-}" ]; then
  echo "error: --tracing runs its own collector; unset OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" >&2; missing=1
fi
[ "$missing" -eq 0 ] || exit 2

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
not_found='cannot find|could not be found|not found'   # how gcloud says a resource is not there (look_up)
project=(--project "$GCP_PROJECT_ID")
region=(--region "$GCP_REGION")
image="$GCP_REGION-docker.pkg.dev/$GCP_PROJECT_ID/$AR_REPOSITORY/$SERVICE_NAME:$IMAGE_TAG"
check_job="$SERVICE_NAME-check"

# ---- the runtime identity -------------------------------------------------------------------

# The service runs as its own service account, which may read its own secrets and nothing else.
runtime_account_id() {
  local id=${RUNTIME_SERVICE_ACCOUNT:-$SERVICE_NAME-run}
  id=${id%%@*}
  # Account ids are 6 to 30 characters: a long service name is cut and made unique by a hash.
  if [ "${#id}" -gt 30 ]; then id="${id:0:21}-$(short_hash "$id")"; fi
  if [ "${#id}" -lt 6 ]; then id="$id-runtime"; fi
  echo "$id"
}
if [[ ${RUNTIME_SERVICE_ACCOUNT:-} == *@* ]]; then
  runtime_sa=$RUNTIME_SERVICE_ACCOUNT
else
  runtime_sa="$(runtime_account_id)@$GCP_PROJECT_ID.iam.gserviceaccount.com"
fi

ensure_runtime_account() {
  if query gcloud iam service-accounts describe "$runtime_sa" "${project[@]}" >/dev/null 2>&1; then return 0; fi
  if [[ $runtime_sa != *"@$GCP_PROJECT_ID.iam.gserviceaccount.com" ]]; then
    echo "error: the runtime service account $runtime_sa does not exist (or you may not see it)" >&2
    exit 1
  fi
  run gcloud iam service-accounts create "${runtime_sa%%@*}" "${project[@]}" \
    --display-name "NSPS WTL connector ($SERVICE_NAME) runtime"
}

# ---- secrets ----------------------------------------------------------------------------------

secret_name() { echo "$SERVICE_NAME-$1" | tr '[:upper:]_' '[:lower:]-'; }
# Where a secret is mounted: /secrets/<name>/<name>, .pem for PEM material (a folder each, as
# Cloud Run wants).
mount_path() {
  local n ext=""
  n=$(echo "${1%_FILE}" | tr '[:upper:]_' '[:lower:]-')
  in_list "$1" "${PEM_VARS[@]}" && ext=.pem
  echo "/secrets/$n/$n$ext"
}
# The operator's own Secret Manager secret for a PEM setting: WTL_CA_FILE -> WTL_CA_SECRET.
pem_secret_var() { echo "${1%_FILE}_SECRET"; }

# Stores one setting in Secret Manager (created when absent); the value goes through stdin. A
# value the latest version already holds adds no version: Secret Manager bills every version it
# keeps, and a new version reaches the serving revision, which follows `latest`.
store_secret() { # store_secret VAR SECRET
  local var=$1 sname=$2
  if ! query gcloud secrets describe "$sname" "${project[@]}" >/dev/null 2>&1; then
    run gcloud secrets create "$sname" "${project[@]}" --replication-policy automatic
  elif latest_holds "$var" "$sname"; then
    echo "secret $sname: its latest version holds the value of $var already; no new version" >&2
    return
  fi
  echo "+ gcloud secrets versions add $sname --project $GCP_PROJECT_ID --data-file=- (the value of $var, through stdin)" >&2
  $dry_run || printf '%s' "${!var}" | gcloud secrets versions add "$sname" "${project[@]}" --data-file=- >/dev/null
}

# latest_holds VAR SECRET: true when the secret's latest version holds exactly VAR's value. Its
# value reaches Python through the environment, never argv; a version that cannot be read (none
# yet, the latest disabled, no permission to read values) counts as a different value.
latest_holds() {
  query gcloud secrets versions access latest --secret "$2" "${project[@]}" --format=json 2>/dev/null |
    SECRET_VALUE=${!1} python3 -c '
import base64, json, os, sys
try:
    data = json.load(sys.stdin)["payload"]["data"]
    held = base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4))
except (ValueError, KeyError, TypeError):
    sys.exit(1)
sys.exit(0 if held == os.environb[b"SECRET_VALUE"] else 1)'
}

grant_secret() { # grant_secret SECRET: the runtime account may read it (IAM may need a moment)
  with_iam_retry gcloud secrets add-iam-policy-binding "$1" "${project[@]}" \
    --member "serviceAccount:$runtime_sa" --role roles/secretmanager.secretAccessor >/dev/null
}

# Works out, without changing anything, how each setting reaches the service: ENV_FILE lines,
# SECRET_REFS (--set-secrets items), USED_SECRETS (secrets the runtime account must read) and
# TO_STORE (settings to put in Secret Manager as VAR=SECRET).
plan_settings() {
  local name sname ref
  split_settings "$secrets"
  ENV_LINES=() SECRET_REFS=() USED_SECRETS=() TO_STORE=()
  for name in "${PEM_VARS[@]}"; do
    ref=$(pem_secret_var "$name")
    if [ -n "${!ref:-}" ]; then
      SECRET_REFS+=("$(mount_path "$name")=${!ref}:latest")
      USED_SECRETS+=("${!ref}")
      ENV_LINES+=("$name=$(mount_path "$name")")
    fi
  done
  for name in "${SET_PLAIN[@]}"; do
    ref=$(pem_secret_var "$name")
    in_list "$name" "${PEM_VARS[@]}" && [ -n "${!ref:-}" ] && continue
    ENV_LINES+=("$name=${!name}")
  done
  for name in "${SET_SECRET[@]}"; do
    sname=$(secret_name "$name")
    TO_STORE+=("$name=$sname")
    USED_SECRETS+=("$sname")
    # Every secret is mounted as a file of its `latest` version, which the connector watches: a
    # new version in Secret Manager reaches the running instances without a deploy. A PEM
    # setting names its file; any other secret is given by its _FILE form.
    if in_list "$name" "${PEM_VARS[@]}"; then
      SECRET_REFS+=("$(mount_path "$name")=$sname:latest")
      ENV_LINES+=("$name=$(mount_path "$name")")
    elif in_list "${name}_FILE" "${SECRET_FILE_VARS[@]}"; then
      SECRET_REFS+=("$(mount_path "$name")=$sname:latest")
      ENV_LINES+=("${name}_FILE=$(mount_path "$name")")
    else
      # A secret with no _FILE form (OTEL_EXPORTER_OTLP_HEADERS) is an environment variable.
      SECRET_REFS+=("$name=$sname:latest")
    fi
  done
}

# The settings as a YAML file for --env-vars-file: single-quoted values survive commas,
# backslashes and quotes (a regex such as ^(00101|00102)\d{10}$ arrives intact).
write_env_file() {
  local file=$1 line value
  : >"$file"
  chmod 600 "$file"
  for line in "${ENV_LINES[@]}"; do
    value=${line#*=}
    printf "%s: '%s'\n" "${line%%=*}" "${value//\'/\'\'}" >>"$file"
  done
}

setup_secrets() {
  local item sname
  for item in "${TO_STORE[@]}"; do store_secret "${item%%=*}" "${item#*=}"; done
  for sname in "${USED_SECRETS[@]}"; do grant_secret "$sname"; done
}

# ---- network ----------------------------------------------------------------------------------

network_flags=()
set_network_flags() {
  if [ -n "${VPC_CONNECTOR:-}" ]; then
    network_flags=(--vpc-connector "$VPC_CONNECTOR" --vpc-egress "${VPC_EGRESS:-private-ranges-only}")
  elif [ -n "${VPC_NETWORK:-}" ]; then
    network_flags=(--network "$VPC_NETWORK" --subnet "${VPC_SUBNET:-$VPC_NETWORK}" --vpc-egress "${VPC_EGRESS:-private-ranges-only}")
  fi
}

# compute_present KIND NAME [FLAGS...]: whether `gcloud compute KIND describe NAME` finds it; a
# look-up that fails otherwise stops the run (look_up). A project whose Compute Engine API is off
# (a dry run before the first deploy enables it) has nothing to find.
compute_present() {
  local kind=() name=$2
  read -ra kind <<<"$1"
  shift 2
  not_found="$not_found|SERVICE_DISABLED|has not been used in project|is disabled|not enabled on project" \
    present gcloud compute "${kind[@]}" describe "$name" "${project[@]}" "$@"
}

# The names --static-egress-ip gives (and --destroy looks for): net, subnet, router, nat, address;
# own_network is true when the script made the network and the subnet (no VPC_NETWORK/VPC_SUBNET).
egress_names() {
  net=${VPC_NETWORK:-$SERVICE_NAME-egress} subnet=${VPC_SUBNET:-${VPC_NETWORK:+$VPC_NETWORK}}
  subnet=${subnet:-$SERVICE_NAME-egress}
  router="$SERVICE_NAME-egress" nat="$SERVICE_NAME-egress" address="$SERVICE_NAME-egress-ip"
  if [ -z "${VPC_NETWORK:-}" ] && [ -z "${VPC_SUBNET:-}" ]; then own_network=true; else own_network=false; fi
}

egress_address_ip() { # egress_address_ip ADDRESS-NAME: the reserved address's IP
  query gcloud compute addresses describe "$1" "${project[@]}" "${region[@]}" --format 'value(address)'
}

# One reserved public address for everything the service sends out: Direct VPC egress for all
# traffic into a subnet whose Cloud NAT uses only that address.
setup_static_egress() {
  local net subnet router nat address own_network
  egress_names
  compute_present networks "$net" || run gcloud compute networks create "$net" "${project[@]}" --subnet-mode custom
  compute_present "networks subnets" "$subnet" "${region[@]}" || run gcloud compute networks subnets create "$subnet" \
    "${project[@]}" "${region[@]}" --network "$net" --range "${EGRESS_SUBNET_RANGE:-10.124.0.0/26}"
  compute_present addresses "$address" "${region[@]}" || run gcloud compute addresses create "$address" "${project[@]}" "${region[@]}"
  compute_present routers "$router" "${region[@]}" || run gcloud compute routers create "$router" "${project[@]}" "${region[@]}" --network "$net"
  compute_present "routers nats" "$nat" --router "$router" "${region[@]}" || run gcloud compute routers nats create "$nat" \
    "${project[@]}" "${region[@]}" --router "$router" --nat-external-ip-pool "$address" --nat-custom-subnet-ip-ranges "$subnet"
  egress_ip=$(egress_address_ip "$address" 2>/dev/null || true)
  egress_ip=${egress_ip:-"(reserved on the first real run)"}
  network_flags=(--network "$net" --subnet "$subnet" --vpc-egress all-traffic)
}

# ---- the service --------------------------------------------------------------------------------

present() { look_up "$@" >/dev/null; }
describe_service() { # the service as JSON, or nothing when it does not exist
  look_up gcloud run services describe "$SERVICE_NAME" "${project[@]}" "${region[@]}" --format json || true
}
# json_get EXPRESSION: evaluates a Python expression over the JSON on stdin (`d`).
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null || true; }
serving_revision() { # the revision with the largest share of traffic
  json_get "max((t for t in d.get('status',{}).get('traffic',[]) if t.get('percent')), key=lambda t: t['percent'], default={}).get('revisionName','')"
}

deploy_flags() { # deploy_flags IMAGE EXISTING [CONTAINER]: the flags of every revision
  local service=(--platform managed --service-account "$runtime_sa"
    --min-instances "$MIN_INSTANCES" --max-instances "$MAX_INSTANCES" --concurrency "$CONCURRENCY" --timeout 60)
  local container=(--image "$1" --port 8000 --cpu "$CPU" --memory "$MEMORY" --env-vars-file "$workdir/env.yaml")
  if [ ${#SECRET_REFS[@]} -gt 0 ]; then
    container+=(--set-secrets "$(IFS=,; echo "${SECRET_REFS[*]}")")
  elif [ -n "$2" ]; then
    container+=(--clear-secrets)
  fi
  # The connector checks NSPS's Bearer token itself, so Cloud Run lets every caller through.
  if $invoker_check; then service+=(--allow-unauthenticated); else service+=(--no-invoker-iam-check); fi
  if $tracing; then
    # Two containers: the connector (the one that takes requests) and the collector beside it.
    container=(--container "${3:-connector}" "${container[@]}"
      --container otel-collector --image "$OTEL_COLLECTOR_IMAGE" --cpu 1 --memory 512Mi
      --args=--config=env:OTEL_COLLECTOR_CONFIG --env-vars-file "$workdir/collector.yaml")
  fi
  printf '%s\n' "${service[@]}" "${network_flags[@]}" "${container[@]}"
}

# The collector beside the connector: OTLP over HTTP on localhost:4318 in, Cloud Trace out (with
# the runtime account's credentials from the metadata server).
write_collector_config() {
  cat >"$1" <<'YAML'
OTEL_COLLECTOR_CONFIG: |
  receivers:
    otlp:
      protocols:
        http:
          endpoint: localhost:4318
  processors:
    batch: {}
  exporters:
    googlecloud: {}
  service:
    pipelines:
      traces:
        receivers: [otlp]
        processors: [batch]
        exporters: [googlecloud]
YAML
}

# The runtime account may write traces to Cloud Trace (and nothing else is added).
grant_trace_writer() {
  with_iam_retry gcloud projects add-iam-policy-binding "$GCP_PROJECT_ID" \
    --member "serviceAccount:$runtime_sa" --role roles/cloudtrace.agent --condition None >/dev/null
}

# `nsps-wtl-connector check` as a Cloud Run job with the new revision's image, settings, secrets,
# identity and network: it reaches WTL, the token endpoint and Redis from where the service runs.
run_check_job() {
  local job_flags=(--image "$1" --args check --service-account "$runtime_sa" --max-retries 0
    --task-timeout 120 --env-vars-file "$workdir/env.yaml")
  [ ${#SECRET_REFS[@]} -gt 0 ] && job_flags+=(--set-secrets "$(IFS=,; echo "${SECRET_REFS[*]}")")
  echo "check: running \`nsps-wtl-connector check\` as the Cloud Run job $check_job"
  with_iam_retry gcloud run jobs deploy "$check_job" "${project[@]}" "${region[@]}" "${job_flags[@]}" "${network_flags[@]}" || return 1
  run gcloud run jobs execute "$check_job" "${project[@]}" "${region[@]}" --wait || {
    echo "error: check failed; its lines: gcloud run jobs executions list --job $check_job --region $GCP_REGION, then gcloud logging read" >&2
    return 1
  }
}

rollout_failed() { # rollout_failed WHAT SERVING CANDIDATE_URL
  echo "error: $1 failed: traffic stays on ${2:-the serving revision}; the new revision is not serving." >&2
  [ -n "$3" ] && echo "       It can be inspected at its tag URL $3" >&2
  exit 1
}

# A new service: created and checked (NSPS is not pointed at it yet, so nothing is at stake).
create_service() {
  local flags=()
  mapfile -t flags < <(deploy_flags "$1" "")
  with_iam_retry gcloud run deploy "$SERVICE_NAME" "${project[@]}" "${region[@]}" "${flags[@]}"
  url=$(describe_service | json_get "d['status']['url']")
  url=${url:-https://$SERVICE_NAME-new.a.run.app}
  if $precheck && ! run_check_job "$1"; then
    echo "error: the new service $SERVICE_NAME failed its check: do not point NSPS at it yet" >&2; exit 1
  fi
  smoke_test "$url" || { echo "error: the new service $SERVICE_NAME failed its smoke test: do not point NSPS at it yet" >&2; exit 1; }
}

# An existing service: the new revision gets no traffic and the tag `candidate`; the checks run
# against the tag's URL; traffic moves only when they pass.
roll_out() {
  local flags=() before serving candidate candidate_url after
  before=$1
  serving=$(serving_revision <<<"$before")
  mapfile -t flags < <(deploy_flags "$2" existing "$(json_get "d['spec']['template']['spec']['containers'][0].get('name') or 'connector'" <<<"$before")")
  # Before the deploy flags: after a --container (--tracing), gcloud takes only that container's flags.
  with_iam_retry gcloud run deploy "$SERVICE_NAME" "${project[@]}" "${region[@]}" --no-traffic --tag candidate "${flags[@]}"
  after=$(describe_service)
  candidate=$(json_get "d['status']['latestCreatedRevisionName']" <<<"$after")
  candidate_url=$(json_get "[t['url'] for t in d['status'].get('traffic',[]) if t.get('tag')=='candidate'][0]" <<<"$after")
  if $dry_run; then candidate="<new revision>" candidate_url="<candidate tag URL>"; fi
  if [ -z "$candidate" ] || [ -z "$candidate_url" ]; then rollout_failed "finding the new revision" "$serving" ""; fi
  if [ "$candidate" = "$serving" ]; then
    echo "the settings and image are unchanged: $serving keeps serving"
  else
    if $precheck; then run_check_job "$2" || rollout_failed "the check" "$serving" "$candidate_url"; fi
    smoke_test "$candidate_url" || rollout_failed "the smoke test" "$serving" "$candidate_url"
    move_traffic "$candidate" "$serving"
    echo "traffic moved from ${serving:-nothing} to $candidate (roll back with --rollback)"
  fi
  url=$(json_get "d['status']['url']" <<<"$after")
  url=${url:-$(json_get "d['status']['url']" <<<"$before")}
}

build_image() {
  if ! query gcloud artifacts repositories describe "$AR_REPOSITORY" "${project[@]}" --location "$GCP_REGION" >/dev/null 2>&1; then
    run gcloud artifacts repositories create "$AR_REPOSITORY" "${project[@]}" --location "$GCP_REGION" \
      --repository-format docker --description "NSPS WTL connector images"
  fi
  if ! $force && query gcloud artifacts docker images describe "$image" >/dev/null 2>&1; then
    echo "image $image already exists: not rebuilt (use --force-deploy to rebuild)"
  elif $local_build; then
    run gcloud auth configure-docker "$GCP_REGION-docker.pkg.dev" --quiet
    run docker build --platform linux/amd64 -t "$image" "$root"
    run docker push "$image"
  else
    run gcloud builds submit "$root" "${project[@]}" --region "$GCP_REGION" --tag "$image"
  fi
}

# move_traffic TO FROM: all traffic to revision TO; FROM, which served until now, gets the tag
# `previous`, which --rollback goes back to (so a candidate that failed its checks, never served,
# is never a rollback target).
move_traffic() {
  local tags=()
  [ -n "$2" ] && tags=(--update-tags "previous=$2")
  run gcloud run services update-traffic "$SERVICE_NAME" "${project[@]}" "${region[@]}" --to-revisions "$1=100" "${tags[@]}"
}

# tagged_revision TAG < service.json: the revision the tag names.
tagged_revision() {
  json_get "[t.get('revisionName', '') for t in d.get('status', {}).get('traffic', []) if t.get('tag') == '$1'][0]"
}

# previous_revision SERVING < revisions.json: the newest ready revision created before SERVING (for
# a service whose traffic last moved before the `previous` tag was kept).
previous_revision() {
  python3 -c '
import json, sys
revisions = json.load(sys.stdin)
created = {r["metadata"]["name"]: r["metadata"]["creationTimestamp"] for r in revisions}
since = created.get(sys.argv[1], "")
def ready(r):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in r.get("status", {}).get("conditions", []))
older = [r for r in revisions if r["metadata"]["creationTimestamp"] < since and ready(r)]
older.sort(key=lambda r: r["metadata"]["creationTimestamp"])
print(older[-1]["metadata"]["name"] if older else "")
' "$1" 2>/dev/null || true
}

# Back to the revision that served before the serving one (its tag `previous`, else the newest
# ready revision older than the serving one, or ROLLBACK_REVISION); the revision left gets the tag
# `previous` in turn, so a second --rollback undoes the first.
rollback() {
  local svc revisions serving target
  svc=$(describe_service)
  [ -n "$svc" ] || { echo "error: no service $SERVICE_NAME in $GCP_PROJECT_ID/$GCP_REGION" >&2; exit 1; }
  serving=$(serving_revision <<<"$svc")
  target=${ROLLBACK_REVISION:-$(tagged_revision previous <<<"$svc")}
  if [ -z "$target" ]; then
    revisions=$(query gcloud run revisions list --service "$SERVICE_NAME" "${project[@]}" "${region[@]}" --format json)
    target=$(previous_revision "$serving" <<<"$revisions")
  fi
  [ -n "$target" ] || { echo "error: no earlier ready revision than $serving to roll back to (set ROLLBACK_REVISION)" >&2; exit 1; }
  [ "$target" != "$serving" ] || { echo "error: $target is the serving revision already (set ROLLBACK_REVISION)" >&2; exit 1; }
  move_traffic "$target" "$serving"
  echo "traffic moved from $serving back to $target"
  smoke_test "$(json_get "d['status']['url']" <<<"$svc")"
}

apis_needed() {
  apis=(run.googleapis.com artifactregistry.googleapis.com iam.googleapis.com)
  $local_build || apis+=(cloudbuild.googleapis.com)
  [ ${#USED_SECRETS[@]} -eq 0 ] || apis+=(secretmanager.googleapis.com)
  ! $static_egress || apis+=(compute.googleapis.com)
  ! $tracing || apis+=(cloudtrace.googleapis.com)
}

# ---- monitoring ---------------------------------------------------------------------------------

with_metric_retry() {
  with_retry "the new log-based metrics to reach alerting" 'Cannot find metric|metric.* not found|could take up to' \
    "${METRIC_RETRY_DELAYS:-15 30 60 90 120 120 180}" "$@"
}

# The log-based metrics, the dashboard and the alert policies of monitoring/log-metrics.json. Each
# is found first (a metric by name, the dashboard and the policies by display name, the e-mail
# channel by address) and updated when it exists, so a second run adds nothing.
setup_monitoring() {
  local tsv="$workdir/monitoring.tsv" channel="" channel_flags=() minutes=() dashboard="" policies kind name file found
  echo "monitoring: log-based metrics, dashboard and alert policies for $SERVICE_NAME"
  run gcloud services enable logging.googleapis.com monitoring.googleapis.com "${project[@]}"
  if [ -n "${ALERT_EMAIL:-}" ]; then
    # A look-up that fails stops the run: read as "none", it would make a second channel.
    found=$(query gcloud beta monitoring channels list "${project[@]}" --format json)
    channel=$(monitoring_py find type=email "labels.email_address=$ALERT_EMAIL" --print name <<<"$found" || true)
    if [ -z "$channel" ]; then
      monitoring_py gcp-channel "$workdir/channel.json" --service "$SERVICE_NAME" --email "$ALERT_EMAIL"
      channel=$(run_out "projects/$GCP_PROJECT_ID/notificationChannels/<new>" gcloud beta monitoring channels create \
        "${project[@]}" --channel-content-from-file "$workdir/channel.json" --format 'value(name)')
    fi
    channel_flags=(--channel "$channel")
  fi
  [ -n "${NO_EVENTS_ALERT_MINUTES:-}" ] && minutes=(--no-events-minutes "$NO_EVENTS_ALERT_MINUTES")
  monitoring_py gcp "$workdir/monitoring" --service "$SERVICE_NAME" --project "$GCP_PROJECT_ID" \
    "${minutes[@]}" "${channel_flags[@]}" >"$tsv" || exit 2
  policies=$(query gcloud alpha monitoring policies list "${project[@]}" --format json)
  # The manifest is read on its own descriptor: the cloud commands in the loop may read stdin.
  while IFS=$'\t' read -r kind name file <&3; do
    case "$kind" in
      metric)
        if query gcloud logging metrics describe "$name" "${project[@]}" >/dev/null 2>&1; then
          run gcloud logging metrics update "$name" "${project[@]}" --config-from-file "$file" >/dev/null
        else
          run gcloud logging metrics create "$name" "${project[@]}" --config-from-file "$file" >/dev/null
        fi
        ;;
      dashboard)
        found=$(query gcloud monitoring dashboards list "${project[@]}" --format json)
        found=$(monitoring_py find "displayName=$name" --print name etag <<<"$found" || true)
        if [ -n "$found" ]; then
          dashboard=${found%%$'\t'*}
          # The etag it was read with: an update made meanwhile by someone else is refused, not lost.
          monitoring_py with-etag "$file" "${found#*$'\t'}"
          run gcloud monitoring dashboards update "$dashboard" "${project[@]}" --config-from-file "$file" >/dev/null
        else
          dashboard=$(run_out "projects/$GCP_PROJECT_ID/dashboards/<new>" gcloud monitoring dashboards create \
            "${project[@]}" --config-from-file "$file" --format 'value(name)')
        fi
        ;;
      policy)
        # A log-based metric made a moment ago can take minutes to be known to alerting ("Cannot
        # find metric(s) that match type"): the policy waits for it (METRIC_RETRY_DELAYS).
        found=$(monitoring_py find "displayName=$name" --print name <<<"$policies" || true)
        if [ -n "$found" ]; then
          with_metric_retry gcloud alpha monitoring policies update "$found" "${project[@]}" --policy-from-file "$file" >/dev/null
        else
          with_metric_retry gcloud alpha monitoring policies create "${project[@]}" --policy-from-file "$file" >/dev/null
        fi
        ;;
    esac
  done 3<"$tsv"
  echo "monitoring dashboard: https://console.cloud.google.com/monitoring/dashboards/custom/${dashboard##*/}?project=$GCP_PROJECT_ID"
  echo "alert policies: $(grep -c '^policy' "$tsv") named \"$SERVICE_NAME: ...\" (gcloud alpha monitoring policies list --project $GCP_PROJECT_ID)"
  if [ -n "$channel" ]; then echo "alerts are e-mailed to $ALERT_EMAIL (notification channel $channel)"; fi
}

print_summary() {
  echo "service URL: $url"
  echo "NSPS handler URL: $url/process-event"
  [ -n "${egress_ip:-}" ] && echo "egress address (allow it in the HLR's firewall): $egress_ip"
  echo "runtime service account: $runtime_sa"
  echo "logs: gcloud run services logs read $SERVICE_NAME --project $GCP_PROJECT_ID --region $GCP_REGION"
}

# ---- destroy --------------------------------------------------------------------------------------

# delete_unless_in_use COMMAND...: runs a deletion; false when the cloud refuses it because
# something still uses the resource; any other failure stops the run with its error.
delete_unless_in_use() {
  local err="$workdir/delete.err" status=0
  run "$@" 2>"$err" || status=$?
  cat "$err" >&2
  [ "$status" -eq 0 ] && return 0
  grep -qiE 'resourceInUseByAnotherResource|being used by' "$err" && return 1
  exit 1
}

# The egress network of --static-egress-ip. Kept unless --purge-egress: its address is the one
# the HLR's firewall allows, and a new one would need allowing again; while it is kept, the
# address and the Cloud NAT are billed by the hour, which is said. Cloud Run frees the addresses
# it took in the subnet 1-2 hours after the service is gone: until then the subnet (and so the
# network, both free of charge) cannot be deleted, which is said with what to run later.
destroy_egress() {
  local net subnet router nat address own_network ip="" parts=() have_router=false have_address=false have_subnet=false have_net=false
  egress_names
  if compute_present addresses "$address" "${region[@]}"; then
    ip=$(egress_address_ip "$address")
    have_address=true parts+=("the egress address $address ($ip)")
  fi
  compute_present routers "$router" "${region[@]}" && have_router=true parts+=("the Cloud Router $router with its Cloud NAT")
  if $own_network; then
    compute_present "networks subnets" "$subnet" "${region[@]}" && have_subnet=true parts+=("the subnet $subnet")
    compute_present networks "$net" && have_net=true parts+=("the network $net")
  fi
  [ ${#parts[@]} -gt 0 ] || return 0
  local list
  list=$(joined ', ' "${parts[@]}")
  if ! $purge_egress; then
    kept+=("$list (the address and the NAT are billed by the hour while they exist; --purge-egress)")
    return 0
  fi
  confirm "Delete $list? (the address is the one the HLR's firewall allows; a new deploy gets another)"
  if $have_router; then
    run gcloud compute routers delete "$router" "${project[@]}" "${region[@]}" --quiet
    deleted+=("the Cloud Router $router with its Cloud NAT")
  fi
  if $have_address; then
    run gcloud compute addresses delete "$address" "${project[@]}" "${region[@]}" --quiet
    deleted+=("the egress address $address ($ip)")
  fi
  if $have_subnet; then
    if delete_unless_in_use gcloud compute networks subnets delete "$subnet" "${project[@]}" "${region[@]}" --quiet; then
      deleted+=("the subnet $subnet")
    else
      kept+=("the subnet $subnet and the network $net, free of charge: Cloud Run frees its addresses in the subnet 1-2 hours after the service is gone; run --destroy --purge-egress again then")
      return 0
    fi
  fi
  if $have_net; then
    run gcloud compute networks delete "$net" "${project[@]}" --quiet
    deleted+=("the network $net")
  fi
}

case "$mode" in
  destroy)
    # Each part only when it is there: a second --destroy (or one after a half-done deploy)
    # removes what is left. Both are looked for before asking, so the question names what
    # exists; a look-up that fails otherwise stops the run.
    deleted=() kept=() found=()
    have_service=false have_job=false
    if present gcloud run services describe "$SERVICE_NAME" "${project[@]}" "${region[@]}"; then
      have_service=true found+=("Cloud Run service $SERVICE_NAME")
    fi
    if present gcloud run jobs describe "$check_job" "${project[@]}" "${region[@]}"; then
      have_job=true found+=("the check job $check_job")
    fi
    [ ${#found[@]} -eq 0 ] || confirm "Delete $(joined ' and ' "${found[@]}") in $GCP_PROJECT_ID/$GCP_REGION?"
    if $have_service; then
      run gcloud run services delete "$SERVICE_NAME" "${project[@]}" "${region[@]}" --quiet
      deleted+=("the service $SERVICE_NAME")
    fi
    if $have_job; then
      run gcloud run jobs delete "$check_job" "${project[@]}" "${region[@]}" --quiet
      deleted+=("the check job $check_job")
    fi
    destroy_egress
    kept+=("the images in $AR_REPOSITORY, the secrets, $runtime_sa and the monitoring named after $SERVICE_NAME")
    [ ${#deleted[@]} -gt 0 ] || echo "nothing deleted: no service $SERVICE_NAME and no job $check_job in $GCP_PROJECT_ID/$GCP_REGION"
    report_removal
    exit 0
    ;;
  test)
    smoke_test "$(describe_service | json_get "d['status']['url']")"
    exit 0
    ;;
  rollback)
    rollback
    exit 0
    ;;
  monitoring)
    setup_monitoring
    exit 0
    ;;
esac

# ---- deploy, or --env-only ----
existing=$(describe_service)
if [ "$mode" = env ]; then
  [ -n "$existing" ] || { echo "error: no service $SERVICE_NAME to update; deploy first" >&2; exit 1; }
  # The serving revision's image: the service's template names the newest revision made, which
  # may be a candidate that failed its checks or one rolled back from.
  serving=$(serving_revision <<<"$existing")
  [ -n "$serving" ] || { echo "error: no revision of $SERVICE_NAME serves traffic; deploy first" >&2; exit 1; }
  image=$(query gcloud run revisions describe "$serving" "${project[@]}" "${region[@]}" --format json |
    json_get "d['spec']['containers'][0]['image']") || true
  [ -n "$image" ] || { echo "error: cannot read the image of the serving revision $serving" >&2; exit 1; }
fi
if $tracing; then
  # The connector sends its spans to the collector beside it.
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318
  write_collector_config "$workdir/collector.yaml"
fi
plan_settings
write_env_file "$workdir/env.yaml"
apis_needed
run gcloud services enable "${apis[@]}" "${project[@]}"
ensure_runtime_account
if $tracing; then grant_trace_writer; fi
setup_secrets
set_network_flags
$static_egress && setup_static_egress
[ "$mode" = deploy ] && build_image
if [ -n "$existing" ]; then roll_out "$existing" "$image"; else create_service "$image"; fi
print_summary
if $monitoring; then setup_monitoring; fi
