#!/usr/bin/env bash
# Deploys the NSPS -> WTL HLR/HSS connector to AWS: Amazon ECS Express Mode (the default for new
# accounts) or AWS App Runner (for accounts that already run it). See _aws-deploy/README.md.
#
#   bash _aws-deploy/deploy.sh [--target ecs|apprunner] [--env-file FILE]
#        [--env-only | --test-only | --destroy [--purge-images] [--purge-egress] | --monitoring-only] [--secrets]
#        [--check] [--static-egress-ip] [--monitoring] [--force-deploy] [--yes] [--dry-run]
set -euo pipefail
# mapfile, and empty arrays under `set -u`, need bash 4.4 (macOS ships 3.2: brew install bash).
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "error: bash 4.4 or newer is needed; this is $BASH_VERSION" >&2
  exit 2
fi

usage() {
  cat <<'EOF'
usage: bash _aws-deploy/deploy.sh [options]

  (no option)      build and push the image to ECR, create or update the service, wait for the
                   deployment to finish (a rolled-back or failed one exits non-zero), smoke-test
  --target T       ecs (Amazon ECS Express Mode) or apprunner (AWS App Runner). Default: App
                   Runner when a service of that name exists there, else ECS (App Runner has
                   been closed to new customers since 30 April 2026)
  --env-only       only update the settings (the running image is kept)
  --test-only      only run the smoke test against the service
  --destroy        delete the service (asks first unless --yes), and say what it kept
  --purge-images   with --destroy: also delete the ECR repository and its images
  --purge-egress   with --destroy: also delete the egress VPC --static-egress-ip built, its NAT
                   gateway and its Elastic IP (the address the HLR's firewall allows; a later
                   --static-egress-ip run gets another); waits for the service to be gone first
  --monitoring     after a successful deploy, create or update the monitoring: CloudWatch Logs
                   metric filters on the service's log group, a CloudWatch dashboard and alarms
                   (5xx answers, WTL failures, redelivery store unavailable, no events), sent to
                   ALERT_EMAIL through an SNS topic when set (see monitoring/log-metrics.json)
  --monitoring-only
                   only create or update the monitoring (no build, no deploy)
  --secrets        keep the secret settings (API_TOKEN, WTL_API_TOKEN, WTL_API_PASSWORD,
                   WTL_OAUTH_CLIENT_SECRET, REDIS_URL, inline private keys) in Secrets Manager;
                   the service's role may read exactly these secrets
  --check          ECS: after the deployment, run the connector's own `check` (configuration,
                   DNS, connection, TLS, token, Redis; no /prov call) as a one-off task with the
                   service's task definition and network
  --static-egress-ip
                   run the service in a VPC whose private subnets leave through a NAT gateway
                   with one Elastic IP, and print that address for the HLR's firewall
  --tracing        App Runner: turn on its X-Ray tracing (an observability configuration; the
                   connector sends its spans to the collector App Runner runs beside it). ECS
                   Express Mode runs one container per task: point OTEL_EXPORTER_OTLP_ENDPOINT
                   at a collector service instead (see the README)
  --force-deploy   rebuild an IMAGE_TAG already in ECR; App Runner: also start a deployment
                   when the configuration did not change
  --env-file FILE  read settings from FILE (default: .env in the repository root, if present)
  --yes            do not ask for confirmation
  --dry-run        print every command that would change something instead of running it
                   (read-only look-ups still run, so the plan matches what a real run would do)
  -h, --help       this text

Settings (environment or env file):
  required  AWS_REGION, API_TOKEN, WTL_API_URL
  optional  SERVICE_NAME (nsps-wtl-connector; at most 40 characters), ECR_REPOSITORY
            (nsps-wtl-connector), IMAGE_TAG (git commit + time), MIN_INSTANCES (1),
            MAX_INSTANCES (1; 3 with REDIS_URL), CONCURRENCY (100), WAIT_TIMEOUT (900 s),
            ECS: ECS_CPU (256), ECS_MEMORY (512), ECS_EXECUTION_ROLE_ARN,
            ECS_INFRASTRUCTURE_ROLE_ARN, ECS_SUBNETS, ECS_SECURITY_GROUPS;
            App Runner: APPRUNNER_CPU (0.25 vCPU), APPRUNNER_MEMORY (0.5 GB),
            APPRUNNER_ACCESS_ROLE_ARN, INSTANCE_ROLE_ARN, VPC_CONNECTOR_ARN;
            WTL_CA_SECRET_ARN / WTL_CLIENT_CERT_SECRET_ARN / WTL_CLIENT_KEY_SECRET_ARN /
            REDIS_CA_SECRET_ARN (Secrets Manager secrets holding the PEM); EGRESS_VPC_CIDR
            (10.42.0.0/16); ALERT_EMAIL and NO_EVENTS_ALERT_MINUTES (60) with --monitoring;
            and every variable the connector reads (`nsps-wtl-connector
            variables`; all are passed to the service when set, PORT excepted).
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=SCRIPTDIR/../_deploy-common/lib.sh
. "$root/_deploy-common/lib.sh"

mode=deploy force=false secrets=false purge=false purge_egress=false yes=false dry_run=false precheck=false
static_egress=false monitoring=false tracing=false target="" env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs ecs or apprunner}; shift ;;
    --env-only) mode="env" ;;
    --test-only) mode="test" ;;
    --destroy) mode=destroy ;;
    --purge-images) purge=true ;;
    --purge-egress) purge_egress=true ;;
    --monitoring) monitoring=true ;;
    --monitoring-only) mode=monitoring monitoring=true ;;
    --force-deploy) force=true ;;
    --secrets) secrets=true ;;
    --check) precheck=true ;;
    --static-egress-ip) static_egress=true ;;
    --tracing) tracing=true ;;
    --yes|-y) yes=true ;;
    --dry-run) dry_run=true ;;
    --env-file) env_file=${2:?--env-file needs a path}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
load_settings "$env_file" "$root"

AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
SERVICE_NAME=${SERVICE_NAME:-nsps-wtl-connector}
ECR_REPOSITORY=${ECR_REPOSITORY:-nsps-wtl-connector}
# One instance keeps the redelivery memory whole; with REDIS_URL it is shared, so several can run.
if [ -n "${REDIS_URL:-}" ]; then MAX_INSTANCES=${MAX_INSTANCES:-3}; else MAX_INSTANCES=${MAX_INSTANCES:-1}; fi
MIN_INSTANCES=${MIN_INSTANCES:-1}
CONCURRENCY=${CONCURRENCY:-100}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-900}
POLL_SECONDS=${POLL_SECONDS:-10}
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo nogit)
IMAGE_TAG=${IMAGE_TAG:-$git_rev-$(date +%Y%m%d%H%M%S)}

missing=0
require() { if [ -z "${!1:-}" ]; then echo "error: $1 is required ($2)" >&2; missing=1; fi; }
require AWS_REGION "the AWS region, e.g. eu-central-1"
case "$mode" in deploy|env|test) require API_TOKEN "the Bearer token NSPS sends" ;; esac
case "$mode" in deploy|env) require WTL_API_URL "the WTL API base URL" ;; esac
case "$target" in ""|ecs|apprunner) ;; *) echo "error: --target must be ecs or apprunner" >&2; missing=1 ;; esac
if { $purge || $purge_egress; } && [ "$mode" != destroy ]; then
  echo "error: --purge-images and --purge-egress go with --destroy" >&2; missing=1
fi
# App Runner allows 40 characters; every name made from SERVICE_NAME below stays within its limit.
if [[ ! $SERVICE_NAME =~ ^[A-Za-z0-9][A-Za-z0-9_-]{3,39}$ ]]; then
  echo "error: SERVICE_NAME must be 4 to 40 letters, digits, '-' or '_', starting with a letter or digit" >&2; missing=1
