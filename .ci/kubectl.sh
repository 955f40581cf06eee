#!/usr/bin/env bash
# Makes kubectl available to the tests that check the Kubernetes API fake
# (liftoff-testkit's kube-fake) with a real client: the one on PATH, else
# Debian's kubernetes-client, installed.
# Usage: source .ci/kubectl.sh   (exports LIFTOFF_TEST_KUBECTL)
set -euo pipefail
if ! command -v kubectl >/dev/null; then
  echo "ci: installing Debian's kubernetes-client (kubectl)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >&2
fi
LIFTOFF_TEST_KUBECTL="$(command -v kubectl)"
"$LIFTOFF_TEST_KUBECTL" version --client >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_KUBECTL does not run" >&2; exit 1; }
export LIFTOFF_TEST_KUBECTL
