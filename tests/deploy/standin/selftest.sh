#!/usr/bin/env bash
# Checks the cloud stand-in with the real CLIs: each command the deploy scripts use runs through
# the real gcloud and aws against it, in the order a first deploy runs them (a fresh project:
# describe fails, create succeeds, describe succeeds), and the request bodies the CLIs sent are
# checked in the record. Prints "ok ..." or "FAIL ..." per check and ends with
# "N passed, M failed" (exit 1 on any failure).
#
#   bash tests/deploy/standin/selftest.sh [gcp|aws|SECTION]   (default: all four sections)
#
# Sections, each with a stand-in of its own, side by side: gcp (APIs, images and builds, secrets,
# service accounts, network, monitoring), cloudrun (services and jobs), aws (identity, ECR, IAM,
# Secrets Manager, logs, CloudWatch, SNS, network), awsrun (ECS Express, App Runner).
#
# Each section counts in a subshell of its own; the counts are added up from files at the end.
# shellcheck disable=SC2030,SC2031
# shellcheck source-path=SCRIPTDIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
only=${1:-all}

# shellcheck source=harness.sh
. "$here/harness.sh"

work=$(mktemp -d)
out="$work/out" err="$work/err"

# run_ok DESCRIPTION COMMAND...: the command exits 0 (its output is kept in $out and $err)
run_ok() {
  local desc=$1; shift
  if "$@" >"$out" 2>"$err"; then ok "$desc"; else bad "$desc (exit $?): $(tail -n 3 "$err")"; fi
}
# run_fails DESCRIPTION COMMAND...: the command exits non-zero
run_fails() {
  local desc=$1; shift
  if "$@" >"$out" 2>"$err"; then bad "$desc (exit 0, expected a failure)"; else ok "$desc"; fi
}
# out_is DESCRIPTION TEXT / out_has DESCRIPTION REGEX / err_has DESCRIPTION REGEX: on the last command
out_is() { if [ "$(cat "$out")" = "$2" ]; then ok "$1"; else bad "$1 (got: $(head -c 300 "$out"), want: $2)"; fi; }
out_has() { if grep -qE -- "$2" "$out"; then ok "$1"; else bad "$1 (no match for $2 in: $(head -c 300 "$out"))"; fi; }
err_has() { if grep -qE -- "$2" "$err"; then ok "$1"; else bad "$1 (no match for $2 in: $(head -c 300 "$err"))"; fi; }

# body DESCRIPTION OP PYTHON-EXPRESSION [NAME=VALUE...]: the expression holds for the last
# recorded call to OP. In it: b is that call's body, r the whole record, each NAME its VALUE,
# tmpl(b) a Cloud Run service's (or job's task's) template spec, ctr(b) its first container and
# env(container) that container's env entries by name.
body() {
  local desc=$1 op=$2 expr=$3 why
  shift 3
  if why=$(python3 - "$STANDIN_RECORD" "$op" "$expr" "$@" 2>&1 <<'EOF'
import base64, json, re, sys
path, op, expr = sys.argv[1:4]
names = dict(arg.split("=", 1) for arg in sys.argv[4:])
calls = [json.loads(line) for line in open(path) if line.strip()]
calls = [c for c in calls if c.get("op") == op]
if not calls:
    sys.exit("no recorded call to " + op)
r = calls[-1]
b = r["body"]


def tmpl(body):
    spec = body["spec"]["template"]["spec"]
    return spec["template"]["spec"] if "template" in spec else spec  # a job's tasks have one more level


def ctr(body):
    return tmpl(body)["containers"][0]


def env(container):
    return {e["name"]: e for e in container.get("env", [])}


try:
    # In parentheses, an expression may go on over several lines.
    good = eval("(" + expr + "\n)", dict(names, b=b, r=r, tmpl=tmpl, ctr=ctr, env=env, json=json, re=re, base64=base64))
except Exception as e:
    good, err = False, "%s: %s; " % (type(e).__name__, e)
else:
    err = ""
if not good:
    sys.exit(err + "body: " + json.dumps(b)[:1200])
EOF
  ); then ok "$desc"; else bad "$desc ($why)"; fi
}

# out_json DESCRIPTION PYTHON-EXPRESSION [NAME=VALUE...]: the expression holds for the JSON the
# last command printed, d in the expression
out_json() {
  local desc=$1 expr=$2 why
  shift 2
  if why=$(python3 - "$out" "$expr" "$@" 2>&1 <<'EOF'
import json, sys
path, expr = sys.argv[1:3]
names = dict(arg.split("=", 1) for arg in sys.argv[3:])
try:
    d = json.load(open(path))
    good = eval("(" + expr + "\n)", dict(names, d=d))
except Exception as e:
    sys.exit("%s: %s; output: %s" % (type(e).__name__, e, open(path).read()[:1000]))
if not good:
    sys.exit("output: " + json.dumps(d)[:1000])
EOF
  ); then ok "$desc"; else bad "$desc ($why)"; fi
}

if ! command -v aws >/dev/null 2>&1; then
  echo "installing awscli (pip)"
  python3 -m pip install --quiet awscli || true
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # pyenv's shim for the new command
  hash -r
  if ! command -v aws >/dev/null 2>&1 && python3 -c 'import awscli' 2>/dev/null; then
    aws() { python3 -m awscli "$@"; }  # installed where PATH does not look (pip --user, say)
    export -f aws
  fi
fi