fi
if $monitoring && ! check_monitoring_settings; then missing=1; fi
tools=(aws curl python3)
[ "$mode" = deploy ] && ! $dry_run && tools+=(docker)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; missing=1; }
done
[ "$missing" -eq 0 ] || exit 2

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
not_found='NotFoundException|not found'   # how AWS says a resource is not there (look_up)
reg=(--region "$AWS_REGION")

# Who is deploying, asked first: credentials that do not work stop the run here, with the CLI's
# own error, before any look-up could read a refusal as "not there".
ACCOUNT_ID=$(query aws sts get-caller-identity --query Account --output text)

# ---- which target -----------------------------------------------------------------------------

# The App Runner service's ARN, or nothing when there is none; a look-up that fails stops the run
# (status 3) rather than be read as "no service".
apprunner_arn() {
  local arn
  arn=$(look_up aws apprunner list-services "${reg[@]}" \
    --query "ServiceSummaryList[?ServiceName=='$SERVICE_NAME'].ServiceArn | [0]" --output text) || exit 3
  [ "$arn" = None ] || echo "$arn"
}
# Without --target: App Runner where the service runs there, else ECS. An account App Runner does
# not serve (it takes no new customers) refuses the look-up: that, too, means ECS, and is said.
choose_target() {
  local found
  if found=$(apprunner_arn 2>"$workdir/target.err"); then
    if [ -n "$found" ]; then target=apprunner; else target=ecs; fi
  else
    local why
    why=$(grep -m1 . "$workdir/target.err" || echo "no reason given")
    # Deleting the egress network under a service App Runner could not be asked about could take
    # a live service's address away: that needs the operator's word.
    if [ "$mode" = destroy ] && $purge_egress; then
      echo "error: App Runner could not be asked for a service $SERVICE_NAME ($why); --purge-egress must know whether one still uses the egress VPC: pass --target ecs if this account has no App Runner" >&2
      exit 3
    fi
    target=ecs
    echo "App Runner could not be asked for a service $SERVICE_NAME ($why); using ECS" >&2
  fi
  echo "target: $target (pass --target to choose)"
}
target_given=$target
[ -n "$target" ] || choose_target
if $tracing && [ "$target" = ecs ]; then
  echo "error: --tracing needs a collector beside the connector, which ECS Express Mode (one container per task) cannot run; run the AWS Distro for OpenTelemetry collector as a service of its own and set OTEL_EXPORTER_OTLP_ENDPOINT to it (README, Traces)" >&2
  exit 2
fi
if $tracing; then
  # App Runner's collector takes OTLP over gRPC beside the instance.
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc
fi

registry="$ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com"
ecs_cluster=${ECS_CLUSTER:-default}
egress_tag="$SERVICE_NAME-egress"   # the Name tag of what --static-egress-ip builds
ecs_service_arn="arn:aws:ecs:$AWS_REGION:$ACCOUNT_ID:service/$ecs_cluster/$SERVICE_NAME"
log_group="/ecs/$SERVICE_NAME"

# ---- secrets ----------------------------------------------------------------------------------

# Stores each secret setting in Secrets Manager (the value through a private file, never argv)
# and keeps the full ARN Secrets Manager returns: SECRET_ARNS holds VAR=ARN. A value the current
# version already holds is not stored again: a new version would move AWSPREVIOUS onto the same
# value, and Secrets Manager removes old versions only past 100 of them and a day old (deploys
# more often than every 10 minutes reach its quota of versions).
# current_holds ARN FILE: true when the secret's AWSCURRENT version holds exactly FILE's content;
# one that cannot be read counts as a different value.
current_holds() {
  query aws secretsmanager get-secret-value "${reg[@]}" --secret-id "$1" --output json 2>/dev/null |
    python3 -c '
import json, sys
try:
    held = json.load(sys.stdin)["SecretString"]
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        sys.exit(0 if held == f.read() else 1)
except (ValueError, KeyError, TypeError):
    sys.exit(1)' "$2"
}

store_secrets() {
  local name sname file arn
  SECRET_ARNS=()
  for name in "${SET_SECRET[@]}"; do
    sname="$SERVICE_NAME/$name"
    file=$(private_file "secret-$name" "${!name}")
    arn=$(query aws secretsmanager describe-secret "${reg[@]}" --secret-id "$sname" --query ARN --output text 2>/dev/null || true)
    if [ -z "$arn" ] || [ "$arn" = None ]; then
      echo "+ aws secretsmanager create-secret --name $sname --secret-string file://... (the value of $name)" >&2
      if $dry_run; then arn="arn:aws:secretsmanager:$AWS_REGION:$ACCOUNT_ID:secret:$sname-<new>"; else
        arn=$(aws secretsmanager create-secret "${reg[@]}" --name "$sname" --secret-string "file://$file" --query ARN --output text)
      fi
    elif current_holds "$arn" "$file"; then
      echo "secret $sname: its current version holds the value of $name already; no new version" >&2
    else
      echo "+ aws secretsmanager put-secret-value --secret-id $arn --secret-string file://... (the value of $name)" >&2
      $dry_run || aws secretsmanager put-secret-value "${reg[@]}" --secret-id "$arn" --secret-string "file://$file" >/dev/null
    fi
    SECRET_ARNS+=("$name=$arn")
  done
  # PEM material kept in Secrets Manager by the operator: WTL_CA_SECRET_ARN for WTL_CA_FILE, ...
  for name in "${PEM_VARS[@]}"; do
    local ref="${name%_FILE}_SECRET_ARN"
    [ -n "${!ref:-}" ] && SECRET_ARNS+=("$name=${!ref}")
  done
  return 0
}

# ---- IAM --------------------------------------------------------------------------------------

# ensure_role NAME SERVICE_PRINCIPAL [MANAGED_POLICY_ARN...]: the role, created when absent, with
# each policy attached (one a run before failed to attach is attached now).
ensure_role() {
  local name=$1 principal=$2 policy attached=(); shift 2
  if query aws iam get-role --role-name "$name" >/dev/null 2>&1; then
    read -ra attached <<<"$(query aws iam list-attached-role-policies --role-name "$name" \
      --query 'AttachedPolicies[].PolicyArn' --output text)"
  else
    printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"%s"},"Action":"sts:AssumeRole"}]}' \
      "$principal" >"$workdir/trust-$name.json"
    run aws iam create-role --role-name "$name" --assume-role-policy-document "file://$workdir/trust-$name.json" \
      --description "NSPS WTL connector $SERVICE_NAME" >/dev/null
  fi
  for policy in "$@"; do
    in_list "$policy" "${attached[@]}" || run aws iam attach-role-policy --role-name "$name" --policy-arn "$policy"
  done
  echo "arn:aws:iam::$ACCOUNT_ID:role/$name" >"$workdir/role-$name"
}
role_arn() { cat "$workdir/role-$1"; }

# The role may read exactly the service's own secrets (an inline policy, replaced each deploy).
allow_secrets() { # allow_secrets ROLE
  [ ${#SECRET_ARNS[@]} -gt 0 ] || return 0
  local arns=() item
  for item in "${SECRET_ARNS[@]}"; do arns+=("${item#*=}"); done
  python3 - "${arns[@]}" >"$workdir/secrets-policy-$1.json" <<'PY'
import json, sys
print(json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sys.argv[1:]}]}))
PY
  run aws iam put-role-policy --role-name "$1" --policy-name read-own-secrets \
    --policy-document "file://$workdir/secrets-policy-$1.json"
}

# ---- the image --------------------------------------------------------------------------------

