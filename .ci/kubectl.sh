#!/usr/bin/env bash
# Makes kubectl available to the tests that check the Kubernetes API fake
# (liftoff-testkit's kube-fake) with a real client: the one on PATH, else
# Debian's kubernetes-client, installed. The same for the official Python
# client: a python3 that imports `kubernetes`, else Debian's
# python3-kubernetes (22.6.0), installed for Debian's /usr/bin/python3.
# Usage: source .ci/kubectl.sh
#   (exports LIFTOFF_TEST_KUBECTL and LIFTOFF_TEST_PYTHON_KUBERNETES)
set -euo pipefail
if ! command -v kubectl >/dev/null; then
  echo "ci: installing Debian's kubernetes-client (kubectl)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >&2
fi
LIFTOFF_TEST_KUBECTL="$(command -v kubectl)"
"$LIFTOFF_TEST_KUBECTL" version --client >/dev/null 2>&1 || { echo "ci: $LIFTOFF_TEST_KUBECTL does not run" >&2; exit 1; }
export LIFTOFF_TEST_KUBECTL

LIFTOFF_TEST_PYTHON_KUBERNETES=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import kubernetes' 2>/dev/null; then
    LIFTOFF_TEST_PYTHON_KUBERNETES="$(command -v "$py")"
    break
  fi
done
if [ -z "$LIFTOFF_TEST_PYTHON_KUBERNETES" ]; then
  echo "ci: installing Debian's python3-kubernetes (the official Python client)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-kubernetes >&2
  LIFTOFF_TEST_PYTHON_KUBERNETES=/usr/bin/python3
  "$LIFTOFF_TEST_PYTHON_KUBERNETES" -c 'import kubernetes' || { echo "ci: python3-kubernetes does not import" >&2; exit 1; }
fi
export LIFTOFF_TEST_PYTHON_KUBERNETES
