#!/usr/bin/env bash
# Installs schemathesis (PyPI) into a venv outside the clone, for the API
# contract test (crates/liftoff-server/tests/it/api_contract.rs), which runs it against
# a live `liftoff server`. The version is pinned: a new release may add checks,
# and a contract test that changes under us is not a test.
# Usage: source .ci/schemathesis.sh   (exports LIFTOFF_TEST_SCHEMATHESIS)
set -euo pipefail
ST_VERSION=4.32.5
# hypothesis after 6.131 describes lambdas by parsing module sources, which
# trips CPython 3.11's "AST constructor recursion depth mismatch" bug
# (Debian's 3.11.2 has it) and ends operations with a runtime error.
HYPOTHESIS_VERSION=6.131.0
ST_ROOT="${ST_ROOT:-/tmp/liftoff-ci-schemathesis}"
# grep reads all of pip's output (no -q): with pipefail, a grep that quits
# at the first match can kill pip with SIGPIPE, which made the check fail
# and reinstall (rm -rf of a venv that another run may be using) each time.
if [ ! -x "$ST_ROOT/$ST_VERSION/bin/st" ] || ! "$ST_ROOT/$ST_VERSION/bin/pip" show hypothesis 2>/dev/null | grep -x "Version: $HYPOTHESIS_VERSION" >/dev/null; then
  echo "ci: installing schemathesis $ST_VERSION (pip)" >&2
  rm -rf "$ST_ROOT/$ST_VERSION"
  python3 -m venv "$ST_ROOT/$ST_VERSION"
  "$ST_ROOT/$ST_VERSION/bin/pip" install -q "schemathesis==$ST_VERSION" "hypothesis==$HYPOTHESIS_VERSION" >&2
fi
LIFTOFF_TEST_SCHEMATHESIS="$ST_ROOT/$ST_VERSION/bin/st"
"$LIFTOFF_TEST_SCHEMATHESIS" --version >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_SCHEMATHESIS does not run" >&2; exit 1; }
export LIFTOFF_TEST_SCHEMATHESIS
