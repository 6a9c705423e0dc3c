# Starts the cloud stand-in (cloud.py) and points the real gcloud and aws at it.
# Source it from bash:
#
#   source tests/deploy/standin/env.sh [STATE_DIR [RECORD_FILE]]
#
# STATE_DIR   switch files (check-fails, rollback, build-fails, images, logs: see cloud.py),
#             the CLIs' private configuration, cloud.log and state.json; default:
#             $STANDIN_STATE_DIR, else a new temporary directory
# RECORD_FILE one JSON line per request; default: $STANDIN_RECORD, else STATE_DIR/calls.jsonl
# (bash hands a sourced file the caller's own arguments when it is given none: from a script
# or function that has arguments, pass both, "" for a default)
#
# It exports
#   STANDIN_PORT STANDIN_PID STANDIN_URL (http://127.0.0.1:PORT) STANDIN_STATE_DIR STANDIN_RECORD
#   for gcloud: CLOUDSDK_CONFIG (STATE_DIR/gcloud-config) CLOUDSDK_AUTH_ACCESS_TOKEN=fake
#     CLOUDSDK_CORE_PROJECT (kept if set, else standin-project) CLOUDSDK_CORE_DISABLE_PROMPTS=1
#     CLOUDSDK_CORE_DISABLE_USAGE_REPORTING CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK
#     CLOUDSDK_SURVEY_DISABLE_PROMPTS CLOUDSDK_CORE_CHECK_GCE_METADATA=false
#     CLOUDSDK_API_ENDPOINT_OVERRIDES_{RUN,SERVICEUSAGE,ARTIFACTREGISTRY,SECRETMANAGER,IAM,
#       CLOUDRESOURCEMANAGER,CLOUDBUILD,LOGGING,MONITORING}=STANDIN_URL/<api>/
#     CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=STANDIN_URL/compute/v1/
#     CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=STANDIN_URL/storage/v1/
#     CLOUDSDK_PROXY_TYPE=http CLOUDSDK_PROXY_ADDRESS=127.0.0.1 CLOUDSDK_PROXY_PORT=STANDIN_PORT
#   for aws: AWS_ENDPOINT_URL=STANDIN_URL AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
#     AWS_DEFAULT_REGION (kept if set, else eu-central-1) AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
#     (files in STATE_DIR that do not exist) AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=2
#     AWS_RETRY_MODE=standard AWS_PAGER=
# and unsets what would point the CLIs elsewhere (GOOGLE_APPLICATION_CREDENTIALS,
# CLOUDSDK_CORE_ACCOUNT, AWS_PROFILE, AWS_SESSION_TOKEN, ...). It defines
#   standin_stop            stop the stand-in (the exported variables stay as they are); it
#                           also stops by itself once the shell that sourced this file ends
#   standin_calls [-j] [RE] print the recorded calls whose summary line
#                           "STATUS SERVICE OP METHOD PATH BODY" matches the regex RE (all
#                           calls without RE); -j prints the full JSON records instead
#   standin_unhandled       print the requests the stand-in had no handler for
# shellcheck shell=bash

_standin_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STANDIN_STATE_DIR=${1:-${STANDIN_STATE_DIR:-$(mktemp -d)}}
mkdir -p "$STANDIN_STATE_DIR"
STANDIN_STATE_DIR=$(cd "$STANDIN_STATE_DIR" && pwd)
STANDIN_RECORD=${2:-${STANDIN_RECORD:-$STANDIN_STATE_DIR/calls.jsonl}}
: >>"$STANDIN_RECORD"
export STANDIN_STATE_DIR STANDIN_RECORD

# The port comes back on the server's first line of output; a FIFO lets the server go on
# running with stdout closed after that line is read.
_standin_fifo="$STANDIN_STATE_DIR/.port.$$"
rm -f "$_standin_fifo"
mkfifo "$_standin_fifo"
# --parent-pid: the server ends by itself once the shell that sourced this file has ended
# (read here: in the background command, $BASHPID would be the server's own).
_standin_shell=$BASHPID
python3 "$_standin_here/cloud.py" --port 0 --record "$STANDIN_RECORD" --state-dir "$STANDIN_STATE_DIR" \
  --parent-pid "$_standin_shell" >"$_standin_fifo" 2>>"$STANDIN_STATE_DIR/cloud.log" &