build_image() {
  image="$registry/$ECR_REPOSITORY:$IMAGE_TAG"
  if ! query aws ecr describe-repositories "${reg[@]}" --repository-names "$ECR_REPOSITORY" >/dev/null 2>&1; then
    run aws ecr create-repository "${reg[@]}" --repository-name "$ECR_REPOSITORY" --image-scanning-configuration scanOnPush=true >/dev/null
  fi
  # An image already pushed under IMAGE_TAG is deployed as it is (a rollback to an earlier tag).
  if ! $force && query aws ecr describe-images "${reg[@]}" --repository-name "$ECR_REPOSITORY" \
      --image-ids "imageTag=$IMAGE_TAG" >/dev/null 2>&1; then
    echo "image $image already in ECR: not rebuilt"
    return 0
  fi
  echo "+ aws ecr get-login-password --region $AWS_REGION | docker login --username AWS --password-stdin $registry" >&2
  $dry_run || aws ecr get-login-password "${reg[@]}" | docker login --username AWS --password-stdin "$registry"
  run docker build --platform linux/amd64 -t "$image" "$root"
  run docker push "$image"
}

# ---- one egress address -----------------------------------------------------------------------

# The egress VPC's id (found by its tag), or nothing; a look-up that fails stops the run.
egress_vpc() {
  local vpc
  vpc=$(query aws ec2 describe-vpcs "${reg[@]}" --filters "Name=tag:Name,Values=$egress_tag" --query 'Vpcs[0].VpcId' --output text) || exit 3
  [ "$vpc" = None ] || echo "$vpc"
}
egress_eip() { # the egress Elastic IP's address
  query aws ec2 describe-addresses "${reg[@]}" --filters "Name=tag:Name,Values=$egress_tag" --query 'Addresses[0].PublicIp' --output text
}

# A VPC with two public subnets (the NAT gateway, the load balancer) and two private subnets (the
# service), whose outbound traffic leaves through one NAT gateway with one Elastic IP.
# Sets PUBLIC_SUBNETS, PRIVATE_SUBNETS, EGRESS_SG, EGRESS_VPC and egress_ip.
setup_static_egress() {
  local tag=$egress_tag vpc cidr=${EGRESS_VPC_CIDR:-10.42.0.0/16} azs igw eip nat rt_public rt_private i subnet
  local base=${cidr%.*.*}
  vpc=$(egress_vpc)
  if [ -n "$vpc" ]; then
    PUBLIC_SUBNETS=$(query aws ec2 describe-subnets "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" "Name=tag:Tier,Values=public" --query 'Subnets[].SubnetId' --output text | tr '\t' ',')
    PRIVATE_SUBNETS=$(query aws ec2 describe-subnets "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" "Name=tag:Tier,Values=private" --query 'Subnets[].SubnetId' --output text | tr '\t' ',')
    EGRESS_SG=$(query aws ec2 describe-security-groups "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" "Name=group-name,Values=$tag" --query 'SecurityGroups[0].GroupId' --output text)
    egress_ip=$(egress_eip)
    nat=$(query aws ec2 describe-nat-gateways "${reg[@]}" --filter "Name=vpc-id,Values=$vpc" "Name=state,Values=available" \
      --query 'NatGateways[0].NatGatewayId' --output text)
    egress_complete "$vpc" "$tag" "$nat"
    return 0
  fi
  if $dry_run; then
    echo "+ (creates VPC $cidr tagged $tag: 2 public and 2 private subnets, internet gateway, Elastic IP, NAT gateway, routes, security group)" >&2
    PUBLIC_SUBNETS="subnet-public-a,subnet-public-b" PRIVATE_SUBNETS="subnet-private-a,subnet-private-b" EGRESS_SG="sg-new"
    egress_ip="(allocated on the first real run)"
    return 0
  fi
  local tags="ResourceType=%s,Tags=[{Key=Name,Value=$tag}]"
  # shellcheck disable=SC2059
  vpc=$(run aws ec2 create-vpc "${reg[@]}" --cidr-block "$cidr" --tag-specifications "$(printf "$tags" vpc)" --query Vpc.VpcId --output text)
  azs=$(aws ec2 describe-availability-zones "${reg[@]}" --query 'AvailabilityZones[0:2].ZoneName' --output text)
  igw=$(run_out "<new>" aws ec2 create-internet-gateway "${reg[@]}" --query InternetGateway.InternetGatewayId --output text)
  run aws ec2 attach-internet-gateway "${reg[@]}" --internet-gateway-id "$igw" --vpc-id "$vpc"
  rt_public=$(run aws ec2 create-route-table "${reg[@]}" --vpc-id "$vpc" --query RouteTable.RouteTableId --output text)
  run aws ec2 create-route "${reg[@]}" --route-table-id "$rt_public" --destination-cidr-block 0.0.0.0/0 --gateway-id "$igw" >/dev/null
  rt_private=$(run aws ec2 create-route-table "${reg[@]}" --vpc-id "$vpc" --query RouteTable.RouteTableId --output text)
  PUBLIC_SUBNETS="" PRIVATE_SUBNETS=""
  i=0
  for az in $azs; do
    subnet=$(run_out "<new>" aws ec2 create-subnet "${reg[@]}" --vpc-id "$vpc" --availability-zone "$az" --cidr-block "$base.$i.0/24" \
      --tag-specifications "ResourceType=subnet,Tags=[{Key=Name,Value=$tag},{Key=Tier,Value=public}]" --query Subnet.SubnetId --output text)
    run aws ec2 associate-route-table "${reg[@]}" --route-table-id "$rt_public" --subnet-id "$subnet" >/dev/null
    PUBLIC_SUBNETS+="${PUBLIC_SUBNETS:+,}$subnet"
    subnet=$(run aws ec2 create-subnet "${reg[@]}" --vpc-id "$vpc" --availability-zone "$az" --cidr-block "$base.$((i + 10)).0/24" \
      --tag-specifications "ResourceType=subnet,Tags=[{Key=Name,Value=$tag},{Key=Tier,Value=private}]" --query Subnet.SubnetId --output text)
    run aws ec2 associate-route-table "${reg[@]}" --route-table-id "$rt_private" --subnet-id "$subnet" >/dev/null
    PRIVATE_SUBNETS+="${PRIVATE_SUBNETS:+,}$subnet"
    i=$((i + 1))
  done
  # shellcheck disable=SC2059
  eip=$(run aws ec2 allocate-address "${reg[@]}" --domain vpc --tag-specifications "$(printf "$tags" elastic-ip)" --query AllocationId --output text)
  nat=$(run_out "<new>" aws ec2 create-nat-gateway "${reg[@]}" --subnet-id "${PUBLIC_SUBNETS%%,*}" --allocation-id "$eip" --query NatGateway.NatGatewayId --output text)
  run aws ec2 wait nat-gateway-available "${reg[@]}" --nat-gateway-ids "$nat"
  run aws ec2 create-route "${reg[@]}" --route-table-id "$rt_private" --destination-cidr-block 0.0.0.0/0 --nat-gateway-id "$nat" >/dev/null
  EGRESS_SG=$(run aws ec2 create-security-group "${reg[@]}" --vpc-id "$vpc" --group-name "$tag" \
    --description "NSPS WTL connector $SERVICE_NAME" --query GroupId --output text)
  run aws ec2 authorize-security-group-ingress "${reg[@]}" --group-id "$EGRESS_SG" --protocol tcp --port 8000 --cidr "$cidr" >/dev/null
  egress_ip=$(aws ec2 describe-addresses "${reg[@]}" --allocation-ids "$eip" --query 'Addresses[0].PublicIp' --output text)
}