# ------------------------------------------------------------------------------------------------
gcp_checks() { # the project: APIs, images, secrets, accounts, network, monitoring
  local p=standin-selftest r=europe-west1
  export CLOUDSDK_CORE_PROJECT=$p
  local img="$r-docker.pkg.dev/$p/nsps/svc"

  run_ok "gcloud services enable" gcloud services enable run.googleapis.com artifactregistry.googleapis.com \
    secretmanager.googleapis.com compute.googleapis.com --project $p
  body "services enable asks for all four APIs" serviceusage.services.batchEnable \
    '"run.googleapis.com" in b["serviceIds"] and len(b["serviceIds"]) == 4'

  run_fails "artifacts repositories describe: a fresh project has none" \
    gcloud artifacts repositories describe nsps --project $p --location $r
  run_ok "artifacts repositories create" gcloud artifacts repositories create nsps --project $p --location $r \
    --repository-format docker --description "selftest images"
  body "repository body: DOCKER with its description" artifactregistry.repositories.create \
    'b["format"] == "DOCKER" and b["description"] == "selftest images" and r["query"]["repositoryId"] == "nsps"'
  run_ok "artifacts repositories describe after create" gcloud artifacts repositories describe nsps --project $p --location $r
  run_fails "artifacts docker images describe: no image yet" gcloud artifacts docker images describe "$img:1"
  mkdir -p "$work/src"
  printf 'FROM scratch\n' >"$work/src/Dockerfile"
  run_ok "builds submit --tag (source upload, then the build)" gcloud builds submit "$work/src" --project $p --region $r --tag "$img:1"
  body "build body: the image tag and the uploaded source" cloudbuild.builds.create \
    'b["images"] == [image] and b["source"]["storageSource"]["bucket"] == bucket' image="$img:1" bucket="${p}_cloudbuild"
  run_ok "artifacts docker images describe: the built image" gcloud artifacts docker images describe "$img:1"
  touch "$STANDIN_STATE_DIR/build-fails"
  run_fails "builds submit: fails with build-fails in the state dir" gcloud builds submit "$work/src" --project $p --region $r --tag "$img:9"
  rm -f "$STANDIN_STATE_DIR/build-fails"
  echo "$img:0" >"$STANDIN_STATE_DIR/images"
  run_ok "artifacts docker images describe: an image listed in the state dir" gcloud artifacts docker images describe "$img:0"

  run_fails "secrets describe: none yet" gcloud secrets describe svc-api-token --project $p
  run_ok "secrets create" gcloud secrets create svc-api-token --project $p --replication-policy automatic
  body "secret body: automatic replication" secretmanager.secrets.create \
    'b["replication"] == {"automatic": {}} and r["query"]["secretId"] == "svc-api-token"'
  run_ok "secrets describe after create" gcloud secrets describe svc-api-token --project $p
  run_ok "secrets versions add --data-file=- (value on stdin)" \
    bash -c "printf '%s' 's3cret,with\"quotes' | gcloud secrets versions add svc-api-token --project $p --data-file=-"
  body "version payload is the stdin value" secretmanager.versions.add \
    'base64.b64decode(b["payload"]["data"]).decode() == "s3cret,with\"quotes"'
  run_ok "secrets versions access latest" gcloud secrets versions access latest --secret svc-api-token --project $p
  out_is "the stored value comes back" 's3cret,with"quotes'
  run_ok "secrets add-iam-policy-binding" gcloud secrets add-iam-policy-binding svc-api-token --project $p \
    --member "serviceAccount:svc-run@$p.iam.gserviceaccount.com" --role roles/secretmanager.secretAccessor
  body "secret policy binds the accessor role" secretmanager.setIamPolicy \
    '{"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:" + sa]} in b["policy"]["bindings"]' \
    sa="svc-run@$p.iam.gserviceaccount.com"

  run_fails "iam service-accounts describe: none yet" gcloud iam service-accounts describe "svc-run@$p.iam.gserviceaccount.com"
  run_ok "iam service-accounts create" gcloud iam service-accounts create svc-run --project $p --display-name "selftest runtime"
  body "service account body" iam.serviceAccounts.create 'b["accountId"] == "svc-run" and b["serviceAccount"]["displayName"] == "selftest runtime"'
  run_ok "iam service-accounts describe after create" gcloud iam service-accounts describe "svc-run@$p.iam.gserviceaccount.com"
  run_fails "iam service-accounts create: a 5-character id is refused" gcloud iam service-accounts create svc-r --project $p
  err_has "  with the real service's message" 'does not have a length between 6 and 30'
  run_fails "iam service-accounts create: an id ending in a hyphen is refused" gcloud iam service-accounts create svc-run- --project $p

  run_fails "compute networks describe: none yet" gcloud compute networks describe svc-net --project $p
  run_ok "compute networks create" gcloud compute networks create svc-net --project $p --subnet-mode custom
  run_ok "compute networks describe after create" gcloud compute networks describe svc-net --project $p
  run_fails "compute networks subnets describe: none yet" gcloud compute networks subnets describe svc-sub --project $p --region $r
  run_ok "compute networks subnets create" gcloud compute networks subnets create svc-sub --project $p --region $r \
    --network svc-net --range 10.8.0.0/28
  body "subnet body: range and network" compute.insert 'b["ipCidrRange"] == "10.8.0.0/28" and b["network"].endswith("/global/networks/svc-net")'
  run_ok "compute networks subnets describe after create" gcloud compute networks subnets describe svc-sub --project $p --region $r
  run_fails "compute routers describe: none yet" gcloud compute routers describe svc-router --project $p --region $r
  run_ok "compute routers create" gcloud compute routers create svc-router --project $p --region $r --network svc-net
  run_ok "compute routers describe after create" gcloud compute routers describe svc-router --project $p --region $r
  run_fails "compute addresses describe: none yet" gcloud compute addresses describe svc-ip --project $p --region $r
  run_ok "compute addresses create" gcloud compute addresses create svc-ip --project $p --region $r
  run_ok "compute addresses describe after create" gcloud compute addresses describe svc-ip --project $p --region $r --format 'value(address)'
  out_has "  the address has an IP" '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$'
  run_fails "compute routers nats describe: none yet" gcloud compute routers nats describe svc-nat --router svc-router --project $p --region $r
  run_ok "compute routers nats create" gcloud compute routers nats create svc-nat --router svc-router --project $p --region $r \
    --nat-external-ip-pool svc-ip --nat-all-subnet-ip-ranges
  body "router patch carries the NAT with its address" compute.patch \
    'b["nats"][0]["name"] == "svc-nat" and b["nats"][0]["natIps"][0].endswith("/addresses/svc-ip")'
  run_ok "compute routers nats describe after create" gcloud compute routers nats describe svc-nat --router svc-router --project $p --region $r

  run_fails "logging metrics describe: none yet" gcloud logging metrics describe svc-errors --project $p
  printf '%s\n' '{"name": "svc-errors", "description": "connector errors",' \
    ' "filter": "resource.type=\"cloud_run_revision\" AND severity>=ERROR"}' >"$work/metric.json"
  run_ok "logging metrics create --config-from-file" gcloud logging metrics create svc-errors --project $p \
    --config-from-file "$work/metric.json"
  body "log metric body: the filter" logging.metrics.create \
    'b["filter"] == "resource.type=\"cloud_run_revision\" AND severity>=ERROR"'
  run_ok "logging metrics describe after create" gcloud logging metrics describe svc-errors --project $p
  run_ok "logging metrics update --config-from-file" gcloud logging metrics update svc-errors --project $p \
    --config-from-file "$work/metric.json"
  printf '%s\n' "listening on 0.0.0.0:8000" "smoke event accepted" >"$STANDIN_STATE_DIR/logs"
  run_ok "logging read" gcloud logging read 'resource.type="cloud_run_job"' --project $p --limit 5 --format 'value(textPayload)'
  out_has "  the log lines come back" 'smoke event accepted'

  run_ok "beta monitoring channels list: none yet" gcloud beta monitoring channels list --project $p --format json
  out_is "  empty" "[]"
  printf '%s\n' '{"type": "email", "displayName": "svc alerts", "labels": {"email_address": "ops@example.com"}}' \
    >"$work/channel.json"
  run_ok "beta monitoring channels create" gcloud beta monitoring channels create --project $p \
    --channel-content-from-file "$work/channel.json" --format 'value(name)'
  out_has "  the channel's name" "^projects/[0-9]+/notificationChannels/[0-9]+\$"
  run_ok "alpha monitoring policies list: none yet" gcloud alpha monitoring policies list --project $p --format json
  out_is "  empty" "[]"
  printf '%s\n' '{"displayName": "svc: errors", "combiner": "OR", "conditions": [{"displayName": "errors",' \
    ' "conditionThreshold": {"filter": "metric.type=\"logging.googleapis.com/user/svc-errors\"",' \
    ' "comparison": "COMPARISON_GT", "duration": "0s"}}]}' >"$work/policy.json"
  run_ok "alpha monitoring policies create" gcloud alpha monitoring policies create --project $p --policy-from-file "$work/policy.json"
  body "policy body" monitoring.create 'b["displayName"] == "svc: errors" and b["conditions"][0]["conditionThreshold"]["comparison"] == "COMPARISON_GT"'
  run_ok "alpha monitoring policies update" gcloud alpha monitoring policies update \
    "$(gcloud alpha monitoring policies list --project $p --format 'value(name)')" --project $p --policy-from-file "$work/policy.json"
  printf '%s\n' '{"displayName": "svc", "gridLayout": {"widgets": [{"title": "errors", "text": {"content": "x"}}]}}' \
    >"$work/dashboard.json"
  run_ok "monitoring dashboards create" gcloud monitoring dashboards create --project $p --config-from-file "$work/dashboard.json"
  body "dashboard body" monitoring.create 'b["displayName"] == "svc" and b["gridLayout"]["widgets"][0]["title"] == "errors"'
  run_ok "monitoring dashboards list" gcloud monitoring dashboards list --project $p --format 'value(name,etag)'
  local dashboard etag
  read -r dashboard etag <"$out"
  printf '{"displayName": "svc", "etag": "%s", "gridLayout": {"widgets": []}}\n' "$etag" >"$work/dashboard.json"
  run_ok "monitoring dashboards update (with the etag read)" gcloud monitoring dashboards update "$dashboard" --project $p \
    --config-from-file "$work/dashboard.json"
  run_fails "monitoring dashboards update with a stale etag is refused" gcloud monitoring dashboards update "$dashboard" \
    --project $p --config-from-file "$work/dashboard.json"
  unset CLOUDSDK_CORE_PROJECT
}

