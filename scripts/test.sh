#!/usr/bin/env bash
# Runs the whole test suite: starts the PostgreSQL the store tests need
# (installing Debian's postgresql if missing), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source .ci/postgres.sh
export LIFTOFF_TEST_POSTGRES_URL
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@"
fi