# egress_complete VPC TAG NAT: an egress VPC found by its tag is used only when a run built all of
# it; one that stopped part way (an Elastic IP quota, a NAT gateway that never became available)
# is named with what it lacks, rather than deployed into without its one address.
egress_complete() {
  local missing=() none='^(|None)$'
  [[ "$PUBLIC_SUBNETS" == *,* ]] || missing+=("two public subnets")
  [[ "$PRIVATE_SUBNETS" == *,* ]] || missing+=("two private subnets")
  [[ ! "$EGRESS_SG" =~ $none ]] || missing+=("the security group $2")
  [[ ! "$egress_ip" =~ $none ]] || missing+=("the Elastic IP tagged $2")
  [[ ! "$3" =~ $none ]] || missing+=("an available NAT gateway")
  [ ${#missing[@]} -eq 0 ] && return 0
  $dry_run && { echo "? the egress VPC $1 lacks: ${missing[*]}" >&2; return 0; }
  local lacks
  lacks=$(printf '%s, ' "${missing[@]}")
  printf 'error: the egress VPC %s (tagged %s) is incomplete, a run that built it stopped part way; it lacks: %s.\n' \
    "$1" "$2" "${lacks%, }" >&2
  echo "       Delete it (with its NAT gateway, its Elastic IP and any App Runner VPC connector on its subnets) or complete it, then run again." >&2
  exit 1
}

# ---- ECS Express Mode -------------------------------------------------------------------------

# The primary container: image, port, logs, settings and secrets (by full ARN).
ecs_container() { # ecs_container IMAGE > json
  local plain=() refs=() name item
  for name in "${SET_PLAIN[@]}"; do plain+=("$name"); done
  for item in "${SECRET_ARNS[@]}"; do refs+=("$item"); done
  IMAGE=$1 LOG_GROUP=$log_group python3 - "${#plain[@]}" "${plain[@]}" "${refs[@]}" <<'PY'
import json, os, sys
count = int(sys.argv[1])
plain, refs = sys.argv[2:2 + count], sys.argv[2 + count:]
secret_names = {r.split("=", 1)[0] for r in refs}
print(json.dumps({
    "image": os.environ["IMAGE"],
    "containerPort": 8000,
    "awsLogsConfiguration": {"logGroup": os.environ["LOG_GROUP"], "logStreamPrefix": "connector"},
    "environment": [{"name": n, "value": os.environ[n]} for n in plain if n not in secret_names],
    "secrets": [{"name": r.split("=", 1)[0], "valueFrom": r.split("=", 1)[1]} for r in refs],
}))
PY
}

json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null || true; }
# The Express service as JSON while it exists (ACTIVE, or DRAINING while a deletion runs), or
# nothing: ECS does not know it, or it was deleted (INACTIVE, still described for a while after).
# A look-up that fails stops the run (status 3) rather than be read as "no service".
ecs_describe() {
  local found
  found=$(look_up aws ecs describe-express-gateway-service "${reg[@]}" --service-arn "$ecs_service_arn" --output json) ||
    { [ $? -eq 1 ] && return 0; exit 3; }
  [ "$(ecs_status <<<"$found")" = INACTIVE ] || printf '%s\n' "$found"
}
ecs_status() { json_get "d['service']['status']['statusCode']"; }
ecs_url() { json_get "'https://' + [p['endpoint'] for c in d['service']['activeConfigurations'] for p in c.get('ingressPaths', []) if p['accessType'] == 'PUBLIC'][0].removeprefix('https://')"; }

ensure_log_group() { # ensure_log_group [GROUP] (default: the ECS service's)
  local group=${1:-$log_group}
  if [ -z "$(query aws logs describe-log-groups "${reg[@]}" --log-group-name-prefix "$group" \
      --query "logGroups[?logGroupName=='$group'].logGroupName | [0]" --output text 2>/dev/null | grep -v '^None$' || true)" ]; then
    run aws logs create-log-group "${reg[@]}" --log-group-name "$group"
    run aws logs put-retention-policy "${reg[@]}" --log-group-name "$group" --retention-in-days 30
  fi
}

# Runs STATUS_COMMAND... every POLL_SECONDS, up to WAIT_TIMEOUT seconds, until it says the
# operation is over: it prints the operation's status and returns 0 (finished well), 1 (failed,
# having said why) or 2 (still running).
wait_until_over() { # wait_until_over WHAT STATUS_COMMAND...
  local what=$1 waited=0 status state; shift
  while :; do
    state=0
    status=$("$@") || state=$?
    [ "$state" -eq 2 ] || return "$state"
    if [ "$waited" -ge "$WAIT_TIMEOUT" ]; then
      echo "error: the $what is not finished after ${WAIT_TIMEOUT}s ($status); see it in the console, or raise WAIT_TIMEOUT" >&2
      return 1
    fi
    sleep "$POLL_SECONDS"; waited=$((waited + POLL_SECONDS))
  done
}

# Waits for the service's current deployment; a rollback or a failure exits non-zero.
ecs_wait() {
  local deployment
  $dry_run && { echo "(dry run: not waiting for the deployment)"; return 0; }
  deployment=$(ecs_describe | json_get "d['service']['currentDeployment']")
  [ -n "$deployment" ] || { echo "error: the service reports no deployment" >&2; return 1; }
  wait_until_over deployment ecs_deployment_state "$deployment"
}

ecs_deployment_state() { # ecs_deployment_state DEPLOYMENT_ARN (see wait_until_over)
  local status
  status=$(aws ecs describe-service-deployments "${reg[@]}" --service-deployment-arns "$1" \
    --query 'serviceDeployments[0].[status,statusReason]' --output text)
  echo "$status"
  case "$status" in
    SUCCESSFUL*) echo "deployment finished: $1" >&2; return 0 ;;
    ROLLBACK_*|STOPPED*|STOP_REQUESTED*)
      echo "error: the deployment did not complete: $status (the previous revision keeps serving)" >&2; return 1 ;;
  esac
  return 2
}

# `nsps-wtl-connector check` as a one-off Fargate task with the service's own task definition
# (image, settings, secrets, roles) and network: it reaches WTL and Redis from where the service runs.
ecs_check() {
  local revision td container network task code
  echo "check: running \`nsps-wtl-connector check\` as a one-off task of the service"
  $dry_run && { echo "+ aws ecs run-task ... (the service's task definition, command: check)" >&2; return 0; }
  revision=$(ecs_describe | json_get "d['service']['activeConfigurations'][0]['serviceRevisionArn']")
  aws ecs describe-service-revisions "${reg[@]}" --service-revision-arns "$revision" --output json >"$workdir/revision.json"
  td=$(json_get "d['serviceRevisions'][0]['taskDefinition']" <"$workdir/revision.json")
  network=$(json_get "json.dumps(d['serviceRevisions'][0]['networkConfiguration'])" <"$workdir/revision.json")
  container=$(aws ecs describe-task-definition "${reg[@]}" --task-definition "$td" --query 'taskDefinition.containerDefinitions[0].name' --output text)
  printf '{"containerOverrides":[{"name":"%s","command":["check"]}]}' "$container" >"$workdir/overrides.json"
  printf '%s' "$network" >"$workdir/network.json"
  task=$(run aws ecs run-task "${reg[@]}" --cluster "$ecs_cluster" --launch-type FARGATE --task-definition "$td" \
    --network-configuration "file://$workdir/network.json" --overrides "file://$workdir/overrides.json" \
    --query 'tasks[0].taskArn' --output text)
  run aws ecs wait tasks-stopped "${reg[@]}" --cluster "$ecs_cluster" --tasks "$task"
  code=$(aws ecs describe-tasks "${reg[@]}" --cluster "$ecs_cluster" --tasks "$task" --query 'tasks[0].containers[0].exitCode' --output text)
  if [ "$code" != 0 ]; then
    echo "error: check failed (exit $code); its lines: aws logs tail $log_group --region $AWS_REGION --since 15m" >&2
    return 1
  fi
  echo "check passed"
}