# ------------------------------------------------------------------------------------------------
cloudrun_checks() { # Cloud Run services and jobs, in a project of their own
  local p=standin-selftest r=europe-west1
  export CLOUDSDK_CORE_PROJECT=$p
  local img="$r-docker.pkg.dev/$p/nsps/svc"

  # The settings file as the deploy script writes it: single-quoted YAML values.
  cat >"$work/env.yaml" <<'EOF'
WTL_API_URL: 'https://wtl.example/api'
WTL_IMSI_REGEXP: '^(00101|00102)\d{10}$'
WTL_EVENT_ACTIONS: 'Account/Blocked,Account/Unblocked'
APP_NAME: 'it''s "quoted"'
EOF
  run_fails "run services describe: none yet" gcloud run services describe svc --project $p --region $r
  run_ok "run deploy (a new service, every flag)" gcloud run deploy svc --project $p --region $r --image "$img:1" \
    --platform managed --port 8000 --allow-unauthenticated --service-account "svc-run@$p.iam.gserviceaccount.com" \
    --min-instances 0 --max-instances 1 --concurrency 80 --cpu 1 --memory 256Mi --timeout 60 \
    --env-vars-file "$work/env.yaml" --set-secrets "API_TOKEN=svc-api-token:latest,/secrets/wtl-ca/ca.pem=svc-wtl-ca:latest" \
    --network svc-net --subnet svc-sub --vpc-egress all-traffic
  body "service body: env values from the env-vars file, exactly" run.services.create \
    '{k: v["value"] for k, v in env(ctr(b)).items() if "value" in v} == {"WTL_API_URL": "https://wtl.example/api",
      "WTL_IMSI_REGEXP": r"^(00101|00102)\d{10}$", "WTL_EVENT_ACTIONS": "Account/Blocked,Account/Unblocked",
      "APP_NAME": app_name}' app_name="it's \"quoted\""
  body "service body: API_TOKEN from Secret Manager, latest version" run.services.create \
    'env(ctr(b))["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "svc-api-token", "key": "latest"}'
  body "service body: the CA secret mounted as a file" run.services.create \
    'ctr(b)["volumeMounts"][0]["mountPath"] == "/secrets/wtl-ca"
     and tmpl(b)["volumes"][0]["secret"] == {"secretName": "svc-wtl-ca", "items": [{"key": "latest", "path": "ca.pem"}]}'
  body "service body: image, port, service account, limits" run.services.create \
    'ctr(b)["image"] == image and ctr(b)["ports"][0]["containerPort"] == 8000 and tmpl(b)["serviceAccountName"] == sa
     and ctr(b)["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"} and tmpl(b)["containerConcurrency"] == 80
     and tmpl(b)["timeoutSeconds"] == 60' image="$img:1" sa="svc-run@$p.iam.gserviceaccount.com"
  body "service body: direct VPC egress, all traffic" run.services.create \
    'json.loads(b["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/network-interfaces"])
       == [{"network": "svc-net", "subnetwork": "svc-sub"}]
     and b["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/vpc-access-egress"] == "all-traffic"'
  body "--allow-unauthenticated: allUsers get run.invoker" run.setIamPolicy \
    '{"role": "roles/run.invoker", "members": ["allUsers"]} in b["policy"]["bindings"]'
  run_ok "run services describe --format json" gcloud run services describe svc --project $p --region $r --format json
  out_json "  Ready, serving 100% on its revision, with a URL" \
    'd["status"]["url"].startswith("https://svc-") and d["status"]["traffic"][0]["percent"] == 100
     and d["status"]["traffic"][0]["revisionName"] == d["status"]["latestReadyRevisionName"]
     and [c["status"] for c in d["status"]["conditions"] if c["type"] == "Ready"] == ["True"]'
  run_ok "run services describe --format value(status.url)" \
    gcloud run services describe svc --project $p --region $r --format 'value(status.url)'
  out_has "  an https run.app URL" '^https://svc-[a-z0-9]+-ew\.a\.run\.app$'

  run_ok "run services update --env-vars-file --update-secrets" gcloud run services update svc --project $p --region $r \
    --env-vars-file "$work/env.yaml" --update-secrets "WTL_API_TOKEN=svc-wtl-api-token:latest"
  body "service update keeps API_TOKEN and adds WTL_API_TOKEN" run.services.replace \
    'set(env(ctr(b))) >= {"API_TOKEN", "WTL_API_TOKEN", "WTL_IMSI_REGEXP"}
     and env(ctr(b))["WTL_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "svc-wtl-api-token"'
  local first second
  first=$(gcloud run services describe svc --project $p --region $r --format 'value(status.latestReadyRevisionName)')

  run_ok "run deploy --no-traffic --tag candidate (an update)" gcloud run deploy svc --project $p --region $r --image "$img:2" \
    --env-vars-file "$work/env.yaml" --no-traffic --tag candidate
  body "update keeps 100% on the old revision and tags the new one" run.services.replace \
    '{"percent": 100, "revisionName": first} in b["spec"]["traffic"] and any(t.get("tag") == "candidate"
      and t["revisionName"] == b["spec"]["template"]["metadata"]["name"] for t in b["spec"]["traffic"])' first="$first"
  run_ok "run services describe after the update" gcloud run services describe svc --project $p --region $r --format json
  out_json "  the candidate tag: the new revision, its own URL, no traffic" \
    '[(t["revisionName"] == d["status"]["latestReadyRevisionName"] != first, t["url"].startswith("https://candidate---svc-"),
       t.get("percent", 0)) for t in d["status"]["traffic"] if t.get("tag") == "candidate"] == [(True, True, 0)]' first="$first"
  second=$(gcloud run services describe svc --project $p --region $r --format 'value(status.latestReadyRevisionName)')
  run_ok "run revisions list" gcloud run revisions list --project $p --region $r --service svc --format 'value(metadata.name)'
  if [ "$(wc -l <"$out")" -eq 3 ] && grep -qx "$first" "$out" && grep -qx "$second" "$out"; then
    ok "  all three revisions listed"; else bad "  revisions: $(tr '\n' ' ' <"$out")"; fi
  run_ok "run services update-traffic --to-revisions NEW=100" gcloud run services update-traffic svc --project $p --region $r \
    --to-revisions "$second=100"
  body "traffic update sends 100% to the candidate" run.services.replace \
    '{"percent": 100, "revisionName": second} in b["spec"]["traffic"]' second="$second"
  run_ok "run services describe after the switch" gcloud run services describe svc --project $p --region $r \
    --format 'value(status.traffic[0].revisionName,status.traffic[0].percent)'
  out_is "  the candidate serves 100%" "$second	100"

  run_fails "run jobs describe: none yet" gcloud run jobs describe svc-check --project $p --region $r
  run_ok "run jobs deploy" gcloud run jobs deploy svc-check --project $p --region $r --image "$img:2" --args check \
    --max-retries 0 --task-timeout 120 --env-vars-file "$work/env.yaml" --set-secrets API_TOKEN=svc-api-token:latest \
    --network svc-net --subnet svc-sub --vpc-egress all-traffic
  body "job body: args, retries, timeout, env and secret" run.jobs.create \
    'ctr(b)["args"] == ["check"] and tmpl(b)["maxRetries"] == 0 and str(tmpl(b)["timeoutSeconds"]) == "120"
     and env(ctr(b))["WTL_IMSI_REGEXP"]["value"] == r"^(00101|00102)\d{10}$"
     and "secretKeyRef" in env(ctr(b))["API_TOKEN"]["valueFrom"]'
  run_ok "run jobs execute --wait: the check passes" gcloud run jobs execute svc-check --project $p --region $r --wait
  touch "$STANDIN_STATE_DIR/check-fails"
  run_fails "run jobs execute --wait: fails with check-fails in the state dir" gcloud run jobs execute svc-check --project $p --region $r --wait
  rm -f "$STANDIN_STATE_DIR/check-fails"
  run_ok "run jobs deploy again (an update)" gcloud run jobs deploy svc-check --project $p --region $r --image "$img:3" --args check
  body "job update replaces the job" run.jobs.replace 'ctr(b)["image"].endswith("svc:3")'
  run_ok "run jobs executions list" gcloud run jobs executions list --job svc-check --project $p --region $r \
    --format 'value(metadata.name)'
  if [ "$(wc -l <"$out")" -eq 2 ]; then ok "  both executions"; else bad "  executions: $(tr '\n' ' ' <"$out")"; fi
  run_ok "run jobs delete" gcloud run jobs delete svc-check --project $p --region $r --quiet
  run_fails "run jobs describe after delete" gcloud run jobs describe svc-check --project $p --region $r

  printf '%s\n' "listening on 0.0.0.0:8000" "smoke event accepted" >"$STANDIN_STATE_DIR/logs"
  run_ok "run services logs read" gcloud run services logs read svc --project $p --region $r --limit 5
  out_has "  the log lines come back" 'smoke event accepted'

  run_ok "run services delete" gcloud run services delete svc --project $p --region $r --quiet
  run_fails "run services describe after delete" gcloud run services describe svc --project $p --region $r
  unset CLOUDSDK_CORE_PROJECT
}

