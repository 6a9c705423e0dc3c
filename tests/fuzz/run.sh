#!/usr/bin/env bash
# Fuzzes the parse-and-plan path with libFuzzer (cargo fuzz). CI runs a short smoke run;
# for a long run: FUZZ_SECONDS=3600 bash tests/fuzz/run.sh  (findings land in tests/fuzz/artifacts/).
# cargo fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP lets the stable toolchain accept
# them for this build only.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
seconds="${FUZZ_SECONDS:-20}"
# A private copy of the seed corpus, so a run never adds files to the repository's folder.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp corpus/parse_and_plan/*.json "$work/"
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir . parse_and_plan "$work" -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 | tail -15