STANDIN_PID=$!
STANDIN_PORT=""
if ! read -r -t 15 STANDIN_PORT <"$_standin_fifo" || [ -z "$STANDIN_PORT" ]; then
  echo "env.sh: the cloud stand-in did not start (see $STANDIN_STATE_DIR/cloud.log)" >&2
  kill "$STANDIN_PID" 2>/dev/null || true
  rm -f "$_standin_fifo"
  # shellcheck disable=SC2317  # exit only when run instead of sourced
  return 1 2>/dev/null || exit 1
fi
rm -f "$_standin_fifo"
STANDIN_URL="http://127.0.0.1:$STANDIN_PORT"
export STANDIN_PID STANDIN_PORT STANDIN_URL

# ---- gcloud ----
# A private configuration directory: no account, no cached credentials, no prompts; the
# access token is taken as given and never refreshed.
export CLOUDSDK_CONFIG="$STANDIN_STATE_DIR/gcloud-config"
mkdir -p "$CLOUDSDK_CONFIG"
export CLOUDSDK_AUTH_ACCESS_TOKEN=fake
export CLOUDSDK_CORE_PROJECT=${CLOUDSDK_CORE_PROJECT:-standin-project}
export CLOUDSDK_CORE_DISABLE_PROMPTS=1
export CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true
export CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true
export CLOUDSDK_SURVEY_DISABLE_PROMPTS=true
export CLOUDSDK_CORE_CHECK_GCE_METADATA=false
# Each API at http://127.0.0.1:PORT/<api>/ (compute's and storage's paths carry no version, so
# their bases do).
for _standin_api in RUN SERVICEUSAGE ARTIFACTREGISTRY SECRETMANAGER IAM CLOUDRESOURCEMANAGER CLOUDBUILD LOGGING MONITORING; do
  _standin_lower=$(printf '%s' "$_standin_api" | tr '[:upper:]' '[:lower:]')
  export "CLOUDSDK_API_ENDPOINT_OVERRIDES_$_standin_api=$STANDIN_URL/$_standin_lower/"
done
export CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE="$STANDIN_URL/compute/v1/"
export CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE="$STANDIN_URL/storage/v1/"  # `gcloud builds submit` uploads there
# `gcloud run` turns the RUN override into a regional host, http://REGION-127.0.0.1:PORT/run/,
# which resolves nowhere: with the stand-in as gcloud's HTTP proxy those requests reach it
# anyway, in absolute form, region included. Any API left un-overridden arrives as a CONNECT,
# which the stand-in refuses and records, so nothing leaves the machine.
export CLOUDSDK_PROXY_TYPE=http CLOUDSDK_PROXY_ADDRESS=127.0.0.1 CLOUDSDK_PROXY_PORT="$STANDIN_PORT"
unset CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE GOOGLE_APPLICATION_CREDENTIALS CLOUDSDK_CORE_ACCOUNT _standin_api _standin_lower \
  _standin_shell

# ---- aws ----
export AWS_ENDPOINT_URL="$STANDIN_URL"
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-eu-central-1}
# Nothing from the user's ~/.aws, no instance metadata look-ups, one retry at most (a 5xx only).
export AWS_CONFIG_FILE="$STANDIN_STATE_DIR/aws-config" AWS_SHARED_CREDENTIALS_FILE="$STANDIN_STATE_DIR/aws-credentials"
export AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=2 AWS_RETRY_MODE=standard AWS_PAGER=""
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_DEFAULT_PROFILE

standin_stop() {
  if [ -n "${STANDIN_PID:-}" ]; then
    kill "$STANDIN_PID" 2>/dev/null || true
    wait "$STANDIN_PID" 2>/dev/null || true  # its status is that of the signal: no failure here
    STANDIN_PID=""
  fi
  return 0
}

standin_calls() {
  local json=()
  if [ "${1:-}" = -j ]; then json=(--json); shift; fi
  python3 "$_standin_here/cloud.py" --show "$STANDIN_RECORD" --filter "${1:-}" "${json[@]}"
}

standin_unhandled() {
  standin_calls ' UNHANDLED '
}