# ------------------------------------------------------------------------------------------------
# deployment_status SERVICE-ARN: the status of an ECS Express service's current deployment
# shellcheck disable=SC2317  # called through run_ok
deployment_status() {
  aws ecs describe-service-deployments --region eu-central-1 --query 'serviceDeployments[0].status' --output text \
    --service-deployment-arns "$(aws ecs describe-express-gateway-service --region eu-central-1 --service-arn "$1" \
      --query service.currentDeployment --output text)"
}

aws_checks() { # the account: identity, images, roles, secrets, logs, alarms, alerts, network
  local reg=(--region eu-central-1) acct=123456789012
  run_ok "sts get-caller-identity" aws sts get-caller-identity --query Account --output text
  out_is "  the stand-in's account" $acct

  run_fails "ecr describe-repositories: none yet" aws ecr describe-repositories "${reg[@]}" --repository-names svc
  err_has "  RepositoryNotFoundException" RepositoryNotFoundException
  run_ok "ecr create-repository" aws ecr create-repository "${reg[@]}" --repository-name svc --image-scanning-configuration scanOnPush=true
  body "repository body: scan on push" ecr.CreateRepository 'b == {"repositoryName": "svc", "imageScanningConfiguration": {"scanOnPush": True}}'
  run_ok "ecr describe-repositories after create" aws ecr describe-repositories "${reg[@]}" --repository-names svc \
    --query 'repositories[0].repositoryUri' --output text
  out_is "  the repository URI" "$acct.dkr.ecr.eu-central-1.amazonaws.com/svc"
  run_ok "ecr get-login-password" aws ecr get-login-password "${reg[@]}"
  out_is "  a password" standin-ecr-password

  printf '%s' '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}' >"$work/trust.json"
  run_fails "iam get-role: none yet" aws iam get-role --role-name svc-task-execution
  err_has "  NoSuchEntity" NoSuchEntity
  run_ok "iam create-role" aws iam create-role --role-name svc-task-execution --assume-role-policy-document "file://$work/trust.json"
  body "role body: the trust policy" iam.CreateRole \
    'json.loads(b["AssumeRolePolicyDocument"])["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}'
  run_ok "iam attach-role-policy" aws iam attach-role-policy --role-name svc-task-execution \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
  body "attach body: the managed policy" iam.AttachRolePolicy 'b["PolicyArn"].endswith("/AmazonECSTaskExecutionRolePolicy")'
  run_ok "iam put-role-policy" aws iam put-role-policy --role-name svc-task-execution --policy-name read-secrets \
    --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}'
  body "inline policy body" iam.PutRolePolicy 'json.loads(b["PolicyDocument"])["Statement"][0]["Action"] == "secretsmanager:GetSecretValue"'
  run_ok "iam get-role after create" aws iam get-role --role-name svc-task-execution --query Role.Arn --output text
  out_is "  the role ARN" "arn:aws:iam::$acct:role/svc-task-execution"
  run_fails "iam create-role: a 65-character name is refused" aws iam create-role --role-name "$(printf 'r%.0s' {1..65})" \
    --assume-role-policy-document "file://$work/trust.json"
  err_has "  with the real service's message" 'ValidationError.*less than or equal to 64'

  printf '%s' 'tok,en"1' >"$work/secret"
  run_fails "secretsmanager describe-secret: none yet" aws secretsmanager describe-secret "${reg[@]}" --secret-id svc/API_TOKEN
  run_ok "secretsmanager create-secret" aws secretsmanager create-secret "${reg[@]}" --name svc/API_TOKEN --secret-string "file://$work/secret"
  body "secret body: the file's value" secretsmanager.CreateSecret 'b["Name"] == "svc/API_TOKEN" and b["SecretString"] == "tok,en\"1"'
  run_ok "secretsmanager put-secret-value" aws secretsmanager put-secret-value "${reg[@]}" --secret-id svc/API_TOKEN --secret-string "file://$work/secret"
  run_ok "secretsmanager describe-secret after create" aws secretsmanager describe-secret "${reg[@]}" --secret-id svc/API_TOKEN --query ARN --output text
  out_has "  a full ARN with the 6-character suffix" "^arn:aws:secretsmanager:eu-central-1:$acct:secret:svc/API_TOKEN-[A-Za-z0-9]{6}\$"
  local secret_arn
  secret_arn=$(cat "$out")

  run_ok "logs describe-log-groups: none yet" aws logs describe-log-groups "${reg[@]}" --log-group-name-prefix /ecs/svc --query 'length(logGroups)'
  out_is "  empty" 0
  run_ok "logs create-log-group" aws logs create-log-group "${reg[@]}" --log-group-name /ecs/svc
  run_ok "logs describe-log-groups after create" aws logs describe-log-groups "${reg[@]}" --log-group-name-prefix /ecs/svc --query 'logGroups[0].logGroupName' --output text
  out_is "  the group" /ecs/svc
  run_ok "logs put-metric-filter" aws logs put-metric-filter "${reg[@]}" --log-group-name /ecs/svc --filter-name errors \
    --filter-pattern '{ $.level = "ERROR" }' --metric-transformations metricName=Errors,metricNamespace=Svc,metricValue=1
  body "metric filter body" logs.PutMetricFilter 'b["filterPattern"] == "{ $.level = \"ERROR\" }" and b["metricTransformations"][0]["metricName"] == "Errors"'
  run_ok "cloudwatch put-dashboard" aws cloudwatch put-dashboard "${reg[@]}" --dashboard-name svc \
    --dashboard-body '{"widgets":[{"type":"metric","properties":{"metrics":[["Svc","Errors"]]}}]}'
  body "dashboard body is JSON with the widget" cloudwatch.PutDashboard 'json.loads(b["DashboardBody"])["widgets"][0]["type"] == "metric"'
  run_fails "cloudwatch put-dashboard: a body that is no JSON is refused" aws cloudwatch put-dashboard "${reg[@]}" --dashboard-name svc --dashboard-body '{widgets'
  run_ok "cloudwatch put-metric-alarm" aws cloudwatch put-metric-alarm "${reg[@]}" --alarm-name svc-errors --metric-name Errors \
    --namespace Svc --statistic Sum --period 300 --evaluation-periods 1 --threshold 1 --comparison-operator GreaterThanOrEqualToThreshold
  body "alarm body" cloudwatch.PutMetricAlarm 'b["AlarmName"] == "svc-errors" and b["Threshold"] == 1.0'
  run_ok "logs put-retention-policy" aws logs put-retention-policy "${reg[@]}" --log-group-name /ecs/svc --retention-in-days 30
  run_ok "logs describe-metric-filters" aws logs describe-metric-filters "${reg[@]}" --log-group-name /ecs/svc \
    --query 'metricFilters[0].filterName' --output text
  out_is "  the filter" errors
  run_ok "cloudwatch get-dashboard" aws cloudwatch get-dashboard "${reg[@]}" --dashboard-name svc --query DashboardBody --output text
  out_has "  the body put" '"widgets"'
  run_ok "cloudwatch describe-alarms" aws cloudwatch describe-alarms "${reg[@]}" --alarm-names svc-errors \
    --query 'MetricAlarms[0].AlarmName' --output text
  out_is "  the alarm" svc-errors
  local topic="arn:aws:sns:eu-central-1:$acct:svc-alerts"
  run_fails "sns get-topic-attributes: no topic yet" aws sns get-topic-attributes "${reg[@]}" --topic-arn "$topic"
  run_ok "sns create-topic" aws sns create-topic "${reg[@]}" --name svc-alerts --query TopicArn --output text
  out_is "  the topic ARN" "$topic"
  run_ok "sns get-topic-attributes after create" aws sns get-topic-attributes "${reg[@]}" --topic-arn "$topic"
  run_ok "sns subscribe (e-mail)" aws sns subscribe "${reg[@]}" --topic-arn "$topic" --protocol email \
    --notification-endpoint ops@example.com
  run_ok "sns list-subscriptions-by-topic" aws sns list-subscriptions-by-topic "${reg[@]}" --topic-arn "$topic" \
    --query "Subscriptions[?Protocol=='email' && Endpoint=='ops@example.com'].SubscriptionArn | [0]" --output text
  out_is "  pending confirmation" PendingConfirmation

  # A private network with a NAT gateway (fixed egress IP).
  run_ok "ec2 describe-vpcs: none tagged yet" aws ec2 describe-vpcs "${reg[@]}" --filters Name=tag:Name,Values=svc-vpc --query 'Vpcs[0].VpcId' --output text
  out_is "  None" None
  run_ok "ec2 create-vpc" aws ec2 create-vpc "${reg[@]}" --cidr-block 10.20.0.0/16 \
    --tag-specifications 'ResourceType=vpc,Tags=[{Key=Name,Value=svc-vpc}]' --query Vpc.VpcId --output text
  local vpc pub priv igw eip nat rtb sg
  vpc=$(cat "$out")
  body "vpc body: CIDR and Name tag" ec2.CreateVpc 'b["CidrBlock"] == "10.20.0.0/16" and b["TagSpecification.1.Tag.1.Value"] == "svc-vpc"'
  run_ok "ec2 describe-vpcs by tag after create" aws ec2 describe-vpcs "${reg[@]}" --filters Name=tag:Name,Values=svc-vpc --query 'Vpcs[0].VpcId' --output text
  out_is "  finds it" "$vpc"
  run_ok "ec2 create-subnet (public)" aws ec2 create-subnet "${reg[@]}" --vpc-id "$vpc" --cidr-block 10.20.0.0/24 --query Subnet.SubnetId --output text
  pub=$(cat "$out")
  run_ok "ec2 create-subnet (private)" aws ec2 create-subnet "${reg[@]}" --vpc-id "$vpc" --cidr-block 10.20.1.0/24 \
    --availability-zone eu-central-1a --query Subnet.SubnetId --output text
  priv=$(cat "$out")
  run_ok "ec2 describe-subnets in the VPC" aws ec2 describe-subnets "${reg[@]}" --filters "Name=vpc-id,Values=$vpc" --query 'length(Subnets)'
  out_is "  both" 2
  run_ok "ec2 create-internet-gateway" aws ec2 create-internet-gateway "${reg[@]}" --query InternetGateway.InternetGatewayId --output text
  igw=$(cat "$out")
  run_ok "ec2 attach-internet-gateway" aws ec2 attach-internet-gateway "${reg[@]}" --internet-gateway-id "$igw" --vpc-id "$vpc"
  run_ok "ec2 describe-availability-zones" aws ec2 describe-availability-zones "${reg[@]}" \
    --query 'AvailabilityZones[0:2].ZoneName' --output text
  out_is "  two zones of the region" "eu-central-1a	eu-central-1b"
  run_ok "ec2 allocate-address" aws ec2 allocate-address "${reg[@]}" --domain vpc \
    --tag-specifications 'ResourceType=elastic-ip,Tags=[{Key=Name,Value=svc-egress}]' --query AllocationId --output text
  eip=$(cat "$out")
  run_ok "ec2 describe-addresses by tag" aws ec2 describe-addresses "${reg[@]}" --filters Name=tag:Name,Values=svc-egress \
    --query 'Addresses[0].AllocationId' --output text
  out_is "  finds it" "$eip"
  run_ok "ec2 create-nat-gateway" aws ec2 create-nat-gateway "${reg[@]}" --subnet-id "$pub" --allocation-id "$eip" --query NatGateway.NatGatewayId --output text
  nat=$(cat "$out")
  run_ok "ec2 wait nat-gateway-available" aws ec2 wait nat-gateway-available "${reg[@]}" --nat-gateway-ids "$nat"
  run_ok "ec2 describe-nat-gateways" aws ec2 describe-nat-gateways "${reg[@]}" --nat-gateway-ids "$nat" \
    --query 'NatGateways[0].[State,NatGatewayAddresses[0].AllocationId]' --output text
  out_is "  available, with the address" "available	$eip"
  run_ok "ec2 create-route-table" aws ec2 create-route-table "${reg[@]}" --vpc-id "$vpc" --query RouteTable.RouteTableId --output text
  rtb=$(cat "$out")
  run_ok "ec2 create-route (default route through the NAT)" aws ec2 create-route "${reg[@]}" --route-table-id "$rtb" \
    --destination-cidr-block 0.0.0.0/0 --nat-gateway-id "$nat"
  body "route body" ec2.CreateRoute 'b["NatGatewayId"] == nat and b["DestinationCidrBlock"] == "0.0.0.0/0"' nat="$nat"
  run_ok "ec2 associate-route-table" aws ec2 associate-route-table "${reg[@]}" --route-table-id "$rtb" --subnet-id "$priv"
  run_ok "ec2 create-security-group" aws ec2 create-security-group "${reg[@]}" --group-name svc-tasks --description "svc tasks" \
    --vpc-id "$vpc" --query GroupId --output text
  sg=$(cat "$out")
}

