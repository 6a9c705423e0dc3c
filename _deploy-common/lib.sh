# shellcheck shell=bash
# What both deploy scripts share: reading the env file, the connector's own list of the variables
# it reads, printing and running cloud commands, retrying through IAM's propagation delay, and
# the smoke test. Sourced by _gcp-deploy/deploy.sh and _aws-deploy/deploy.sh, which set
# `dry_run` and `yes` (true/false) and `workdir` (a private temporary folder) before using it.
# shellcheck disable=SC2154

common_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Values from the env file fill in what the environment does not already set. Quotes around a
# whole value are removed; nothing is evaluated (a value may hold `$`, backslashes, quotes).
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

# load_settings ENV_FILE ROOT: --env-file when given, else ROOT/.env when present.
load_settings() {
  local env_file=$1 root=$2
  if [ -n "$env_file" ]; then
    [ -f "$env_file" ] || { echo "error: env file $env_file not found" >&2; exit 2; }
    load_env_file "$env_file"
  elif [ -f "$root/.env" ]; then
    load_env_file "$root/.env"
  fi
  read_secret_files
}

# The variables the connector reads, with their kind (secret, pem-file, setting): the output of
# `nsps-wtl-connector variables`, kept in variables.txt (a test of the connector fails when the
# two differ). Variables of kind `platform` (PORT, K_SERVICE) are never passed.
# The `_FILE` form of a secret (kind secret-file) names a file on the deploying machine: its
# content becomes the secret's value (see read_secret_files), the path itself is never passed.
CONNECTOR_VARS=() SECRET_VARS=() PEM_VARS=() SECRET_FILE_VARS=()
while read -r name kind; do
  # PORT, K_SERVICE: the platform sets them (Cloud Run refuses them from a deploy).
  if [ -z "$name" ] || [ "$kind" = platform ]; then continue; fi
  case "$kind" in
    secret) SECRET_VARS+=("$name") ;;
    pem-file) PEM_VARS+=("$name") ;;
    secret-file) SECRET_FILE_VARS+=("$name"); continue ;;
  esac
  CONNECTOR_VARS+=("$name")
done <"$common_dir/variables.txt"

# API_TOKEN_FILE=./token (and the other _FILE forms) in the env file: the value is read from that
# file here, as if API_TOKEN had been set; both at once is refused, as the connector refuses it.
read_secret_files() {
  local file_var var
  for file_var in "${SECRET_FILE_VARS[@]}"; do
    [ -n "${!file_var:-}" ] || continue
    var=${file_var%_FILE}
    if [ -n "${!var:-}" ]; then echo "error: set either $var or $file_var, not both" >&2; exit 2; fi
    [ -r "${!file_var}" ] || { echo "error: $file_var: ${!file_var} cannot be read" >&2; exit 2; }
    printf -v "$var" '%s' "$(cat "${!file_var}")"
    export "${var?}"
  done
}

in_list() { # in_list WORD LIST...
  local word=$1 item; shift
  for item in "$@"; do [ "$item" = "$word" ] && return 0; done
  return 1
}
# A PEM file setting may carry the PEM itself (platforms without file mounts); such a value is
# a secret when it holds a private key.
is_inline_pem() { [[ ${!1:-} == *"-----BEGIN"* ]]; }
holds_secret() { # holds_secret NAME
  in_list "$1" "${SECRET_VARS[@]}" && return 0
  in_list "$1" "${PEM_VARS[@]}" && is_inline_pem "$1" && [[ ${!1} == *"PRIVATE KEY-----"* ]]
}

# The connector's variables that are set, split in two: SET_PLAIN (passed as plain settings) and
# SET_SECRET (kept in the secret store with --secrets). Without --secrets everything is plain.
split_settings() { # split_settings USE_SECRET_STORE
  local use_store=$1 name
  SET_PLAIN=() SET_SECRET=()
  for name in "${CONNECTOR_VARS[@]}"; do
    [ -n "${!name:-}" ] || continue
    if $use_store && holds_secret "$name"; then SET_SECRET+=("$name"); else SET_PLAIN+=("$name"); fi
  done
}

# Prints a command on stderr, quoted as a shell would need it, then runs it (not with --dry-run).
# Secret values never appear on a command line (they travel through stdin or private files), so
# the printed command is the real one.
run() {
  echo "+$(printf ' %q' "$@")" >&2
  $dry_run || "$@"
}
# run_out PLACEHOLDER COMMAND...: like run, for a command whose output the script needs (an id
# the cloud assigns); the command is printed on stderr, and --dry-run prints PLACEHOLDER instead.
run_out() {
  local placeholder=$1; shift
  echo "+$(printf ' %q' "$@")" >&2
  if $dry_run; then echo "$placeholder"; else "$@"; fi
}
# A read-only look-up whose answer the script needs. It runs even with --dry-run, so the plan a
# dry run prints is the one a real run would follow; its errors go to the caller.
query() {
  $dry_run && echo "? $*" >&2
  "$@"
}

# look_up DESCRIBE-COMMAND...: prints what the look-up finds; false when the cloud says it is not
# there (its error matches `not_found`, which each script sets); any other failure (credentials,
# a wrong project or region, the API down) stops the run with its error, never read as "not
# there". Inside $(...) it stops that subshell with status 3, which callers pass on.
look_up() {
  local err="$workdir/look-up.err"
  if query "$@" 2>"$err"; then return 0; fi
  if grep -qiE "$not_found" "$err"; then return 1; fi
  cat "$err" >&2
  exit 3
}

