#!/usr/bin/env bash
# Supply-chain checks with cargo-deny, under the policy in deny.toml: advisories (offline, against
# the RustSec snapshot in ../shared/advisory-db), licenses, bans and sources. Then proves that the
# advisories check can fail: a throw-away copy of the workspace whose Cargo.lock pins a vulnerable
# `time` must be refused with its advisory's id. The repository's Cargo.lock is never changed.
# Installs cargo-deny only when it is missing (it compiles for a few minutes).
# Network: crates.io only (`cargo fetch`, and the index if the downgrade is not in its cache).
#   bash tests/supply-chain/run.sh
#   ADVISORY_DB_SNAPSHOT=/path/to/advisory-db bash tests/supply-chain/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TERM_COLOR=never

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# A known vulnerability of the snapshot, and a version it affects (fixed in time 0.3.47).
vuln_id="RUSTSEC-2026-0009"
vuln_crate="time"
vuln_version="0.3.45"

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "cargo-deny is missing: installing it (once)"
  cargo install --locked cargo-deny
fi
cargo deny --version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lock_before=$(sha256sum Cargo.lock)

# ---- the advisory database -----------------------------------------------------------------
# cargo-deny reads a database from <db-path>/<folder named after its URL>/crates and, offline,
# takes the modification time of .git/FETCH_HEAD as the database's date (refused when older than
# deny.toml's maximum-db-staleness). The snapshot is a read-only plain folder, so a small folder
# under target/ points at it, dated by the snapshot's newest advisory.
snapshot="${ADVISORY_DB_SNAPSHOT:-../shared/advisory-db}"
db_root="$root/target/supply-chain/advisory-dbs"
# The folder cargo-deny derives from https://github.com/RustSec/advisory-db (deny.toml's db-urls).
# If a new cargo-deny names it differently, `cargo deny -L debug check advisories` shows the name.
db_dir="$db_root/advisory-db-3157b0e258782691"
if [ -d "$snapshot/crates" ]; then
  snapshot=$(cd "$snapshot" && pwd -P)
  newest=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$snapshot/crates" | cut -d'"' -f2 | sort | tail -1)
  count=$(find "$snapshot/crates" -name 'RUSTSEC-*.md' | wc -l)
  rm -rf "$db_dir"
  mkdir -p "$db_dir/.git"
  ln -s "$snapshot/crates" "$db_dir/crates"
  touch -d "${newest}T00:00:00Z" "$db_dir/.git/FETCH_HEAD"
  age=$((($(date -u +%s) - $(date -u -d "$newest" +%s)) / 86400))
  ok "advisory snapshot $snapshot: $count advisories, the newest of $newest ($age days old)"
else
  bad "advisory snapshot: no $snapshot/crates (the RustSec database, beside the repository)"
  finish || exit 1
fi
export ADVISORY_DB_ROOT="$db_root"

# ---- the repository's dependency tree --------------------------------------------------------
# --frozen: no network, so the database is not fetched either; cargo fetch first puts every crate
# of the lock file (all targets) in cargo's cache, which cargo-deny's `cargo metadata` reads.
if ! cargo fetch --locked --quiet; then
  bad "cargo fetch --locked (Cargo.lock does not match Cargo.toml, or crates.io is unreachable)"
  finish || exit 1
fi
log="$work/deny.log"
set +e
cargo deny --frozen --color never check advisories bans licenses sources >"$log" 2>&1
rc=$?
set -e
# Its last line says, e.g., "advisories FAILED, bans ok, licenses ok, sources ok".
summary=$(grep -E '^advisories (ok|FAILED)' "$log" | tail -1 || true)
failed_before=$failed
for check in advisories bans licenses sources; do
  if grep -qE "(^|, )$check ok(,|$)" <<<"$summary"; then
    ok "cargo deny check $check"
  else
    bad "cargo deny check $check"
  fi
done
if [ "$rc" -ne 0 ] && [ "$failed" -eq "$failed_before" ]; then bad "cargo deny exited with $rc"; fi
if [ "$failed" -ne "$failed_before" ]; then
  cat "$log"
else
  # Warnings (duplicate versions, unused allowed licenses) do not fail: their headlines only.
  grep -E '^warning\[' "$log" | sed 's/^/     /' || true
fi

# ---- the check fails on a vulnerable lock file -----------------------------------------------
# A copy of the manifests with stub sources is enough for `cargo metadata`.
copy="$work/vulnerable"
mkdir -p "$copy/src"
cp Cargo.toml Cargo.lock "$copy/"
echo 'fn main() {}' >"$copy/src/main.rs"
: >"$copy/src/lib.rs"
pin=(--manifest-path "$copy/Cargo.toml" -p "$vuln_crate" --precise "$vuln_version")
vlog="$work/deny-vulnerable.log"
set +e
{ cargo update --offline --quiet "${pin[@]}" 2>/dev/null || cargo update --quiet "${pin[@]}"; } >"$vlog" 2>&1 \
  && cargo fetch --locked --quiet --manifest-path "$copy/Cargo.toml" >>"$vlog" 2>&1 \
  && cargo deny --frozen --color never --manifest-path "$copy/Cargo.toml" --config "$root/deny.toml" \
    check --hide-inclusion-graph advisories >>"$vlog" 2>&1
vrc=$?
set -e
if [ "$vrc" -ne 0 ] && grep -q "ID: $vuln_id" "$vlog" && grep -q "$vuln_crate $vuln_version " "$vlog" \
  && grep -qx 'advisories FAILED' "$vlog"; then
  ok "a lock file with $vuln_crate $vuln_version is refused ($vuln_id)"
else
  bad "a lock file with $vuln_crate $vuln_version is refused ($vuln_id): exit $vrc"
  cat "$vlog"
fi

if [ "$(sha256sum Cargo.lock)" = "$lock_before" ]; then
  ok "Cargo.lock unchanged"
else
  bad "Cargo.lock unchanged"
fi
finish