# ------------------------------------------------------------------------------------------------
awsrun_checks() { # ECS Express and App Runner, in an account of their own
  local reg=(--region eu-central-1) acct=123456789012 secret_arn vpc priv sg
  # What the services refer to: a secret, a private subnet, a security group.
  printf '%s' 'tok,en"1' >"$work/secret"
  run_ok "secretsmanager create-secret" aws secretsmanager create-secret "${reg[@]}" --name svc/API_TOKEN \
    --secret-string "file://$work/secret" --query ARN --output text
  secret_arn=$(cat "$out")
  vpc=$(aws ec2 create-vpc "${reg[@]}" --cidr-block 10.20.0.0/16 --query Vpc.VpcId --output text)
  priv=$(aws ec2 create-subnet "${reg[@]}" --vpc-id "$vpc" --cidr-block 10.20.1.0/24 --query Subnet.SubnetId --output text)
  sg=$(aws ec2 create-security-group "${reg[@]}" --group-name svc-tasks --description "svc tasks" --vpc-id "$vpc" \
    --query GroupId --output text)

  # ECS Express: the service, its deployments, a one-off task.
  local arn
  cat >"$work/container.json" <<EOF
{"image": "$acct.dkr.ecr.eu-central-1.amazonaws.com/svc:1", "containerPort": 8000,
 "environment": [{"name": "WTL_API_URL", "value": "https://wtl.example/api"},
                 {"name": "WTL_IMSI_REGEXP", "value": "^(00101|00102)\\\\d{10}\$"}],
 "secrets": [{"name": "API_TOKEN", "valueFrom": "$secret_arn"}],
 "awsLogsConfiguration": {"logGroup": "/ecs/svc", "logStreamPrefix": "svc"}}
EOF
  run_ok "ecs create-express-gateway-service" aws ecs create-express-gateway-service "${reg[@]}" --service-name svc \
    --execution-role-arn "arn:aws:iam::$acct:role/svc-task-execution" \
    --infrastructure-role-arn "arn:aws:iam::$acct:role/ecsInfrastructureRoleForExpressServices" \
    --primary-container "file://$work/container.json" --health-check-path /health --cpu 256 --memory 512 \
    --network-configuration "subnets=$priv,securityGroups=$sg" --scaling-target minTaskCount=1,maxTaskCount=1 \
    --query service.serviceArn --output text
  arn=$(cat "$out")
  body "express body: environment" ecs.CreateExpressGatewayService \
    '{e["name"]: e["value"] for e in b["primaryContainer"]["environment"]}
       == {"WTL_API_URL": "https://wtl.example/api", "WTL_IMSI_REGEXP": r"^(00101|00102)\d{10}$"}'
  body "express body: secrets by full ARN" ecs.CreateExpressGatewayService \
    'b["primaryContainer"]["secrets"] == [{"name": "API_TOKEN", "valueFrom": arn}]' arn="$secret_arn"
  body "express body: health check, port, network, scaling" ecs.CreateExpressGatewayService \
    'b["healthCheckPath"] == "/health" and b["primaryContainer"]["containerPort"] == 8000
     and b["networkConfiguration"] == {"subnets": [subnet], "securityGroups": [sg]}
     and b["scalingTarget"] == {"minTaskCount": 1, "maxTaskCount": 1}' subnet="$priv" sg="$sg"
  run_ok "ecs describe-express-gateway-service" aws ecs describe-express-gateway-service "${reg[@]}" --service-arn "$arn" \
    --query '[service.status.statusCode, service.activeConfigurations[0].ingressPaths[0].endpoint]' --output text
  out_has "  ACTIVE, with an ingress endpoint" '^ACTIVE	sv-[0-9a-f]{32}\.ecs\.eu-central-1\.on\.aws$'
  run_ok "ecs describe-service-deployments (current deployment)" deployment_status "$arn"
  out_is "  SUCCESSFUL" SUCCESSFUL
  sed -i 's/svc:1/svc:2/' "$work/container.json"
  run_ok "ecs update-express-gateway-service" aws ecs update-express-gateway-service "${reg[@]}" --service-arn "$arn" \
    --primary-container "file://$work/container.json"
  body "update body: the new image" ecs.UpdateExpressGatewayService 'b["primaryContainer"]["image"].endswith("/svc:2")'
  run_ok "ecs describe-express-gateway-service after the update" aws ecs describe-express-gateway-service "${reg[@]}" --service-arn "$arn" \
    --query 'service.activeConfigurations[0].primaryContainer.image' --output text
  out_has "  runs the new image" '/svc:2$'
  local td task
  td=$(aws ecs describe-service-revisions "${reg[@]}" --service-revision-arns "$(aws ecs describe-express-gateway-service "${reg[@]}" \
    --service-arn "$arn" --query 'service.activeConfigurations[0].serviceRevisionArn' --output text)" --query 'serviceRevisions[0].taskDefinition' --output text)
  run_ok "ecs run-task (the check, with the service's task definition)" aws ecs run-task "${reg[@]}" --cluster default \
    --task-definition "$td" --launch-type FARGATE \
    --network-configuration "awsvpcConfiguration={subnets=[$priv],securityGroups=[$sg],assignPublicIp=DISABLED}" \
    --overrides '{"containerOverrides":[{"name":"Main","command":["check"]}]}' --query 'tasks[0].taskArn' --output text
  task=$(cat "$out")
  run_ok "ecs describe-task-definition" aws ecs describe-task-definition "${reg[@]}" --task-definition "$td" \
    --query 'taskDefinition.containerDefinitions[0].[image,secrets[0].valueFrom]' --output text
  out_is "  the service's image and secret" "$acct.dkr.ecr.eu-central-1.amazonaws.com/svc:2	$secret_arn"
  body "run-task body: the check command" ecs.RunTask 'b["overrides"]["containerOverrides"][0]["command"] == ["check"]'
  run_ok "ecs wait tasks-stopped" aws ecs wait tasks-stopped "${reg[@]}" --cluster default --tasks "$task"
  run_ok "ecs describe-tasks" aws ecs describe-tasks "${reg[@]}" --cluster default --tasks "$task" --query 'tasks[0].containers[0].exitCode'
  out_is "  exit code 0" 0
  touch "$STANDIN_STATE_DIR/check-fails"
  task=$(aws ecs run-task "${reg[@]}" --cluster default --task-definition "$td" --query 'tasks[0].taskArn' --output text)
  run_ok "ecs describe-tasks with check-fails in the state dir" aws ecs describe-tasks "${reg[@]}" --cluster default --tasks "$task" \
    --query 'tasks[0].containers[0].exitCode'
  out_is "  exit code 1" 1
  rm -f "$STANDIN_STATE_DIR/check-fails"
  touch "$STANDIN_STATE_DIR/rollback"
  sed -i 's/svc:2/svc:3/' "$work/container.json"
  run_ok "ecs update-express-gateway-service with rollback in the state dir" aws ecs update-express-gateway-service "${reg[@]}" \
    --service-arn "$arn" --primary-container "file://$work/container.json"
  run_ok "  describe-service-deployments" deployment_status "$arn"
  out_is "  ROLLBACK_SUCCESSFUL" ROLLBACK_SUCCESSFUL
  rm -f "$STANDIN_STATE_DIR/rollback"
  run_ok "ecs delete-express-gateway-service" aws ecs delete-express-gateway-service "${reg[@]}" --service-arn "$arn" \
    --query service.status.statusCode --output text
  out_is "  INACTIVE" INACTIVE

  # App Runner.
  local sc svc_arn
  run_ok "apprunner list-services: none yet" aws apprunner list-services "${reg[@]}" --query "ServiceSummaryList[?ServiceName=='svc-app'].ServiceArn | [0]" --output text
  out_is "  None" None
  run_ok "apprunner list-auto-scaling-configurations: none yet" aws apprunner list-auto-scaling-configurations "${reg[@]}" \
    --auto-scaling-configuration-name svc-0-1-80 --query 'AutoScalingConfigurationSummaryList[0].AutoScalingConfigurationArn' --output text
  out_is "  None" None
  run_ok "apprunner create-auto-scaling-configuration" aws apprunner create-auto-scaling-configuration "${reg[@]}" \
    --auto-scaling-configuration-name svc-0-1-80 --min-size 1 --max-size 1 --max-concurrency 80 \
    --query AutoScalingConfiguration.AutoScalingConfigurationArn --output text
  sc=$(cat "$out")
  run_ok "apprunner list-auto-scaling-configurations after create" aws apprunner list-auto-scaling-configurations "${reg[@]}" \
    --auto-scaling-configuration-name svc-0-1-80 --query 'AutoScalingConfigurationSummaryList[0].AutoScalingConfigurationArn' --output text
  out_is "  finds it" "$sc"
  run_fails "apprunner create-auto-scaling-configuration: a 33-character name is refused" aws apprunner create-auto-scaling-configuration \
    "${reg[@]}" --auto-scaling-configuration-name nsps-wtl-connector-0-10-1000-abcd --max-size 1
  err_has "  with the real service's message" 'ValidationException.*less than or equal to 32'
  run_fails "apprunner create-auto-scaling-configuration: a name starting with _ is refused" aws apprunner create-auto-scaling-configuration \
    "${reg[@]}" --auto-scaling-configuration-name=_svc-scaling --max-size 1
  cat >"$work/source.json" <<EOF
{"ImageRepository": {"ImageIdentifier": "$acct.dkr.ecr.eu-central-1.amazonaws.com/svc:1", "ImageRepositoryType": "ECR",
  "ImageConfiguration": {"Port": "8000", "RuntimeEnvironmentVariables": {"WTL_API_URL": "https://wtl.example/api"},
                         "RuntimeEnvironmentSecrets": {"API_TOKEN": "$secret_arn"}}},
 "AuthenticationConfiguration": {"AccessRoleArn": "arn:aws:iam::$acct:role/AppRunnerECRAccessRole"},
 "AutoDeploymentsEnabled": false}
EOF
  run_fails "apprunner create-service: a 41-character name is refused" aws apprunner create-service "${reg[@]}" \
    --service-name "$(printf 's%.0s' {1..41})" --source-configuration "file://$work/source.json"
  err_has "  with the real service's message" 'ValidationException.*less than or equal to 40'
  run_ok "apprunner create-vpc-connector" aws apprunner create-vpc-connector "${reg[@]}" --vpc-connector-name svc-app-egress \
    --subnets "$priv" --security-groups "$sg" --query VpcConnector.VpcConnectorArn --output text
  local connector
  connector=$(cat "$out")
  body "connector body" apprunner.CreateVpcConnector 'b["Subnets"] == [subnet] and b["SecurityGroups"] == [sg]' \
    subnet="$priv" sg="$sg"
  run_ok "apprunner create-service" aws apprunner create-service "${reg[@]}" --service-name svc-app \
    --source-configuration "file://$work/source.json" --auto-scaling-configuration-arn "$sc" \
    --instance-configuration Cpu=1024,Memory=2048 --health-check-configuration Protocol=HTTP,Path=/health \
    --network-configuration "EgressConfiguration={EgressType=VPC,VpcConnectorArn=$connector}" \
    --query Service.ServiceArn --output text
  svc_arn=$(cat "$out")
  body "service body: image, env, secret ARN, health check" apprunner.CreateService \
    'b["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]["RuntimeEnvironmentSecrets"] == {"API_TOKEN": arn}
     and b["HealthCheckConfiguration"] == {"Protocol": "HTTP", "Path": "/health"} and b["AutoScalingConfigurationArn"] == sc' \
    arn="$secret_arn" sc="$sc"
  run_ok "apprunner describe-service" aws apprunner describe-service "${reg[@]}" --service-arn "$svc_arn" \
    --query '[Service.Status,Service.ServiceUrl]' --output text
  out_has "  RUNNING, with a URL" '^RUNNING	[a-z0-9]+\.eu-central-1\.awsapprunner\.com$'
  sed -i 's/svc:1/svc:2/' "$work/source.json"
  run_ok "apprunner update-service" aws apprunner update-service "${reg[@]}" --service-arn "$svc_arn" \
    --source-configuration "file://$work/source.json"
  run_ok "apprunner list-operations" aws apprunner list-operations "${reg[@]}" --service-arn "$svc_arn" --max-results 1 \
    --query 'OperationSummaryList[0].[Type,Status]' --output text
  out_is "  the update SUCCEEDED" "UPDATE_SERVICE	SUCCEEDED"
  touch "$STANDIN_STATE_DIR/rollback"
  sed -i 's/svc:2/svc:3/' "$work/source.json"
  run_ok "apprunner update-service with rollback in the state dir" aws apprunner update-service "${reg[@]}" \
    --service-arn "$svc_arn" --source-configuration "file://$work/source.json"
  run_ok "apprunner list-operations" aws apprunner list-operations "${reg[@]}" --service-arn "$svc_arn" --max-results 1 \
    --query 'OperationSummaryList[0].Status' --output text
  out_is "  ROLLBACK_SUCCEEDED" ROLLBACK_SUCCEEDED
  run_ok "apprunner describe-service after the rollback" aws apprunner describe-service "${reg[@]}" --service-arn "$svc_arn" \
    --query 'Service.SourceConfiguration.ImageRepository.ImageIdentifier' --output text
  out_has "  the previous image stays" '/svc:2$'
  rm -f "$STANDIN_STATE_DIR/rollback"
  run_ok "apprunner list-services after create" aws apprunner list-services "${reg[@]}" \
    --query "ServiceSummaryList[?ServiceName=='svc-app'].ServiceArn | [0]" --output text
  out_is "  finds it" "$svc_arn"
}

