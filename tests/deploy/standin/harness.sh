# What real-cli.sh and selftest.sh share: the pass and fail counters, and running their parts
# side by side. Sourced by both.
# shellcheck shell=bash

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# side_by_side KIND RUNNER NAME...: runs `RUNNER NAME` for every NAME at once (each CLI call is
# mostly the CLI's own start-up), each leaving its lines in $work/NAME.log and "passed failed
# seconds" in $work/NAME.counts; then prints each one's lines and adds its counts to ours. A
# part that left no counts stopped before its end, which fails.
side_by_side() {
  local kind=$1 runner=$2 name p f took pids=()
  local work=${work:?the sourcing script sets work, its working folder}
  shift 2
  for name in "$@"; do
    "$runner" "$name" &
    pids+=($!)
  done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null
  for name in "$@"; do
    if [ -f "$work/$name.counts" ]; then
      read -r p f took <"$work/$name.counts"
      echo "# $name: $p passed, $f failed in ${took:-0}s"
      cat "$work/$name.log"
      passed=$((passed + p)) failed=$((failed + f))
    else
      echo "# $name"
      cat "$work/$name.log"
      bad "the $name $kind stopped before its end"
    fi
  done
}