deploy_ecs() {
  local exec_role infra_role flags=() scaling network=()
  if [ "$mode" = env ]; then
    image=$(json_get "d['service']['activeConfigurations'][0]['primaryContainer']['image']" <<<"$existing")
  fi
  exec_role=${ECS_EXECUTION_ROLE_ARN:-}
  if [ -z "$exec_role" ]; then
    ensure_role "$SERVICE_NAME-execution" ecs-tasks.amazonaws.com arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
    exec_role=$(role_arn "$SERVICE_NAME-execution")
    allow_secrets "$SERVICE_NAME-execution"
  fi
  infra_role=${ECS_INFRASTRUCTURE_ROLE_ARN:-}
  if [ -z "$infra_role" ]; then
    ensure_role "$SERVICE_NAME-infrastructure" ecs.amazonaws.com \
      arn:aws:iam::aws:policy/service-role/AmazonECSInfrastructureRoleforExpressGatewayServices
    infra_role=$(role_arn "$SERVICE_NAME-infrastructure")
  fi
  ensure_log_group
  ecs_container "$image" >"$workdir/container.json"
  scaling="minTaskCount=$MIN_INSTANCES,maxTaskCount=$MAX_INSTANCES,autoScalingMetric=REQUEST_COUNT_PER_TARGET,autoScalingTargetValue=$CONCURRENCY"
  if [ -n "${ECS_SUBNETS:-}" ]; then
    network=(--network-configuration "subnets=${ECS_SUBNETS},securityGroups=${ECS_SECURITY_GROUPS:-}")
  fi
  if $static_egress; then
    # Both tiers: the load balancer goes in the public subnets, the tasks in the private ones.
    network=(--network-configuration "subnets=$PRIVATE_SUBNETS,$PUBLIC_SUBNETS,securityGroups=$EGRESS_SG")
  fi
  flags=(--execution-role-arn "$exec_role" --primary-container "file://$workdir/container.json"
    --health-check-path /health --cpu "${ECS_CPU:-256}" --memory "${ECS_MEMORY:-512}" --scaling-target "$scaling" "${network[@]}")
  if [ -n "$existing" ]; then
    with_iam_retry aws ecs update-express-gateway-service "${reg[@]}" --service-arn "$ecs_service_arn" "${flags[@]}" >/dev/null
  else
    with_iam_retry aws ecs create-express-gateway-service "${reg[@]}" --service-name "$SERVICE_NAME" \
      --cluster "$ecs_cluster" --infrastructure-role-arn "$infra_role" "${flags[@]}" >/dev/null
  fi
  ecs_wait || exit 1
  url=$(ecs_describe | ecs_url)
  url=${url:-https://$SERVICE_NAME.ecs.$AWS_REGION.on.aws}
  if $precheck && ! ecs_check; then exit 1; fi
  smoke_test "$url" || exit 1
}

# ---- App Runner -------------------------------------------------------------------------------

# The ImageConfiguration: settings as RuntimeEnvironmentVariables, secrets by full ARN.
apprunner_source() { # apprunner_source IMAGE ACCESS_ROLE > json
  local plain=() refs=() name item
  for name in "${SET_PLAIN[@]}"; do plain+=("$name"); done
  for item in "${SECRET_ARNS[@]}"; do refs+=("$item"); done
  IMAGE=$1 ROLE=$2 python3 - "${#plain[@]}" "${plain[@]}" "${refs[@]}" <<'PY'
import json, os, sys
count = int(sys.argv[1])
plain, refs = sys.argv[2:2 + count], sys.argv[2 + count:]
secrets = dict(r.split("=", 1) for r in refs)
cfg = {"Port": "8000", "RuntimeEnvironmentVariables": {n: os.environ[n] for n in plain if n not in secrets}}
if secrets:
    cfg["RuntimeEnvironmentSecrets"] = secrets
print(json.dumps({
    "ImageRepository": {"ImageIdentifier": os.environ["IMAGE"], "ImageRepositoryType": "ECR", "ImageConfiguration": cfg},
    "AutoDeploymentsEnabled": False,
    "AuthenticationConfiguration": {"AccessRoleArn": os.environ["ROLE"]},
}))
PY
}

# Waits for an App Runner operation; anything but SUCCEEDED (a rollback included) exits non-zero.
apprunner_wait() { # apprunner_wait SERVICE_ARN OPERATION_ID
  $dry_run && { echo "(dry run: not waiting for the operation)"; return 0; }
  wait_until_over "App Runner operation $2" apprunner_operation_state "$1" "$2"
}

apprunner_operation_state() { # apprunner_operation_state SERVICE_ARN OPERATION_ID (see wait_until_over)
  local status
  status=$(aws apprunner list-operations "${reg[@]}" --service-arn "$1" \
    --query "OperationSummaryList[?Id=='$2'].Status | [0]" --output text)
  echo "$status"
  case "$status" in
    SUCCEEDED) echo "operation $2 succeeded" >&2; return 0 ;;
    FAILED|ROLLBACK_SUCCEEDED|ROLLBACK_FAILED|ROLLBACK_IN_PROGRESS)
      echo "error: App Runner operation $2 ended $status: the new configuration is not serving" >&2; return 1 ;;
  esac
  return 2
}

# The instance count, as an auto-scaling configuration (App Runner's default allows 25). Its name
# is at most 32 characters whatever SERVICE_NAME is: a prefix of it and a hash of the numbers.
apprunner_scaling() {
  local name arn
  name="${SERVICE_NAME:0:23}-$(short_hash "$SERVICE_NAME/$MIN_INSTANCES/$MAX_INSTANCES/$CONCURRENCY")"
  arn=$(query aws apprunner list-auto-scaling-configurations "${reg[@]}" --auto-scaling-configuration-name "$name" \
    --query "AutoScalingConfigurationSummaryList[0].AutoScalingConfigurationArn" --output text 2>/dev/null || true)
  if [ -z "$arn" ] || [ "$arn" = None ]; then
    arn=$(run aws apprunner create-auto-scaling-configuration "${reg[@]}" --auto-scaling-configuration-name "$name" \
      --min-size "$MIN_INSTANCES" --max-size "$MAX_INSTANCES" --max-concurrency "$CONCURRENCY" \
      --query AutoScalingConfiguration.AutoScalingConfigurationArn --output text)
    $dry_run && arn="arn:aws:apprunner:$AWS_REGION:$ACCOUNT_ID:autoscalingconfiguration/$name/<new>"
  fi
  echo "$arn"
}

# An observability configuration with X-Ray tracing (found by name, else created); its name stays
# within App Runner's 32 characters.
apprunner_tracing() {
  local name="${SERVICE_NAME:0:26}-xray" arn
  arn=$(query aws apprunner list-observability-configurations "${reg[@]}" --observability-configuration-name "$name" \
    --query "ObservabilityConfigurationSummaryList[0].ObservabilityConfigurationArn" --output text 2>/dev/null || true)
  if [ -z "$arn" ] || [ "$arn" = None ]; then
    arn=$(run_out "arn:aws:apprunner:$AWS_REGION:$ACCOUNT_ID:observabilityconfiguration/$name/<new>" \
      aws apprunner create-observability-configuration "${reg[@]}" --observability-configuration-name "$name" \
      --trace-configuration Vendor=AWSXRAY --query ObservabilityConfiguration.ObservabilityConfigurationArn --output text)
  fi
  echo "$arn"
}

# The VPC connector --static-egress-ip gives an App Runner service (within App Runner's 40 characters).
apprunner_connector_name() { echo "${SERVICE_NAME:0:33}-egress"; }