# section NAME CHECKS: runs the checks in a subshell with a stand-in of its own (so its switch
# files are its own too) and leaves its lines in $work/NAME.log and its counts in $work/NAME.counts.
section() {
  local name=$1 checks=$2
  (
    passed=0 failed=0 SECONDS=0
    out="$work/$name.out" err="$work/$name.err"
    # shellcheck source=env.sh
    if ! source "$here/env.sh" "$work/$name"; then bad "the stand-in starts"; echo "$passed $failed" >"$work/$name.counts"; exit; fi
    trap standin_stop EXIT
    ok "the stand-in answers on 127.0.0.1:$STANDIN_PORT"
    "$checks"
    if [ -z "$(standin_calls ' UNHANDLED ')" ]; then ok "every request had a handler"; else
      bad "requests without a handler:"; standin_calls ' UNHANDLED '; fi
    if [ -s "$STANDIN_STATE_DIR/cloud.log" ]; then bad "the stand-in logged errors: $(head -c 2000 "$STANDIN_STATE_DIR/cloud.log")"
    else ok "the stand-in logged no error"; fi
    echo "$passed $failed $SECONDS" >"$work/$name.counts"
  ) >"$work/$name.log" 2>&1
}

sections=()
case "$only" in
  all) wanted=(gcp cloudrun aws awsrun) ;;
  gcp) wanted=(gcp cloudrun) ;;
  aws) wanted=(aws awsrun) ;;
  *) wanted=("$only") ;;
esac
for name in "${wanted[@]}"; do
  case "$name" in
    gcp | cloudrun)
      if command -v gcloud >/dev/null 2>&1; then sections+=("$name")
      else bad "gcloud is not installed: the $name checks did not run"; fi ;;
    aws | awsrun)
      if command -v aws >/dev/null 2>&1 || declare -F aws >/dev/null; then sections+=("$name")
      else bad "aws is not installed (pip install awscli failed): the $name checks did not run"; fi ;;
    *) bad "no such section: $name (gcp, cloudrun, aws, awsrun)" ;;
  esac
done
run_section() { section "$1" "$1_checks"; }
side_by_side section run_section "${sections[@]}"

if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "(the stand-ins' records and state are kept in $work)"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
