#!/usr/bin/env bash
# Makes Debian's `prometheus` package available to the metrics tests:
# `promtool` (checks the /metrics output and the README's alert rules) and the
# Prometheus server (the tests start their own, on a free loopback port).
# The package is unpacked into $PROM_ROOT rather than installed, so that no
# system service starts with it.
# Usage: source .ci/prometheus.sh   (exports LIFTOFF_TEST_PROMTOOL, LIFTOFF_TEST_PROMETHEUS)
set -euo pipefail
PROM_ROOT="${PROM_ROOT:-/tmp/liftoff-ci-prometheus}"
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  LIFTOFF_TEST_PROMTOOL="$(command -v promtool)"
  LIFTOFF_TEST_PROMETHEUS="$(command -v prometheus)"
else
  if [ ! -x "$PROM_ROOT/usr/bin/promtool" ] || [ ! -x "$PROM_ROOT/usr/bin/prometheus" ]; then
    echo "ci: unpacking Debian's prometheus into $PROM_ROOT" >&2
    mkdir -p "$PROM_ROOT/deb"
    chmod 0777 "$PROM_ROOT/deb"   # apt-get download drops to the _apt user
    apt-get update -qq >&2
    (cd "$PROM_ROOT/deb" && apt-get download -qq prometheus >&2)
    dpkg-deb -x "$(ls "$PROM_ROOT"/deb/prometheus_*.deb | head -1)" "$PROM_ROOT"
  fi
  LIFTOFF_TEST_PROMTOOL="$PROM_ROOT/usr/bin/promtool"
  LIFTOFF_TEST_PROMETHEUS="$PROM_ROOT/usr/bin/prometheus"
fi
"$LIFTOFF_TEST_PROMETHEUS" --version >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_PROMETHEUS does not run" >&2; exit 1; }
"$LIFTOFF_TEST_PROMTOOL" --version >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_PROMTOOL does not run" >&2; exit 1; }
export LIFTOFF_TEST_PROMTOOL LIFTOFF_TEST_PROMETHEUS