deploy_apprunner() {
  local arn=$existing access_role instance_role scaling op flags=() network=()
  if [ "$mode" = env ]; then
    image=$(query aws apprunner describe-service "${reg[@]}" --service-arn "$arn" \
      --query Service.SourceConfiguration.ImageRepository.ImageIdentifier --output text)
  fi
  access_role=${APPRUNNER_ACCESS_ROLE_ARN:-}
  if [ -z "$access_role" ]; then
    ensure_role "$SERVICE_NAME-apprunner-ecr" build.apprunner.amazonaws.com \
      arn:aws:iam::aws:policy/service-role/AWSAppRunnerServicePolicyForECRAccess
    access_role=$(role_arn "$SERVICE_NAME-apprunner-ecr")
  fi
  # The instance role reads the secrets; one is made when secrets are used and none is given.
  instance_role=${INSTANCE_ROLE_ARN:-}
  if [ -z "$instance_role" ] && { [ ${#SECRET_ARNS[@]} -gt 0 ] || $tracing; }; then
    ensure_role "$SERVICE_NAME-apprunner-instance" tasks.apprunner.amazonaws.com
    if $tracing; then
      # The collector App Runner runs beside the instance writes to X-Ray with this role (attached
      # on every run: a role made by an earlier deploy without --tracing gets it too).
      run aws iam attach-role-policy --role-name "$SERVICE_NAME-apprunner-instance" \
        --policy-arn arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess
    fi
    instance_role=$(role_arn "$SERVICE_NAME-apprunner-instance")
    allow_secrets "$SERVICE_NAME-apprunner-instance"
  fi
  local observability=()
  if $tracing; then
    local tracing_arn
    tracing_arn=$(apprunner_tracing)
    [ -n "$tracing_arn" ] || { echo "error: the App Runner observability configuration could not be created" >&2; exit 1; }
    observability=(--observability-configuration "ObservabilityEnabled=true,ObservabilityConfigurationArn=$tracing_arn")
  fi
  apprunner_source "$image" "$access_role" >"$workdir/source.json"
  scaling=$(apprunner_scaling)
  [ -n "$scaling" ] || { echo "error: the App Runner auto-scaling configuration could not be created" >&2; exit 1; }
  [ -n "${VPC_CONNECTOR_ARN:-}" ] && network=(--network-configuration "EgressConfiguration={EgressType=VPC,VpcConnectorArn=$VPC_CONNECTOR_ARN}")
  if $static_egress; then
    local connector subnets=()
    # One connector per name (App Runner keeps one revision of a name): a second run reuses it,
    # once it is seen to lead into the egress VPC's private subnets through its security group.
    connector=$(egress_connectors)
    connector=${connector%%[[:space:]]*}
    if [ -n "$connector" ]; then
      check_connector_network "$connector"
    else
      IFS=, read -ra subnets <<<"$PRIVATE_SUBNETS"
      connector=$(run_out "<new>" aws apprunner create-vpc-connector "${reg[@]}" --vpc-connector-name "$(apprunner_connector_name)" \
        --subnets "${subnets[@]}" --security-groups "$EGRESS_SG" \
        --query VpcConnector.VpcConnectorArn --output text)
    fi
    network=(--network-configuration "EgressConfiguration={EgressType=VPC,VpcConnectorArn=$connector}")
  fi
  flags=(--source-configuration "file://$workdir/source.json"
    --instance-configuration "Cpu=${APPRUNNER_CPU:-0.25 vCPU},Memory=${APPRUNNER_MEMORY:-0.5 GB}${instance_role:+,InstanceRoleArn=$instance_role}"
    --auto-scaling-configuration-arn "$scaling" "${network[@]}" "${observability[@]}"
    --health-check-configuration "Protocol=HTTP,Path=/health,Interval=10,Timeout=5,HealthyThreshold=1,UnhealthyThreshold=3")
  if [ -z "$arn" ]; then
    op=$(with_iam_retry aws apprunner create-service "${reg[@]}" --service-name "$SERVICE_NAME" "${flags[@]}" \
      --query '[Service.ServiceArn,OperationId]' --output text)
    arn=$(cut -f1 <<<"$op") op=$(cut -f2 <<<"$op")
  else
    op=$(with_iam_retry aws apprunner update-service "${reg[@]}" --service-arn "$arn" "${flags[@]}" --query OperationId --output text)
    if $force; then
      apprunner_wait "$arn" "$op" || exit 1
      op=$(run_out "<new>" aws apprunner start-deployment "${reg[@]}" --service-arn "$arn" --query OperationId --output text)
    fi
  fi
  apprunner_wait "$arn" "$op" || exit 1
  url="https://$(query aws apprunner describe-service "${reg[@]}" --service-arn "$arn" --query Service.ServiceUrl --output text 2>/dev/null || echo "$SERVICE_NAME.<new>.awsapprunner.com")"
  smoke_test "$url" || exit 1
}

# ---- monitoring -----------------------------------------------------------------------------------

# Where the connector's lines land: the ECS service's log group, or App Runner's application log
# group of the service (named after its id).
monitoring_log_group() {
  if [ "$target" = ecs ]; then echo "$log_group"; return 0; fi
  local arn
  arn=$(apprunner_arn)
  [ -n "$arn" ] || { echo "error: no App Runner service $SERVICE_NAME in $AWS_REGION to monitor" >&2; return 1; }
  echo "/aws/apprunner/$SERVICE_NAME/${arn##*/}/application"
}

# The metric filters, the dashboard and the alarms of monitoring/log-metrics.json. CloudWatch's
# put-* calls replace what has the same name, so a second run updates them and adds nothing; the
# SNS topic and the e-mail subscription are looked up first and made only when absent.
setup_monitoring() {
  local group tsv="$workdir/monitoring.tsv" topic="" subscribed topic_flags=() minutes=() filters=() alarms=()
  local kind name file pattern verb
  group=$(monitoring_log_group) || exit 1
  echo "monitoring: metric filters on $group, dashboard and alarms for $SERVICE_NAME"
  ensure_log_group "$group"
  if [ -n "${ALERT_EMAIL:-}" ]; then
    topic="arn:aws:sns:$AWS_REGION:$ACCOUNT_ID:$SERVICE_NAME-alerts"
    if ! query aws sns get-topic-attributes "${reg[@]}" --topic-arn "$topic" >/dev/null 2>&1; then
      run aws sns create-topic "${reg[@]}" --name "$SERVICE_NAME-alerts" >/dev/null
    fi
    subscribed=$(query aws sns list-subscriptions-by-topic "${reg[@]}" --topic-arn "$topic" \
      --query "Subscriptions[?Protocol=='email' && Endpoint=='$ALERT_EMAIL'].SubscriptionArn | [0]" --output text 2>/dev/null || true)
    if [ -z "$subscribed" ] || [ "$subscribed" = None ]; then
      run aws sns subscribe "${reg[@]}" --topic-arn "$topic" --protocol email --notification-endpoint "$ALERT_EMAIL" >/dev/null
      echo "AWS e-mails $ALERT_EMAIL a confirmation link: alarms reach that address once it is followed"
    fi
    topic_flags=(--topic-arn "$topic")
  fi
  [ -n "${NO_EVENTS_ALERT_MINUTES:-}" ] && minutes=(--no-events-minutes "$NO_EVENTS_ALERT_MINUTES")
  monitoring_py aws "$workdir/monitoring" --service "$SERVICE_NAME" --region "$AWS_REGION" --account "$ACCOUNT_ID" \
    --log-group "$group" "${topic_flags[@]}" "${minutes[@]}" >"$tsv" || exit 2
  read -ra filters <<<"$(query aws logs describe-metric-filters "${reg[@]}" --log-group-name "$group" \
    --filter-name-prefix "$SERVICE_NAME-" --query 'metricFilters[].filterName' --output text 2>/dev/null || true)"
  read -ra alarms <<<"$(query aws cloudwatch describe-alarms "${reg[@]}" --alarm-name-prefix "$SERVICE_NAME-" \
    --query 'MetricAlarms[].AlarmName' --output text 2>/dev/null || true)"
  # The manifest is read on its own descriptor: the cloud commands in the loop may read stdin.
  while IFS=$'\t' read -r kind name file pattern <&3; do
    case "$kind" in
      filter)
        if in_list "$name" "${filters[@]}"; then verb=updated; else verb=created; fi
        run aws logs put-metric-filter "${reg[@]}" --log-group-name "$group" --filter-name "$name" \
          --filter-pattern "$pattern" --metric-transformations "file://$file"
        ;;
      dashboard)
        if query aws cloudwatch get-dashboard "${reg[@]}" --dashboard-name "$name" >/dev/null 2>&1; then verb=updated; else verb=created; fi
        run aws cloudwatch put-dashboard "${reg[@]}" --dashboard-name "$name" --dashboard-body "file://$file" >/dev/null
        ;;
      alarm)
        if in_list "$name" "${alarms[@]}"; then verb=updated; else verb=created; fi
        run aws cloudwatch put-metric-alarm "${reg[@]}" --alarm-name "$name" --cli-input-json "file://$file"
        ;;
      *) continue ;;
    esac
    echo "  $kind $name: $verb"
  done 3<"$tsv"
  echo "monitoring dashboard: https://$AWS_REGION.console.aws.amazon.com/cloudwatch/home?region=$AWS_REGION#dashboards/dashboard/$SERVICE_NAME"
  echo "alarms: aws cloudwatch describe-alarms --region $AWS_REGION --alarm-name-prefix $SERVICE_NAME-"
  if [ -n "$topic" ]; then echo "alarms are sent to $ALERT_EMAIL through the SNS topic $topic"; fi
}

