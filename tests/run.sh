#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests start or call when it is
# missing (Debian's redis-server for the shared-memory tests, openssl for the TLS key-format
# tests), then runs `cargo test --locked` (extra arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the tests need: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
exec cargo test --locked "$@"
