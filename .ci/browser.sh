#!/usr/bin/env bash
# Makes Debian's chromium and chromium-driver available to the web UI's
# browser tests (crates/liftoff-agent/tests/it/ui_browser.rs), which start their
# own chromedriver on a free loopback port and drive a headless chromium
# through WebDriver.
# Usage: source .ci/browser.sh   (exports LIFTOFF_TEST_CHROMEDRIVER, LIFTOFF_TEST_CHROMIUM)
set -euo pipefail
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "ci: installing Debian's chromium and chromium-driver" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi
LIFTOFF_TEST_CHROMEDRIVER="$(command -v chromedriver)"
LIFTOFF_TEST_CHROMIUM="$(command -v chromium)"
"$LIFTOFF_TEST_CHROMEDRIVER" --version >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_CHROMEDRIVER does not run" >&2; exit 1; }
export LIFTOFF_TEST_CHROMEDRIVER LIFTOFF_TEST_CHROMIUM