# ---- destroy --------------------------------------------------------------------------------------

# Deletes the service (adds it to `deleted`). With --purge-egress, waits until it is gone: its
# load balancer's or connector's network interfaces hold the egress VPC's subnets until then.
destroy_service() {
  local arn
  if [ "$target" = ecs ]; then
    existing=$(ecs_describe)
    if [ -z "$existing" ]; then
      echo "no ECS service $SERVICE_NAME in $AWS_REGION"
      # A cluster that is not there (a wrong ECS_CLUSTER) hides a service rather than proves it gone.
      if $purge_egress && ! ecs_cluster_exists; then
        echo "error: ECS has no cluster $ecs_cluster in $AWS_REGION (ECS_CLUSTER), so no service could be seen gone; the egress VPC is kept: set ECS_CLUSTER to the service's cluster" >&2
        exit 1
      fi
      return 0
    fi
    if [ "$(ecs_status <<<"$existing")" = DRAINING ]; then
      echo "the ECS service $SERVICE_NAME in $AWS_REGION is being deleted already"
    else
      confirm "Delete ECS Express service $SERVICE_NAME in $AWS_REGION?"
      run aws ecs delete-express-gateway-service "${reg[@]}" --service-arn "$ecs_service_arn" >/dev/null
      deleted+=("the ECS service $SERVICE_NAME")
    fi
    if $purge_egress && ! $dry_run; then wait_until_over "deletion of the ECS service" ecs_deletion_state || exit $?; fi
  else
    arn=$(apprunner_arn)
    if [ -z "$arn" ]; then echo "no App Runner service $SERVICE_NAME in $AWS_REGION"; return 0; fi
    confirm "Delete App Runner service $SERVICE_NAME in $AWS_REGION?"
    run aws apprunner delete-service "${reg[@]}" --service-arn "$arn" >/dev/null
    deleted+=("the App Runner service $SERVICE_NAME")
    if $purge_egress && ! $dry_run; then wait_until_over "deletion of the App Runner service" apprunner_deletion_state "$arn" || exit $?; fi
  fi
}

ecs_cluster_exists() {
  local found
  found=$(query aws ecs describe-clusters "${reg[@]}" --clusters "$ecs_cluster" --query "clusters[?status=='ACTIVE'].clusterName" --output text) || exit 3
  [ -n "$found" ] && [ "$found" != None ]
}

ecs_deletion_state() { # (see wait_until_over; a look-up that fails ends the wait with status 3)
  local found
  found=$(ecs_describe) || exit 3
  if [ -z "$found" ]; then echo "deleted"; return 0; fi
  ecs_status <<<"$found"
  return 2
}

apprunner_deletion_state() { # apprunner_deletion_state SERVICE_ARN (see wait_until_over)
  local status
  status=$(look_up aws apprunner describe-service "${reg[@]}" --service-arn "$1" --query Service.Status --output text) ||
    { [ $? -eq 1 ] && { echo "deleted"; return 0; }; exit 3; }
  state_outcome "$status" DELETED DELETE_FAILED "App Runner could not delete the service $SERVICE_NAME"
}

# state_outcome STATE DONE FAILED WHY: prints STATE; 0 when it is DONE, 1 (with the error WHY)
# when it is FAILED, 2 while neither (see wait_until_over).
state_outcome() {
  echo "$1"
  case "$1" in
    "$2") return 0 ;;
    "$3") echo "error: $4 ($1)" >&2; return 1 ;;
  esac
  return 2
}

# The egress VPC --static-egress-ip built (found by its tag). Kept unless --purge-egress: its
# Elastic IP is the address the HLR's firewall allows, and a new one would need allowing again;
# while it is kept, its NAT gateway and address are billed by the hour, which is said.
destroy_egress() {
  local vpc ip
  vpc=$(egress_vpc)
  [ -n "$vpc" ] || return 0
  ip=$(egress_eip)
  if ! $purge_egress; then
    kept+=("the egress VPC $vpc with its NAT gateway and Elastic IP $ip, billed by the hour while they exist (--purge-egress)")
    return 0
  fi
  confirm "Delete the egress VPC $vpc, its NAT gateway and its Elastic IP $ip (the address the HLR's firewall allows; a new deploy gets another)?"
  purge_egress_vpc "$vpc"
  deleted+=("the egress VPC $vpc with its NAT gateway and Elastic IP $ip")
}