# joined SEPARATOR ITEM...: the items with SEPARATOR between them.
joined() {
  local sep=$1 out=${2:-} item
  shift $(($# > 1 ? 2 : 1))
  for item in "$@"; do out+=$sep$item; done
  echo "$out"
}

# report_removal: what a --destroy did, from its arrays `deleted` and `kept`: a line each (no
# "deleted:" line when nothing was).
report_removal() {
  [ ${#deleted[@]} -eq 0 ] || echo "deleted: $(joined '; ' "${deleted[@]}")"
  echo "kept: $(joined '; ' "${kept[@]}")"
}

# with_retry WHAT PATTERN DELAYS COMMAND...: runs COMMAND, retrying while its error matches
# PATTERN (grep -E, case-insensitive): something the script just made is not usable yet. DELAYS:
# the waits in seconds between attempts. Other failures are not retried, but one whose error
# matches `done_if` (when the caller sets it: a resource something else removed meanwhile) counts
# as done. The command's output goes to stdout; its errors to stderr.
with_retry() {
  local what=$1 pattern=$2 delays=() attempt=0 err="$workdir/retry.err"
  read -ra delays <<<"$3"
  shift 3
  echo "+$(printf ' %q' "$@")" >&2
  $dry_run && return 0
  while :; do
    if "$@" 2>"$err"; then return 0; fi
    if [ -n "${done_if:-}" ] && grep -qiE "$done_if" "$err"; then
      echo "  (already gone: $(head -c 200 "$err" | tr '\n' ' '))" >&2
      return 0
    fi
    if ! grep -qiE "$pattern" "$err" || [ "$attempt" -ge "${#delays[@]}" ]; then
      cat "$err" >&2
      return 1
    fi
    echo "  (waiting ${delays[$attempt]}s for $what: $(head -c 200 "$err" | tr '\n' ' '))" >&2
    sleep "${delays[$attempt]}"
    attempt=$((attempt + 1))
  done
}

# Runs a command, retrying while IAM has not yet propagated a change the script just made (a new
# role or service account that cannot yet be assumed or found, a permission not yet effective).
# IAM_RETRY_DELAYS: the waits in seconds between attempts (bounded; default about 3 minutes).
with_iam_retry() {
  with_retry "IAM to propagate" \
    'propagat|does not exist|cannot be assumed|not authorized to perform|AccessDenied|Permission denied|PERMISSION_DENIED|InvalidParameterException.*role|not found.*service account|service account.*not found' \
    "${IAM_RETRY_DELAYS:-5 10 20 30 45 60}" "$@"
}

confirm() {
  $yes && return 0
  if [ ! -t 0 ]; then echo "error: $1: pass --yes to confirm without a terminal" >&2; exit 2; fi
  local answer
  read -r -p "$1 [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || { echo "cancelled"; exit 1; }
}

# A short stable hash of its arguments (for names that must fit a length limit).
short_hash() { printf '%s' "$*" | sha256sum | cut -c1-8; }

# smoke_test URL: GET /health must answer 200 and one authenticated event that touches no
# subscriber (Account/Unblocked) must answer 202.
smoke_test() {
  local url=$1 status body
  echo "smoke test: $url"
  if $dry_run; then
    echo "+ curl $url/health" >&2
    echo "+ curl -X POST $url/process-event -H 'Authorization: Bearer ***' (Account/Unblocked event)" >&2
    return 0
  fi
  status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 "$url/health" || true)
  [ "$status" = 200 ] || { echo "error: smoke test: GET $url/health answered ${status:-nothing}" >&2; return 1; }
  body="{\"event_id\":\"smoke-$(date +%s)\",\"data\":{\"event_type\":\"Account/Unblocked\"}}"
  # The token goes in a private header file, so it never shows on a command line (ps).
  (umask 077; printf 'Authorization: Bearer %s\n' "${API_TOKEN%%,*}" >"$workdir/auth-header")
  status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -X POST "$url/process-event" \
    -H @"$workdir/auth-header" -H 'Content-Type: application/json' -d "$body" || true)
  [ "$status" = 202 ] || { echo "error: smoke test: the authenticated event answered ${status:-nothing} (expected 202)" >&2; return 1; }
  echo "smoke test passed: /health 200, authenticated event 202"
}

# A value written to a private file (for a CLI that reads it with file://), never to argv.
private_file() { # private_file NAME VALUE
  (umask 077; printf '%s' "$2" >"$workdir/$1")
  echo "$workdir/$1"
}

# ---- monitoring (--monitoring) ----------------------------------------------------------------

# The definitions of what is monitored (monitoring/log-metrics.json) become each cloud's bodies
# here, so both scripts create the same metrics, dashboards and alerts.
monitoring_py() { python3 "$common_dir/monitoring.py" "$@"; }

# NO_EVENTS_ALERT_MINUTES (default 60) must be 2 to 1440: Cloud Monitoring's absence condition
# needs at least two minutes and a CloudWatch alarm looks back one day at most. ALERT_EMAIL is
# optional. Prints each problem; returns non-zero when there is one.
check_monitoring_settings() {
  local problems=0 minutes=${NO_EVENTS_ALERT_MINUTES:-60}
  if [[ ! $minutes =~ ^[0-9]{1,4}$ ]] || [ "$minutes" -lt 2 ] || [ "$minutes" -gt 1440 ]; then
    echo "error: NO_EVENTS_ALERT_MINUTES must be a number of minutes from 2 to 1440" >&2; problems=1
  fi
  if [ -n "${ALERT_EMAIL:-}" ] && [[ ! $ALERT_EMAIL =~ ^[^[:space:]@,]+@[^[:space:]@,]+\.[^[:space:]@,]+$ ]]; then
    echo "error: ALERT_EMAIL must be one e-mail address" >&2; problems=1
  fi
  return "$problems"
}
