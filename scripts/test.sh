#!/usr/bin/env bash
# Runs the whole test suite: starts the PostgreSQL the store tests need
# (installing Debian's postgresql if missing), the S3 and Azure Blob
# emulators (moto and azurite, from PyPI and npm), the Docker engine, the
# local registries (htpasswd, token auth, cloud logins), a Python base
# image for real builds (from Debian packages), Prometheus and promtool
# (unpacked from Debian's package), chromium and chromedriver for the web
# UI's browser tests, then every test, then the Python client's
# (scripts/test-python.sh: a wheel in a virtualenv, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source .ci/base.sh
# shellcheck source=/dev/null
source .ci/postgres.sh
export LIFTOFF_TEST_POSTGRES_URL
# shellcheck source=/dev/null
source .ci/emulators.sh
# shellcheck source=/dev/null
source .ci/docker.sh
# shellcheck source=/dev/null
source .ci/token-registry.sh
# shellcheck source=/dev/null
source .ci/python-base.sh
# shellcheck source=/dev/null
source .ci/debian-base.sh
# shellcheck source=/dev/null
source .ci/prometheus.sh
# shellcheck source=/dev/null
source .ci/kubectl.sh
# shellcheck source=/dev/null
source .ci/browser.sh
# shellcheck source=/dev/null
source .ci/schemathesis.sh
# Every test that skips for a missing component records why in this file
# (liftoff_testkit::skip); under CI a skip fails the test instead.
LIFTOFF_TEST_SKIP_LOG="$(mktemp -t liftoff-skips.XXXXXX)"
export LIFTOFF_TEST_SKIP_LOG
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
# The Python client (python/): its wheel, type check and tests against the
# binary just built.
python_status=0
scripts/test-python.sh || python_status=$?
if [ "$status" -eq 0 ]; then status=$python_status; fi
skipped="$(sort -u "$LIFTOFF_TEST_SKIP_LOG" | grep -c . || true)"
{
  echo "== tests that skipped for a missing component: $skipped"
  sort -u "$LIFTOFF_TEST_SKIP_LOG" | sed 's/\t/: /; s/^/   /'
} >&2
rm -f "$LIFTOFF_TEST_SKIP_LOG"
exit "$status"