# purge_egress_vpc VPC: everything in the VPC, in the order AWS allows. Network interfaces the
# deleted service's load balancer or connector left take minutes to go: a deletion they block is
# retried (EGRESS_RETRY_DELAYS, about 20 minutes in all).
purge_egress_vpc() {
  local vpc=$1 id ids=() nats=() connectors patience=${EGRESS_RETRY_DELAYS:-15 30 60 60 120 120 120 120 120 120 120 120 120}
  # App Runner's connector on the VPC, whichever target this run has: a service deleted by an
  # earlier --destroy leaves it behind.
  connectors=$(egress_connectors)
  split_into ids "$connectors"
  for id in "${ids[@]}"; do
    with_retry "the service to let go of its VPC connector" 'InvalidStateException|in use|used by' "$patience" \
      aws apprunner delete-vpc-connector "${reg[@]}" --vpc-connector-arn "$id" >/dev/null
  done
  # NAT gateways: those still up are deleted; each (and one an interrupted run left deleting) is
  # waited for, as its address cannot be released before.
  list_into nats aws ec2 describe-nat-gateways "${reg[@]}" --filter "Name=vpc-id,Values=$vpc" "Name=state,Values=pending,available" \
    --query 'NatGateways[].NatGatewayId' --output text
  for id in "${nats[@]}"; do run aws ec2 delete-nat-gateway "${reg[@]}" --nat-gateway-id "$id" >/dev/null; done
  if ! $dry_run; then
    list_into nats aws ec2 describe-nat-gateways "${reg[@]}" --filter "Name=vpc-id,Values=$vpc" "Name=state,Values=deleting" \
      --query 'NatGateways[].NatGatewayId' --output text
    for id in "${nats[@]}"; do wait_until_over "deletion of the NAT gateway $id" nat_gateway_state "$id" || exit $?; done
  fi
  list_into ids aws ec2 describe-addresses "${reg[@]}" --filters "Name=tag:Name,Values=$egress_tag" --query 'Addresses[].AllocationId' --output text
  for id in "${ids[@]}"; do run aws ec2 release-address "${reg[@]}" --allocation-id "$id"; done
  list_into ids aws ec2 describe-subnets "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" --query 'Subnets[].SubnetId' --output text
  for id in "${ids[@]}"; do
    with_retry "network interfaces to leave the subnet" DependencyViolation "$patience" aws ec2 delete-subnet "${reg[@]}" --subnet-id "$id"
  done
  list_into ids aws ec2 describe-route-tables "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" \
    --query 'RouteTables[?!(Associations[?Main])].RouteTableId' --output text
  for id in "${ids[@]}"; do run aws ec2 delete-route-table "${reg[@]}" --route-table-id "$id"; done
  # After the subnets: EC2 refuses to detach the gateway while public addresses are mapped in them.
  list_into ids aws ec2 describe-internet-gateways "${reg[@]}" --filters "Name=attachment.vpc-id,Values=$vpc" \
    --query 'InternetGateways[].InternetGatewayId' --output text
  for id in "${ids[@]}"; do
    with_retry "public addresses to leave the VPC" DependencyViolation "$patience" \
      aws ec2 detach-internet-gateway "${reg[@]}" --internet-gateway-id "$id" --vpc-id "$vpc"
    run aws ec2 delete-internet-gateway "${reg[@]}" --internet-gateway-id "$id"
  done
  list_into ids aws ec2 describe-security-groups "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" \
    --query "SecurityGroups[?GroupName!='default'].GroupId" --output text
  # ECS removes the security groups it made for the load balancer on its own, perhaps meanwhile.
  for id in "${ids[@]}"; do
    done_if='InvalidGroup.NotFound' with_retry "network interfaces to leave the security group" DependencyViolation "$patience" \
      aws ec2 delete-security-group "${reg[@]}" --group-id "$id"
  done
  with_retry "the VPC to empty" DependencyViolation "$patience" aws ec2 delete-vpc "${reg[@]}" --vpc-id "$vpc"
}

# list_into ARRAY LOOK-UP...: runs a read-only look-up and splits what it prints into ARRAY; a
# look-up that fails stops the run (status 3) rather than read as "none".
list_into() {
  local out
  out=$(query "${@:2}") || exit 3
  split_into "$1" "$out"
}
# shellcheck disable=SC2034  # `into` names the caller's array
split_into() { local -n into=$1; read -ra into <<<"$2"; } # split_into ARRAY WORDS

# check_connector_network ARN: the App Runner VPC connector ARN (named for this service) must use
# exactly the egress VPC's private subnets and its security group. One left from an egress VPC
# that was deleted and built again would send the service's traffic into subnets that are gone
# (or another network's), so the run stops, says what differs and how to replace it.
check_connector_network() {
  local arn=$1 held wanted
  held=$(query aws apprunner list-vpc-connectors "${reg[@]}" \
    --query "VpcConnectors[?VpcConnectorArn=='$arn'] | [0].[join(',', sort(Subnets)), join(',', sort(SecurityGroups))]" \
    --output text) || exit 3
  wanted="$(tr ',' '\n' <<<"$PRIVATE_SUBNETS" | sort | paste -sd,)	$EGRESS_SG"
  [ "$held" = "$wanted" ] && return 0
  echo "error: the App Runner VPC connector $(apprunner_connector_name) uses subnets ${held%%$'\t'*} and security group ${held#*$'\t'};" \
    "the egress VPC's private subnets are ${wanted%%$'\t'*} and its security group $EGRESS_SG." >&2
  echo "  App Runner keeps one connector of a name: delete it (refused while a service uses it; --destroy first)" \
    "with: aws apprunner delete-vpc-connector --region $AWS_REGION --vpc-connector-arn $arn; then deploy again" >&2
  exit 1
}

# The ARNs of App Runner's VPC connectors named for this service. With --target ecs, an account
# App Runner does not serve has none; otherwise a refused look-up stops the run (status 3).
egress_connectors() {
  local out
  if out=$(query aws apprunner list-vpc-connectors "${reg[@]}" \
    --query "VpcConnectors[?VpcConnectorName=='$(apprunner_connector_name)' && Status=='ACTIVE'].VpcConnectorArn" \
    --output text 2>"$workdir/connectors.err"); then
    echo "$out"
  elif [ "$target_given" = ecs ]; then
    return 0
  else
    cat "$workdir/connectors.err" >&2
    exit 3
  fi
}

nat_gateway_state() { # nat_gateway_state NAT_ID (see wait_until_over; a look-up that fails ends the wait with status 3)
  local state
  state=$(query aws ec2 describe-nat-gateways "${reg[@]}" --nat-gateway-ids "$1" --query 'NatGateways[0].State' --output text) || exit 3
  state_outcome "$state" deleted failed "the NAT gateway $1 could not be deleted"
}

# ---- modes --------------------------------------------------------------------------------------

service_url() {
  if [ "$target" = ecs ]; then ecs_describe | ecs_url; else
    local arn; arn=$(apprunner_arn)
    if [ -n "$arn" ]; then
      echo "https://$(query aws apprunner describe-service "${reg[@]}" --service-arn "$arn" --query Service.ServiceUrl --output text)"
    fi
  fi
}

case "$mode" in
  destroy)
    deleted=() kept=()
    destroy_service
    if $purge; then
      confirm "Delete ECR repository $ECR_REPOSITORY and every image in it?"
      run aws ecr delete-repository "${reg[@]}" --repository-name "$ECR_REPOSITORY" --force >/dev/null
      deleted+=("the ECR repository $ECR_REPOSITORY")
    else
      kept+=("the ECR repository $ECR_REPOSITORY (--purge-images)")
    fi
    destroy_egress
    kept+=("the secrets, IAM roles, log groups, alarms and dashboard named after $SERVICE_NAME")
    report_removal
    exit 0
    ;;
  test)
    url=$(service_url)
    [ -n "$url" ] || { echo "error: no $target service $SERVICE_NAME in $AWS_REGION" >&2; exit 1; }
    smoke_test "$url"
    exit 0
    ;;
  monitoring)
    setup_monitoring
    exit 0
    ;;
esac

# The service as it is (ECS: its description; App Runner: its ARN), looked at before anything is
# changed: a look-up that fails, an ECS service still being deleted, or --env-only without a
# service stops the run before a secret is stored or an image built.
look_at_service() {
  local what="App Runner service"
  if [ "$target" = ecs ]; then
    what="ECS service"
    existing=$(ecs_describe)
    if [ "$(ecs_status <<<"$existing")" = DRAINING ]; then
      echo "error: the ECS service $SERVICE_NAME is being deleted (DRAINING); run again once it is gone" >&2
      exit 1
    fi
  else
    existing=$(apprunner_arn)
  fi
  if [ "$mode" = env ] && [ -z "$existing" ]; then
    echo "error: no $what $SERVICE_NAME to update; deploy first" >&2
    exit 1
  fi
}

look_at_service
split_settings "$secrets"
SECRET_ARNS=()
store_secrets
$static_egress && setup_static_egress
[ "$mode" = deploy ] && build_image
if [ "$target" = ecs ]; then deploy_ecs; else deploy_apprunner; fi
echo "service URL: $url"
echo "NSPS handler URL: $url/process-event"
[ -n "${egress_ip:-}" ] && echo "egress address (allow it in the HLR's firewall): $egress_ip"
if [ "$target" = ecs ]; then
  echo "logs: aws logs tail $log_group --region $AWS_REGION --follow"
else
  echo "logs: aws logs tail /aws/apprunner/$SERVICE_NAME/<service id>/application --region $AWS_REGION --follow"
fi
if $monitoring; then setup_monitoring; fi
